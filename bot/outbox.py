"""The outbox deliverer: sends what the handlers queued, once, however the platforms or this process fail.

A row is claimed by a conditional UPDATE (pending and due, or a claim whose lease ran out), so two
replicas never send the same row. Success, a retry time or a permanent failure is written back only
if the claim is still ours. When an attempt ends without an answer — a timeout, or a crash that left
the claim behind — the row is marked ``maybe_sent`` and the next attempt asks the platform whether
the message is already there before posting it again.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, update

from handlers.core import Context
from storage.models import OutboxMessage

log = logging.getLogger("svcbot.outbox")

MAX_BACKOFF_SECONDS = 900
CONCURRENCY = 8
BATCH = 100


class DeliveryError(Exception):
    """A failed attempt. ``permanent``: never retry. ``ambiguous``: it may have arrived anyway."""

    def __init__(self, message: str, *, retry_after: float | None = None, permanent: bool = False,
                 ambiguous: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        self.ambiguous = ambiguous


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

                async def one(item: Outgoing, lease: datetime) -> bool:
                    async with gate:
                        return await self._deliver(item, lease)

                results = await asyncio.gather(*(one(item, lease) for item, lease in claimed))
                sent += sum(results)
        return sent

    def _due(self, now: datetime):
        return and_(OutboxMessage.platform.in_(list(self.senders)), or_(
            and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
            and_(OutboxMessage.status == "sending", OutboxMessage.lease_until < now)))

    def _claim(self) -> list[tuple[Outgoing, datetime]]:
        now = self.ctx.now()
        lease = now + timedelta(seconds=self.ctx.config.delivery.lease_seconds)
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
                # A row still 'sending' here was abandoned mid-attempt: its fate is unknown.
                result = s.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == row_id, self._due(now))
                    .values(maybe_sent=OutboxMessage.maybe_sent | (OutboxMessage.status == "sending"),
                            status="sending", lease_until=lease, attempts=OutboxMessage.attempts + 1)
                    .execution_options(synchronize_session=False))
                if result.rowcount == 1:
                    row = s.get(OutboxMessage, row_id, populate_existing=True)
                    item = Outgoing(row.id, row.dedupe_key, row.platform, row.target_kind, row.target,
                                    row.thread_id, row.message, row.created_at, row.maybe_sent)
                    item = self._anchored(s, row, item, now) if row.anchor_key else item
                    if item:
                        claimed.append((item, lease))
        return claimed

    @staticmethod
    def _anchored(s, row: OutboxMessage, item: Outgoing, now: datetime) -> Outgoing | None:
        """Point an edit or a thread reply at the message its anchor row delivered; None if it must wait."""
        anchor = s.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == row.anchor_key))
        if anchor is not None and anchor.status in ("pending", "sending"):
            # Not delivered yet: give the claim back, without counting it as an attempt.
            row.status, row.lease_until, row.attempts = "pending", None, row.attempts - 1
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

    async def _deliver(self, item: Outgoing, lease: datetime) -> bool:
        sender = self.senders[item.platform]
        try:
            found = await sender.find_sent(item) if item.maybe_sent else None
            if found:
                log.info("outbox %s was already delivered (%s); not sending again", item.id, found.message_id)
            delivered = found or await sender.send(item)
        except DeliveryError as exc:
            await asyncio.to_thread(self._failed, item, lease, exc)
            return False
        except Exception as exc:  # a sender bug must not stop the sweep; treat it as retryable
            log.exception("outbox %s: unexpected error", item.id)
            await asyncio.to_thread(self._failed, item, lease, DeliveryError(repr(exc)))
            return False
        await asyncio.to_thread(self._done, item, lease, delivered)
        self._count("sent", item.platform)
        return True

    def _mine(self, item: Outgoing, lease: datetime):
        return update(OutboxMessage).where(OutboxMessage.id == item.id, OutboxMessage.status == "sending",
                                           OutboxMessage.lease_until == lease)

    def _done(self, item: Outgoing, lease: datetime, delivered: Delivered) -> None:
        with self.ctx.sessions.begin() as s:
            s.execute(self._mine(item, lease).values(
                status="sent", sent_at=self.ctx.now(), lease_until=None, last_error=None, maybe_sent=False,
                platform_channel=delivered.channel, platform_message_id=delivered.message_id))

    def _failed(self, item: Outgoing, lease: datetime, exc: DeliveryError) -> None:
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
            s.execute(self._mine(item, lease).values(last_error=str(exc)[:2000], **values))

    def _count(self, outcome: str, platform: str) -> None:
        if self.metrics:
            self.metrics.outbox.labels(platform=platform, outcome=outcome).inc()
