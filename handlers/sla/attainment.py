"""sla: attainment per agreement and target, breaches and what caused them, clocks close to breach."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from handlers.core.context import Command, Context, Field, Reply, Section, UserError, batches, reading
from handlers.sla import breaches, outages
from handlers.surveys import asking
from storage.models import Outage, SlaClock, Ticket

EXAMPLE = "sla payments last-month"
PERIOD_HELP = "this-month, last-month, this-week, today, 7d, 30d, a month as YYYY-MM, all"


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
        return _at_risk(ctx, words[1:])
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


# --------------------------------------------------------------------------------------------- attainment
# Each report is computed as plain data by one function (which the JSON API serves as it is) and turned
# into the chat reply by another, so chat and API always agree.

@dataclass(frozen=True)
class TargetAttainment:
    """Met ÷ decided clocks of one agreement, metric and priority (and assignment group, when grouped)."""

    agreement: str
    agreement_kind: str | None  # sla | ola | uc; None for an agreement no longer in app.yaml
    party: str | None
    metric: str
    priority: str
    group: str | None  # the assignment group when grouped by group (None: unassigned)
    measured: int
    met: int
    share: float  # % met
    goal: float | None

    @property
    def ok(self) -> bool:
        return self.goal is None or self.share >= self.goal


@dataclass(frozen=True)
class AvailabilityAttainment:
    """Availability of one service over the period, against an agreement's availability target."""

    agreement: str
    agreement_kind: str | None
    party: str | None
    service: str
    share: float  # % available
    agreed_seconds: float
    downtime_seconds: float
    goal: float

    @property
    def ok(self) -> bool:
        return self.share >= self.goal


@dataclass(frozen=True)
class SatisfactionAttainment:
    """CSAT of the answers about a service over the period (see asking.service_satisfaction)."""

    agreement: str
    agreement_kind: str | None
    party: str | None
    service: str
    answers: int
    satisfied: int
    share: float  # % satisfied (4 or 5 of 5)
    goal: float

    @property
    def ok(self) -> bool:
        return self.share >= self.goal


def late_condition(now: datetime):
    """Breached: stopped late, or still running past its due time. A stored row is exact as of its last
    event or sweep; a running clock's due time stays right between them, its elapsed time does not."""
    return SlaClock.breached | ((SlaClock.state == "running") & (SlaClock.due_at < now))


def attainment_data(ctx: Context, service_id: str | None, period: Period,
                    by_group: bool = False, session: Session | None = None) -> list[TargetAttainment | AvailabilityAttainment | SatisfactionAttainment]:
    """Met ÷ measured per agreement, metric and priority, for clocks that started in the period. A clock
    counts once it is decided: met, or breached (stopped late, or still running past its target). Then
    the availability of every service with an availability target. Ticket rows come first, ordered by
    agreement, metric and priority (and group); availability rows follow in app.yaml's order."""
    late = late_condition(ctx.now())
    decided = SlaClock.state.in_(("met", "breached")) | late
    cols = [SlaClock.agreement_id, SlaClock.metric, SlaClock.priority]
    if by_group:
        cols.append(Ticket.assignment_group)
    query = (select(*cols, func.count(), func.sum(case((late, 1), else_=0)))
             .join(Ticket, Ticket.id == SlaClock.ticket_id)
             .where(decided, period.holds(SlaClock.started_at)).group_by(*cols).order_by(*cols))
    if service_id:
        query = query.where(Ticket.service_id == service_id)
    with reading(ctx, session) as s:
        rows = s.execute(query).all()
    goals = {(a.id, t.metric, t.priority or "*"): t.goal for a in ctx.config.agreements for t in a.targets}
    agreements = {a.id: a for a in ctx.config.agreements}

    def kind_party(agreement_id: str) -> tuple[str | None, str | None]:
        a = agreements.get(agreement_id)
        return (a.kind, a.party) if a else (None, None)

    out: list[TargetAttainment | AvailabilityAttainment | SatisfactionAttainment] = []
    for row in rows:
        agreement_id, metric, priority, *group, measured, late = row
        late = int(late or 0)
        goal = goals.get((agreement_id, metric, priority)) or goals.get((agreement_id, metric, "*"))
        out.append(TargetAttainment(agreement_id, *kind_party(agreement_id), metric, priority,
                                    group[0] if by_group else None, measured, measured - late,
                                    100 * (measured - late) / measured, goal))
    with reading(ctx, session) as s:
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
            out.append(AvailabilityAttainment(agreement_id, *kind_party(agreement_id), target_service,
                                              100 * result.ratio, result.agreed_seconds, result.downtime_seconds,
                                              goal))
        for a in ctx.config.agreements:
            for t in a.targets:
                if t.metric != "satisfaction" or (service_id and a.service != service_id):
                    continue
                csat = asking.service_satisfaction(ctx, s, a.service, period.start, period.end)
                if csat.answers:
                    satisfied = csat.distribution[4] + csat.distribution[5]
                    out.append(SatisfactionAttainment(a.id, a.kind, a.party, a.service, csat.answers, satisfied,
                                                      csat.csat, t.goal))
    return out


def attainment_reply(rows: list[TargetAttainment | AvailabilityAttainment | SatisfactionAttainment], service_id: str | None, period: Period,
                     by_group: bool = False) -> Reply:
    sections: dict[str, list[str]] = {}
    titles: dict[str, str] = {}
    for row in rows:
        titles[row.agreement] = (f"{row.agreement_kind.upper()} {row.agreement} — {row.party}"
                                 if row.agreement_kind else row.agreement)
        mark = "✅" if row.ok else "❌"
        if isinstance(row, TargetAttainment):
            where = f" · {row.group or 'unassigned'}" if by_group else ""
            line = (f"{mark} {row.metric} {row.priority}{where}: {row.share:.1f} % met ({row.met}/{row.measured})"
                    + (f", goal {row.goal:g} %" if row.goal is not None else ""))
        elif isinstance(row, SatisfactionAttainment):
            line = (f"{mark} satisfaction {row.service}: CSAT {row.share:.1f} % ({row.satisfied}/{row.answers} "
                    f"satisfied), goal {row.goal:g} %")
        else:
            line = (f"{mark} availability {row.service}: {row.share:.3f} % "
                    f"(down {breaches.human(row.downtime_seconds)}), goal {row.goal:g} %")
        sections.setdefault(row.agreement, []).append(line)
    if not sections:
        return Reply(title=f"No measured tickets for {service_id or 'any service'} in {period.name}",
                     footer=f"Periods: {PERIOD_HELP}")
    return Reply(title=f"SLA attainment, {period.name}" + (f": {service_id}" if service_id else ""),
                 sections=[Section(title=titles[a], text="\n".join(lines)) for a, lines in sections.items()],
                 footer="met ÷ decided clocks (met, or breached) that started in the period")


def attainment(ctx: Context, service_id: str | None, period: Period, by_group: bool = False) -> Reply:
    return attainment_reply(attainment_data(ctx, service_id, period, by_group), service_id, period, by_group)


# ----------------------------------------------------------------------------------------------- breaches

@dataclass(frozen=True)
class ClockUse:
    """The time one OLA or UC clock used on a ticket: what an SLA breach report names as its cause."""

    kind: str
    agreement: str
    metric: str
    elapsed_seconds: float
    target_seconds: float
    breached: bool


@dataclass(frozen=True)
class Breach:
    ticket_id: int
    priority: str
    title: str
    service: str
    state: str
    agreement: str
    metric: str
    started_at: datetime
    due_at: datetime | None
    stopped_at: datetime | None
    late_seconds: float
    used_by: list[ClockUse]  # the OLA and UC clocks under the SLA that ran, and the time each has used


BREACHES_SHOWN = 40


def breaches_data(ctx: Context, period: Period, limit: int | None = BREACHES_SHOWN,
                  session: Session | None = None, service: str | None = None) -> list[Breach]:
    """Breached SLA clocks that started in the period (of one service's tickets, if given), newest first,
    each with the OLAs and UCs under it that ran on the ticket and the time each has used by now."""
    now = ctx.now()
    under_by_sla: dict[str, set[str]] = {}
    for a in ctx.config.agreements:
        if a.underpins:
            under_by_sla.setdefault(a.underpins, set()).add(a.id)
    out = []
    with reading(ctx, session) as s:
        query = (select(SlaClock, Ticket).join(Ticket, Ticket.id == SlaClock.ticket_id)
                 .where(late_condition(now), SlaClock.kind == "sla", period.holds(SlaClock.started_at)))
        if service:
            query = query.where(Ticket.service_id == service)
        rows = s.execute(query.order_by(SlaClock.started_at.desc()).limit(limit)).all()
        # The OLA and UC clocks of every breached ticket whose SLA has any, read and measured together.
        underpinned = sorted({t.id for c, t in rows if c.agreement_id in under_by_sla})
        under_clocks: dict[int, list[SlaClock]] = {}
        for chunk in batches(underpinned, breaches.BATCH):
            for c in s.scalars(select(SlaClock).where(SlaClock.ticket_id.in_(chunk), SlaClock.kind != "sla")
                               .order_by(SlaClock.agreement_id, SlaClock.metric)):
                under_clocks.setdefault(c.ticket_id, []).append(c)
        now_measured = breaches.measured_now(
            s, ctx, [clock for clock, _ in rows] + [c for cs in under_clocks.values() for c in cs], now)
        for clock, ticket in rows:
            sla_now = now_measured.get(clock.id)
            late_seconds = (sla_now.elapsed_seconds - sla_now.target_seconds) if sla_now else \
                clock.elapsed_seconds - clock.target_seconds
            under = under_by_sla.get(clock.agreement_id, set())
            uses = [ClockUse(c.kind, c.agreement_id, c.metric, m.elapsed_seconds, m.target_seconds, m.breached)
                    for c in under_clocks.get(ticket.id, []) if c.agreement_id in under
                    and (m := now_measured.get(c.id)) is not None and m.state != "unused"]
            out.append(Breach(ticket.id, ticket.priority, ticket.title, ticket.service_id, ticket.state,
                              clock.agreement_id, clock.metric, clock.started_at, clock.due_at, clock.stopped_at,
                              late_seconds, uses))
    return out


def breaches_reply(rows: list[Breach], period: Period) -> Reply:
    sections = []
    for b in rows:
        causes = [breaches.use_text(c.kind, c.agreement, c.metric, c.elapsed_seconds, c.target_seconds, c.breached)
                  for c in b.used_by]
        late = breaches.human(b.late_seconds)
        sections.append(Section(
            title=f"INC-{b.ticket_id} {b.priority} · {b.agreement} {b.metric} · late by {late}", text=b.title,
            fields=[Field("Service", b.service), Field("State", b.state),
                    Field("Time used by", "\n".join(causes) or "no OLA or UC clocks")]))
    if not sections:
        return Reply(title=f"No SLA breaches in {period.name}", tone="ok")
    return Reply(title=f"SLA breaches, {period.name}", sections=sections, tone="warning",
                 footer=f"newest first; at most {BREACHES_SHOWN} shown")


def _breaches(ctx: Context, period: Period) -> Reply:
    return breaches_reply(breaches_data(ctx, period), period)


# ------------------------------------------------------------------------------------------------ at risk

@dataclass(frozen=True)
class AtRisk:
    """A running clock past its first warning (or past due), measured now."""

    ticket_id: int
    priority: str
    service: str
    kind: str
    agreement: str
    metric: str
    used: float  # % of the target used by now
    elapsed_seconds: float
    target_seconds: float
    due_at: datetime
    late: bool  # due_at has passed
    clock_id: int


AT_RISK_SHOWN = 40  # lines of a chat reply; the rest is counted and paged
AT_RISK_SCAN = 500  # running clocks measured per read


@dataclass(frozen=True)
class AtRiskPage:
    rows: list[AtRisk]
    more: bool  # there are further clocks at risk after the last of ``rows``
    next_after: tuple[datetime, int] | None  # (due_at, clock id) to go on from, when ``more``


def at_risk_data(ctx: Context, session: Session | None = None, late: bool = True) -> list[AtRisk]:
    """Every running clock past its first warning level, or past due (unless not ``late``), soonest due first."""
    return at_risk_page(ctx, session, late).rows


def at_risk_page(ctx: Context, session: Session | None = None, late: bool = True,
                 after: tuple[datetime, int] | None = None, limit: int | None = None) -> AtRiskPage:
    """Running clocks past their first warning level, or past due (unless not ``late``), in order of due time
    (then clock id), after the clock ``after`` names; at most ``limit`` of them, saying whether more follow.

    Whether a clock is past its first warning is known only by measuring it now, so the running clocks are
    read and measured a few hundred at a time until the page is full: nothing is cut off unsaid."""
    now = ctx.now()
    out: list[AtRisk] = []
    running = (select(SlaClock, Ticket).join(Ticket, Ticket.id == SlaClock.ticket_id)
               .where(SlaClock.state == "running", SlaClock.due_at.is_not(None))
               .order_by(SlaClock.due_at, SlaClock.id).limit(AT_RISK_SCAN))
    if not late:
        running = running.where(SlaClock.due_at > now)
    with reading(ctx, session) as s:
        while True:
            query = running if after is None else running.where(
                or_(SlaClock.due_at > after[0], and_(SlaClock.due_at == after[0], SlaClock.id > after[1])))
            rows = s.execute(query).all()
            now_measured = breaches.measured_now(s, ctx, [clock for clock, _ in rows], now)
            for clock, ticket in rows:
                m = now_measured.get(clock.id)
                if m is None or not m.running:
                    continue
                first_warning = min((level for level in m.threshold_at if level < breaches.BREACH), default=50)
                if m.used < first_warning and clock.due_at > now:
                    continue
                if limit is not None and len(out) == limit:
                    last = out[-1]
                    return AtRiskPage(out, True, (last.due_at, last.clock_id))
                out.append(AtRisk(ticket.id, ticket.priority, ticket.service_id, clock.kind, clock.agreement_id,
                                  clock.metric, m.used, m.elapsed_seconds, m.target_seconds, clock.due_at,
                                  clock.due_at <= now, clock.id))
            if len(rows) < AT_RISK_SCAN:
                return AtRiskPage(out, False, None)
            after = (rows[-1][0].due_at, rows[-1][0].id)


def at_risk_reply(rows: list[AtRisk], page: int = 1) -> Reply:
    """One page of ``AT_RISK_SHOWN`` lines, saying how many more there are and how to see them."""
    lines = []
    for r in rows:
        when = f"late since {r.due_at:%Y-%m-%d %H:%M}" if r.late else f"due {r.due_at:%Y-%m-%d %H:%M} UTC"
        lines.append(f"INC-{r.ticket_id} {r.priority} {r.service} · {r.kind.upper()} "
                     f"{r.agreement} {r.metric}: {r.used:.0f} % used, {when}")
    if not lines:
        return Reply(title="No clocks at risk", tone="ok")
    first = (page - 1) * AT_RISK_SHOWN
    if first >= len(lines):
        pages = -(-len(lines) // AT_RISK_SHOWN)
        raise UserError(f"There {'is' if pages == 1 else 'are'} only {pages} page{'s' * (pages != 1)} of "
                        "clocks at risk.", "sla at-risk page 2")
    shown = lines[first:first + AT_RISK_SHOWN]
    rest = len(lines) - first - len(shown)
    text = "\n".join(shown) + (f"\n… and {rest} more: `sla at-risk page {page + 1}`" if rest else "")
    where = f"; {first + 1}–{first + len(shown)} shown" if len(shown) < len(lines) else ""
    return Reply(title=f"{len(lines)} clock{'s' * (len(lines) != 1)} at risk", text=text, tone="warning",
                 footer=f"running clocks past their first warning, soonest due first{where}")


def _at_risk(ctx: Context, words: list[str]) -> Reply:
    if not words:
        return at_risk_reply(at_risk_data(ctx))
    if len(words) == 2 and words[0] == "page" and words[1].isdigit() and int(words[1]) >= 1:
        return at_risk_reply(at_risk_data(ctx), int(words[1]))
    raise UserError("Use `sla at-risk [page N]`.", "sla at-risk page 2")
