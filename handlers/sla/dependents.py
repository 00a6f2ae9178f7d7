"""What the services that depend on another feel when its state changes: they are told once, and ``status``
shows them as affected by it. Their own declared state is never changed here; their owners set it.

A service's state, as its dependents feel it, is its declared state (``service set``) or worse, while an
outage recorded by Alertmanager or the API is open: an unplanned one is a major outage, a partial one a
partial outage, a maintenance window maintenance. From mild to bad: operational, maintenance, degraded,
partial outage, major outage.

Every way a state can change — ``service set`` in chat, an outage through the API, an Alertmanager alert —
goes through ``StateWatch``: it reads the state before the change and, in the same transaction, after it.
Only when the two differ are the dependents told (handlers/core/dependencies.py finds them, transitively):
one message to each channel they are announced in and one direct message to each of their subscribers,
naming every dependent that channel or person follows. The outbox keys carry the event that changed the
state (``affected:status:N:…``, ``affected:outage:N:open:…``), so one event tells each place once, and an
event repeated (the same state set again, an alert resent, a retried command) tells nobody again.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from handlers.core.context import Button, Context, Field, Reply, Section, Work
from handlers.core.dependencies import Reach, dependency_graph
from storage.models import Outage, ServiceStatus, Subscription

OUTAGE_STATE = {"unplanned": "major-outage", "partial": "partial-outage", "maintenance": "maintenance"}
SEVERITY = ("operational", "maintenance", "degraded", "partial-outage", "major-outage")
STATE_WORDS = {"operational": "operational", "degraded": "degraded", "partial-outage": "in a partial outage",
               "major-outage": "in a major outage", "maintenance": "under maintenance"}
STATE_ICON = {"operational": "🟢", "degraded": "🟡", "partial-outage": "🟠", "major-outage": "🔴",
              "maintenance": "🔧"}
MANY = 200  # ids beyond which a read takes every row rather than an IN list
NAMED_IN_A_NOTICE = 10  # dependents listed one by one in a notice; the rest are counted


@dataclass(frozen=True)
class AffectedBy:
    """A service this one needs, directly or through others, that is not operational now."""

    cause: str  # the service id
    state: str
    impact: str  # full | partial
    path: tuple[str, ...]  # from the affected service down to the cause


def _rows(ctx: Context, session: Session | None, statement) -> list:
    return session.execute(statement).all() if session is not None else ctx.read(statement)


def among(ctx: Context, session: Session | None, statement, column, ids: Collection[str] | None) -> list:
    """The statement's rows whose ``column`` is one of ``ids`` (all rows if None): asked for in the query when
    they are few; when they are many, every row is read once and the rest left out here, which is cheaper than
    IN lists of hundreds."""
    if ids is None:
        return _rows(ctx, session, statement)
    if len(ids) <= MANY:
        return _rows(ctx, session, statement.where(column.in_(list(ids)))) if ids else []
    wanted, at = set(ids), list(statement.selected_columns.keys()).index(column.key)
    return [row for row in _rows(ctx, session, statement) if row[at] in wanted]


def current_states(ctx: Context, now: datetime, service_ids: Collection[str] | None = None,
                   session: Session | None = None) -> dict[str, str]:
    """The services of ``service_ids`` (all if None) that are not operational as their dependents feel it,
    and that state: two reads, the declared states and the outages open now."""
    declared = select(ServiceStatus.service_id, ServiceStatus.state).where(ServiceStatus.state != "operational")
    open_now = select(Outage.service_id, Outage.kind).where(
        Outage.started_at <= now, or_(Outage.ended_at.is_(None), Outage.ended_at > now))
    found = among(ctx, session, declared, ServiceStatus.service_id, service_ids) + \
        among(ctx, session, open_now, Outage.service_id, service_ids)
    states: dict[str, str] = {}
    for service_id, state in found:
        state = OUTAGE_STATE.get(state, state)
        if state in SEVERITY and SEVERITY.index(state) > SEVERITY.index(states.get(service_id, "operational")):
            states[service_id] = state
    return states


def next_outage_edge(ctx: Context, now: datetime) -> datetime | None:
    """The next time an outage begins or ends, after which ``affected_services`` may say otherwise although
    nothing was written; None when no service depends on another or no outage is ahead."""
    if dependency_graph(ctx.config).empty:
        return None
    starts = select(func.min(Outage.started_at)).where(Outage.started_at > now).scalar_subquery()
    ends = select(func.min(Outage.ended_at)).where(Outage.ended_at > now).scalar_subquery()
    found = [t for t in ctx.read(select(starts, ends))[0] if t is not None]
    return min(found, default=None)


def affected_by(ctx: Context, service_id: str, session: Session | None = None) -> list[AffectedBy]:
    """What this service needs that is not operational now, the worst first."""
    needs = dependency_graph(ctx.config).dependencies(service_id)
    if not needs:
        return []
    states = current_states(ctx, ctx.now(), {r.service for r in needs}, session)
    return _worst_first([AffectedBy(r.service, states[r.service], r.impact, r.path)
                         for r in needs if r.service in states])


def affected_services(ctx: Context, session: Session | None = None) -> dict[str, list[AffectedBy]]:
    """Every service affected through its dependencies now → what affects it, the worst first. Nothing is read
    when no service depends on another."""
    graph = dependency_graph(ctx.config)
    if graph.empty:
        return {}
    out: dict[str, list[AffectedBy]] = {}
    for cause, state in current_states(ctx, ctx.now(), graph.used_by.keys(), session).items():
        for r in graph.dependents(cause):
            out.setdefault(r.service, []).append(AffectedBy(cause, state, r.impact, r.path))
    return {sid: _worst_first(found) for sid, found in out.items()}


def _worst_first(found: list[AffectedBy]) -> list[AffectedBy]:
    return sorted(found, key=lambda a: (a.impact != "full", -SEVERITY.index(a.state), len(a.path), a.cause))


def affected_text(ctx: Context, found: list[AffectedBy]) -> str:
    """"Payments Gateway (major outage), Ledger (degraded, partly)": what ``status`` shows."""
    services = dependency_graph(ctx.config).services
    return ", ".join(f"{services[a.cause].name} ({a.state.replace('-', ' ')}"
                     + (", partly)" if a.impact == "partial" else ")") for a in found)


class StateWatch:
    """A service's state as its dependents feel it, read before a change to it; ``settle`` reads it again in
    the same transaction and tells the dependents if it moved."""

    def __init__(self, work: Work, service_id: str):
        self.work, self.service_id = work, service_id
        self.dependents = dependency_graph(work.ctx.config).dependents(service_id)
        self.before = self._state() if self.dependents else None

    def _state(self) -> str:
        self.work.session.flush()
        return current_states(self.work.ctx, self.work.now, [self.service_id], self.work.session).get(
            self.service_id, "operational")

    def settle(self, cause: str, message: str = "") -> int:
        """Tell the dependents if the state moved, keyed by ``cause`` (the event that moved it); returns the
        number of messages queued."""
        if self.before is None:
            return 0
        after = self._state()
        if after == self.before:
            return 0
        return _tell(self.work, self.service_id, self.dependents, self.before, after, cause, message)


def _tell(work: Work, service_id: str, dependents: list[Reach], before: str, after: str, cause: str,
          message: str) -> int:
    services = dependency_graph(work.ctx.config).services
    reached = {r.service: r for r in dependents}
    channels: dict[str, list[Reach]] = {}
    for r in dependents:
        channel = services[r.service].channel
        if channel:
            channels.setdefault(channel, []).append(r)
    followers: dict[str, list[Reach]] = {}
    for pid, sid in among(work.ctx, work.session, select(Subscription.person_id, Subscription.service_id),
                          Subscription.service_id, reached):
        followers.setdefault(pid, []).append(reached[sid])
    queued = work.queued
    for channel, rs in channels.items():
        work.post_to_channel(channel, notice(work.ctx, service_id, rs, before, after, message),
                             f"affected:{cause}:{channel}", f"service:{rs[0].service}")
    order = {sid: i for i, sid in enumerate(reached)}
    for pid in sorted(followers):
        rs = sorted(followers[pid], key=lambda r: order[r.service])
        work.message_person(pid, notice(work.ctx, service_id, rs, before, after, message),
                            f"affected:{cause}:person", f"service:{rs[0].service}")
    work.audit("service.dependents_told", f"service:{service_id}", previous=before, state=after, cause=cause,
               dependents=list(reached), channels=sorted(channels), people=len(followers))
    return work.queued - queued


def notice(ctx: Context, service_id: str, reached: list[Reach], before: str, after: str, message: str) -> Reply:
    """"Web Shop is affected: Payments Gateway is in a major outage", for one channel or one person."""
    services = dependency_graph(ctx.config).services
    cause = services[service_id]
    names = [services[r.service].name for r in reached]
    named = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
    if len(names) > 3:
        named = f"{names[0]}, {names[1]} and {len(names) - 2} more"
    verb = "is" if len(names) == 1 else "are"
    if after == "operational":
        title = f"🟢 {named}: {cause.name} is operational again"
        tone = "ok"
    else:
        partly = "partly " if all(r.impact == "partial" for r in reached) else ""
        now = "now " if before != "operational" else ""
        title = f"{STATE_ICON[after]} {named} {verb} {partly}affected: {cause.name} is {now}{STATE_WORDS[after]}"
        tone = "error" if after == "major-outage" else "warning" if after != "maintenance" else "info"
    fields = [Field(services[r.service].name, ("needs it" if r.impact == "full" else "partly needs it")
                    + (f" through {path_text(ctx, r.path[1:-1])}" if len(r.path) > 2 else ""))
              for r in reached[:NAMED_IN_A_NOTICE]]
    if len(reached) > NAMED_IN_A_NOTICE:
        fields.append(Field("And", f"{len(reached) - NAMED_IN_A_NOTICE} more: impact {cause.id}"))
    return Reply(title=title, text=message, sections=[Section(fields=fields)], tone=tone, private=False,
                 footer="Their own status is unchanged; their owners set it.",
                 buttons=[Button(f"Status of {cause.name}", f"status {cause.id}"),
                          Button("Impact", f"impact {cause.id}")])


def path_text(ctx: Context, path) -> str:
    """"Web Shop → Payments Gateway": each needs the next."""
    services = dependency_graph(ctx.config).services
    return " → ".join(services[sid].name for sid in path)


def views(ctx: Context, found: list[AffectedBy]) -> list[dict[str, Any]]:
    """As the JSON API and the status page's data show them."""
    services = dependency_graph(ctx.config).services
    return [{"service": a.cause, "name": services[a.cause].name, "state": a.state, "impact": a.impact,
             "path": list(a.path)} for a in found]
