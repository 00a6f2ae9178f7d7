"""Service delivery economics: what each service costs a month (``services[].cost`` in app.yaml, by line),
beside what it delivered that month — per ticket resolved, per hour of agreed service time, and its SLA
attainment. A table for the service review, not an accounting system.

- Agreed service time is the business hours of the service's calendar in the month (the whole month, also
  while it runs, since the cost is the whole month's).
- Tickets resolved are those whose resolution fell in the month, as the report counts them.
- Cost per ticket = the month's cost ÷ tickets resolved; per hour = the cost ÷ agreed hours; each rounded
  half up to the currency's minor unit. None when there is nothing to divide by.
- Attainment is the service's SLA ticket clocks met ÷ decided in the month (``attainment.attainment_data``).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.core.business_time import BusinessCalendar
from handlers.core.config_commercial import round_money
from handlers.core.context import Context
from handlers.sla import attainment
from storage.models import Ticket


@dataclass(frozen=True)
class ServiceEconomics:
    service: str
    name: str
    currency: str
    people: Decimal
    hardware: Decimal
    software: Decimal
    suppliers: Decimal
    total: Decimal
    resolved: int
    per_ticket: Decimal | None
    agreed_hours: Decimal  # to two places
    per_hour: Decimal | None
    clocks_met: int  # SLA ticket clocks met in the month
    clocks: int  # … decided

    @property
    def attainment(self) -> float | None:
        return 100 * self.clocks_met / self.clocks if self.clocks else None


def economics(ctx: Context, session: Session, period: attainment.Period,
              scope: str | None = None) -> list[ServiceEconomics]:
    """One row per service with a cost in app.yaml (only the one service, if given), in app.yaml's order."""
    services = [s for s in ctx.config.services if s.cost is not None and (scope is None or s.id == scope)]
    if not services:
        return []
    resolved = dict(session.execute(select(Ticket.service_id, func.count()).where(
        period.holds(Ticket.resolved_at), Ticket.service_id.in_([s.id for s in services]))
        .group_by(Ticket.service_id)).all())
    rows = attainment.attainment_data(ctx, scope, period, session=session)
    out = []
    for s in services:
        cost = s.cost
        seconds = BusinessCalendar(ctx.config.calendars[s.calendar]).business_seconds(period.start, period.end)
        hours = (Decimal(int(round(seconds))) / 3600).quantize(Decimal("0.01"))
        n = resolved.get(s.id, 0)
        sla = [r for r in rows if isinstance(r, attainment.TargetAttainment) and r.agreement_kind == "sla"
               and _service_of(ctx, r.agreement) == s.id]
        out.append(ServiceEconomics(
            s.id, s.name, cost.currency, cost.people, cost.hardware, cost.software, cost.suppliers, cost.total, n,
            round_money(cost.total / n, cost.currency) if n else None, hours,
            round_money(cost.total / hours, cost.currency) if hours else None,
            sum(r.met for r in sla), sum(r.measured for r in sla)))
    return out


def _service_of(ctx: Context, agreement_id: str) -> str | None:
    return next((a.service for a in ctx.config.agreements if a.id == agreement_id), None)
