"""help [topic]: what the bot can do, with examples."""
from __future__ import annotations

from handlers.core import Command, Context, Reply, Section, UserError

TOPICS = {
    "status": ("Service status", [
        ("status", "every service at a glance"),
        ("status payments", "one service: status, owner, team, suppliers, recent changes"),
    ]),
    "service": ("Setting a service's status (owners, their team and service managers)", [
        ("service set payments degraded Card payments are slow", "announce to the service's channel "
         "and its subscribers; states: operational, degraded, partial-outage, major-outage, maintenance"),
    ]),
    "subscribe": ("Following a service", [
        ("subscribe payments", "its announcements reach you by direct message"),
        ("unsubscribe payments", "stop them"),
    ]),
    "incident": ("Incidents and their SLA clocks", [
        ("incident new payments P2 Card payments fail for Amex", "open a ticket; its SLA, OLA and UC clocks start"),
        ("incident show INC-12", "the ticket and every clock: how much is used, when it is due"),
        ("incident ack INC-12", "first response: stops the response clocks"),
        ("incident hold INC-12", "awaiting the customer: pauses the clocks that pause for it"),
        ("incident vendor INC-12 cardlink", "waiting on a supplier: its underpinning contract's clock runs"),
        ("incident resume INC-12", "back to work"),
        ("incident priority INC-12 P1", "the time used so far counts against the new priority's target"),
        ("incident assign INC-12 platform-ops", "hand it to another team: their OLA clock runs while they have it"),
        ("incident resolve INC-12", "stops the resolution clocks"),
        ("incident reopen INC-12", "resumes them; the time it spent resolved does not count"),
    ]),
    "sla": ("Service levels", [
        ("sla", "attainment this month per agreement, target and priority, and availability"),
        ("sla payments last-month", "one service, one period (this-month, last-month, 7d, 2026-10, all …)"),
        ("sla payments all by group", "attainment per assignment group"),
        ("sla breaches last-month", "the breaches, and the OLA or UC whose time was spent"),
        ("sla at-risk", "running clocks past their first warning, soonest due first"),
        ("sla ack 12", "acknowledge a warning or breach notice"),
    ]),
}
TOPICS["unsubscribe"] = TOPICS["subscribe"]


def run(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    prefix = ctx.config.bot.slash_command + " " if cmd.actor.platform == "slack" else ""
    if args:
        topic = TOPICS.get(args[0].lower())
        if topic is None:
            raise UserError(f"No help on '{args[0]}'. Topics: {', '.join(sorted(set(TOPICS)))}.", "help status")
        topics = [topic]
    else:
        topics = list({title: (title, examples) for title, examples in TOPICS.values()}.values())
    sections = [Section(title=title, text="\n".join(f"`{prefix}{words}` — {what}" for words, what in examples))
                for title, examples in topics]
    return Reply(title=f"{ctx.config.bot.name} — IT service operations where your team talks",
                 sections=sections, footer=f"`{prefix}help TOPIC` for one topic")
