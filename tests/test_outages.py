"""Outages from `service set`, availability in `sla`, and error-budget burn alerts, on the real store."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from handlers.core.context import Command
from handlers.core.people import console_actor
from handlers.router import dispatch
from handlers.sla import outages
from storage.models import Outage, OutboxMessage


def say(ctx, person: str, words: str):
    reply, outcome = dispatch(ctx, Command(actor=console_actor(ctx, person), text=words))
    assert outcome == "ok", reply
    return reply


def all_rows(ctx, model, *where):
    with ctx.sessions() as s:
        return s.scalars(select(model).where(*where).order_by(model.id)).all()


def test_service_status_opens_and_closes_outages_and_maintenance(ctx, clock):
    say(ctx, "tom", "service set payments major-outage Card payments down")
    clock.advance(minutes=30)
    say(ctx, "tom", "service set payments maintenance Failover test")
    clock.advance(minutes=120)
    say(ctx, "tom", "service set payments operational")
    down, upkeep = all_rows(ctx, Outage)
    assert (down.kind, down.source, down.ended_at - down.started_at) == ("unplanned", "status", timedelta(minutes=30))
    assert (upkeep.kind, upkeep.ended_at - upkeep.started_at) == ("maintenance", timedelta(minutes=120))
    say(ctx, "tom", "service set payments operational Still fine")  # no state change: no outage
    assert len(all_rows(ctx, Outage)) == 2


def test_availability_leaves_maintenance_out(ctx, clock):
    # SLA-CASES: 30 days, 120 min of approved maintenance and 30 min of downtime → 99.930 %.
    start = clock()
    say(ctx, "tom", "service set payments maintenance Planned")
    clock.advance(minutes=120)
    say(ctx, "tom", "service set payments major-outage Unplanned")
    clock.advance(minutes=30)
    say(ctx, "tom", "service set payments operational")
    with ctx.sessions() as s:
        result = outages.service_availability(s, "payments", start, start + timedelta(days=30),
                                              start + timedelta(days=30))
    assert f"{100 * result.ratio:.3f}" == "99.930"
    clock.to(start + timedelta(days=30))
    reply = say(ctx, "priya", "sla payments 30d")
    assert "availability payments: 99.930 % (down 30 min), goal 99.9 %" in reply.sections[0].text


def test_a_fast_burn_pages_the_service_channel_once(ctx, clock):
    say(ctx, "tom", "service set payments major-outage Card payments down")
    clock.advance(minutes=10)
    assert outages.burn_sweep(ctx) >= 1
    first = all_rows(ctx, OutboxMessage, OutboxMessage.dedupe_key.like("burn:payments:page:3600:%"))
    assert {r.target for r in first} == {"C0PAYMENTS", "19:payments00000000000000000000000@thread.tacv2"}
    assert "error budget burning" in first[0].message["title"]
    clock.advance(minutes=1)
    outages.burn_sweep(ctx)  # still burning: nothing new for the same rule and episode
    assert len(all_rows(ctx, OutboxMessage, OutboxMessage.dedupe_key.like("burn:payments:page:3600:%"))) == 2


def test_no_burn_alert_without_downtime(ctx, clock):
    say(ctx, "tom", "service set payments degraded Slow but working")
    clock.advance(minutes=10)
    assert outages.burn_sweep(ctx) == 0
    assert not all_rows(ctx, OutboxMessage, OutboxMessage.dedupe_key.like("burn:%"))
