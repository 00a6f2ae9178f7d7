"""Outages and maintenance windows: recorded from `service set`, the API and Alertmanager; read back as
availability per period, and watched for error-budget burn.

A major outage is downtime; maintenance is approved time that agreed service time leaves out; a
partial outage is recorded and reported but is not counted as downtime.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select

from handlers.core.context import Context, Field, Reply, Section, Work
from handlers.knowledge import reuse
from handlers.sla import availability
from handlers.sla.dependents import StateWatch
from handlers.sla.alertmanager import AlertEvent
from storage.models import Outage, OutboxMessage

STATUS_KINDS = {"major-outage": "unplanned", "partial-outage": "partial", "maintenance": "maintenance"}
BURN_LOOKBACK = timedelta(days=3)  # the longest burn-rate window


def open_outage(work: Work, service_id: str, kind: str, source: str, fingerprint: str, started_at: datetime,
                summary: str = "", runbook: str | None = None) -> Outage | None:
    """Record an outage once: a second report of the same one (same source and fingerprint) is ignored."""
    existing = work.session.scalar(select(Outage).where(Outage.source == source, Outage.fingerprint == fingerprint))
    if existing is not None:
        return None
    outage = Outage(service_id=service_id, kind=kind, source=source, fingerprint=fingerprint, summary=summary,
                    started_at=started_at, ended_at=None, runbook=runbook)
    work.session.add(outage)
    work.session.flush()
    work.audit("outage.open", f"service:{service_id}", kind=kind, source=source, outage=outage.id,
               **({"runbook": runbook} if runbook else {}))
    return outage


def close_outage(work: Work, outage: Outage, ended_at: datetime) -> None:
    outage.ended_at = max(ended_at, outage.started_at)
    work.audit("outage.close", f"service:{outage.service_id}", outage=outage.id, source=outage.source)


def status_changed(work: Work, service_id: str, previous: str, state: str, change_id: int, message: str) -> None:
    """`service set` moves the service's status outage or maintenance window on."""
    if previous == state:
        return
    if previous in STATUS_KINDS:
        current = work.session.scalar(select(Outage).where(
            Outage.service_id == service_id, Outage.source == "status", Outage.ended_at.is_(None)))
        if current is not None:
            close_outage(work, current, work.now)
    if state in STATUS_KINDS:
        open_outage(work, service_id, STATUS_KINDS[state], "status", f"{service_id}:{change_id}", work.now, message)


def apply_alerts(ctx: Context, events: list[AlertEvent], actor=None) -> dict:
    """Alertmanager's firing alerts open outages of the service they name; resolved ones close them.
    Each firing episode of an alert (its fingerprint and start) is one outage, however often it is resent.
    An outage names its alert's runbook (see ``handlers.knowledge.reuse.runbook_for``); the answer lists
    the runbooks of the outages it opened."""
    counts = {"opened": 0, "closed": 0, "repeated": 0, "unknown_service": 0}
    runbooks = []
    with ctx.sessions.begin() as session:
        work = Work(ctx, session, actor)
        for event in events:
            service = ctx.config.service(event.service)
            if service is None:
                counts["unknown_service"] += 1
                continue
            fingerprint = f"{event.fingerprint}:{event.starts_at.isoformat()}"
            outage = session.scalar(select(Outage).where(Outage.source == "alertmanager",
                                                         Outage.fingerprint == fingerprint))
            watch = StateWatch(work, service.id)
            if outage is None:
                alertname = event.labels.get("alertname")
                article, runbook = reuse.runbook_for(session, alertname, event.runbook_url)
                outage = open_outage(work, service.id, "unplanned", "alertmanager", fingerprint, event.starts_at,
                                     event.summary, runbook)
                counts["opened"] += 1
                if runbook:
                    runbooks.append({"fingerprint": event.fingerprint, "alert": alertname, "service": service.id,
                                     "outage": f"OUT-{outage.id}", "runbook": runbook,
                                     "title": article.title if article else None})
            elif event.status == "firing" or outage.ended_at is not None:
                counts["repeated"] += 1  # Alertmanager repeats itself every repeat_interval
            if event.status == "resolved" and outage.ended_at is None:
                close_outage(work, outage, event.ends_at)
                counts["closed"] += 1
            watch.settle(f"outage:{outage.id}:{event.status}", event.summary if event.status == "firing" else "")
    if work.queued:
        ctx.on_outbox()
    return {**counts, "runbooks": runbooks}


def intervals(session, service_id: str, kinds: tuple[str, ...], start: datetime | None, end: datetime,
              now: datetime) -> list[tuple[datetime, datetime]]:
    query = select(Outage.started_at, Outage.ended_at).where(
        Outage.service_id == service_id, Outage.kind.in_(kinds), Outage.started_at < end)
    if start is not None:
        query = query.where(or_(Outage.ended_at.is_(None), Outage.ended_at > start))
    return [(a, b or now) for a, b in session.execute(query) if (b or now) > a]


def service_availability(session, service_id: str, start: datetime, end: datetime,
                         now: datetime) -> availability.Availability:
    end = min(end, now)
    return availability.availability(
        start, max(end, start), intervals(session, service_id, ("unplanned",), start, end, now),
        intervals(session, service_id, ("maintenance",), start, end, now))


def availability_targets(ctx: Context) -> list[tuple[str, str, float]]:
    """(agreement id, service id, goal %) for every availability target."""
    return [(a.id, a.service, t.goal) for a in ctx.config.agreements for t in a.targets
            if t.metric == "availability"]


def burn_sweep(ctx: Context) -> int:
    """Tell each service's channel when its error budget burns fast on both windows of a rule; once per
    rule and outage episode (the outbox key carries the first outage start in the long window)."""
    now = ctx.now()
    sent = 0
    with ctx.sessions.begin() as session:
        work = Work(ctx, session, None)
        for agreement_id, service_id, goal in availability_targets(ctx):
            service = ctx.config.service(service_id)
            downs = intervals(session, service_id, ("unplanned",), now - BURN_LOOKBACK, now, now)
            if not downs or not service.channel:
                continue
            target = goal / 100
            for alert in availability.burn_alerts(downs, now, target):
                episode = min(a for a, b in downs if b > now - alert.long_window)
                key = f"burn:{service_id}:{alert.severity}:{int(alert.long_window.total_seconds())}:" \
                      f"{episode.isoformat()}"
                if _queued(session, key):
                    continue
                reply = Reply(
                    title=f"{'🔥' if alert.severity == 'page' else '⚠️'} {service.name}: error budget burning "
                          f"{alert.long_burn:.1f}× over {_span(alert.long_window)}",
                    sections=[Section(fields=[
                        Field("Agreement", f"{agreement_id} availability {goal:g} %"),
                        Field("Burn rate", f"{alert.long_burn:.1f}× over {_span(alert.long_window)}, "
                                           f"{alert.short_burn:.1f}× over {_span(alert.short_window)}"),
                        Field("Threshold", f"{alert.threshold:g}×"), Field("Severity", alert.severity)])],
                    tone="error" if alert.severity == "page" else "warning", private=False)
                work.post_to_channel(service.channel, reply, key, f"service:{service_id}")
                sent += 1
    if sent:
        ctx.on_outbox()
    return sent


def _queued(session, key: str) -> bool:
    return session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key.like(key + ":%")).limit(1)) \
        is not None


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"
