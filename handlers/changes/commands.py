"""``change …``: the command word, raising a change (typed or through the form), showing and listing changes."""
from __future__ import annotations

from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.changes import calendar, rules
from handlers.changes.approvals import decide, edit, may_run, move, move_to, override, retract, settle
from handlers.changes.messages import announce, announcement, ask_approvers, ask_override
from handlers.changes.plan import FIELDS, NEW_EXAMPLE, STANDARD_EXAMPLE, plan_from
from handlers.changes.record import KINDS, MOVES, STATE_ICON, find, id_from, number, set_services, votes, window_text
from handlers.core.config import RISKS
from handlers.core.context import (Actor, Button, Choice, Command, Context, Field, Form, FormInvalid, Input, Reply,
                                   Section, UserError, Work, unknown_word)
from handlers.core.words import after_verb, pairs
from storage.models import Change


def change_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    verb = args[0].lower() if args else ""
    rest = args[1:]
    if verb == "new":
        return _new(ctx, cmd)
    if verb in ("list", ""):
        return list_reply(ctx, cmd, rest)
    if verb == "show":
        with ctx.sessions() as s:
            return show_reply(ctx, s, find(s, rest[0] if rest else "", "change show CHG-12"), cmd.actor)
    if verb == "calendar":
        return calendar.calendar_reply(ctx, cmd, rest)
    if verb == "approve":
        return decide(ctx, cmd, id_from(rest, "change approve CHG-12 Looks good"), "approve", " ".join(rest[1:]))
    if verb == "reject":
        return decide(ctx, cmd, id_from(rest, "change reject CHG-12 Clashes with the month-end close"), "reject",
                      " ".join(rest[1:]))
    if verb == "retract":
        kind = rest[1].lower() if len(rest) > 1 else None
        if len(rest) > 2 or kind not in (None, "approve", "reject"):
            raise UserError("Say only which change, like CHG-12.", "change retract CHG-12")
        return retract(ctx, cmd, id_from(rest, "change retract CHG-12"), kind)
    if verb in MOVES:
        change_id, words = id_from(rest, f"change {verb} CHG-12"), rest[1:]
        with_issues = verb == "complete" and bool(words) and words[0].lower() in ("with-issues", "issues")
        return move(ctx, cmd, change_id, verb, " ".join(words[with_issues:]).strip(), with_issues)
    if verb == "override":
        return override(ctx, cmd, id_from(rest, "change override CHG-12 Agreed with the business"), " ".join(rest[1:]))
    if verb == "edit":
        return edit(ctx, cmd, id_from(rest, 'change edit CHG-12 start="tomorrow 20:00" end="tomorrow 22:00"'))
    raise unknown_word("change", args[0], rest, ("new", "list", "show", "calendar", "approve", "reject", "retract",
                                                 *MOVES, "override", "edit"), "change list")


def _new(ctx: Context, cmd: Command) -> Reply:
    values = pairs(after_verb(cmd.text, "new"), NEW_EXAMPLE)
    if not values:
        if cmd.actor.platform in ("slack", "teams"):
            return Reply(title="New request for change", form=new_form(ctx, cmd.actor, {}))
        raise UserError("Give the change's fields as key=value pairs; a standard change needs only its model "
                        f"and start ({STANDARD_EXAMPLE}).", NEW_EXAMPLE)
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise UserError(f"Unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
                        f"Fields: {', '.join(FIELDS)}.", NEW_EXAMPLE)
    return create(ctx, cmd, values, source="chat")[1]


def submit_new(ctx: Context, cmd: Command, values: dict, context: dict) -> Reply:
    """The answers of the new-change form (a Slack modal, a Teams card)."""
    values = {k: v for k, v in values.items() if k in FIELDS}
    if values.get("model"):  # the model says what the change is; the form's other choices do not apply
        values = {k: v for k, v in values.items() if k not in ("title", "services", "risk", "impact", "type")}
    try:
        return create(ctx, cmd, values, source="chat")[1]
    except FormInvalid as exc:
        exc.form = new_form(ctx, cmd.actor, values, exc.errors)
        raise


def new_form(ctx: Context, actor: Actor, values: dict, errors: dict | None = None) -> Form:
    cfg, errors = ctx.config, errors or {}
    people = [Choice(p.id, p.name) for p in cfg.people]
    level = [Choice(r, r) for r in RISKS]
    inputs = [
        Input("title", "Title", hint="a standard change takes its title from its model"),
        Input("services", "Affected services", "multi", [Choice(s.id, s.name) for s in cfg.services]),
        Input("type", "Type", "choice", [Choice(k, k) for k in KINDS], value="normal", required=True),
        Input("model", "Standard change model (for a standard change)", "choice",
              [Choice(m.id, m.title) for m in cfg.changes.models]),
        Input("risk", "Risk", "choice", level, value="medium", required=True),
        Input("impact", "Impact", "choice", level, value="medium"),
        Input("start", "Planned start", required=True, hint=f"YYYY-MM-DD HH:MM, your time ({actor.timezone})"),
        Input("end", "Planned end", hint="YYYY-MM-DD HH:MM; a standard change may leave it out"),
        Input("implementer", "Implementer", "choice", people, value=actor.person_id),
        Input("description", "Description", "long"),
        Input("implementation", "Implementation plan", "long"),
        Input("backout", "Back-out plan", "long", hint="required for normal and emergency changes"),
        Input("test", "Test plan", "long"),
    ]
    for i in inputs:
        if i.id in values and values[i.id] not in (None, ""):
            i.value = values[i.id]
        i.error = errors.get(i.id, "")
    if not cfg.changes.models:
        inputs = [i for i in inputs if i.id != "model"]
    return Form(name="change_new", title="Request for change", inputs=inputs, submit="Submit for approval",
                example=NEW_EXAMPLE)


def create(ctx: Context, cmd: Command, values: dict, source: str, permalink: str | None = None,
           then: Callable[[Work, Change], None] | None = None) -> tuple[int, Reply]:
    """Record and submit a request for change; returns its id and the answer for the requester.
    ``permalink``: the chat message it was raised from; ``then`` runs in the same transaction, last."""
    now = ctx.now()
    plan = plan_from(ctx, cmd.actor, values, now)
    services = plan.pop("services")
    with ctx.change(cmd) as work:
        change = Change(source=source, state="new", requester=cmd.actor.person_id,
                        implementer=plan.pop("implementer", None) or cmd.actor.person_id,
                        created_at=work.now, updated_at=work.now, prompts_sent=[], announcements=[], revision=0,
                        approvals_needed=ctx.config.changes.approvals_needed(plan["kind"], plan["risk"]),
                        permalink=permalink, **plan)
        work.session.add(change)
        work.session.flush()
        set_services(work.session, change, services)
        work.audit("change.created", number(change), via=cmd.via, kind=change.kind, risk=change.risk,
                   services=services, start=change.planned_start.isoformat(), end=change.planned_end.isoformat())
        move_to(work, change, "awaiting-approval")
        announce(work, change)
        ask_approvers(work, change)
        settle(work, change, f"🆕 {cmd.actor.name} submitted it")
        ask_override(work, change)
        if then is not None:
            then(work, change)
        reply = show_reply(ctx, work.session, change, cmd.actor)
        reply.title = f"{number(change)} submitted · {change.title}"
        reply.tone = "ok"
        return change.id, reply


def show_reply(ctx: Context, session: Session, change: Change, actor: Actor) -> Reply:
    zone = actor.timezone
    reply = announcement(ctx, session, change, zone)
    reply.private = True
    plans = [Field(label, text) for label, text in (("Implementation", change.implementation_plan),
                                                    ("Back-out", change.backout_plan), ("Test", change.test_plan)) if text]
    if plans:
        reply.sections.append(Section(title="Plans", fields=plans))
    for_votes = votes(session, change)
    if for_votes:
        reply.sections.append(Section(title="Votes", text="\n".join(
            f"{'👍' if v.decision == 'approve' else '⛔'} {ctx.config.person_name(v.person_id)} ({v.via}, "
            f"{v.at.astimezone(ZoneInfo(zone)):%d %b %H:%M})" + (f": {v.comment}" if v.comment else "")
            for v in for_votes)))
    if change.override:
        o = change.override
        reply.sections.append(Section(title="Override", text=f"{ctx.config.person_name(o['by'])}: {o['reason']}"))
    if change.state == "scheduled" and may_run(ctx, actor.person_id, change):
        reply.buttons = [Button("Start", f"change start {number(change)}", "primary")]
    elif change.state == "in-progress" and may_run(ctx, actor.person_id, change):
        reply.buttons = [Button("Complete", f"change complete {number(change)}", "primary"),
                         Button("Fail", f"change fail {number(change)} Rolled back", "danger")]
    reply.footer = ""
    return reply


def list_reply(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    scope = args[0].lower() if args else "open"
    if scope not in ("open", "mine", "all") or len(args) > 1:
        raise UserError("Say `change list`, `change list mine` or `change list all`.", "change list mine")
    with ctx.sessions() as s:
        query = select(Change).order_by(Change.planned_start.desc() if scope == "all" else Change.planned_start)
        if scope != "all":
            query = query.where(Change.state.in_(rules.HOLDING + ("review",)))
        if scope == "mine":
            me = cmd.actor.person_id
            query = query.where((Change.requester == me) | (Change.implementer == me))
        rows = s.scalars(query.limit(25)).all()
        lines = [f"{STATE_ICON[c.state]} *{number(c)}* {c.title} — {c.state}, {window_text(c, cmd.actor.timezone)}"
                 for c in rows]
    title = {"open": "Open changes", "mine": "Your changes", "all": "Latest changes"}[scope]
    return Reply(title=title, text="\n".join(lines) or "None.", footer="change show CHG-N for one")
