"""The forward schedule of change: what is planned in the days ahead, the change success rate, and the same
schedule as an iCalendar feed (RFC 5545) that calendar clients subscribe to.

- ``calendar_reply``: `change calendar [days]`, the changes that hold a window in the next days, grouped by day
  in the asking person's time zone, with the success rate of the last 90 days beneath.
- ``success_rate``: successful ÷ implemented changes whose work ended in a period, counted by the database.
- ``ics``: one VEVENT per change, its UID stable and its SEQUENCE the change's revision, so a subscribed
  calendar updates the event as the change moves on. ``ics_rows`` and ``ics_chunks`` are the same in two
  steps: two queries however many changes there are, then the document in pieces. ``ics_stream`` reads the
  rows a page at a time as it writes them, for a response that streams; ``ics_etag`` is the validator a
  polling client's copy is compared with, from one aggregate query.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterable, Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime, and_, case, func, select, tuple_, type_coerce
from sqlalchemy.orm import Session

from handlers.changes import rules
from handlers.changes.record import OUTCOME_TEXT, OUTCOMES, STATE_ICON, window_text
from handlers.core.config import AppConfig
from handlers.core.context import Command, Context, Reply, Section, UserError
from storage.base import UTCDateTime
from storage.models import Change, ChangeService

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
    for change_id, service_id in session.connection().execute(query):  # Core: no ORM loading for plain rows
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
# Written here line by line: icalendar's object model spent some 300 µs on each event, half of it folding
# lines a character at a time (bench/changes_at_scale.py). Text is escaped and lines are folded as
# icalendar 7 does it, so the document is the same, byte for byte; the tests read it back with icalendar.

# The columns an event needs, read as plain rows: no ORM objects, no per-change queries.
_ICS_COLUMNS = (Change.id, Change.title, Change.description, Change.kind, Change.model, Change.risk, Change.impact,
                Change.state, Change.outcome, Change.planned_start, Change.planned_end, Change.actual_start,
                Change.actual_end, Change.requester, Change.implementer, Change.implementation_plan,
                Change.backout_plan, Change.test_plan, Change.revision, Change.created_at, Change.updated_at)
# Times as the naive UTC values the store holds: the feed writes UTC anyway, and making every one aware cost
# more than the rest of reading a row.
_ICS_SELECT = tuple(type_coerce(col, DateTime()).label(col.key) if isinstance(col.type, UTCDateTime) else col
                    for col in _ICS_COLUMNS)
# Part of the ETag: raise it when the same changes and configuration would be written differently.
ICS_FORMAT = 1
CALDESC = ("The forward schedule of change: requests for change by their planned window (their actual window "
           "once implemented)")
FOLD = 74  # octets of a folded line's text; a continuation's leading space makes 75 (RFC 5545 3.1)


def _published(start: datetime, end: datetime) -> tuple:
    return Change.state.in_(tuple(ICS_STATUS)), Change.planned_start < end, Change.planned_end > start


def ics_rows(session: Session, start: datetime, end: datetime, after: tuple | None = None,
             limit: int | None = None) -> list[tuple]:
    """(change row, its services) for every published change whose planned window overlaps [start, end), by
    planned start: two queries, whatever the number of changes. ``after`` and ``limit`` read a page: the
    first ``limit`` changes after (planned start, id) ``after``."""
    where = _published(start, end)
    if after is not None:
        where += (tuple_(Change.planned_start, Change.id) > (after[0].replace(tzinfo=UTC), after[1]),)
    changes = session.connection().execute(
        select(*_ICS_SELECT).where(*where).order_by(Change.planned_start, Change.id).limit(limit)).all()
    if not changes:
        return []
    if limit is not None and len(changes) == limit:  # the services of this page only
        last = changes[-1]
        where += (tuple_(Change.planned_start, Change.id) <= (last.planned_start.replace(tzinfo=UTC), last.id),)
    services = _services_by_change(session, where)
    return [(c, services.get(c.id, [])) for c in changes]


def ics_pages(sessions, start: datetime, end: datetime, first: int = 500, page: int = 5000) -> Iterator[list]:
    """``ics_rows`` a page at a time, each read in a short session of its own: on SQLite every session takes
    the write lock, which a session as long as the stream to a slow client would hold. The first page is
    small, for the first events to go out soon. A change that moves between two pages is written once, or
    missed until the next poll (the ETag, read before the events, is older than what moved)."""
    after, seen, size = None, set(), first
    while True:
        with sessions() as s:
            rows = ics_rows(s, start, end, after, size)
        yield [(c, services) for c, services in rows if c.id not in seen]
        if len(rows) < size:
            return
        seen.update(c.id for c, _ in rows)
        after, size = (rows[-1][0].planned_start, rows[-1][0].id), page


def ics_etag(session: Session, cfg: AppConfig, start: datetime, end: datetime, window: str = "") -> str:
    """A validator of the feed of [start, end) at this moment, from one aggregate query, for the feed of the
    same ``window`` (how far ahead and back of now it reaches) asked again later.

    Every step that changes what a change shows raises its revision (the import too), so the number of
    changes and the sum of their revisions change whenever a row of the feed would. With the store unchanged
    and the window only sliding with time, changes only enter the window (planned start before its end) and
    only leave it (planned end not after its start): two counts that only grow, so equal counts are the same
    changes. The names the feed shows come from the configuration, which is hashed with them."""
    published = Change.state.in_(tuple(ICS_STATUS))

    def how_many(*condition):
        return func.coalesce(func.sum(case((and_(*condition), 1), else_=0)), 0)
    store = session.execute(select(
        func.count(Change.id), func.coalesce(func.sum(Change.revision), 0), func.max(Change.id),
        func.max(Change.updated_at), how_many(published, Change.planned_start < end),
        how_many(published, Change.planned_end <= start))).one()
    shown = (cfg.bot.name, [(s.id, s.name) for s in cfg.services], [(p.id, p.name) for p in cfg.people])
    return hashlib.sha256(repr((ICS_FORMAT, window, tuple(store), shown)).encode()).hexdigest()[:32]


def _text(value: str) -> str:
    """A TEXT value escaped (RFC 5545 3.3.11) as icalendar escapes it, a literal backslash-N taken for a line break."""
    return (value.replace("\\N", "\n").replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def _fold(line: str) -> str:
    """A content line folded at 75 octets (RFC 5545 3.1), never inside a UTF-8 character and, as icalendar
    does for clients that mind, never right after a backslash or caret that may begin an escape."""
    if len(line) <= FOLD and line.isascii():
        return line
    data = line.encode()
    pieces, start = [], 0
    while len(data) - start > FOLD:
        cut = start + FOLD
        while data[cut] & 0xC0 == 0x80:  # a continuation byte: cut before its character instead
            cut -= 1
        if data[cut - 1] in b"\\^":
            cut -= 1
        pieces.append(data[start:cut])
        start = cut
    if not pieces:
        return line
    pieces.append(data[start:])
    return b"\r\n ".join(pieces).decode()


def _stamp(moment: datetime) -> str:
    """A naive UTC time as an iCalendar UTC DATE-TIME."""
    return moment.isoformat("T", "seconds").replace("-", "").replace(":", "") + "Z"


def _minute(moment: datetime) -> str:
    return moment.isoformat(" ", "minutes")


def _envelope(cfg: AppConfig) -> tuple[str, str]:
    """The VCALENDAR around the events, in icalendar's order of properties: everything before them, and its
    END line."""
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{_text(PRODID)}", "CALSCALE:GREGORIAN",
            _fold(f"X-WR-CALDESC:{_text(CALDESC)}"), _fold(f"X-WR-CALNAME:{_text(f'{cfg.bot.name}: changes')}"),
            "REFRESH-INTERVAL;VALUE=DURATION:PT15M", "X-PUBLISHED-TTL:PT15M", ""]
    return "\r\n".join(head), "END:VCALENDAR\r\n"


class _Names:
    """People's and services' names as the configuration gives them, each looked up once per document."""

    def __init__(self, cfg: AppConfig):
        self.cfg = cfg
        self.services: dict[str, str] = {}
        self.people: dict[str | None, str] = {}

    def of_services(self, ids: list[str]) -> str:
        for i in ids:
            if i not in self.services:
                self.services[i] = self.cfg.service_names([i])
        return ", ".join(self.services[i] for i in ids)

    def of_person(self, person_id: str | None) -> str:
        if person_id not in self.people:
            self.people[person_id] = self.cfg.person_name(person_id)
        return self.people[person_id]


def _window(state: str, planned_start: datetime, planned_end: datetime, actual_start: datetime | None,
            actual_end: datetime | None) -> tuple[datetime, datetime | None]:
    """Planned window; for an implemented change its actual one when known and sensible. No end means the
    event is an instant (RFC 5545 3.6.1: DTEND must be later than DTSTART)."""
    start, end = planned_start, planned_end
    if state in DONE and (actual_start or actual_end):
        a_start, a_end = actual_start or start, actual_end or end
        if a_end >= a_start:
            start, end = a_start, a_end
    if end <= start:
        return start, None
    return start, end


def _event(c, services: list[str], names: _Names) -> str:
    """The VEVENT of one change (a row of ``ics_rows``), its lines ended by CRLF."""
    (change_id, title, description, kind, model, risk, impact, state, outcome, planned_start, planned_end,
     actual_start, actual_end, requester, implementer, implementation_plan, backout_plan, test_plan, revision,
     created_at, updated_at) = c  # in the order of _ICS_COLUMNS
    shown = state + (f" ({OUTCOME_TEXT.get(outcome, outcome)})" if outcome else "")
    text = [f"State: {shown}",
            f"Type: {kind}" + (f" ({model})" if model else "") + f", {risk} risk, {impact} impact",
            "Services: " + names.of_services(services),
            f"Requester: {names.of_person(requester)}",
            f"Implementer: {names.of_person(implementer)}",
            f"Planned: {_minute(planned_start)} – {_minute(planned_end)} UTC"]
    if actual_start or actual_end:
        text.append("Actual: " + " – ".join(_minute(t) if t else "?" for t in (actual_start, actual_end)) + " UTC")
    for label, more in (("Description", description), ("Implementation plan", implementation_plan),
                        ("Back-out plan", backout_plan), ("Test plan", test_plan)):
        if more:
            text += ["", f"{label}:", more]
    start, end = _window(state, planned_start, planned_end, actual_start, actual_end)
    updated = _stamp(updated_at)
    lines = ["BEGIN:VEVENT", f"UID:chg-{change_id}@svcbot", f"SEQUENCE:{revision or 0}", f"DTSTAMP:{updated}",
             f"CREATED:{_stamp(created_at)}", f"LAST-MODIFIED:{updated}", f"DTSTART:{_stamp(start)}"]
    if end is not None:
        lines.append(f"DTEND:{_stamp(end)}")
    lines += [_fold(f"SUMMARY:{_text(f'CHG-{change_id} {title}')}"), _fold("DESCRIPTION:" + _text("\n".join(text))),
              _fold(f"CATEGORIES:{_text(kind)}"), f"STATUS:{ICS_STATUS[state]}",
              "TRANSP:TRANSPARENT",  # a change does not make its readers busy
              "END:VEVENT", ""]
    return "\r\n".join(lines)


def ics_chunks(cfg: AppConfig, rows: Iterable[tuple], batch: int = 500) -> Iterator[bytes]:
    """The document in pieces of up to ``batch`` events, for a response that streams."""
    head, tail = _envelope(cfg)
    names = _Names(cfg)
    parts = [head]
    for c, services in rows:
        parts.append(_event(c, services, names))
        if len(parts) >= batch:
            yield "".join(parts).encode()
            parts = []
    parts.append(tail)
    yield "".join(parts).encode()


def ics_stream(sessions, cfg: AppConfig, start: datetime, end: datetime) -> Iterator[bytes]:
    """``ics_chunks`` of the changes in [start, end), read a page at a time as they are written."""
    return ics_chunks(cfg, (row for rows in ics_pages(sessions, start, end) for row in rows))


def ics(session: Session, cfg: AppConfig, start: datetime, end: datetime) -> bytes:
    """An iCalendar document (RFC 5545) of the changes whose planned window overlaps [start, end)."""
    return b"".join(ics_chunks(cfg, ics_rows(session, start, end)))
