"""What conflict detection, the forward schedule of change and the iCalendar feed cost on a real change
history, each against a raw SQL query of the same rows measured in the same run on the same file.

The data: Rabobank Group ICT's change export (shared/data/bpic2014-rabobank, BPI Challenge 2014; 30,275 rows,
one per affected CI), loaded through ``handlers.imports.rabobank.import_rabobank_changes`` into an empty SQLite
store: about 16,500 changes on some 280 service components. The real file closes every change, so to have a
forward schedule the store is then turned back to ``NOW`` (1 Dec 2013): every change whose window had not
ended by then, recorded by then or not, is put back in progress (begun), awaiting approval (CAB approval
needed) or scheduled, with no actual times nor outcome. Some 10,000 changes then hold a window ahead: a
heavier forward schedule than Rabobank's ever was on one day.

(a) Conflict detection for a new change: PROBES new changes on one to three of the busiest components, each a
    two-hour window within the next 30 days, through ``handlers.changes.rules.conflicts`` and through
    ``handlers.changes.rules.issues`` (conflicts, freezes and maintenance windows, as approval checks them),
    against the same overlap query on ``change_services`` with sqlite3.
(b) ``change calendar 30`` (``handlers.changes.calendar.calendar_reply``: the count, the first 100 changes, their
    services, the 90-day success rate) against one raw SELECT of every holding change in the next 30 days with
    its services.
(c) ``handlers.changes.calendar.ics`` for a year (every change of Jun 2013 – May 2014, whatever its state) against
    a raw SELECT of the same columns and services; also what ``GET /changes.ics`` does before its first piece
    (the ETag query, the first page of rows, its events: ``ics_etag`` and ``ics_stream``), the ETag query
    alone (all an unchanged poll costs) and the statements each sends.

    What the profile (cProfile of ``ics`` on this data) showed while icalendar's object model built the feed:
    some 300 µs an event, 60× the raw SELECT (about 5 s for the year on 2 cores). Half of it was icalendar's
    ``_foldline``, which folds every content line a character at a time, encoding each character to count
    its octets; most of the rest was the object model itself (a Parameters and a CaselessDict for each of
    229,000 properties, a time-zone look-up for every DATE-TIME, text escaped on the way in and out).
    Reading the rows was 6× the raw SELECT: the ORM's row loading and, above all, making some 78,000 stored
    times aware one by one (``datetime.replace`` in the store's UTCDateTime type). Now each event is written
    as text, escaped and folded as icalendar does it (the same document, byte for byte), and rows are read
    with Core, times as the naive UTC values stored: reading is about 2× the raw SELECT, the whole document
    about 5× (most of what remains is escaping and folding the long DESCRIPTION and formatting the
    DATE-TIMEs), the first piece well under 1× and an unchanged poll's ETag query about 0.1×.

Ratios are printed, never asserted. Run: `.venv/bin/python bench/changes_at_scale.py [--probes N]`.
"""
from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event  # noqa: E402

from bot.runtime import Runtime  # noqa: E402
from handlers.changes import calendar, rules  # noqa: E402
from handlers.core.config_loading import parse_config  # noqa: E402
from handlers.core.context import Actor, Command  # noqa: E402
from handlers.imports.rabobank import import_rabobank_changes  # noqa: E402
from storage.models import Change  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "bpic2014-rabobank" / "detail_change.zip"
NOW = datetime(2013, 12, 1, 9, 0, tzinfo=timezone.utc)
YEAR = (datetime(2013, 6, 1, tzinfo=timezone.utc), datetime(2014, 6, 1, tzinfo=timezone.utc))
HOLDING = rules.HOLDING
READER = Actor(person_id="sanne", name="Sanne de Vries", platform="console", timezone="Europe/Amsterdam")


def stamp(dt: datetime) -> str:
    """A UTC instant as SQLAlchemy stores it in SQLite."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def marks(n: int) -> str:
    return ", ".join("?" * n)


def median_time(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


class Statements:
    """Counts the statements an engine sends (BEGIN and the like aside)."""

    def __init__(self, engine):
        self.engine, self.count = engine, 0

    def _seen(self, conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")):
            self.count += 1

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._seen)


# -------------------------------------------------------------------------------------------- the store

def load(db: Path) -> Runtime:
    config = parse_config((ROOT / "app.yaml").read_text(), "app.yaml")
    rt = Runtime(config, f"sqlite:///{db}")
    rt.ctx.now = lambda: NOW
    started = time.perf_counter()
    result = import_rabobank_changes(rt.ctx, DATA)
    took = time.perf_counter() - started
    conn = sqlite3.connect(db)
    now = stamp(NOW)
    conn.execute("""UPDATE changes SET
        state = CASE WHEN planned_start <= ? THEN 'in-progress'
                     WHEN approvals_needed > 0 THEN 'awaiting-approval' ELSE 'scheduled' END,
        outcome = NULL, actual_start = CASE WHEN planned_start <= ? THEN planned_start END, actual_end = NULL,
        closed_at = NULL, updated_at = created_at
        WHERE planned_end > ? AND state IN ('closed', 'cancelled')""", (now, now, now))
    conn.commit()
    conn.execute("ANALYZE")
    states = dict(conn.execute(f"SELECT state, count(*) FROM changes WHERE state IN ({marks(len(HOLDING))}) "
                               "GROUP BY state", HOLDING).fetchall())
    links, components = conn.execute("SELECT count(*), count(DISTINCT service_id) FROM change_services").fetchone()
    conn.close()
    print(f"import_rabobank_changes: {result.rows_read:,} rows → {result.changes_created:,} changes "
          f"({result.rows_skipped:,} rows skipped: {result.skip_reasons}), {links:,} change–service links on "
          f"{components} service components, in {took:.2f} s")
    print(f"set back to {NOW:%d %b %Y %H:%M} UTC: " + ", ".join(f"{states.get(s, 0):,} {s}" for s in HOLDING))
    return rt


# -------------------------------------------------------------------------------------------- (a) conflicts

def bench_conflicts(rt: Runtime, db: Path, probes: int) -> None:
    conn = sqlite3.connect(db)
    busiest = [sid for sid, _ in conn.execute(
        f"SELECT cs.service_id, count(*) FROM change_services cs JOIN changes c ON c.id = cs.change_id "
        f"WHERE c.state IN ({marks(len(HOLDING))}) GROUP BY cs.service_id ORDER BY 2 DESC LIMIT 12", HOLDING)]
    rng = random.Random(14)
    cases = []
    for _ in range(probes):
        services = rng.sample(busiest, rng.randint(1, 3))
        start = NOW + timedelta(minutes=15 * rng.randint(4, 30 * 96))
        cases.append((services, start, start + timedelta(hours=2)))

    def raw():
        found = 0
        for services, start, end in cases:
            found += len(conn.execute(
                f"SELECT cs.change_id, cs.service_id FROM change_services cs JOIN changes c ON c.id = cs.change_id "
                f"WHERE cs.service_id IN ({marks(len(services))}) AND cs.planned_start < ? AND cs.planned_end > ? "
                f"AND c.state IN ({marks(len(HOLDING))}) ORDER BY cs.change_id, cs.service_id",
                (*services, stamp(end), stamp(start), *HOLDING)).fetchall())
        return found

    def through_conflicts():
        found = 0
        with rt.ctx.sessions() as s:
            for services, start, end in cases:
                found += len(rules.conflicts(s, services, start, end))
        return found

    def through_issues():
        found = 0
        with rt.ctx.sessions() as s:
            for services, start, end in cases:
                change = Change(planned_start=start, planned_end=end, override=None)  # not stored: a new request
                found += len(rules.issues(s, rt.ctx.config, change, services))
        return found

    raw()  # warm the page cache for all three alike
    baseline, hits = median_time(raw, 5)
    took, found = median_time(through_conflicts, 5)
    took_issues, issues = median_time(through_issues, 5)
    conn.close()
    assert found == hits, (found, hits)
    print(f"(a) conflict detection, {probes} new changes (2 h, 1–3 of the {len(busiest)} busiest components, "
          f"next 30 days): {hits:,} overlapping (change, service) pairs in all, {issues:,} issues")
    print(f"    raw sqlite3 overlap query on change_services       {baseline * 1e6 / probes:9.0f} µs each   1.00 ×")
    print(f"    changes.rules.conflicts                            {took * 1e6 / probes:9.0f} µs each "
          f"{took / baseline:6.1f} ×")
    print(f"    changes.rules.issues (conflicts, freezes, windows) {took_issues * 1e6 / probes:9.0f} µs each "
          f"{took_issues / baseline:6.1f} ×")


# -------------------------------------------------------------------------------------------- (b) calendar

def bench_calendar(rt: Runtime, db: Path) -> None:
    conn = sqlite3.connect(db)
    end = NOW + timedelta(days=30)

    def raw():
        return conn.execute(
            f"SELECT c.id, c.title, c.state, c.planned_start, c.planned_end, cs.service_id FROM changes c "
            f"LEFT JOIN change_services cs ON cs.change_id = c.id WHERE c.state IN ({marks(len(HOLDING))}) "
            f"AND c.planned_start < ? AND c.planned_end > ? ORDER BY c.planned_start, c.id, cs.service_id",
            (*HOLDING, stamp(end), stamp(NOW))).fetchall()

    raw()
    baseline, rows = median_time(raw, 7)
    cmd = Command(READER, "change calendar 30")
    with Statements(rt.engine) as counted:
        calendar.calendar_reply(rt.ctx, cmd, ["30"])
    took, reply = median_time(lambda: calendar.calendar_reply(rt.ctx, cmd, ["30"]), 7)
    conn.close()
    held = len({r[0] for r in rows})
    print(f"(b) change calendar 30 on {NOW:%d %b %Y}: {held:,} changes hold a window ({len(rows):,} rows with their "
          f"services); the reply lists {sum(s.text.count('*CHG-') for s in reply.sections)} over "
          f"{len(reply.sections)} day(s); footer: {reply.footer}")
    print(f"    raw sqlite3 SELECT of every such change with its services   {baseline * 1000:8.2f} ms   1.00 ×")
    print(f"    {f'calendar_reply ({counted.count} statements)':<59} {took * 1000:8.2f} ms {took / baseline:6.1f} ×")


# -------------------------------------------------------------------------------------------- (c) ics

def bench_ics(rt: Runtime, db: Path, runs: int) -> None:
    conn = sqlite3.connect(db)
    start, end = YEAR
    columns = ", ".join(f"c.{col.key}" for col in calendar._ICS_COLUMNS)
    states = tuple(calendar.ICS_STATUS)

    def raw():
        changes = conn.execute(
            f"SELECT {columns} FROM changes c WHERE c.state IN ({marks(len(states))}) AND c.planned_start < ? "
            f"AND c.planned_end > ? ORDER BY c.planned_start, c.id", (*states, stamp(end), stamp(start))).fetchall()
        links = conn.execute(
            f"SELECT cs.change_id, cs.service_id FROM change_services cs JOIN changes c ON c.id = cs.change_id "
            f"WHERE c.state IN ({marks(len(states))}) AND c.planned_start < ? AND c.planned_end > ? "
            f"ORDER BY cs.change_id, cs.service_id", (*states, stamp(end), stamp(start))).fetchall()
        return changes, links

    raw()
    baseline, (changes, links) = median_time(raw, 7)

    def document():
        with rt.ctx.sessions() as s:
            return calendar.ics(s, rt.ctx.config, start, end)

    def first_piece():
        with rt.ctx.sessions() as s:
            calendar.ics_etag(s, rt.ctx.config, start, end)
        pieces = calendar.ics_stream(rt.ctx.sessions, rt.ctx.config, start, end)
        first = next(pieces)
        pieces.close()
        return first

    def etag():
        with rt.ctx.sessions() as s:
            return calendar.ics_etag(s, rt.ctx.config, start, end)

    def rows_only():
        with rt.ctx.sessions() as s:
            return calendar.ics_rows(s, start, end)

    with Statements(rt.engine) as counted:
        body = document()
    with Statements(rt.engine) as streamed:
        assert b"".join(calendar.ics_stream(rt.ctx.sessions, rt.ctx.config, start, end)) == body
    took, body = median_time(document, runs)
    took_rows, _ = median_time(rows_only, runs)
    took_first, _ = median_time(first_piece, runs)
    took_etag, _ = median_time(etag, runs)
    conn.close()
    events = body.count(b"BEGIN:VEVENT")
    assert events == len(changes), (events, len(changes))
    print(f"(c) ics for {start:%b %Y} – {end - timedelta(days=1):%b %Y}: {events:,} events ({len(links):,} "
          f"change–service links), {len(body) / 1e6:.1f} MB, {counted.count} statements "
          f"({streamed.count} streamed a page at a time)")
    print(f"    raw sqlite3 SELECT of the same columns and services          {baseline * 1000:9.1f} ms   1.00 ×")
    print(f"    ics_rows (the two queries, as rows)                          {took_rows * 1000:9.1f} ms "
          f"{took_rows / baseline:6.1f} ×")
    print(f"    ics_etag (all that an unchanged poll's 304 costs)            {took_etag * 1000:9.1f} ms "
          f"{took_etag / baseline:6.1f} ×")
    print(f"    the first streamed piece (ETag, first page, its events)      {took_first * 1000:9.1f} ms "
          f"{took_first / baseline:6.1f} ×")
    print(f"    ics, the whole document (every VEVENT written as text)       {took * 1000:9.1f} ms "
          f"{took / baseline:6.1f} ×  ({took * 1e6 / max(events, 1):.0f} µs an event)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probes", type=int, default=200, help="new changes checked for conflicts")
    parser.add_argument("--ics-runs", type=int, default=3, help="times the year's feed is built")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "changes.db"
        rt = load(db)
        try:
            bench_conflicts(rt, db, args.probes)
            bench_calendar(rt, db)
            bench_ics(rt, db, args.ics_runs)
        finally:
            rt.engine.dispose()


if __name__ == "__main__":
    main()
