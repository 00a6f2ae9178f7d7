"""The outbox deliverer: sends what the handlers queued, once, however the platforms or this process fail.

A row is claimed by a conditional UPDATE (pending and due, or a claim whose lease ran out), so two
replicas never send the same row. A sweep claims a batch but sends a few rows at a time, so a row may
wait its turn longer than its lease: right before its attempt begins, one UPDATE checks that the claim
is still this sweep's (nobody took the row over since) and renews the lease, and the attempt goes ahead
only if that row was updated. While the platform has not answered, the lease is renewed every third of
its length, so a slow answer does not let another replica post the row as well. Success, a retry time
or a permanent failure is written back only if the claim is still ours. When an attempt ends without
an answer — a timeout, or a crash that left the claim behind — the row is marked ``maybe_sent`` and
the next attempt asks the platform whether the message is already there before posting it again.

A 429 whose ``scope`` names the rate limit it belongs to (a Slack method) pauses, through the store
(bot/pauses.py), every row of every replica that would call that method, until its Retry-After.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, update

from bot import pauses
from handlers.core.context import Context
from storage.models import OutboxMessage

log = logging.getLogger("svcbot.outbox")

MAX_BACKOFF_SECONDS = 900
CONCURRENCY = 8
BATCH = 100


class DeliveryError(Exception):
    """A failed attempt. ``permanent``: never retry. ``ambiguous``: it may have arrived anyway.
    ``scope``: the rate limit a 429 belongs to (a Slack method): every row that would use it waits
    ``retry_after`` too."""

    def __init__(self, message: str, *, retry_after: float | None = None, permanent: bool = False,
                 ambiguous: bool = False, scope: str | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        self.ambiguous = ambiguous
        self.scope = scope


@dataclass(frozen=True)
class Outgoing:
    """What a sender needs of a claimed row."""

    id: int
    key: str
    platform: str
    target_kind: str
    target: str
    thread_id: str | None
    message: dict[str, Any]
    created_at: datetime
    maybe_sent: bool
    message_id: str | None = None  # for an edit: the platform's id of the message to replace


@dataclass(frozen=True)
class Delivered:
    channel: str
    message_id: str


class Sender(Protocol):
    platform: str

    async def send(self, item: Outgoing) -> Delivered: ...

    async def find_sent(self, item: Outgoing) -> Delivered | None:
        """The message if an earlier, unanswered attempt did deliver it; None if it did not."""

    # Optional: def rate_scopes(self, item: Outgoing) -> Iterable[str] — the rate limits (API methods) an
    # attempt would use; while one of them is paused by a 429 the row waits without calling the platform.


@dataclass(eq=False)
class Claim:
    """A claimed row and the lease that proves the claim is still ours (the lease changes when renewed)."""

    item: Outgoing
    lease: datetime


MIN_RETRY_SECONDS = 1  # a "Retry-After: 0" must not turn a sweep into a busy loop


def backoff(attempts: int) -> float:
    base = min(2 ** max(attempts - 1, 0) * 2, MAX_BACKOFF_SECONDS)
    return min(base * random.uniform(1.0, 1.2), MAX_BACKOFF_SECONDS)


class Deliverer:
    def __init__(self, ctx: Context, senders: dict[str, Sender], metrics=None):
        self.ctx = ctx
        self.senders = senders
        self.metrics = metrics
        self._lock = asyncio.Lock()
        self._again = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    def kick(self) -> None:
        """Deliver now rather than at the next sweep. Handlers run in worker threads and call this
        after a commit that queued messages."""
        if self._loop and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.sweep()))

    async def sweep(self) -> int:
        """Deliver every due row; returns how many were sent. Overlapping calls merge into one."""
        if not self.senders:
            return 0
        if self._lock.locked():
            self._again = True
            return 0
        sent = 0
        async with self._lock:
            while True:
                self._again = False
                claimed = await asyncio.to_thread(self._claim)
                if not claimed:
                    if self._again:
                        continue
                    break
                gate = asyncio.Semaphore(CONCURRENCY)

                async def one(claim: Claim) -> bool:
                    async with gate:
                        return await self._deliver(claim)

                results = await asyncio.gather(*(one(claim) for claim in claimed))
                sent += sum(results)
        return sent

    def _due(self, now: datetime):
        # A claimed row stays 'pending' until its attempt begins: its lease alone keeps others away.
        free = or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now)
        return and_(OutboxMessage.platform.in_(list(self.senders)), or_(
            and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now, free),
            and_(OutboxMessage.status == "sending", OutboxMessage.lease_until < now)))

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self.ctx.config.delivery.lease_seconds)

    def _claim(self) -> list[Claim]:
        now = self.ctx.now()
        lease = now + self._lease
        claimed = []
        with self.ctx.sessions.begin() as s:
            # A message that waited longer than give_up_hours (say, for a platform configured only now)
            # is stale: mark it failed rather than announce old news.
            too_old = now - timedelta(hours=self.ctx.config.delivery.give_up_hours)
            s.execute(update(OutboxMessage)
                      .where(OutboxMessage.status == "pending", OutboxMessage.created_at < too_old,
                             OutboxMessage.platform.in_(list(self.senders)))
                      .values(status="failed", last_error="expired before it could be delivered")
                      .execution_options(synchronize_session=False))
            ids = s.scalars(select(OutboxMessage.id).where(self._due(now))
                            .order_by(OutboxMessage.id).limit(BATCH)).all()
            for row_id in ids:
                # A row still 'sending' here was abandoned mid-attempt: its fate is unknown. A row
                # claimed but never begun (still 'pending') was not sent: nothing to look for.
                result = s.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == row_id, self._due(now))
                    .values(maybe_sent=OutboxMessage.maybe_sent | (OutboxMessage.status == "sending"),
                            status="pending", lease_until=lease)
                    .execution_options(synchronize_session=False))
                if result.rowcount == 1:
                    row = s.get(OutboxMessage, row_id, populate_existing=True)
                    item = Outgoing(row.id, row.dedupe_key, row.platform, row.target_kind, row.target,
                                    row.thread_id, row.message, row.created_at, row.maybe_sent)
                    item = self._anchored(s, row, item, now) if row.anchor_key else item
                    if item:
                        claimed.append(Claim(item, lease))
        return claimed

    @staticmethod
    def _anchored(s, row: OutboxMessage, item: Outgoing, now: datetime) -> Outgoing | None:
        """Point an edit or a thread reply at the message its anchor row delivered; None if it must wait."""
        anchor = s.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == row.anchor_key))
        if anchor is not None and anchor.status in ("pending", "sending"):
            # Not delivered yet: give the claim back.
            row.status, row.lease_until = "pending", None
            row.next_attempt_at = max(now, anchor.next_attempt_at) + timedelta(seconds=1)
            return None
        delivered = anchor is not None and anchor.status == "sent" and anchor.platform_message_id
        if item.target_kind in ("edit", "files"):
            if not delivered:
                row.status, row.lease_until = "failed", None
                row.last_error = f"the message it {'edits' if item.target_kind == 'edit' else 'goes with'} was never delivered"
                return None
            if item.target_kind == "files":  # beside the message, in the conversation it landed in
                return replace(item, target=anchor.platform_channel)
            return replace(item, target=anchor.platform_channel, message_id=anchor.platform_message_id)
        if not delivered:  # the thread never started: post on its own
            return item
        return replace(item, target=anchor.platform_channel, thread_id=anchor.platform_message_id)

    async def _deliver(self, claim: Claim) -> bool:
        item = claim.item
        sender = self.senders[item.platform]
        scopes = tuple(sender.rate_scopes(item)) if hasattr(sender, "rate_scopes") else ()
        began = await asyncio.to_thread(self._begin, claim, scopes)
        if began is not True:
            if began is False:
                log.info("outbox %s: taken over by another sweep while waiting its turn; not sending", item.id)
            else:
                log.info("outbox %s waits for %s's rate limit until %s", item.id, item.platform, began)
            return False
        stop = asyncio.Event()
        keeper = asyncio.ensure_future(self._keep(claim, stop))
        try:
            try:
                found = await sender.find_sent(item) if item.maybe_sent else None
                if found:
                    log.info("outbox %s was already delivered (%s); not sending again", item.id, found.message_id)
                delivered = found or await sender.send(item)
            finally:
                await self._settle(stop, keeper)
        except DeliveryError as exc:
            await asyncio.to_thread(self._failed, claim, exc)
            return False
        except Exception as exc:  # a sender bug must not stop the sweep; treat it as retryable
            log.exception("outbox %s: unexpected error", item.id)
            await asyncio.to_thread(self._failed, claim, DeliveryError(repr(exc)))
            return False
        if not await asyncio.to_thread(self._done, claim, delivered):
            log.warning("outbox %s was delivered after another sweep had taken it over; that sweep looks for it "
                        "before posting again", item.id)
            return False
        self._count("sent", item.platform)
        return True

    def _begin(self, claim: Claim, scopes: tuple[str, ...]) -> bool | datetime:
        """Right before the attempt: True if the claim is still ours, now renewed and the attempt counted;
        False if another sweep took the row over; the pause's end if a rate limit it needs is paused
        (then the row goes back to wait for it, no attempt counted)."""
        mine = update(OutboxMessage).where(OutboxMessage.id == claim.item.id, OutboxMessage.status == "pending",
                                           OutboxMessage.lease_until == claim.lease)
        with self.ctx.sessions.begin() as s:
            now = self._locked_now(s)
            until = pauses.paused_until(s, claim.item.platform, scopes, now)
            if until is not None:
                given_back = s.execute(mine.values(lease_until=None, next_attempt_at=until)).rowcount == 1
                return until if given_back else False
            lease = now + self._lease
            if s.execute(mine.values(status="sending", lease_until=lease,
                                     attempts=OutboxMessage.attempts + 1)).rowcount != 1:
                return False
        claim.lease = lease
        return True

    async def _keep(self, claim: Claim, stop: asyncio.Event) -> None:
        """Renew the lease every third of its length while the platform has not answered."""
        interval = self._lease.total_seconds() / 3
        while True:
            try:
                await asyncio.wait_for(stop.wait(), interval)
                return
            except asyncio.TimeoutError:
                pass
            if not await asyncio.to_thread(self._renew, claim):
                log.warning("outbox %s: the claim was taken over while its attempt was in flight", claim.item.id)
                return

    @staticmethod
    async def _settle(stop: asyncio.Event, keeper: asyncio.Future) -> None:
        # Let a renewal in flight finish, so that the outcome is written with the lease it set.
        stop.set()
        await asyncio.shield(keeper)

    def _locked_now(self, s) -> datetime:
        """The time once the transaction has begun (on SQLite: holds the write lock), so that a lease
        does not lose what waiting for the lock took."""
        s.connection()
        return self.ctx.now()

    def _renew(self, claim: Claim) -> bool:
        with self.ctx.sessions.begin() as s:
            lease = self._locked_now(s) + self._lease
            if s.execute(self._mine(claim).values(lease_until=lease)).rowcount != 1:
                return False
        claim.lease = lease
        return True

    @staticmethod
    def _mine(claim: Claim):
        return update(OutboxMessage).where(OutboxMessage.id == claim.item.id, OutboxMessage.status == "sending",
                                           OutboxMessage.lease_until == claim.lease)

    def _done(self, claim: Claim, delivered: Delivered) -> bool:
        with self.ctx.sessions.begin() as s:
            return s.execute(self._mine(claim).values(
                status="sent", sent_at=self.ctx.now(), lease_until=None, last_error=None, maybe_sent=False,
                platform_channel=delivered.channel, platform_message_id=delivered.message_id)).rowcount == 1

    def _failed(self, claim: Claim, exc: DeliveryError) -> None:
        item = claim.item
        now = self.ctx.now()
        with self.ctx.sessions.begin() as s:
            attempts = s.scalar(select(OutboxMessage.attempts).where(OutboxMessage.id == item.id))
            too_old = now - item.created_at > timedelta(hours=self.ctx.config.delivery.give_up_hours)
            if exc.permanent or too_old:
                values = dict(status="failed", lease_until=None)
                log.error("outbox %s to %s %s failed for good: %s", item.id, item.platform, item.target, exc)
                self._count("failed", item.platform)
            else:
                wait = max(exc.retry_after, MIN_RETRY_SECONDS) if exc.retry_after is not None \
                    else backoff(attempts or 1)
                values = dict(status="pending", lease_until=None, next_attempt_at=now + timedelta(seconds=wait),
                              maybe_sent=item.maybe_sent or exc.ambiguous)
                log.warning("outbox %s to %s %s: %s; retry in %.1fs", item.id, item.platform, item.target, exc, wait)
                self._count("retried", item.platform)
                if exc.scope and exc.retry_after is not None:  # the other rows that need it wait as well
                    pauses.pause(s, item.platform, exc.scope, now + timedelta(seconds=wait))
            s.execute(self._mine(claim).values(last_error=str(exc)[:2000], **values))

    def _count(self, outcome: str, platform: str) -> None:
        if self.metrics:
            self.metrics.count_attempt(platform, outcome)
