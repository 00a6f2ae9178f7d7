"""Computing a month's report: the scope and month people typed, then each figure from the store."""
from __future__ import annotations

from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.changes import calendar
from handlers.core import months
from handlers.core.business_time import BusinessCalendar
from handlers.core.config import AppConfig
from handlers.core.context import Context, UserError
from handlers.core.months import is_month_word, month_key, month_label, months_back
from handlers.reporting.report_model import (ALL, NO_CAUSE, AttainmentMonth, BreachRow, CauseCount, ChangeStats,
                                             Commentary, CsiLine, CsiStats, PriorityTickets, Report, SatisfactionMonth,
                                             ServiceAvailability, TargetRow, TicketStats)
from handlers.reporting.report_knowledge import knowledge
from handlers.reporting.report_reviews import review_stats
from handlers.reporting.spread import spread
from handlers.sla import attainment, breaches, outages
from handlers.suppliers import cost, credits
from handlers.surveys import asking
from storage.models import CsiItem, ReportComment, Ticket

EXAMPLE = "report payments last-month"
TREND_MONTHS = 6  # the month and the five before it
# Months are named and counted in handlers/core/months.py (the supplier scorecards count them too).
_months_back, _month_key, _month_label, _is_month_word = months_back, month_key, month_label, is_month_word


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
    """``YYYY-MM``, ``last-month`` or ``this-month`` (default: last month) as YYYY-MM, in the bot's zone."""
    return months.resolve_month(text, now, zone, example)


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
        rows = _target_rows(ctx, attainment.attainment_data(ctx, scope, _period(ctx, key), session=session))
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
        commentary=_commentary(ctx, session, scope, month), knowledge=knowledge(ctx, session, scope, period),
        credits=credits.month_statements(ctx, session, period, month, service=scope),
        economics=cost.economics(ctx, session, period, scope),
        reviews=review_stats(ctx, session, scope, period))


def _period(ctx: Context, month: str) -> attainment.Period:
    return attainment.parse_period(month, ctx.now(), ctx.config.bot.timezone)


def _target_rows(ctx: Context, rows: list) -> list[TargetRow]:
    service_of = {a.id: a.service for a in ctx.config.agreements}
    out = []
    for r in rows:
        if isinstance(r, attainment.TargetAttainment):
            out.append(TargetRow(r.agreement, r.agreement_kind, r.party, service_of.get(r.agreement, ""), r.metric,
                                 r.priority, r.goal, r.share, r.met, r.measured, None))
        elif isinstance(r, attainment.AvailabilityAttainment):
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


def _cause(breach: attainment.Breach) -> attainment.ClockUse | None:
    """The underpinning clock that breached, else the one that used the largest share of its target."""
    return max(breach.used_by, default=None,
               key=lambda c: (c.breached, c.elapsed_seconds / c.target_seconds if c.target_seconds else 0))


def _breaches(ctx: Context, session: Session, scope: str | None, period: attainment.Period) -> list[BreachRow]:
    out = []
    found = attainment.breaches_data(ctx, period, limit=None, session=session, service=scope)
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


def _availability(ctx: Context, session: Session, scope: str | None,
                  period: attainment.Period) -> list[ServiceAvailability]:
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


def _tickets(ctx: Context, session: Session, scope: str | None, period: attainment.Period) -> TicketStats:
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


def _changes(session: Session, scope: str | None, period: attainment.Period) -> ChangeStats:
    rate = calendar.success_rate(session, period.start, period.end, scope)
    share = 100 * rate.emergency / rate.implemented if rate.implemented else None
    return ChangeStats(rate.implemented, rate.successful, rate.emergency,
                       None if rate.ratio is None else 100 * rate.ratio, share)


def _satisfaction_month(ctx: Context, session: Session, scope: str | None, month: str) -> SatisfactionMonth:
    """CSAT of the month's answers: the service's, or all services' and those about IT as a whole."""
    period = _period(ctx, month)
    about = [scope] if scope else [s.id for s in ctx.config.services] + [None]
    results = asking.service_satisfaction(ctx, session, about, period.start, period.end)
    return SatisfactionMonth(month, _month_label(month), results.answers,
                             results.distribution[4] + results.distribution[5], results.csat)


def _satisfaction_goal(ctx: Context, scope: str | None) -> float | None:
    """The service's agreed CSAT; all services together have no one goal."""
    goals = {t.goal for a in ctx.config.agreements if a.kind == "sla" and scope and a.service == scope
             for t in a.targets if t.metric == "satisfaction"}
    return goals.pop() if len(goals) == 1 else None


def _csi(ctx: Context, session: Session, scope: str | None, period: attainment.Period) -> CsiStats:
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
