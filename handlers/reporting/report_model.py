"""The monthly report as plain data, and the words every presentation of it shares (percentages, durations,
target names), so that the chat, the charts and the files say the same.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from handlers.sla import breaches
from handlers.suppliers.cost import ServiceEconomics
from handlers.core.config_commercial import money_text
from handlers.suppliers.credits import CreditStatement, summary

ALL = "all"
NO_CAUSE = "no OLA or UC"


@dataclass(frozen=True)
class TargetRow:
    """One target of one agreement: what was agreed (goal) and what was achieved, both in %."""

    agreement: str
    kind: str | None  # sla | ola | uc; None for an agreement no longer in app.yaml
    party: str | None
    service: str
    metric: str  # response | resolution | availability | satisfaction
    priority: str | None  # ticket targets only
    goal: float | None
    achieved: float
    met: int | None  # clocks met (ticket targets) or satisfied answers (satisfaction)
    counted: int | None  # clocks decided, or answers
    downtime_seconds: float | None  # availability only

    @property
    def ok(self) -> bool:
        return self.goal is None or self.achieved >= self.goal


@dataclass(frozen=True)
class BreachRow:
    ticket_id: int
    service: str
    priority: str
    title: str
    agreement: str
    metric: str
    late_seconds: float
    cause: str  # the OLA or UC agreement id, or NO_CAUSE
    cause_detail: str  # the time the cause's clock used, for people to read


@dataclass(frozen=True)
class CauseCount:
    cause: str
    label: str  # the cause with its party: "UC-CARDLINK · CardLink Acquiring Ltd"
    breaches: int


@dataclass(frozen=True)
class ServiceAvailability:
    service: str
    name: str
    achieved: float | None  # %; None when there was no agreed service time
    agreed_seconds: float
    downtime_seconds: float
    goal: float | None

    @property
    def ok(self) -> bool:
        return self.goal is None or (self.achieved is not None and self.achieved >= self.goal)


@dataclass(frozen=True)
class PriorityTickets:
    priority: str
    opened: int
    resolved: int
    mttr_clock_seconds: float | None
    mttr_business_seconds: float | None
    # beside each mean, the median and the 90th percentile (nearest rank): see handlers/reporting/spread.py
    ttr_clock_median_seconds: float | None = None
    ttr_clock_p90_seconds: float | None = None
    ttr_business_median_seconds: float | None = None
    ttr_business_p90_seconds: float | None = None


@dataclass(frozen=True)
class TicketStats:
    opened: int
    resolved: int
    mttr_clock_seconds: float | None  # None when nothing was resolved
    mttr_business_seconds: float | None
    by_priority: list[PriorityTickets]
    ttr_clock_median_seconds: float | None = None
    ttr_clock_p90_seconds: float | None = None
    ttr_business_median_seconds: float | None = None
    ttr_business_p90_seconds: float | None = None


@dataclass(frozen=True)
class ChangeStats:
    implemented: int
    successful: int
    emergency: int
    success_rate: float | None  # %
    emergency_share: float | None  # %


@dataclass(frozen=True)
class AttainmentMonth:
    month: str
    label: str  # Oct 2026
    targets_met: int  # SLA targets that reached their goal
    targets: int  # SLA targets measured
    clocks_met: int  # SLA ticket clocks met
    clocks: int  # SLA ticket clocks decided

    @property
    def targets_share(self) -> float | None:
        return 100 * self.targets_met / self.targets if self.targets else None

    @property
    def clocks_share(self) -> float | None:
        return 100 * self.clocks_met / self.clocks if self.clocks else None


@dataclass(frozen=True)
class SatisfactionMonth:
    month: str
    label: str
    answers: int
    satisfied: int
    csat: float | None  # %; None without answers


@dataclass(frozen=True)
class CsiLine:
    item: str  # CSI-4
    title: str
    owner: str  # the owner's name
    due: date | None
    service: str | None
    overdue: bool


@dataclass(frozen=True)
class CsiStats:
    opened: int
    done: int
    open: int  # at the month's end
    overdue: int  # at the month's end
    items: list[CsiLine]  # open at the month's end, soonest due first


@dataclass(frozen=True)
class ArticleUse:
    article: str  # KB-12
    title: str
    incidents: int  # linked in the month


@dataclass(frozen=True)
class StaleLine:
    service: str  # the service's name; "No service" for articles that name none
    articles: int  # published, overdue for review at the month's end
    oldest_due: date


@dataclass(frozen=True)
class KnowledgeStats:
    linked: int  # links of an article to an incident made in the month
    resolved: int  # incidents resolved in the month
    resolved_with_article: int  # … with an article linked
    top: list[ArticleUse]  # the most reused articles of the month
    unused: int  # published articles no incident used for a year
    reviews_answered: int  # reviews answered in the month
    reviews_on_time: int  # … before their reminder was due
    stale: list[StaleLine]  # per service, most first
    catalogue_overdue: list[str]  # services whose catalogue entry awaits its owner's confirmation


@dataclass(frozen=True)
class ReviewStats:
    """Post-incident reviews: opened and done in the month, done by their due day, open and overdue at its end;
    their follow-up actions open at its end, by age ("under 30 days", "30–90 days", "over 90 days")."""

    opened: int
    done: int
    done_on_time: int
    open: int
    overdue: int
    actions_open_by_age: dict[str, int]


@dataclass(frozen=True)
class Commentary:
    text: str
    person_id: str
    person: str
    at: datetime


@dataclass(frozen=True)
class Report:
    scope: str | None  # a service id; None for all services
    scope_name: str
    month: str  # YYYY-MM
    month_name: str  # October 2026
    timezone: str
    start: datetime
    end: datetime
    generated_at: datetime
    complete: bool  # the month is over; otherwise the figures are so far
    targets: list[TargetRow]
    breaches: list[BreachRow]
    breach_causes: list[CauseCount]
    availability: list[ServiceAvailability]
    tickets: TicketStats
    changes: ChangeStats
    attainment_trend: list[AttainmentMonth]
    satisfaction_trend: list[SatisfactionMonth]
    satisfaction_goal: float | None  # the service's satisfaction target, when it has exactly one
    csi: CsiStats
    commentary: Commentary | None
    knowledge: KnowledgeStats
    # The service credits of the month's underpinning contracts with commercial terms, and each service's cost
    # beside what it delivered (handlers/suppliers).
    credits: list[CreditStatement] = field(default_factory=list)
    economics: list[ServiceEconomics] = field(default_factory=list)
    reviews: ReviewStats | None = None

    @property
    def scope_key(self) -> str:
        return self.scope or ALL

    def to_dict(self) -> dict:
        """JSON-ready: times as ISO 8601, the derived shares included."""
        def plain(value):
            if dataclasses.is_dataclass(value):
                out = {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
                for name in ("ok", "targets_share", "clocks_share", "capped", "attainment"):
                    if hasattr(type(value), name):
                        out[name] = getattr(value, name)
                return out
            if isinstance(value, list):
                return [plain(v) for v in value]
            if isinstance(value, (datetime, date)):
                return value.isoformat()
            if isinstance(value, Decimal):
                return str(value)  # money stays exact: decimal text, never a float
            return value
        return {**plain(self), "scope_key": self.scope_key}


def pct(value: float | None, places: int = 1) -> str:
    return "—" if value is None else f"{value:.{places}f} %"


def duration(seconds: float | None) -> str:
    return "—" if seconds is None else breaches.human(seconds)


def _ttr_text(mean: float | None, median: float | None, p90: float | None) -> str:
    """"mean 6 d 23 h · median 16 h · p90 12 d", or "—" when nothing was resolved."""
    if mean is None:
        return "—"
    return f"mean {duration(mean)} · median {duration(median)} · p90 {duration(p90)}"


def clock_ttr(t: TicketStats | PriorityTickets) -> str:
    return _ttr_text(t.mttr_clock_seconds, t.ttr_clock_median_seconds, t.ttr_clock_p90_seconds)


def business_ttr(t: TicketStats | PriorityTickets) -> str:
    return _ttr_text(t.mttr_business_seconds, t.ttr_business_median_seconds, t.ttr_business_p90_seconds)


def target_name(row: TargetRow) -> str:
    """What the target measures: "resolution P2", "availability of payments"."""
    if row.priority:
        return f"{row.metric} {row.priority}"
    return f"{row.metric} of {row.service}"


def target_detail(row: TargetRow) -> str:
    if row.metric == "availability":
        return f"down {breaches.human(row.downtime_seconds or 0)}"
    if row.metric == "satisfaction":
        return f"{row.met} of {row.counted} answers satisfied"
    return f"{row.met} of {row.counted} met"


def achieved_text(row: TargetRow) -> str:
    return pct(row.achieved, 3 if row.metric == "availability" else 1)


def goal_text(goal: float | None) -> str:
    return "—" if goal is None else f"{goal:g} %"


def satisfaction_text(m: SatisfactionMonth) -> str:
    if not m.answers:
        return "no answers"
    return f"{pct(m.csat)} ({m.satisfied} of {m.answers} satisfied)"


def attainment_text(m: AttainmentMonth) -> str:
    if not m.targets:
        return "nothing measured"
    clocks = f"; clocks {pct(m.clocks_share)} met ({m.clocks_met} of {m.clocks})" if m.clocks else ""
    return f"{m.targets_met} of {m.targets} SLA targets met ({pct(m.targets_share)}){clocks}"


def title_of(report: Report) -> str:
    return f"Service report: {report.scope_name}, {report.month_name}" + ("" if report.complete else " (so far)")


def money(amount: Decimal | None, currency: str) -> str:
    return "—" if amount is None else money_text(amount, currency)


def credit_line(report: Report, s: CreditStatement) -> str:
    """"credits due from CardLink Acquiring Ltd for October 2026 under UC-CARDLINK: EUR 1,000.00, 2 breaches of
    resolution P1 — claimed"."""
    decided = f" — {s.decision.status}" if s.decision else " — not yet claimed or waived"
    return (f"credits due from {s.supplier_name} for {report.month_name} under {s.agreement}: {summary(s)}"
            + decided)


def _mark(row: TargetRow | ServiceAvailability) -> str:
    return "✅" if row.ok else "❌"
