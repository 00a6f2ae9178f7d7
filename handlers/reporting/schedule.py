"""Scheduled posts (digests, monthly reports): each slot of a cron in a time zone happens exactly once.

Every slot decided is a ``ScheduledRun`` row (job, slot) that commits with the post's outbox rows or not
at all; the unique (job, slot) makes a slot happen once however many sweeps, restarts or replicas try.
A slot missed while svcbot was stopped is posted late, and says so, within the schedule's grace; older
ones, and all but the latest of several, are recorded as skipped and logged.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from handlers.core.config import Scheduled
from handlers.core.context import SYSTEM, Context, Work
from storage.models import ScheduledRun

log = logging.getLogger("svcbot")

# Posted more than this after its slot, a post says it is late (a restart, a long outage of svcbot).
ON_TIME = timedelta(minutes=1)
# However long svcbot was stopped, slots are looked for this far back at most.
LOOKBACK = timedelta(days=35)
SLOT_OUTCOMES = ("start", "posted", "late", "skipped")

# Queues what a slot posts, inside the slot's transaction: (work, the slot, the slot again if late).
Post = Callable[[Work, datetime, datetime | None], None]


def slots_between(plan: Scheduled, after: datetime, until: datetime) -> list[datetime]:
    """The plan's slots in (after, until], in UTC."""
    trigger = plan.trigger()
    out = []
    at = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    while at is not None and at <= until:
        out.append(at.astimezone(ZoneInfo("UTC")))
        at = trigger.get_next_fire_time(at, at + timedelta(microseconds=1))
    return out


def next_slot(plan: Scheduled, now: datetime) -> datetime | None:
    return plan.trigger().get_next_fire_time(None, now)


def last_run(session, jobs: tuple[str, ...], outcomes=SLOT_OUTCOMES, before: datetime | None = None
             ) -> ScheduledRun | None:
    query = select(ScheduledRun).where(ScheduledRun.job.in_(jobs), ScheduledRun.outcome.in_(outcomes))
    if before is not None:
        query = query.where(ScheduledRun.decided_at < before)
    return session.scalar(query.order_by(ScheduledRun.decided_at.desc(), ScheduledRun.slot_at.desc()).limit(1))


def run_due(ctx: Context, job: str, plan: Scheduled, post: Post) -> int:
    """Post the job's slot if one is owed now; returns 1 if this call posted it, else 0."""
    now = ctx.now()
    grace = timedelta(minutes=plan.late_grace.minutes)
    try:
        with ctx.sessions.begin() as session:
            last = last_run(session, (job,))
            if last is None:
                # First sight of this job (a new install, a digest just added): earlier slots are not owed,
                # but one that fell due within a sweep before it is, so that the first slot is not lost.
                last = ScheduledRun(job=job, slot_at=now - ON_TIME, outcome="start", decided_at=now,
                                    note="first seen; earlier slots are not owed")
                session.add(last)
            slots = slots_between(plan, max(last.slot_at, now - LOOKBACK), now)
            if not slots:
                return 0
            owed = slots[-1] if now - slots[-1] <= grace else None
            missed = slots[:-1] if owed else slots
            for slot in missed:
                session.add(ScheduledRun(job=job, slot_at=slot, outcome="skipped", decided_at=now,
                                         note="older than the grace period" if now - slot > grace
                                         else "a later slot was due too"))
            if missed:
                log.warning("%s: skipped %d missed slot(s) from %s to %s (older than %s, or followed by a later "
                            "one)", job, len(missed), missed[0].isoformat(), missed[-1].isoformat(), grace)
            if owed is None:
                return 0
            late = now - owed > ON_TIME
            session.add(ScheduledRun(job=job, slot_at=owed, outcome="late" if late else "posted", decided_at=now))
            session.flush()  # a replica that posted this slot first makes this fail here, before any row
            work = Work(ctx, session, SYSTEM)
            post(work, owed, owed if late else None)
            work.audit("schedule.posted", job, slot=owed.isoformat(), late=late)
    except IntegrityError:
        log.info("%s: this slot was posted by another replica", job)
        return 0
    if late:
        log.warning("%s: slot %s posted late at %s", job, owed.isoformat(), now.isoformat())
    ctx.on_outbox()
    return 1
