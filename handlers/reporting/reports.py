"""``report …``: the report in chat, posting it (now or on schedule) and the manager's commentary."""
from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import datetime

from sqlalchemy import func, select

from handlers.core.config import ReportSchedule
from handlers.core.context import Button, Command, Context, Field, Refused, Reply, Section, UserError, Work
from handlers.reporting import schedule
from handlers.reporting.report_figures import (ALL, EXAMPLE, _is_month_word, _period, compute, report_data,
                                               resolve_month, resolve_scope)
from handlers.reporting.report_model import (Report, _mark, achieved_text, business_ttr, clock_ttr, credit_line,
                                             duration, goal_text, money, pct, satisfaction_text, target_detail,
                                             target_name, title_of)
from storage.models import ReportComment

POST_EXAMPLE = "report post payments last-month"
COMMENT_EXAMPLE = "report comment payments last-month Both P1 breaches waited on CardLink; CSI-4 follows up"


COMMENT_LIMIT = 2000  # characters; a Slack section holds 3000
SHOWN_IN_CHAT = 10  # breaches and CSI items listed in a chat answer; the files list them all


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
    sections.append(_knowledge_section(report))
    sections += _commercial_sections(report)
    if report.reviews is not None:
        sections.append(_reviews_section(report))
    if report.commentary:
        sections.append(Section(title=f"Commentary — {report.commentary.person}",
                                text=report.commentary.text))
    return Reply(title=title_of(report), sections=sections,
                 footer=f"Months run in {report.timezone} time. `report comment` adds the manager's commentary; "
                        "`svcbot report` exports it as HTML and PDF.")


def _knowledge_section(report: Report) -> Section:
    k = report.knowledge
    lines = [f"*{a.article}* {a.title} — {a.incidents} incident{'s' * (a.incidents != 1)}"
             for a in k.top[:SHOWN_IN_CHAT]]
    lines += [f"⚠️ {s.service}: {s.articles} article{'s' * (s.articles != 1)} overdue for review since "
              f"{s.oldest_due.isoformat()}" for s in k.stale[:SHOWN_IN_CHAT]]
    if k.catalogue_overdue:
        lines.append(f"⚠️ Catalogue entries awaiting confirmation: {', '.join(k.catalogue_overdue)}")
    return Section(title="Knowledge", text="\n".join(lines), fields=[
        Field("Articles linked to incidents", str(k.linked)),
        Field("Resolved with an article", f"{k.resolved_with_article} of {k.resolved}"),
        Field("Reviewed on time", f"{k.reviews_on_time} of {k.reviews_answered}"),
        Field("Unused for a year", str(k.unused))])


def _commercial_sections(report: Report) -> list[Section]:
    """Credits due from suppliers and the economics of each service, where app.yaml gives their terms."""
    out = []
    if report.credits:
        out.append(Section(title="Suppliers: service credits", text="\n".join(
            [credit_line(report, s) for s in report.credits]
            + ["Each rule's amount is rounded half up to the currency's minor unit; the total is at most the cap. "
               "`supplier SUPPLIER MONTH` shows the working."])))
    if report.economics:
        out.append(Section(title="Service delivery economics", text="\n".join(
            f"{e.name}: {money(e.total, e.currency)} a month · {e.resolved} resolved, "
            f"{money(e.per_ticket, e.currency)} per ticket · {e.agreed_hours:,} agreed hours, "
            f"{money(e.per_hour, e.currency)} per hour · SLA clocks met {pct(e.attainment)}"
            for e in report.economics)))
    return out
def _reviews_section(report: Report) -> Section:
    r = report.reviews
    return Section(title="Post-incident reviews", fields=[
        Field("Opened", str(r.opened)), Field("Done on time", f"{r.done_on_time} of {r.done}"),
        Field("Open at month end", str(r.open)), Field("Overdue", str(r.overdue)),
        Field("Follow-ups open", ", ".join(f"{n} {age}" for age, n in r.actions_open_by_age.items()))])


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
    from handlers.reporting import charts  # matplotlib is loaded only when a report is drawn
    report = compute(work.ctx, work.session, scope, month)
    message = dataclasses.replace(report_reply(report), private=False,
                                  images=charts.charts(report))
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
