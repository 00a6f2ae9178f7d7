"""What a change tells people: its announcement (edited in place at every step, with a line in the thread),
the approval requests, the subscribers' notices, and the reminders and prompts that ``sweep`` sends when due.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.changes import rules
from handlers.changes.record import (OUTCOME_TEXT, STATE_ICON, eligible_approvers, number, services_of, votes,
                                     window_text)
from handlers.core.context import SYSTEM, Button, Context, Field, Reply, Section, Work, sweep_due
from handlers.core.dependencies import dependency_graph
from storage.models import Change, OutboxMessage, Subscription


def _channels(ctx: Context, services: list[str]) -> list[str]:
    names = [ctx.config.changes.channel] + [ctx.config.service(s).channel for s in services if ctx.config.service(s)]
    return list(dict.fromkeys(n for n in names if n))


def announced_change(ctx: Context, platform: str, channel: str | None, message_id: str | None) -> int | None:
    """The change whose announcement is this delivered message, if any (for reactions on it)."""
    if not channel or not message_id:
        return None
    with ctx.sessions() as s:
        keys = s.scalars(select(OutboxMessage.dedupe_key).where(
            OutboxMessage.platform == platform, OutboxMessage.platform_message_id == message_id,
            OutboxMessage.platform_channel == channel, OutboxMessage.anchor_key.is_(None))).all()
    for key in keys:
        m = re.match(r"^change:(\d+):announce:", key)
        if m:
            return int(m[1])
    return None


def announce(work: Work, change: Change) -> None:
    """Post the announcement in every channel that does not have it yet."""
    message = announcement(work.ctx, work.session, change)
    have = set(change.announcements)
    new = []
    for name in _channels(work.ctx, services_of(work.session, change)):
        target = work.ctx.config.channels[name]
        for platform in ("slack", "teams"):
            address = getattr(target, platform)
            key = f"change:{change.id}:announce:{platform}:{address}"
            if address and key not in have:
                work.send(platform, "channel", address, message, key, number(change))
                new.append(key)
                have.add(key)
    change.announcements = change.announcements + new


def publish(work: Work, change: Change, line: str | None) -> None:
    """A step happened: edit every announcement in place and add the step to its thread."""
    change.revision += 1
    change.updated_at = work.now
    change.due_at = next_due(work.ctx, change)
    message = announcement(work.ctx, work.session, change)
    for key in change.announcements:
        work.edit(key, message, f"{key}:rev:{change.revision}")
        if line:
            work.reply_in_thread(key, Reply(title=line, private=False), f"{key}:history:{change.revision}")


def ask_approvers(work: Work, change: Change) -> None:
    if change.state != "awaiting-approval" or not change.approvals_needed:
        return
    message = approval_request(work.ctx, work.session, change)
    for pid in eligible_approvers(work.ctx, change):
        work.message_person(pid, message, f"change:{change.id}:ask:{change.revision}:{pid}", number(change))


def ask_override(work: Work, change: Change) -> None:
    """Tell the service managers when governance blocks a change that only they can let through."""
    found = rules.blocking(change, rules.issues(work.session, work.ctx.config, change,
                                                               services_of(work.session, change)))
    if change.state != "awaiting-approval" or not found:
        return
    message = Reply(title=f"{number(change)} needs a service manager's decision",
                    text=f"{change.title}: " + "; ".join(i.text for i in found) + ".", tone="warning",
                    footer=f"To let it through: change override {number(change)} REASON",
                    buttons=[Button("Details", f"change show {number(change)}")])
    for pid in work.ctx.config.roles.service_managers:
        if pid not in (change.requester, change.implementer):
            work.message_person(pid, message, f"change:{change.id}:override:{change.revision}:{pid}", number(change))


def tell_subscribers(work: Work, change: Change, event: str) -> None:
    services = services_of(work.session, change)
    people = work.session.scalars(select(Subscription.person_id).where(Subscription.service_id.in_(services))
                                  .distinct()).all()
    text = {"scheduled": "is planned", "start": "has started", "complete": "is complete",
            "fail": "failed and was rolled back", "cancel": "is cancelled"}[event]
    names = work.ctx.config.service_names(services)
    for pid in people:
        zone = _zone_of(work.ctx, pid)
        message = Reply(title=f"{STATE_ICON[change.state]} Change to {names} {text}",
                        text=f"{number(change)} {change.title}\n{window_text(change, zone)}", private=False,
                        buttons=[Button("Details", f"change show {number(change)}")])
        work.message_person(pid, message, f"change:{change.id}:subscribers:{event}:{change.revision}:{pid}",
                            number(change))


def _zone_of(ctx: Context, person_id: str | None) -> str:
    p = ctx.config.person(person_id) if person_id else None
    return (p.timezone if p and p.timezone else None) or ctx.config.bot.timezone


def announcement(ctx: Context, session: Session, change: Change, zone: str | None = None) -> Reply:
    """The one message per channel that stands for the change, edited as it moves on."""
    services = services_of(session, change)
    current = votes(session, change)
    approvals = [v for v in current if v.decision == "approve"]
    state = change.state + (f" ({OUTCOME_TEXT[change.outcome]})" if change.outcome else "")
    fields = [
        Field("State", f"{STATE_ICON[change.state]} {state}"),
        Field("Type", f"{change.kind}" + (f" ({change.model})" if change.model else "") + f", {change.risk} risk, "
              f"{change.impact} impact"),
        Field("When", window_text(change, zone or ctx.config.bot.timezone)),
        Field("Services", ctx.config.service_names(services)),
        *carries(ctx, services),
        Field("Requester", ctx.config.person_name(change.requester)),
        Field("Implementer", ctx.config.person_name(change.implementer)),
    ]
    if change.approvals_needed or approvals:
        who = ", ".join(ctx.config.person_name(v.person_id) for v in approvals)
        fields.append(Field("Approvals", f"{len(approvals)} of {change.approvals_needed}" + (f": {who}" if who else "")))
    if change.permalink:
        fields.append(Field("Raised from", change.permalink))
    sections = [Section(fields=fields)]
    if change.description:
        sections.insert(0, Section(text=change.description))
    if change.state in rules.HOLDING:
        found = rules.issues(session, ctx.config, change, services)
        blocked = {i.key for i in rules.blocking(change, found)}
        if found:
            lines = [f"{'⛔' if i.key in blocked else '✔️ overridden:'} {i.text}" for i in found]
            if blocked:
                lines.append("Approval is blocked until a service manager overrides.")
            sections.append(Section(title="Governance", text="\n".join(lines)))
    buttons = []
    if change.state == "awaiting-approval" and change.approvals_needed:
        buttons = [Button("Approve", f"change approve {number(change)}", "primary"),
                   Button("Reject", f"change reject {number(change)}", "danger")]
    tone = {"rejected": "error", "cancelled": "warning", "review": "warning", "closed": "ok"}.get(change.state, "info")
    if change.outcome == "failed":
        tone = "error"
    return Reply(title=f"{number(change)} · {change.title}", sections=sections, buttons=buttons, tone=tone,
                 private=False, footer=f"React with :{ctx.config.changes.approve_reaction}: to approve or "
                                       f":{ctx.config.changes.reject_reaction}: to reject"
                 if buttons else f"change show {number(change)} for the history")


def carries(ctx: Context, services: list[str]) -> list[Field]:
    """"Also carries: Web Shop, Mobile App (partly)": the services that depend on the change's own."""
    carried = dependency_graph(ctx.config).carried(services)
    if not carried:
        return []
    return [Field("Also carries", ", ".join(ctx.config.service_names([r.service])
                                            + (" (partly)" if r.impact == "partial" else "") for r in carried))]


def approval_request(ctx: Context, session: Session, change: Change) -> Reply:
    message = announcement(ctx, session, change)
    message.title = f"Your approval is needed: {number(change)} · {change.title}"
    message.footer = ""
    return message


def _prompts(ctx: Context, change: Change) -> list[tuple[str, datetime]]:
    """The reminders and prompts this change's state calls for, keyed by what they are about."""
    policy = ctx.config.changes
    start, end = change.planned_start, change.planned_end
    if change.state == "awaiting-approval" and change.approvals_needed:
        # Every few hours from when it began to wait, until its planned start.
        since = change.state_since or change.updated_at
        base = f"approval:{since.isoformat()}:"
        n = sum(1 for k in change.prompts_sent if k.startswith(base)) + 1
        at = since + n * timedelta(hours=policy.approval_reminder_hours)
        return [(f"{base}{n}", at)] if at < start else []
    if change.state == "scheduled":
        return [(f"start-reminder:{start.isoformat()}", start - timedelta(minutes=policy.reminder_minutes)),
                (f"start-prompt:{start.isoformat()}", start)]
    if change.state == "in-progress":
        return [(f"end-prompt:{end.isoformat()}", end)]
    return []


def next_due(ctx: Context, change: Change) -> datetime | None:
    due = [at for key, at in _prompts(ctx, change) if key not in change.prompts_sent]
    return min(due) if due else None


def sweep(ctx: Context, batch: int = 200) -> int:
    """Send the reminders and prompts that are due; each is sent once however often this runs."""
    return sweep_due(ctx, Change, SYSTEM, _remind, batch)


def _remind(work: Work, change: Change, now: datetime) -> int:
    ctx = work.ctx
    done = list(change.prompts_sent)
    count = 0
    for key, at in _prompts(ctx, change):
        if key in done or at > now:
            continue
        kind = key.split(":")[0]
        late = now - at > timedelta(minutes=30)
        if kind == "approval":
            voted = {v.person_id for v in votes(work.session, change)}
            message = approval_request(ctx, work.session, change)
            message.title = f"Reminder: {message.title}"
            for pid in eligible_approvers(ctx, change):
                if pid not in voted:
                    work.message_person(pid, message, f"change:{change.id}:{key}:{pid}", number(change),
                                        hold_in_quiet_hours=True, supersedes=f"change:{change.id}:approval:",
                                        useful_until=change.planned_start)
        elif kind == "start-reminder":
            if late and now >= change.planned_start:  # the sweep was down: the start prompt says it all
                done.append(key)
                continue
            text = f"{number(change)} {change.title} starts {window_text(change, ctx.config.bot.timezone)}"
            for anchor in change.announcements:
                work.reply_in_thread(anchor, Reply(title=f"⏰ Starting in {ctx.config.changes.reminder_minutes} "
                                                         "minutes", text=text, private=False), f"{anchor}:{key}")
            _prompt(work, change, key, "⏰ Your change starts soon", [])
        elif kind == "start-prompt":
            _prompt(work, change, key, "▶️ Your change is due to start", [
                Button("Start", f"change start {number(change)}", "primary"),
                Button("Cancel", f"change cancel {number(change)}", "danger")])
        elif kind == "end-prompt":
            _prompt(work, change, key, "⏱️ Your change's window has ended: how did it go?", [
                Button("Complete", f"change complete {number(change)}", "primary"),
                Button("Complete with issues", f"change complete {number(change)} with-issues"),
                Button("Failed, rolled back", f"change fail {number(change)} Rolled back", "danger")])
        done.append(key)
        count += 1
        work.audit("change.reminded", number(change), what=kind)
    change.prompts_sent = done
    change.due_at = next_due(ctx, change)
    return count


def _prompt(work: Work, change: Change, key: str, title: str, buttons: list[Button]) -> None:
    zone = _zone_of(work.ctx, change.implementer)
    message = Reply(title=title, text=f"{number(change)} {change.title}\n{window_text(change, zone)}",
                    buttons=buttons, private=False)
    work.message_person(change.implementer or change.requester, message, f"change:{change.id}:{key}", number(change))
