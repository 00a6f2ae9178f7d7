"""Pruning delivered outbox rows and delivery keys after app.yaml's retention (handlers/core/retention.py)."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from handlers.core.context import Reply, Work
from handlers.core.retention import prune
from storage.models import Change, OutboxMessage, ProcessedDelivery
from tests.test_changes import mail


def send(ctx, key: str, status: str = "sent", anchor: str | None = None) -> None:
    with ctx.sessions.begin() as s:
        work = Work(ctx, s, None)
        if anchor:
            work.reply_in_thread(anchor, Reply(title="later"), key)
        else:
            work.send("slack", "channel", "C0PAYMENTS", Reply(title=key), key, "test")
        s.execute(update(OutboxMessage).where(OutboxMessage.dedupe_key == key).values(status=status))


def keys(ctx, model, column) -> set[str]:
    with ctx.sessions() as s:
        return set(s.scalars(select(column)))


def test_what_is_older_than_the_retention_goes_unless_a_message_may_still_need_it(runtime, ctx, clock):
    days = ctx.config.retention.deliveries_days
    change = mail(ctx)  # announced; the change stays open, so its announcements may still be edited
    with ctx.sessions.begin() as s:
        announcements = set(s.get(Change, change).announcements)
        s.execute(update(OutboxMessage).values(status="sent"))
        s.add(ProcessedDelivery(key="slack:event:old", at=clock()))
    assert announcements
    send(ctx, "old-sent")
    send(ctx, "old-failed", status="failed")
    send(ctx, "old-superseded", status="superseded")  # an edit or a held reminder a newer one replaced
    send(ctx, "old-waiting", status="pending")
    send(ctx, "old-anchor")
    clock.advance(days=days, seconds=1)
    send(ctx, "reply", status="pending", anchor="old-anchor")  # waits to go into old-anchor's thread
    send(ctx, "young-sent")
    with ctx.sessions.begin() as s:
        s.add(ProcessedDelivery(key="slack:event:young", at=clock()))
    before = keys(ctx, OutboxMessage, OutboxMessage.dedupe_key)
    with ctx.sessions() as s:  # the change's other messages (approval requests and such) are old news
        others = set(s.scalars(select(OutboxMessage.dedupe_key).where(OutboxMessage.subject == f"CHG-{change}")))
    gone = {"old-sent", "old-failed", "old-superseded"} | others - announcements
    assert others - announcements

    assert prune(ctx) == {"outbox": len(gone), "processed_deliveries": 1}
    assert keys(ctx, OutboxMessage, OutboxMessage.dedupe_key) == before - gone
    assert {"old-waiting", "old-anchor", "reply", "young-sent"} <= before - gone
    assert keys(ctx, ProcessedDelivery, ProcessedDelivery.key) == {"slack:event:young"}

    # once the change has been closed longer than the retention, its announcements go too
    with ctx.sessions.begin() as s:
        s.execute(update(Change).where(Change.id == change).values(closed_at=clock() - timedelta(days=days, seconds=1)))
    assert prune(ctx)["outbox"] == len(announcements)
    assert keys(ctx, OutboxMessage, OutboxMessage.dedupe_key) == before - gone - announcements
    assert prune(ctx) == {"outbox": 0, "processed_deliveries": 0}
