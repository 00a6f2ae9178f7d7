"""sla: attainment per agreement and target, breaches and what caused them, clocks close to breach."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select

from handlers import breaches, outages
from handlers.core import Command, Context, Field, Reply, Section, UserError
from storage.models import Outage, SlaClock, Ticket

EXAMPLE = "sla payments last-month"
PERIOD_HELP = "this-month, last-month, this-week, today, 7d, 30d, 2026-10, all"


@dataclass(frozen=True)
class Period:
    name: str
    start: datetime | None
    end: datetime | None

    def holds(self, column):
        conds = []
        if self.start:
            conds.append(column >= self.start)
        if self.end:
            conds.append(column < self.end)
        return and_(*conds) if conds else True


def parse_period(text: str | None, now: datetime, zone: str) -> Period:
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    text = (text or "this-month").lower()

    def at(d: date) -> datetime:
        return datetime.combine(d, time(), tz).astimezone(ZoneInfo("UTC"))

    month_start = local.date().replace(day=1)
    if text == "all":
        return Period("all time", None, None)
    if text == "today":
        return Period("today", at(local.date()), None)
    if text == "this-week":
        return Period("this week", at(local.date() - timedelta(days=local.weekday())), None)
    if text == "this-month":
        return Period(f"{month_start:%B %Y}", at(month_start), None)
    if text == "last-month":
        last = (month_start - timedelta(days=1)).replace(day=1)
        return Period(f"{last:%B %Y}", at(last), at(month_start))
    if m := re.fullmatch(r"(\d{1,4})d", text):
        return Period(f"the last {m[1]} days", now - timedelta(days=int(m[1])), None)
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise UserError(f"'{text}' is not a month.", EXAMPLE)
        first = date(year, month, 1)
        following = date(year + (month == 12), month % 12 + 1, 1)
        return Period(f"{first:%B %Y}", at(first), at(following))
    raise UserError(f"'{text}' is not a period; periods: {PERIOD_HELP}.", EXAMPLE)


def sla_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    words = [a.lower() for a in args]
    if words[:1] == ["ack"]:
        return breaches.acknowledge(ctx, cmd, words[1] if len(words) > 1 else "")
    if words[:1] == ["breaches"]:
        return _breaches(ctx, parse_period(words[1] if len(words) > 1 else None, ctx.now(), ctx.config.bot.timezone))
    if words[:1] == ["at-risk"]:
        return _at_risk(ctx)
    service = None
    if words and ctx.config.service(words[0]):
        service = ctx.config.service(words.pop(0))
    by_group = words[-2:] == ["by", "group"]
    if by_group:
        words = words[:-2]
    if len(words) > 1:
        raise UserError("Use `sla [SERVICE] [PERIOD] [by group]`.", EXAMPLE)
    period = parse_period(words[0] if words else None, ctx.now(), ctx.config.bot.timezone)
    return attainment(ctx, service.id if service else None, period, by_group)


def attainment(ctx: Context, service_id: str | None, period: Period, by_group: bool = False) -> Reply:
    """Met ÷ measured per agreement, metric and priority, for clocks that started in the period. A clock
    counts once it is decided: met, or breached (stopped late, or still running past its target)."""
    decided = SlaClock.state.in_(("met", "breached")) | SlaClock.breached
    cols = [SlaClock.agreement_id, SlaClock.metric, SlaClock.priority]
    if by_group:
        cols.append(Ticket.assignment_group)
    query = (select(*cols, func.count(), func.sum(func.cast(SlaClock.breached, func.coalesce(0, 0).type)))
             .join(Ticket, Ticket.id == SlaClock.ticket_id)
             .where(decided, period.holds(SlaClock.started_at)).group_by(*cols).order_by(*cols))
    if service_id:
        query = query.where(Ticket.service_id == service_id)
    with ctx.sessions() as s:
        rows = s.execute(query).all()
    goals = {(a.id, t.metric, t.priority or "*"): t.goal for a in ctx.config.agreements for t in a.targets}
    sections: dict[str, list[str]] = {}
    for row in rows:
        agreement_id, metric, priority, *group, measured, late = row
        late = int(late or 0)
        goal = goals.get((agreement_id, metric, priority)) or goals.get((agreement_id, metric, "*"))
        share = 100 * (measured - late) / measured
        mark = "✅" if goal is None or share >= goal else "❌"
        where = f" · {group[0] or 'unassigned'}" if by_group else ""
        sections.setdefault(agreement_id, []).append(
            f"{mark} {metric} {priority}{where}: {share:.1f} % met ({measured - late}/{measured})"
            + (f", goal {goal:g} %" if goal is not None else ""))
    with ctx.sessions() as s:
        for agreement_id, target_service, goal in outages.availability_targets(ctx):
            if service_id and target_service != service_id:
                continue
            start = period.start or s.scalar(select(func.min(Outage.started_at))
                                             .where(Outage.service_id == target_service))
            if start is None:
                continue  # "all time" and never an outage: nothing to measure from
            result = outages.service_availability(s, target_service, start, period.end or ctx.now(), ctx.now())
            if result.ratio is None:
                continue
            share = 100 * result.ratio
            sections.setdefault(agreement_id, []).append(
                f"{'✅' if share >= goal else '❌'} availability {target_service}: {share:.3f} % "
                f"(down {breaches.human(result.downtime_seconds)}), goal {goal:g} %")
    if not sections:
        return Reply(title=f"No measured tickets for {service_id or 'any service'} in {period.name}",
                     footer=f"Periods: {PERIOD_HELP}")
    kinds = {a.id: f"{a.kind.upper()} {a.id} — {a.party}" for a in ctx.config.agreements}
    return Reply(title=f"SLA attainment, {period.name}" + (f": {service_id}" if service_id else ""),
                 sections=[Section(title=kinds.get(a, a), text="\n".join(lines)) for a, lines in sections.items()],
                 footer="met ÷ decided clocks (met, or breached) that started in the period")


def _breaches(ctx: Context, period: Period) -> Reply:
    with ctx.sessions() as s:
        rows = s.execute(select(SlaClock, Ticket).join(Ticket, Ticket.id == SlaClock.ticket_id)
                         .where(SlaClock.breached, SlaClock.kind == "sla", period.holds(SlaClock.started_at))
                         .order_by(SlaClock.started_at.desc()).limit(40)).all()
        sections = []
        for clock, ticket in rows:
            causes = breaches.underpinning_lines(s, ctx, ticket.id, clock.agreement_id)
            late = breaches.human(clock.elapsed_seconds - clock.target_seconds)
            sections.append(Section(
                title=f"INC-{ticket.id} {ticket.priority} · {clock.agreement_id} {clock.metric} · late by {late}",
                text=ticket.title,
                fields=[Field("Service", ticket.service_id), Field("State", ticket.state),
                        Field("Time used by", "\n".join(causes) or "no OLA or UC clocks")]))
    if not sections:
        return Reply(title=f"No SLA breaches in {period.name}", tone="ok")
    return Reply(title=f"SLA breaches, {period.name}", sections=sections, tone="warning",
                 footer="newest first; at most 40 shown")


def _at_risk(ctx: Context) -> Reply:
    now = ctx.now()
    with ctx.sessions() as s:
        rows = s.execute(select(SlaClock, Ticket).join(Ticket, Ticket.id == SlaClock.ticket_id)
                         .where(SlaClock.state == "running", SlaClock.due_at.is_not(None))
                         .order_by(SlaClock.due_at).limit(200)).all()
    lines = []
    for clock, ticket in rows:
        used = 100 * clock.elapsed_seconds / clock.target_seconds if clock.target_seconds else 0
        spec_warn = min((t.warn_at[0] for a in ctx.config.agreements if a.id == clock.agreement_id
                         for t in a.targets if t.warn_at), default=50)
        if used < spec_warn and clock.due_at > now:
            continue
        when = f"late since {clock.due_at:%Y-%m-%d %H:%M}" if clock.due_at <= now else \
            f"due {clock.due_at:%Y-%m-%d %H:%M} UTC"
        lines.append(f"INC-{ticket.id} {ticket.priority} {ticket.service_id} · {clock.kind.upper()} "
                     f"{clock.agreement_id} {clock.metric}: {used:.0f} % used, {when}")
    if not lines:
        return Reply(title="No clocks at risk", tone="ok")
    return Reply(title=f"{len(lines)} clock{'s' * (len(lines) != 1)} at risk", text="\n".join(lines[:40]),
                 tone="warning", footer="running clocks past their first warning, soonest due first")
