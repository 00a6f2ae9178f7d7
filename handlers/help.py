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
