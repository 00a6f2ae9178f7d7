"""A problem as it is stored: its number, rights, incidents, recurrence and impact."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from handlers.core.business_time import BusinessCalendar
from handlers.core.context import Actor, Context, Refused, Reply, UserError, Work
from storage.models import Problem, ProblemIncident, SlaClock, Ticket

STATES = ("open", "known-error", "resolved")
NUMBER = re.compile(r"^PRB-?(\d{1,9})$", re.IGNORECASE)
INCIDENT = re.compile(r"^INC-?(\d{1,9})$", re.IGNORECASE)
RECURRENCE = timedelta(days=30)  # an incident opened this soon after the fix is the problem again


def number(problem: Problem | int) -> str:
    return f"PRB-{problem if isinstance(problem, int) else problem.id}"


def find(session: Session, key: str, example: str, lock: bool = False) -> Problem:
    m = NUMBER.match(key or "")
    if not m:
        raise UserError("Say which problem, like PRB-3." if not key else f"'{key}' is not a problem, like PRB-3.",
                        example)
    query = select(Problem).where(Problem.id == int(m[1]))
    if lock and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    problem = session.scalar(query)
    if problem is None:
        raise UserError(f"There is no PRB-{m[1]}.", "problem list")
    return problem


def may_run(ctx: Context, person_id: str, services: list[str], owner: str | None = None) -> bool:
    """Service managers, the owners of its services, and its own owner."""
    if "service_managers" in ctx.roles_of(person_id) or (owner is not None and person_id == owner):
        return True
    return any((svc := ctx.config.service(sid)) is not None and svc.owner == person_id for sid in services)


def refuse_unless_runs(ctx: Context, actor: Actor, problem: Problem, what: str) -> None:
    if not may_run(ctx, actor.person_id, problem.services, problem.owner):
        raise Refused(f"Only {number(problem)}'s owner, the owners of its services "
                      f"({ctx.config.service_names(problem.services) or 'none'}) or a service manager can {what} it.")


def move(work: Work, problem: Problem, state: str, **detail) -> None:
    """Into ``state``, audited with what led there."""
    before = problem.state
    problem.state, problem.updated_at = state, work.now
    work.audit(f"problem.{state}", number(problem), before=before, after=state, **detail)


def tickets_of(session: Session, problem_id: int) -> list[Ticket]:
    return list(session.scalars(select(Ticket).join(ProblemIncident, ProblemIncident.ticket_id == Ticket.id)
                                .where(ProblemIncident.problem_id == problem_id).order_by(Ticket.opened_at, Ticket.id)))


@dataclass
class Linked:
    ticket: Ticket
    new: bool  # not linked before
    reopened: bool  # a recurrence: the resolved problem is open again


def link(work: Work, problem: Problem, ticket: Ticket, via: str) -> Linked:
    """Link an incident to the problem, once; a recurrence reopens the problem and tells its owner. The caller
    announces the known error (``known_errors.on_link``) in the same transaction."""
    if ticket.kind != "incident":
        raise UserError(f"INC-{ticket.id} is a {ticket.kind}; only incidents have a problem behind them.",
                        f"incident show INC-{ticket.id}")
    held = work.session.get(ProblemIncident, ticket.id)
    if held is not None:
        if held.problem_id == problem.id:
            return Linked(ticket, False, False)
        raise UserError(f"INC-{ticket.id} is already an incident of PRB-{held.problem_id}; an incident has one "
                        "cause. Unlink it there first.", f"problem unlink PRB-{held.problem_id} INC-{ticket.id}")
    reopened = False
    if problem.state == "resolved":
        fixed = problem.resolved_at
        if ticket.opened_at > fixed + RECURRENCE:
            raise UserError(f"{number(problem)} was resolved on {fixed:%Y-%m-%d}, more than {RECURRENCE.days} days "
                            f"before INC-{ticket.id} opened: that is a new problem, not this one coming back.",
                            f'problem new title="{problem.title}" services={",".join(problem.services)}')
        reopened = ticket.opened_at >= fixed  # an incident from before the fix is history, not a recurrence
    work.session.add(ProblemIncident(ticket_id=ticket.id, problem_id=problem.id, via=via, at=work.now,
                                     person_id=work.actor.person_id if work.actor else None, workaround_told=False))
    if ticket.service_id not in problem.services:
        problem.services = [*problem.services, ticket.service_id]
    problem.updated_at = work.now
    work.audit("problem.link", number(problem), incident=f"INC-{ticket.id}", via=via)
    if reopened:
        _reopen(work, problem, ticket)
    return Linked(ticket, True, reopened)


def _reopen(work: Work, problem: Problem, ticket: Ticket) -> None:
    fix = problem.fix_change_id
    problem.reopened += 1
    problem.fix_change_id, problem.resolved_at = None, None
    move(work, problem, "known-error" if problem.workaround else "open", recurrence=f"INC-{ticket.id}",
         fix_was=f"CHG-{fix}" if fix else None)
    for person in owners_to_tell(work.ctx, problem):
        work.message_person(person, Reply(
            title=f"🔁 {number(problem)} is back: INC-{ticket.id} came after its fix",
            text=f"{problem.title}\nINC-{ticket.id}: {ticket.title}\n"
                 f"{f'It was fixed by CHG-{fix}; ' if fix else ''}it is {problem.state} again.",
            tone="warning"), f"problem:{problem.id}:recurrence:{ticket.id}", number(problem))


def owners_to_tell(ctx: Context, problem: Problem) -> list[str]:
    """Its owner; without one, the owners of its services."""
    if problem.owner:
        return [problem.owner]
    return list(dict.fromkeys(svc.owner for sid in problem.services if (svc := ctx.config.service(sid))))


def unlink(work: Work, problem: Problem, ticket_id: int) -> bool:
    held = work.session.get(ProblemIncident, ticket_id)
    if held is None or held.problem_id != problem.id:
        return False
    work.session.delete(held)
    problem.updated_at = work.now
    work.audit("problem.unlink", number(problem), incident=f"INC-{ticket_id}")
    return True


# ---- impact --------------------------------------------------------------------------------------------

@dataclass
class Impact:
    incidents: int
    still_open: int
    business_seconds: float  # each incident open → resolved (or now) on its service's calendar, summed
    clock_seconds: float
    breaches: int  # clocks of its incidents that breached


def impact(ctx: Context, session: Session, problem_id: int, now: datetime) -> Impact:
    tickets = tickets_of(session, problem_id)
    calendars: dict[str, BusinessCalendar] = {}
    business = clock = 0.0
    still_open = 0
    for t in tickets:
        end = t.resolved_at or t.closed_at or now
        still_open += t.resolved_at is None and t.closed_at is None
        service = ctx.config.service(t.service_id)
        if service is not None and end > t.opened_at:
            cal = calendars.get(service.calendar)
            if cal is None:
                cal = calendars[service.calendar] = BusinessCalendar(ctx.config.calendars[service.calendar])
            business += cal.business_seconds(t.opened_at, end)
        clock += max((end - t.opened_at).total_seconds(), 0.0)
    breaches = session.scalar(select(func.count()).select_from(SlaClock).where(
        SlaClock.ticket_id.in_([t.id for t in tickets]), SlaClock.breached.is_(True))) if tickets else 0
    return Impact(len(tickets), still_open, business, clock, breaches or 0)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def personal_data(session: Session, person_id: str) -> dict:
    """For ``svcbot gdpr export``: the problems a person owns or opened, and the incidents they linked to one.
    Kept on erasure, as every governance record is."""
    problems = session.execute(select(Problem.id, Problem.title, Problem.owner, Problem.created_by).where(
        (Problem.owner == person_id) | (Problem.created_by == person_id)).order_by(Problem.id)).all()
    links = session.execute(select(ProblemIncident.problem_id, ProblemIncident.ticket_id, ProblemIncident.at)
                            .where(ProblemIncident.person_id == person_id).order_by(ProblemIncident.at)).all()
    return {"problems": [{"problem": number(i), "title": t, "owner": o == person_id, "opened_it": c == person_id}
                         for i, t, o, c in problems],
            "incidents_linked_to_problems": [{"problem": number(p), "ticket": f"INC-{t}", "at": at.isoformat()}
                                             for p, t, at in links]}
