"""A review's timeline and impact, from what svcbot already knows about the ticket: its events, the notices
of its clocks, its service's status changes and outages, the changes on the service from 72 hours before it
opened until it was resolved, and the notes people added. One query per kind of entry, whatever the
ticket's length (bench/review_timeline.py measures 500 events).

The impact is counted with the arithmetic the SLA reports use: business time on the service's calendar
(handlers/core/business_time.py), outages merged as availability merges them (handlers/sla/availability.py),
and the agreements whose clocks breached."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from handlers.core.business_time import BusinessCalendar
from handlers.core.context import Context
from handlers.sla import availability, breaches
from storage.models import (Change, ChangeService, ClockNotice, IncidentReview, Outage, ReviewNote, SlaClock,
                            StatusChange, Ticket, TicketEvent)

BEFORE = timedelta(hours=72)  # how far before the ticket opened its service's changes and status are looked at
NOT_RUN = ("rejected", "cancelled")  # changes that never touched the service
# Entries at the same instant: what svcbot recorded before what people wrote about it.
ORDER = {"change": 0, "status": 1, "outage": 2, "ticket": 3, "notice": 4, "note": 5}


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # ticket | notice | status | outage | change | note
    text: str
    by: str | None = None  # the person who did or wrote it, when known
    ref: str = ""  # what it is about: INC-N, CHG-N, OUT-N, a note's id


@dataclass(frozen=True)
class Impact:
    open_seconds: float  # from opening to resolution (or now), clock time
    business_seconds: float | None  # … on the service's calendar; None for a service app.yaml does not know
    outage_seconds: float  # unplanned outages of the service overlapping the incident, merged
    outage_business_seconds: float | None  # … on the service's calendar
    breached: list[str] = field(default_factory=list)  # "SLA SLA-PAY resolution: late by 1 h 5 min"


def window(ticket: Ticket, now: datetime) -> tuple[datetime, datetime]:
    return ticket.opened_at - BEFORE, ticket.resolved_at or ticket.closed_at or now


EVENT_TEXT = {
    "open": "Opened as {value}", "state": "State: {value}", "priority": "Priority changed to {value}",
    "assign": "Assigned to {value}", "supplier": "Waiting on supplier {value}",
    "respond": "Acknowledged (first response)", "resolve": "Resolved", "reopen": "Reopened", "close": "Closed",
}


def timeline(ctx: Context, session: Session, review: IncidentReview, ticket: Ticket, now: datetime) -> list[Entry]:
    """Every entry, oldest first."""
    start, end = window(ticket, now)
    connection = session.connection()

    def read(statement):  # plain rows, fetched at once: the ORM's result machinery cost more than the SQL
        return connection.execute(statement).all()
    entries: list[Entry] = []
    inc = f"INC-{ticket.id}"
    for at, kind, value, person in read(
            select(TicketEvent.at, TicketEvent.kind, TicketEvent.value, TicketEvent.person_id)
            .where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.at, TicketEvent.id)):
        text = EVENT_TEXT.get(kind, kind + " {value}").format(value=value or "")
        entries.append(Entry(at, "ticket", text, person, inc))
    for at, level, kind, agreement, metric in read(
            select(ClockNotice.at, ClockNotice.level, SlaClock.kind, SlaClock.agreement_id, SlaClock.metric)
            .join(SlaClock, SlaClock.id == ClockNotice.clock_id).where(SlaClock.ticket_id == ticket.id)):
        what = "Breached" if level >= breaches.BREACH else f"Warning: {level:g} % used of"
        entries.append(Entry(at, "notice", f"{what} {kind.upper()} {agreement} {metric}", None, inc))
    for at, before, state, message, person in read(
            select(StatusChange.at, StatusChange.previous_state, StatusChange.state, StatusChange.message,
                   StatusChange.person_id)
            .where(StatusChange.service_id == ticket.service_id, StatusChange.at >= start, StatusChange.at <= end)):
        entries.append(Entry(at, "status", f"{ctx.config.service_names([ticket.service_id])}: {before} → {state}"
                             + (f" — {message}" if message else ""), person, ticket.service_id))
    for oid, kind, summary, started, ended in read(
            select(Outage.id, Outage.kind, Outage.summary, Outage.started_at, Outage.ended_at)
            .where(Outage.service_id == ticket.service_id, Outage.started_at <= end,
                   or_(Outage.ended_at.is_(None), Outage.ended_at >= start))):
        what = "Maintenance" if kind == "maintenance" else "Outage"
        entries.append(Entry(started, "outage", f"{what} began" + (f": {summary}" if summary else ""), None,
                             f"OUT-{oid}"))
        if ended is not None and ended <= end:
            entries.append(Entry(ended, "outage", f"{what} ended", None, f"OUT-{oid}"))
    for cid, title, state, outcome, p_start, a_start, a_end, implementer in read(
            select(Change.id, Change.title, Change.state, Change.outcome, Change.planned_start, Change.actual_start,
                   Change.actual_end, Change.implementer)
            .join(ChangeService, ChangeService.change_id == Change.id)
            .where(ChangeService.service_id == ticket.service_id, Change.state.not_in(NOT_RUN),
                   or_(and_(ChangeService.planned_start <= end, ChangeService.planned_end >= start),
                       and_(Change.actual_start <= end, func.coalesce(Change.actual_end, end) >= start)))):
        began = a_start or p_start
        said = "began" if a_start else "planned to begin"
        entries.append(Entry(began, "change", f"CHG-{cid} {said}: {title} ({state})", implementer, f"CHG-{cid}"))
        if a_end is not None and a_end <= end:
            entries.append(Entry(a_end, "change", f"CHG-{cid} ended" + (f": {outcome}" if outcome else ""),
                                 implementer, f"CHG-{cid}"))
    for nid, at, text, person in read(
            select(ReviewNote.id, ReviewNote.at, ReviewNote.text, ReviewNote.person_id)
            .where(ReviewNote.review_id == review.id)):
        entries.append(Entry(at, "note", text, person, f"note {nid}"))
    entries.sort(key=lambda e: (e.at, ORDER[e.kind]))
    return entries


def impact(ctx: Context, session: Session, ticket: Ticket, now: datetime) -> Impact:
    end = ticket.resolved_at or ticket.closed_at or now
    service = ctx.config.service(ticket.service_id)
    calendar = BusinessCalendar(ctx.config.calendars[service.calendar]) if service else None
    down = availability.merge(
        (a, min(b or now, now)) for a, b in session.execute(
            select(Outage.started_at, Outage.ended_at)
            .where(Outage.service_id == ticket.service_id, Outage.kind == "unplanned", Outage.started_at < end,
                   or_(Outage.ended_at.is_(None), Outage.ended_at > ticket.opened_at))))
    breached = []
    for kind, agreement, metric, elapsed, target in session.execute(
            select(SlaClock.kind, SlaClock.agreement_id, SlaClock.metric, SlaClock.elapsed_seconds,
                   SlaClock.target_seconds)
            .where(SlaClock.ticket_id == ticket.id, SlaClock.breached.is_(True))
            .order_by(SlaClock.kind, SlaClock.agreement_id, SlaClock.metric)):
        breached.append(f"{kind.upper()} {agreement} {metric}: late by {breaches.human(elapsed - target)}")
    return Impact(
        open_seconds=(end - ticket.opened_at).total_seconds(),
        business_seconds=calendar.business_seconds(ticket.opened_at, end) if calendar else None,
        outage_seconds=sum((b - a).total_seconds() for a, b in down),
        outage_business_seconds=sum(calendar.business_seconds(a, b) for a, b in down) if calendar else None,
        breached=breached)


def impact_lines(imp: Impact) -> list[str]:
    """The impact for people to read, one fact a line."""
    human = breaches.human
    lines = [f"Open for {human(imp.open_seconds)}"
             + (f", {human(imp.business_seconds)} of it in business hours" if imp.business_seconds is not None else "")]
    if imp.outage_seconds:
        lines.append(f"Service down for {human(imp.outage_seconds)}"
                     + (f", {human(imp.outage_business_seconds)} in business hours"
                        if imp.outage_business_seconds is not None else ""))
    else:
        lines.append("No outage of the service was recorded")
    lines += [f"Breached: {b}" for b in imp.breached] or ["No agreement was breached"]
    return lines
