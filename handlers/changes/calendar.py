"""The forward schedule of change: what is planned in the days ahead, the change success rate, and the same
schedule as an iCalendar feed (RFC 5545) that calendar clients subscribe to.

- ``calendar_reply``: `change calendar [days]`, the changes that hold a window in the next days, grouped by day
  in the asking person's time zone, with the success rate of the last 90 days beneath.
- ``success_rate``: successful ÷ implemented changes whose work ended in a period, counted by the database.
- ``ics``: one VEVENT per change, its UID stable and its SEQUENCE the change's revision, so a subscribed
  calendar updates the event as the change moves on. ``ics_rows`` and ``ics_chunks`` are the same in two
  steps, for a caller that streams: two queries however many changes there are, then the document in pieces.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Iterable, Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from handlers.changes import rules
from handlers.changes.record import OUTCOME_TEXT, OUTCOMES, STATE_ICON, window_text
from handlers.core.config import AppConfig
from handlers.core.context import Command, Context, Reply, Section, UserError
from storage.models import Change, ChangeService

if TYPE_CHECKING:
    from icalendar import Event

UTC = timezone.utc
DEFAULT_DAYS, MAX_DAYS = 7, 90
RATE_DAYS = 90  # the success rate under the calendar looks back this far
SHOWN = 100  # changes listed in one chat answer; the feed has them all
DAYS = re.compile(r"^(\d{1,3})\s*(?:d|days?)?$", re.IGNORECASE)
EXAMPLE = "change calendar 14"

PRODID = "-//svcbot//change calendar//EN"
# How a change's state shows in a calendar client (RFC 5545 3.8.1.11); "new" is not published.
ICS_STATUS = {"awaiting-approval": "TENTATIVE", "scheduled": "CONFIRMED", "in-progress": "CONFIRMED",
              "review": "CONFIRMED", "closed": "CONFIRMED", "cancelled": "CANCELLED", "rejected": "CANCELLED"}
DONE = ("review", "closed")  # shown at their actual window when it is known


# ---- the success rate ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rate:
    """Changes implemented in a period (their work ended with an outcome), how many were successful and how
    many were emergency changes."""

    successful: int
    implemented: int
    emergency: int = 0
    ratio: float | None = field(init=False)  # successful ÷ implemented; None when nothing was implemented

    def __post_init__(self):
        object.__setattr__(self, "ratio", self.successful / self.implemented if self.implemented else None)


def success_rate(session: Session, start: datetime, end: datetime, service_id: str | None = None) -> Rate:
    """successful ÷ implemented over changes whose actual end is in [start, end): implemented means an outcome
    of successful, with-issues or failed; only "successful" counts as a success. One aggregate query."""
    def how_many(condition):
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)
    query = (select(func.count(Change.id), how_many(Change.outcome == "successful"),
                    how_many(Change.kind == "emergency"))
             .where(Change.outcome.in_(OUTCOMES), Change.actual_end >= start, Change.actual_end < end))
    if service_id is not None:
        query = query.join(ChangeService, ChangeService.change_id == Change.id).where(
            ChangeService.service_id == service_id)
    implemented, successful, emergency = session.execute(query).one()
    return Rate(successful=int(successful), implemented=int(implemented), emergency=int(emergency))


def rate_text(rate: Rate, days: int = RATE_DAYS) -> str:
    if rate.ratio is None:
        return f"Change success rate, last {days} days: no change was implemented."
    return (f"Change success rate, last {days} days: {rate.ratio:.1%} ({rate.successful} of {rate.implemented} "
            "implemented changes successful)")


# ---- change calendar [days] ---------------------------------------------------------------------------

def _days(args: list[str]) -> int:
    text = " ".join(args).strip()
    if not text:
        return DEFAULT_DAYS
    m = DAYS.match(text)
    if not m or not 1 <= int(m[1]) <= MAX_DAYS:
        raise UserError(f"Say how many days ahead to show, from 1 to {MAX_DAYS} (default {DEFAULT_DAYS}); "
                        f"'{text}' is not that.", EXAMPLE)
    return int(m[1])


def _services_by_change(session: Session, where) -> dict[int, list[str]]:
    """The services of every change the filter selects, in one query."""
    out: dict[int, list[str]] = {}
    query = (select(ChangeService.change_id, ChangeService.service_id)
             .join(Change, Change.id == ChangeService.change_id).where(*where)
             .order_by(ChangeService.change_id, ChangeService.service_id))
    for change_id, service_id in session.execute(query):
        out.setdefault(change_id, []).append(service_id)
    return out


def holding(start: datetime, end: datetime) -> tuple:
    """The filter of changes awaiting approval, scheduled or under way whose planned window overlaps
    [start, end): the forward schedule of change."""
    return Change.state.in_(rules.HOLDING), Change.planned_start < end, Change.planned_end > start


def holding_rows(session: Session, start: datetime, end: datetime) -> list[tuple[Change, list[str]]]:
    """(change, its services) for each change holding a window in [start, end), by planned start."""
    where = holding(start, end)
    changes = session.scalars(select(Change).where(*where).order_by(Change.planned_start, Change.id)).all()
    services = _services_by_change(session, where)
    return [(c, services.get(c.id, [])) for c in changes]


def _day_title(day: date, today: date) -> str:
    label = {0: " · today", 1: " · tomorrow"}.get((day - today).days, "")
    return f"{day:%a %d %b %Y}{label}"


def calendar_reply(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    """The forward schedule of change: changes awaiting approval, scheduled or in progress whose window
    overlaps the next N days, by day in the asking person's zone, and the recent success rate."""
    days = _days(args)
    now = ctx.now()
    end = now + timedelta(days=days)
    zone = ZoneInfo(cmd.actor.timezone)
    cfg = ctx.config
    where = holding(now, end)
    with ctx.sessions() as s:
        total = s.scalar(select(func.count(Change.id)).where(*where))
        rows = s.scalars(select(Change).where(*where).order_by(Change.planned_start, Change.id).limit(SHOWN)).all()
        services = _services_by_change(s, (*where, Change.id.in_([c.id for c in rows]))) if rows else {}
        rate = success_rate(s, now - timedelta(days=RATE_DAYS), now)
        today = now.astimezone(zone).date()
        by_day: dict[date, list[str]] = {}
        for c in rows:
            # A change already under way is listed today, the day it holds its window now.
            day = max(c.planned_start, now).astimezone(zone).date()
            names = cfg.service_names(services.get(c.id, []))
            by_day.setdefault(day, []).append(
                f"{STATE_ICON[c.state]} *CHG-{c.id}* {c.title} — {c.state}, {window_text(c, zone.key)}"
                + (f" · {names}" if names else ""))
    span = "the next day" if days == 1 else f"the next {days} days"
    sections = [Section(title=_day_title(day, today), text="\n".join(lines)) for day, lines in by_day.items()]
    footer = rate_text(rate)
    if total > len(rows):
        footer = f"The first {len(rows)} of {total} changes are shown. " + footer
    return Reply(title=f"Forward schedule of change: {span}",
                 text="" if sections else f"No change holds a window in {span}.",
                 sections=sections, footer=footer)


# ---- the iCalendar feed -------------------------------------------------------------------------------
# icalendar is imported by the functions that build the feed: the chat commands and every start would
# otherwise load it too.

# The columns an event needs, read as plain rows: no ORM objects, no per-change queries.
_ICS_COLUMNS = (Change.id, Change.title, Change.description, Change.kind, Change.model, Change.risk, Change.impact,
                Change.state, Change.outcome, Change.planned_start, Change.planned_end, Change.actual_start,
                Change.actual_end, Change.requester, Change.implementer, Change.implementation_plan,
                Change.backout_plan, Change.test_plan, Change.revision, Change.created_at, Change.updated_at)


def ics_rows(session: Session, start: datetime, end: datetime) -> list[tuple]:
    """(change row, its services) for every published change whose planned window overlaps [start, end):
    two queries, whatever the number of changes."""
    where = (Change.state.in_(tuple(ICS_STATUS)), Change.planned_start < end, Change.planned_end > start)
    changes = session.execute(select(*_ICS_COLUMNS).where(*where).order_by(Change.planned_start, Change.id)).all()
    services = _services_by_change(session, where)
    return [(c, services.get(c.id, [])) for c in changes]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _envelope(cfg: AppConfig) -> tuple[bytes, bytes]:
    """The VCALENDAR around the events: everything before them, and its END line."""
    from icalendar import Calendar, vDuration
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", f"{cfg.bot.name}: changes")
    cal.add("x-wr-caldesc", "The forward schedule of change: requests for change by their planned window "
                            "(their actual window once implemented)")
    cal["refresh-interval"] = vDuration(timedelta(minutes=15))
    cal["refresh-interval"].params["VALUE"] = "DURATION"
    cal["x-published-ttl"] = vDuration(timedelta(minutes=15))
    text = cal.to_ical()
    tail = b"END:VCALENDAR\r\n"
    assert text.endswith(tail)
    return text[:-len(tail)], tail


def _window(c) -> tuple[datetime, datetime | None]:
    """Planned window; for an implemented change its actual one when known and sensible. No end means the
    event is an instant (RFC 5545 3.6.1: DTEND must be later than DTSTART)."""
    start, end = c.planned_start, c.planned_end
    if c.state in DONE and (c.actual_start or c.actual_end):
        a_start, a_end = c.actual_start or start, c.actual_end or end
        if a_end >= a_start:
            start, end = a_start, a_end
    if end <= start:
        return start, None
    return start, end


def _description(cfg: AppConfig, c, services: list[str]) -> str:
    state = c.state + (f" ({OUTCOME_TEXT.get(c.outcome, c.outcome)})" if c.outcome else "")
    lines = [f"State: {state}",
             f"Type: {c.kind}" + (f" ({c.model})" if c.model else "") + f", {c.risk} risk, {c.impact} impact",
             "Services: " + cfg.service_names(services),
             f"Requester: {cfg.person_name(c.requester)}",
             f"Implementer: {cfg.person_name(c.implementer)}",
             f"Planned: {_utc(c.planned_start):%Y-%m-%d %H:%M} – {_utc(c.planned_end):%Y-%m-%d %H:%M} UTC"]
    if c.actual_start or c.actual_end:
        lines.append("Actual: " + " – ".join(f"{_utc(t):%Y-%m-%d %H:%M}" if t else "?"
                                              for t in (c.actual_start, c.actual_end)) + " UTC")
    for label, text in (("Description", c.description), ("Implementation plan", c.implementation_plan),
                        ("Back-out plan", c.backout_plan), ("Test plan", c.test_plan)):
        if text:
            lines += ["", f"{label}:", text]
    return "\n".join(lines)


def event(cfg: AppConfig, c, services: list[str]) -> Event:
    """The VEVENT of one change (a row of ``ics_rows``)."""
    from icalendar import Event, vCategory, vDatetime, vInt, vText
    start, end = _window(c)
    e = Event()
    e["uid"] = vText(f"chg-{c.id}@svcbot")
    e["sequence"] = vInt(c.revision or 0)
    e["dtstamp"] = vDatetime(_utc(c.updated_at))
    e["created"] = vDatetime(_utc(c.created_at))
    e["last-modified"] = vDatetime(_utc(c.updated_at))
    e["dtstart"] = vDatetime(_utc(start))
    if end is not None:
        e["dtend"] = vDatetime(_utc(end))
    e["summary"] = vText(f"CHG-{c.id} {c.title}")
    e["description"] = vText(_description(cfg, c, services))
    e["categories"] = vCategory([c.kind])
    e["status"] = vText(ICS_STATUS[c.state])
    e["transp"] = vText("TRANSPARENT")  # a change does not make its readers busy
    return e


def ics_chunks(cfg: AppConfig, rows: Iterable[tuple], batch: int = 500) -> Iterator[bytes]:
    """The document in pieces of up to ``batch`` events, for a response that streams."""
    head, tail = _envelope(cfg)
    parts = [head]
    for c, services in rows:
        parts.append(event(cfg, c, services).to_ical(sorted=False))
        if len(parts) >= batch:
            yield b"".join(parts)
            parts = []
    parts.append(tail)
    yield b"".join(parts)


def ics(session: Session, cfg: AppConfig, start: datetime, end: datetime) -> bytes:
    """An iCalendar document (RFC 5545) of the changes whose planned window overlaps [start, end)."""
    return b"".join(ics_chunks(cfg, ics_rows(session, start, end)))
