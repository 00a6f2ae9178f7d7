"""Deliverer tests: fake senders written here, a controllable clock, the real store (SQLite, or
PostgreSQL when SVCBOT_TEST_DATABASE_URL is set)."""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, select

from bot import outbox
from bot.outbox import Delivered, Deliverer, DeliveryError, Outgoing
from bot.slack import SlackSender, web_client
from handlers.core.context import Command, Context, Reply, Work
from handlers.core.people import resolve_actor
from handlers.router import dispatch
from storage.db import make_engine, session_factory, utcnow
from storage.models import OutboxMessage
from tests.conftest import T0


class SenderBug(Exception):
    """Not a DeliveryError: what a bug in a sender raises."""


class FakeSender:
    """Records every call. ``fail`` holds exceptions the next sends raise, in order; ``found`` what
    find_sent answers, by dedupe key; ``delay`` makes each send take a turn of the event loop."""

    def __init__(self, platform: str = "slack", name: str = "", delay: float = 0.0):
        self.platform = platform
        self.name = name or platform
        self.delay = delay
        self.fail: deque[BaseException] = deque()
        self.fail_for: dict[str, BaseException] = {}
        self.found: dict[str, Delivered] = {}
        self.lookup_fail: deque[BaseException] = deque()
        self.sends: list[Outgoing] = []
        self.delivered: list[Outgoing] = []
        self.lookups: list[Outgoing] = []

    async def send(self, item: Outgoing) -> Delivered:
        self.sends.append(item)
        if self.delay:
            await asyncio.sleep(self.delay)
        if item.target in self.fail_for:
            raise self.fail_for[item.target]
        if self.fail:
            raise self.fail.popleft()
        self.delivered.append(item)
        return Delivered(channel=f"{item.target}@{self.platform}", message_id=f"{self.name}:{item.key}")

    async def find_sent(self, item: Outgoing) -> Delivered | None:
        self.lookups.append(item)
        if self.lookup_fail:
            raise self.lookup_fail.popleft()
        return self.found.get(item.key)


class HangingSender(FakeSender):
    """A send that does not answer until released: a process dying mid-attempt, or a slow platform."""

    def __init__(self, platform: str = "slack"):
        super().__init__(platform)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, item: Outgoing) -> Delivered:
        self.sends.append(item)
        self.entered.set()
        await self.release.wait()
        return Delivered(channel=item.target, message_id=f"{self.name}:late:{item.key}")




def queue(runtime, key: str, platform: str = "slack", target: str = "C0PAYMENTS", kind: str = "channel",
          title: str = "hello") -> int:
    """An outbox row written the way handlers write them: through Work.send, in a transaction."""
    with runtime.ctx.sessions.begin() as s:
        Work(runtime.ctx, s, None).send(platform, kind, target, Reply(title=title, text="body"), key, "test")
    return row_by_key(runtime.ctx, key).id


def row_by_key(ctx, key: str) -> OutboxMessage:
    with ctx.sessions() as s:
        return s.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))


def all_rows(ctx) -> list[OutboxMessage]:
    with ctx.sessions() as s:
        return s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()


def snapshot(row: OutboxMessage) -> dict:
    return {c: getattr(row, c) for c in ("status", "attempts", "next_attempt_at", "lease_until", "last_error",
                                         "maybe_sent", "sent_at", "platform_channel", "platform_message_id")}


def counter(runtime, platform: str, outcome: str) -> float:
    return runtime.metrics.registry.get_sample_value(
        "svcbot_outbox_attempts_total", {"platform": platform, "outcome": outcome}) or 0.0


# --- success --------------------------------------------------------------------------------------

async def test_a_delivered_row_records_what_the_platform_answered(runtime, ctx, clock):
    queue(runtime, "k1", title="Payments degraded")
    sender = FakeSender("slack")
    deliverer = Deliverer(ctx, {"slack": sender}, runtime.metrics)
    clock.advance(seconds=3)
    assert await deliverer.sweep() == 1

    (item,) = sender.sends
    assert (item.key, item.platform, item.target_kind, item.target) == ("k1", "slack", "channel", "C0PAYMENTS")
    assert item.message["title"] == "Payments degraded" and item.created_at == T0 and not item.maybe_sent
    assert sender.lookups == []  # nothing to look for on a first attempt
    row = row_by_key(ctx, "k1")
    assert row.status == "sent" and row.sent_at == clock() and row.attempts == 1
    assert row.platform_channel == "C0PAYMENTS@slack" and row.platform_message_id == "slack:k1"
    assert row.lease_until is None and row.last_error is None and not row.maybe_sent
    assert counter(runtime, "slack", "sent") == 1

    # sent once: later sweeps leave it alone
    clock.advance(hours=1)
    assert await deliverer.sweep() == 0
    assert len(sender.sends) == 1


async def test_a_status_announcement_reaches_every_platform_once(runtime, ctx):
    actor = resolve_actor(ctx, "slack", ctx.config.person("tom").slack, "Tom")
    grace = resolve_actor(ctx, "teams", ctx.config.person("grace").teams, "Grace")
    assert dispatch(ctx, Command(actor=grace, text="subscribe payments"))[1] == "ok"
    assert dispatch(ctx, Command(actor=actor, text="service set payments degraded Slow"))[1] == "ok"
    queued = all_rows(ctx)
    slack, teams = FakeSender("slack"), FakeSender("teams")
    deliverer = Deliverer(ctx, {"slack": slack, "teams": teams})
    assert await deliverer.sweep() == len(queued)
    assert await deliverer.sweep() == 0
    sent = sorted((i.platform, i.target_kind, i.target) for i in slack.sends + teams.sends)
    assert sent == sorted((r.platform, r.target_kind, r.target) for r in queued)
    assert all(i.platform == "slack" for i in slack.sends) and all(i.platform == "teams" for i in teams.sends)
    assert {r.status for r in all_rows(ctx)} == {"sent"}


# --- retries --------------------------------------------------------------------------------------

@pytest.mark.parametrize("retry_after", [37, 12.5, 3600])
async def test_retry_after_is_honoured_exactly(runtime, ctx, clock, retry_after):
    queue(runtime, "k1")
    sender = FakeSender("slack")
    sender.fail.append(DeliveryError("ratelimited", retry_after=retry_after))
    deliverer = Deliverer(ctx, {"slack": sender}, runtime.metrics)
    assert await deliverer.sweep() == 0
    failed_at = clock()
    row = row_by_key(ctx, "k1")
    assert row.status == "pending" and row.attempts == 1 and row.lease_until is None
    assert row.next_attempt_at == failed_at + timedelta(seconds=retry_after)
    assert "ratelimited" in row.last_error
    assert counter(runtime, "slack", "retried") == 1

    # not a moment before
    clock.to(row.next_attempt_at - timedelta(microseconds=1))
    assert await deliverer.sweep() == 0
    assert len(sender.sends) == 1
    assert snapshot(row_by_key(ctx, "k1")) == snapshot(row)

    clock.to(row.next_attempt_at)
    assert await deliverer.sweep() == 1
    assert len(sender.sends) == 2
    row = row_by_key(ctx, "k1")
    assert row.status == "sent" and row.attempts == 2 and row.last_error is None


async def test_generic_errors_back_off_exponentially(runtime, ctx, clock):
    queue(runtime, "k1")
    sender = FakeSender("slack")
    deliverer = Deliverer(ctx, {"slack": sender})
    waits = []
    for attempt in range(1, 7):
        sender.fail.append(DeliveryError("503 service unavailable"))
        assert await deliverer.sweep() == 0
        assert len(sender.sends) == attempt
        row = row_by_key(ctx, "k1")
        assert row.status == "pending" and row.attempts == attempt and not row.maybe_sent
        wait = (row.next_attempt_at - clock()).total_seconds()
        base = 2 ** attempt
        assert base <= wait <= base * 1.2 + 1e-6, (attempt, wait)
        waits.append(wait)
        # not retried early
        clock.to(row.next_attempt_at - timedelta(milliseconds=1))
        assert await deliverer.sweep() == 0
        assert len(sender.sends) == attempt
        clock.to(row.next_attempt_at)
    assert waits == sorted(waits) and waits[-1] > 16 * waits[0] / 1.2
    assert await deliverer.sweep() == 1


def test_backoff_is_capped():
    assert all(outbox.backoff(n) <= outbox.MAX_BACKOFF_SECONDS for n in (10, 20, 50, 500))
    assert outbox.backoff(50) >= outbox.MAX_BACKOFF_SECONDS


async def test_a_permanent_error_fails_at_once(runtime, ctx, clock):
    queue(runtime, "k1")
    queue(runtime, "k2", target="C0OTHER")
    sender = FakeSender("slack")
    sender.fail_for["C0PAYMENTS"] = DeliveryError("channel_not_found", permanent=True)
    deliverer = Deliverer(ctx, {"slack": sender}, runtime.metrics)
    assert await deliverer.sweep() == 1
    row = row_by_key(ctx, "k1")
    assert row.status == "failed" and row.attempts == 1 and row.lease_until is None
    assert "channel_not_found" in row.last_error and row.sent_at is None
    assert row_by_key(ctx, "k2").status == "sent"
    assert counter(runtime, "slack", "failed") == 1

    clock.advance(days=2)
    del sender.fail_for["C0PAYMENTS"]
    assert await deliverer.sweep() == 0
    assert len(sender.sends) == 2
    assert row_by_key(ctx, "k1").status == "failed"


async def test_rows_older_than_give_up_hours_expire_instead_of_being_sent(runtime, ctx, clock):
    give_up = timedelta(hours=ctx.config.delivery.give_up_hours)
    queue(runtime, "old")
    clock.advance(hours=2)
    queue(runtime, "young")
    clock.to(T0 + give_up + timedelta(minutes=1))  # "old" is past the limit, "young" is not
    sender = FakeSender("slack")
    sender.fail.append(DeliveryError("timeout"))
    deliverer = Deliverer(ctx, {"slack": sender})
    assert await deliverer.sweep() == 0
    assert [item.key for item in sender.sends] == ["young"]  # old news is never announced
    old, young = row_by_key(ctx, "old"), row_by_key(ctx, "young")
    assert (old.status, old.attempts, old.last_error) == ("failed", 0, "expired before it could be delivered")
    assert young.status == "pending" and young.next_attempt_at > clock()

    # a row whose next attempt falls after its limit expires too, however it was waiting
    clock.advance(hours=2)
    assert await deliverer.sweep() == 0
    young = row_by_key(ctx, "young")
    assert (young.status, young.attempts, young.last_error) == ("failed", 1, "expired before it could be delivered")
    assert len(sender.sends) == 1


# --- ambiguous attempts and crashes -----------------------------------------------------------------

@pytest.mark.parametrize("already_there", [True, False])
async def test_an_ambiguous_error_makes_the_next_attempt_look_before_sending(runtime, ctx, clock, already_there):
    queue(runtime, "k1")
    sender = FakeSender("slack")
    sender.fail.append(DeliveryError("read timeout", ambiguous=True))
    deliverer = Deliverer(ctx, {"slack": sender})
    assert await deliverer.sweep() == 0
    row = row_by_key(ctx, "k1")
    assert row.status == "pending" and row.maybe_sent and row.attempts == 1
    assert 2 <= (row.next_attempt_at - clock()).total_seconds() <= 2.4
    assert sender.lookups == []

    if already_there:
        sender.found["k1"] = Delivered(channel="C0PAYMENTS", message_id="1700000000.000100")
    clock.to(row.next_attempt_at)
    assert await deliverer.sweep() == 1
    assert len(sender.lookups) == 1 and sender.lookups[0].maybe_sent and sender.lookups[0].key == "k1"
    row = row_by_key(ctx, "k1")
    assert row.status == "sent" and not row.maybe_sent and row.attempts == 2
    if already_there:
        assert len(sender.sends) == 1  # not posted a second time
        assert (row.platform_channel, row.platform_message_id) == ("C0PAYMENTS", "1700000000.000100")
    else:
        assert len(sender.sends) == 2
        assert row.platform_message_id == "slack:k1"


async def test_maybe_sent_stays_set_across_a_failed_lookup_attempt(runtime, ctx, clock):
    queue(runtime, "k1")
    sender = FakeSender("slack")
    sender.fail.extend([DeliveryError("timeout", ambiguous=True), DeliveryError("503")])
    deliverer = Deliverer(ctx, {"slack": sender})
    await deliverer.sweep()
    clock.to(row_by_key(ctx, "k1").next_attempt_at)
    await deliverer.sweep()  # looked, not found, sent, got a plain 503
    row = row_by_key(ctx, "k1")
    assert row.status == "pending" and row.maybe_sent  # the first attempt may still have arrived
    sender.found["k1"] = Delivered(channel="C0PAYMENTS", message_id="first")
    clock.to(row.next_attempt_at)
    assert await deliverer.sweep() == 1
    assert len(sender.lookups) == 2 and len(sender.sends) == 2
    assert row_by_key(ctx, "k1").platform_message_id == "first"


async def test_a_failed_look_up_neither_sends_nor_forgets_that_it_may_be_there(runtime, ctx, clock):
    queue(runtime, "k1")
    sender = FakeSender("slack")
    sender.fail.append(DeliveryError("timeout", ambiguous=True))
    sender.lookup_fail.append(DeliveryError("ratelimited", retry_after=30))
    deliverer = Deliverer(ctx, {"slack": sender})
    await deliverer.sweep()
    clock.to(row_by_key(ctx, "k1").next_attempt_at)
    assert await deliverer.sweep() == 0
    assert len(sender.lookups) == 1 and len(sender.sends) == 1  # no blind second post
    row = row_by_key(ctx, "k1")
    assert row.status == "pending" and row.maybe_sent and row.next_attempt_at == clock() + timedelta(seconds=30)
    clock.to(row.next_attempt_at)
    assert await deliverer.sweep() == 1
    assert len(sender.lookups) == 2 and len(sender.sends) == 2


async def _crash_mid_send(ctx) -> HangingSender:
    """Start an attempt and kill it while the platform has not answered: the row stays 'sending'."""
    hanging = HangingSender("slack")
    task = asyncio.ensure_future(Deliverer(ctx, {"slack": hanging}).sweep())
    await asyncio.wait_for(hanging.entered.wait(), 30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return hanging


@pytest.mark.parametrize("already_there", [True, False])
async def test_a_claim_left_by_a_crash_is_reclaimed_as_maybe_sent(runtime, ctx, clock, already_there):
    queue(runtime, "k1")
    await _crash_mid_send(ctx)
    lease = timedelta(seconds=ctx.config.delivery.lease_seconds)
    row = row_by_key(ctx, "k1")
    assert row.status == "sending" and row.lease_until == clock() + lease and not row.maybe_sent

    clock.advance(seconds=lease.total_seconds() + 1)
    sender = FakeSender("slack")
    if already_there:
        sender.found["k1"] = Delivered(channel="C0PAYMENTS", message_id="posted-before-the-crash")
    assert await Deliverer(ctx, {"slack": sender}).sweep() == 1
    assert len(sender.lookups) == 1 and sender.lookups[0].maybe_sent
    assert len(sender.sends) == (0 if already_there else 1)
    row = row_by_key(ctx, "k1")
    assert row.status == "sent" and row.attempts == 2 and row.lease_until is None
    assert row.platform_message_id == ("posted-before-the-crash" if already_there else "slack:k1")


async def test_a_live_lease_is_not_reclaimed(runtime, ctx, clock):
    queue(runtime, "k1")
    await _crash_mid_send(ctx)
    claimed = row_by_key(ctx, "k1")
    sender = FakeSender("slack")
    other = Deliverer(ctx, {"slack": sender})
    for at in (clock(), claimed.lease_until - timedelta(seconds=1), claimed.lease_until):
        clock.to(at)
        assert await other.sweep() == 0
        assert sender.sends == [] and sender.lookups == []
        assert snapshot(row_by_key(ctx, "k1")) == snapshot(claimed)
    clock.advance(microseconds=1)  # now the lease has run out
    assert await other.sweep() == 1


async def test_the_late_answer_of_a_lost_claim_does_not_overwrite_the_current_one(runtime, ctx, clock):
    queue(runtime, "k1")
    lease = ctx.config.delivery.lease_seconds
    first, second = HangingSender("slack"), HangingSender("slack")
    first.name, second.name = "first", "second"
    t1 = asyncio.ensure_future(Deliverer(ctx, {"slack": first}).sweep())
    await asyncio.wait_for(first.entered.wait(), 30)
    clock.advance(seconds=lease + 1)  # the first claim runs out while its send still hangs
    t2 = asyncio.ensure_future(Deliverer(ctx, {"slack": second}).sweep())
    await asyncio.wait_for(second.entered.wait(), 30)
    current = row_by_key(ctx, "k1")
    assert current.status == "sending" and current.maybe_sent and current.attempts == 2

    first.release.set()  # the first attempt answers at last: the row is no longer its to write
    await asyncio.wait_for(t1, 30)
    assert snapshot(row_by_key(ctx, "k1")) == snapshot(current)

    second.release.set()
    assert await asyncio.wait_for(t2, 30) == 1
    row = row_by_key(ctx, "k1")
    assert row.status == "sent" and row.platform_message_id == "second:late:k1" and row.attempts == 2
    assert row.lease_until is None


# --- several deliverers ---------------------------------------------------------------------------

async def test_two_deliverers_sweeping_together_deliver_each_row_exactly_once(runtime, ctx, database_url,
                                                                              monkeypatch):
    monkeypatch.setattr(outbox, "BATCH", 4)  # small claims, so that the two interleave
    keys = [f"k{i:02d}" for i in range(30)]
    for i, key in enumerate(keys):
        queue(runtime, key, platform="slack" if i % 3 else "teams", target=f"C{i:02d}")
    # a second replica: its own engine and sessions on the same store, the same clock
    engine = make_engine(database_url)
    try:
        ctx2 = Context(config=ctx.config, sessions=session_factory(engine), now=ctx.now)
        a = {"slack": FakeSender("slack", "a", delay=0.01), "teams": FakeSender("teams", "a", delay=0.01)}
        b = {"slack": FakeSender("slack", "b", delay=0.01), "teams": FakeSender("teams", "b", delay=0.01)}
        da, db = Deliverer(ctx, a), Deliverer(ctx2, b)
        results = await asyncio.gather(da.sweep(), db.sweep(), da.sweep(), db.sweep())
    finally:
        engine.dispose()
    delivered = [i.key for s in (*a.values(), *b.values()) for i in s.delivered]
    assert sorted(delivered) == keys  # every row, none twice
    assert sum(results) == len(keys)
    by_sender = {i.key: s.name for s in (*a.values(), *b.values()) for i in s.delivered}
    for row in all_rows(ctx):
        assert row.status == "sent" and row.attempts == 1  # never claimed twice
        assert row.platform_message_id == f"{by_sender[row.dedupe_key]}:{row.dedupe_key}"
        assert not row.maybe_sent


async def test_a_replica_that_loses_the_race_for_a_row_does_not_send_it(runtime, ctx, database_url):
    """The claim is conditional: rows another replica claimed (and here even sent) between this one's
    look-up and its UPDATE are not taken. SQLite cannot interleave there (the claim holds the write lock
    from BEGIN IMMEDIATE), so the race is staged on PostgreSQL only."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite serialises claims with BEGIN IMMEDIATE: this race cannot happen there")
    keys = [f"k{i}" for i in range(5)]
    for key in keys:
        queue(runtime, key)
    a, b = FakeSender("slack", "a"), FakeSender("slack", "b")
    winner = Deliverer(ctx, {"slack": a})
    engine = make_engine(database_url)
    raced = []

    def after_lookup(conn, cursor, statement, parameters, context, executemany):
        if not raced and statement.lstrip().upper().startswith("SELECT OUTBOX.ID"):
            raced.append(True)
            # the other replica claims and delivers everything right after this one looked
            assert asyncio.run(winner.sweep()) == len(keys)

    event.listen(engine, "after_cursor_execute", after_lookup)
    try:
        loser = Deliverer(Context(config=ctx.config, sessions=session_factory(engine), now=ctx.now), {"slack": b})
        assert await loser.sweep() == 0
    finally:
        engine.dispose()
    assert raced
    assert b.sends == [] and sorted(i.key for i in a.delivered) == keys
    assert all(r.status == "sent" and r.attempts == 1 for r in all_rows(ctx))


async def test_rows_for_a_platform_without_a_sender_are_left_untouched(runtime, ctx, clock):
    queue(runtime, "to-slack")
    queue(runtime, "to-teams", platform="teams", target="19:payments@thread.tacv2")
    before = snapshot(row_by_key(ctx, "to-teams"))
    sender = FakeSender("slack")
    assert await Deliverer(ctx, {"slack": sender}).sweep() == 1
    assert [i.key for i in sender.sends] == ["to-slack"]
    assert snapshot(row_by_key(ctx, "to-teams")) == before
    assert before["status"] == "pending" and before["attempts"] == 0
    clock.advance(days=3)
    assert await Deliverer(ctx, {}).sweep() == 0
    assert snapshot(row_by_key(ctx, "to-teams")) == before


async def test_a_sender_raising_unexpectedly_does_not_stop_the_other_rows(runtime, ctx, clock):
    queue(runtime, "k1", target="C01")
    queue(runtime, "k2", target="C0BROKEN")
    queue(runtime, "k3", target="C03")
    sender = FakeSender("slack")
    sender.fail_for["C0BROKEN"] = SenderBug("surprise")
    deliverer = Deliverer(ctx, {"slack": sender})
    assert await deliverer.sweep() == 2
    assert sorted(i.key for i in sender.delivered) == ["k1", "k3"]
    broken = row_by_key(ctx, "k2")
    assert broken.status == "pending" and broken.attempts == 1 and broken.lease_until is None
    assert "SenderBug" in broken.last_error and "surprise" in broken.last_error
    assert broken.next_attempt_at > clock()
    assert {row_by_key(ctx, k).status for k in ("k1", "k3")} == {"sent"}
    # and it is retried later like any other failure
    del sender.fail_for["C0BROKEN"]
    clock.to(broken.next_attempt_at)
    assert await deliverer.sweep() == 1
    assert row_by_key(ctx, "k2").status == "sent"


# --- leases against a slow platform, and shared rate-limit pauses ------------------------------------

def with_lease(ctx, seconds: float, sessions=None, now=None) -> Context:
    """A replica's context with a short lease: the same store (or ``sessions`` on it) and clock."""
    delivery = ctx.config.delivery.model_copy(update={"lease_seconds": seconds})
    return Context(config=ctx.config.model_copy(update={"delivery": delivery}), sessions=sessions or ctx.sessions,
                   now=now or ctx.now)


def slack_sender(fake_slack) -> SlackSender:
    return SlackSender(web_client("xoxb-test", fake_slack.url + "/api/"))


def posted_keys(fake_slack) -> list[str]:
    keys = []
    for call in fake_slack.called("chat.postMessage"):
        meta = call.params["metadata"]
        keys.append((json.loads(meta) if isinstance(meta, str) else meta)["event_payload"]["outbox_key"])
    return sorted(keys)


async def test_two_replicas_and_a_slow_slack_post_each_row_once(runtime, ctx, clock, database_url, fake_slack,
                                                                monkeypatch):
    """A sweep claims a batch and sends two rows at a time; Slack answers each post 0.3 s after taking it,
    longer than the 0.25 s lease. The last rows of the batch wait their turn long past their lease, and
    every post in flight outlives it, while another replica sweeps the same store over and over: still,
    every row is posted once."""
    monkeypatch.setattr(outbox, "CONCURRENCY", 2)
    fake_slack.delays["chat.postMessage"] = 0.3
    clock.to(utcnow())
    keys = [f"k{i}" for i in range(6)]
    for key in keys:
        queue(runtime, key)
    engine = make_engine(database_url)
    sent = []

    async def sweep_until_done(deliverer: Deliverer) -> None:
        while sum(sent) < len(keys):
            sent.append(await deliverer.sweep())
            await asyncio.sleep(0.05)

    try:
        replicas = [Deliverer(with_lease(ctx, 0.25, sessions, utcnow), {"slack": slack_sender(fake_slack)})
                    for sessions in (ctx.sessions, session_factory(engine))]
        await asyncio.wait_for(asyncio.gather(*map(sweep_until_done, replicas)), 30)
    finally:
        engine.dispose()
    assert posted_keys(fake_slack) == keys  # none twice
    assert sum(sent) == len(keys)
    assert {r.status for r in all_rows(ctx)} == {"sent"}


async def renewed(ctx, key: str, lease: datetime) -> None:
    """Wait (in real time) for the deliverer's next renewal of the row's lease."""
    for _ in range(500):
        if row_by_key(ctx, key).lease_until > lease:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the lease of {key} was not renewed")


async def test_a_claim_in_flight_is_renewed_until_the_platform_answers(runtime, ctx, clock):
    """The lease is renewed every third of its length while a send waits for its answer: another sweep
    does not take the row over, however long the answer takes."""
    queue(runtime, "k1")
    slow = HangingSender("slack")
    task = asyncio.ensure_future(Deliverer(with_lease(ctx, 0.3), {"slack": slow}).sweep())
    await asyncio.wait_for(slow.entered.wait(), 30)
    other = FakeSender("slack")
    for _ in range(3):  # three lease lengths in all
        claimed = row_by_key(ctx, "k1").lease_until
        clock.advance(seconds=0.3)  # that lease has run out now, unless renewed meanwhile
        await renewed(ctx, "k1", claimed)
        assert await Deliverer(ctx, {"slack": other}).sweep() == 0
    assert other.sends == [] and other.lookups == []
    slow.release.set()
    assert await asyncio.wait_for(task, 30) == 1
    row = row_by_key(ctx, "k1")
    assert row.status == "sent" and row.attempts == 1 and row.platform_message_id == "slack:late:k1"


async def test_a_row_taken_over_while_waiting_its_turn_is_not_sent_by_the_first_sweep(runtime, ctx, clock,
                                                                                     monkeypatch):
    """One row at a time: while the first send hangs, the others' leases run out and another replica
    takes them over and sends them. When the first sweep gets to them, its claim is gone: it sends
    nothing more, and the rows were never marked as maybe sent (they had not been tried)."""
    monkeypatch.setattr(outbox, "CONCURRENCY", 1)
    for i in range(4):
        queue(runtime, f"k{i}", target=f"C0{i}")
    first = HangingSender("slack")
    first.name = "first"
    task = asyncio.ensure_future(Deliverer(with_lease(ctx, 0.3), {"slack": first}).sweep())
    await asyncio.wait_for(first.entered.wait(), 30)
    claimed = row_by_key(ctx, "k1").lease_until
    clock.advance(seconds=1)
    await renewed(ctx, "k0", claimed)  # the row in flight keeps its claim; those waiting do not
    second = FakeSender("slack", "second")
    assert await Deliverer(ctx, {"slack": second}).sweep() == 3
    first.release.set()
    await asyncio.wait_for(task, 30)
    assert [i.key for i in first.sends] == ["k0"] and sorted(i.key for i in second.sends) == ["k1", "k2", "k3"]
    assert second.lookups == []
    assert all(r.status == "sent" and r.attempts == 1 for r in all_rows(ctx))


async def test_a_429_pauses_every_row_of_that_method_on_every_replica(runtime, ctx, clock, database_url, fake_slack,
                                                                    monkeypatch):
    """Slack answers 429 (Retry-After: 1) and keeps refusing that method for a second: the rows behind the
    first one wait out the same second without calling Slack, on this replica and on another; a response
    URL, limited on its own, is not held back."""
    monkeypatch.setattr(outbox, "CONCURRENCY", 1)
    fake_slack.clock = lambda: clock().timestamp()
    fake_slack.rate_limit("chat.postMessage", retry_after=1)
    keys = [f"k{i}" for i in range(5)]
    for i, key in enumerate(keys):
        queue(runtime, key, target=f"C0{i}")
    queue(runtime, "answer", kind="response_url", target=fake_slack.url + "/hooks/T0/B0/answer")
    deliverer = Deliverer(ctx, {"slack": slack_sender(fake_slack)})
    assert await deliverer.sweep() == 1  # the answer
    assert len(fake_slack.called("chat.postMessage")) == 1 and len(fake_slack.refused) == 1
    until = clock() + timedelta(seconds=1)
    for key in keys:
        row = row_by_key(ctx, key)
        assert row.status == "pending" and row.next_attempt_at == until and row.lease_until is None
        assert row.attempts == (1 if key == "k0" else 0)  # the others never tried

    queue(runtime, "k5", target="C05")
    keys.append("k5")
    engine = make_engine(database_url)
    try:
        other = Deliverer(Context(config=ctx.config, sessions=session_factory(engine), now=ctx.now),
                          {"slack": slack_sender(fake_slack)})
        clock.to(until - timedelta(microseconds=1))
        assert await other.sweep() == 0
    finally:
        engine.dispose()
    assert len(fake_slack.called("chat.postMessage")) == 1
    assert row_by_key(ctx, "k5").next_attempt_at == until

    clock.to(until)
    assert await deliverer.sweep() == len(keys)
    assert len(fake_slack.refused) == 1
    assert posted_keys(fake_slack) == sorted(["k0", *keys])  # k0 twice: refused, then posted
    assert {r.status for r in all_rows(ctx)} == {"sent"}
