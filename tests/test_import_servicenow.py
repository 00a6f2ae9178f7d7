"""The ServiceNow incident import, on the real UCI "Incident management process enriched event log"
(shared/data/servicenow-incident-log, read in place: never copied into the repository).

Most tests import the first 450 incidents of the file (3,019 rows; the import's ``limit`` counts incidents,
never rows, so an incident is always whole) into a service whose SLA has response and resolution targets
for P1–P4, and check the result against what the test works out from the CSV itself with the csv module.
The file's times have no zone; the service's calendar here is America/Sao_Paulo (UTC−3 in March 2016),
so every expected UTC time below is the file's wall time plus three hours.
"""
from __future__ import annotations

import csv
import functools
import io
import os
import re
import subprocess
import zipfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import create_engine, func, select, text, update

from handlers.core.context import Command, UserError
from handlers.imports.servicenow import import_servicenow
from storage.models import AuditRecord, Base, ClockNotice, OutboxMessage, SlaClock, Ticket, TicketEvent
from tests.conftest import ROOT, SHARED, demo_config, run_cli

DATA = SHARED / "data" / "servicenow-incident-log" / "incident_event_log.zip"
LIMIT = 450  # incidents: the file's first 3,019 rows
SERVICE = "servicedesk"
ZONE = ZoneInfo("America/Sao_Paulo")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
OPEN_STATES = ("New", "Active", "Awaiting User Info", "Awaiting Vendor", "Awaiting Problem", "Awaiting Evidence")
DONE_STATES = ("Resolved", "Closed")
STATE_NAMES = {"New": "new", "Active": "in-progress", "Awaiting User Info": "awaiting-customer",
               "Awaiting Vendor": "awaiting-vendor", "Awaiting Problem": "awaiting-problem",
               "Awaiting Evidence": "awaiting-evidence"}
PRIORITIES = {"1 - Critical": "P1", "2 - High": "P2", "3 - Moderate": "P3", "4 - Low": "P4"}

pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} is not there")


def desk_config() -> dict:
    """The demo configuration plus a service desk whose SLA has response and resolution targets for P1–P4."""
    cfg = demo_config()
    cfg["calendars"]["servicedesk"] = {
        "timezone": "America/Sao_Paulo", "hours": {d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": [{"country": "BR"}]}
    cfg["services"].append({"id": SERVICE, "name": "Service Desk", "description": "The ServiceNow-era desk.",
                            "owner": "priya", "tier": 2, "channel": "ops", "calendar": "servicedesk"})
    cfg["agreements"].append({
        "id": "SLA-DESK", "kind": "sla", "service": SERVICE, "party": "All staff",
        "pause_states": ["awaiting-customer"],
        "targets": [
            {"metric": "response", "priority": "P1", "within": "15 min", "goal": 95},
            {"metric": "resolution", "priority": "P1", "within": "4 hours", "goal": 90},
            {"metric": "response", "priority": "P2", "within": "1 business hours", "goal": 95},
            {"metric": "resolution", "priority": "P2", "within": "8 business hours", "goal": 90},
            {"metric": "response", "priority": "P3", "within": "4 business hours", "goal": 90},
            {"metric": "resolution", "priority": "P3", "within": "3 business days", "goal": 85},
            {"metric": "response", "priority": "P4", "within": "1 business days", "goal": 90},
            {"metric": "resolution", "priority": "P4", "within": "5 business days", "goal": 80}]})
    return cfg


@pytest.fixture
def desk_file(tmp_path):
    path = tmp_path / "desk.yaml"
    path.write_text(yaml.safe_dump(desk_config(), sort_keys=False))
    return path


def make_runtime(config_path: Path, url: str):
    from bot.runtime import Runtime
    rt = Runtime.from_file(str(config_path), url)
    rt.ctx.now = lambda: NOW
    return rt


@pytest.fixture
def desk(database_url, desk_file):
    rt = make_runtime(desk_file, database_url)
    yield rt
    rt.engine.dispose()


# ------------------------------------------------------------------------------- the CSV, read by the test

@functools.lru_cache(maxsize=1)
def all_rows() -> tuple[dict, ...]:
    with zipfile.ZipFile(DATA) as z, z.open("incident_event_log.csv") as raw:
        return tuple(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline="")))


def first_incidents(n: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in all_rows():
        if row["number"] not in out and len(out) == n:
            continue
        out.setdefault(row["number"], []).append(row)
    return out


def dayfirst(text: str) -> datetime:
    """The file's wall time, read independently of the importer, in UTC."""
    return datetime.strptime(text, "%d/%m/%Y %H:%M").replace(tzinfo=ZONE).astimezone(timezone.utc)


def in_order(rows: list[dict]) -> list[dict]:
    usable = [r for r in rows if r["incident_state"] in OPEN_STATES + DONE_STATES]
    return sorted(usable, key=lambda r: (dayfirst(r["sys_updated_at"]), int(r["sys_mod_count"])))


def stale(before: list[dict], row: dict) -> bool:
    """An open row after a resolution, with no rise of reopen_count and a lower sys_mod_count than a row
    before it: an older version of the record, not a reopen."""
    done = [r for r in before if r["incident_state"] in DONE_STATES]
    return (row["incident_state"] in OPEN_STATES and bool(before) and before[-1]["incident_state"] in DONE_STATES
            and int(row["reopen_count"]) <= max(int(r["reopen_count"]) for r in before)
            and int(row["sys_mod_count"]) < max(int(r["sys_mod_count"]) for r in done))


def expected_kinds(incidents: dict[str, list[dict]]) -> Counter:
    """How many events of each kind the documented rules give, counted from the rows' values alone."""
    c = Counter()
    for rows in incidents.values():
        rows = in_order(rows)
        c["open"] += 1
        c["assign"] += rows[0]["assignment_group"] != "?"
        state, reopens, responded, vendor = "New", int(rows[0]["reopen_count"]), False, None
        rows = [row for i, row in enumerate(rows) if not stale(rows[:i], row)]
        for before, row in zip([None] + rows, rows):
            if before is not None:
                c["assign"] += row["assignment_group"] != before["assignment_group"]
                c["priority"] += row["priority"] != before["priority"]
            if row["vendor"] != "?" and row["vendor"] != vendor:
                c["supplier"] += 1
                vendor = row["vendor"]
            new = row["incident_state"]
            if new in OPEN_STATES and (state in DONE_STATES or int(row["reopen_count"]) > reopens):
                c["reopen"] += 1
                state = "Active"
            reopens = max(reopens, int(row["reopen_count"]))
            if new == state:
                continue
            if new in DONE_STATES:
                c["resolve" if new == "Resolved" else "close"] += 1
                responded = True
            else:
                if state == "New" and not responded:
                    c["respond"] += 1
                    responded = True
                c["state"] += 1
            state = new
    return +c


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(all_rows()[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def rows_of(*numbers: str) -> list[dict]:
    return [r for r in all_rows() if r["number"] in numbers]


# ------------------------------------------------------------------------------------------ the store

def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def events_of(ctx, number: str) -> list[tuple[datetime, str, str | None]]:
    with ctx.sessions() as s:
        ticket = s.scalar(select(Ticket).where(Ticket.source == "servicenow", Ticket.external_id == number))
        return [(e.at, e.kind, e.value) for e in s.scalars(
            select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.at, TicketEvent.id))]


def ticket(ctx, number: str) -> Ticket:
    with ctx.sessions() as s:
        return s.scalar(select(Ticket).where(Ticket.source == "servicenow", Ticket.external_id == number))


def snapshot(engine) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order."""
    with engine.connect() as conn:
        return {t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for t in Base.metadata.sorted_tables}


def count(ctx, model) -> int:
    with ctx.sessions() as s:
        return s.scalar(select(func.count()).select_from(model))


def run(ctx, text_: str):
    from handlers.core.people import console_actor
    from handlers.router import dispatch
    return dispatch(ctx, Command(actor=console_actor(ctx, "priya"), text=text_))


# --------------------------------------------------------------------------------------------- the tests

def test_counts_match_the_csv(desk):
    incidents = first_incidents(LIMIT)
    result = import_servicenow(desk.ctx, DATA, SERVICE, limit=LIMIT)

    rows = [r for rs in incidents.values() for r in rs]
    assert 2900 <= len(rows) <= 3100  # "about 3,000 rows"
    assert result.tickets_created == len(incidents) == LIMIT
    assert (result.tickets_updated, result.tickets_unchanged) == (0, 0)
    assert result.rows_read == len(rows)
    assert result.rows_skipped == sum(r["incident_state"] not in OPEN_STATES + DONE_STATES for r in rows)
    with desk.ctx.sessions() as s:
        kinds = Counter(dict(s.execute(select(TicketEvent.kind, func.count()).group_by(TicketEvent.kind)).all()))
        tickets = {t.external_id: t for t in s.scalars(select(Ticket))}
    expected = expected_kinds(incidents)
    assert kinds == expected
    assert result.events_added == sum(expected.values())
    assert expected["reopen"] > 0 and expected["priority"] > 0 and expected["assign"] > len(incidents)

    assert set(tickets) == set(incidents)
    for number, rows_ in incidents.items():
        t, last = tickets[number], in_order(rows_)[-1]
        assert (t.source, t.service_id, t.kind) == ("servicenow", SERVICE, "incident")
        assert t.opened_at == dayfirst(last["opened_at"]), number
        assert t.priority == PRIORITIES[last["priority"]], number
        assert t.assignment_group == (None if last["assignment_group"] == "?" else last["assignment_group"]), number
        assert t.state == "closed" and t.closed_at == dayfirst(last["closed_at"]), number
        ordered = in_order(rows_)
        ordered = [r for i, r in enumerate(ordered) if not stale(ordered[:i], r)]
        while ordered and ordered[-1]["incident_state"] == "Closed":
            ordered.pop()
        if ordered and ordered[-1]["incident_state"] == "Resolved":  # resolved, then closed: when the rows say
            first = len(ordered) - 1
            while first and ordered[first - 1]["incident_state"] == "Resolved":
                first -= 1
            assert t.resolved_at == max(dayfirst(ordered[first]["sys_updated_at"]), t.opened_at), number
        elif ordered and ordered[-1]["incident_state"] in OPEN_STATES:  # closed straight from an open state
            assert t.resolved_at is None, number
        assert t.source_resolved_at == (None if last["resolved_at"] == "?" else dayfirst(last["resolved_at"]))
    # INC0000137's New row stamped 11:10, after the Resolved row of 11:03, is of modification 1 (Resolved is
    # 2) and reopen_count stays 0: a stale copy, not a reopen. The ticket stays resolved at 11:03.
    assert [k for _, k, _ in events_of(desk.ctx, "INC0000137")] == ["open", "assign", "resolve", "close"]
    assert tickets["INC0000137"].resolved_at == dayfirst("29/2/2016 11:03")
    # Where the export's resolved_at is later than the row that resolved it, the clocks follow the row:
    # INC0000441 went from New straight to Resolved at 8/3 12:12 (modification 13), and stayed Resolved
    # through four more updates to 15/3 13:51, which is its resolved_at. Response and resolution: 8/3 12:12.
    t = tickets["INC0000441"]
    assert t.resolved_at == t.responded_at == dayfirst("8/3/2016 12:12")
    assert t.source_resolved_at == dayfirst("15/3/2016 13:51")


def test_a_hand_off_rebuilt_event_by_event(desk):
    """INC0000104: raised to 2 - High ten minutes in, taken up at 13:18, handed from Group 70 to Group 30
    the next morning, resolved at 11:55 and closed on 6 March (CSV rows, Sao Paulo wall time):
        New    29/2 09:17 P3 Group 70 | New 29/2 09:18 P2 | Active 29/2 13:18 | Active 29/2 23:48
        Active 1/3 10:00 Group 30     | Resolved 1/3 11:55 | Closed 6/3 12:00
        opened_at 29/2/2016 09:08, resolved_at 1/3/2016 11:55, closed_at 6/3/2016 12:00"""
    import_servicenow(desk.ctx, DATA, SERVICE, limit=LIMIT)
    assert events_of(desk.ctx, "INC0000104") == [
        (utc(2016, 2, 29, 12, 8), "open", "P3"),
        (utc(2016, 2, 29, 12, 8), "assign", "Group 70"),
        (utc(2016, 2, 29, 12, 18), "priority", "P2"),
        (utc(2016, 2, 29, 16, 18), "respond", None),
        (utc(2016, 2, 29, 16, 18), "state", "in-progress"),
        (utc(2016, 3, 1, 13, 0), "assign", "Group 30"),
        (utc(2016, 3, 1, 14, 55), "resolve", None),
        (utc(2016, 3, 6, 15, 0), "close", None),
    ]
    t = ticket(desk.ctx, "INC0000104")
    assert (t.state, t.priority, t.assignment_group) == ("closed", "P2", "Group 30")
    assert (t.responded_at, t.resolved_at, t.closed_at) == (utc(2016, 2, 29, 16, 18), utc(2016, 3, 1, 14, 55),
                                                            utc(2016, 3, 6, 15, 0))


def test_a_reopened_incident_rebuilt_event_by_event(desk):
    """INC0000715, reopened twice (reopen_count 0 → 1 → 2), Group 73 throughout (CSV rows, wall time):
        New 1/3 13:03 | Active 1/3 14:10 | Resolved 3/3 08:36 | Active 4/3 12:42 (reopen_count 1)
        Active 10/3 12:16 | Resolved 10/3 12:16 | Active 10/3 12:47 (reopen_count 2) | Active ×2
        Resolved 10/3 15:36 | Closed 24/3 18:50
        opened_at 1/3/2016 13:03, resolved_at 10/3/2016 15:36 (the last resolution), closed_at 24/3/2016 18:50"""
    import_servicenow(desk.ctx, DATA, SERVICE, limit=LIMIT)
    assert events_of(desk.ctx, "INC0000715") == [
        (utc(2016, 3, 1, 16, 3), "open", "P3"),
        (utc(2016, 3, 1, 16, 3), "assign", "Group 73"),
        (utc(2016, 3, 1, 17, 10), "respond", None),
        (utc(2016, 3, 1, 17, 10), "state", "in-progress"),
        (utc(2016, 3, 3, 11, 36), "resolve", None),
        (utc(2016, 3, 4, 15, 42), "reopen", None),
        (utc(2016, 3, 10, 15, 16), "resolve", None),
        (utc(2016, 3, 10, 15, 47), "reopen", None),
        (utc(2016, 3, 10, 18, 36), "resolve", None),
        (utc(2016, 3, 24, 21, 50), "close", None),
    ]
    t = ticket(desk.ctx, "INC0000715")
    assert (t.state, t.resolved_at, t.closed_at) == ("closed", utc(2016, 3, 10, 18, 36), utc(2016, 3, 24, 21, 50))
    with desk.ctx.sessions() as s:
        clock = s.scalar(select(SlaClock).where(SlaClock.ticket_id == t.id, SlaClock.metric == "resolution"))
    # Measured in the desk's business hours (08:00–18:00 São Paulo, Mon–Fri), the resolved stretches left out:
    # 1/3 13:03–18:00, 2/3 08:00–18:00, 3/3 08:00–08:36, 4/3 12:42–18:00, 7/3–9/3 whole days,
    # 10/3 08:00–12:16, 10/3 12:47–15:36  = 4:57 + 10:00 + 0:36 + 5:18 + 30:00 + 4:16 + 2:49 = 57 h 56 min.
    assert clock.elapsed_seconds == (57 * 60 + 56) * 60
    assert clock.state == "breached" and clock.stopped_at == utc(2016, 3, 10, 18, 36)


def test_dates_are_read_day_first(desk):
    import_servicenow(desk.ctx, DATA, SERVICE, limit=LIMIT)
    # 29/2/2016 exists (2016 is a leap year): INC0000045 was opened then, at 01:16 São Paulo time.
    assert ticket(desk.ctx, "INC0000045").opened_at == utc(2016, 2, 29, 4, 16)
    # 2/3/2016 is 2 March, not 3 February.
    closed_2_march = sorted({r["number"] for r in all_rows()[:3019] if r["closed_at"].startswith("2/3/2016 ")})
    assert closed_2_march
    for number in closed_2_march:
        closed = ticket(desk.ctx, number).closed_at
        assert (closed.month, closed.day) == (3, 2), number
    # Every event is at one of its incident's own times, read day first (a swapped day and month is not).
    incidents = first_incidents(LIMIT)
    with desk.ctx.sessions() as s:
        events = s.execute(select(Ticket.external_id, TicketEvent.at).join(Ticket, Ticket.id == TicketEvent.ticket_id))
        for number, at in events:
            times = {dayfirst(r[c]) for r in incidents[number]
                     for c in ("opened_at", "sys_updated_at", "resolved_at", "closed_at") if r[c] != "?"}
            assert at in times, (number, at)


def measured_one_by_one(ctx, numbers=None) -> None:
    """The slow reference path: each ticket's fields worked out again from the history the store holds, and
    its clocks measured by ``sync_clocks`` (which reads that history back), one ticket at a time, as the
    import did before it measured a batch's clocks together from the history in hand."""
    from handlers.sla import breaches
    from handlers.core.context import Work
    from handlers.imports.servicenow import _refresh
    with ctx.sessions.begin() as s:
        work = Work(ctx, s, None)
        query = select(Ticket).order_by(Ticket.id)
        for t in s.scalars(query if numbers is None else query.where(Ticket.external_id.in_(numbers))).all():
            _refresh(t, [(e.at, e.kind, e.value) for e in breaches.events_of(s, t.id)])
            breaches.sync_clocks(work, t, announce_past=False)


def test_a_second_import_changes_nothing(desk):
    first = import_servicenow(desk.ctx, DATA, SERVICE, limit=LIMIT)
    before = snapshot(desk.engine)
    # The tickets and clocks the import wrote are what the one-by-one path makes of the stored history.
    measured_one_by_one(desk.ctx)
    assert snapshot(desk.engine) == before
    desk.ctx.now = lambda: NOW + timedelta(days=1)  # a day later: any re-measured clock would show it
    again = import_servicenow(desk.ctx, DATA, SERVICE, limit=LIMIT)
    assert (again.tickets_created, again.tickets_updated, again.events_added) == (0, 0, 0)
    assert again.tickets_unchanged == first.tickets_created == LIMIT
    assert snapshot(desk.engine) == before
    assert len(before["audit_log"]) == len(range(0, LIMIT, 250))  # one audit record per batch, none the second time
    action = [c.name for c in AuditRecord.__table__.columns].index("action")
    assert {r[action] for r in before["audit_log"]} == {"import.servicenow"}


def test_a_later_export_adds_only_what_is_new(desk, desk_file, tmp_path):
    incidents = first_incidents(LIMIT)
    # An earlier export: the last 50 incidents not there yet; INC0000715 cut after its first resolution,
    # INC0000104 before its hand-off (rows are as the full file has them: the columns ServiceNow fills from
    # the incident itself, resolved_at and closed_at, already hold their final values).
    cut = {"INC0000715": "3/3/2016 08:36", "INC0000104": "29/2/2016 23:48"}
    earlier = []
    for number, rows in list(incidents.items())[:LIMIT - 50]:
        until = dayfirst(cut[number]) if number in cut else None
        earlier += [r for r in rows if until is None or dayfirst(r["sys_updated_at"]) <= until]
    partial = import_servicenow(desk.ctx, write_csv(tmp_path / "earlier.csv", earlier), SERVICE)
    assert partial.tickets_created == LIMIT - 50
    assert count(desk.ctx, OutboxMessage) == 0

    desk.ctx.now = lambda: NOW + timedelta(hours=1)
    clocks_before = {c.id: c.computed_at for c in snapshot_clocks(desk.ctx)}
    later = import_servicenow(desk.ctx, DATA, SERVICE, limit=LIMIT)
    assert (later.tickets_created, later.tickets_updated, later.tickets_unchanged) == (50, 2, LIMIT - 52)
    # The two tickets that grew, and the 50 new ones, as the one-by-one path makes them.
    written = snapshot(desk.engine)
    measured_one_by_one(desk.ctx, list(cut) + list(incidents)[LIMIT - 50:])
    assert snapshot(desk.engine) == written

    # The same history as importing the later export into an empty store.
    fresh = make_runtime(desk_file, f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        reference = import_servicenow(fresh.ctx, DATA, SERVICE, limit=LIMIT)
        assert partial.events_added + later.events_added == reference.events_added
        for number in incidents:
            assert sorted(events_of(desk.ctx, number), key=repr) == sorted(events_of(fresh.ctx, number), key=repr)
        assert ticket_fields(desk.ctx) == ticket_fields(fresh.ctx)
        assert clock_results(desk.ctx) == clock_results(fresh.ctx)
    finally:
        fresh.engine.dispose()
    # Only the two tickets that changed were measured again.
    with desk.ctx.sessions() as s:
        moved = {tid for tid, in s.execute(select(Ticket.id).where(Ticket.external_id.in_(list(cut))))}
    for clock in snapshot_clocks(desk.ctx):
        if clock.id in clocks_before:
            assert (clock.computed_at == NOW + timedelta(hours=1)) == (clock.ticket_id in moved)
    assert count(desk.ctx, OutboxMessage) == 0


def snapshot_clocks(ctx) -> list[SlaClock]:
    with ctx.sessions() as s:
        return s.scalars(select(SlaClock)).all()


def ticket_fields(ctx) -> dict:
    with ctx.sessions() as s:
        return {t.external_id: (t.state, t.priority, t.assignment_group, t.supplier, t.opened_at, t.responded_at,
                                t.resolved_at, t.closed_at, t.updated_at) for t in s.scalars(select(Ticket))}


def clock_results(ctx) -> dict:
    with ctx.sessions() as s:
        return {(number, c.metric): (c.priority, c.state, c.elapsed_seconds, c.breached, c.started_at, c.stopped_at)
                for c, number in s.execute(select(SlaClock, Ticket.external_id)
                                           .join(Ticket, Ticket.id == SlaClock.ticket_id))}


LINE = re.compile(r"^[✅❌] (?P<metric>response|resolution) (?P<priority>P[1-4]) · (?P<group>.+?): "
                  r"(?P<share>[\d.]+) % met \((?P<met>\d+)/(?P<measured>\d+)\)")


def attainment_lines(reply) -> list[dict]:
    lines = [line for section in reply.sections for line in section.text.splitlines()]
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed) if not m]
    return [m.groupdict() for m in parsed]


def final_priority_and_group(incidents) -> Counter:
    finals = Counter()
    for rows in incidents.values():
        last = in_order(rows)[-1]
        group = last["assignment_group"]
        finals[(PRIORITIES[last["priority"]], "unassigned" if group == "?" else group)] += 1
    return finals


def test_sla_by_group_gives_attainment_per_priority_and_group(desk):
    import_servicenow(desk.ctx, DATA, SERVICE, limit=LIMIT)
    reply, outcome = run(desk.ctx, f"sla {SERVICE} all by group")
    assert outcome == "ok", reply
    assert reply.title == f"SLA attainment, all time: {SERVICE}"
    assert [s.title for s in reply.sections] == ["SLA SLA-DESK — All staff"]
    lines = attainment_lines(reply)
    finals = final_priority_and_group(first_incidents(LIMIT))
    for metric in ("response", "resolution"):
        shown = {(x["priority"], x["group"]): x for x in lines if x["metric"] == metric}
        assert {p for p, _ in shown} == {p for p, _ in finals}  # every priority the incidents ended at
        for key, x in shown.items():
            assert key in finals, key
            assert 0 <= int(x["met"]) <= int(x["measured"]) <= finals[key], (metric, key, x)
            assert float(x["share"]) == pytest.approx(100 * int(x["met"]) / int(x["measured"]), abs=0.05)
        # Nearly every incident is measured.
        assert sum(int(x["measured"]) for x in shown.values()) >= 0.95 * LIMIT
    # A breached resolution is shown as such: INC0000715 (57 h 56 min of business time, when 3 business days
    # from Tuesday 13:03 is Thursday 18:00, 24 h 57 min) is among Group 73's P3 resolutions, not all met.
    g73 = next(x for x in lines if (x["metric"], x["priority"], x["group"]) == ("resolution", "P3", "Group 73"))
    assert int(g73["met"]) < int(g73["measured"])


def clock_states(ctx, number: str) -> dict[str, str]:
    t = ticket(ctx, number)
    with ctx.sessions() as s:
        return dict(s.execute(select(SlaClock.metric, SlaClock.state).where(SlaClock.ticket_id == t.id)).all())


def test_an_incident_resolved_the_minute_it_was_opened_is_met(desk):
    """INC0000093's first row, at 29/2/2016 08:56, the minute it was opened, is already Resolved."""
    import_servicenow(desk.ctx, DATA, SERVICE, limit=LIMIT)
    t = ticket(desk.ctx, "INC0000093")
    assert t.opened_at == t.resolved_at == utc(2016, 2, 29, 11, 56)
    assert clock_states(desk.ctx, "INC0000093") == {"response": "met", "resolution": "met"}


def test_every_imported_incident_is_measured_in_attainment(desk):
    import_servicenow(desk.ctx, DATA, SERVICE, limit=LIMIT)
    assert [k for _, k, v in events_of(desk.ctx, "INC0000333")] == ["open", "assign", "respond", "state",
                                                                      "resolve", "close"]
    assert clock_states(desk.ctx, "INC0000333") == {"response": "met", "resolution": "met"}
    reply, _ = run(desk.ctx, f"sla {SERVICE} all by group")
    finals = final_priority_and_group(first_incidents(LIMIT))
    for metric in ("response", "resolution"):
        shown = {(x["priority"], x["group"]): int(x["measured"]) for x in attainment_lines(reply)
                 if x["metric"] == metric}
        assert shown == dict(finals), metric


def test_history_is_not_news(desk):
    from handlers.sla import breaches
    import_servicenow(desk.ctx, DATA, SERVICE, limit=LIMIT)
    assert count(desk.ctx, OutboxMessage) == 0
    assert count(desk.ctx, ClockNotice) == 0
    with desk.ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(SlaClock).where(SlaClock.breached)) > 0  # there was news
        assert s.scalar(select(func.count()).select_from(SlaClock).where(SlaClock.next_check_at.is_not(None))) == 0
    assert breaches.sweep(desk.ctx) == 0
    assert count(desk.ctx, OutboxMessage) == 0


def test_an_export_that_ends_while_incidents_are_open_announces_nothing(desk, tmp_path):
    """Incidents cut while still open get running clocks, long past due; none of it is announced."""
    from handlers.sla import breaches
    # An export from before they were resolved: no Resolved or Closed rows, no resolved_at or closed_at yet.
    rows = [{**r, "resolved_at": "?", "closed_at": "?"} for r in rows_of("INC0000104", "INC0000715")
            if r["incident_state"] not in DONE_STATES]
    result = import_servicenow(desk.ctx, write_csv(tmp_path / "open.csv", rows), SERVICE)
    assert result.tickets_created == 2
    assert {ticket(desk.ctx, n).state for n in ("INC0000104", "INC0000715")} == {"in-progress"}
    with desk.ctx.sessions() as s:
        clocks = s.scalars(select(SlaClock).where(SlaClock.metric == "resolution")).all()
    assert [c.state for c in clocks] == ["running", "running"] and all(c.breached for c in clocks)
    assert breaches.sweep(desk.ctx) == 0
    assert count(desk.ctx, OutboxMessage) == 0 and count(desk.ctx, ClockNotice) == 0


def test_rows_from_elsewhere_in_the_file(desk, tmp_path):
    """INC0003228 waited on a vendor ("code 8s"); INC0028089 has two rows in state -100, which are skipped.
    INC0003228's rows (wall time): New 7/3 10:20 Group 25 | New 14/3 08:31 Group 9 | Active 18/3 13:00 |
    Active 1/6 16:35 | Active 1/6 16:35 Group 25 | Awaiting Vendor 2/6 10:50 vendor code 8s |
    Awaiting Vendor 2/6 10:51 | Resolved 2/6 10:51 | Closed 7/6 11:07; opened_at 7/3/2016 10:17.
    INC0027498 never left New before it was resolved (rows, wall time): opened 9/5 13:34 | New ×4 to 14:01 |
    Resolved 14:45 (modification 4) | Resolved 14:45 | Resolved 11/5 15:36 ×2 | Closed 16/5 16:07; its
    resolved_at is 11/5 15:36."""
    rows = rows_of("INC0003228", "INC0028089", "INC0027498")
    result = import_servicenow(desk.ctx, write_csv(tmp_path / "elsewhere.csv", rows), SERVICE)  # a plain CSV
    assert (result.tickets_created, result.rows_read) == (3, len(rows))
    assert result.rows_skipped == 2 and result.skip_reasons == {"incident_state -100": 2}
    assert events_of(desk.ctx, "INC0003228") == [
        (utc(2016, 3, 7, 13, 17), "open", "P3"),
        (utc(2016, 3, 7, 13, 17), "assign", "Group 25"),
        (utc(2016, 3, 14, 11, 31), "assign", "Group 9"),
        (utc(2016, 3, 18, 16, 0), "respond", None),
        (utc(2016, 3, 18, 16, 0), "state", "in-progress"),
        (utc(2016, 6, 1, 19, 35), "assign", "Group 25"),
        (utc(2016, 6, 2, 13, 50), "supplier", "code 8s"),
        (utc(2016, 6, 2, 13, 50), "state", "awaiting-vendor"),
        (utc(2016, 6, 2, 13, 51), "resolve", None),
        (utc(2016, 6, 7, 14, 7), "close", None),
    ]
    assert ticket(desk.ctx, "INC0003228").supplier == "code 8s"
    # INC0028089: New, two -100 rows, Resolved at 12:03 and again at 13:02 (= resolved_at), Closed: resolved
    # when the rows say so first; the export's resolved_at is kept beside it.
    assert [k for _, k, _ in events_of(desk.ctx, "INC0028089")] == ["open", "assign", "resolve", "close"]
    assert ticket(desk.ctx, "INC0028089").resolved_at == utc(2016, 6, 16, 15, 3)
    assert ticket(desk.ctx, "INC0028089").source_resolved_at == utc(2016, 6, 16, 16, 2)
    # INC0027498: responded and resolved 1 h 11 min after opening, by its rows, not 50 h (resolved_at).
    t = ticket(desk.ctx, "INC0027498")
    assert t.responded_at == t.resolved_at == utc(2016, 5, 9, 17, 45)
    assert t.source_resolved_at == utc(2016, 5, 11, 18, 36)
    with desk.ctx.sessions() as s:
        stops = {c.metric: c.stopped_at for c in s.scalars(select(SlaClock).where(SlaClock.ticket_id == t.id))}
    assert stops == {"response": utc(2016, 5, 9, 17, 45), "resolution": utc(2016, 5, 9, 17, 45)}
    # The export's own time stays visible: in chat (incident show) and in the API's ticket.
    from bot.api import ticket_view
    from handlers.sla.tickets import ticket_reply
    with desk.ctx.sessions() as s:
        stored = s.get(Ticket, t.id)
        view, reply = ticket_view(desk.ctx, s, stored), ticket_reply(desk.ctx, s, stored)
    assert (view["resolved_at"], view["source_resolved_at"]) == ("2016-05-09T17:45:00Z", "2016-05-11T18:36:00Z")
    fields = {f.label: f.value for f in reply.sections[0].fields}
    assert (fields["Resolved"], fields["Resolved, as servicenow says"]) == ("2016-05-09 17:45 UTC",
                                                                          "2016-05-11 18:36 UTC")
    # A store imported before this rule has the resolution at resolved_at: importing again adds the rows'
    # one (nothing is taken out of a history), and the ticket is resolved since the first, as its clocks.
    with desk.ctx.sessions.begin() as s:
        s.execute(update(TicketEvent).where(TicketEvent.ticket_id == t.id, TicketEvent.kind == "resolve")
                  .values(at=utc(2016, 5, 11, 18, 36)))
        s.execute(update(Ticket).where(Ticket.id == t.id).values(resolved_at=utc(2016, 5, 11, 18, 36),
                                                                 source_resolved_at=None))
    again = import_servicenow(desk.ctx, write_csv(tmp_path / "again.csv", rows_of("INC0027498")), SERVICE)
    assert (again.tickets_updated, again.events_added) == (1, 1)
    assert ticket(desk.ctx, "INC0027498").resolved_at == utc(2016, 5, 9, 17, 45)


def test_rows_it_cannot_use_are_skipped_with_the_reason(desk, tmp_path):
    """INC0000045's real rows (New 29/2 01:23, Resolved 08:53 and 11:29, Closed 5/3 12:00), plus damaged
    copies of its first row, and a last row handing it to Group 9 on 13/3/2016: only a date day first, as
    2/13/2016 is no date at all then."""
    rows = rows_of("INC0000045")
    first = rows[0]
    damaged = [{**first, "incident_state": "Pending"}, {**first, "sys_updated_at": "2/13/2016 10:00"},
               {**first, "sys_updated_at": "31/2/2016 10:00"}, {**first, "priority": "?"}, {**first, "number": "?"},
               {**rows[-1], "sys_updated_at": "13/3/2016 10:00", "sys_mod_count": "5", "assignment_group": "Group 9"}]
    result = import_servicenow(desk.ctx, write_csv(tmp_path / "damaged.csv", rows + damaged), SERVICE)
    assert result.rows_read == len(rows) + len(damaged)
    assert result.skip_reasons == {"unknown incident_state 'Pending'": 1, "unreadable sys_updated_at": 2,
                                   "unknown priority '?'": 1, "no incident number": 1}
    assert result.rows_skipped == 5 and result.tickets_created == 1
    assert events_of(desk.ctx, "INC0000045") == [
        (utc(2016, 2, 29, 4, 16), "open", "P3"),
        (utc(2016, 2, 29, 4, 16), "assign", "Group 56"),
        (utc(2016, 2, 29, 11, 53), "resolve", None),  # its first Resolved row, not resolved_at (11:29)
        (utc(2016, 3, 5, 15, 0), "close", None),
        (utc(2016, 3, 13, 13, 0), "assign", "Group 9"),
    ]


def test_times_in_other_forms_are_read_as_the_plain_ones(tmp_path):
    """Most times are read by their day and minute halves; one with other spacing or with seconds is read
    by the whole pattern, to the same instant, and its row is the same."""
    from handlers.imports.servicenow_rows import read_incidents
    rows = rows_of("INC0000045", "INC0000047")
    forms = [lambda t: f" {t} ", lambda t: t.replace(" ", "  "), lambda t: f"{t}:00",
             lambda t: re.sub(r" 0(\d):", r" \1:", t)]
    columns = ("sys_updated_at", "opened_at", "resolved_at", "closed_at")
    respelt = [{**row, **{c: forms[(i + k) % len(forms)](row[c]) for k, c in enumerate(columns) if row[c] != "?"}}
               for i, row in enumerate(rows)]
    assert any(r != s for r, s in zip(rows, respelt))
    plain = read_incidents(write_csv(tmp_path / "plain.csv", rows), ZONE)
    assert read_incidents(write_csv(tmp_path / "respelt.csv", respelt), ZONE) == plain
    assert plain[0]["INC0000045"][0].opened == utc(2016, 2, 29, 4, 16)


def test_a_changed_resolved_at_alone_updates_the_ticket(desk, tmp_path):
    """The same history with another export resolved_at: nothing is added, and the ticket takes the
    export's time again; the ticket beside it is unchanged."""
    path = write_csv(tmp_path / "two.csv", rows_of("INC0027498", "INC0000045"))
    import_servicenow(desk.ctx, path, SERVICE)
    with desk.ctx.sessions.begin() as s:
        s.execute(update(Ticket).where(Ticket.external_id == "INC0027498").values(source_resolved_at=None))
    again = import_servicenow(desk.ctx, path, SERVICE)
    assert (again.tickets_updated, again.tickets_unchanged, again.events_added) == (1, 1, 0)
    assert ticket(desk.ctx, "INC0027498").source_resolved_at == utc(2016, 5, 11, 18, 36)


def test_an_incident_closed_straight_from_new_counts_as_answered(desk, tmp_path):
    # INC0003115: New 7/3/2016 09:04, Closed 7/3/2016 17:53; never resolved.
    import_servicenow(desk.ctx, write_csv(tmp_path / "closed.csv", rows_of("INC0003115")), SERVICE)
    t = ticket(desk.ctx, "INC0003115")
    with desk.ctx.sessions() as s:
        response = s.scalar(select(SlaClock).where(SlaClock.ticket_id == t.id, SlaClock.metric == "response"))
    assert response.stopped_at == t.closed_at == utc(2016, 3, 7, 20, 53)
    assert t.responded_at == t.closed_at


def test_a_late_stamped_older_row_is_not_a_reopen():
    """A row back in an open state after a resolution is a reopen when reopen_count rises or it is a later
    modification; a lower sys_mod_count with the same reopen_count is an older copy of the record."""
    from handlers.imports.servicenow_rows import Row, history
    opened = utc(2016, 2, 29, 12, 0)

    def row(minutes: int, mod: int, state: str, reopens: int = 0) -> Row:
        return Row(updated=opened + timedelta(minutes=minutes), mod_count=mod, state=state, reopen_count=reopens,
                   priority="P3", group=None, vendor=None, opened=opened, resolved=None, closed=None, title="")

    def kinds(rows: list[Row]) -> list[str]:
        return [k for _, k, _ in history(rows)]

    assert kinds([row(0, 1, "new"), row(60, 2, "resolved"), row(70, 1, "new"), row(90, 3, "closed")]) == [
        "open", "resolve", "close"]
    assert kinds([row(0, 1, "new"), row(60, 2, "resolved"), row(70, 3, "in-progress"), row(90, 4, "resolved")]) == [
        "open", "resolve", "reopen", "resolve"]
    assert kinds([row(0, 1, "new"), row(60, 2, "resolved"), row(70, 1, "new", reopens=1)]) == [
        "open", "resolve", "reopen", "state"]


def test_an_unknown_service_is_refused(desk):
    with pytest.raises(UserError, match="There is no service 'helpdesk'"):
        import_servicenow(desk.ctx, DATA, "helpdesk", limit=5)
    with pytest.raises(UserError, match="not an IANA time zone"):
        import_servicenow(desk.ctx, DATA, SERVICE, timezone="Mars/Olympus", limit=5)
    with pytest.raises(UserError, match="Cannot read"):
        import_servicenow(desk.ctx, DATA.with_name("nothing-here.zip"), SERVICE, limit=5)
    assert count(desk.ctx, Ticket) == count(desk.ctx, AuditRecord) == 0


# -------------------------------------------------------------------------------------------- the command

def cli(database_url: str, config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SVCBOT_", "SLACK_", "MICROSOFT_"))}
    env.update(SVCBOT_DATABASE_URL=database_url, SVCBOT_CONFIG=str(config), PYTHONPATH=str(ROOT))
    return run_cli(env, *args)


def test_the_import_command(database_url, desk_file):
    data = os.path.relpath(DATA, ROOT)  # ../shared/data/…, as an operator in the repository would type it
    first = cli(database_url, desk_file, "import", "servicenow", data, "--service", SERVICE, "--limit", "5",
                "--timezone", "UTC")
    assert first.returncode == 0, first.stderr
    incidents = first_incidents(5)
    out = first.stdout
    assert "tickets created: 5\n" in out and "tickets unchanged: 0\n" in out
    assert f"rows read: {sum(len(r) for r in incidents.values())}\n" in out
    again = cli(database_url, desk_file, "import", "servicenow", data, "--service", "Service Desk", "--limit", "5",
                "--timezone", "UTC")
    assert again.returncode == 0, again.stderr
    assert "tickets created: 0\n" in again.stdout and "tickets unchanged: 5\n" in again.stdout
    assert "events added: 0\n" in again.stdout
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            opened = conn.execute(select(Ticket.opened_at).where(Ticket.external_id == "INC0000045")).scalar_one()
            audits = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    finally:
        engine.dispose()
    assert opened == utc(2016, 2, 29, 1, 16)  # --timezone UTC: the wall time as it is
    assert audits == 1


def test_the_import_command_refuses_what_it_cannot_use(database_url, desk_file, tmp_path):
    unknown = cli(database_url, desk_file, "import", "servicenow", str(DATA), "--service", "helpdesk")
    assert unknown.returncode == 2
    assert "no service 'helpdesk'" in unknown.stderr and "Traceback" not in unknown.stderr
    missing = cli(database_url, desk_file, "import", "servicenow", str(tmp_path / "nope.csv"), "--service", SERVICE)
    assert missing.returncode == 2
    assert f"cannot read {tmp_path / 'nope.csv'}" in missing.stderr and "Traceback" not in missing.stderr
    not_csv = tmp_path / "notes.csv"
    not_csv.write_text("just,some,words\n1,2,3\n")
    wrong = cli(database_url, desk_file, "import", "servicenow", str(not_csv), "--service", SERVICE)
    assert wrong.returncode == 2
    assert "not a ServiceNow incident export" in wrong.stderr and "Traceback" not in wrong.stderr
