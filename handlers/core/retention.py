"""Pruning what only matters for a while: delivered outbox rows and the keys of deliveries acted on.

Both are kept ``retention.deliveries_days`` (app.yaml, at least two days): long enough for every retry
of a Slack event, response URL or API call to still find its key, and for an outbox row's own key to
stop a message being queued twice. Messages still waiting are never pruned, nor a message a later one
must edit or answer in its thread: the announcement of a change or a survey still open (or closed
within the retention), and any row a waiting row is anchored to. Anonymous survey answers have rules
of their own (handlers/surveys/commands.py).
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, or_, select

from handlers.core.context import Context
from storage.db import empty_write_ahead_log
from storage.models import Change, OutboxMessage, ProcessedDelivery, Survey

log = logging.getLogger("svcbot.retention")

CHUNK = 500  # rows per statement: a large first prune must not hold the store's write lock for long


def _still_anchored(session, cutoff) -> set[str]:
    """Outbox keys that later messages may still edit or answer in their thread."""
    keys: set[str] = set()
    for model in (Change, Survey):
        for announcements in session.scalars(select(model.announcements).where(
                or_(model.closed_at.is_(None), model.closed_at >= cutoff))):
            keys.update(announcements or ())
    keys.update(k for k in session.scalars(select(OutboxMessage.anchor_key).where(
        OutboxMessage.status.in_(("pending", "sending")), OutboxMessage.anchor_key.is_not(None))))
    return keys


DONE = ("sent", "failed", "superseded")  # nothing will send these again


def prune(ctx: Context) -> dict[str, int]:
    """Delete what is older than the retention; how many of each went."""
    cutoff = ctx.now() - timedelta(days=ctx.config.retention.deliveries_days)
    pruned = {"outbox": 0, "processed_deliveries": 0}
    with ctx.sessions.begin() as session:
        pruned["processed_deliveries"] = session.execute(
            delete(ProcessedDelivery).where(ProcessedDelivery.at < cutoff)
            .execution_options(synchronize_session=False)).rowcount
    with ctx.sessions() as session:
        keep = _still_anchored(session, cutoff)
    after = 0
    while True:
        with ctx.sessions.begin() as session:
            rows = session.execute(select(OutboxMessage.id, OutboxMessage.dedupe_key).where(
                OutboxMessage.status.in_(DONE), OutboxMessage.created_at < cutoff,
                OutboxMessage.id > after).order_by(OutboxMessage.id).limit(CHUNK)).all()
            ids = [row_id for row_id, key in rows if key not in keep]
            if ids:
                session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids))
                                .execution_options(synchronize_session=False))
            pruned["outbox"] += len(ids)
        if len(rows) < CHUNK:
            break
        after = rows[-1][0]
    empty_write_ahead_log(ctx.sessions.kw["bind"])  # on SQLite, what was deleted leaves the log too (survey closes)
    if any(pruned.values()):
        log.info("pruned %d delivered messages and %d delivery keys older than %d days", pruned["outbox"],
                 pruned["processed_deliveries"], ctx.config.retention.deliveries_days)
    return pruned
