"""A change's life after it is raised: approving, rejecting, overriding a blocked approval, starting,
completing, failing, cancelling, reviewing and editing it.
"""
from __future__ import annotations

from handlers.changes import rules
from handlers.changes.messages import announce, ask_approvers, ask_override, publish, tell_subscribers
from handlers.changes.plan import FIELDS, plan_from
from handlers.changes.record import MOVES, OUTCOME_TEXT, approver_role, find, number, services_of, set_services, votes
from handlers.core.context import Command, Context, Form, FormInvalid, Input, Refused, Reply, UserError, Work
from handlers.core.words import after_verb, pairs
from storage.models import Change, ChangeVote


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
            raise UserError(f"{number(change)} is {change.state}; only a change awaiting approval can be "
                            f"{'approved' if decision == 'approve' else 'rejected'}.",
                            f"change show {number(change)}")
        mine = [v for v in votes(work.session, change) if v.person_id == actor.person_id]
        if mine and mine[-1].decision == decision:
            raise UserError(f"You already {'approved' if decision == 'approve' else 'rejected'} {number(change)}.",
                            f"change show {number(change)}")
        if decision == "approve":
            found = rules.blocking(change, rules.issues(work.session, ctx.config, change,
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
            move_to(work, change, "rejected")
            change.closed_at = work.now
            line = f"⛔ {actor.name} rejected it: {comment}"
        else:
            count = sum(1 for v in votes(work.session, change) if v.decision == "approve")
            line = f"👍 {actor.name} approved ({count} of {change.approvals_needed})" + (f": {comment}" if comment else "")
        settle(work, change, line)
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
            move_to(work, change, "awaiting-approval")
            line += " — approval needed again"
            ask_approvers(work, change)
        settle(work, change, line)
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


def settle(work: Work, change: Change, line: str | None = None) -> None:
    """Schedule the change once it has its approvals and nothing blocks it; then publish the step."""
    if change.state == "awaiting-approval":
        count = sum(1 for v in votes(work.session, change) if v.decision == "approve")
        found = rules.blocking(change, rules.issues(work.session, work.ctx.config, change,
                                                                   services_of(work.session, change)))
        if count >= change.approvals_needed and not found:
            move_to(work, change, "scheduled")
            why = "pre-approved standard change" if change.kind == "standard" else (
                "no approval needed" if not change.approvals_needed else "approved")
            line = (line + "\n" if line else "") + f"📅 Scheduled ({why})"
            tell_subscribers(work, change, "scheduled")
    publish(work, change, line)


def override(ctx: Context, cmd: Command, change_id: int, reason: str) -> Reply:
    if "service_managers" not in cmd.actor.roles:
        raise Refused("Only a service manager (roles.service_managers) can override a change's conflicts, "
                      "freezes and maintenance windows.")
    if not reason.strip():
        raise UserError("An override needs a reason.", f"change override CHG-{change_id} Agreed with the business owner")
    with ctx.change(cmd) as work:
        change = find(work.session, change_id, "change list", lock=True)
        if change.state not in ("awaiting-approval", "scheduled"):
            raise UserError(f"{number(change)} is {change.state}; only a change awaiting approval or scheduled can be "
                            "overridden.",
                            f"change show {number(change)}")
        found = rules.issues(work.session, ctx.config, change, services_of(work.session, change))
        if not rules.blocking(change, found):
            raise UserError(f"Nothing blocks {number(change)}; there is nothing to override.",
                            f"change show {number(change)}")
        change.override = {"by": cmd.actor.person_id, "reason": reason.strip(), "at": work.now.isoformat(),
                           "issues": [i.key for i in found]}
        work.audit("change.override", number(change), via=cmd.via, reason=reason.strip(), issues=[i.key for i in found])
        settle(work, change, f"⚠️ {cmd.actor.name} (service manager) overrode: {'; '.join(i.text for i in found)}. "
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
        move_to(work, change, target)
        if target in ("closed", "cancelled"):
            change.closed_at = work.now
        work.audit(f"change.{verb}", number(change), via=cmd.via, note=note, outcome=change.outcome)
        if verb in ("start", "complete", "fail") or (verb == "cancel" and was == "scheduled"):
            tell_subscribers(work, change, verb)
        publish(work, change, line)
        return Reply(title=f"{number(change)} {_past(verb)}", text=f"{change.title} — now {change.state}.", tone="ok")


def _past(verb: str) -> str:
    return {"start": "started", "complete": "completed", "fail": "failed", "cancel": "cancelled",
            "review": "reviewed"}[verb]


def edit(ctx: Context, cmd: Command, change_id: int) -> Reply:
    example = f'change edit CHG-{change_id} start="tomorrow 20:00" end="tomorrow 22:00"'
    values = pairs(after_verb(cmd.text, f"CHG-?{change_id}"), example)
    allowed = set(FIELDS) - {"type", "model"}
    if not values or set(values) - allowed:
        raise UserError(f"Give the fields to change as key=value pairs ({', '.join(sorted(allowed))}).", example)
    with ctx.change(cmd) as work:
        change = find(work.session, change_id, "change list", lock=True)
        if not may_run(ctx, cmd.actor.person_id, change):
            raise Refused(f"Only {number(change)}'s requester, its implementer or a service manager can edit it.")
        if change.state not in ("awaiting-approval", "scheduled"):
            raise UserError(f"{number(change)} is {change.state}; only a change awaiting approval or scheduled can be "
                            "edited.",
                            f"change show {number(change)}")
        plan = plan_from(ctx, cmd.actor, values, work.now, base=change, example=example)
        plan.pop("kind", None)
        old_services = services_of(work.session, change)
        services = plan.pop("services", old_services)
        before = (change.planned_start, change.planned_end, sorted(old_services))
        for col, value in plan.items():
            setattr(change, col, value)
        change.approvals_needed = ctx.config.changes.approvals_needed(change.kind, change.risk)
        set_services(work.session, change, services)
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
            move_to(work, change, "awaiting-approval")
        if withdrawn:
            line += " — approvals withdrawn"
        if (withdrawn or reopened) and approvals < change.approvals_needed:
            line += "; approval needed again" if withdrawn else " — approval needed"
            ask_approvers(work, change)
        if moved:
            announce(work, change)  # a service added gets its own announcement
        settle(work, change, line)
        if moved:
            ask_override(work, change)
        return Reply(title=f"{number(change)} updated", text=f"Now {change.state}.", tone="ok")


def move_to(work: Work, change: Change, state: str) -> None:
    work.audit("change.state", number(change), was=change.state, state=state)
    change.state = state
    change.state_since = change.updated_at = work.now


