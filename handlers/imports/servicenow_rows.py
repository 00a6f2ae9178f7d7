"""Reading a ServiceNow incident export into ticket histories.

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
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from handlers.core.context import UserError
from handlers.imports.csv_files import Skip, csv_member, day_first_time
from handlers.sla.clocks import DONE_STATES, OPEN_STATES

REQUIRED = ("number", "incident_state", "reopen_count", "sys_mod_count", "opened_at", "sys_updated_at",
            "priority", "assignment_group", "vendor", "resolved_at", "closed_at")
TITLE_COLUMNS = ("category", "subcategory", "u_symptom")
MISSING = "?"
STATES = {"New": "new", "Active": "in-progress", "Awaiting User Info": "awaiting-customer",
          "Awaiting Vendor": "awaiting-vendor", "Awaiting Problem": "awaiting-problem",
          "Awaiting Evidence": "awaiting-evidence", "Resolved": "resolved", "Closed": "closed"}
PRIORITY = re.compile(r"^\s*([1-4])\b")  # "1 - Critical" … "4 - Low"
TIMESTAMP = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")
# The plain form of a time, by halves: a file has a few hundred days and at most 1,440 minutes of the day.
DAY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


Event = tuple[datetime, str, str | None]  # (at, kind, value)


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
                   ) -> tuple[dict[str, list[Row]], Counter, int, dict[str, str]]:
    """Rows by incident number, in the order incidents first appear, each incident's rows in time order.

    ``limit`` counts incidents: the first ``limit`` distinct numbers of the file (their rows wherever they
    are). Returns the incidents, the skipped rows' reasons, how many rows those incidents had, and the
    problem each incident names (``problem_id``, where the export has it: the value of its latest row that
    names one, by ``sys_mod_count``; see handlers/problems/imported.py)."""
    path = Path(path)
    text, archive = _open_text(path)
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            raise UserError(f"{path} is empty.")
        col = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in REQUIRED if c not in col]
        if missing:
            raise UserError(f"{path} is not a ServiceNow incident export: no column {', '.join(missing)}.")
        incidents, skipped, rows_read, problems = _read_rows(reader, len(header), col, zone, limit)
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
    return out, skipped, rows_read, {number: problem for number, (_, problem) in problems.items()}


def _read_rows(reader, width: int, col: dict[str, int], zone: ZoneInfo, limit: int | None
               ) -> tuple[dict[str, list[Row]], Counter, int, dict[str, tuple[int, str]]]:
    """The rows of the incidents taken, in the file's order, the skipped rows' reasons, how many rows
    those incidents had, and the problem each names with the modification that named it last.

    A row is read here, without a call, when every value in it but its times has been read before (by
    ``_row``, and kept) and its times are in the plain form (``_plain_time``): most rows of a file, which
    repeat its few states and priorities and its incidents' groups and titles. Any other row is read by
    ``_row``, which says why it cannot be used. (This loop runs once a row: calls and attribute look-ups
    in it were a third of a second import.)"""
    incidents: dict[str, list[Row]] = {}
    problems: dict[str, tuple[int, str]] = {}
    problem_at = col.get("problem_id")
    skipped: Counter = Counter()
    rows_read = 0
    at = _Columns(col, zone)
    times: dict[str, datetime | None] = {MISSING: None}
    number_at, fields, title_of, new_row = col["number"], at.fields, at.title, _new_row
    mod_counts, reopen_counts, priorities, names, titles = (at.mod_counts, at.reopen_counts, at.priorities,
                                                            at.names, at.titles)
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
        if len(values) == width:
            state, priority, updated, opened, resolved, closed, mod_count, reopen_count, group, vendor = fields(values)
            if updated not in times:
                _plain_time(updated, at, times)
            if opened not in times:
                _plain_time(opened, at, times)
            if resolved not in times:
                _plain_time(resolved, at, times)
            if closed not in times:
                _plain_time(closed, at, times)
            try:
                row = new_row(Row, (times[updated], mod_counts[mod_count], STATES[state], reopen_counts[reopen_count],
                                    priorities[priority], names[group], names[vendor], times[opened],
                                    times[resolved], times[closed], titles[title_of(values)]))
            except KeyError:
                pass  # something not read before
            else:
                # A priority not understood, or no sys_updated_at or opened_at: _row says so.
                if row[4] is not None and row[0] is not None and row[7] is not None:
                    rows.append(row)
                    if problem_at is not None and values[problem_at] not in NO_PROBLEM:
                        _name_problem(problems, number, row[1], values[problem_at])
                    continue
        try:
            if len(values) != width:
                raise Skip("wrong number of columns")
            rows.append(row := _row(values, at, zone, times))
            if problem_at is not None and values[problem_at] not in NO_PROBLEM:
                _name_problem(problems, number, row[1], values[problem_at])
        except Skip as exc:
            skipped[str(exc)] += 1
    return incidents, skipped, rows_read, problems


NO_PROBLEM = frozenset((MISSING, ""))


def _name_problem(problems: dict[str, tuple[int, str]], number: str, mod_count: int, value: str) -> None:
    """The incident names this problem, unless a later modification of it named another."""
    value = " ".join(value.split())
    if value and (number not in problems or mod_count >= problems[number][0]):
        problems[number] = (mod_count, value)


class _Columns:
    """Where each column the history needs is in a row, looked up once per file, and the values already
    parsed: the file's groups, vendors, priorities and titles recur on row after row."""

    def __init__(self, col: dict[str, int], zone: ZoneInfo):
        self.zone = zone
        self.state, self.priority = col["incident_state"], col["priority"]
        self.updated, self.opened = col["sys_updated_at"], col["opened_at"]
        self.resolved, self.closed = col["resolved_at"], col["closed_at"]
        self.mod_count, self.reopen_count = col["sys_mod_count"], col["reopen_count"]
        self.group, self.vendor = col["assignment_group"], col["vendor"]
        title = [col[c] for c in TITLE_COLUMNS if c in col]
        self.title = itemgetter(*title) if len(title) > 1 else lambda values: tuple(values[i] for i in title)
        # Every column the history needs, taken from a row in one call.
        self.fields = itemgetter(self.state, self.priority, self.updated, self.opened, self.resolved, self.closed,
                                 self.mod_count, self.reopen_count, self.group, self.vendor)
        self.priorities: dict[str, str | None] = {}
        self.names: dict[str, str | None] = {}
        self.titles: dict[tuple[str, ...], str] = {}
        self.mod_counts: dict[str, int] = {}
        self.reopen_counts: dict[str, int] = {}
        self.days: dict[str, tuple[int, int, int]] = {}
        self.clocks: dict[str, tuple[int, int, int]] = {}


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
    mod_count = at.mod_counts[text] = _int(text := values[at.mod_count], -1)
    reopen_count = at.reopen_counts[text] = _int(text := values[at.reopen_count], 0)
    return Row(updated, mod_count, state, reopen_count, priority, group, vendor, opened, resolved, closed, title)


_UNSEEN = object()
_new_row = tuple.__new__  # a Row from a tuple of its fields, without the named tuple's Python-level __new__
_WHEN = itemgetter(0, 1)  # a Row's (updated, mod_count): the order of an incident's rows
_AT = itemgetter(0)  # an event's time


def _time(text: str, zone: ZoneInfo, cache: dict, column: str) -> datetime | None:
    """A day-first local wall time (``29/2/2016 01:16``) in UTC; None for ``?``."""
    return day_first_time(text, TIMESTAMP, ("", MISSING), zone, cache, column)


def _plain_time(text: str, at: _Columns, cache: dict) -> datetime | object:
    """A time in the plain form ``d/m/yyyy HH:MM`` (no spaces but the one) in UTC, read by its halves
    (``TIMESTAMP`` read whole costs several times as much), and kept in ``cache``; _UNSEEN for anything else
    (``_time`` reads that, and says why it cannot be used)."""
    date, _, clock = text.partition(" ")
    day = at.days.get(date)
    if day is None:
        if not (m := DAY.fullmatch(date)):
            return _UNSEEN
        day = at.days[date] = (int(m[3]), int(m[2]), int(m[1]))
    hour = at.clocks.get(clock)
    if hour is None:
        if not (m := CLOCK.fullmatch(clock)):
            return _UNSEEN
        hour = at.clocks[clock] = (int(m[1]), int(m[2]), int(m[3] or 0))
    try:
        value = cache[text] = datetime(*day, *hour, tzinfo=at.zone).astimezone(timezone.utc)
    except ValueError:  # no such day or hour
        return _UNSEEN
    return value


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
    steps = [r.updated if r.updated >= opened else opened for r in rows]  # max(r.updated, opened), no call
    close_run = _run_holding(rows, steps, "closed", closed_at)

    events: list[Event] = [(opened, "open", first.priority)]
    if first.group:
        events.append((opened, "assign", first.group))
    state, priority, group, supplier = "new", first.priority, first.group, None
    responded, reopens, mods = False, first.reopen_count, -1
    for i, (at, row) in enumerate(zip(steps, rows)):
        _, mod_count, new, reopen_count, row_priority, row_group, vendor, _, _, _, _ = row  # once, not by name
        if new in OPEN_STATES and state in DONE_STATES and reopen_count <= reopens and 0 <= mod_count < mods:
            continue  # a stale row, not a reopen
        if mod_count > mods:
            mods = mod_count
        if row_priority != priority:
            events.append((at, "priority", row_priority))
            priority = row_priority
        if row_group != group:
            events.append((at, "assign", row_group))
            group = row_group
        if vendor and vendor != supplier:
            events.append((at, "supplier", vendor))
            supplier = vendor
        if new in OPEN_STATES and (state in DONE_STATES or reopen_count > reopens):
            events.append((at, "reopen", None))
            state = "in-progress"
        if reopen_count > reopens:
            reopens = reopen_count
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
