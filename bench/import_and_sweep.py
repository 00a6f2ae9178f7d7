"""What svcbot's ServiceNow import and its breach sweep cost, each against raw SQL measured in the same run.

(a) Import: the whole UCI incident log (shared/data/servicenow-incident-log, 141,712 rows, 24,918 incidents) through
    ``handlers.imports.servicenow.import_servicenow`` into an empty SQLite store — history rebuilt, tickets and
    events written, every ticket's clocks measured — against the floor of the same zip's rows read with the csv
    module (and, for scale, those rows inserted with sqlite3's executemany into one plain table). Then the same file
    a second time (nothing to do), and the process's peak RSS. Times are given as wall time and as the process's CPU
    time: on a shared machine the wall times of the floor and the import drift apart.

    What cProfile and py-spy showed. Before: 40 s for the file (about 104 × the csv read), 70 % of it in
    ``breaches.sync_clocks`` called ticket by ticket — a flush, an events query, a clocks query and two
    inserts for each of 24,918 tickets, most of it SQLAlchemy compiling and executing statements — and
    another 15 % in the ORM's bulk insert of the events and the mapped tickets' attribute events. Now the
    clocks of a batch are measured together from the history the import has in hand
    (``breaches.sync_clocks_of_histories``, sharing ``sync_clocks``' rules), and tickets, events and clocks
    are inserted as table rows with one executemany each (``storage.bulk.insert_rows``: each distinct time is
    converted to the store's form once). What is left: the inserts, SQLite's own work included (a third),
    reading and parsing the rows (a sixth), the clock arithmetic (``clocks.measure`` and the business
    calendar, a sixth), the commits (a sixteenth).
    The second import was the same reading plus a mapped Ticket for each incident and every stored event
    through the UTC type; it then read plain rows, times as the store keeps them, and compared each
    ticket's stored history with the rebuilt one as two lists (2.3–2.9 s, 5–6 × the csv read). cProfile and
    py-spy of that then: half of it reading the CSV into rows — a call to ``_row`` a row and two calls a
    time (four times a row) to find each in a cache, 53,165 distinct times each read by the whole regex —
    and a third the stored events: fetched through SQLAlchemy's rows, compared with ``Row.__eq__``
    (0.3 s of 162,048 calls in Python) against a rebuilt list that made every time naive again (185,410
    ``datetime.replace``). Python's cycle collector went over the import's few hundred thousand
    long-lived tuples again and again, an eighth of a second import: it is paused while an import runs
    (``handlers.imports.csv_files.collector_paused``).
    Now a row whose values were all read before is built in the reading loop itself (one itemgetter
    for its columns, one subscript a value, no call), a new time is read by its halves (the file has a few
    hundred days and at most 1,440 minutes, each parsed once; anything but the plain form still goes
    through the whole pattern and ``_row``), ``history`` unpacks each row once, and a batch's stored
    events are compared as plain tuples with each distinct instant made naive once, by statements
    built once. What is left of a second import (py-spy, ≈ 4 × the csv read in CPU): the csv module
    and the zip (a fifth: the floor itself), the rest of the reading loop (a sixth), reading new times (a
    thirteenth), rebuilding the histories (a twelfth), fetching the stored events through SQLAlchemy and
    SQLite (a seventh: 162,048 rows), making the rebuilt times naive and comparing the lists (a seventh),
    and the batches' transactions and ticket queries (a seventh). No ticket is skipped unread: nothing
    stored says which rows its history was built from (no digest, and no migration for one), so every
    history is rebuilt and compared in full: an unchanged file is proved unchanged, not assumed.
    SQLite's ``synchronous=NORMAL`` and a larger page cache for the import were measured and made no
    difference (the time is in Python, not in the file), so the store's settings are left as they are.
(b) Sweep: N open tickets (100,000 by default, and 10,000 for comparison) with their clocks inserted with raw
    SQL, next checks spread over the next three weeks and a few hundred due now, then
    ``handlers.sla.breaches.sweep`` run until nothing is due, against ``SELECT … FROM sla_clocks WHERE
    next_check_at <= ?`` on the same file. It counts the tickets the sweep loads and the statements it sends,
    and compares its time at both sizes: a sweep that read every open ticket would grow tenfold.

Ratios are printed, never asserted. Run: `.venv/bin/python bench/import_and_sweep.py [--tickets N] [--due N]
[--skip-import] [--skip-sweep]`.
"""
from __future__ import annotations

import argparse
import csv
import io
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event  # noqa: E402

from bot.runtime import Runtime  # noqa: E402
from handlers.core.config_loading import parse_config  # noqa: E402
from handlers.imports.servicenow import import_servicenow  # noqa: E402
from handlers.sla import breaches  # noqa: E402
from storage.models import Ticket  # noqa: E402
from tests.test_import_servicenow import DATA, SERVICE, desk_config  # noqa: E402

NOW = datetime(2026, 3, 4, 15, 0, tzinfo=timezone.utc)  # a Wednesday, 12:00 in São Paulo


def runtime(db: Path) -> Runtime:
    rt = Runtime(parse_config(yaml.safe_dump(desk_config()), "desk.yaml"), f"sqlite:///{db}")
    rt.ctx.now = lambda: NOW
    return rt


def stamp(dt: datetime) -> str:
    """A UTC instant as SQLAlchemy stores it in SQLite."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


# -------------------------------------------------------------------------------------------- (a) import

def raw_insert(db: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with zipfile.ZipFile(DATA) as z, z.open("incident_event_log.csv") as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        header = next(reader)
        conn = sqlite3.connect(db)
        conn.execute(f"CREATE TABLE raw_rows ({', '.join(f'{c} TEXT' for c in header)})")
        cur = conn.executemany(f"INSERT INTO raw_rows VALUES ({', '.join('?' * len(header))})", reader)
        conn.commit()
        rows = cur.rowcount
        conn.close()
    return time.perf_counter() - started, rows


def csv_read() -> tuple[float, float]:
    """The floor: the zip's rows read with the csv module, nothing done with them (best of three), in
    seconds of wall time and of this process's CPU time."""
    times = []
    for _ in range(3):
        started, cpu = time.perf_counter(), time.process_time()
        with zipfile.ZipFile(DATA) as z, z.open("incident_event_log.csv") as raw:
            for _row in csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline="")):
                pass
        times.append((time.perf_counter() - started, time.process_time() - cpu))
    return min(t for t, _ in times), min(c for _, c in times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(work) -> tuple[object, float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    out = work()
    return out, time.perf_counter() - started, time.process_time() - cpu


def bench_import(tmp: Path) -> None:
    floor, floor_cpu = csv_read()
    baseline, rows = raw_insert(tmp / "raw.db")
    rt = runtime(tmp / "import.db")
    rss_before = peak_rss_mb()
    try:
        result, took, took_cpu = timed(lambda: import_servicenow(rt.ctx, DATA, SERVICE))
        rss_after = peak_rss_mb()
        again, again_took, again_cpu = timed(lambda: import_servicenow(rt.ctx, DATA, SERVICE))
    finally:
        rt.engine.dispose()
    # Once before and once after, the better of the two: on a shared machine the wall times drift.
    floor, floor_cpu = (min(a, b) for a, b in zip((floor, floor_cpu), csv_read()))
    print(f"(a) full-file import: {result.rows_read:,} rows, {result.tickets_created:,} tickets, "
          f"{result.events_added:,} events, {result.rows_skipped} rows skipped          wall          CPU")
    print(f"    the zip's {rows:,} rows read with the csv module         {floor:7.2f} s   1.0 × "
          f"{floor_cpu:6.2f} s   1.0 ×")
    print(f"    raw sqlite3 executemany of those rows into one table    {baseline:7.2f} s {baseline / floor:5.1f} ×")
    print(f"    import_servicenow (history, tickets, events, clocks)    {took:7.2f} s {took / floor:5.1f} × "
          f"{took_cpu:6.2f} s {took_cpu / floor_cpu:5.1f} ×")
    print(f"    the same file again ({again.tickets_unchanged:,} unchanged, {again.events_added} added)     "
          f"{again_took:7.2f} s {again_took / floor:5.1f} × {again_cpu:6.2f} s {again_cpu / floor_cpu:5.1f} ×")
    print(f"    peak RSS of this process: {rss_before:.0f} MB before the import, {rss_after:.0f} MB after it")


# --------------------------------------------------------------------------------------------- (b) sweep

def populate(db: Path, tickets: int, due: int, seed: int = 7) -> None:
    """Open tickets with a met response clock and a running resolution clock each, with raw SQL. ``due``
    of them are P1 tickets opened five hours ago whose 4-hour resolution target has just passed (their
    next check is now); the others' next checks are spread over the next three weeks."""
    rng = random.Random(seed)
    recorded = stamp(NOW)
    ticket_rows, event_rows, clock_rows = [], [], []
    for i in range(1, tickets + 1):
        is_due = i % (tickets // due) == 0 and i // (tickets // due) <= due
        if is_due:
            priority, opened = "P1", NOW - timedelta(hours=5)
            target, next_check, notified = 4 * 3600.0, opened + timedelta(hours=4), 75.0
        else:
            priority, opened = "P3", NOW - timedelta(minutes=rng.randint(1, 600))
            target, next_check, notified = 30 * 3600.0, NOW + timedelta(seconds=rng.randint(60, 21 * 86400)), 0.0
        answered = opened + timedelta(minutes=5)
        ticket_rows.append((i, "incident", "bench", f"B{i:06d}", SERVICE, f"bench ticket {i}", priority,
                            "in-progress", "Group 1", stamp(opened), stamp(answered), stamp(answered)))
        event_rows += [(i, stamp(opened), "open", priority, recorded),
                       (i, stamp(opened), "assign", "Group 1", recorded),
                       (i, stamp(answered), "respond", None, recorded),
                       (i, stamp(answered), "state", "in-progress", recorded)]
        clock_rows += [(i, "response", priority, 900.0 if priority == "P1" else 14400.0, 300.0, "met", 0,
                        stamp(opened), None, stamp(answered), None, 100.0),
                       (i, "resolution", priority, target, 0.0, "running", 0, stamp(opened),
                        stamp(opened + timedelta(seconds=target)), None, stamp(next_check), notified)]
    conn = sqlite3.connect(db)
    conn.executemany("INSERT INTO tickets (id, kind, source, external_id, service_id, title, priority, state, "
                     "assignment_group, opened_at, responded_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                     ticket_rows)
    conn.executemany("INSERT INTO ticket_events (ticket_id, at, kind, value, recorded_at) VALUES (?,?,?,?,?)",
                     event_rows)
    conn.executemany("INSERT INTO sla_clocks (ticket_id, agreement_id, kind, metric, priority, target_seconds, "
                     "elapsed_seconds, state, breached, started_at, due_at, stopped_at, computed_at, next_check_at, "
                     f"notified_level) VALUES (?, 'SLA-DESK', 'sla', ?,?,?,?,?,?,?,?,?,'{recorded}',?,?)",
                     clock_rows)
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()


def raw_due(db: Path) -> tuple[float, int]:
    conn = sqlite3.connect(db)
    times, found = [], 0
    for _ in range(7):
        started = time.perf_counter()
        found = len(conn.execute("SELECT id, ticket_id, agreement_id, metric, next_check_at FROM sla_clocks "
                                 "WHERE next_check_at <= ? ORDER BY next_check_at", (stamp(NOW),)).fetchall())
        times.append(time.perf_counter() - started)
    conn.close()
    return statistics.median(times), found


def raw_all_open(db: Path) -> tuple[float, int]:
    conn = sqlite3.connect(db)
    started = time.perf_counter()
    found = len(conn.execute("SELECT * FROM tickets WHERE state NOT IN ('resolved', 'closed')").fetchall())
    took = time.perf_counter() - started
    conn.close()
    return took, found


def bench_sweep_at(tmp: Path, tickets: int, due: int) -> dict:
    db = tmp / f"sweep-{tickets}.db"
    rt = runtime(db)  # the schema, by the migrations
    populate(db, tickets, due)
    baseline, found = raw_due(db)
    scan, open_tickets = raw_all_open(db)
    counts = {"tickets loaded": 0, "statements": 0}

    def loaded(target, context):
        counts["tickets loaded"] += 1

    def statement(*args):
        counts["statements"] += 1

    event.listen(Ticket, "load", loaded)
    event.listen(rt.engine, "before_cursor_execute", statement)
    try:
        notices, calls = 0, 0
        started = time.perf_counter()
        while True:
            calls += 1
            written = breaches.sweep(rt.ctx)
            notices += written
            if not written:
                break
        took = time.perf_counter() - started
    finally:
        event.remove(Ticket, "load", loaded)
        event.remove(rt.engine, "before_cursor_execute", statement)
        rt.engine.dispose()
    return dict(tickets=tickets, open=open_tickets, due=found, baseline=baseline, scan=scan, sweep=took,
                notices=notices, calls=calls, **counts)


def bench_sweep(tmp: Path, tickets: int, due: int) -> None:
    small = bench_sweep_at(tmp, max(tickets // 10, due * 2), due)
    big = bench_sweep_at(tmp, tickets, due)
    print(f"(b) breach sweep, {due} clocks due now; other clocks' next checks spread over the next three weeks")
    for r in (small, big):
        print(f"    {r['open']:>7,} open tickets: raw SELECT … WHERE next_check_at <= now found {r['due']} in "
              f"{r['baseline'] * 1000:7.2f} ms; sweep ({r['calls']} calls) {r['sweep'] * 1000:8.1f} ms = "
              f"{r['sweep'] / r['baseline']:6.0f} × that, {r['notices']} notices, "
              f"{r['tickets loaded']} tickets loaded, {r['statements']} statements "
              f"(a raw read of every open ticket: {r['scan'] * 1000:.1f} ms)")
    print(f"    sweep time at {big['open']:,} ÷ at {small['open']:,} open tickets: "
          f"{big['sweep'] / small['sweep']:.2f} × (the raw due-query: {big['baseline'] / small['baseline']:.2f} ×)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=100_000, help="open tickets for the sweep")
    parser.add_argument("--due", type=int, default=300, help="of which due now")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_import:
            bench_import(tmp)
        if not args.skip_sweep:
            bench_sweep(tmp, args.tickets, args.due)


if __name__ == "__main__":
    main()
