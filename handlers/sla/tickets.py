"""Tickets (incidents and service requests) and their history, whichever way they arrive: chat, the JSON
API or an import. Every step is an event with the time it happened; the clocks follow from the events."""
from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select

from handlers.core import on_shift
from handlers.core.catalogue import find_service, may_set_status
from handlers.core.context import (Button, Command, Context, Field, Refused, Reply, Section, UserError, Work,
                                   unknown_word)
from handlers.knowledge import reuse
from handlers.knowledge.articles import id_from
from handlers.sla import breaches
from handlers.sla.clocks import DONE_STATES, OPEN_STATES
from handlers.surveys import asking
from storage.models import Ticket, TicketEvent

PRIORITIES = ("P1", "P2", "P3", "P4")
STATES = OPEN_STATES + DONE_STATES
EVENT_KINDS = ("state", "priority", "assign", "supplier", "respond", "resolve", "reopen", "close")
NUMBER = re.compile(r"^INC-?(\d{1,9})$", re.IGNORECASE)
NEW_EXAMPLE = "incident new payments P2 Card payments fail for Amex"
KB_EXAMPLE = "incident kb INC-12 KB-3"


def number(ticket: Ticket) -> str:
    return f"INC-{ticket.id}"


def open_ticket(work: Work, *, source: str, service_id: str, priority: str, title: str, at: datetime,
                external_id: str | None = None, kind: str = "incident", group: str | None = None,
                state: str = "new", opened_by: str | None = None) -> Ticket:
    """A new ticket and its opening events. A clock for each matching target starts with it."""
    ticket = Ticket(kind=kind, source=source, external_id=external_id, service_id=service_id, title=title,
                    priority=priority, state="new", assignment_group=group, opened_at=at, updated_at=at,
                    opened_by=opened_by)
    work.session.add(ticket)
    work.session.flush()
    _event(work, ticket, "open", priority, at)
    if group:
        _event(work, ticket, "assign", group, at)
    if state != "new":
        _event(work, ticket, "state", state, at)
    _apply(ticket, "state", state, at)
    return ticket


def record(work: Work, ticket: Ticket, kind: str, value: str | None, at: datetime) -> None:
    """Add one step to a ticket's history (in any order: the history is kept sorted by time)."""
    if kind not in EVENT_KINDS:
        raise UserError(f"'{kind}' is not a ticket event; events: {', '.join(EVENT_KINDS)}.")
    if kind == "priority" and value not in PRIORITIES:
        raise UserError(f"'{value}' is not a priority; priorities: {', '.join(PRIORITIES)}.")
    if kind == "state" and value not in STATES:
        raise UserError(f"'{value}' is not a ticket state; states: {', '.join(STATES)}.")
    _event(work, ticket, kind, value, at)
    if at >= ticket.updated_at:
        _apply(ticket, kind, value, at)
    else:  # a late event: rebuild the ticket's current fields from its whole history
        _rebuild(work, ticket)


def _event(work: Work, ticket: Ticket, kind: str, value: str | None, at: datetime) -> None:
    work.session.add(TicketEvent(ticket_id=ticket.id, at=at, kind=kind, value=value,
                                 person_id=work.actor.person_id if work.actor else None, recorded_at=work.now))


def _apply(ticket: Ticket, kind: str, value: str | None, at: datetime) -> None:
    if kind == "state":
        ticket.state = value
        if value in DONE_STATES:
            ticket.responded_at = ticket.responded_at or at
            if value == "resolved":
                ticket.resolved_at = ticket.resolved_at or at
            else:
                ticket.closed_at = at
        elif value in OPEN_STATES:
            ticket.resolved_at = ticket.closed_at = None
    elif kind == "priority":
        ticket.priority = value
    elif kind == "assign":
        ticket.assignment_group = value
    elif kind == "supplier":
        ticket.supplier = value
    elif kind == "respond":
        ticket.responded_at = ticket.responded_at or at
        if ticket.state == "new":
            ticket.state = "in-progress"
    elif kind == "resolve":  # resolved again without a reopen: still resolved since the first, as the clocks say
        ticket.state, ticket.resolved_at = "resolved", ticket.resolved_at or at
        ticket.responded_at = ticket.responded_at or at
    elif kind == "reopen":
        ticket.state, ticket.resolved_at, ticket.closed_at = "in-progress", None, None
    elif kind == "close":
        ticket.state, ticket.closed_at = "closed", at
        ticket.responded_at = ticket.responded_at or at
    ticket.updated_at = max(ticket.updated_at, at)


def _rebuild(work: Work, ticket: Ticket) -> None:
    work.session.flush()
    events = work.session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                                  .order_by(TicketEvent.at, TicketEvent.id)).all()
    ticket.state, ticket.responded_at, ticket.resolved_at, ticket.closed_at = "new", None, None, None
    for e in events:
        if e.kind == "open":
            ticket.priority = e.value or ticket.priority
        else:
            _apply(ticket, e.kind, e.value, e.at)


def find_ticket(work_or_session, key: str, example: str) -> Ticket:
    session = getattr(work_or_session, "session", work_or_session)
    m = NUMBER.match(key or "")
    ticket = session.get(Ticket, int(m[1])) if m else None
    if ticket is None:
        raise UserError(f"There is no ticket '{key}'." if key else "Say which ticket.", example)
    return ticket


def may_work_on(ctx: Context, person_id: str, ticket: Ticket) -> bool:
    """The service's owner and team, the assigned team, and service managers may move a ticket on."""
    group = ctx.config.group(ticket.assignment_group) if ticket.assignment_group else None
    service = ctx.config.service(ticket.service_id)
    return ((service is not None and may_set_status(ctx, person_id, service))
            or (group is not None and person_id in group.members))


# ------------------------------------------------------------------------------------------- chat

ACTIONS = {
    # words: (event kind, value, the states it may come from, what it says)
    "ack": ("respond", None, ("new", "in-progress", "awaiting-customer", "awaiting-vendor"), "acknowledged"),
    "hold": ("state", "awaiting-customer", ("new", "in-progress"), "on hold, awaiting the customer"),
    "resume": ("state", "in-progress", ("awaiting-customer", "awaiting-vendor", "awaiting-problem",
                                        "awaiting-evidence"), "resumed"),
    "resolve": ("resolve", None, OPEN_STATES, "resolved"),
    "reopen": ("reopen", None, ("resolved",), "reopened"),
    "close": ("close", None, ("resolved",), "closed"),
}


def incident_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    if not args:
        raise UserError("Say what to do with an incident.", NEW_EXAMPLE)
    verb, rest = args[0].lower(), args[1:]
    if verb == "new":
        return _new(ctx, cmd, rest)
    if verb == "show":
        with ctx.sessions() as s:
            return ticket_reply(ctx, s, find_ticket(s, rest[0] if rest else "", "incident show INC-12"))
    if verb in ("priority", "assign", "vendor"):
        return _set(ctx, cmd, verb, rest)
    if verb == "kb":
        return _link_article(ctx, cmd, rest)
    if verb not in ACTIONS:
        raise unknown_word("incident", args[0], rest, ("new", "show", "priority", "assign", "vendor", "kb", *ACTIONS),
                           "incident ack INC-12")
    kind, value, allowed, said = ACTIONS[verb]
    example = f"incident {verb} INC-12"
    with ctx.change(cmd) as work:
        ticket = find_ticket(work, rest[0] if rest else "", example)
        if not may_work_on(ctx, cmd.actor.person_id, ticket):
            raise Refused(f"Only {ticket.service_id}'s owner, its team, the assigned team or a service manager "
                          f"can move {number(ticket)} on.")
        if ticket.state not in allowed:
            raise UserError(f"{number(ticket)} is {ticket.state}; it cannot be "
                            f"{'put on hold' if verb == 'hold' else said} (only when {_states(allowed)}).",
                            f"incident resolve {number(ticket)}" if verb == "close" and ticket.state in OPEN_STATES
                            else f"incident show {number(ticket)}")
        record(work, ticket, kind, value, work.now)
        work.audit(f"incident.{verb}", number(ticket), note=" ".join(rest[1:]))
        breaches.sync_clocks(work, ticket)
        asking.after_ticket(work, ticket)
        reply = ticket_reply(ctx, work.session, ticket)
    reply.title = f"{number(ticket)} {said}"
    return reply


def _states(states: tuple[str, ...]) -> str:
    named = (", ".join(states[:-1]) + " or " if len(states) > 1 else "") + states[-1]
    return f"open: {named}" if states == OPEN_STATES else named


def _new(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    if len(args) < 3:
        raise UserError("Say the service, the priority and a title.", NEW_EXAMPLE)
    service = find_service(ctx, args[0], NEW_EXAMPLE)
    priority = args[1].upper()
    if priority not in PRIORITIES:
        raise UserError(f"'{args[1]}' is not a priority; say P1, P2, P3 or P4.", NEW_EXAMPLE)
    with ctx.change(cmd) as work:
        ticket = open_ticket(work, source="chat", service_id=service.id, priority=priority, title=" ".join(args[2:]),
                             at=work.now, group=service.team, opened_by=cmd.actor.person_id)
        work.audit("incident.new", number(ticket), service=service.id, priority=priority)
        breaches.sync_clocks(work, ticket)
        reply = with_suggestions(ticket_reply(ctx, work.session, ticket), work.session, ticket, ctx)
    reply.title = f"{number(ticket)} opened: {ticket.title}"
    return reply


def with_suggestions(reply: Reply, session, ticket: Ticket, ctx: Context | None = None) -> Reply:
    """The reply to a new incident, with the library's articles for its service and title, and (given
    ``ctx``) the people on shift whose skills match its service."""
    section = reuse.suggestions_section(reuse.suggest(session, ticket.service_id, ticket.title), number(ticket))
    if section is not None:
        reply.sections.append(section)
    if ctx is not None:
        # Who is on shift is worked out in the core (handlers/core/on_shift.py), from app.yaml alone: this
        # layer may not import handlers/shifts, and a suggestion needs nothing from the store.
        people = on_shift.suggested_people(ctx.config, ticket.service_id, ticket.opened_at)
        if people:
            reply.sections.append(Section(title="On shift now, with the skills for it", text="\n".join(
                f"{person.name} ({', '.join(skills)})" for person, skills in people)
                + "\nA suggestion only: svcbot assigns nobody."))
    return reply


def _link_article(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    """``incident kb INC-N KB-N`` (a suggestion's *This helped*): the article helped with the ticket."""
    if len(args) != 2:
        raise UserError("Say the ticket and the article that helped.", KB_EXAMPLE)
    article_id = id_from(args[1:], KB_EXAMPLE)
    with ctx.change(cmd) as work:
        ticket = find_ticket(work, args[0], KB_EXAMPLE)
        if not (may_work_on(ctx, cmd.actor.person_id, ticket) or ticket.opened_by == cmd.actor.person_id):
            raise Refused(f"Only whoever opened {number(ticket)}, {ticket.service_id}'s owner, its team, the "
                          "assigned team or a service manager can link an article to it.")
        article, new = reuse.link(work, ticket, article_id, cmd.via)
    said = "is now linked to" if new else "was already linked to"
    return Reply(title=f"KB-{article.id} {said} {number(ticket)}", text=article.title, tone="ok",
                 footer=f"incident show {number(ticket)}")


def _set(ctx: Context, cmd: Command, verb: str, args: list[str]) -> Reply:
    example = {"priority": "incident priority INC-12 P1", "assign": "incident assign INC-12 platform-ops",
               "vendor": "incident vendor INC-12 cardlink"}[verb]
    if len(args) != 2:
        raise UserError(f"Say the ticket and the new {'supplier' if verb == 'vendor' else verb}.", example)
    value = args[1]
    if verb == "priority":
        value = value.upper()
        if value not in PRIORITIES:
            raise UserError(f"'{args[1]}' is not a priority; say P1, P2, P3 or P4.", example)
    elif ctx.config.group(value) is None or (verb == "vendor") != (ctx.config.group(value).kind == "supplier"):
        kind = "supplier" if verb == "vendor" else "internal team"
        known = ", ".join(g.id for g in ctx.config.groups if (g.kind == "supplier") == (verb == "vendor"))
        raise UserError(f"There is no {kind} '{value}'. Known: {known}.", example)
    with ctx.change(cmd) as work:
        ticket = find_ticket(work, args[0], example)
        if not may_work_on(ctx, cmd.actor.person_id, ticket):
            raise Refused(f"Only {ticket.service_id}'s owner, its team, the assigned team or a service manager "
                          f"can change {number(ticket)}.")
        if ticket.state in DONE_STATES:
            raise UserError(f"{number(ticket)} is {ticket.state}; reopen it first.", f"incident reopen {number(ticket)}")
        if verb == "vendor":
            record(work, ticket, "supplier", value, work.now)
            record(work, ticket, "state", "awaiting-vendor", work.now)
        else:
            record(work, ticket, "priority" if verb == "priority" else "assign", value, work.now)
        work.audit(f"incident.{verb}", number(ticket), value=value)
        breaches.sync_clocks(work, ticket)
        reply = ticket_reply(ctx, work.session, ticket)
    reply.title = f"{number(ticket)}: {'waiting on ' + value if verb == 'vendor' else verb + ' ' + value}"
    return reply


def ticket_reply(ctx: Context, session, ticket: Ticket) -> Reply:
    service = ctx.config.service(ticket.service_id)
    fields = [Field("Service", service.name if service else ticket.service_id), Field("Priority", ticket.priority),
              Field("State", ticket.state), Field("Assigned to", ticket.assignment_group or "—"),
              Field("Opened", f"{ticket.opened_at:%Y-%m-%d %H:%M} UTC")]
    if ticket.supplier:
        fields.append(Field("Waiting on", ticket.supplier))
    if ticket.permalink:
        fields.append(Field("Raised from", ticket.permalink))
    if ticket.resolved_at:
        fields.append(Field("Resolved", f"{ticket.resolved_at:%Y-%m-%d %H:%M} UTC"))
    linked = reuse.linked_articles(session, ticket.id)
    if linked:
        fields.append(Field("Knowledge used", ", ".join(f"KB-{i} {title}" for i, title in linked)))
    if ticket.source_resolved_at and ticket.source_resolved_at != ticket.resolved_at:
        fields.append(Field(f"Resolved, as {ticket.source} says",
                            f"{ticket.source_resolved_at:%Y-%m-%d %H:%M} UTC"))
    sections = [Section(text=ticket.title, fields=fields)]
    clocks = breaches.clock_lines(session, ticket.id)
    if clocks:
        sections.append(Section(title="Clocks", text="\n".join(clocks)))
    buttons = []
    if ticket.state in OPEN_STATES:
        if ticket.responded_at is None:
            buttons.append(Button("Acknowledge", f"incident ack {number(ticket)}", "primary"))
        buttons.append(Button("Resolve", f"incident resolve {number(ticket)}"))
    elif ticket.state == "resolved":
        buttons.append(Button("Reopen", f"incident reopen {number(ticket)}"))
    return Reply(title=f"{number(ticket)}: {ticket.title}", sections=sections, buttons=buttons)
