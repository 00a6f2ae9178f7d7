"""What assembling a post-incident review's timeline costs, for a P1 with 500 events, against a raw SELECT of
the same rows measured in the same run on the same store.

The ticket (payments, P1) has 500 events (assignments, holds and resumes, priority changes), 4 breach and
warning notices, 40 status changes of its service, 20 outages, 30 changes on the service within the 72 hours
before it opened, and 25 notes on the review; beside it, 2,000 other tickets of 20 events each, 500 changes and
200 outages on other days, so that every query has rows to pass over.

(a) ``handlers.reviews.timeline.timeline``: the entries, oldest first (what ``review show``, the export and the
    API build on), in a session of its own as a request has. Floor: the same six SELECTs as plain SQL on the
    driver's connection, rows fetched and nothing else. The ask: ≤ 100 ms.
(b) ``export.view``: the timeline, the impact (business time on the calendar, outages merged) and the
    follow-ups; and the whole ``review show REV-1`` command, the reply included.

Ratios are printed, never asserted. Run: `.venv/bin/python bench/review_timeline.py [--repeat N]
[--database-url postgresql+psycopg://…/db]` (a PostgreSQL database named after it is made afresh).

Found when profiling (cProfile over 100 runs of (a)): one query per kind of entry from the start, so no N+1.
Of the time, about 60 % is the six reads (executing, fetching, and turning each stored time into an aware
UTC datetime, which the raw floor does not do: it gets SQLite's text), some 20 % building the six statements,
and the rest making the entries and sorting them. Read through the ORM session (``session.execute``) the rows
cost some 15 % more, and one at a time more again: the timeline now reads them on the session's connection,
all at once. On a 2-core machine under load (about 5) a run measured 17–24 ms for (a), 12–15× the floor; on
a PostgreSQL 15 on the same machine 36 ms against a floor of 20 ms (1.8×: there the round trips dominate).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, insert, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bot.runtime import Runtime  # noqa: E402
from handlers.core.config_loading import load_config  # noqa: E402
from handlers.core.context import Command  # noqa: E402
from handlers.core.people import console_actor  # noqa: E402
from handlers.reviews import export, timeline  # noqa: E402
from handlers.router import dispatch  # noqa: E402
from storage.models import (Change, ChangeService, ClockNotice, IncidentReview, Outage, ReviewNote,  # noqa: E402
                            SlaClock, StatusChange, Ticket, TicketEvent)

UTC = timezone.utc
OPENED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the bench's own clock: the store is made afresh each run


def store(url: str | None) -> str:
    if url is None:
        return f"sqlite:///{tempfile.mkdtemp(prefix='review-bench-')}/svcbot.db"
    base = make_url(url)
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{base.database}_reviews" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{base.database}_reviews"'))
    admin.dispose()
    return base.set(database=f"{base.database}_reviews").render_as_string(hide_password=False)


def fill(rt: Runtime, rng: random.Random) -> None:
    now = OPENED
    rows = {m: [] for m in (TicketEvent, StatusChange, Outage, Change, ChangeService, ReviewNote)}
    with rt.engine.begin() as conn:
        tickets = [dict(id=i, source="chat", service_id="payments" if i == 1 else rng.choice(["webshop", "vpn"]),
                        title=f"ticket {i}", priority="P1" if i == 1 else "P3", state="resolved",
                        opened_at=OPENED - timedelta(days=0 if i == 1 else rng.randint(1, 60)), updated_at=now,
                        kind="incident") for i in range(1, 2002)]
        for t in tickets:
            t["resolved_at"] = t["opened_at"] + timedelta(hours=6)
        conn.execute(insert(Ticket.__table__), tickets)
        for t in tickets:
            count = 500 if t["id"] == 1 else 20
            for n in range(count):
                kind = ["assign", "state", "state", "priority"][n % 4]
                value = {"assign": "payments-eng", "state": "awaiting-customer" if n % 8 == 1 else "in-progress",
                         "priority": "P1"}[kind]
                rows[TicketEvent].append(dict(ticket_id=t["id"], at=t["opened_at"] + timedelta(seconds=40 * n),
                                              kind="open" if n == 0 else kind, value=value, person_id="tom",
                                              recorded_at=now))
        for n in range(240):
            service = "payments" if n < 40 else "webshop"
            at = OPENED - timedelta(hours=60) + timedelta(minutes=20 * n) if n < 40 else \
                OPENED - timedelta(days=rng.randint(1, 90))
            rows[StatusChange].append(dict(service_id=service, previous_state="operational", state="degraded",
                                           message="slow", at=at, person_id="tom", platform="slack"))
        for n in range(220):
            service = "payments" if n < 20 else "vpn"
            start = OPENED - timedelta(hours=48) + timedelta(hours=2 * n) if n < 20 else \
                OPENED - timedelta(days=rng.randint(1, 90))
            rows[Outage].append(dict(service_id=service, kind="unplanned", source="api", fingerprint=f"o{n}",
                                     summary="down", started_at=start, ended_at=start + timedelta(minutes=30)))
        for n in range(1, 531):
            service = "payments" if n <= 30 else "wms"
            start = OPENED - timedelta(hours=70) + timedelta(hours=2 * n) if n <= 30 else \
                OPENED + timedelta(days=rng.randint(-90, 90))
            rows[Change].append(dict(id=n, source="chat", title=f"change {n}", description="", kind="normal",
                                     risk="low", impact="low", planned_start=start,
                                     planned_end=start + timedelta(hours=1), state="closed", approvals_needed=0,
                                     prompts_sent=[], announcements=[], revision=1, created_at=now, updated_at=now,
                                     implementation_plan="", backout_plan="", test_plan=""))
            rows[ChangeService].append(dict(change_id=n, service_id=service, planned_start=start,
                                            planned_end=start + timedelta(hours=1)))
        for model in (TicketEvent, StatusChange, Outage, Change, ChangeService):
            conn.execute(insert(model.__table__), rows[model])
        conn.execute(insert(SlaClock.__table__), [dict(
            id=n, ticket_id=1, agreement_id=f"SLA-{n}", kind="sla", metric="resolution", priority="P1",
            target_seconds=3600, elapsed_seconds=5000, state="breached", breached=True, started_at=OPENED,
            computed_at=now, notified_level=100) for n in (1, 2)])
        conn.execute(insert(ClockNotice.__table__), [dict(clock_id=c, level=lv, at=OPENED + timedelta(minutes=lv))
                                                     for c in (1, 2) for lv in (50, 100)])
        conn.execute(insert(IncidentReview.__table__), [dict(
            id=1, ticket_id=1, service_id="payments", priority="P1", owner="tom", due=OPENED.date(), state="open",
            opened_by="svcbot", opened_at=now, what_happened="", impact="", factors="")])
        conn.execute(insert(ReviewNote.__table__), [dict(review_id=1, at=OPENED + timedelta(minutes=7 * n),
                                                         text=f"note {n}", person_id="tom", written_at=now)
                                                    for n in range(25)])


RAW = [  # the same rows the timeline reads, as plain SQL
    "SELECT at, kind, value, person_id FROM ticket_events WHERE ticket_id = 1 ORDER BY at, id",
    "SELECT n.at, n.level, c.kind, c.agreement_id, c.metric FROM clock_notices n JOIN sla_clocks c "
    "ON c.id = n.clock_id WHERE c.ticket_id = 1",
    "SELECT at, previous_state, state, message, person_id FROM status_history WHERE service_id = 'payments' "
    "AND at >= :start AND at <= :end",
    "SELECT id, kind, summary, started_at, ended_at FROM outages WHERE service_id = 'payments' "
    "AND started_at <= :end AND (ended_at IS NULL OR ended_at >= :start)",
    "SELECT c.id, c.title, c.state, c.outcome, c.planned_start, c.actual_start, c.actual_end, c.implementer "
    "FROM changes c JOIN change_services s ON s.change_id = c.id WHERE s.service_id = 'payments' "
    "AND c.state NOT IN ('rejected', 'cancelled') AND ((s.planned_start <= :end AND s.planned_end >= :start) "
    "OR (c.actual_start <= :end AND COALESCE(c.actual_end, :end) >= :start))",
    "SELECT id, at, text, person_id FROM incident_review_notes WHERE review_id = 1",
]


def median_ms(fn, repeat: int) -> float:
    fn()  # warm: statements compiled, pages cached
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    rt = Runtime(load_config(ROOT / "app.yaml"), store(args.database_url))
    rt.ctx.now = lambda: OPENED + timedelta(hours=8)
    fill(rt, random.Random(7))
    ctx = rt.ctx
    with ctx.sessions() as s:
        review, ticket = s.get(IncidentReview, 1), s.get(Ticket, 1)
        start, end = timeline.window(ticket, ctx.now())
    params = {"start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)} \
        if rt.engine.dialect.name == "sqlite" else {"start": start, "end": end}

    def raw():
        with rt.engine.connect() as conn:
            return sum(len(conn.execute(text(q), params).all()) for q in RAW)

    def assembled():
        with ctx.reader() as s:
            return timeline.timeline(ctx, s, s.get(IncidentReview, 1), s.get(Ticket, 1), ctx.now())

    def viewed():
        with ctx.reader() as s:
            return export.view(ctx, s, s.get(IncidentReview, 1), ctx.now())

    actor = console_actor(ctx, "tom")
    entries, rows = len(assembled()), raw()
    floor = median_ms(raw, args.repeat)
    took = median_ms(assembled, args.repeat)
    print(f"store: {rt.engine.dialect.name}; the review's ticket: 500 events; {entries} entries from {rows} rows")
    print(f"(a) timeline           {took:8.2f} ms   floor (raw SELECTs) {floor:7.2f} ms   ratio {took / floor:5.1f}×"
          f"   (ask ≤ 100 ms)")
    whole = median_ms(viewed, args.repeat)
    print(f"(b) view (with impact) {whole:8.2f} ms   ratio {whole / floor:5.1f}×")
    show = median_ms(lambda: dispatch(ctx, Command(actor=actor, text="review show REV-1")), args.repeat)
    print(f"    review show REV-1  {show:8.2f} ms   ratio {show / floor:5.1f}×")
    rt.engine.dispose()


if __name__ == "__main__":
    main()
