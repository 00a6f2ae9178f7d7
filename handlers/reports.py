"""The monthly service report: per service, or for all services together.

``report_data`` computes the month once, as plain data — agreed against achieved for each target, the
breaches and the OLA or UC that caused each, availability, ticket volume and mean time to resolve, the
change success rate, the satisfaction trend, the improvement register and the manager's commentary — and
everything else only presents it: the chat reply here, the charts (``report_charts``), and the HTML and
PDF files (``bot/report_export``). So the chat, the files and the tests always show the same numbers.

Definitions, where a report needs one:

- A month runs from midnight to midnight in the bot's time zone (``bot.timezone``).
- Targets are ``sla.attainment_data`` for the month: ticket targets count the clocks that started in the
  month and are decided (met, or breached); availability and satisfaction are measured over the month.
- A breach's cause is the OLA or UC under the SLA whose clock breached on that ticket; when none breached,
  the one that used the largest share of its target; "no OLA or UC" when none ran.
- Time to resolve is over the tickets resolved in the month (their last resolution), from opening to
  resolution: in clock time, and in business time on the calendar of the ticket's service; the mean, with
  the median and the 90th percentile (nearest rank) beside it (``spread``).
- The change success rate is ``change_calendar.success_rate``, as the change calendar and the API count it:
  successful ÷ implemented changes whose work ended in the month, where implemented means completed (with
  or without issues) or failed, and only a change completed without issues is a success. The share of
  emergency changes is over the same implemented changes.
- The CSI figures are as the month ended: items opened and done in it, and those still open at its end
  (overdue when their due date had passed by then). For the month still running, "the end" is now.
- The commentary is the newest ``report comment`` for the service (or "all") and the month.
- The trends (attainment, satisfaction) cover the month and the five before it. The attainment trend is
  the customer's view: the share of SLA targets (ticket targets, availability, satisfaction) that reached
  their goal, and the share of SLA ticket clocks met. A month without outages counts as fully available, so
  months before svcbot was measuring anything show availability met and nothing else.

In chat, ``report [SERVICE|all] [MONTH]`` answers privately with the numbers (not the charts: drawing them
is for the post), and with a Post button for those who may post: service managers, and a service's owner
for their own service. ``report post`` queues the report with its three charts to the service's channel, or
for all services to ``changes.channel`` (else the first channel of app.yaml); ``report comment`` records
the commentary. ``queue_report`` is the same post from inside a transaction someone else holds.
"""
from __future__ import annotations

import dataclasses
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers import breaches, change_calendar, outages, schedule, sla, surveys
from handlers.business_time import BusinessCalendar
from handlers.config import AppConfig, ReportSchedule
from handlers.core import Button, Command, Context, Field, Refused, Reply, Section, UserError, Work
from handlers.spread import spread
from storage.models import CsiItem, ReportComment, Ticket

EXAMPLE = "report payments last-month"
POST_EXAMPLE = "report post payments last-month"
COMMENT_EXAMPLE = "report comment payments last-month Both P1 breaches waited on CardLink; CSI-4 follows up"
MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
MONTH_WORDS = ("last-month", "this-month")
FIRST_YEAR = 1970
TREND_MONTHS = 6  # the month and the five before it
NO_CAUSE = "no OLA or UC"
ALL = "all"
COMMENT_LIMIT = 2000  # characters; a Slack section holds 3000
SHOWN_IN_CHAT = 10  # breaches and CSI items listed in a chat answer; the files list them all


# ---- the data ---------------------------------------------------------------------------------------------

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
    # beside each mean, the median and the 90th percentile (nearest rank): see handlers/spread.py
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
class Commentary:
    text: str
    person_id: str
    person: str
    at: datetime


@dataclass(frozen=True)
class Report:
    scope: str | None  # a service id; None for all services
    scope_name: str
    month: str  # 2026-10
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

    @property
    def scope_key(self) -> str:
        return self.scope or ALL

    def to_dict(self) -> dict:
        """JSON-ready: times as ISO 8601, the derived shares included."""
        def plain(value):
            if dataclasses.is_dataclass(value):
                out = {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
                for name in ("ok", "targets_share", "clocks_share"):
                    if hasattr(type(value), name):
                        out[name] = getattr(value, name)
                return out
            if isinstance(value, list):
                return [plain(v) for v in value]
            if isinstance(value, (datetime, date)):
                return value.isoformat()
            return value
        return {**plain(self), "scope_key": self.scope_key}


# ---- what people type: scope and month -------------------------------------------------------------------

def resolve_scope(config: AppConfig, word: str | None, example: str = EXAMPLE) -> str | None:
    """A service id, or None for all services (``all`` or nothing)."""
    if word is None or word.lower() == ALL:
        return None
    service = config.service(word)
    if service is None:
        known = ", ".join(s.id for s in config.services)
        raise UserError(f"There is no service '{word}'. Services: {known}; or all.", example)
    return service.id


def resolve_month(text: str | None, now: datetime, zone: str, example: str = EXAMPLE) -> str:
    """``2026-10``, ``last-month`` or ``this-month`` (default: last month) as YYYY-MM, in the bot's zone.
    A month that has not begun is refused: there is nothing to report yet."""
    today = now.astimezone(ZoneInfo(zone)).date()
    word = (text or "last-month").lower()
    if word == "this-month":
        year, month = today.year, today.month
    elif word == "last-month":
        year, month = _months_back(today.year, today.month, 1)
    else:
        m = MONTH.match(word)
        if not m or not 1 <= int(m[2]) <= 12 or int(m[1]) < FIRST_YEAR:
            raise UserError(f"'{text}' is not a month; give one like 2026-10, or last-month or this-month.",
                            example)
        year, month = int(m[1]), int(m[2])
        if (year, month) > (today.year, today.month):
            raise UserError(f"{date(year, month, 1):%B %Y} has not begun yet; a report covers a past month, or "
                            "this month so far.", example)
    return f"{year:04d}-{month:02d}"


def _months_back(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + month - 1 - n
    return index // 12, index % 12 + 1


def _is_month_word(word: str) -> bool:
    return word.lower() in MONTH_WORDS or bool(re.match(r"^\d{4}-\d+$", word))


def may_report(ctx: Context, person_id: str, scope: str | None) -> bool:
    """Service managers post and comment on any report; a service's owner on their own service's."""
    if person_id in ctx.config.roles.service_managers:
        return True
    service = ctx.config.service(scope) if scope else None
    return service is not None and service.owner == person_id


def report_channel(ctx: Context, scope: str | None) -> str | None:
    """Where a report is posted: the service's channel; for all services, the changes channel (where the
    whole IT organisation already reads), else the first channel of app.yaml."""
    if scope:
        return ctx.config.service(scope).channel
    return ctx.config.changes.channel or next(iter(ctx.config.channels), None)


# ---- computing the month ---------------------------------------------------------------------------------

def report_data(ctx: Context, scope: str | None, month: str) -> Report:
    """The report of one month, for a service (its id) or for all services (None)."""
    with ctx.sessions() as session:
        return compute(ctx, session, scope, month)


def compute(ctx: Context, session: Session, scope: str | None, month: str) -> Report:
    """The same as ``report_data``, reading through a session the caller holds (a Work's, say)."""
    scope = resolve_scope(ctx.config, scope)
    month = resolve_month(month, ctx.now(), ctx.config.bot.timezone)
    now = ctx.now()
    period = _period(ctx, month)
    year, number = map(int, month.split("-"))
    trend_months = [_month_key(*_months_back(year, number, n)) for n in range(TREND_MONTHS - 1, -1, -1)]
    attainment_trend, targets = [], []
    for key in trend_months:
        rows = _target_rows(ctx, sla.attainment_data(ctx, scope, _period(ctx, key), session=session))
        attainment_trend.append(_attainment_month(key, rows))
        targets = rows  # the last is the month itself
    breach_rows = _breaches(ctx, session, scope, period)
    return Report(
        scope=scope, scope_name=ctx.config.service(scope).name if scope else "All services", month=month,
        month_name=period.name, timezone=ctx.config.bot.timezone, start=period.start, end=period.end, generated_at=now,
        complete=period.end <= now, targets=targets, breaches=breach_rows,
        breach_causes=_cause_counts(ctx, breach_rows), availability=_availability(ctx, session, scope, period),
        tickets=_tickets(ctx, session, scope, period), changes=_changes(session, scope, period),
        attainment_trend=attainment_trend,
        satisfaction_trend=[_satisfaction_month(ctx, session, scope, key) for key in trend_months],
        satisfaction_goal=_satisfaction_goal(ctx, scope), csi=_csi(ctx, session, scope, period),
        commentary=_commentary(ctx, session, scope, month))


def _month_key(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def _period(ctx: Context, month: str) -> sla.Period:
    return sla.parse_period(month, ctx.now(), ctx.config.bot.timezone)


def _month_label(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{date(year, number, 1):%b %Y}"


def _target_rows(ctx: Context, rows: list) -> list[TargetRow]:
    service_of = {a.id: a.service for a in ctx.config.agreements}
    out = []
    for r in rows:
        if isinstance(r, sla.TargetAttainment):
            out.append(TargetRow(r.agreement, r.agreement_kind, r.party, service_of.get(r.agreement, ""), r.metric,
                                 r.priority, r.goal, r.share, r.met, r.measured, None))
        elif isinstance(r, sla.AvailabilityAttainment):
            out.append(TargetRow(r.agreement, r.agreement_kind, r.party, r.service, "availability", None, r.goal,
                                 r.share, None, None, r.downtime_seconds))
        else:
            out.append(TargetRow(r.agreement, r.agreement_kind, r.party, r.service, "satisfaction", None, r.goal,
                                 r.share, r.satisfied, r.answers, None))
    return out


def _attainment_month(month: str, rows: list[TargetRow]) -> AttainmentMonth:
    """The customer's view: SLA targets only (OLAs and UCs are the provider's own business)."""
    targets = [r for r in rows if r.kind == "sla" and r.goal is not None]
    clocks = [r for r in rows if r.kind == "sla" and r.metric in ("response", "resolution")]
    return AttainmentMonth(month, _month_label(month),
                           sum(r.ok for r in targets), len(targets),
                           sum(r.met for r in clocks), sum(r.counted for r in clocks))


def _cause(breach: sla.Breach) -> sla.ClockUse | None:
    """The underpinning clock that breached, else the one that used the largest share of its target."""
    return max(breach.used_by, default=None,
               key=lambda c: (c.breached, c.elapsed_seconds / c.target_seconds if c.target_seconds else 0))


def _breaches(ctx: Context, session: Session, scope: str | None, period: sla.Period) -> list[BreachRow]:
    out = []
    found = sla.breaches_data(ctx, period, limit=None, session=session, service=scope)
    for b in sorted(found, key=lambda b: (b.started_at, b.ticket_id, b.agreement, b.metric)):  # oldest first
        c = _cause(b)
        detail = breaches.use_text(c.kind, c.agreement, c.metric, c.elapsed_seconds, c.target_seconds,
                                   c.breached) if c else ""
        out.append(BreachRow(b.ticket_id, b.service, b.priority, b.title, b.agreement, b.metric, b.late_seconds,
                             c.agreement if c else NO_CAUSE, detail))
    return out


def _cause_counts(ctx: Context, rows: list[BreachRow]) -> list[CauseCount]:
    counts = Counter(r.cause for r in rows)
    parties = {a.id: a.party for a in ctx.config.agreements}

    def label(cause: str) -> str:
        party = parties.get(cause)
        group = ctx.config.group(party) if party else None
        return f"{cause} · {group.name if group else party}" if party else cause
    return [CauseCount(cause, label(cause), n) for cause, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _availability(ctx: Context, session: Session, scope: str | None, period: sla.Period) -> list[ServiceAvailability]:
    goals: dict[str, float] = {}
    for _, service_id, goal in outages.availability_targets(ctx):
        goals.setdefault(service_id, goal)
    out = []
    for service in ctx.config.services:
        if scope and service.id != scope:
            continue
        a = outages.service_availability(session, service.id, period.start, period.end, ctx.now())
        out.append(ServiceAvailability(service.id, service.name, None if a.ratio is None else 100 * a.ratio,
                                       a.agreed_seconds, a.downtime_seconds, goals.get(service.id)))
    return out


def _tickets(ctx: Context, session: Session, scope: str | None, period: sla.Period) -> TicketStats:
    in_scope = [Ticket.service_id == scope] if scope else []
    opened = Counter(dict(session.execute(select(Ticket.priority, func.count()).where(
        period.holds(Ticket.opened_at), *in_scope).group_by(Ticket.priority)).all()))
    resolved = session.execute(select(Ticket.service_id, Ticket.priority, Ticket.opened_at, Ticket.resolved_at)
                               .where(period.holds(Ticket.resolved_at), *in_scope)).all()
    calendars: dict[str, BusinessCalendar] = {}

    def business_seconds(service_id: str, start: datetime, end: datetime) -> float | None:
        service = ctx.config.service(service_id)
        if service is None:  # an imported service app.yaml does not know: no calendar to count on
            return None
        if service.calendar not in calendars:
            calendars[service.calendar] = BusinessCalendar(ctx.config.calendars[service.calendar])
        return calendars[service.calendar].business_seconds(start, end)

    durations = [(priority, (end - start).total_seconds(), business_seconds(service_id, start, end))
                 for service_id, priority, start, end in resolved]

    def stats(rows) -> dict:
        clock = spread([clock for _, clock, _ in rows])
        business = spread([business for _, _, business in rows if business is not None])
        return dict(mttr_clock_seconds=clock.mean, mttr_business_seconds=business.mean,
                    ttr_clock_median_seconds=clock.median, ttr_clock_p90_seconds=clock.p90,
                    ttr_business_median_seconds=business.median, ttr_business_p90_seconds=business.p90)

    by_priority = []
    for priority in sorted(set(opened) | {p for p, _, _ in durations}):
        mine = [d for d in durations if d[0] == priority]
        by_priority.append(PriorityTickets(priority, opened[priority], len(mine), **stats(mine)))
    return TicketStats(sum(opened.values()), len(durations), by_priority=by_priority, **stats(durations))


def _changes(session: Session, scope: str | None, period: sla.Period) -> ChangeStats:
    rate = change_calendar.success_rate(session, period.start, period.end, scope)
    share = 100 * rate.emergency / rate.implemented if rate.implemented else None
    return ChangeStats(rate.implemented, rate.successful, rate.emergency,
                       None if rate.ratio is None else 100 * rate.ratio, share)


def _satisfaction_month(ctx: Context, session: Session, scope: str | None, month: str) -> SatisfactionMonth:
    """CSAT of the month's answers: the service's, or all services' and those about IT as a whole."""
    period = _period(ctx, month)
    about = [scope] if scope else [s.id for s in ctx.config.services] + [None]
    results = surveys.service_satisfaction(ctx, session, about, period.start, period.end)
    return SatisfactionMonth(month, _month_label(month), results.answers,
                             results.distribution[4] + results.distribution[5], results.csat)


def _satisfaction_goal(ctx: Context, scope: str | None) -> float | None:
    """The service's agreed CSAT; all services together have no one goal."""
    goals = {t.goal for a in ctx.config.agreements if a.kind == "sla" and scope and a.service == scope
             for t in a.targets if t.metric == "satisfaction"}
    return goals.pop() if len(goals) == 1 else None


def _csi(ctx: Context, session: Session, scope: str | None, period: sla.Period) -> CsiStats:
    as_of = min(period.end, ctx.now())
    today = as_of.astimezone(ZoneInfo(ctx.config.bot.timezone)).date()  # due dates are the bot zone's days
    in_scope = [CsiItem.service_id == scope] if scope else []
    opened = session.scalar(select(func.count(CsiItem.id)).where(period.holds(CsiItem.created_at), *in_scope))
    done = session.scalar(select(func.count(CsiItem.id)).where(period.holds(CsiItem.done_at), *in_scope))
    still_open = session.scalars(
        select(CsiItem).where(CsiItem.created_at < as_of, CsiItem.done_at.is_(None) | (CsiItem.done_at >= as_of),
                              *in_scope)
        .order_by(CsiItem.due.is_(None), CsiItem.due, CsiItem.id)).all()
    items = [CsiLine(f"CSI-{i.id}", i.title, ctx.config.person_name(i.owner), i.due, i.service_id,
                     i.due is not None and i.due < today) for i in still_open]
    return CsiStats(opened, done, len(items), sum(i.overdue for i in items), items)


def _commentary(ctx: Context, session: Session, scope: str | None, month: str) -> Commentary | None:
    row = session.scalar(select(ReportComment).where(ReportComment.scope == (scope or ALL),
                                                     ReportComment.month == month)
                         .order_by(ReportComment.at.desc(), ReportComment.id.desc()).limit(1))
    if row is None:
        return None
    return Commentary(row.text, row.person_id, ctx.config.person_name(row.person_id), row.at)


# ---- words ------------------------------------------------------------------------------------------------

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


def _mark(row: TargetRow | ServiceAvailability) -> str:
    return "✅" if row.ok else "❌"


def report_reply(report: Report) -> Reply:
    """The report as a chat message: every number, in sections, without the charts."""
    sections = []
    targets = [f"{_mark(t)} {t.agreement} {target_name(t)}: {achieved_text(t)} "
               f"({target_detail(t)}), agreed {goal_text(t.goal)}" for t in report.targets]
    sections.append(Section(title="Agreed against achieved",
                            text="\n".join(targets) or "No target was measured this month."))
    lines = [f"INC-{b.ticket_id} {b.priority} · {b.agreement} {b.metric} · late by {duration(b.late_seconds)} "
             f"· cause: {b.cause}" for b in report.breaches]
    if len(lines) > SHOWN_IN_CHAT:
        lines = lines[:SHOWN_IN_CHAT] + [f"… and {len(lines) - SHOWN_IN_CHAT} more in the exported report"]
    sections.append(Section(
        title=f"SLA breaches: {len(report.breaches)}", text="\n".join(lines) or "None this month.",
        fields=[Field(c.label, str(c.breaches)) for c in report.breach_causes]))
    sections.append(Section(title="Availability", text="\n".join(
        f"{_mark(a) if a.goal is not None else '•'} {a.name}: {pct(a.achieved, 3)} "
        f"(down {duration(a.downtime_seconds)})"
        + (f", agreed {goal_text(a.goal)}" if a.goal is not None else "") for a in report.availability)))
    t = report.tickets
    sections.append(Section(title="Tickets", fields=[
        Field("Opened", str(t.opened)), Field("Resolved", str(t.resolved)),
        Field("Time to resolve", clock_ttr(t)), Field("… in business hours", business_ttr(t))],
        text="\n".join(f"{p.priority}: {p.opened} opened, {p.resolved} resolved, {clock_ttr(p)}"
                       f" ({business_ttr(p)} business)" for p in t.by_priority)))
    c = report.changes
    sections.append(Section(title="Changes", fields=[
        Field("Implemented", str(c.implemented)),
        Field("Success rate", f"{pct(c.success_rate)} ({c.successful} of {c.implemented})"),
        Field("Emergency", f"{pct(c.emergency_share)} ({c.emergency} of {c.implemented})")]))
    sections.append(Section(title="Satisfaction (CSAT)", text="\n".join(
        f"{m.label}: {satisfaction_text(m)}" for m in report.satisfaction_trend)))
    s = report.csi
    items = [f"*{i.item}* {i.title} — {i.owner}" + (f", due {i.due.isoformat()}" if i.due else "")
             + (" ⚠️ overdue" if i.overdue else "") for i in s.items[:SHOWN_IN_CHAT]]
    sections.append(Section(title="Continual service improvement", text="\n".join(items), fields=[
        Field("Opened", str(s.opened)), Field("Done", str(s.done)), Field("Open at month end", str(s.open)),
        Field("Overdue", str(s.overdue))]))
    if report.commentary:
        sections.append(Section(title=f"Commentary — {report.commentary.person}",
                                text=report.commentary.text))
    return Reply(title=title_of(report), sections=sections,
                 footer=f"Months run in {report.timezone} time. `report comment` adds the manager's commentary; "
                        "`svcbot report` exports it as HTML and PDF.")


# ---- chat -------------------------------------------------------------------------------------------------

def report_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    verb = args[0].lower() if args else ""
    if verb == "post":
        return _post(ctx, cmd, args[1:])
    if verb == "comment":
        return _comment(ctx, cmd, args[1:])
    scope, month = _scope_and_month(ctx, args, EXAMPLE)
    report = report_data(ctx, scope, month)
    reply = report_reply(report)
    channel = report_channel(ctx, scope)
    if channel and may_report(ctx, cmd.actor.person_id, scope):
        reply.buttons = [Button(f"Post to #{channel}", f"report post {report.scope_key} {month}", "primary")]
    return reply


def _scope_and_month(ctx: Context, words: list[str], example: str) -> tuple[str | None, str]:
    """``[SERVICE|all] [MONTH]``, in either order."""
    if len(words) > 2:
        raise UserError("Give at most a service (or all) and a month.", example)
    months = [w for w in words if _is_month_word(w)]
    scopes = [w for w in words if not _is_month_word(w)]
    if len(months) > 1 or len(scopes) > 1:
        raise UserError("Give one service (or all) and one month.", example)
    now, zone = ctx.now(), ctx.config.bot.timezone
    return (resolve_scope(ctx.config, scopes[0] if scopes else None, example),
            resolve_month(months[0] if months else None, now, zone, example))


def _check_may(ctx: Context, cmd: Command, scope: str | None, what: str) -> None:
    if may_report(ctx, cmd.actor.person_id, scope):
        return
    if scope:
        service = ctx.config.service(scope)
        raise Refused(f"Only {ctx.config.person_name(service.owner)} (its owner) or a service manager can {what} "
                      f"{service.name}'s report.")
    raise Refused(f"Only a service manager can {what} the report of all services.")


def _post(ctx: Context, cmd: Command, words: list[str]) -> Reply:
    scope, month = _scope_and_month(ctx, words, POST_EXAMPLE)
    _check_may(ctx, cmd, scope, "post")
    channel = report_channel(ctx, scope)
    if not channel or channel not in ctx.config.channels:
        raise UserError(f"{ctx.config.service(scope).name if scope else 'svcbot'} has no channel in app.yaml to "
                        "post the report to.", EXAMPLE)
    with ctx.change(cmd) as work:
        key = f"report:{scope or ALL}:{month}:{cmd.delivery_key or uuid.uuid4().hex}"
        report, platforms = queue_report(work, scope, month, channel, key)
    return Reply(title=f"Posted to #{channel}", tone="ok",
                 text=f"{title_of(report)} goes to #{channel} on {' and '.join(platforms) or 'no platform'}, "
                      "with its charts.")


def queue_report(work: Work, scope: str | None, month: str, channel: str, key: str) -> tuple[Report, list[str]]:
    """Compute the report and queue it, with its charts, to a logical channel — from inside a transaction
    the caller holds (a chat command's, or the scheduler's). Returns the report and the platforms."""
    from handlers import report_charts  # matplotlib is loaded only when a report is drawn
    report = compute(work.ctx, work.session, scope, month)
    message = dataclasses.replace(report_reply(report), private=False,
                                  images=report_charts.charts(report))
    platforms = work.post_to_channel(channel, message, key, f"report:{report.scope_key}:{report.month}")
    work.audit("report.post", f"report:{report.scope_key}:{report.month}", channel=channel, platforms=platforms,
               key=key)
    return report, platforms


def sweep(ctx: Context) -> int:
    """Post the scheduled reports of app.yaml (``reports[]``) whose slot has come: for each service listed,
    the report of the month before the slot, with its charts."""
    return sum(schedule.run_due(ctx, f"report:{plan.name}", plan, _scheduled(plan)) for plan in ctx.config.reports)


def _scheduled(plan: ReportSchedule) -> schedule.Post:
    def post(work: Work, slot: datetime, late_for: datetime | None) -> None:
        month = resolve_month("last-month", slot, work.ctx.config.bot.timezone)
        for scope in plan.services:
            queue_report(work, None if scope == ALL else scope, month, plan.channel,
                         f"report:{plan.name}:{slot.isoformat()}:{scope}")
    return post


# The words after "report comment SCOPE MONTH", as typed: line breaks and spacing are the author's.
COMMENT_TEXT = re.compile(r'\breport\s+comment\s+(?:"[^"]*"|“[^”]*”|\S+)\s+\S+[ \t]*\n?(.*)\Z',
                          re.IGNORECASE | re.DOTALL)


def _comment_text(typed: str) -> str:
    m = COMMENT_TEXT.search(typed)
    return m[1].strip() if m else ""


def _comment(ctx: Context, cmd: Command, words: list[str]) -> Reply:
    if len(words) < 2:
        raise UserError("Say the service (or all), the month and your comment.", COMMENT_EXAMPLE)
    scope = resolve_scope(ctx.config, words[0], COMMENT_EXAMPLE)
    month = resolve_month(words[1], ctx.now(), ctx.config.bot.timezone, COMMENT_EXAMPLE)
    text = _comment_text(cmd.text) or " ".join(words[2:]).strip()
    if not text:
        raise UserError("Write the comment after the month.", COMMENT_EXAMPLE)
    if len(text) > COMMENT_LIMIT:
        raise UserError(f"Keep the comment under {COMMENT_LIMIT} characters (it has {len(text)}).", COMMENT_EXAMPLE)
    _check_may(ctx, cmd, scope, "comment on")
    with ctx.change(cmd) as work:
        replaced = work.session.scalar(select(func.count(ReportComment.id)).where(
            ReportComment.scope == (scope or ALL), ReportComment.month == month))
        work.session.add(ReportComment(scope=scope or ALL, month=month, text=text, person_id=cmd.actor.person_id,
                                       at=work.now))
        work.audit("report.comment", f"report:{scope or ALL}:{month}", text=text, replaces=bool(replaced))
    name = ctx.config.service(scope).name if scope else "all services"
    period = _period(ctx, month)
    return Reply(title=f"Commentary saved for {name}, {period.name}", text=text, tone="ok",
                 footer="It replaces the one shown before." if replaced else
                 f"Shown in `report {scope or ALL} {month}` and the exported report.")
