"""The Slack App Home tab: published when a person opens it, and again when what it shows changes.

Only people who opened it get it (a row in home_views says they did). Every publish goes through the
outbox, at most one per person per ``delivery.home_debounce_seconds``: one due sooner waits till then, and
one still waiting is replaced by the newer view, so a burst of changes becomes one publish.
"""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta

from sqlalchemy import select

from handlers.core.context import SYSTEM, Actor, Context, Reply, Section, Work
from handlers.core.people import resolve_actor
from handlers.home.view import home_reply
from storage.models import HomeView, OutboxMessage

log = logging.getLogger("svcbot")

KEEP = timedelta(days=90)  # someone who has not opened it for this long gets no more refreshes
ICON = {"ok": "✅", "error": "⚠️", "warning": "⚠️", "info": "ℹ️"}


def digest_of(reply: Reply) -> str:
    return hashlib.sha256(json.dumps(reply.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:40]


def opened(ctx: Context, actor: Actor, platform: str, external_id: str, key: str) -> bool:
    """Someone opened their home: remember that they did, and publish it unless it shows the same as the
    last one published. True when a publish was queued."""
    reply = home_reply(ctx, actor)
    with ctx.sessions.begin() as s:
        row = s.get(HomeView, (platform, external_id))
        if row is None:
            row = HomeView(platform=platform, external_id=external_id, person_id=actor.person_id,
                           opened_at=ctx.now())
            s.add(row)
        row.person_id, row.opened_at = actor.person_id, ctx.now()
        queued = _publish(Work(ctx, s, actor), row, reply, key)
    if queued:
        ctx.on_outbox()
    return queued


def after_action(ctx: Context, actor: Actor, platform: str, external_id: str, answer: Reply, key: str) -> None:
    """A button on the home was pressed: publish the home again with the answer on top of it."""
    reply = home_reply(ctx, actor)
    if not answer.in_place:  # the home's own Refresh has nothing to say on top of it
        line = f"{ICON.get(answer.tone, '')} *{answer.title}*" + (f" — {answer.text}" if answer.text else "")
        reply.sections.insert(0, Section(text=line.strip()))
    with ctx.sessions.begin() as s:
        row = s.get(HomeView, (platform, external_id))
        if row is None:  # pressed on a home published before home_views was kept: remember them now
            row = HomeView(platform=platform, external_id=external_id, person_id=actor.person_id, opened_at=ctx.now())
            s.add(row)
        _publish(Work(ctx, s, actor), row, reply, key)
    ctx.on_outbox()


def sweep(ctx: Context) -> int:
    """Publish again every home whose content changed since it was last published; returns how many."""
    now = ctx.now()
    with ctx.sessions() as s:
        rows = s.execute(select(HomeView.platform, HomeView.external_id, HomeView.digest)
                         .where(HomeView.opened_at >= now - KEEP)).all()
    done = 0
    for platform, external_id, shown in rows:
        actor = resolve_actor(ctx, platform, external_id, register=False)
        reply = home_reply(ctx, actor)
        if digest_of(reply) == shown:
            continue
        with ctx.sessions.begin() as s:
            row = s.get(HomeView, (platform, external_id))
            if row is not None:
                done += _publish(Work(ctx, s, SYSTEM), row, reply, f"home:{platform}:{external_id}:{now:%Y%m%dT%H%M%S}")
    if done:
        ctx.on_outbox()
    return done


def _publish(work: Work, row: HomeView, reply: Reply, key: str) -> bool:
    digest = digest_of(reply)
    if digest == row.digest:
        return False
    # Only the newest view matters: one still waiting for its turn is not published at all, and this one
    # takes its turn. Otherwise this one waits till the debounce after the last one has passed.
    waiting = work.session.scalar(
        select(OutboxMessage).where(OutboxMessage.platform == row.platform, OutboxMessage.target_kind == "home",
                                    OutboxMessage.target == row.external_id, OutboxMessage.status == "pending",
                                    OutboxMessage.attempts == 0)
        .order_by(OutboxMessage.id.desc()))
    if waiting is not None:
        waiting.status = "superseded"
        release = max(work.now, waiting.next_attempt_at)
    else:
        debounce = timedelta(seconds=work.ctx.config.delivery.home_debounce_seconds)
        release = max(work.now, row.published_at + debounce) if row.published_at else work.now
    work.send(row.platform, "home", row.external_id, reply, f"{key}:{digest[:16]}", subject="home",
              not_before=release)
    row.digest, row.published_at = digest, release
    return True
