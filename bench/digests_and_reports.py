"""What svcbot's scheduled voice costs on a real incident log — the monthly service report, a digest and the
status page — each against raw SQL measured in the same run on the same file.

The data: the UCI incident log (shared/data/servicenow-incident-log, 141,712 rows, 24,918 incidents opened
Feb 2016 – Feb 2017) imported whole through ``handlers.imports.import_servicenow`` into an empty SQLite store,
into the service desk bench/import_and_sweep.py adds to the demo app.yaml (SLA-DESK: response and resolution
targets for P1–P4 on São Paulo business hours), with the clock at READ_AT, after the log's end.

(a) The monthly service report of the month in which most incidents were resolved (in the bot's zone; or
    ``--month``): ``handlers.reports.report_data`` for all services and for the service desk (targets and the
    six months' trend, every breach with its cause, availability, volume and mean time to resolve in clock
    and business time, changes, CSAT, CSI), then its three charts (``handlers.report_charts.charts``) and its
    HTML and PDF (``bot.report_export.html`` and ``.pdf``), each on its own. Baseline: the SQL a hand-written
    report would run with sqlite3 — tickets opened per priority, tickets resolved and their mean time to
    resolve per service and priority, met ÷ decided clocks per agreement, metric, priority and month for the
    six months, and the month's breached SLA clocks with their tickets. The statements each report sends are
    counted, for that month and for a quiet one (about a tenth as many tickets resolved).
(b) The store is then turned back to the weekday morning of that month with the most incidents open
    (08:00 London, the slot of the demo's morning-ops digest), as svcbot would have held it then: tickets
    opened later are deleted, so are events after that moment, and the tickets those events touched are
    rebuilt and their clocks measured again by svcbot's own code (``tickets._rebuild``,
    ``breaches.sync_clocks``) with the clock at that moment. A digest with every section
    (``handlers.digests.preview``, what `digest preview` runs) against raw SQL of the open incidents, the 200
    running clocks soonest due of those already late and of those still to come (what the at-risk section
    reads) and the clocks breached since yesterday.
(c) The status page at the same moment: ``bot.status_page.snapshot`` (what ``GET /`` and ``/status.json``
    read) and ``render`` (the HTML of ``GET /``), against raw SQL of the open incidents' count and the 50 most
    urgent with their clocks.
(b) and (c) are measured again with the store turned back further, to the first weekday morning with about
a tenth as many incidents open; the statements each sends are counted at both sizes.

Ratios are printed, never asserted. Run: `.venv/bin/python bench/digests_and_reports.py [--month YYYY-MM]
[--runs N]`.
"""
from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402

from bench import import_and_sweep  # noqa: E402
from bench.changes_at_scale import Statements, marks, median_time, stamp  # noqa: E402
from bot import report_export, status_page  # noqa: E402
from bot.runtime import Runtime  # noqa: E402
from handlers.core.context import Command, batches  # noqa: E402
from handlers.imports.servicenow import IMPORTER, import_servicenow  # noqa: E402
from handlers.reporting import charts, digests, report_figures  # noqa: E402
from handlers.sla import attainment, breaches, tickets  # noqa: E402
from handlers.sla.clocks import OPEN_STATES  # noqa: E402
from storage.models import Ticket  # noqa: E402
from tests.conftest import Clock  # noqa: E402
from tests.test_import_servicenow import DATA, SERVICE  # noqa: E402

READ_AT = datetime(2017, 3, 2, 8, 0, tzinfo=timezone.utc)  # the log's last rows are of late February 2017
UTC = timezone.utc
DIGEST_HOUR = 8  # London: the slot of the demo's morning-ops digest


def instant(text: str) -> datetime:
    """A stored UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms"


def line(label: str, took: float, baseline: float) -> str:
    return f"    {label:<66} {ms(took)} {took / baseline:7.1f} ×"


# -------------------------------------------------------------------------------------------- the store

def load(db: Path) -> tuple[Runtime, Clock]:
    clock = Clock(READ_AT)
    rt = import_and_sweep.runtime(db)
    rt.ctx.now = clock
    started = time.perf_counter()
    result = import_servicenow(rt.ctx, DATA, SERVICE)
    took = time.perf_counter() - started
    print(f"import_servicenow: {result.rows_read:,} rows → {result.tickets_created:,} tickets, "
          f"{result.events_added:,} events ({result.rows_skipped} rows skipped), in {took:.1f} s; "
          f"read at {READ_AT:%d %b %Y %H:%M} UTC")
    return rt, clock


def resolved_per_month(db: Path, zone: str) -> Counter:
    conn = sqlite3.connect(db)
    tz = ZoneInfo(zone)
    counts = Counter(f"{instant(at).astimezone(tz):%Y-%m}" for at, in
                     conn.execute("SELECT resolved_at FROM tickets WHERE resolved_at IS NOT NULL"))
    conn.close()
    return counts


def rewind(rt: Runtime, clock: Clock, db: Path, to: datetime) -> tuple[int, int, float]:
    """The store as svcbot would have held it at ``to``: later tickets and events deleted with sqlite3, the
    tickets those events touched rebuilt and their clocks measured again by svcbot at ``to``. Returns the
    tickets deleted, the tickets rebuilt and the time it took."""
    started = time.perf_counter()
    at = stamp(to)
    later = "SELECT id FROM tickets WHERE opened_at > ?"
    conn = sqlite3.connect(db)
    conn.execute(f"DELETE FROM clock_notices WHERE clock_id IN (SELECT id FROM sla_clocks WHERE ticket_id IN "
                 f"({later}))", (at,))
    conn.execute(f"DELETE FROM sla_clocks WHERE ticket_id IN ({later})", (at,))
    conn.execute(f"DELETE FROM ticket_events WHERE ticket_id IN ({later})", (at,))
    deleted = conn.execute("DELETE FROM tickets WHERE opened_at > ?", (at,)).rowcount
    touched = [i for i, in conn.execute("SELECT DISTINCT ticket_id FROM ticket_events WHERE at > ?", (at,))]
    # Rebuilding takes updated_at as the latest of what it had and its events: start it again from opening.
    conn.execute("UPDATE tickets SET updated_at = opened_at WHERE id IN (SELECT ticket_id FROM ticket_events "
                 "WHERE at > ?)", (at,))
    conn.execute("DELETE FROM ticket_events WHERE at > ?", (at,))
    conn.commit()
    conn.close()
    clock.to(to)
    cmd = Command(actor=IMPORTER, text="bench: turn the store back")
    for chunk in batches(touched, 500):
        with rt.ctx.change(cmd) as work:
            for ticket in work.session.scalars(select(Ticket).where(Ticket.id.in_(chunk))):
                tickets._rebuild(work, ticket)
                breaches.sync_clocks(work, ticket, announce_past=False)
    return deleted, len(touched), time.perf_counter() - started


def mornings(month: str, zone: str) -> list[datetime]:
    """The weekday mornings of a month, 08:00 in the zone (the slot of the demo's morning-ops digest)."""
    year, number = map(int, month.split("-"))
    tz, out = ZoneInfo(zone), []
    day = datetime(year, number, 1, DIGEST_HOUR, tzinfo=tz)
    while day.month == number:
        if day.weekday() < 5:
            out.append(day.astimezone(UTC))
        day += timedelta(days=1)  # wall-clock arithmetic: 08:00 again, whatever the offset
    return out


def open_at(conn: sqlite3.Connection, moment: datetime) -> int:
    """Incidents open at a moment, roughly (opened by then, last resolved or closed after): to choose it."""
    return conn.execute("SELECT count(*) FROM tickets WHERE opened_at <= ? AND coalesce(resolved_at, closed_at) > ?",
                        (stamp(moment), stamp(moment))).fetchone()[0]


def choose_moments(db: Path, month: str, zone: str) -> tuple[datetime, datetime]:
    """The morning of the month with the most incidents open, and the first morning with about a tenth."""
    conn = sqlite3.connect(db)
    busy = max(mornings(month, zone), key=lambda m: open_at(conn, m))
    target = open_at(conn, busy) / 10
    first = instant(conn.execute("SELECT min(opened_at) FROM tickets").fetchone()[0])
    quiet = busy
    day = first
    while day < busy:
        morning = day.astimezone(ZoneInfo(zone)).replace(hour=DIGEST_HOUR, minute=0, second=0, microsecond=0)
        if morning.weekday() < 5 and morning.astimezone(UTC) > first and open_at(conn, morning) >= target:
            quiet = morning.astimezone(UTC)
            break
        day += timedelta(days=1)
    conn.close()
    return busy, quiet


# -------------------------------------------------------------------------------------------- (a) report

def trend_periods(ctx, month: str) -> list[attainment.Period]:
    year, number = map(int, month.split("-"))
    keys = [report_figures._month_key(*report_figures._months_back(year, number, n))
            for n in range(report_figures.TREND_MONTHS - 1, -1, -1)]
    return [attainment.parse_period(key, ctx.now(), ctx.config.bot.timezone) for key in keys]


def raw_report(conn: sqlite3.Connection, periods: list[attainment.Period], scope: str | None, now: datetime):
    """What a hand-written report of the month would read: volume, resolution times, the six months'
    attainment and the month's breaches, four queries."""
    month = periods[-1]
    start, end = stamp(month.start), stamp(month.end)
    only, scoped = (" AND t.service_id = ?", (scope,)) if scope else ("", ())
    late = "(c.breached OR (c.state = 'running' AND c.due_at < ?))"
    opened = conn.execute(f"SELECT t.priority, count(*) FROM tickets t WHERE t.opened_at >= ? AND t.opened_at < ?"
                          f"{only} GROUP BY t.priority", (start, end, *scoped)).fetchall()
    resolved = conn.execute(
        f"SELECT t.service_id, t.priority, count(*), avg((julianday(t.resolved_at) - julianday(t.opened_at)) * 86400) "
        f"FROM tickets t WHERE t.resolved_at >= ? AND t.resolved_at < ?{only} GROUP BY 1, 2",
        (start, end, *scoped)).fetchall()
    which = "CASE " + " ".join(f"WHEN c.started_at < ? THEN {i}" for i in range(len(periods))) + " END"
    attainment = conn.execute(
        f"SELECT {which}, c.agreement_id, c.metric, c.priority, count(*), sum({late}) FROM sla_clocks c "
        f"JOIN tickets t ON t.id = c.ticket_id WHERE (c.state IN ('met', 'breached') OR {late}) "
        f"AND c.started_at >= ? AND c.started_at < ?{only} GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        (*(stamp(p.end) for p in periods), stamp(now), stamp(now), stamp(periods[0].start), end, *scoped)).fetchall()
    breached = conn.execute(
        f"SELECT c.ticket_id, t.priority, t.title, t.service_id, c.agreement_id, c.metric, "
        f"c.elapsed_seconds - c.target_seconds FROM sla_clocks c JOIN tickets t ON t.id = c.ticket_id "
        f"WHERE c.kind = 'sla' AND {late} AND c.started_at >= ? AND c.started_at < ?{only} "
        f"ORDER BY c.started_at, c.ticket_id, c.agreement_id, c.metric", (stamp(now), start, end, *scoped)).fetchall()
    return opened, resolved, attainment, breached


def bench_report(rt: Runtime, db: Path, month: str, quiet: str, runs: int) -> None:
    ctx = rt.ctx
    periods = trend_periods(ctx, month)
    conn = sqlite3.connect(db)
    results = {}
    for scope in (None, SERVICE):
        raw_report(conn, periods, scope, ctx.now())
        baseline, (opened, resolved, _, breached) = median_time(
            lambda: raw_report(conn, periods, scope, ctx.now()), 7)
        with Statements(rt.engine) as counted:
            report = report_figures.report_data(ctx, scope, month)
        took, report = median_time(lambda: report_figures.report_data(ctx, scope, month), runs)
        assert len(report.breaches) == len(breached), (len(report.breaches), len(breached))
        assert report.tickets.resolved == sum(r[2] for r in resolved), report.tickets
        assert report.tickets.opened == sum(r[1] for r in opened), report.tickets
        results[scope] = (baseline, took, counted.count, report, len({b[0] for b in breached}))
    baseline, took, statements, report, breached_tickets = results[None]
    t = report.tickets
    print(f"(a) service report of {report.month_name}, the month with most incidents resolved: {t.resolved:,} "
          f"resolved, {t.opened:,} opened, {len(report.breaches):,} SLA breaches on {breached_tickets:,} tickets, "
          f"{len(report.targets)} target rows")
    print(line("raw sqlite3: volume, resolve times, 6 months' attainment, breaches", baseline, baseline))
    print(line(f"report_data, all services ({statements:,} statements)", took, baseline))
    s_baseline, s_took, s_statements, _, _ = results[SERVICE]
    print(line(f"the same raw SQL for {SERVICE} alone", s_baseline, s_baseline))
    print(line(f"report_data, {SERVICE} ({s_statements:,} statements)", s_took, s_baseline))

    images = charts.charts(report)
    took_charts, images = median_time(lambda: charts.charts(report), runs)
    print(line(f"charts.charts (3 PNGs, {sum(len(i.png) for i in images) * 3 // 4 / 1000:.0f} KB)",
               took_charts, baseline))
    took_html, page = median_time(lambda: report_export.html(report, images), runs)
    print(line(f"report_export.html ({len(page) / 1e6:.1f} MB)", took_html, baseline))
    took_pdf, document = median_time(lambda: report_export.pdf(report, images), max(1, runs - 1))
    print(line(f"report_export.pdf ({len(document) / 1e6:.1f} MB)", took_pdf, baseline))

    quiet_periods = trend_periods(ctx, quiet)
    quiet_baseline, (_, _, _, quiet_breached) = median_time(lambda: raw_report(conn, quiet_periods, None, ctx.now()), 7)
    with Statements(rt.engine) as counted:
        small = report_figures.report_data(ctx, None, quiet)
    quiet_took, small = median_time(lambda: report_figures.report_data(ctx, None, quiet), runs)
    quiet_tickets = len({b[0] for b in quiet_breached})
    print(f"    a quiet month, {small.month_name}: {small.tickets.resolved:,} resolved, {len(small.breaches):,} "
          f"breaches on {quiet_tickets} tickets; report_data {counted.count:,} statements, {quiet_took * 1000:.1f} ms "
          f"= {quiet_took / quiet_baseline:.1f} × its raw SQL ({quiet_baseline * 1000:.1f} ms)")
    extra = (statements - counted.count) / max(breached_tickets - quiet_tickets, 1)
    print(f"    statements the report sends beyond the quiet month's, per further breached ticket: {extra:.2f}")
    conn.close()


# -------------------------------------------------------------------------------------------- (b) digest

def everything(ctx):
    """The demo's morning-ops digest with every section there is."""
    base = next(d for d in ctx.config.digests if d.name == "morning-ops")
    return base.model_copy(update={"name": "everything", "sections": list(digests.SECTIONS)})


def raw_digest(conn: sqlite3.Connection, now: datetime, since: datetime):
    opened = conn.execute(f"SELECT id, priority, service_id, title, state FROM tickets WHERE kind = 'incident' "
                          f"AND state IN ({marks(len(OPEN_STATES))}) ORDER BY priority, opened_at",
                          OPEN_STATES).fetchall()
    running = ("SELECT c.id, c.ticket_id, c.kind, c.agreement_id, c.metric, c.elapsed_seconds, c.target_seconds, "
               "c.due_at, t.priority, t.service_id FROM sla_clocks c JOIN tickets t ON t.id = c.ticket_id "
               "WHERE c.state = 'running' AND c.due_at {} ? ORDER BY c.due_at LIMIT 200")
    soonest = [*conn.execute(running.format("<="), (stamp(now),)), *conn.execute(running.format(">"), (stamp(now),))]
    late = conn.execute(
        "SELECT c.id, c.ticket_id, c.kind, c.agreement_id, c.metric, c.due_at, t.priority, t.service_id "
        "FROM sla_clocks c JOIN tickets t ON t.id = c.ticket_id WHERE (c.breached OR (c.state = 'running' "
        "AND c.due_at < ?)) AND c.due_at > ? AND c.due_at <= ? ORDER BY c.due_at",
        (stamp(now), stamp(since), stamp(now))).fetchall()
    return opened, soonest, late


def bench_digest(rt: Runtime, db: Path, runs: int) -> dict:
    ctx = rt.ctx
    digest = everything(ctx)
    now = ctx.now()
    with ctx.sessions() as s:
        since = digests.since_last_post(s, digest, now)
    conn = sqlite3.connect(db)
    raw_digest(conn, now, since)
    baseline, (opened, soonest, late) = median_time(lambda: raw_digest(conn, now, since), 7)
    conn.close()
    with Statements(rt.engine) as counted:
        reply = digests.preview(ctx, digest)
    took, reply = median_time(lambda: digests.preview(ctx, digest), runs)
    parts = reply.data["sections"]
    assert parts["incidents"]["open"] == len(opened), (parts["incidents"], len(opened))
    return dict(open=len(opened), soonest=len(soonest), late=len(late), baseline=baseline, took=took,
                statements=counted.count, at_risk=parts["at-risk"]["count"], breaches=parts["breaches"]["count"],
                sections=len(reply.sections))


# -------------------------------------------------------------------------------------------- (c) status page

def raw_status(conn: sqlite3.Connection):
    is_open = f"kind = 'incident' AND state IN ({marks(len(OPEN_STATES))})"
    total = conn.execute(f"SELECT count(*) FROM tickets WHERE {is_open}", OPEN_STATES).fetchone()[0]
    rows = conn.execute(
        f"SELECT t.id, t.priority, t.service_id, t.title, t.state, t.opened_at, c.kind, c.agreement_id, c.metric, "
        f"c.state, c.elapsed_seconds, c.target_seconds, c.due_at FROM (SELECT * FROM tickets WHERE {is_open} "
        f"ORDER BY priority, opened_at, id LIMIT {status_page.INCIDENTS_SHOWN}) t "
        f"LEFT JOIN sla_clocks c ON c.ticket_id = t.id ORDER BY t.priority, t.opened_at, t.id", OPEN_STATES).fetchall()
    return total, rows


def bench_status(rt: Runtime, db: Path, runs: int) -> dict:
    ctx = rt.ctx
    conn = sqlite3.connect(db)
    raw_status(conn)
    baseline, (total, rows) = median_time(lambda: raw_status(conn), 7)
    conn.close()
    with Statements(rt.engine) as counted:
        page = status_page.snapshot(ctx)
    took, page = median_time(lambda: status_page.snapshot(ctx), runs)
    took_render, html = median_time(lambda: status_page.render(page), runs)
    assert page.incidents_open == total, (page.incidents_open, total)
    return dict(open=total, rows=len(rows), baseline=baseline, snapshot=took, render=took_render,
                statements=counted.count, clocks=sum(len(i.clocks) for i in page.incidents), html=len(html))


# -------------------------------------------------------------------------------------------- at two moments

def bench_moment(rt: Runtime, clock: Clock, db: Path, to: datetime, runs: int) -> tuple[dict, dict]:
    deleted, rebuilt, took = rewind(rt, clock, db, to)
    digest, page = bench_digest(rt, db, runs), bench_status(rt, db, runs)
    print(f"    turned back to {to.astimezone(ZoneInfo('Europe/London')):%a %d %b %Y %H:%M %Z}: {deleted:,} later "
          f"tickets deleted, {rebuilt:,} rebuilt and measured again ({took:.1f} s): {page['open']:,} open incidents")
    return digest, page


def report_moments(measured: list[tuple[dict, dict]]) -> None:
    print("(b) digest preview with every section, against raw SELECTs of the open incidents, the 200 running clocks "
          "soonest due of those late and of those still to come, and those breached since yesterday")
    for d, _ in measured:
        print(line(f"{d['open']:>5,} open: raw SQL ({d['soonest']} soonest due, {d['late']} breached)", d['baseline'],
                   d['baseline']))
        print(line(f"{d['open']:>5,} open: digest preview ({d['statements']} statements)", d['took'], d['baseline']))
        print(f"{'':<12}it says {d['at_risk']} clocks at risk and {d['breaches']} breaches, {d['sections']} section(s) "
              "not quiet")
    print(f"(c) status page, against a raw count of the open incidents and the {status_page.INCIDENTS_SHOWN} most "
          "urgent with their clocks")
    for _, p in measured:
        print(line(f"{p['open']:>5,} open: raw SQL ({p['rows']} rows)", p['baseline'], p['baseline']))
        print(line(f"{p['open']:>5,} open: status_page.snapshot ({p['statements']} statements)", p['snapshot'],
                   p['baseline']))
        print(line(f"{p['open']:>5,} open: GET / (snapshot + render, {p['html'] / 1000:.0f} KB, {p['clocks']} "
                   f"clocks shown)", p['snapshot'] + p['render'], p['baseline']))
    (big_d, big_p), (small_d, small_p) = measured
    print(f"    at {big_d['open']:,} ÷ at {small_d['open']:,} open incidents: digest preview "
          f"{big_d['took'] / small_d['took']:.2f} × the time (its raw SQL "
          f"{big_d['baseline'] / small_d['baseline']:.2f} ×), "
          f"snapshot {big_p['snapshot'] / small_p['snapshot']:.2f} × (its raw SQL "
          f"{big_p['baseline'] / small_p['baseline']:.2f} ×)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--month", help="the report's month, YYYY-MM (default: the month with most resolved)")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs of each report figure (the median is printed); twice as many and one for (b), (c)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "incidents.db"
        rt, clock = load(db)
        try:
            zone = rt.ctx.config.bot.timezone
            per_month = resolved_per_month(db, zone)
            month = args.month or max(per_month, key=per_month.get)
            quiet = min((m for m in per_month if m != month),
                        key=lambda m: (abs(per_month[m] - per_month[month] / 10), m))
            bench_report(rt, db, month, quiet, args.runs)

            busy, small = choose_moments(db, month, "Europe/London")
            print(f"(b) and (c) at the weekday morning of {month} with most incidents open, then at the first with "
                  f"about a tenth as many (08:00 London, morning-ops's slot)")
            measured = [bench_moment(rt, clock, db, moment, 2 * args.runs + 1) for moment in (busy, small)]
            report_moments(measured)
        finally:
            rt.engine.dispose()


if __name__ == "__main__":
    main()
