"""Digests: what happened and what is coming, posted to a channel on a cron in a time zone (the slots
themselves are kept by handlers/reporting/schedule.py); `digest list`, `digest preview`, `digest send`."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.changes import calendar
from handlers.changes.record import window_text
from handlers.core.config import Digest
from handlers.core.context import (Actor, Command, Context, Field, Refused, Reply, Section, UserError, Work, nearest,
                                   retyped)
from handlers.reporting import schedule
from handlers.knowledge import reviews
from handlers.reviews import record as incident_reviews
from handlers.services import catalogue_review, csi, status
from handlers.services.status import STATE_ICON
from handlers.sla import attainment
from handlers.sla.clocks import OPEN_STATES
from handlers.surveys import results as survey_results
from storage.models import Change, CsiItem, ScheduledRun, SlaClock, Survey, Ticket

EXAMPLE = "digest preview morning-ops"
CSI_HORIZON = timedelta(days=14)  # CSI items due this soon (or overdue) are worth a line
SHOWN = 10  # lines per section; the rest is counted
CLI = Actor(person_id="cli", name="command line", platform="cli")


def job_name(digest: Digest) -> str:
    return f"digest:{digest.name}"


def title_of(digest: Digest) -> str:
    return digest.name.replace("-", " ").capitalize()


# ------------------------------------------------------------------------------------------- the content

@dataclass
class Part:
    """One section of a digest; ``quiet`` when it has nothing to report, with the phrase that says so."""

    name: str
    section: Section
    quiet: bool
    quiet_text: str = ""
    data: dict = field(default_factory=dict)


def compose(ctx: Context, session: Session, digest: Digest, now: datetime, since: datetime,
            late_for: datetime | None = None) -> Reply:
    """The digest as it stands at ``now``; breaches and survey results count from ``since``. Read in the
    caller's session: on SQLite a second transaction would wait for the first."""
    zone = ZoneInfo(digest.timezone)
    parts = [SECTIONS[name](ctx, session, digest, now, since) for name in digest.sections]
    local = now.astimezone(zone)
    title = f"{title_of(digest)} — {local:%a %d %b}"
    late = (f"⏰ Late: due at {late_for.astimezone(zone):%H:%M %Z}, sent at {local:%H:%M} "
            "because svcbot was not running then." if late_for else "")
    loud = [p for p in parts if not p.quiet]
    quiet = [p.quiet_text for p in parts if p.quiet]
    data = {"name": digest.name, "timezone": digest.timezone, "at": now.isoformat(), "since": since.isoformat(),
            "late_for": late_for.isoformat() if late_for else None,
            "sections": {p.name: {"quiet": p.quiet, **p.data} for p in parts}}
    if not loud:
        return Reply(title=f"☀️ {title}: a quiet day", text=late + ("\n" if late else "") + _sentence(quiet),
                     tone="ok", private=False, template="digest", data=data)
    footer = ("Also: " + _sentence(quiet, capital=False)) if quiet else ""
    return Reply(title=title, text=late, sections=[p.section for p in loud], footer=footer, private=False,
                 tone="warning" if late else "info", template="digest", data=data)


def _sentence(phrases: list[str], capital: bool = True) -> str:
    text = "; ".join(phrases) + "."
    return text[0].upper() + text[1:] if capital else text


def _status(ctx: Context, s, digest: Digest, now: datetime, since: datetime) -> Part:
    view = status.overview(ctx, s)
    affected = [x for x in view.services if x.state != "operational"]
    lines = [f"{STATE_ICON[x.state]} *{x.name}* — {x.state}" + (f": {x.message}" if x.message else "")
             for x in affected]
    return Part("status", Section(title=view.title, text="\n".join(lines)), not affected,
                f"all {len(view.services)} services operational",
                {"affected": [{"service": x.id, "state": x.state, "message": x.message} for x in affected]})


def _incidents(ctx: Context, s, digest: Digest, now: datetime, since: datetime) -> Part:
    tickets = s.scalars(select(Ticket).where(Ticket.kind == "incident", Ticket.state.in_(OPEN_STATES))
                        .order_by(Ticket.priority, Ticket.opened_at)).all()
    by_priority: dict[str, int] = {}
    for t in tickets:
        by_priority[t.priority] = by_priority.get(t.priority, 0) + 1
    urgent = [t for t in tickets if t.priority in ("P1", "P2")]
    lines = [f"INC-{t.id} {t.priority} {ctx.config.service_names([t.service_id])}: {t.title} — {t.state}"
             for t in urgent[:SHOWN]]
    if len(urgent) > SHOWN:
        lines.append(f"… and {len(urgent) - SHOWN} more P1/P2")
    count = ", ".join(f"{n} {p}" for p, n in sorted(by_priority.items()))
    text = (f"{len(tickets)} open ({count})" + ("\n" + "\n".join(lines) if lines else "")) if tickets else ""
    return Part("incidents", Section(title="Open incidents", text=text), not tickets, "no open incidents",
                {"open": len(tickets), "by_priority": by_priority})


def _breaches(ctx: Context, s, digest: Digest, now: datetime, since: datetime) -> Part:
    """Clocks whose target passed since the last digest: breached then, whether stopped or running."""
    rows = s.execute(select(SlaClock, Ticket).join(Ticket, Ticket.id == SlaClock.ticket_id)
                     .where(attainment.late_condition(now), SlaClock.due_at > since, SlaClock.due_at <= now)
                     .order_by(SlaClock.due_at)).all()
    zone = ZoneInfo(digest.timezone)
    lines = [f"INC-{t.id} {t.priority} {ctx.config.service_names([t.service_id])} · {c.kind.upper()} "
             f"{c.agreement_id} {c.metric}, due {c.due_at.astimezone(zone):%a %H:%M}" for c, t in rows[:SHOWN]]
    if len(rows) > SHOWN:
        lines.append(f"… and {len(rows) - SHOWN} more: `sla breaches`")
    by_kind: dict[str, int] = {}
    for c, _ in rows:
        by_kind[c.kind] = by_kind.get(c.kind, 0) + 1
    return Part("breaches", Section(title=f"Breaches since {since.astimezone(zone):%a %H:%M}", text="\n".join(lines)),
                not rows, "no breaches since the last digest", {"count": len(rows), "by_kind": by_kind})


def _at_risk(ctx: Context, s, digest: Digest, now: datetime, since: datetime) -> Part:
    rows = attainment.at_risk_data(ctx, s, late=False)  # the late ones are breaches
    zone = ZoneInfo(digest.timezone)
    lines = [f"INC-{r.ticket_id} {r.priority} {ctx.config.service_names([r.service])} · {r.kind.upper()} "
             f"{r.agreement} {r.metric}: {r.used:.0f} % used, due {r.due_at.astimezone(zone):%a %H:%M}"
             for r in rows[:SHOWN]]
    if len(rows) > SHOWN:
        lines.append(f"… and {len(rows) - SHOWN} more: `sla at-risk`")
    return Part("at-risk", Section(title="Clocks at risk", text="\n".join(lines)), not rows, "no clocks at risk",
                {"count": len(rows)})


def _approvals(ctx: Context, s, digest: Digest, now: datetime, since: datetime) -> Part:
    waiting = s.scalars(select(Change).where(Change.state == "awaiting-approval")
                        .order_by(Change.planned_start)).all()
    lines = [f"*CHG-{c.id}* {c.title} ({c.kind}, {c.risk} risk) — {window_text(c, digest.timezone)}"
             for c in waiting[:SHOWN]]
    return Part("approvals", Section(title="Waiting for approval", text="\n".join(lines)), not waiting,
                "no changes waiting for approval", {"count": len(waiting)})


def _changes(ctx: Context, s, digest: Digest, now: datetime, since: datetime) -> Part:
    until = now + timedelta(days=digest.days_ahead)
    coming = s.scalars(select(Change).where(*calendar.holding(now, until))
                       .order_by(Change.planned_start, Change.id)).all()
    lines = [f"*CHG-{c.id}* {c.title} — {c.state}, {window_text(c, digest.timezone)}" for c in coming[:SHOWN]]
    if len(coming) > SHOWN:
        lines.append(f"… and {len(coming) - SHOWN} more: `change calendar {digest.days_ahead}`")
    days = f"{digest.days_ahead} day{'s' * (digest.days_ahead != 1)}"
    return Part("changes", Section(title=f"Changes in the next {days}", text="\n".join(lines)), not coming,
                f"no changes in the next {days}", {"count": len(coming)})


def _surveys(ctx: Context, s, digest: Digest, now: datetime, since: datetime) -> Part:
    closed = s.scalars(select(Survey).where(Survey.kind == "pulse", Survey.state == "closed",
                                            Survey.closed_at > since, Survey.closed_at <= now)
                       .order_by(Survey.closed_at)).all()
    still_open = s.scalar(select(func.count()).select_from(Survey)
                          .where(Survey.kind == "pulse", Survey.state == "open")) or 0
    lines = []
    for survey in closed[:SHOWN]:
        results = survey_results.results_of(s, survey)
        shown = ("results hidden: fewer answers than the minimum" if survey_results.hidden(ctx, survey, results)
                 else f"{results.score_name} {results.score_text()}")
        lines.append(f"SRV-{survey.id} “{survey.question}” — {shown}, {survey_results.answers_text(results.answers)}")
    if still_open:
        lines.append(f"{still_open} survey{'s' * (still_open != 1)} open: `survey list`")
    return Part("surveys", Section(title="Surveys", text="\n".join(lines)), not closed and not still_open,
                "no surveys closed or open", {"closed": len(closed), "open": still_open})


def _csi(ctx: Context, s, digest: Digest, now: datetime, since: datetime) -> Part:
    today = now.astimezone(ZoneInfo(digest.timezone)).date()
    items = [i for i in csi.open_items(s, limit=200) if i.due is not None and i.due <= today + CSI_HORIZON]
    open_total = s.scalar(select(func.count()).select_from(CsiItem).where(CsiItem.state == "open")) or 0
    lines = [f"CSI-{i.id} {i.title} — {ctx.config.person_name(i.owner)}, {_due_text(i.due, today)}"
             for i in items[:SHOWN]]
    if lines:
        lines.append(f"{open_total} open in all: `csi list`")
    return Part("csi", Section(title="Improvement actions due", text="\n".join(lines)), not items,
                "no improvement actions due in the next two weeks", {"due": len(items), "open": open_total})


def _knowledge(ctx: Context, s, digest: Digest, now: datetime, since: datetime) -> Part:
    """Articles whose review is overdue (flagged as needing work, or unanswered), and catalogue entries
    whose owner has not confirmed them in time."""
    today = now.astimezone(ZoneInfo(digest.timezone)).date()
    zone = ZoneInfo(digest.timezone)
    articles = reviews.overdue(s, now)
    entries = catalogue_review.overdue(s, now, [svc.id for svc in ctx.config.services])
    lines = [f"KB-{a.id} {a.title} — {ctx.config.person_name(a.owner)}, "
             f"{'needs work' if reviews.flagged(s, a.id) else 'review'} "
             f"{_due_text(a.next_review_at.astimezone(zone).date(), today)}" for a in articles[:SHOWN]]
    if len(articles) > SHOWN:
        lines.append(f"and {len(articles) - SHOWN} more articles overdue for review")
    for entry in entries[:SHOWN]:
        svc = ctx.config.service(entry.service_id)
        lines.append(f"Catalogue entry of {svc.name if svc else entry.service_id} — "
                     f"{'needs change' if entry.needs_change else 'confirmation'} "
                     f"{_due_text(entry.due_at.astimezone(zone).date(), today)}: "
                     f"`catalogue confirm {entry.service_id}`")
    return Part("knowledge", Section(title="Knowledge to keep true", text="\n".join(lines)),
                not articles and not entries, "no knowledge reviews or catalogue confirmations overdue",
                {"articles_overdue": len(articles), "catalogue_overdue": len(entries)})


def _reviews(ctx: Context, s, digest: Digest, now: datetime, since: datetime) -> Part:
    """Post-incident reviews and their follow-up actions overdue or due within two weeks, as the CSI section
    counts them; the overdue first."""
    today = incident_reviews.today(ctx, now)  # due days are the bot zone's, as the register's are
    horizon = today + CSI_HORIZON + timedelta(days=1)
    due = incident_reviews.overdue_reviews(s, horizon)
    actions = incident_reviews.overdue_actions(s, horizon)
    lines = [f"REV-{r.id} of INC-{r.ticket_id} {r.priority} — {ctx.config.person_name(r.owner)}, "
             f"{_due_text(r.due, today)}" for r in due[:SHOWN]]
    lines += [f"CSI-{i.id} {i.title} (REV-{review_id}) — {ctx.config.person_name(i.owner)}, "
              f"{_due_text(i.due, today)}" for review_id, i in actions[:SHOWN]]
    if due or actions:
        lines.append("`review list` · `review list overdue`")
    return Part("reviews", Section(title="Post-incident reviews due", text="\n".join(lines)),
                not due and not actions, "no post-incident reviews or follow-ups due in the next two weeks",
                {"reviews_due": len(due), "reviews_overdue": sum(r.due < today for r in due),
                 "actions_due": len(actions), "actions_overdue": sum(i.due < today for _, i in actions)})


def _due_text(due: date, today: date) -> str:
    if due < today:
        return f"overdue since {due:%d %b}"
    return "due today" if due == today else f"due {due:%a %d %b}"


SECTIONS = {"status": _status, "incidents": _incidents, "breaches": _breaches, "at-risk": _at_risk,
            "approvals": _approvals, "changes": _changes, "surveys": _surveys, "csi": _csi,
            "knowledge": _knowledge, "reviews": _reviews}


# ------------------------------------------------------------------------------------------- the schedule

def _posts(digest: Digest) -> tuple[str, str]:
    # Posts by hand are runs of a job of their own, so that they never take a scheduled slot.
    return job_name(digest), job_name(digest) + ":manual"


def since_last_post(session, digest: Digest, now: datetime) -> datetime:
    """Where "since the last digest" starts: its last post before now (scheduled or sent by hand), else a
    day ago."""
    last = schedule.last_run(session, _posts(digest), ("posted", "late", "manual"), before=now)
    return last.decided_at if last else now - timedelta(days=1)


def sweep(ctx: Context) -> int:
    """Post every digest whose slot has come; returns how many were posted."""
    return sum(schedule.run_due(ctx, job_name(d), d, _poster(ctx, d)) for d in ctx.config.digests)


def _poster(ctx: Context, digest: Digest) -> schedule.Post:
    def post(work: Work, slot: datetime, late_for: datetime | None) -> None:
        reply = compose(ctx, work.session, digest, work.now, since_last_post(work.session, digest, work.now), late_for)
        work.post_to_channel(digest.channel, reply, f"{job_name(digest)}:{slot.isoformat()}", job_name(digest))
    return post


# ------------------------------------------------------------------------------------------- the commands

def find_digest(ctx: Context, name: str | None) -> Digest:
    known = ", ".join(d.name for d in ctx.config.digests) or "none in app.yaml"
    if not name:
        raise UserError(f"Say which digest. Digests: {known}.", EXAMPLE)
    digest = next((d for d in ctx.config.digests if d.name == name.lower()), None)
    if digest is None:
        raise UserError(f"There is no digest '{name}'. Digests: {known}.", EXAMPLE)
    return digest


def digest_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    verb = args[0].lower() if args else "list"
    if verb == "list" and len(args) <= 1:
        return _list(ctx)
    if verb not in ("preview", "send") or len(args) != 2:
        meant = None if verb in ("list", "preview", "send") else nearest(verb, ("list", "preview", "send"))
        raise UserError("Use `digest list`, `digest preview NAME` or `digest send NAME`."
                        + (f" Did you mean `digest {meant}`?" if meant else ""),
                        retyped(f"digest {meant}", args[1:]) if meant else EXAMPLE)
    digest = find_digest(ctx, args[1])
    if verb == "preview":
        return preview(ctx, digest)
    if "service_managers" not in cmd.actor.roles:
        raise Refused("Only service managers can send a digest by hand; `digest preview` shows it to you.")
    return send(ctx, cmd, digest)


def preview(ctx: Context, digest: Digest) -> Reply:
    now = ctx.now()
    with ctx.sessions() as s:
        reply = compose(ctx, s, digest, now, since_last_post(s, digest, now))
    reply.private = True
    reply.footer = " · ".join(x for x in (reply.footer, f"Preview: not posted. It goes to #{digest.channel} "
                                                        f"on `{digest.cron}` ({digest.timezone}).") if x)
    return reply


def send(ctx: Context, cmd: Command, digest: Digest) -> Reply:
    """Post the digest now, outside its schedule; the next scheduled slot still comes."""
    with ctx.change(cmd) as work:
        now = work.now
        reply = compose(ctx, work.session, digest, now, since_last_post(work.session, digest, now))
        # A post by hand is a slot of its own, at now (or just after one made at the same instant).
        job = _posts(digest)[1]
        taken = work.session.scalar(select(func.max(ScheduledRun.slot_at))
                                    .where(ScheduledRun.job == job, ScheduledRun.slot_at >= now))
        run = ScheduledRun(job=job, slot_at=max(now, taken + timedelta(microseconds=1)) if taken else now,
                           outcome="manual", decided_at=now, note=f"sent by {cmd.actor.person_id}")
        work.session.add(run)
        work.session.flush()
        platforms = work.post_to_channel(digest.channel, reply, f"{job_name(digest)}:manual:{run.id}",
                                         job_name(digest))
        work.audit("digest.sent", job_name(digest), channel=digest.channel)
    if not platforms:
        return Reply(title=f"#{digest.channel} is not mapped to Slack or Teams", tone="warning",
                     text="Nothing was posted; map the channel in app.yaml's channels.")
    return Reply(title=f"Digest {digest.name} posted to #{digest.channel}", tone="ok",
                 footer=" and ".join(p.title() for p in platforms))


def _list(ctx: Context) -> Reply:
    if not ctx.config.digests:
        return Reply(title="No digests", text="Add them under `digests:` in app.yaml.")
    now = ctx.now()
    sections = []
    with ctx.sessions() as s:
        for d in ctx.config.digests:
            last = schedule.last_run(s, _posts(d), ("posted", "late", "manual"))
            upcoming = schedule.next_slot(d, now)
            zone = ZoneInfo(d.timezone)
            sections.append(Section(title=f"{d.name} → #{d.channel}", fields=[
                Field("When", f"`{d.cron}` {d.timezone}"),
                Field("Next", f"{upcoming.astimezone(zone):%a %d %b %H:%M %Z}" if upcoming else "never"),
                Field("Last", f"{last.decided_at.astimezone(zone):%a %d %b %H:%M}"
                              f"{' (late)' if last.outcome == 'late' else ' (by hand)' if last.outcome == 'manual' else ''}"
                      if last else "not yet"),
                Field("Sections", ", ".join(d.sections))]))
    return Reply(title="Digests", sections=sections, footer="`digest preview NAME` shows one now")
