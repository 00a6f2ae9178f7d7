"""Warning and breach notices (handlers/sla/breaches.py) through the real store (SQLite, or PostgreSQL when
SVCBOT_TEST_DATABASE_URL is set), the demo configuration and a controllable clock; tickets come in by chat
(`incident new` through the router) or through handlers.sla.tickets.open_ticket, as the API and imports do.

The demo's agreements used below (app.yaml):
- SLA-SHOP (webshop, 24x7 calendar "always", no quiet hours): P1 resolution within 2 hours.
- SLA-PAY (payments, calendar "london": Mon–Thu 08:00–18:00, Fri 08:00–17:00, quiet hours 21:00–07:00,
  paused while awaiting-customer): P1 response 15 min, P1 resolution 4 hours (clock time), P2 response
  1 business hour, P2 resolution 8 business hours.
- OLA-PAY-OPS (platform-ops): P1 resolution 2 hours. UC-CARDLINK: P1 response 30 min, resolution 2 hours.
Every instant below is worked out by hand beside it. T0 is Mon 2026-03-02 09:00 UTC; London keeps GMT
(UTC+0) until 29 March, so London wall-clock times equal UTC in these tests.
"""
from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from sqlalchemy import func, select

from bot.runtime import Runtime
from handlers.core.context import Command, Reply, Work
from handlers.core.people import resolve_actor
from handlers.reporting import digests
from handlers.router import dispatch
from handlers.sla import attainment, breaches
from handlers.sla.tickets import open_ticket
from storage.models import AuditRecord, ClockNotice, Identity, OutboxMessage, SlaClock, Ticket, TicketEvent
from tests.conftest import T0, demo_config
from tests.test_change_calendar import selects

BREACH = 100.0






@pytest.fixture
def restart(database_url, config_file, clock):
    """Start another svcbot on the same database (a restart, or a second replica), on the same clock."""
    made: list[Runtime] = []

    def start(path=config_file) -> Runtime:
        rt = Runtime.from_file(str(path), database_url)
        rt.ctx.now = clock
        made.append(rt)
        return rt

    yield start
    for rt in made:
        rt.engine.dispose()


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=timezone.utc)


def person(ctx, pid: str, platform: str = "slack"):
    p = ctx.config.person(pid)
    return resolve_actor(ctx, platform, getattr(p, platform), p.name)


def run(ctx, who: str, text: str):
    return dispatch(ctx, Command(actor=person(ctx, who), text=text))


def ok(ctx, who: str, text: str) -> Reply:
    reply, outcome = run(ctx, who, text)
    assert outcome == "ok", (text, reply)
    return reply


def open_by_chat(ctx, who: str, service: str, priority: str, title: str = "Something is broken") -> int:
    reply = ok(ctx, who, f"incident new {service} {priority} {title}")
    m = re.match(r"INC-(\d+) opened: ", reply.title)
    assert m, reply.title
    return int(m[1])


def open_by_api(ctx, service: str, priority: str, opened_at: datetime | None = None, group: str | None = "team",
                title: str = "Something is broken") -> int:
    """As the JSON API or an import opens a ticket: open_ticket, then the clocks, in one transaction."""
    if group == "team":
        group = ctx.config.service(service).team
    with ctx.sessions.begin() as s:
        work = Work(ctx, s, None)
        ticket = open_ticket(work, source="api", service_id=service, priority=priority, title=title,
                             at=opened_at or ctx.now(), external_id=f"EXT-{service}-{ctx.now().timestamp()}",
                             group=group)
        breaches.sync_clocks(work, ticket)
        return ticket.id


def sweep(ctx, times: int = 3) -> int:
    return sum(breaches.sweep(ctx) for _ in range(times))


def _next_tick(t: datetime, step: timedelta) -> datetime:
    midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + ((t - midnight) // step + 1) * step


def walk(clock, until: datetime, *contexts, step=timedelta(minutes=5), times: int = 3) -> int:
    """Move the clock to ``until`` on a grid of ``step`` (so whole and half hours are hit exactly),
    sweeping ``times`` times on every context at every stop; returns how many notices were written."""
    written = 0
    while clock() < until:
        clock.to(min(_next_tick(clock(), step), until))
        for _ in range(times):
            for c in contexts:
                written += breaches.sweep(c)
    return written


def notices(ctx, ticket_id: int) -> list[tuple[str, str, float, datetime]]:
    with ctx.sessions() as s:
        rows = s.execute(select(SlaClock.agreement_id, SlaClock.metric, ClockNotice.level, ClockNotice.at)
                         .join(SlaClock, SlaClock.id == ClockNotice.clock_id)
                         .where(SlaClock.ticket_id == ticket_id)
                         .order_by(ClockNotice.at, ClockNotice.level, SlaClock.agreement_id, SlaClock.metric))
        return [tuple(r) for r in rows]


def notice_rows(ctx, ticket_id: int) -> list[tuple[ClockNotice, SlaClock]]:
    with ctx.sessions() as s:
        return [tuple(r) for r in s.execute(
            select(ClockNotice, SlaClock).join(SlaClock, SlaClock.id == ClockNotice.clock_id)
            .where(SlaClock.ticket_id == ticket_id).order_by(ClockNotice.at, ClockNotice.level))]


def outbox(ctx, ticket_id: int | None = None) -> list[OutboxMessage]:
    with ctx.sessions() as s:
        q = select(OutboxMessage).order_by(OutboxMessage.id)
        if ticket_id is not None:
            q = q.where(OutboxMessage.subject == f"ticket:{ticket_id}")
        return s.scalars(q).all()


def rows_for(ctx, notice: ClockNotice, clock_row: SlaClock) -> list[OutboxMessage]:
    prefix = f"clock:{clock_row.id}:{notice.level:g}:"
    return [r for r in outbox(ctx) if r.dedupe_key.startswith(prefix)]


def clock_row(ctx, ticket_id: int, agreement_id: str, metric: str) -> SlaClock:
    with ctx.sessions() as s:
        return s.scalar(select(SlaClock).where(SlaClock.ticket_id == ticket_id, SlaClock.agreement_id == agreement_id,
                                               SlaClock.metric == metric))


def ticket(ctx, ticket_id: int) -> Ticket:
    with ctx.sessions() as s:
        return s.get(Ticket, ticket_id)


def fields(reply: Reply) -> dict[str, str]:
    return {f.label: f.value for s in reply.sections for f in s.fields}


def targets(rows) -> list[tuple[str, str, str]]:
    return sorted((r.platform, r.target_kind, r.target) for r in rows)


def channel_targets(ctx, *channels: str) -> set[tuple[str, str, str]]:
    out = set()
    for name in channels:
        ch = ctx.config.channels[name]
        out |= {(p, "channel", getattr(ch, p)) for p in ("slack", "teams") if getattr(ch, p)}
    return out


def dm_targets(ctx, person_id: str) -> set[tuple[str, str, str]]:
    """Direct messages go to one platform: Slack, for the demo people who are on both."""
    with ctx.sessions() as s:
        return {(i.platform, "person", i.external_id)
                for i in s.scalars(select(Identity).where(Identity.person_id == person_id, Identity.platform == "slack"))}


def table_counts(ctx) -> dict[str, int]:
    with ctx.sessions() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                for m in (Ticket, TicketEvent, SlaClock, ClockNotice, OutboxMessage, AuditRecord)}


def ticket_state(ctx, ticket_id: int) -> tuple:
    t = ticket(ctx, ticket_id)
    with ctx.sessions() as s:
        clocks = s.execute(select(SlaClock.agreement_id, SlaClock.metric, SlaClock.state, SlaClock.elapsed_seconds,
                                  SlaClock.next_check_at, SlaClock.computed_at, SlaClock.notified_level)
                           .where(SlaClock.ticket_id == ticket_id).order_by(SlaClock.id)).all()
    return (t.state, t.priority, t.assignment_group, t.responded_at, t.resolved_at, t.updated_at,
            [tuple(c) for c in clocks])


def write_config(tmp_path, name: str, change) -> str:
    cfg = demo_config()
    change(cfg)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


# ------------------------------------------------------------------------------------ exactly once

@pytest.mark.parametrize("how", ["chat", "open_ticket"])
def test_50_75_100_percent_give_three_notices_however_often_and_wherever_the_sweep_runs(ctx, clock, restart, how):
    # Web shop P1, SLA-SHOP resolution within 2 hours on the 24x7 calendar, opened 09:00:
    # 50 % at 10:00, 75 % at 10:30, the breach at 11:00.
    ticket_id = open_by_chat(ctx, "grace", "webshop", "P1") if how == "chat" else open_by_api(ctx, "webshop", "P1")
    row = clock_row(ctx, ticket_id, "SLA-SHOP", "resolution")
    assert row.next_check_at == at(2, 10) and row.state == "running" and row.due_at == at(2, 11)

    written = walk(clock, at(2, 9, 55), ctx)
    assert written == 0 and notices(ctx, ticket_id) == []
    written += walk(clock, at(2, 10, 20), ctx, step=timedelta(minutes=1))
    assert notices(ctx, ticket_id) == [("SLA-SHOP", "resolution", 50, at(2, 10))]

    second = restart().ctx  # a restart (or a second replica) sweeps on the same store
    written += walk(clock, at(2, 10, 45), ctx, second)
    third = restart().ctx
    written += walk(clock, at(2, 12), second, third, ctx, step=timedelta(minutes=2, seconds=30))
    written += walk(clock, at(3, 12), third, step=timedelta(hours=1))

    assert notices(ctx, ticket_id) == [("SLA-SHOP", "resolution", 50, at(2, 10)),
                                       ("SLA-SHOP", "resolution", 75, at(2, 10, 30)),
                                       ("SLA-SHOP", "resolution", 100, at(2, 11))]
    assert written == 3
    # Three sets of outbox rows: shop (Slack and Teams) and payments-eng (Slack) for each warning; the same
    # and the owner grace by DM (on Slack, her one platform) for the breach. Nothing else, nothing twice.
    rows = outbox(ctx, ticket_id)
    assert len(rows) == 3 + 3 + 4
    assert len({r.dedupe_key for r in rows}) == len(rows)
    for notice, c in notice_rows(ctx, ticket_id):
        expected = channel_targets(ctx, "shop", "payments-eng")
        if notice.level == BREACH:
            expected |= dm_targets(ctx, "grace")
        assert targets(rows_for(ctx, notice, c)) == sorted(expected)
    assert clock_row(ctx, ticket_id, "SLA-SHOP", "resolution").next_check_at is None


def test_warn_before_gives_one_notice_that_says_how_long_is_left(ctx, clock, restart, tmp_path):
    def warn_15_min_before(cfg):
        shop = next(a for a in cfg["agreements"] if a["id"] == "SLA-SHOP")
        shop["targets"][0]["warn_before"] = ["15 min"]
    warned = restart(write_config(tmp_path, "warn-before.yaml", warn_15_min_before)).ctx
    # Web shop P1 opened 09:00, 2 hours on 24x7: 50 % at 10:00, 75 % at 10:30, 15 min before due (87.5 %)
    # at 10:45, the breach at 11:00; the sweep runs on two replicas, every 5 min, three times each.
    ticket_id = open_by_api(warned, "webshop", "P1")
    second = restart(write_config(tmp_path, "warn-before.yaml", warn_15_min_before)).ctx
    assert walk(clock, at(2, 11, 30), warned, second) == 4
    assert notices(ctx, ticket_id) == [("SLA-SHOP", "resolution", 50, at(2, 10)),
                                       ("SLA-SHOP", "resolution", 75, at(2, 10, 30)),
                                       ("SLA-SHOP", "resolution", 87.5, at(2, 10, 45)),
                                       ("SLA-SHOP", "resolution", 100, at(2, 11))]
    (found,) = [(n, c) for n, c in notice_rows(ctx, ticket_id) if n.level == 87.5]
    reply = Reply.from_dict(rows_for(ctx, *found)[0].message)
    assert reply.title == f"⚠️ INC-{ticket_id}: resolution target due in 15 min"
    assert fields(reply)["Status"] == "Due 2026-03-02 11:00 UTC, in 15 min"


def test_a_ticket_that_arrives_already_breached_gets_one_notice(ctx, clock):
    # Imported at 09:00, opened at 06:00: 3 h into a 2 h target. 50 %, 75 % and 100 % are all past.
    ticket_id = open_by_api(ctx, "webshop", "P1", opened_at=T0 - timedelta(hours=3))
    assert sweep(ctx, 5) == 1
    walk(clock, at(2, 12), ctx)
    assert notices(ctx, ticket_id) == [("SLA-SHOP", "resolution", 100, T0)]
    ((notice, c),) = notice_rows(ctx, ticket_id)
    (message,) = {r.message["title"] for r in rows_for(ctx, notice, c)}
    assert "Breached" in message
    assert fields(Reply.from_dict(rows_for(ctx, notice, c)[0].message))["Status"] == "Late by 1 h"


def test_raising_the_priority_onto_a_target_already_breached_gives_one_notice(ctx, clock):
    # Web shop P3 has no SLA-SHOP target: no clock. Raised to P1 after 3 h: 1 h past the 2 h target.
    ticket_id = open_by_chat(ctx, "grace", "webshop", "P3")
    assert clock_row(ctx, ticket_id, "SLA-SHOP", "resolution") is None
    walk(clock, at(2, 12), ctx)
    ok(ctx, "grace", f"incident priority INC-{ticket_id} P1")
    c = clock_row(ctx, ticket_id, "SLA-SHOP", "resolution")
    assert (c.elapsed_seconds, c.breached, c.due_at) == (3 * 3600, True, at(2, 11))
    assert sweep(ctx) == 1
    walk(clock, at(2, 15), ctx)
    assert notices(ctx, ticket_id) == [("SLA-SHOP", "resolution", 100, at(2, 12))]


# ------------------------------------------------------------------------------------ quiet hours

def test_warnings_wait_for_the_end_of_quiet_hours(ctx, clock):
    # Payments P1 opened Tue 03:30 (quiet hours 21:00–07:00 London), acknowledged at 03:31 (response met).
    # Resolution within 4 hours: 50 % at 05:30 and 75 % at 06:30 (both quiet), the breach at 07:30.
    clock.to(at(3, 3, 30))
    ticket_id = open_by_chat(ctx, "tom", "payments", "P1")
    clock.to(at(3, 3, 31))
    ok(ctx, "tom", f"incident ack INC-{ticket_id}")
    walk(clock, at(3, 6, 55), ctx)
    assert notices(ctx, ticket_id) == []
    walk(clock, at(3, 8), ctx)
    # At 07:00 the two held warnings become one, the higher; the breach comes on time.
    assert notices(ctx, ticket_id) == [("SLA-PAY", "resolution", 75, at(3, 7)),
                                       ("SLA-PAY", "resolution", 100, at(3, 7, 30))]
    assert clock_row(ctx, ticket_id, "SLA-PAY", "response").state == "met"


def test_a_breach_inside_quiet_hours_is_not_held(ctx, clock):
    # Payments P1 opened Tue 19:30, acknowledged 19:31. Resolution within 4 hours: 50 % at 21:30 and 75 % at
    # 22:30 (quiet: held), the breach at 23:30 (quiet, but breaches do not wait).
    clock.to(at(3, 19, 30))
    ticket_id = open_by_chat(ctx, "tom", "payments", "P1")
    clock.to(at(3, 19, 31))
    ok(ctx, "tom", f"incident ack INC-{ticket_id}")
    walk(clock, at(3, 23, 25), ctx)
    assert notices(ctx, ticket_id) == []
    walk(clock, at(4, 8), ctx)
    assert notices(ctx, ticket_id) == [("SLA-PAY", "resolution", 100, at(3, 23, 30))]


def test_a_breach_in_quiet_hours_is_sent_when_no_warning_was_held(ctx, clock):
    # The same ticket, but no sweep ran between its opening and the breach (a restart overnight, say):
    # at 23:30 the sweep finds 50, 75 and 100 % due at once and sends the breach, in quiet hours.
    clock.to(at(3, 19, 30))
    ticket_id = open_by_chat(ctx, "tom", "payments", "P1")
    clock.to(at(3, 19, 31))
    ok(ctx, "tom", f"incident ack INC-{ticket_id}")
    clock.to(at(3, 23, 30))
    assert sweep(ctx) == 1
    walk(clock, at(4, 8), ctx)
    assert notices(ctx, ticket_id) == [("SLA-PAY", "resolution", 100, at(3, 23, 30))]


# ------------------------------------------------------------------------------------ paused, resolved

def test_a_paused_clock_sends_nothing_while_paused_and_resumes_its_thresholds(ctx, clock):
    # Payments P2 at 09:00, acknowledged 09:01. Resolution 8 business hours (Mon 08:00–18:00): 3 h ran by
    # 12:00; on hold 12:00–14:00; 50 % (4 h) at 15:00, 75 % (6 h) at 17:00, 100 % (8 h): 14:00–18:00 is 4 h,
    # so 1 h more from Tue 08:00 -> Tue 09:00. (Without the pause: 13:00, 15:00, 17:00.)
    ticket_id = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(2, 9, 1))
    ok(ctx, "tom", f"incident ack INC-{ticket_id}")
    walk(clock, at(2, 12), ctx, step=timedelta(minutes=30))
    ok(ctx, "tom", f"incident hold INC-{ticket_id}")
    c = clock_row(ctx, ticket_id, "SLA-PAY", "resolution")
    assert (c.state, c.next_check_at, c.due_at, c.elapsed_seconds) == ("paused", None, None, 3 * 3600)
    walk(clock, at(2, 14), ctx)
    assert notices(ctx, ticket_id) == []
    ok(ctx, "tom", f"incident resume INC-{ticket_id}")
    c = clock_row(ctx, ticket_id, "SLA-PAY", "resolution")
    assert (c.state, c.next_check_at, c.due_at) == ("running", at(2, 15), at(3, 9))
    walk(clock, at(3, 10), ctx, step=timedelta(minutes=30))
    assert notices(ctx, ticket_id) == [("SLA-PAY", "resolution", 50, at(2, 15)),
                                       ("SLA-PAY", "resolution", 75, at(2, 17)),
                                       ("SLA-PAY", "resolution", 100, at(3, 9))]


def test_a_resolved_ticket_sends_nothing_more(ctx, clock):
    # Payments P2 at 09:00: 50 % at 13:00 is announced; resolved at 14:00 (5 h of 8: met); 75 % would have
    # been 15:00 and the breach 17:00.
    ticket_id = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(2, 9, 1))
    ok(ctx, "tom", f"incident ack INC-{ticket_id}")
    walk(clock, at(2, 14), ctx)
    ok(ctx, "tom", f"incident resolve INC-{ticket_id}")
    c = clock_row(ctx, ticket_id, "SLA-PAY", "resolution")
    assert (c.state, c.breached, c.next_check_at, c.stopped_at, c.elapsed_seconds) == \
        ("met", False, None, at(2, 14), 5 * 3600)
    rows_before = len(outbox(ctx, ticket_id))
    walk(clock, at(3, 18), ctx, step=timedelta(minutes=30))
    assert notices(ctx, ticket_id) == [("SLA-PAY", "resolution", 50, at(2, 13))]
    assert len(outbox(ctx, ticket_id)) == rows_before == 3


# ------------------------------------------------------------------------------------ where notices go

@pytest.mark.parametrize("service, owner, priority, first_breach", [
    # Payments P2 response within 1 business hour from 09:00: 50 % 09:30, 75 % 09:45, breach 10:00.
    ("payments", "tom", "P2", at(2, 10)),
    # Email P3 response within 4 business hours on Amsterdam's calendar (CET = UTC+1, 08:30–12:30 and
    # 13:30–17:30): from 10:00 CET, 50 % at 12:00 CET, 75 % at 14:00 CET, breach 15:00 CET = 14:00 UTC.
    ("email", "lucas", "P3", at(2, 14)),
])
def test_notices_go_to_the_service_channel_the_team_channel_and_the_owner_only_for_the_breach(
        ctx, clock, service, owner, priority, first_breach):
    svc = ctx.config.service(service)
    ticket_id = open_by_chat(ctx, owner, service, priority)
    walk(clock, first_breach, ctx)
    found = notice_rows(ctx, ticket_id)
    assert [(c.metric, n.level) for n, c in found] == [("response", 50), ("response", 75), ("response", 100)]
    team_channel = ctx.config.group(svc.team).channel
    for notice, c in found:
        expected = channel_targets(ctx, svc.channel, team_channel)
        if notice.level == BREACH:
            expected |= dm_targets(ctx, owner)
        rows = rows_for(ctx, notice, c)
        assert targets(rows) == sorted(expected)
        assert all(r.status == "pending" and r.subject == f"ticket:{ticket_id}" for r in rows)
        assert all(r.message["private"] is False for r in rows)
    if service == "payments":  # written out once, by hand, from app.yaml
        (warning, _), (_, _), (breach, c) = found
        assert targets(rows_for(ctx, breach, c)) == sorted([
            ("slack", "channel", "C0PAYMENTS"), ("teams", "channel", "19:payments00000000000000000000000@thread.tacv2"),
            ("slack", "channel", "C0PAYENG01"), ("slack", "person", "U0TOM0002")])
    else:  # it-announce on both platforms; workplace-it is a Teams channel only
        assert len(rows_for(ctx, *found[0])) == 3 and len(rows_for(ctx, *found[2])) == 4


def test_the_team_channel_is_the_team_assigned_when_the_notice_goes(ctx, clock):
    # Payments P2 handed to platform-ops at 09:10: the response notices go to payments and platform-ops,
    # not payments-eng.
    ticket_id = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(2, 9, 10))
    ok(ctx, "tom", f"incident assign INC-{ticket_id} platform-ops")
    walk(clock, at(2, 10), ctx)
    found = [(n, c) for n, c in notice_rows(ctx, ticket_id) if c.agreement_id == "SLA-PAY"]
    assert [(c.metric, n.level) for n, c in found] == [("response", 50), ("response", 75), ("response", 100)]
    for notice, c in found:
        channels = {t for t in targets(rows_for(ctx, notice, c)) if t[1] == "channel"}
        assert channels == channel_targets(ctx, "payments", "platform-ops")
        assert ("slack", "channel", "C0PAYENG01") not in channels


# ------------------------------------------------------------------------------------ what a notice says

def _p1_with_ola_and_uc(ctx, clock) -> int:
    """Payments P1 at 09:00 (SLA-PAY resolution within 4 hours: 50 % 11:00, 75 % 12:00, breach 13:00);
    acknowledged 09:05; with platform-ops from 09:30 (OLA-PAY-OPS, 2 hours, runs from then on); waiting on
    CardLink 10:30–11:15 (UC-CARDLINK: response 45 min of 30 — late; resolution 45 min of 2 hours)."""
    ticket_id = open_by_chat(ctx, "tom", "payments", "P1", "Card payments down")
    walk(clock, at(2, 9, 5), ctx)
    ok(ctx, "tom", f"incident ack INC-{ticket_id}")
    walk(clock, at(2, 9, 30), ctx)
    ok(ctx, "tom", f"incident assign INC-{ticket_id} platform-ops")
    walk(clock, at(2, 10, 30), ctx, step=timedelta(minutes=15))
    ok(ctx, "tom", f"incident vendor INC-{ticket_id} cardlink")
    walk(clock, at(2, 11, 15), ctx, step=timedelta(minutes=15))
    ok(ctx, "tom", f"incident resume INC-{ticket_id}")
    walk(clock, at(2, 12, 30), ctx, step=timedelta(minutes=15))
    return ticket_id


def _sla_breach_message(ctx, ticket_id: int) -> tuple[ClockNotice, Reply]:
    (found,) = [(n, c) for n, c in notice_rows(ctx, ticket_id)
                if (c.agreement_id, c.metric, n.level) == ("SLA-PAY", "resolution", BREACH)]
    rows = rows_for(ctx, *found)
    assert rows and all(r.message == rows[0].message for r in rows)
    return found[0], Reply.from_dict(rows[0].message)


def test_the_breach_notice_names_ticket_agreement_target_lateness_and_the_ola_and_uc_time(ctx, clock):
    ticket_id = _p1_with_ola_and_uc(ctx, clock)
    warning = [n for n, c in notice_rows(ctx, ticket_id) if (c.agreement_id, c.metric) == ("SLA-PAY", "resolution")]
    assert [(n.level, n.at) for n in warning] == [(50, at(2, 11)), (75, at(2, 12))]
    clock.to(at(2, 13, 20))  # first sweep after the breach at 13:00: 20 min late
    sweep(ctx)
    notice, reply = _sla_breach_message(ctx, ticket_id)
    assert notice.at == at(2, 13, 20)
    f = fields(reply)
    assert f"INC-{ticket_id}" in reply.title and "Breached" in reply.title and reply.tone == "error"
    assert reply.text == "Card payments down"
    assert f["Ticket"] == f"INC-{ticket_id} · P1 · in-progress"
    assert f["Service"] == "payments"
    assert f["Target"] == "SLA SLA-PAY resolution P1 (within 4 h)"
    assert f["Status"] == "Late by 20 min"
    assert f["Used"] == "4 h 20 min of 4 h"
    used_by = f["Time used by"].splitlines()
    assert [line.split(":")[0] for line in used_by] == [
        "OLA OLA-PAY-OPS resolution", "UC UC-CARDLINK resolution", "UC UC-CARDLINK response"]
    assert used_by[1] == "UC UC-CARDLINK resolution: 45 min of 2 h"
    assert used_by[2] == "UC UC-CARDLINK response: 45 min of 30 min — breached"
    assert [(b.label, b.run) for b in reply.buttons] == [("Acknowledge", f"sla ack {notice.id}")]


def test_a_warning_notice_says_how_much_is_used_and_when_it_is_due(ctx, clock):
    ticket_id = _p1_with_ola_and_uc(ctx, clock)
    (found,) = [(n, c) for n, c in notice_rows(ctx, ticket_id)
                if (c.agreement_id, c.metric, n.level) == ("SLA-PAY", "resolution", 50)]
    reply = Reply.from_dict(rows_for(ctx, *found)[0].message)
    assert reply.title == f"⚠️ INC-{ticket_id}: 50 % of the resolution target used" and reply.tone == "warning"
    f = fields(reply)
    assert f["Status"] == "Due 2026-03-02 13:00 UTC, in 2 h"
    assert f["Used"] == "2 h of 4 h"
    # Warnings are for the channels only; the owner's DM is for the breach.
    assert not any(r.target_kind == "person" for r in rows_for(ctx, *found))


def test_the_breach_notice_gives_the_ola_time_as_of_the_notice(ctx, clock):
    # OLA-PAY-OPS has had the ticket since 09:30 (its pause_states are empty, so the wait on CardLink
    # counts too): at 13:20 that is 3 h 50 min of its 2 hours.
    ticket_id = _p1_with_ola_and_uc(ctx, clock)
    clock.to(at(2, 13, 20))
    sweep(ctx)
    _, reply = _sla_breach_message(ctx, ticket_id)
    assert fields(reply)["Time used by"].splitlines()[0] == "OLA OLA-PAY-OPS resolution: 3 h 50 min of 2 h — breached"


# ------------------------------------------------------------------------------------ sla ack

def test_sla_ack_acknowledges_once_and_records_who(ctx, clock):
    ticket_id = open_by_chat(ctx, "grace", "webshop", "P1")
    walk(clock, at(2, 11), ctx)
    notice, c = notice_rows(ctx, ticket_id)[-1]
    assert notice.level == BREACH
    (button,) = Reply.from_dict(rows_for(ctx, notice, c)[0].message).buttons
    clock.to(at(2, 11, 7))
    reply = ok(ctx, "grace", button.run)  # the button's own words
    assert reply.title == f"Acknowledged: INC-{ticket_id} resolution notice"
    clock.to(at(2, 11, 9))
    again = ok(ctx, "tom", button.run)
    assert again.title == "Already acknowledged by grace"
    with ctx.sessions() as s:
        row = s.get(ClockNotice, notice.id)
        assert (row.acknowledged_by, row.acknowledged_at) == ("grace", at(2, 11, 7))
        others = s.scalars(select(ClockNotice).where(ClockNotice.id != notice.id)).all()
        assert len(others) == 2 and all(o.acknowledged_by is None for o in others)
        audit = s.scalars(select(AuditRecord).where(AuditRecord.action == "sla.acknowledge")).all()
    assert [(a.person_id, a.subject, a.at) for a in audit] == [("grace", f"INC-{ticket_id}", at(2, 11, 7))]
    assert audit[0].detail["notice"] == notice.id and audit[0].detail["level"] == BREACH


@pytest.mark.parametrize("words, says", [("sla ack 9999", "There is no notice 9999."),
                                         ("sla ack", "Say which notice to acknowledge."),
                                         ("sla ack first", "Say which notice to acknowledge.")])
def test_sla_ack_of_no_such_notice_is_a_user_error(ctx, words, says):
    before = table_counts(ctx)
    reply, outcome = run(ctx, "tom", words)
    assert outcome == "user_error" and reply.text == says
    assert table_counts(ctx) == before


# ------------------------------------------------------------------------------------ concurrent sweeps

def test_concurrent_sweeps_on_separate_engines_announce_each_notice_once(ctx, clock, restart):
    # Four web shop P1 tickets, opened 09:00, 09:05, 09:10 and 09:15 (2 h each; thresholds every 5 min
    # apart), swept by four svcbots at once at every instant.
    ids = []
    for _ in range(4):
        ids.append(open_by_chat(ctx, "grace", "webshop", "P1"))
        clock.to(clock() + timedelta(minutes=5))
    others = [restart() for _ in range(3)]
    contexts = [ctx] + [rt.ctx for rt in others]
    errors: list[BaseException] = []
    written = [0] * len(contexts)

    def sweeper(i, c, barrier):
        try:
            barrier.wait(30)
            for _ in range(3):
                written[i] += breaches.sweep(c)
        except BaseException as exc:  # reported below
            errors.append(exc)

    while clock() < at(2, 11, 30):
        clock.to(_next_tick(clock(), timedelta(minutes=5)))
        barrier = threading.Barrier(len(contexts))
        threads = [threading.Thread(target=sweeper, args=(i, c, barrier)) for i, c in enumerate(contexts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert sum(written) == 4 * 3
    for n, ticket_id in enumerate(ids):
        opened = T0 + timedelta(minutes=5 * n)
        assert notices(ctx, ticket_id) == [
            ("SLA-SHOP", "resolution", 50, opened + timedelta(hours=1)),
            ("SLA-SHOP", "resolution", 75, opened + timedelta(hours=1, minutes=30)),
            ("SLA-SHOP", "resolution", 100, opened + timedelta(hours=2))]
        assert len(outbox(ctx, ticket_id)) == 3 + 3 + 4
    keys = [r.dedupe_key for r in outbox(ctx)]
    assert len(keys) == len(set(keys)) == 4 * 10


# ------------------------------------------------------------------------------------ sla reports

def test_sla_attainment_counts_decided_clocks(ctx, clock):
    # Three payments P2 tickets, all acknowledged after 10 min (response met):
    # A 09:00, resolved 12:00: 3 h of 8 business hours -> met.
    # B 09:00, resolved Tue 12:00: Mon 09–18 (9 h) + Tue 08–12 (4 h) = 13 h -> breached.
    # C Tue 10:00, still open at Tue 12:00 with 2 h used: not decided, not counted.
    a = open_by_chat(ctx, "tom", "payments", "P2")
    b = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(2, 9, 10))
    ok(ctx, "tom", f"incident ack INC-{a}")
    ok(ctx, "tom", f"incident ack INC-{b}")
    walk(clock, at(2, 12), ctx, step=timedelta(minutes=30))
    ok(ctx, "tom", f"incident resolve INC-{a}")
    walk(clock, at(3, 10), ctx, step=timedelta(minutes=30))
    c = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(3, 10, 10))
    ok(ctx, "tom", f"incident ack INC-{c}")
    walk(clock, at(3, 12), ctx, step=timedelta(minutes=30))
    ok(ctx, "tom", f"incident resolve INC-{b}")

    for words in ("sla", "sla payments", "sla this-month", "sla payments 2026-03"):
        reply = ok(ctx, "priya", words)
        assert reply.title.startswith("SLA attainment, March 2026"), words
        (pay,) = [s for s in reply.sections if s.title.startswith("SLA SLA-PAY")]
        lines = pay.text.splitlines()
        assert "❌ resolution P2: 50.0 % met (1/2), goal 90 %" in lines
        assert "✅ response P2: 100.0 % met (3/3), goal 95 %" in lines
        assert not any(s.title.startswith("OLA OLA-PAY-OPS") for s in reply.sections)  # never ran: unused
    # February: none of these tickets (only the availability target, measured over any month, shows).
    reply = ok(ctx, "priya", "sla payments 2026-02")
    assert "February 2026" in reply.title
    assert not re.search(r"(response|resolution) P\d", "\n".join(s.text for s in reply.sections))
    assert ok(ctx, "priya", "sla email").title == "No measured tickets for email in March 2026"


def test_sla_breaches_names_the_ola_and_uc_whose_time_was_spent(ctx, clock):
    assert ok(ctx, "priya", "sla breaches").title == "No SLA breaches in March 2026"
    ticket_id = _p1_with_ola_and_uc(ctx, clock)
    clock.to(at(2, 13, 20))
    sweep(ctx)
    ok(ctx, "tom", f"incident resolve INC-{ticket_id}")  # resolved 20 min late
    reply = ok(ctx, "priya", "sla breaches")
    assert reply.title == "SLA breaches, March 2026"
    (section,) = reply.sections
    assert section.title == f"INC-{ticket_id} P1 · SLA-PAY resolution · late by 20 min"
    f = {x.label: x.value for x in section.fields}
    assert f["State"] == "resolved" and f["Service"] == "payments"
    assert f["Time used by"].splitlines() == [
        "OLA OLA-PAY-OPS resolution: 3 h 50 min of 2 h — breached",  # 09:30–13:20, the whole time with the team
        "UC UC-CARDLINK resolution: 45 min of 2 h",
        "UC UC-CARDLINK response: 45 min of 30 min — breached"]


@pytest.mark.parametrize("last_sweep_before_breach", [at(2, 10, 55), at(2, 11)])
def test_sla_breaches_of_a_ticket_still_open_says_how_late_it_is_now(ctx, clock, last_sweep_before_breach):
    ticket_id = open_by_chat(ctx, "grace", "webshop", "P1")  # due 11:00
    walk(clock, last_sweep_before_breach, ctx)
    clock.to(at(2, 11, 5))
    sweep(ctx)
    assert notices(ctx, ticket_id)[-1][2] == BREACH
    walk(clock, at(2, 13), ctx)
    reply = ok(ctx, "priya", "sla breaches")
    assert [s.title for s in reply.sections] == [f"INC-{ticket_id} P1 · SLA-SHOP resolution · late by 2 h"]


def test_listing_breaches_takes_the_same_statements_however_many_there_are(ctx, clock):
    def listed() -> tuple[int, int]:
        with selects(ctx.sessions.kw["bind"]) as seen:
            found = attainment.breaches_data(ctx, attainment.parse_period(None, ctx.now(), "UTC"), limit=None)
        return len(found), len(seen)

    # Payments P1s, assigned to platform-ops: each breach has an OLA under it to measure as well.
    def breaching(n: int) -> None:
        for _ in range(n):
            ticket_id = open_by_chat(ctx, "tom", "payments", "P1")
            ok(ctx, "tom", f"incident assign INC-{ticket_id} platform-ops")
        walk(clock, clock() + timedelta(hours=5), ctx, step=timedelta(minutes=30))

    breaching(2)
    few = listed()
    breaching(4)
    many = listed()
    assert (few[0], many[0]) == (4, 12)  # response and resolution, each late
    assert many[1] == few[1]


def test_sla_at_risk_lists_running_clocks_past_their_first_warning(ctx, clock, monkeypatch):
    # A payments P2 09:00 (due 17:00; 50 % at 13:00); B payments P2 12:00 (1 h of 8 at 13:00: not at risk);
    # C web shop P1 10:00 (due 12:00: late). The payments tickets are acknowledged a minute after opening.
    assert ok(ctx, "priya", "sla at-risk").title == "No clocks at risk"
    a = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(2, 9, 1))
    ok(ctx, "tom", f"incident ack INC-{a}")
    walk(clock, at(2, 10), ctx)
    c = open_by_chat(ctx, "grace", "webshop", "P1")
    walk(clock, at(2, 12), ctx)
    b = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(2, 12, 1))
    ok(ctx, "tom", f"incident ack INC-{b}")
    walk(clock, at(2, 13), ctx)
    reply = ok(ctx, "priya", "sla at-risk")
    assert reply.title == "2 clocks at risk"
    assert reply.text.splitlines() == [
        f"INC-{c} P1 webshop · SLA SLA-SHOP resolution: 150 % used, late since 2026-03-02 12:00",
        f"INC-{a} P2 payments · SLA SLA-PAY resolution: 50 % used, due 2026-03-02 17:00 UTC"]
    # Running clocks are read and measured a few at a time: with room for one a read, nothing is lost.
    monkeypatch.setattr(attainment, "AT_RISK_SCAN", 1)
    assert ok(ctx, "priya", "sla at-risk").text == reply.text


def test_sla_at_risk_pages_and_says_how_many_more(ctx, clock, monkeypatch):
    # Seven web shop P1 tickets (2 hours on 24x7) opened 08:20, 08:30, … 09:20; at 10:30 the first is late
    # (due 10:20) and the rest are past 50 % (the last, 70 min of 2 h: 58 %), due 10:30, 10:40, … 11:20.
    # One opened at 10:00 has used 25 %: not at risk.
    opened = []
    for i in range(7):
        clock.to(at(2, 8, 20) + timedelta(minutes=10 * i))
        opened.append(open_by_api(ctx, "webshop", "P1"))
    clock.to(at(2, 10))
    open_by_api(ctx, "webshop", "P1")
    clock.to(at(2, 10, 30))
    monkeypatch.setattr(attainment, "AT_RISK_SCAN", 2)
    monkeypatch.setattr(attainment, "AT_RISK_SHOWN", 3)
    first = ok(ctx, "priya", "sla at-risk")
    assert first.title == "7 clocks at risk" and first.footer.endswith("; 1–3 shown")
    assert [line.split(" ")[0] for line in first.text.splitlines()] == [
        *(f"INC-{t}" for t in opened[:3]), "…"]
    assert first.text.splitlines()[-1] == "… and 4 more: `sla at-risk page 2`"
    last = ok(ctx, "priya", "sla at-risk page 3")
    assert last.text == f"INC-{opened[6]} P1 webshop · SLA SLA-SHOP resolution: 58 % used, due 2026-03-02 11:20 UTC"
    assert run(ctx, "priya", "sla at-risk page 4")[1] != "ok"
    # The API's pages: each says whether more follow and where to go on from; together they are every one.
    pages, after = [], None
    while True:
        page = attainment.at_risk_page(ctx, after=after, limit=3)
        pages.append([r.ticket_id for r in page.rows])
        if not page.more:
            break
        after = page.next_after
    assert pages == [opened[:3], opened[3:6], opened[6:]]
    # The digest shows clocks still to come (those due by 10:30 are breaches): 5, the first 2 and a count.
    monkeypatch.setattr(digests, "SHOWN", 2)
    preview = ok(ctx, "tom", "digest preview morning-ops")
    at_risk = next(s for s in preview.sections if s.title == "Clocks at risk")
    assert at_risk.text.splitlines()[-1] == "… and 3 more: `sla at-risk`"


def test_sla_at_risk_shows_the_share_used_now(ctx, clock):
    # A payments P2 09:00: at 14:36, 5 h 36 min of 8 h = 70 %. C web shop P1 10:00: 4 h 36 min of 2 h = 230 %.
    a = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(2, 9, 1))
    ok(ctx, "tom", f"incident ack INC-{a}")
    walk(clock, at(2, 10), ctx)
    c = open_by_chat(ctx, "grace", "webshop", "P1")
    walk(clock, at(2, 14, 36), ctx, step=timedelta(minutes=6))
    reply = ok(ctx, "priya", "sla at-risk")
    assert reply.text.splitlines() == [
        f"INC-{c} P1 webshop · SLA SLA-SHOP resolution: 230 % used, late since 2026-03-02 12:00",
        f"INC-{a} P2 payments · SLA SLA-PAY resolution: 70 % used, due 2026-03-02 17:00 UTC"]


# ------------------------------------------------------------------------------------ incident commands

def test_only_people_who_may_work_on_a_ticket_move_it_on(ctx, clock):
    ticket_id = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(2, 9, 10))
    before, state = table_counts(ctx), ticket_state(ctx, ticket_id)
    for words in (f"incident ack INC-{ticket_id}", f"incident priority INC-{ticket_id} P1",
                  f"incident resolve INC-{ticket_id}", f"incident vendor INC-{ticket_id} cardlink"):
        reply, outcome = run(ctx, "meera", words)  # platform-ops: not payments' owner, team or manager
        assert outcome == "refused", words
        assert reply.title == "Not allowed" and f"INC-{ticket_id}" in reply.text
    assert table_counts(ctx) == before and ticket_state(ctx, ticket_id) == state

    reply = ok(ctx, "tom", f"incident ack INC-{ticket_id}")  # the owner may
    assert reply.title == f"INC-{ticket_id} acknowledged"
    t = ticket(ctx, ticket_id)
    assert (t.state, t.responded_at) == ("in-progress", at(2, 9, 10))
    assert clock_row(ctx, ticket_id, "SLA-PAY", "response").state == "met"
    # Once assigned to platform-ops, its members may.
    ok(ctx, "tom", f"incident assign INC-{ticket_id} platform-ops")
    assert ok(ctx, "meera", f"incident hold INC-{ticket_id}").title.startswith(f"INC-{ticket_id} on hold")


@pytest.mark.parametrize("setup, words, says", [
    ([], "reopen", "is new; it cannot be reopened (only when resolved)."),
    (["ack"], "reopen", "is in-progress; it cannot be reopened (only when resolved)."),
    ([], "resume", "is new; it cannot be resumed (only when awaiting-customer, awaiting-vendor, "
                   "awaiting-problem or awaiting-evidence)."),
    (["ack"], "resume", "is in-progress; it cannot be resumed (only when awaiting-customer, awaiting-vendor, "
                        "awaiting-problem or awaiting-evidence)."),
    (["ack"], "close", "is in-progress; it cannot be closed (only when resolved)."),
    (["ack", "hold"], "hold", "is awaiting-customer; it cannot be put on hold (only when new or in-progress)."),
    (["resolve"], "resolve", "is resolved; it cannot be resolved (only when open: new, in-progress, "
                             "awaiting-customer, awaiting-vendor, awaiting-problem or awaiting-evidence)."),
    (["resolve"], "priority {} P1", "is resolved; reopen it first."),
])
def test_an_illegal_move_says_why_and_changes_nothing(ctx, clock, setup, words, says):
    ticket_id = open_by_chat(ctx, "tom", "payments", "P2")
    for step in setup:
        clock.to(clock() + timedelta(minutes=5))
        ok(ctx, "tom", f"incident {step} INC-{ticket_id}")
    clock.to(clock() + timedelta(minutes=5))
    before, state = table_counts(ctx), ticket_state(ctx, ticket_id)
    text = f"incident {words.format(f'INC-{ticket_id}')}" if "{}" in words else f"incident {words} INC-{ticket_id}"
    reply, outcome = run(ctx, "tom", text)
    assert outcome == "user_error"
    assert reply.text == f"INC-{ticket_id} {says}"
    assert table_counts(ctx) == before and ticket_state(ctx, ticket_id) == state


def test_reopening_resumes_the_clock_and_its_notices(ctx, clock):
    # Web shop P1 at 09:00 (2 h): resolved 09:30, reopened 10:00 -> 30 min used, 50 % at 10:30, 75 % at 11:00,
    # breach at 11:30.
    ticket_id = open_by_chat(ctx, "grace", "webshop", "P1")
    walk(clock, at(2, 9, 30), ctx)
    ok(ctx, "grace", f"incident resolve INC-{ticket_id}")
    walk(clock, at(2, 10), ctx)
    ok(ctx, "grace", f"incident reopen INC-{ticket_id}")
    assert clock_row(ctx, ticket_id, "SLA-SHOP", "resolution").due_at == at(2, 11, 30)
    walk(clock, at(2, 12), ctx)
    assert notices(ctx, ticket_id) == [("SLA-SHOP", "resolution", 50, at(2, 10, 30)),
                                       ("SLA-SHOP", "resolution", 75, at(2, 11)),
                                       ("SLA-SHOP", "resolution", 100, at(2, 11, 30))]


# ------------------------------------------------------------------------------------ app.yaml changes

def _p2_resolution_within(within: str):
    def change(cfg):
        sla = next(a for a in cfg["agreements"] if a["id"] == "SLA-PAY")
        for t in sla["targets"]:
            if (t["metric"], t.get("priority")) == ("resolution", "P2"):
                t["within"] = within
    return change


def test_a_shorter_target_in_app_yaml_remeasures_clocks_without_announcing_the_past(ctx, clock, restart, tmp_path):
    assert breaches.recompute_if_changed(ctx) == 0  # at start: nothing to measure, fingerprint stored
    assert breaches.recompute_if_changed(ctx) == 0
    # Payments P2 at 09:00 (8 business hours): 50 % announced at 13:00.
    ticket_id = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(2, 9, 1))
    ok(ctx, "tom", f"incident ack INC-{ticket_id}")
    walk(clock, at(2, 14), ctx)
    assert notices(ctx, ticket_id) == [("SLA-PAY", "resolution", 50, at(2, 13))]
    rows_before = len(outbox(ctx))

    # At 14:00 app.yaml says 4 business hours: due 13:00, 1 h late already. That is history, not news.
    changed = restart(write_config(tmp_path, "shorter.yaml", _p2_resolution_within("4 business hours")))
    assert breaches.recompute_if_changed(changed.ctx) == 1
    assert breaches.recompute_if_changed(changed.ctx) == 0  # once per change
    c = clock_row(ctx, ticket_id, "SLA-PAY", "resolution")
    assert (c.target_seconds, c.elapsed_seconds, c.breached, c.due_at, c.state) == \
        (4 * 3600, 5 * 3600, True, at(2, 13), "running")
    assert c.notified_level == BREACH and c.next_check_at is None
    walk(clock, at(3, 18), changed.ctx, step=timedelta(minutes=30))
    assert notices(ctx, ticket_id) == [("SLA-PAY", "resolution", 50, at(2, 13))]
    assert len(outbox(ctx)) == rows_before


def test_a_target_shortened_then_lengthened_again_still_announces_its_real_breach(ctx, clock, restart, tmp_path):
    breaches.recompute_if_changed(ctx)
    ticket_id = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(2, 9, 1))
    ok(ctx, "tom", f"incident ack INC-{ticket_id}")
    walk(clock, at(2, 14), ctx)  # 50 % of 8 business hours announced at 13:00
    shorter = restart(write_config(tmp_path, "shorter.yaml", _p2_resolution_within("4 business hours")))
    breaches.recompute_if_changed(shorter.ctx)  # 4 h: breached at 13:00 already, history, not announced
    clock.to(at(2, 14, 30))
    longer = restart(write_config(tmp_path, "longer.yaml", _p2_resolution_within("12 business hours")))
    assert breaches.recompute_if_changed(longer.ctx) == 1
    # 12 business hours: 75 % (9 h) at Monday's 18:00 close, the breach Tue 08:00 + 3 h = 11:00.
    c = clock_row(ctx, ticket_id, "SLA-PAY", "resolution")
    assert (c.notified_level, c.next_check_at) == (50, at(2, 18))
    walk(clock, at(3, 12), longer.ctx, step=timedelta(minutes=30))
    assert notices(ctx, ticket_id) == [("SLA-PAY", "resolution", 50, at(2, 13)),
                                       ("SLA-PAY", "resolution", 75, at(2, 18)),
                                       ("SLA-PAY", "resolution", 100, at(3, 11))]


def test_a_longer_target_in_app_yaml_announces_the_levels_still_ahead(ctx, clock, restart, tmp_path):
    breaches.recompute_if_changed(ctx)
    ticket_id = open_by_chat(ctx, "tom", "payments", "P2")
    clock.to(at(2, 9, 1))
    ok(ctx, "tom", f"incident ack INC-{ticket_id}")
    walk(clock, at(2, 14), ctx)
    # At 14:00 app.yaml says 12 business hours (5 h used: 42 %): 50 % (6 h) at 15:00 was announced already
    # (against the old target); 75 % (9 h) at 18:00, Monday's close; 100 %: 9 h on Monday + 3 h from Tue 08:00
    # -> Tue 11:00.
    changed = restart(write_config(tmp_path, "longer.yaml", _p2_resolution_within("12 business hours")))
    assert breaches.recompute_if_changed(changed.ctx) == 1
    c = clock_row(ctx, ticket_id, "SLA-PAY", "resolution")
    assert (c.target_seconds, c.due_at, c.breached, c.notified_level, c.next_check_at) == \
        (12 * 3600, at(3, 11), False, 50, at(2, 18))
    walk(clock, at(3, 12), changed.ctx, step=timedelta(minutes=30))
    assert notices(ctx, ticket_id) == [("SLA-PAY", "resolution", 50, at(2, 13)),
                                       ("SLA-PAY", "resolution", 75, at(2, 18)),
                                       ("SLA-PAY", "resolution", 100, at(3, 11))]


def test_metrics_say_how_long_the_oldest_due_check_has_waited_for_the_sweep(runtime, clock):
    def scraped() -> tuple[float, float]:
        runtime.metrics.refresh()
        sample = runtime.metrics.registry.get_sample_value
        return sample("svcbot_clock_checks_due"), sample("svcbot_clock_checks_late_seconds")

    assert scraped() == (0, 0)
    open_by_api(runtime.ctx, "webshop", "P1")  # SLA-SHOP: P1 resolution in 2 hours, warned at 50 % (1 h) and 75 %
    clock.advance(hours=1, minutes=10)  # no sweep meanwhile: the 50 % warning has waited 10 minutes
    assert scraped() == (1, 600)
    sweep(runtime.ctx)
    assert scraped() == (0, 0)
