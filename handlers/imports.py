"""Importing ticket history from other tools. Today: a ServiceNow incident export.

ServiceNow's audit trail, exported as CSV (for instance the UCI "Incident management process enriched event
log"), has one row per update of an incident: the incident's fields as they stood after that update, and
when it happened (``sys_updated_at``). An import rebuilds each incident's history as svcbot ticket events,
each at the time it happened, by comparing every row with the one before it:

- ``open`` at ``opened_at`` with the first row's priority, and ``assign`` there to its assignment group;
- a change of ``incident_state``: New → new, Active → in-progress, Awaiting User Info → awaiting-customer,
  Awaiting Vendor → awaiting-vendor, Awaiting Problem → awaiting-problem, Awaiting Evidence →
  awaiting-evidence as ``state`` events; Resolved as ``resolve``; Closed as ``close``. Rows whose state is
  ``-100`` (or anything else unknown) are skipped and counted with the reason;
- the first move out of New to another open state is also the first response (``respond``): ServiceNow has
  no such field, and this is when someone took the incident up;
- a move from Resolved or Closed back to an open state, or ``reopen_count`` rising, is a ``reopen`` — unless
  the row is stale: ``reopen_count`` did not rise and its ``sys_mod_count`` is below an earlier row's, so it is
  an older version of the record stamped after the resolution (INC0000137: an update of modification 1 at
  11:10, after the Resolved row of modification 2 at 11:03). A stale row is passed over whole;
- a change of priority (``1 - Critical`` → P1 … ``4 - Low`` → P4) is ``priority``; of ``assignment_group``
  an ``assign`` (a hand-off; ``?`` clears it); a ``vendor`` other than ``?`` a ``supplier`` event;
- the rows say when it was resolved: each move to Resolved is a ``resolve`` at that row's time. The export's
  ``resolved_at`` (the *last* resolution) is often later than the row that resolved it — in 295 incidents of
  the UCI log, by 23 h at the median — so it is not put on the clocks; it is kept on the ticket as
  ``source_resolved_at``. Only if the export ends before the incident's rows reach a resolution is it
  recorded at ``resolved_at``;
- ``closed_at`` holds the last close: the stretch of Closed rows that contains that instant is closed at
  ``closed_at``; earlier ones, undone by a reopen, at their own row's time. If the export ends before the
  incident's rows reach it, the close is still recorded at that time.

Times are local wall times (no zone in the file, day first: ``d/m/yyyy HH:MM``) in the zone given, by default
the zone of the service's calendar, and stored in UTC; a repeated hour at a DST change is read as its first
occurrence. An event dated before ``opened_at`` (a few rows of the real log are) is moved to ``opened_at``.

Tickets are ``source="servicenow"``, ``external_id`` = the incident number. Importing is additive and
idempotent: an event already in a ticket's history (same time, kind and value) is not added again, so the same
file a second time changes nothing, and a later export adds only what is new (and re-measures only those
tickets' clocks). Nothing is ever taken out of a history. So import every export of one instance with the same
zone: the same rows read in another zone are other instants, and would be added. A ticket imported before into
another service moves to the one given (and is measured again). Clocks are measured with
``announce_past=False``: history is never announced as news.

``limit`` counts incidents (the first N incident numbers in the file, with all their rows wherever they are),
never rows, so an incident is never cut in two by it; ``rows_read`` counts the rows of those incidents.

Incidents are written a few hundred at a time, each batch in one transaction with one audit record
(``import.servicenow``) when it changed anything: tickets and events are built in memory, the batch's
existing tickets and events are read with one query each (as plain rows: an unchanged ticket is never
loaded as an object), new tickets and all events are inserted with one executemany each, and the clocks of
every ticket that changed are measured once, from the whole history in hand, and written together
(``breaches.sync_clocks_of_histories``: the same measure ``sync_clocks`` takes from the store).
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from operator import itemgetter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import DateTime, select, type_coerce

from handlers import breaches, tickets
from handlers.clocks import DONE_STATES, OPEN_STATES, Event as ClockEvent
from handlers.core import Actor, Command, Context, UserError
from handlers.exports import Skip, batches, collector_paused, csv_member, day_first_time, insert_rows
from storage.models import Ticket, TicketEvent

SOURCE = "servicenow"
BATCH = 250  # incidents per transaction
REQUIRED = ("number", "incident_state", "reopen_count", "sys_mod_count", "opened_at", "sys_updated_at",
            "priority", "assignment_group", "vendor", "resolved_at", "closed_at")
TITLE_COLUMNS = ("category", "subcategory", "u_symptom")
MISSING = "?"
STATES = {"New": "new", "Active": "in-progress", "Awaiting User Info": "awaiting-customer",
          "Awaiting Vendor": "awaiting-vendor", "Awaiting Problem": "awaiting-problem",
          "Awaiting Evidence": "awaiting-evidence", "Resolved": "resolved", "Closed": "closed"}
PRIORITY = re.compile(r"^\s*([1-4])\b")  # "1 - Critical" … "4 - Low"
TIMESTAMP = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")
IMPORTER = Actor(person_id="servicenow-import", name="ServiceNow import", platform="import")


@dataclass
class ImportResult:
    tickets_created: int = 0
    tickets_updated: int = 0
    tickets_unchanged: int = 0
    events_added: int = 0
    rows_read: int = 0  # rows of the incidents taken (all of them when there is no limit), skipped ones too
    rows_skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)  # why rows were skipped → how many

    @property
    def tickets(self) -> int:
        return self.tickets_created + self.tickets_updated + self.tickets_unchanged

    def lines(self) -> list[str]:
        out = [f"tickets created: {self.tickets_created}", f"tickets updated: {self.tickets_updated}",
               f"tickets unchanged: {self.tickets_unchanged}", f"events added: {self.events_added}",
               f"rows read: {self.rows_read}", f"rows skipped: {self.rows_skipped}"]
        out += [f"  {reason}: {n}" for reason, n in sorted(self.skip_reasons.items())]
        return out


class Row(NamedTuple):
    """The columns of one export row that the history is built from, parsed. (A named tuple: a file has
    a hundred thousand of them, and it is the cheapest immutable record to make.)"""

    updated: datetime  # UTC
    mod_count: int
    state: str  # svcbot's name for it
    reopen_count: int
    priority: str  # P1 … P4
    group: str | None
    vendor: str | None
    opened: datetime
    resolved: datetime | None
    closed: datetime | None
    title: str


Event = tuple[datetime, str, str | None]  # (at, kind, value)


# ------------------------------------------------------------------------------------------- reading

def _open_text(path: Path) -> tuple[io.TextIOBase, zipfile.ZipFile | None]:
    """The CSV's text: the file itself, or the one .csv member of a .zip."""
    try:
        if zipfile.is_zipfile(path):
            archive = zipfile.ZipFile(path)
            try:
                raw = archive.open(csv_member(archive, path))
            except UserError:
                archive.close()
                raise
            return io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), archive
        return open(path, encoding="utf-8-sig", newline=""), None
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except zipfile.BadZipFile as exc:
        raise UserError(f"Cannot read {path}: {exc}.") from None


def read_incidents(path: str | Path, zone: ZoneInfo, limit: int | None = None
                   ) -> tuple[dict[str, list[Row]], Counter, int]:
    """Rows by incident number, in the order incidents first appear, each incident's rows in time order.

    ``limit`` counts incidents: the first ``limit`` distinct numbers of the file (their rows wherever they
    are). Returns the incidents, the skipped rows' reasons, and how many rows those incidents had."""
    path = Path(path)
    text, archive = _open_text(path)
    incidents: dict[str, list[Row]] = {}
    skipped: Counter = Counter()
    rows_read = 0
    times: dict[str, datetime | None] = {MISSING: None}
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            raise UserError(f"{path} is empty.")
        col = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in REQUIRED if c not in col]
        if missing:
            raise UserError(f"{path} is not a ServiceNow incident export: no column {', '.join(missing)}.")
        number_at, at = col["number"], _Columns(col)
        for values in reader:
            if not values:
                continue
            number = values[number_at].strip() if len(values) > number_at else ""
            if number in ("", MISSING):
                if limit is None or len(incidents) < limit:
                    rows_read += 1
                    skipped["no incident number"] += 1
                continue
            rows = incidents.get(number)
            if rows is None:
                if limit is not None and len(incidents) >= limit:
                    continue  # beyond the limit: not read
                rows = incidents[number] = []
            rows_read += 1
            try:
                if len(values) != len(header):
                    raise Skip("wrong number of columns")
                rows.append(_row(values, at, zone, times))
            except Skip as exc:
                skipped[str(exc)] += 1
    except csv.Error as exc:
        raise UserError(f"{path} is not readable CSV: {exc}.") from None
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise UserError(f"Cannot read {path}: {exc}.") from None
    finally:
        text.close()
        if archive is not None:
            archive.close()
    out = {}
    for number, rows in incidents.items():
        if rows:
            rows.sort(key=_WHEN)
            out[number] = rows
    return out, skipped, rows_read


class _Columns:
    """Where each column the history needs is in a row, looked up once per file, and the values already
    parsed: the file's groups, vendors, priorities and titles recur on row after row."""

    def __init__(self, col: dict[str, int]):
        self.state, self.priority = col["incident_state"], col["priority"]
        self.updated, self.opened = col["sys_updated_at"], col["opened_at"]
        self.resolved, self.closed = col["resolved_at"], col["closed_at"]
        self.mod_count, self.reopen_count = col["sys_mod_count"], col["reopen_count"]
        self.group, self.vendor = col["assignment_group"], col["vendor"]
        title = [col[c] for c in TITLE_COLUMNS if c in col]
        self.title = itemgetter(*title) if len(title) > 1 else lambda values: tuple(values[i] for i in title)
        self.priorities: dict[str, str | None] = {}
        self.names: dict[str, str | None] = {}
        self.titles: dict[tuple[str, ...], str] = {}


def _row(values: list[str], at: _Columns, zone: ZoneInfo, times: dict) -> Row:
    raw_state = values[at.state].strip()
    state = STATES.get(raw_state)
    if state is None:
        raise Skip(f"incident_state {raw_state}" if raw_state == "-100" else f"unknown incident_state '{raw_state}'")
    priority = at.priorities.get(text := values[at.priority], _UNSEEN)
    if priority is _UNSEEN:
        m = PRIORITY.match(text)
        priority = at.priorities[text] = f"P{m[1]}" if m else None
    if priority is None:
        raise Skip(f"unknown priority '{text.strip()}'")
    updated = _time(values[at.updated], zone, times, "sys_updated_at")
    opened = _time(values[at.opened], zone, times, "opened_at")
    if updated is None or opened is None:
        raise Skip("no sys_updated_at" if updated is None else "no opened_at")
    try:
        resolved = _time(values[at.resolved], zone, times, "resolved_at")
        closed = _time(values[at.closed], zone, times, "closed_at")
    except Skip:  # a damaged resolved_at or closed_at: the rows' states still tell
        resolved = closed = None
    names = at.names
    group = names.get(text := values[at.group], _UNSEEN)
    if group is _UNSEEN:
        group = names[text] = _value(text)
    vendor = names.get(text := values[at.vendor], _UNSEEN)
    if vendor is _UNSEEN:
        vendor = names[text] = _value(text)
    title = at.titles.get(key := at.title(values))
    if title is None:
        title = at.titles[key] = " / ".join(t.strip() for t in key if t.strip() not in ("", MISSING))
    return Row(updated, _int(values[at.mod_count], -1), state, _int(values[at.reopen_count], 0), priority, group,
               vendor, opened, resolved, closed, title)


_UNSEEN = object()
_WHEN = itemgetter(0, 1)  # a Row's (updated, mod_count): the order of an incident's rows
_AT = itemgetter(0)  # an event's time


def _time(text: str, zone: ZoneInfo, cache: dict, column: str) -> datetime | None:
    """A day-first local wall time (``29/2/2016 01:16``) in UTC; None for ``?``."""
    return day_first_time(text, TIMESTAMP, ("", MISSING), zone, cache, column)


def _value(text: str) -> str | None:
    text = text.strip()
    return None if text in ("", MISSING) else text[:128]


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


# ------------------------------------------------------------------------------------------- history

def history(rows: list[Row]) -> list[Event]:
    """An incident's events, rebuilt from its rows (in time order), in the order they happened."""
    last, first = rows[-1], rows[0]
    opened = last.opened
    resolved_at = max(last.resolved, opened) if last.resolved else None
    closed_at = max(last.closed, opened) if last.closed else None
    steps = [max(r.updated, opened) for r in rows]
    close_run = _run_holding(rows, steps, "closed", closed_at)

    events: list[Event] = [(opened, "open", first.priority)]
    if first.group:
        events.append((opened, "assign", first.group))
    state, priority, group, supplier = "new", first.priority, first.group, None
    responded, reopens, mods = False, first.reopen_count, -1
    for i, (at, row) in enumerate(zip(steps, rows)):
        if (row.state in OPEN_STATES and state in DONE_STATES and row.reopen_count <= reopens
                and 0 <= row.mod_count < mods):
            continue  # a stale row, not a reopen
        mods = max(mods, row.mod_count)
        if row.priority != priority:
            events.append((at, "priority", row.priority))
            priority = row.priority
        if row.group != group:
            events.append((at, "assign", row.group))
            group = row.group
        if row.vendor and row.vendor != supplier:
            events.append((at, "supplier", row.vendor))
            supplier = row.vendor
        new = row.state
        if new in OPEN_STATES and (state in DONE_STATES or row.reopen_count > reopens):
            events.append((at, "reopen", None))
            state = "in-progress"
        reopens = max(reopens, row.reopen_count)
        if new == state:
            continue
        if new == "resolved":
            events.append((at, "resolve", None))
            responded = True
        elif new == "closed":
            events.append((closed_at if i == close_run else at, "close", None))
            responded = True
        else:
            if state == "new" and not responded:
                events.append((at, "respond", None))
                responded = True
            events.append((at, "state", new))
        state = new
    # An export taken before the incident's rows reach its resolution or close still says when they were.
    if resolved_at and resolved_at > steps[-1] and state in OPEN_STATES:
        events.append((resolved_at, "resolve", None))
        state = "resolved"
    if closed_at and close_run is None and closed_at > steps[-1] and state != "closed":
        events.append((closed_at, "close", None))
    events.sort(key=_AT)  # stable: the order within one instant is the order things were seen
    return events


def _run_holding(rows: list[Row], steps: list[datetime], state: str, at: datetime | None) -> int | None:
    """The row that starts the last stretch of rows in ``state`` during which ``at`` falls, if any."""
    if at is None:
        return None
    found = None
    i = 0
    while i < len(rows):
        if rows[i].state != state or (i and rows[i - 1].state == state):
            i += 1
            continue
        j = i
        while j + 1 < len(rows) and rows[j + 1].state == state:
            j += 1
        end = steps[j + 1] if j + 1 < len(rows) else None
        if steps[i] <= at and (end is None or at <= end):
            found = i
        i = j + 1
    return found


# ------------------------------------------------------------------------------------------- writing

def _refresh(ticket, events: list[Event]) -> None:
    """The ticket's current fields from its whole history (in order), as tickets.record would leave them."""
    ticket.state, ticket.responded_at, ticket.resolved_at, ticket.closed_at = "new", None, None, None
    ticket.assignment_group = ticket.supplier = None
    for at, kind, value in events:
        if kind == "open":
            ticket.priority = value or ticket.priority
        else:
            tickets._apply(ticket, kind, value, at)


def _new_ticket(number: str, service_id: str, rows: list[Row], events: list[Event]) -> dict:
    """A new ticket's row. Worked out on a plain object: the mapped class's attribute events cost more
    than the work itself when there are thousands."""
    ticket = SimpleNamespace(kind="incident", source=SOURCE, external_id=number, service_id=service_id,
                             title=f"{number} · {rows[0].title}" if rows[0].title else f"ServiceNow {number}",
                             priority=events[0][2], state="new", opened_at=rows[-1].opened, opened_by=None,
                             updated_at=rows[-1].opened, source_resolved_at=rows[-1].resolved)
    _refresh(ticket, events)
    return vars(ticket)


def _kept(events: list[Event]) -> list[Event]:
    """The events with their times as the store keeps them: naive UTC (the history's times are UTC)."""
    return [(at.replace(tzinfo=None), kind, value) for at, kind, value in events]


def _missing(stored: list[Event], events: list[Event]) -> list[Event]:
    """The events of the rebuilt history that the stored one (its times naive UTC, as kept) lacks."""
    kept = _kept(events)
    if stored == kept:
        return []  # the usual case on a second import: the same history, in the same order
    have = Counter(stored)
    missing = []
    for event, key in zip(events, kept):
        if have[key] > 0:
            have[key] -= 1
        else:
            missing.append(event)
    return missing


def import_servicenow(ctx: Context, path: str | Path, service_id: str, timezone: str | None = None,
                      limit: int | None = None, *, batch: int = BATCH, actor: Actor | None = None) -> ImportResult:
    """Import a ServiceNow incident export (the CSV, or a .zip holding it) into a service.

    ``limit`` counts incidents (the first N incident numbers of the file), never rows, so an incident is
    always imported whole. Raises UserError for an unknown service or zone and an unreadable file."""
    service = ctx.config.service(service_id)
    if service is None:
        known = ", ".join(s.id for s in ctx.config.services)
        raise UserError(f"There is no service '{service_id}'. Known: {known}.")
    zone_name = timezone or ctx.config.calendars[service.calendar].timezone
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"'{zone_name}' is not an IANA time zone (like Europe/London).") from None
    if limit is not None and limit < 0:
        raise UserError("The limit counts incidents; give a number of 0 or more.")
    path = Path(path)
    with collector_paused():
        incidents, skipped, rows_read = read_incidents(path, zone, limit)
        result = ImportResult(rows_read=rows_read, rows_skipped=sum(skipped.values()), skip_reasons=dict(skipped))
        cmd = Command(actor=actor or IMPORTER, text=f"import servicenow {path.name} --service {service.id}")
        stored_times: dict = {}  # each instant in the store's form, worked out once for the whole file
        for numbers in batches(list(incidents), batch):
            _import_batch(ctx, cmd, service.id, path.name, numbers, incidents, result, stored_times)
    return result


def _import_batch(ctx: Context, cmd: Command, service_id: str, file_name: str, numbers: list[str],
                  incidents: dict[str, list[Row]], result: ImportResult, stored_times: dict) -> None:
    built = {n: history(incidents[n]) for n in numbers}
    with ctx.change(cmd) as work:
        session = work.session
        # Read as plain rows: a ticket is loaded as an object only when it changes.
        existing = {number: (ticket_id, service, source_resolved) for number, ticket_id, service, source_resolved
                    in session.execute(select(Ticket.external_id, Ticket.id, Ticket.service_id,
                                              Ticket.source_resolved_at)
                                       .where(Ticket.source == SOURCE, Ticket.external_id.in_(numbers))).all()}
        # Each ticket's stored history in the store's order (by time, then as recorded), its times as the
        # store keeps them (naive UTC): most are only compared, and a second import reads every one.
        known: dict[int, list[Event]] = {t[0]: [] for t in existing.values()}
        same = False  # every stored history is the rebuilt one, event for event: the usual second import
        if known:
            stored = session.connection().execute(
                select(TicketEvent.ticket_id, type_coerce(TicketEvent.at, DateTime()), TicketEvent.kind,
                       TicketEvent.value)
                .where(TicketEvent.ticket_id.in_(list(known)))
                .order_by(TicketEvent.ticket_id, TicketEvent.at, TicketEvent.id)).all()
            by_id = sorted((ticket_id, number) for number, (ticket_id, _, _) in existing.items())
            same = stored == [(ticket_id, at.replace(tzinfo=None), kind, value)
                              for ticket_id, number in by_id for at, kind, value in built[number]]
            if not same:
                for ticket_id, at, kind, value in stored:
                    known[ticket_id].append((at, kind, value))

        created: list[tuple[str, dict, list[Event]]] = []
        changed: list[tuple[int, list[Event], list[Event]]] = []  # id, the events it lacks, the whole history
        for number in numbers:
            events, rows = built[number], incidents[number]
            if number not in existing:
                created.append((number, _new_ticket(number, service_id, rows, events), events))
                continue
            ticket_id, service, source_resolved = existing[number]
            missing = [] if same else _missing(known[ticket_id], events)
            if not missing and service == service_id and source_resolved == rows[-1].resolved:
                result.tickets_unchanged += 1
                continue
            # The whole history in the order the store will give it back: by time, then older rows first.
            merged = sorted([(at.replace(tzinfo=timezone.utc), 0, k, kind, value)
                             for k, (at, kind, value) in enumerate(_kept(events) if same else known[ticket_id])]
                            + [(at, 1, k, kind, value) for k, (at, kind, value) in enumerate(missing)])
            changed.append((ticket_id, missing, [(at, kind, value) for at, _, _, kind, value in merged]))
        if not created and not changed:
            return

        if changed:
            loaded = {t.id: t for t in session.scalars(select(Ticket).where(Ticket.id.in_([c[0] for c in changed])))}
            for ticket_id, _, whole in changed:
                ticket = loaded[ticket_id]
                ticket.service_id, ticket.source_resolved_at = service_id, incidents[ticket.external_id][-1].resolved
                _refresh(ticket, whole)
            session.flush()
        ids: dict[str, int] = {}
        if created:
            insert_rows(session, Ticket.__table__, [fields for _, fields, _ in created], stored_times)
            ids = dict(session.execute(select(Ticket.external_id, Ticket.id).where(
                Ticket.source == SOURCE, Ticket.external_id.in_([number for number, _, _ in created]))).all())
        added = [(ids[number], events, events) for number, _, events in created] + changed
        rows_out = [dict(ticket_id=ticket_id, at=at, kind=kind, value=value, person_id=None, recorded_at=work.now)
                    for ticket_id, events, _ in added for at, kind, value in events]
        insert_rows(session, TicketEvent.__table__, rows_out, stored_times)
        # Every clock measured once, from the history in hand: the same order and events the store now holds.
        breaches.sync_clocks_of_histories(
            work, [(ticket_id, service_id, [ClockEvent(*e) for e in whole]) for ticket_id, _, whole in added],
            announce_past=False, stored_times=stored_times)
        work.audit("import.servicenow", f"{SOURCE}:{file_name}"[:128], service=service_id,
                   created=len(created), updated=len(changed), events=len(rows_out),
                   first=numbers[0], last=numbers[-1])
    result.tickets_created += len(created)
    result.tickets_updated += len(changed)
    result.events_added += len(rows_out)
