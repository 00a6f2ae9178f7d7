"""A supplier's scorecard for one month, as plain data: what chat, the API and the review pack all show."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.core.config_catalogue import Group
from handlers.core.context import Context, UserError
from handlers.core.months import month_key, month_label, months_back, resolve_month
from handlers.sla import attainment
from handlers.suppliers import credits, waiting
from handlers.surveys import satisfaction
from storage.models import SlaClock, Survey, SurveyAnswer, Ticket

EXAMPLE = "supplier cardlink last-month"
TREND_MONTHS = 6  # the month and the five before it
SHOWN_WAITING = 40


@dataclass(frozen=True)
class TargetLine:
    agreement: str
    service: str
    metric: str
    priority: str
    goal: float | None
    achieved: float  # % met
    met: int
    measured: int

    @property
    def ok(self) -> bool:
        return self.goal is None or self.achieved >= self.goal


@dataclass(frozen=True)
class BreachLine:
    ticket_id: int
    service: str
    priority: str
    title: str
    agreement: str
    metric: str
    used_seconds: float  # the time the UC clock used
    target_seconds: float
    running: bool  # still running, past due


@dataclass(frozen=True)
class WaitLine:
    ticket_id: int
    service: str
    priority: str
    title: str
    since: datetime
    waited_seconds: float  # by the end of the month (or now)


@dataclass(frozen=True)
class TrendMonth:
    month: str
    label: str
    targets_met: int
    targets: int
    clocks_met: int
    clocks: int
    breaches: int
    waited_seconds: float
    credits_due: Decimal | None  # None without commercial terms
    currency: str | None

    @property
    def clocks_share(self) -> float | None:
        return 100 * self.clocks_met / self.clocks if self.clocks else None


@dataclass(frozen=True)
class Scorecard:
    supplier: str
    name: str
    location: str | None
    calendar: str | None
    contracts: list[str]  # the UCs with this supplier
    month: str
    month_name: str
    timezone: str
    start: datetime
    end: datetime
    generated_at: datetime
    complete: bool  # the month is over; otherwise the figures are so far
    targets: list[TargetLine]
    breaches: list[BreachLine]
    waited_seconds: float  # tickets waited on the supplier in the month, clock time
    waited_tickets: int
    still_waiting: list[WaitLine]  # at the month's end (or now)
    trend: list[TrendMonth]
    answers: int  # after-ticket answers in the month about tickets that waited on the supplier
    satisfied: int
    csat: float | None
    credits: list[credits.CreditStatement]

    def to_dict(self) -> dict:
        """JSON-ready: times ISO 8601, money as decimal text (never a float)."""
        def plain(value):
            if dataclasses.is_dataclass(value):
                out = {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
                for name in ("ok", "clocks_share", "capped", "breached"):
                    if hasattr(type(value), name):
                        out[name] = getattr(value, name)
                return out
            if isinstance(value, list):
                return [plain(v) for v in value]
            if isinstance(value, (datetime, date)):
                return value.isoformat()
            if isinstance(value, Decimal):
                return str(value)
            return value
        return plain(self)


def find_supplier(ctx: Context, key: str, example: str = EXAMPLE) -> Group:
    key = key.lower()
    found = next((g for g in ctx.config.groups if g.kind == "supplier" and (g.id == key or g.name.lower() == key)),
                 None)
    if found is None:
        known = ", ".join(g.id for g in ctx.config.groups if g.kind == "supplier") or "none in app.yaml"
        raise UserError(f"There is no supplier '{key}'. Suppliers: {known}.", example)
    return found


def month_period(ctx: Context, month: str) -> attainment.Period:
    return attainment.parse_period(month, ctx.now(), ctx.config.bot.timezone)


def _targets(rows: list, contracts: dict[str, str]) -> list[TargetLine]:
    return [TargetLine(r.agreement, contracts[r.agreement], r.metric, r.priority, r.goal, r.share, r.met, r.measured)
            for r in rows if isinstance(r, attainment.TargetAttainment) and r.agreement in contracts]


def _breaches(ctx: Context, session: Session, contracts: list[str], period: attainment.Period) -> list[BreachLine]:
    """The contracts' clocks that breached (stopped late, or still running past due), started in the month."""
    rows = session.execute(select(SlaClock, Ticket).join(Ticket, Ticket.id == SlaClock.ticket_id).where(
        SlaClock.agreement_id.in_(contracts), attainment.late_condition(ctx.now()), period.holds(SlaClock.started_at))
        .order_by(SlaClock.started_at, SlaClock.ticket_id, SlaClock.metric)).all()
    return [BreachLine(t.id, t.service_id, c.priority, t.title, c.agreement_id, c.metric, c.elapsed_seconds,
                       c.target_seconds, c.state == "running") for c, t in rows]


def _satisfaction(session: Session, ticket_ids: set[int], period: attainment.Period) -> satisfaction.Results:
    """The after-ticket answers given in the month about tickets that waited on the supplier (named: an
    after-ticket survey names its requester, so no anonymous minimum applies)."""
    counts: dict[int, int] = {}
    ids = sorted(ticket_ids)
    for i in range(0, len(ids), 500):
        query = (select(SurveyAnswer.value, func.count()).join(Survey, Survey.id == SurveyAnswer.survey_id)
                 .where(Survey.kind == "ticket", Survey.scale == "csat", Survey.ticket_id.in_(ids[i:i + 500]),
                        period.holds(SurveyAnswer.answered_at)).group_by(SurveyAnswer.value))
        for value, n in session.execute(query).all():
            counts[value] = counts.get(value, 0) + n
    return satisfaction.tally("csat", counts)


def _trend_month(ctx: Context, session: Session, month: str, rows: list, contracts: dict[str, str],
                 all_waits: list[waiting.Wait], supplier: str) -> TrendMonth:
    period = month_period(ctx, month)
    targets = _targets(rows, contracts)
    end = min(period.end, ctx.now())
    statements = credits.month_statements(ctx, session, period, month, supplier, rows=rows)
    currencies = {s.currency for s in statements}
    due = sum((s.due for s in statements), Decimal(0)) if len(currencies) == 1 else None
    return TrendMonth(month, month_label(month), sum(t.ok for t in targets if t.goal is not None),
                      sum(t.goal is not None for t in targets), sum(t.met for t in targets),
                      sum(t.measured for t in targets), sum(t.measured - t.met for t in targets),
                      sum(waiting.seconds_within(w, period.start, end) for w in all_waits),
                      due, currencies.pop() if len(currencies) == 1 else None)


def scorecard(ctx: Context, session: Session, supplier_key: str, month_word: str | None) -> Scorecard:
    """The scorecard of one supplier for one month (default: last month)."""
    group = find_supplier(ctx, supplier_key)
    month = resolve_month(month_word, ctx.now(), ctx.config.bot.timezone, EXAMPLE)
    now = ctx.now()
    period = month_period(ctx, month)
    contracts = {a.id: a.service for a in ctx.config.agreements if a.kind == "uc" and a.party == group.id}
    year, number = map(int, month.split("-"))
    trend_keys = [month_key(*months_back(year, number, n)) for n in range(TREND_MONTHS - 1, -1, -1)]
    end = min(period.end, now)
    all_waits = waiting.waits(session, ctx.config, group.id, end)
    # Every service's attainment of each month, read once: the contracts' targets and their credits come from it.
    by_month = {key: attainment.attainment_data(ctx, None, month_period(ctx, key), session=session)
                for key in trend_keys}
    trend = [_trend_month(ctx, session, key, by_month[key], contracts, all_waits, group.id) for key in trend_keys]
    rows = by_month[month]
    in_month = [w for w in all_waits if waiting.seconds_within(w, period.start, end) > 0]
    still = [WaitLine(w.ticket_id, w.service, w.priority, w.title, w.start, (end - w.start).total_seconds())
             for w in waiting.waiting_at(all_waits, end)]
    touched = {w.ticket_id for w in all_waits}
    csat = _satisfaction(session, touched, period)
    return Scorecard(
        group.id, group.name, group.location, group.calendar, sorted(contracts), month, period.name,
        ctx.config.bot.timezone, period.start, period.end, now, period.end <= now, _targets(rows, contracts),
        _breaches(ctx, session, list(contracts), period),
        sum(waiting.seconds_within(w, period.start, end) for w in in_month), len({w.ticket_id for w in in_month}),
        still, trend, csat.answers, csat.distribution[4] + csat.distribution[5], csat.share((4, 5)),
        credits.month_statements(ctx, session, period, month, group.id, rows=rows))


def supplier_list(ctx: Context, session: Session, month_word: str | None = None) -> list[dict]:
    """Every supplier of app.yaml with its contracts, the services it serves, and the month's figures in
    brief: breaches, tickets waiting on it now, credits due."""
    month = resolve_month(month_word, ctx.now(), ctx.config.bot.timezone, "supplier list")
    period = month_period(ctx, month)
    now = ctx.now()
    out = []
    for g in (g for g in ctx.config.groups if g.kind == "supplier"):
        contracts = [a.id for a in ctx.config.agreements if a.kind == "uc" and a.party == g.id]
        statements = credits.month_statements(ctx, session, period, month, g.id)
        out.append({
            "supplier": g.id, "name": g.name, "location": g.location, "calendar": g.calendar,
            "contracts": contracts, "services": [s.id for s in ctx.config.services if g.id in s.suppliers],
            "month": month, "breaches": len(_breaches(ctx, session, contracts, period)) if contracts else 0,
            "waiting_now": len(waiting.waiting_at(waiting.waits(session, ctx.config, g.id, now), now)),
            "credits": [{"agreement": s.agreement, "due": str(s.due), "currency": s.currency,
                         "status": s.decision.status if s.decision else "open"} for s in statements]})
    return out
