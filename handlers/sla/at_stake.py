"""The agreements a failure would put at stake: every agreement on the services it reaches, each target with
its attainment in a period so far, measured as ``sla`` measures it (met ÷ decided clocks that started in the
period; availability over agreed service time; CSAT of the answers) but read for those agreements only, with
one read for all their clocks and one for all their outages.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from handlers.core.config_catalogue import Agreement, Duration
from handlers.core.context import Context, reading
from handlers.sla import availability
from handlers.sla.attainment import Period, late_condition
from handlers.sla.dependents import among
from handlers.surveys import asking
from storage.models import Outage, SlaClock


@dataclass(frozen=True)
class TargetStanding:
    """One target of an agreement and how it stands in the period so far."""

    metric: str
    priority: str | None
    within: str | None  # "2 hours", "8 business hours", "3 business days"
    goal: float
    share: float | None  # % met, available or satisfied; None: nothing measured yet
    measured: int | None  # decided clocks, or answers; None for availability
    met: bool | None  # None: nothing measured yet

    @property
    def text(self) -> str:
        what = " ".join(x for x in (self.metric, self.priority, f"within {self.within}" if self.within else "") if x)
        if self.share is None:
            result = "nothing measured yet"
        elif self.metric == "availability":
            result = f"{self.share:.3f} % available"
        elif self.metric == "satisfaction":
            result = f"CSAT {self.share:.1f} % of {self.measured} answers"
        else:
            result = f"{self.share:.1f} % met of {self.measured}"
        mark = "·" if self.met is None else "✅" if self.met else "❌"
        return f"{mark} {what}, goal {self.goal:g} %: {result}"


@dataclass(frozen=True)
class AgreementAtStake:
    id: str
    kind: str  # sla | ola | uc
    party: str
    service: str
    targets: list[TargetStanding]

    @property
    def missed(self) -> bool:
        return any(t.met is False for t in self.targets)


def within_text(duration: Duration | None) -> str | None:
    if duration is None:
        return None
    if duration.whole_days:
        return f"{duration.whole_days} business day{'s' * (duration.whole_days != 1)}"
    business = "business " if duration.business else ""
    if duration.minutes % 60:
        return f"{duration.minutes:g} {business}min"
    hours = duration.minutes / 60
    return f"{hours:g} {business}hour{'s' * (hours != 1)}"


def agreements_on(ctx: Context, service_ids: Collection[str]) -> list[Agreement]:
    """The agreements on these services, in the order of ``service_ids`` and then of app.yaml."""
    order = {sid: i for i, sid in enumerate(service_ids)}
    return sorted((a for a in ctx.config.agreements if a.service in order), key=lambda a: order[a.service])


def at_stake(ctx: Context, agreements: list[Agreement], period: Period,
             session: Session | None = None) -> list[AgreementAtStake]:
    """These agreements, each target measured. Read through ``session`` if given, else on connections that
    only read."""
    if not agreements:
        return []
    now = ctx.now()
    clocks = _clock_counts(ctx, session, [a.id for a in agreements], period, now)
    measured_services = {a.service for a in agreements for t in a.targets if t.metric == "availability"}
    up = _availability(ctx, session, measured_services, period, now)
    out = []
    for a in agreements:
        targets = []
        for t in a.targets:
            share = measured = None
            if t.metric == "availability":
                share = up.get(a.service)
            elif t.metric == "satisfaction":
                with reading(ctx, session) as s:
                    csat = asking.service_satisfaction(ctx, s, a.service, period.start, period.end)
                if csat.answers:
                    share, measured = csat.csat, csat.answers
            else:
                # A target without a priority covers the priorities that have none of their own, as in `sla`.
                own = {x.priority for x in a.targets if x.metric == t.metric and x.priority}
                counted = [v for priority, v in clocks.get((a.id, t.metric), {}).items()
                           if (priority == t.priority if t.priority else priority not in own)]
                decided, late = sum(d for d, _ in counted), sum(n for _, n in counted)
                if decided:
                    share, measured = 100 * (decided - late) / decided, decided
            targets.append(TargetStanding(t.metric, t.priority, within_text(t.within), t.goal, share, measured,
                                          None if share is None else share >= t.goal))
        out.append(AgreementAtStake(a.id, a.kind, a.party, a.service, targets))
    return out


def _clock_counts(ctx: Context, session: Session | None, agreement_ids: list[str], period: Period,
                  now) -> dict[tuple[str, str], dict[str, tuple[int, int]]]:
    """(agreement, metric) → priority → (decided clocks, of which late), for clocks that started in the period."""
    late = late_condition(now)
    decided = SlaClock.state.in_(("met", "breached")) | late
    cols = (SlaClock.agreement_id, SlaClock.metric, SlaClock.priority)
    query = (select(*cols, func.count(), func.sum(case((late, 1), else_=0)))
             .where(decided, period.holds(SlaClock.started_at)).group_by(*cols))
    out: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    for agreement_id, metric, priority, count, late_count in among(ctx, session, query, SlaClock.agreement_id,
                                                                    agreement_ids):
        out.setdefault((agreement_id, metric), {})[priority] = (count, int(late_count or 0))
    return out


def _availability(ctx: Context, session: Session | None, service_ids: set[str], period: Period,
                  now) -> dict[str, float]:
    """Service → % available over the period so far (agreed service time less downtime)."""
    start, end = period.start, min(period.end or now, now)
    if start is None or end <= start:
        return {}
    downs: dict[str, list] = {sid: [] for sid in service_ids}
    kept: dict[str, list] = {sid: [] for sid in service_ids}
    query = select(Outage.service_id, Outage.kind, Outage.started_at, Outage.ended_at).where(
        Outage.kind.in_(("unplanned", "maintenance")), Outage.started_at < end,
        or_(Outage.ended_at.is_(None), Outage.ended_at > start))
    for service_id, kind, began, ended in among(ctx, session, query, Outage.service_id, service_ids):
        if (ended or now) > began:
            (downs if kind == "unplanned" else kept)[service_id].append((began, ended or now))
    out = {}
    for sid in service_ids:
        if not downs[sid] and not kept[sid]:
            out[sid] = 100.0  # nothing down, nothing set aside: the whole period was up
            continue
        result = availability.availability(start, end, downs[sid], kept[sid])
        if result.ratio is not None:
            out[sid] = 100 * result.ratio
    return out
