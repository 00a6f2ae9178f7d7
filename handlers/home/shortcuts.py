"""An incident or a change raised from a chat message (Slack message shortcuts, Teams message actions).

The form opens prefilled from the message: its first line as the title, the whole text as the
description. The message's link is kept on the new ticket or change and shown on it, and the new record
is announced in the message's own thread, in the same transaction that creates it. The form's
``context`` (the origin) carries where that thread is; nothing else in it is trusted.
"""
from __future__ import annotations

from dataclasses import replace

from handlers.changes import commands as changes
from handlers.changes.plan import FIELDS
from handlers.changes.record import number as change_number
from handlers.core.context import Actor, Choice, Command, Context, Form, FormInvalid, Input, Reply, Work
from handlers.sla import breaches
from handlers.sla.tickets import NEW_EXAMPLE, PRIORITIES, number, open_ticket, ticket_reply, with_suggestions
from storage.models import Change

INCIDENT_FORM = "incident_from_message"
CHANGE_FORM = "change_from_message"
TITLE_MAX = 200


def origin(platform: str, channel: str, thread: str | None, permalink: str | None, text: str) -> dict:
    """Where a message is: what the forms carry in their context and the new record's announcement needs."""
    return {"platform": platform, "channel": channel, "thread": thread, "permalink": permalink,
            "text": text[:3000]}


def title_from(text: str) -> str:
    first = next((line.strip() for line in (text or "").splitlines() if line.strip()), "")
    return first[:TITLE_MAX]


def incident_form(ctx: Context, actor: Actor, where: dict, values: dict | None = None,
                  errors: dict | None = None) -> Form:
    values, errors = values or {"title": title_from(where.get("text", "")), "priority": "P3"}, errors or {}
    inputs = [Input("service", "Service", "choice", [Choice(s.id, s.name) for s in ctx.config.services],
                    required=True),
              Input("priority", "Priority", "choice", [Choice(p, p) for p in PRIORITIES], required=True),
              Input("title", "Title", required=True)]
    for i in inputs:
        i.value, i.error = values.get(i.id) or i.value, errors.get(i.id, "")
    return Form(name=INCIDENT_FORM, title="Open an incident", inputs=inputs, submit="Open", context=_carried(where),
                example=NEW_EXAMPLE)


def change_form(ctx: Context, actor: Actor, where: dict, values: dict | None = None,
                errors: dict | None = None) -> Form:
    values = values or {"title": title_from(where.get("text", "")), "description": where.get("text", "")}
    return replace(changes.new_form(ctx, actor, values, errors), name=CHANGE_FORM, context=_carried(where))


def _carried(where: dict) -> dict:
    """What the form carries back: where the message is, not its text (a Slack modal's private metadata
    holds at most 3,000 characters)."""
    return {k: v for k, v in where.items() if k != "text"}


def submit_incident(ctx: Context, cmd: Command, values: dict, context: dict) -> Reply:
    """The answers of the incident-from-a-message form: opened with the rights of the person submitting."""
    where = _where(context)
    errors = {}
    service = ctx.config.service(str(values.get("service") or ""))
    if service is None:
        errors["service"] = "Choose the service it is about."
    priority = str(values.get("priority") or "").upper()
    if priority not in PRIORITIES:
        errors["priority"] = "Choose P1, P2, P3 or P4."
    title = str(values.get("title") or "").strip()[:TITLE_MAX]
    if not title:
        errors["title"] = "Say in a few words what is wrong."
    if errors:
        raise FormInvalid(errors, incident_form(ctx, cmd.actor, where, values, errors), NEW_EXAMPLE)
    with ctx.change(cmd) as work:
        ticket = open_ticket(work, source="chat", service_id=service.id, priority=priority, title=title,
                             at=work.now, group=service.team, opened_by=cmd.actor.person_id)
        ticket.permalink = where["permalink"]
        work.audit("incident.new", number(ticket), service=service.id, priority=priority, via=cmd.via,
                   permalink=where["permalink"])
        breaches.sync_clocks(work, ticket)
        reply = with_suggestions(ticket_reply(ctx, work.session, ticket), work.session, ticket, ctx)
        _announce_in_thread(work, where, replace(reply, title=f"{number(ticket)} opened from this message by "
                                                             f"{cmd.actor.name}: {title}", private=False),
                            f"{number(ticket)}")
    reply.title = f"{number(ticket)} opened: {title}"
    reply.tone = "ok"
    return reply


def submit_change(ctx: Context, cmd: Command, values: dict, context: dict) -> Reply:
    """The answers of the change-from-a-message form: the same checks as ``change new``."""
    where = _where(context)

    def in_thread(work: Work, change: Change) -> None:
        announced = changes.show_reply(ctx, work.session, change, cmd.actor)
        _announce_in_thread(work, where, replace(
            announced, title=f"{change_number(change)} requested from this message by {cmd.actor.name}: "
                             f"{change.title}", private=False, buttons=[]), change_number(change))
    values = {k: v for k, v in values.items() if k in FIELDS}
    if values.get("model"):  # as in the new-change form: the model says what the change is
        values = {k: v for k, v in values.items() if k not in ("title", "services", "risk", "impact", "type")}
    try:
        return changes.create(ctx, cmd, values, source="chat", permalink=where["permalink"], then=in_thread)[1]
    except FormInvalid as exc:
        exc.form = change_form(ctx, cmd.actor, where, values, exc.errors)
        raise


def _where(context: dict) -> dict:
    keys = ("platform", "channel", "thread", "permalink")
    return {k: (str(context[k]) if context.get(k) else None) for k in keys} | {"text": ""}


def _announce_in_thread(work: Work, where: dict, message: Reply, subject: str) -> None:
    if where["platform"] in ("slack", "teams") and where["channel"]:
        work.send(where["platform"], "channel", where["channel"], message,
                  f"from-message:{subject}:{where['platform']}:{where['channel']}", subject,
                  thread_id=where["thread"])
