"""``home``: what one person should look at, in one view, the same in every front end.

Times are shown as clock times, not as "in 3 h": the Slack home is published again only when what it
shows changes (published.py compares a hash of it), and a countdown would change it every minute.
"""
from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.changes import calendar, rules
from handlers.changes.record import STATE_ICON, eligible_approvers, number, services_of, votes, window_text
from handlers.core.context import Actor, Button, Command, Context, Reply, Section, UserError, reading
from handlers.services.status import STATE_ICON as SERVICE_ICON
from handlers.services.status import overview
from handlers.sla import attainment
from handlers.sla.breaches import BREACH
from handlers.sla.clocks import OPEN_STATES
from handlers.surveys import privacy
from storage.models import (Change, ChangeVote, ClockNotice, CsiItem, KbArticle, SlaClock, Subscription, Survey,
                            SurveyAnswer, Ticket)

SHOWN = 8  # lines per part; the rest is counted and the command that lists them all is named


def home_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    if args:
        raise UserError("`home` takes no words: it shows your own work.", "home")
    return home_reply(ctx, cmd.actor)


def home_reply(ctx: Context, actor: Actor, session: Session | None = None) -> Reply:
    """The person's home. Buttons run ordinary commands, so they go through the same checks as typing them."""
    me = actor.person_id
    zone = ZoneInfo(actor.timezone)
    teams = {g.id for g in ctx.config.groups if me in g.members}
    with reading(ctx, session) as s:
        parts = [_services(ctx, s, me, teams), *_changes(ctx, s, me, actor.timezone),
                 *_incidents(ctx, s, teams, zone), _surveys(ctx, s, me), _csi(ctx, s, me),
                 _reviews(ctx, s, me, zone)]
        if me in ctx.config.roles.service_managers:
            parts.append(_month(ctx, s, actor))
    sections = [p for p in parts if p is not None]
    return Reply(title=f"Home · {actor.name}",
                 text="" if sections else "Nothing waits for you.", sections=sections,
                 buttons=[Button("Refresh", "home")], in_place=True,
                 footer=f"Times in {actor.timezone}")


def _more(lines: list[str], command: str) -> str:
    extra = len(lines) - SHOWN
    return "\n".join(lines[:SHOWN] + ([f"… and {extra} more: `{command}`"] if extra > 0 else []))


def _services(ctx: Context, s: Session, me: str, teams: set[str]) -> Section | None:
    followed = set(s.scalars(select(Subscription.service_id).where(Subscription.person_id == me)))
    mine = {svc.id for svc in ctx.config.services if svc.owner == me or (svc.team and svc.team in teams)}
    lines = []
    for svc in overview(ctx, s).services:
        if svc.id in mine or svc.id in followed:
            why = "yours" if svc.id in mine else "followed"
            lines.append(f"{SERVICE_ICON[svc.state]} *{svc.name}* — {svc.state} ({why})"
                         + (f": {svc.message}" if svc.message else ""))
    return Section(title="Your services", text=_more(lines, "status")) if lines else None


def _changes(ctx: Context, s: Session, me: str, zone: str) -> list[Section]:
    holding = s.scalars(select(Change).where(Change.state.in_(rules.HOLDING + ("review",)))
                        .order_by(Change.planned_start, Change.id)).all()
    out = []
    asked = [c for c in holding if c.state == "awaiting-approval" and me in eligible_approvers(ctx, c)]
    voted = set(s.scalars(select(ChangeVote.change_id).where(ChangeVote.change_id.in_([c.id for c in asked]),
                                                             ChangeVote.person_id == me,
                                                             ChangeVote.withdrawn_at.is_(None)))) if asked else set()
    waiting = [c for c in asked if c.id not in voted]
    for c in waiting[:SHOWN]:
        out.append(Section(title="Waiting for your vote" if c is waiting[0] else "",
                           text=f"*{number(c)}* {c.title} — {c.kind}, {c.risk} risk, {window_text(c, zone)}",
                           buttons=[Button("Approve", f"change approve {number(c)}", "primary"),
                                    Button("Reject", f"change reject {number(c)}", "danger")]))
    if len(waiting) > SHOWN:
        out.append(Section(text=f"… and {len(waiting) - SHOWN} more waiting for approval: `change list`"))
    own = [c for c in holding if me in (c.requester, c.implementer)]
    if own:
        lines = [f"{STATE_ICON[c.state]} *{number(c)}* {c.title} — {c.state}: {_waits_on(ctx, s, c, zone)}"
                 for c in own]
        out.append(Section(title="Your changes", text=_more(lines, "change list mine")))
    return out


def _waits_on(ctx: Context, s: Session, change: Change, zone: str) -> str:
    if change.state == "awaiting-approval":
        approvals = sum(1 for v in votes(s, change) if v.decision == "approve")
        blocked = rules.blocking(change, rules.issues(s, ctx.config, change, services_of(s, change)))
        return (f"waits on approvals, {approvals} of {change.approvals_needed}"
                + ("; a service manager's override first" if blocked else ""))
    if change.state == "scheduled":
        return f"waits on its window, {window_text(change, zone)}"
    if change.state == "in-progress":
        return f"waits on `change complete {number(change)}` or `change fail {number(change)}`"
    return "waits on its review"


def _incidents(ctx: Context, s: Session, teams: set[str], zone: ZoneInfo) -> list[Section]:
    if not teams:
        return []
    tickets = s.scalars(select(Ticket).where(Ticket.assignment_group.in_(teams), Ticket.state.in_(OPEN_STATES))
                        .order_by(Ticket.opened_at)).all()
    if not tickets:
        return []
    ids = [t.id for t in tickets]
    due = dict(s.execute(select(SlaClock.ticket_id, func.min(SlaClock.due_at))
                         .where(SlaClock.ticket_id.in_(ids), SlaClock.state == "running", SlaClock.due_at.is_not(None))
                         .group_by(SlaClock.ticket_id)).all())
    # Nearest to breach first; tickets with no running clock after them.
    tickets = sorted(tickets, key=lambda t: (due.get(t.id) is None, due.get(t.id) or t.opened_at, t.id))
    lines = [f"*INC-{t.id}* {t.priority} {t.service_id} · {t.title} — {t.state}"
             + (f", due {due[t.id].astimezone(zone):%a %H:%M}" if due.get(t.id) else "") for t in tickets]
    out = [Section(title="Your team's open incidents", text=_more(lines, "sla at-risk"))]
    notices = s.execute(select(ClockNotice, SlaClock).join(SlaClock, SlaClock.id == ClockNotice.clock_id)
                        .where(SlaClock.ticket_id.in_(ids), ClockNotice.level >= BREACH,
                               ClockNotice.acknowledged_at.is_(None))
                        .order_by(ClockNotice.at, ClockNotice.id)).all()
    for notice, clock in notices[:SHOWN]:
        out.append(Section(title="Breach notices not acknowledged" if notice is notices[0][0] else "",
                           text=f"INC-{clock.ticket_id} {clock.kind.upper()} {clock.agreement_id} {clock.metric} "
                                f"breached {notice.at.astimezone(zone):%a %d %b %H:%M}",
                           buttons=[Button("Acknowledge", f"sla ack {notice.id}")]))
    return out


def _surveys(ctx: Context, s: Session, me: str) -> Section | None:
    lines = []
    for survey in s.scalars(select(Survey).where(Survey.state == "open").order_by(Survey.closes_at, Survey.id)):
        if survey.audience_kind == "people" and me not in survey.audience:
            continue
        key = privacy.respondent_key(ctx, s, survey, me)
        if s.scalar(select(SurveyAnswer.id).where(SurveyAnswer.survey_id == survey.id,
                                                  SurveyAnswer.respondent_key == key)) is None:
            lines.append(f"SRV-{survey.id} “{survey.question}” — `survey answer SRV-{survey.id} N`")
    return Section(title="Surveys waiting for your answer", text=_more(lines, "survey list")) if lines else None


def _csi(ctx: Context, s: Session, me: str) -> Section | None:
    items = s.scalars(select(CsiItem).where(CsiItem.owner == me, CsiItem.state == "open")
                      .order_by(CsiItem.due.is_(None), CsiItem.due, CsiItem.id)).all()
    lines = [f"CSI-{i.id} {i.title}" + (f" — due {i.due:%d %b %Y}" if i.due else "") for i in items]
    return Section(title="Your improvement items", text=_more(lines, "csi list")) if lines else None


def _reviews(ctx: Context, s: Session, me: str, zone: ZoneInfo) -> Section | None:
    """The person's published articles whose review has fallen due: they are asked whether each is still right."""
    due = s.scalars(select(KbArticle).where(KbArticle.owner == me, KbArticle.state == "published",
                                            KbArticle.next_review_at <= ctx.now())
                    .order_by(KbArticle.next_review_at, KbArticle.id)).all()
    lines = [f"KB-{a.id} {a.title} — review due {a.next_review_at.astimezone(zone):%d %b %Y}" for a in due]
    more = [f"… and {len(lines) - SHOWN} more"] if len(lines) > SHOWN else []
    return Section(title="Your articles due for review", text="\n".join(lines[:SHOWN] + more)) if lines else None


def _month(ctx: Context, s: Session, actor: Actor) -> Section:
    """A service manager's month so far: attainment of the ticket targets, breaches, change success."""
    period = attainment.parse_period("this-month", ctx.now(), actor.timezone)
    rows = [r for r in attainment.attainment_data(ctx, None, period, session=s)
            if isinstance(r, attainment.TargetAttainment)]
    measured, met = sum(r.measured for r in rows), sum(r.met for r in rows)
    rate = calendar.success_rate(s, period.start, ctx.now())
    lines = [f"Attainment: {100 * met / measured:.1f} % of {measured} clocks met" if measured
             else "Attainment: no clock decided yet",
             f"Breaches: {measured - met}",
             f"Change success: {rate.ratio:.0%} of {rate.implemented} implemented" if rate.ratio is not None
             else "Change success: no change implemented yet"]
    return Section(title=f"{period.name} so far", text="\n".join(lines))
