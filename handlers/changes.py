"""Change enablement: requests for change, their approval, their life, and their announcements.

A change moves through a state machine close to ITIL 4:

    new → awaiting-approval → scheduled → in-progress → review → closed
                   ↘ rejected      ↘ cancelled     ↘ closed (successful, nothing to review)

Approvals come from the CAB (emergency changes: the ECAB), as many as app.yaml asks for the change's
type and risk; one rejection rejects; nobody approves a change they requested or implement. Conflicts,
freezes and maintenance windows block approval until a service manager overrides them with a reason.

Each change is announced once per channel; every later step edits those messages in place and adds a
line to their threads. Reminders and prompts fall due on the change row and are sent by ``sweep``.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers import change_rules
from handlers.config import RISKS, Duration
from handlers.core import (Actor, Button, Choice, Command, Context, Field, Form, FormInvalid, Input, Refused, Reply,
                           Section, UserError, Work, sweep_due, unknown_word)
from storage.models import Change, ChangeService, ChangeVote, OutboxMessage, Subscription

log = logging.getLogger("svcbot.changes")

KINDS = ("standard", "normal", "emergency")
STATES = ("new", "awaiting-approval", "scheduled", "in-progress", "review", "closed", "rejected", "cancelled")
OUTCOMES = ("successful", "with-issues", "failed")
# verb → (the states it may be given in, the state it leads to; complete decides for itself)
MOVES = {
    "start": ({"scheduled"}, "in-progress"),
    "complete": ({"in-progress"}, None),  # closed, or review when it needs one
    "fail": ({"in-progress"}, "review"),
    "cancel": ({"new", "awaiting-approval", "scheduled"}, "cancelled"),
    "review": ({"review"}, "closed"),
}
NUMBER = re.compile(r"^CHG-?(\d{1,9})$", re.IGNORECASE)
PAIR = re.compile(r'(\w+)=(?:"([^"]*)"|(\S*))')
MENTION = re.compile(r"^<@([A-Z0-9]+)(?:\|[^>]*)?>$")
AHEAD = re.compile(r"(?:in\s+)?(\d+)\s*(h|hours?|d|days?|w|weeks?)", re.IGNORECASE)
STATE_ICON = {"new": "🆕", "awaiting-approval": "⏳", "scheduled": "📅", "in-progress": "🔧", "review": "🔍",
              "closed": "✅", "rejected": "⛔", "cancelled": "🚫"}
OUTCOME_TEXT = {"successful": "successful", "with-issues": "successful with issues",
                "failed": "failed and rolled back"}
SYSTEM = Actor(person_id="svcbot", name="svcbot", platform="system")

NEW_EXAMPLE = ('change new title="Upgrade the payments database" services=payments type=normal risk=high '
               'start="tomorrow 22:00" end="tomorrow 23:30" implementer=tom backout="Restore the snapshot"')
STANDARD_EXAMPLE = 'change new model=restart-wms-workers start="tomorrow 22:00"'
FIELDS = ("title", "services", "type", "model", "risk", "impact", "start", "end", "implementer", "description",
          "implementation", "backout", "test")


def number(change: Change) -> str:
    return f"CHG-{change.id}"


# ---- commands -----------------------------------------------------------------------------------------

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
        from handlers import change_calendar  # here: change_calendar builds on this module
        return change_calendar.calendar_reply(ctx, cmd, rest)
    if verb == "approve":
        return decide(ctx, cmd, _id(rest, "change approve CHG-12 Looks good"), "approve", " ".join(rest[1:]))
    if verb == "reject":
        return decide(ctx, cmd, _id(rest, "change reject CHG-12 Clashes with the month-end close"), "reject",
                      " ".join(rest[1:]))
    if verb == "retract":
        kind = rest[1].lower() if len(rest) > 1 else None
        if len(rest) > 2 or kind not in (None, "approve", "reject"):
            raise UserError("Say only which change, like CHG-12.", "change retract CHG-12")
        return retract(ctx, cmd, _id(rest, "change retract CHG-12"), kind)
    if verb in MOVES:
        change_id, words = _id(rest, f"change {verb} CHG-12"), rest[1:]
        with_issues = verb == "complete" and bool(words) and words[0].lower() in ("with-issues", "issues")
        return move(ctx, cmd, change_id, verb, " ".join(words[with_issues:]).strip(), with_issues)
    if verb == "override":
        return override(ctx, cmd, _id(rest, "change override CHG-12 Agreed with the business"), " ".join(rest[1:]))
    if verb == "edit":
        return edit(ctx, cmd, _id(rest, 'change edit CHG-12 start="tomorrow 20:00" end="tomorrow 22:00"'))
    raise unknown_word("change", args[0], rest, ("new", "list", "show", "calendar", "approve", "reject", "retract",
                                                 *MOVES, "override", "edit"), "change list")


def _id(rest: list[str], example: str) -> int:
    m = NUMBER.match(rest[0]) if rest else None
    if not m:
        raise UserError("Say which change, like CHG-12.", example)
    return int(m[1])


def find(session: Session, key: str | int, example: str, lock: bool = False) -> Change:
    m = NUMBER.match(key) if isinstance(key, str) else None
    if isinstance(key, str) and not m:
        raise UserError("Say which change, like CHG-12.", example)
    change_id = int(m[1]) if m else key
    query = select(Change).where(Change.id == change_id)
    if lock and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()  # two approvers at once must both be counted
    change = session.scalar(query)
    if change is None:
        raise UserError(f"There is no CHG-{change_id}.", "change list")
    return change


def pairs(text: str, example: str) -> dict[str, str]:
    """key=value and key="several words" pairs of a one-line form; anything else is refused, not dropped."""
    text = text.replace("“", '"').replace("”", '"')
    leftover = PAIR.sub(" ", text).split()
    if leftover:
        raise UserError(f"'{' '.join(leftover)}' is not part of a key=value pair; put a value with spaces in "
                        'quotes: title="Patch the VPN gateways".', example)
    return {m[1].lower(): m[2] if m[2] is not None else m[3] for m in PAIR.finditer(text)}


def _after_verb(text: str, verb: str) -> str:
    m = re.search(rf"\b{verb}\b", text, re.IGNORECASE)
    return text[m.end():] if m else ""


def _new(ctx: Context, cmd: Command) -> Reply:
    values = pairs(_after_verb(cmd.text, "new"), NEW_EXAMPLE)
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


# ---- creating a change ----------------------------------------------------------------------------------

def parse_time(text: str, zone: str, now: datetime) -> datetime:
    """'YYYY-MM-DD HH:MM', ISO 8601 with an offset, or 'today 20:00' / 'tomorrow 09:30'; local to ``zone``."""
    text = text.strip()
    local = ZoneInfo(zone)
    m = re.fullmatch(r"(today|tomorrow)\s+(\d{1,2}):(\d{2})", text, re.IGNORECASE)
    if m:
        day = now.astimezone(local).date() + timedelta(days=1 if m[1].lower() == "tomorrow" else 0)
        try:
            return datetime(day.year, day.month, day.day, int(m[2]), int(m[3]), tzinfo=local).astimezone(ZoneInfo("UTC"))
        except ValueError:
            raise ValueError(f"'{text}' is not a time of day") from None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text}' is not a date and time like YYYY-MM-DD HH:MM or tomorrow 20:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=local)
    return value.astimezone(ZoneInfo("UTC"))


def parse_ahead(text: str) -> timedelta | None:
    """How far ahead 'in 5 days', 'in 2 weeks' or '12 hours' is; None for text that says no such thing."""
    m = AHEAD.fullmatch(text.strip())
    if not m:
        return None
    unit = {"h": "hours", "d": "days", "w": "weeks"}[m[2][0].lower()]
    return timedelta(**{unit: int(m[1])})


def person_of(ctx: Context, text: str) -> str | None:
    """A person id from an id, a name, or a Slack mention."""
    text = text.strip()
    m = MENTION.match(text)
    if m:
        p = ctx.config.person_by_platform("slack", m[1])
        return p.id if p else None
    p = ctx.config.person(text.lower()) or next((p for p in ctx.config.people if p.name.lower() == text.lower()), None)
    return p.id if p else None


def _as_list(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def plan_from(ctx: Context, actor: Actor, values: dict, now: datetime, base: Change | None = None,
              example: str = NEW_EXAMPLE) -> dict:
    """Check a change's fields; returns the columns to set, or raises FormInvalid naming every bad field.
    With ``base`` (an edit), fields not given keep their current values."""
    cfg = ctx.config
    v = {k: (str(x).strip() if not isinstance(x, list) else x) for k, x in values.items() if x not in (None, "")}
    errors: dict[str, str] = {}
    out: dict = {}
    model = None
    if "model" in v:
        model = cfg.changes.model(str(v["model"]).lower())
        if model is None:
            known = ", ".join(m.id for m in cfg.changes.models) or "none are configured"
            errors["model"] = f"no standard change model '{v['model']}' (models: {known})"
    kind = str(v.get("type", "standard" if "model" in v else (base.kind if base else "normal"))).lower()
    if kind not in KINDS:
        errors["type"] = f"'{kind}' is not a type: standard, normal or emergency"
    elif kind == "standard" and "model" not in v and not (base and base.model):
        errors["model"] = "a standard change follows a model from the catalogue: say model=…"
    elif kind != "standard" and "model" in v:
        errors["type"] = "a change that follows a standard model is a standard change"
    out["kind"] = kind
    if model:
        out.update(model=model.id, title=model.title, risk=model.risk, impact=model.impact,
                   implementation_plan=model.implementation, backout_plan=model.backout, test_plan=model.test,
                   description=model.description, services=list(model.services))
    fixed = model or (cfg.changes.model(base.model) if base and base.model else None)
    if fixed:
        for f in ("title", "services", "risk", "impact"):
            if f in v:
                errors[f] = f"comes from the standard model '{fixed.id}'; leave it out"
    if "title" in v and not model:
        if len(v["title"]) > 300:
            errors["title"] = "at most 300 characters"
        out["title"] = v["title"]
    elif not model and not base:
        errors["title"] = "required"
    if "services" in v and not model:
        services, bad = [], []
        for key in _as_list(v["services"]):
            svc = cfg.service(key)
            (services if svc else bad).append(svc.id if svc else key)
        if bad:
            errors["services"] = f"unknown service{'s' if len(bad) > 1 else ''} {', '.join(bad)} " \
                                 f"(services: {', '.join(s.id for s in cfg.services)})"
        elif not services:
            errors["services"] = "name at least one service"
        out["services"] = list(dict.fromkeys(services))
    elif not model and not base:
        errors["services"] = "required: the services the change touches"
    for f in ("risk", "impact"):
        if f in v and not model:
            if v[f].lower() not in RISKS:
                errors[f] = f"'{v[f]}' is not one of low, medium, high"
            out[f] = v[f].lower()
    if "risk" not in out and not base:
        errors.setdefault("risk", "required: low, medium or high")
    if not base:
        out.setdefault("impact", out.get("risk", "medium"))
    for f, col in (("description", "description"), ("implementation", "implementation_plan"),
                   ("backout", "backout_plan"), ("test", "test_plan")):
        if f in v:
            out[col] = v[f]
    for f in ("start", "end"):
        if f in v:
            try:
                out[f"planned_{f}"] = parse_time(v[f], actor.timezone, now)
            except ValueError as exc:
                errors[f] = str(exc)
    start = out.get("planned_start", base.planned_start if base else None)
    end = out.get("planned_end", base.planned_end if base else None)
    if fixed and "end" not in v and start and "planned_start" in out:
        end = out["planned_end"] = start + _length(fixed.duration)
    if start is None and "start" not in errors:
        errors["start"] = "required"
    if end is None and "end" not in errors and not (fixed and "start" in errors):
        errors["end"] = "required"
    if start and end and end <= start:
        errors["end"] = "must be after the start"
    if start and "planned_start" in out and kind != "emergency" and start < now - timedelta(minutes=5):
        errors["start"] = "is in the past (only an emergency change may start at once)"
    if "implementer" in v:
        pid = person_of(ctx, v["implementer"])
        if pid is None:
            errors["implementer"] = f"no person '{v['implementer']}' in app.yaml"
        out["implementer"] = pid
    backout = out.get("backout_plan", base.backout_plan if base else "")
    if kind in ("normal", "emergency") and not backout:
        errors["backout"] = f"{'an' if kind == 'emergency' else 'a'} {kind} change needs a back-out plan"
    if errors:
        raise FormInvalid(errors, example=STANDARD_EXAMPLE if model else example)
    return out


def _length(duration: Duration) -> timedelta:
    # A standard model's duration is how long the work takes, in clock time.
    return timedelta(minutes=duration.minutes or (duration.whole_days or 0) * 24 * 60)


def create(ctx: Context, cmd: Command, values: dict, source: str) -> tuple[int, Reply]:
    """Record and submit a request for change; returns its id and the answer for the requester."""
    now = ctx.now()
    plan = plan_from(ctx, cmd.actor, values, now)
    services = plan.pop("services")
    with ctx.change(cmd) as work:
        change = Change(source=source, state="new", requester=cmd.actor.person_id,
                        implementer=plan.pop("implementer", None) or cmd.actor.person_id,
                        created_at=work.now, updated_at=work.now, prompts_sent=[], announcements=[], revision=0,
                        approvals_needed=ctx.config.changes.approvals_needed(plan["kind"], plan["risk"]), **plan)
        work.session.add(change)
        work.session.flush()
        _set_services(work.session, change, services)
        work.audit("change.created", number(change), via=cmd.via, kind=change.kind, risk=change.risk,
                   services=services, start=change.planned_start.isoformat(), end=change.planned_end.isoformat())
        _to(work, change, "awaiting-approval")
        _announce(work, change)
        _ask_approvers(work, change)
        _settle(work, change, f"🆕 {cmd.actor.name} submitted it")
        _ask_override(work, change)
        reply = show_reply(ctx, work.session, change, cmd.actor)
        reply.title = f"{number(change)} submitted · {change.title}"
        reply.tone = "ok"
        return change.id, reply


def _set_services(session: Session, change: Change, services: list[str]) -> None:
    session.query(ChangeService).filter(ChangeService.change_id == change.id).delete(synchronize_session=False)
    for sid in services:
        session.add(ChangeService(change_id=change.id, service_id=sid, planned_start=change.planned_start,
                                  planned_end=change.planned_end))
    session.flush()


def services_of(session: Session, change: Change) -> list[str]:
    return list(session.scalars(select(ChangeService.service_id).where(ChangeService.change_id == change.id)
                                .order_by(ChangeService.service_id)))


# ---- approvals ----------------------------------------------------------------------------------------

def approver_role(change: Change) -> str:
    return "emergency_cab" if change.kind == "emergency" else "cab"


def votes(session: Session, change: Change) -> list[ChangeVote]:
    return list(session.scalars(select(ChangeVote).where(ChangeVote.change_id == change.id,
                                                         ChangeVote.withdrawn_at.is_(None))
                                .order_by(ChangeVote.id)))


def decide(ctx: Context, cmd: Command, change_id: int, decision: str, comment: str) -> Reply:
    actor = cmd.actor
    comment = comment.strip()
    if decision == "reject" and not comment:
        if cmd.via == "reaction":
            comment = "Rejected with a reaction on the announcement"
        elif actor.platform in ("slack", "teams"):
            return Reply(title=f"Reject CHG-{change_id}", form=Form(
                name="change_reject", title=f"Reject CHG-{change_id}", submit="Reject",
                inputs=[Input("reason", "Why is it rejected?", "long", required=True)],
                context={"change": change_id}, example=f"change reject CHG-{change_id} REASON"))
        else:
            raise UserError("A rejection needs a reason.", f"change reject CHG-{change_id} Clashes with the month-end close")
    with ctx.change(cmd) as work:
        change = find(work.session, change_id, "change list", lock=True)
        role = approver_role(change)
        board = "the ECAB (roles.emergency_cab)" if role == "emergency_cab" else "the CAB (roles.cab)"
        if actor.person_id in (change.requester, change.implementer):
            raise Refused(f"You {'requested' if actor.person_id == change.requester else 'implement'} "
                          f"{number(change)}: someone else must approve or reject it.")
        if actor.person_id not in getattr(ctx.config.roles, role):
            raise Refused(f"Only members of {board} can {decision} a{'n emergency' if role == 'emergency_cab' else ''} "
                          f"change like {number(change)}; your {'reaction' if cmd.via == 'reaction' else 'vote'} "
                          "was not counted.")
        if change.state != "awaiting-approval":
            raise UserError(f"{number(change)} is {change.state}; there is nothing to {decision}.",
                            f"change show {number(change)}")
        mine = [v for v in votes(work.session, change) if v.person_id == actor.person_id]
        if mine and mine[-1].decision == decision:
            raise UserError(f"You already {'approved' if decision == 'approve' else 'rejected'} {number(change)}.",
                            f"change show {number(change)}")
        if decision == "approve":
            found = change_rules.blocking(change, change_rules.issues(work.session, ctx.config, change,
                                                                       services_of(work.session, change)))
            if found:
                raise UserError(f"{number(change)} cannot be approved yet: it is "
                                + "; ".join(i.text for i in found)
                                + ". A service manager must accept this first.",
                                f"change override {number(change)} Agreed with the business owner")
        for v in mine:
            v.withdrawn_at = work.now
        work.session.add(ChangeVote(change_id=change.id, person_id=actor.person_id, decision=decision,
                                    comment=comment, via=cmd.via, platform=actor.platform, at=work.now))
        work.session.flush()
        work.audit(f"change.{decision}", number(change), via=cmd.via, comment=comment)
        if decision == "reject":
            _to(work, change, "rejected")
            change.closed_at = work.now
            line = f"⛔ {actor.name} rejected it: {comment}"
        else:
            count = sum(1 for v in votes(work.session, change) if v.decision == "approve")
            line = f"👍 {actor.name} approved ({count} of {change.approvals_needed})" + (f": {comment}" if comment else "")
        _settle(work, change, line)
        return Reply(title=f"{'Approved' if decision == 'approve' else 'Rejected'} {number(change)}",
                     text=f"{change.title} — now {change.state}.", tone="ok")


def retract(ctx: Context, cmd: Command, change_id: int, kind: str | None = None) -> Reply:
    """Take back one's approval of a change that has not started (``kind``: only a vote of that kind, as a
    removed reaction says). A rejection stands: it ended the change."""
    with ctx.change(cmd) as work:
        change = find(work.session, change_id, "change list", lock=True)
        mine = [v for v in votes(work.session, change) if v.person_id == cmd.actor.person_id
                and kind in (None, v.decision)]
        if not mine:
            if cmd.via == "reaction":  # a reaction that never counted takes nothing back, and says nothing
                return Reply(title=f"No vote on {number(change)} to take back")
            raise UserError(f"You have no vote on {number(change)} to take back.", f"change show {number(change)}")
        if mine[-1].decision == "reject":
            raise UserError(f"Your rejection ended {number(change)}, and a rejection cannot be taken back; "
                            "submit the change again instead.", "change new")
        if change.state not in ("awaiting-approval", "scheduled"):
            raise UserError(f"{number(change)} is {change.state}; an approval can be taken back only before "
                            "the change starts.", f"change show {number(change)}")
        mine[-1].withdrawn_at = work.now
        work.audit("change.retract", number(change), via=cmd.via)
        approvals = sum(1 for v in votes(work.session, change) if v.decision == "approve")
        line = f"↩️ {cmd.actor.name} took back their approval ({approvals} of {change.approvals_needed})"
        if change.state == "scheduled" and approvals < change.approvals_needed:
            _to(work, change, "awaiting-approval")
            line += " — approval needed again"
            _ask_approvers(work, change)
        _settle(work, change, line)
        return Reply(title=f"Approval of {number(change)} taken back", text=f"{change.title} — now {change.state}.",
                     tone="ok")


def submit_reject(ctx: Context, cmd: Command, values: dict, context: dict) -> Reply:
    reason = str(values.get("reason") or "").strip()
    change_id = context.get("change")
    if not isinstance(change_id, int):
        raise UserError("This form lost track of its change; use the command instead.", "change reject CHG-12 REASON")
    if not reason:
        raise FormInvalid({"reason": "required"})
    return decide(ctx, cmd, change_id, "reject", reason)


def _settle(work: Work, change: Change, line: str | None = None) -> None:
    """Schedule the change once it has its approvals and nothing blocks it; then publish the step."""
    if change.state == "awaiting-approval":
        count = sum(1 for v in votes(work.session, change) if v.decision == "approve")
        found = change_rules.blocking(change, change_rules.issues(work.session, work.ctx.config, change,
                                                                   services_of(work.session, change)))
        if count >= change.approvals_needed and not found:
            _to(work, change, "scheduled")
            why = "pre-approved standard change" if change.kind == "standard" else (
                "no approval needed" if not change.approvals_needed else "approved")
            line = (line + "\n" if line else "") + f"📅 Scheduled ({why})"
            _tell_subscribers(work, change, "scheduled")
    _publish(work, change, line)


def override(ctx: Context, cmd: Command, change_id: int, reason: str) -> Reply:
    if "service_managers" not in cmd.actor.roles:
        raise Refused("Only a service manager (roles.service_managers) can override a change's conflicts, "
                      "freezes and maintenance windows.")
    if not reason.strip():
        raise UserError("An override needs a reason.", f"change override CHG-{change_id} Agreed with the business owner")
    with ctx.change(cmd) as work:
        change = find(work.session, change_id, "change list", lock=True)
        if change.state not in ("awaiting-approval", "scheduled"):
            raise UserError(f"{number(change)} is {change.state}; only a change still to run can be overridden.",
                            f"change show {number(change)}")
        found = change_rules.issues(work.session, ctx.config, change, services_of(work.session, change))
        if not change_rules.blocking(change, found):
            raise UserError(f"Nothing blocks {number(change)}; there is nothing to override.",
                            f"change show {number(change)}")
        change.override = {"by": cmd.actor.person_id, "reason": reason.strip(), "at": work.now.isoformat(),
                           "issues": [i.key for i in found]}
        work.audit("change.override", number(change), via=cmd.via, reason=reason.strip(), issues=[i.key for i in found])
        _settle(work, change, f"⚠️ {cmd.actor.name} (service manager) overrode: {'; '.join(i.text for i in found)}. "
                              f"Reason: {reason.strip()}")
        return Reply(title=f"Overrode {number(change)}", text=f"Now {change.state}.", tone="ok")


# ---- its life -----------------------------------------------------------------------------------------

def may_run(ctx: Context, person_id: str, change: Change) -> bool:
    return person_id in (change.requester, change.implementer) or "service_managers" in ctx.roles_of(person_id)


def move(ctx: Context, cmd: Command, change_id: int, verb: str, note: str = "", with_issues: bool = False) -> Reply:
    """start, complete, fail, cancel or review a change, with a note for its history."""
    if verb in ("fail", "review") and not note:
        raise UserError(f"Say what happened: `change {verb}` needs a note.",
                        f"change {verb} CHG-{change_id} " + ("Rolled back: the migration timed out" if verb == "fail"
                                                             else "Reviewed at CAB; lessons recorded"))
    with ctx.change(cmd) as work:
        change = find(work.session, change_id, "change list", lock=True)
        allowed, target = MOVES[verb]
        if verb == "review":
            if not ({"service_managers", "cab"} & cmd.actor.roles):
                raise Refused("Only a service manager or a CAB member closes a change's review.")
        elif not may_run(ctx, cmd.actor.person_id, change):
            raise Refused(f"Only {number(change)}'s requester, its implementer or a service manager can "
                          f"{verb} it.")
        if change.state not in allowed:
            raise UserError(f"{number(change)} is {change.state}: it cannot be {_past(verb)} "
                            f"(only when {' or '.join(sorted(allowed))}).", f"change show {number(change)}")
        if verb == "start":
            change.actual_start = work.now
            line = f"🔧 {cmd.actor.name} started the work"
        elif verb in ("complete", "fail"):
            change.actual_end = work.now
            change.outcome = "failed" if verb == "fail" else ("with-issues" if with_issues else "successful")
            # Emergency and failed changes, and those with issues, are reviewed before they close.
            needs_review = change.kind == "emergency" or change.outcome != "successful"
            target = "review" if needs_review else "closed"
            line = f"{'❌' if verb == 'fail' else '🏁'} {cmd.actor.name}: {OUTCOME_TEXT[change.outcome]}" + \
                   (" — review needed" if needs_review else "")
        elif verb == "cancel":
            line = f"🚫 {cmd.actor.name} cancelled it"
        else:
            line = f"🔍 {cmd.actor.name} closed the review"
        if note:
            line += f": {note}"
        was = change.state
        _to(work, change, target)
        if target in ("closed", "cancelled"):
            change.closed_at = work.now
        work.audit(f"change.{verb}", number(change), via=cmd.via, note=note, outcome=change.outcome)
        if verb in ("start", "complete", "fail") or (verb == "cancel" and was == "scheduled"):
            _tell_subscribers(work, change, verb)
        _publish(work, change, line)
        return Reply(title=f"{number(change)} {_past(verb)}", text=f"{change.title} — now {change.state}.", tone="ok")


def _past(verb: str) -> str:
    return {"start": "started", "complete": "completed", "fail": "failed", "cancel": "cancelled",
            "review": "reviewed"}[verb]


def edit(ctx: Context, cmd: Command, change_id: int) -> Reply:
    example = f'change edit CHG-{change_id} start="tomorrow 20:00" end="tomorrow 22:00"'
    values = pairs(_after_verb(cmd.text, f"CHG-?{change_id}"), example)
    allowed = set(FIELDS) - {"type", "model"}
    if not values or set(values) - allowed:
        raise UserError(f"Give the fields to change as key=value pairs ({', '.join(sorted(allowed))}).", example)
    with ctx.change(cmd) as work:
        change = find(work.session, change_id, "change list", lock=True)
        if not may_run(ctx, cmd.actor.person_id, change):
            raise Refused(f"Only {number(change)}'s requester, its implementer or a service manager can edit it.")
        if change.state not in ("awaiting-approval", "scheduled"):
            raise UserError(f"{number(change)} is {change.state}; only a change still to run can be edited.",
                            f"change show {number(change)}")
        plan = plan_from(ctx, cmd.actor, values, work.now, base=change, example=example)
        plan.pop("kind", None)
        old_services = services_of(work.session, change)
        services = plan.pop("services", old_services)
        before = (change.planned_start, change.planned_end, sorted(old_services))
        for col, value in plan.items():
            setattr(change, col, value)
        change.approvals_needed = ctx.config.changes.approvals_needed(change.kind, change.risk)
        _set_services(work.session, change, services)
        moved = before != (change.planned_start, change.planned_end, sorted(services))
        work.audit("change.edited", number(change), via=cmd.via, fields=sorted(values), replanned=moved)
        line = f"✏️ {cmd.actor.name} edited {', '.join(sorted(values))}"
        # A plan approved for other dates or services is a different plan, and nobody's approval counts
        # for a change they now request or implement: ask again.
        withdrawn = [v for v in votes(work.session, change) if v.decision == "approve"
                     and (moved or v.person_id in (change.requester, change.implementer))]
        for v in withdrawn:
            v.withdrawn_at = work.now
        if moved:
            change.override = None
        approvals = sum(1 for v in votes(work.session, change) if v.decision == "approve")
        reopened = change.state == "scheduled" and (withdrawn or moved or approvals < change.approvals_needed)
        if reopened:
            _to(work, change, "awaiting-approval")
        if withdrawn:
            line += " — approvals withdrawn"
        if (withdrawn or reopened) and approvals < change.approvals_needed:
            line += "; approval needed again" if withdrawn else " — approval needed"
            _ask_approvers(work, change)
        if moved:
            _announce(work, change)  # a service added gets its own announcement
        _settle(work, change, line)
        if moved:
            _ask_override(work, change)
        return Reply(title=f"{number(change)} updated", text=f"Now {change.state}.", tone="ok")


def _to(work: Work, change: Change, state: str) -> None:
    work.audit("change.state", number(change), was=change.state, state=state)
    change.state = state
    change.state_since = change.updated_at = work.now


# ---- announcements and messages -----------------------------------------------------------------------

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


def _announce(work: Work, change: Change) -> None:
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


def _publish(work: Work, change: Change, line: str | None) -> None:
    """A step happened: edit every announcement in place and add the step to its thread."""
    change.revision += 1
    change.updated_at = work.now
    change.due_at = next_due(work.ctx, change)
    message = announcement(work.ctx, work.session, change)
    for key in change.announcements:
        work.edit(key, message, f"{key}:rev:{change.revision}")
        if line:
            work.reply_in_thread(key, Reply(title=line, private=False), f"{key}:history:{change.revision}")


def _ask_approvers(work: Work, change: Change) -> None:
    if change.state != "awaiting-approval" or not change.approvals_needed:
        return
    message = approval_request(work.ctx, work.session, change)
    for pid in eligible_approvers(work.ctx, change):
        work.message_person(pid, message, f"change:{change.id}:ask:{change.revision}:{pid}", number(change))


def _ask_override(work: Work, change: Change) -> None:
    """Tell the service managers when governance blocks a change that only they can let through."""
    found = change_rules.blocking(change, change_rules.issues(work.session, work.ctx.config, change,
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


def eligible_approvers(ctx: Context, change: Change) -> list[str]:
    return [p for p in getattr(ctx.config.roles, approver_role(change)) if p not in (change.requester, change.implementer)]


def _tell_subscribers(work: Work, change: Change, event: str) -> None:
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


def window_text(change: Change, zone: str) -> str:
    z = ZoneInfo(zone)
    start, end = change.planned_start.astimezone(z), change.planned_end.astimezone(z)
    end_fmt = "%H:%M %Z" if end.date() == start.date() else "%a %d %b %H:%M %Z"
    # Across a clock change the two ends are in different offsets: name both.
    start_fmt = "%a %d %b %Y %H:%M" + (" %Z" if start.tzname() != end.tzname() else "")
    return f"{start:{start_fmt}} – {end:{end_fmt}}"


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
        Field("Requester", ctx.config.person_name(change.requester)),
        Field("Implementer", ctx.config.person_name(change.implementer)),
    ]
    if change.approvals_needed or approvals:
        who = ", ".join(ctx.config.person_name(v.person_id) for v in approvals)
        fields.append(Field("Approvals", f"{len(approvals)} of {change.approvals_needed}" + (f": {who}" if who else "")))
    sections = [Section(fields=fields)]
    if change.description:
        sections.insert(0, Section(text=change.description))
    if change.state in change_rules.HOLDING:
        found = change_rules.issues(session, ctx.config, change, services)
        blocked = {i.key for i in change_rules.blocking(change, found)}
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


def approval_request(ctx: Context, session: Session, change: Change) -> Reply:
    message = announcement(ctx, session, change)
    message.title = f"Your approval is needed: {number(change)} · {change.title}"
    message.footer = ""
    return message


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
            query = query.where(Change.state.in_(change_rules.HOLDING + ("review",)))
        if scope == "mine":
            me = cmd.actor.person_id
            query = query.where((Change.requester == me) | (Change.implementer == me))
        rows = s.scalars(query.limit(25)).all()
        lines = [f"{STATE_ICON[c.state]} *{number(c)}* {c.title} — {c.state}, {window_text(c, cmd.actor.timezone)}"
                 for c in rows]
    title = {"open": "Open changes", "mine": "Your changes", "all": "Latest changes"}[scope]
    return Reply(title=title, text="\n".join(lines) or "None.", footer="change show CHG-N for one")


# ---- reminders and prompts ----------------------------------------------------------------------------

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
