"""Service credits: what an underpinning contract's commercial terms say the supplier owes for a month, from
the UC clocks svcbot measured (``attainment.attainment_data``: the clocks of the contract that started in the
month and are decided, met or breached), and the service manager's decision to claim or waive them.

The arithmetic, in ``Decimal`` throughout:
- attainment of a target = met ÷ decided clocks × 100, exact (no rounding); a rule without a priority takes
  the clocks of every priority of its metric together;
- ``percent_per_point``: charge × percent ÷ 100 × (goal − attainment), when attainment is below goal;
- ``per_breach``: amount × the target's breached clocks;
- each rule's amount is rounded half up to the currency's minor unit; the credits due are the sum of the
  rounded amounts, at most the cap (an amount, or a percent of the charge rounded the same way).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.core.config_catalogue import Agreement
from handlers.core.config_commercial import CreditRule, money_text, round_money
from handlers.core.context import Context
from handlers.sla import attainment
from storage.models import CreditDecision

ROUNDING = "each rule's amount is rounded half up to the currency's minor unit; the total is their sum, capped"


@dataclass(frozen=True)
class TargetCount:
    """One target's decided clocks in the month, as whole numbers (attainment is worked out from them)."""

    metric: str
    priority: str | None  # None: every priority together
    goal: Decimal
    measured: int
    met: int

    @property
    def breached(self) -> int:
        return self.measured - self.met

    @property
    def achieved(self) -> Decimal | None:
        return Decimal(self.met * 100) / Decimal(self.measured) if self.measured else None


@dataclass(frozen=True)
class CreditLine:
    target: str  # "resolution P1"
    rule: str  # "EUR 500.00 per breach", "2 % of the charge per point below 95 %"
    working: str  # how the amount came about, for people to check
    amount: Decimal  # rounded to the minor unit


@dataclass(frozen=True)
class Decision:
    status: str  # claimed | waived
    amount: Decimal
    currency: str
    note: str
    by: str
    by_name: str
    at: datetime


@dataclass(frozen=True)
class CreditStatement:
    agreement: str
    supplier: str
    supplier_name: str
    service: str
    month: str
    currency: str
    charge: Decimal
    lines: list[CreditLine]
    before_cap: Decimal
    cap: Decimal | None
    due: Decimal
    decision: Decision | None

    @property
    def capped(self) -> bool:
        return self.cap is not None and self.before_cap > self.cap

    def text(self, amount: Decimal | None = None) -> str:
        return money_text(self.due if amount is None else amount, self.currency)


def _goal(agreement: Agreement, metric: str, priority: str | None) -> Decimal:
    target = next(t for t in agreement.targets if t.metric == metric and t.priority == priority)
    return Decimal(repr(target.goal))


def target_counts(agreement: Agreement, rows: list) -> dict[tuple[str, str | None], TargetCount]:
    """The contract's decided clocks per target (metric and priority, as its credit rules name them), from
    ``attainment_data`` rows of the month."""
    out: dict[tuple[str, str | None], TargetCount] = {}
    for rule in agreement.commercial.rules if agreement.commercial else []:
        key = (rule.metric, rule.priority)
        if key in out:
            continue
        mine = [r for r in rows if isinstance(r, attainment.TargetAttainment) and r.agreement == agreement.id
                and r.metric == rule.metric and (rule.priority is None or r.priority == rule.priority)]
        out[key] = TargetCount(rule.metric, rule.priority, _goal(agreement, rule.metric, rule.priority),
                               sum(r.measured for r in mine), sum(r.met for r in mine))
    return out


def _line(rule: CreditRule, count: TargetCount, charge: Decimal, currency: str) -> CreditLine:
    if rule.per_breach is not None:
        amount = round_money(rule.per_breach * count.breached, currency)
        return CreditLine(rule.target_name, f"{money_text(rule.per_breach, currency)} per breach",
                          f"{count.breached} breach{'es' * (count.breached != 1)} (of {count.measured} decided) × "
                          f"{money_text(rule.per_breach, currency)}", amount)
    rule_text = f"{rule.percent_per_point:g} % of the charge per point below {count.goal:g} %"
    achieved = count.achieved
    if achieved is None:
        return CreditLine(rule.target_name, rule_text, "nothing measured", round_money(Decimal(0), currency))
    shortfall = max(Decimal(0), count.goal - achieved)
    amount = round_money(charge * rule.percent_per_point / 100 * shortfall, currency)
    return CreditLine(rule.target_name, rule_text,
                      f"{count.met} of {count.measured} met = {achieved:.2f} %; "
                      + (f"{shortfall:.4f} points below goal × {rule.percent_per_point:g} % × "
                         f"{money_text(charge, currency)}" if shortfall else "at or above goal"), amount)


def statement(ctx: Context, agreement: Agreement, month: str, rows: list,
              decision: Decision | None = None) -> CreditStatement:
    """The credits of one contract with commercial terms for one month, from that month's attainment rows."""
    terms = agreement.commercial
    counts = target_counts(agreement, rows)
    lines = [_line(rule, counts[(rule.metric, rule.priority)], terms.charge, terms.currency) for rule in terms.rules]
    before_cap = sum((line.amount for line in lines), Decimal(0))
    cap = None
    if terms.cap is not None:
        cap = terms.cap.amount if terms.cap.amount is not None else \
            round_money(terms.charge * terms.cap.percent / 100, terms.currency)
    due = before_cap if cap is None else min(before_cap, cap)
    group = ctx.config.group(agreement.party)
    return CreditStatement(agreement.id, agreement.party, group.name if group else agreement.party, agreement.service,
                           month, terms.currency, terms.charge,
                           lines, before_cap, cap, round_money(due, terms.currency), decision)


def contracts_with_terms(ctx: Context, supplier: str | None = None) -> list[Agreement]:
    return [a for a in ctx.config.agreements if a.kind == "uc" and a.commercial is not None
            and (supplier is None or a.party == supplier)]


def decisions(ctx: Context, session: Session, month: str, agreements: list[str]) -> dict[str, Decision]:
    rows = session.scalars(select(CreditDecision).where(CreditDecision.month == month,
                                                        CreditDecision.agreement_id.in_(agreements))).all()
    return {r.agreement_id: Decision(r.status, Decimal(r.amount), r.currency, r.note, r.decided_by,
                                     ctx.config.person_name(r.decided_by), r.decided_at) for r in rows}


def month_statements(ctx: Context, session: Session, period: attainment.Period, month: str,
                     supplier: str | None = None, service: str | None = None,
                     rows: list | None = None) -> list[CreditStatement]:
    """The credits of every contract with commercial terms (of one supplier, or under one service's
    agreements, if given) for the month, each with its decision if one was made. ``rows``: the month's
    ``attainment_data`` (of every service, or of that one), when the caller has them already."""
    contracts = [a for a in contracts_with_terms(ctx, supplier) if service is None or a.service == service]
    if not contracts:
        return []
    if rows is None:
        rows = attainment.attainment_data(ctx, service, period, session=session)
    decided = decisions(ctx, session, month, [a.id for a in contracts])
    return [statement(ctx, a, month, rows, decided.get(a.id)) for a in contracts]


def summary(s: CreditStatement) -> str:
    """"credits due from CardLink Acquiring Ltd for October 2026: EUR 1,250.00, 2 breaches of resolution P1"."""
    parts = [line.working.split(" (of ")[0] + f" of {line.target}" for line in s.lines
             if line.amount and line.rule.endswith("per breach")]
    parts += [f"{line.target} below goal" for line in s.lines if line.amount and not line.rule.endswith("per breach")]
    return s.text() + (f", {', '.join(parts)}" if parts else "") + (" (capped)" if s.capped else "")
