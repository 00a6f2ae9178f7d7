"""help [topic]: what the bot can do, with examples."""
from __future__ import annotations

from handlers.core.context import Command, Context, Reply, Section, UserError

TOPICS = {
    "home": ("Your home", [
        ("home", "your services, the changes waiting for your vote and your own, your team's incidents and "
         "breach notices, surveys to answer, your CSI items; in Slack, also the bot's Home tab"),
    ]),
    "status": ("Service status", [
        ("status", "every service at a glance"),
        ("status payments", "one service: status, owner, team, suppliers, recent status changes, next changes"),
    ]),
    "impact": ("What a failure would reach", [
        ("impact payments", "the services that depend on it (fully or partly, and through what), the agreements "
         "on them with their attainment this month, the channels and people that would hear of it"),
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
        ("incident kb INC-12 KB-3", "the article helped with it (a new incident's suggestions have a This helped "
         "button that says so); counted as the article's reuse"),
    ]),
    "sla": ("Service levels", [
        ("sla", "attainment this month per agreement, target and priority, and availability"),
        ("sla payments last-month", "one service, one period (this-month, last-month, 7d, a month as YYYY-MM, all …)"),
        ("sla payments all by group", "attainment per assignment group"),
        ("sla breaches last-month", "the breaches, and the OLA or UC whose time was spent"),
        ("sla at-risk", "running clocks past their first warning, soonest due first, 40 a page (add page 2 for more)"),
        ("sla ack 12", "acknowledge a warning or breach notice"),
    ]),
    "change": ("Changes: request, approve, run", [
        ('change new title="Patch the VPN gateways" services=vpn type=normal risk=medium '
         'start="tomorrow 22:00" end="tomorrow 23:00" backout="Fail back to the standby"',
         "a request for change in one line; in Slack and Teams, change new alone opens a form"),
        ('change new model=restart-wms-workers start="tomorrow 02:00"', "a pre-approved standard change"),
        ("change list", "open changes; also change list mine, change list all"),
        ("change calendar 14", "the forward schedule of change for the next 14 days"),
        ("change approve CHG-12 Rehearsed on staging", "approve (CAB; ECAB for emergency changes)"),
        ("change reject CHG-12 Clashes with the month-end close", "one rejection rejects"),
        ("change retract CHG-12", "take back your approval before the change starts (or remove your reaction)"),
        ("change override CHG-12 Agreed with the business owner", "service managers: accept a freeze, "
         "conflict or maintenance-window breach"),
        ("change start CHG-12", "then change complete, complete … with-issues, or fail CHG-12 with a note"),
    ]),
    "survey": ("Pulse surveys (service managers and service owners)", [
        ('survey new question="How satisfied are you with the VPN?" scale=csat channel=it-announce '
         'closes="in 5 days"', "post a survey with rating buttons; scales csat, nps, yesno; people=… or group=… "
         "ask by direct message; anonymous=no for named answers; in Slack and Teams, survey new alone opens a form"),
        ("survey list", "open and recently closed surveys"),
        ("survey results SRV-12", "response rate, CSAT or NPS, the distribution, comments and the trend"),
        ("survey answer SRV-12 4", "answer (or change your answer) without the buttons"),
        ("survey close SRV-12", "close it now and post the results"),
    ]),
    "csi": ("Continual service improvement", [
        ('csi add title="Publish VPN set-up steps in the portal" owner=sanne due="in 2 weeks" service=vpn',
         "add an item; survey=SRV-12 or ticket=INC-12 links what prompted it"),
        ("csi list", "open items, soonest due first; csi list payments, csi list all"),
        ("csi done CSI-12 Steps published", "finish one (its owner or a service manager)"),
    ]),
    "kb": ("The knowledge library: runbooks, known errors, how-tos, FAQs", [
        ("kb search pod keeps restarting", "published articles, the most relevant first, with the words that "
         "matched; Share in channel posts one for everyone"),
        ("kb show KB-12", "the article; kb show KB-12 2 shows its version 2, kb history KB-12 lists them"),
        ('kb new kind=known-error title="VPN drops every 30 minutes" services=vpn symptom="Resets on the half hour" '
         'workaround="Use the TCP profile"', "a draft in one line (kinds runbook, known-error, how-to, faq); in "
         "Slack and Teams, kb new alone opens a form"),
        ('kb edit KB-12 tags=vpn,token', "a new version; kb edit KB-12 alone opens the form"),
        ("kb publish KB-12", "make it searchable; kb retire KB-12 takes it out (its owner, its services' owners "
         "and teams, service managers). Articles from git (svcbot kb sync) are edited in git"),
        ("kb review KB-12 verified", "answer a due review (the direct message's buttons): verified, needs-work "
         "or retire"),
    ]),
    "problem": ("Problems and known errors: one cause behind repeated incidents", [
        ('problem new title="VPN drops every 30 minutes" services=vpn owner=sanne', "open a problem (the owners of "
         "its services and service managers); problem list, problem list resolved"),
        ("problem link PRB-12 INC-12 INC-14", "its incidents (problem unlink takes one off); an incident opened "
         "within 30 days after the fix reopens it and tells its owner"),
        ('problem known-error PRB-12 workaround="Reconnect with the TCP profile"', "publish the known error as a "
         "known-error article; every incident linked from then on hears the workaround"),
        ("problem fix PRB-12 CHG-12", "resolved by a change that was carried out"),
        ("problem show PRB-12", "its incidents, their business-time impact and breaches, the known error and fix"),
        ("problem suggest", "tell service owners of three or more similar incidents in 7 days (also swept)"),
    ]),
    "catalogue": ("Keeping the service catalogue true", [
        ("catalogue confirm payments", "its owner confirms the service's catalogue entry (asked by direct "
         "message every catalogue.review_days); catalogue change payments says it needs change"),
    ]),
    "digest": ("Digests: scheduled summaries posted to a channel", [
        ("digest list", "each digest of app.yaml: where, when, when it was last posted"),
        ("digest preview morning-ops", "see it now, privately, as it would be posted"),
        ("digest send morning-ops", "service managers: post it now; the scheduled ones still come"),
    ]),
    "report": ("The monthly service report", [
        ("report payments last-month", "agreed against achieved, breaches and their cause, availability, tickets "
         "and time to resolve, changes, satisfaction, CSI and the commentary; report alone: all services, last "
         "month; a month is also YYYY-MM or this-month"),
        ("report post payments last-month", "post it with its charts to the service's channel (service managers, "
         "and the service's owner)"),
        ("report comment payments last-month Both P1 breaches waited on CardLink; CSI-4 follows up",
         "the manager's commentary; a later one replaces it"),
    ]),
    "handover": ("Follow the sun: handovers between shifts", [
        ("handover preview payments-eng", "what the group would hand over if its shift ended now: open P1/P2 "
         "with owner and clocks, what falls due on the next shift, changes coming, breach notices not "
         "acknowledged"),
        ("handover take HND-12", "the Take over button: the listed tickets still the sender's are assigned to "
         "your team (members of the receiving team, service managers)"),
    ]),
    "team": ("Workload", [
        ("team", "open tickets by location, group and person, their age in business hours, OLA attainment "
         "this month and who is on shift now"),
        ("team payments-eng", "one team"),
    ]),
    "supplier": ("Suppliers: scorecards, service credits", [
        ("supplier list", "every supplier with its contracts, last month's breaches, tickets waiting on it now and "
         "credits"),
        ("supplier cardlink last-month", "its scorecard: each UC target agreed against achieved, breaches, time "
         "waited on it, tickets still waiting, six months' trend, satisfaction, and the credits it owes"),
        ("supplier claim cardlink last-month note=\"Credit note CN-2291 requested\"", "service managers: mark the "
         "month's credits claimed (or supplier waive … with the reason); audited"),
    ]),
    "review": ("Post-incident reviews (opened when a P1 or P2 is resolved)", [
        ("review list mine", "your open reviews; also review list, review list overdue, review list all"),
        ("review show REV-12", "the timeline svcbot assembled, the impact measured, what was written and by whom"),
        ('review edit REV-12 what="Card authorisations timed out" factors="No canary for TLS changes"',
         "write what happened, impact or factors; review edit REV-12 alone opens the form (follow-ups too)"),
        ('review note REV-12 "Rolled back CHG-8" at=10:40', "annotate the timeline at a moment of the incident"),
        ('review action REV-12 "Canary TLS changes" owner=tom due="in 2 weeks"', "a follow-up: a CSI item"),
        ("review new INC-12 owner=tom", "open a review of any resolved ticket (its service's owner, service "
         "managers); review done REV-12 finishes one, review export REV-12 gives it as Markdown"),
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
