"""Follow the sun: at the end of each shift of a group with ``handover_to``, a handover (``HND-N``) to the
next group's channel, with a *Take over* button; ``handover preview GROUP``, ``handover take HND-N``.

Exactly once: the handover row is unique per group and shift end, and commits with its outbox rows or not
at all, so however many sweeps or replicas see the shift end, one posts it. A shift end missed while svcbot
was stopped is posted late, saying so, within ``GRACE``; an older one is not news any more.

Taking over is one transaction: the row is claimed by an update that only succeeds while nobody has taken
it, then each listed ticket still open and still the sender's gets an ``assign`` event to the receiving
group (so its OLA clocks follow), the clocks are measured again, and it is audited. A second press, here
or on another replica, is told who took it over. A handover with tickets that nobody takes over within
``ESCALATE_AFTER`` goes to the service managers by direct message, once (``sweep_due``).
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from handlers.core import on_shift
from handlers.core.context import (SYSTEM, Command, Context, Field, Refused, Reply, Section, UserError, Work,
                                   nearest, sweep_due, unknown_word)
from handlers.shifts import content as contents
from handlers.sla import breaches, tickets
from handlers.sla.clocks import OPEN_STATES
from storage.models import Handover, ScheduledRun, Ticket

log = logging.getLogger("svcbot")

GRACE = timedelta(hours=2)
ON_TIME = timedelta(minutes=1)
ESCALATE_AFTER = timedelta(hours=1)
NUMBER = re.compile(r"^HND-?(\d{1,9})$", re.IGNORECASE)
PREVIEW_EXAMPLE = "handover preview payments-eng"
TAKE_EXAMPLE = "handover take HND-12"


def number(handover: Handover) -> str:
    return f"HND-{handover.id}"


def key_of(handover_id: int) -> str:
    return f"handover:{handover_id}"


# ------------------------------------------------------------------------------------------- the sweep

def sweep(ctx: Context) -> int:
    """Post every handover owed now, then send on those not taken over in time; returns how many."""
    return post_due(ctx) + sweep_due(ctx, Handover, SYSTEM, _escalate)


def post_due(ctx: Context) -> int:
    now = ctx.now()
    done = 0
    for group in ctx.config.groups:
        if group.handover_to:
            since = max(now - GRACE, _first_seen(ctx, group.id, now))
            for shift_end in on_shift.shift_ends(ctx.config, group, since, now):
                done += _post(ctx, group, shift_end, now)
    return done


def _first_seen(ctx: Context, group_id: str, now: datetime) -> datetime:
    """Since when this store owes the group's handovers. As with digests (handlers/reporting/schedule.py),
    a new install or a handover just configured owes none for shifts that ended before it was first seen,
    save one that ended within a sweep before."""
    job = f"handover:{group_id}"
    query = select(ScheduledRun.slot_at).where(ScheduledRun.job == job, ScheduledRun.outcome == "start")
    with ctx.reader() as session:
        since = session.scalar(query.order_by(ScheduledRun.slot_at).limit(1))
    if since is not None:
        return since
    try:
        with ctx.sessions.begin() as session:
            session.add(ScheduledRun(job=job, slot_at=now - ON_TIME, outcome="start", decided_at=now,
                                     note="first seen; handovers of earlier shift ends are not owed"))
    except IntegrityError:
        pass  # another replica saw it first, in the same instant
    return now - ON_TIME


def _post(ctx: Context, group, shift_end: datetime, now: datetime) -> int:
    try:
        with ctx.sessions.begin() as session:
            if session.scalar(select(Handover.id).where(Handover.from_group == group.id,
                                                        Handover.shift_end == shift_end)) is not None:
                return 0
            handover = Handover(from_group=group.id, to_group=group.handover_to, shift_end=shift_end,
                                posted_at=now, tickets=[], taken_tickets=[])
            session.add(handover)
            session.flush()  # a replica that posted this handover first makes this fail here, before any row
            work = Work(ctx, session, SYSTEM)
            content = contents.build(ctx, session, group, shift_end, now)
            handover.tickets = content.tickets
            handover.due_at = now + ESCALATE_AFTER if content.tickets else None
            late = now - shift_end > ON_TIME
            reply = contents.describe(ctx, content, number(handover), shift_end if late else None)
            work.post_to_channel(content.receiver.channel, reply, key_of(handover.id), number(handover))
            work.audit("handover.posted", number(handover), from_group=group.id, to_group=group.handover_to,
                       shift_end=shift_end.isoformat(), tickets=content.tickets, late=late)
    except IntegrityError:
        log.info("handover of %s at %s was posted by another replica", group.id, shift_end.isoformat())
        return 0
    ctx.on_outbox()
    return 1


def _escalate(work: Work, handover: Handover, now: datetime) -> int:
    handover.due_at = None
    if handover.taken_by or handover.escalated_at:
        return 0
    handover.escalated_at = now
    config = work.ctx.config
    sender, receiver = config.group(handover.from_group), config.group(handover.to_group)
    reply = Reply(title=f"⏰ {number(handover)} not taken over", tone="warning", private=False,
                  text=f"{_name(sender, handover.from_group)} handed over {len(handover.tickets)} ticket"
                       f"{'s' * (len(handover.tickets) != 1)} to {_name(receiver, handover.to_group)} at "
                       f"{handover.posted_at:%H:%M} UTC, and nobody has taken them over.",
                  sections=[Section(fields=[Field("Tickets", ", ".join(f"INC-{t}" for t in handover.tickets))])],
                  footer=f"Take it over for them: `{TAKE_EXAMPLE.replace('HND-12', number(handover))}`")
    for manager in config.roles.service_managers:
        work.message_person(manager, reply, f"{key_of(handover.id)}:escalated", number(handover))
    work.audit("handover.escalated", number(handover), to=list(config.roles.service_managers))
    return 1


def _name(group, fallback: str) -> str:
    return group.name if group else fallback


# ------------------------------------------------------------------------------------------- the command

def handover_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    if not args:
        raise UserError("Say what to do with a handover.", PREVIEW_EXAMPLE)
    verb, rest = args[0].lower(), args[1:]
    if verb == "preview":
        return preview(ctx, rest)
    if verb == "take":
        return take(ctx, cmd, rest)
    raise unknown_word("handover", args[0], rest, ("preview", "take"), PREVIEW_EXAMPLE)


def _sending_group(ctx: Context, words: list[str]):
    if len(words) != 1:
        raise UserError("Say which group's handover to preview.", PREVIEW_EXAMPLE)
    group = ctx.config.group(words[0].lower())
    if group is None:
        close = nearest(words[0], [g.id for g in ctx.config.groups])
        known = ", ".join(g.id for g in ctx.config.groups if g.handover_to) or "none yet"
        raise UserError(f"There is no group '{words[0]}'." + (f" Did you mean {close}?" if close else "")
                        + f" Groups that hand over: {known}.", PREVIEW_EXAMPLE)
    if not group.handover_to:
        raise UserError(f"{group.id} hands over to nobody: give it `handover_to:` in app.yaml.")
    return group


def preview(ctx: Context, words: list[str]) -> Reply:
    """The handover as it would be posted if the group's shift ended now; changes nothing."""
    group = _sending_group(ctx, words)
    now = ctx.now()
    with ctx.reader() as session:
        content = contents.build(ctx, session, group, now, now)
    reply = contents.describe(ctx, content)
    reply.title = "Preview — " + reply.title
    reply.private = True
    ends = on_shift.shift_ends(ctx.config, group, now, now + on_shift.HORIZON)
    if ends:
        zone = contents.zone_of(ctx.config, group)
        reply.footer += f" Next handover: {ends[0].astimezone(zone):%a %d %b %H:%M %Z}."
    return reply


def may_take(ctx: Context, person_id: str, handover: Handover) -> bool:
    receiver = ctx.config.group(handover.to_group)
    return (receiver is not None and person_id in receiver.members) or \
        person_id in ctx.config.roles.service_managers


def take(ctx: Context, cmd: Command, words: list[str]) -> Reply:
    m = NUMBER.match(words[0]) if len(words) == 1 else None
    if not m:
        raise UserError("Say which handover to take over, like HND-12.", TAKE_EXAMPLE)
    with ctx.change(cmd) as work:
        handover = work.session.get(Handover, int(m[1]))
        if handover is None:
            raise UserError(f"There is no handover HND-{int(m[1])}.", TAKE_EXAMPLE)
        if handover.taken_by is None and not may_take(ctx, cmd.actor.person_id, handover):
            raise Refused(f"Only {handover.to_group}'s members or a service manager can take over "
                          f"{number(handover)}.")
        # The claim: an update that succeeds for one press only, whichever replica it reaches first.
        claimed = work.session.execute(
            update(Handover).where(Handover.id == handover.id, Handover.taken_by.is_(None))
            .values(taken_by=cmd.actor.person_id, taken_at=work.now, due_at=None)
            .execution_options(synchronize_session=False)).rowcount
        if not claimed:
            work.session.refresh(handover)
            return _already(ctx, handover)
        moved, kept = _reassign(work, handover)
        work.session.execute(update(Handover).where(Handover.id == handover.id).values(taken_tickets=moved)
                             .execution_options(synchronize_session=False))
        work.audit("handover.take", number(handover), from_group=handover.from_group,
                   to_group=handover.to_group, tickets=moved, via=cmd.via,
                   not_moved={f"INC-{t}": why for t, why in kept.items()})
        _mark_taken(work, handover, cmd.actor.person_id)
    receiver = ctx.config.group(handover.to_group)
    lines = [f"INC-{t} now with {_name(receiver, handover.to_group)}" for t in moved]
    lines += [f"INC-{t} left as it is: {why}" for t, why in kept.items()]
    return Reply(title=f"{number(handover)} taken over: {len(moved)} ticket{'s' * (len(moved) != 1)} reassigned",
                 text="\n".join(lines), tone="ok")


def _reassign(work: Work, handover: Handover) -> tuple[list[int], dict[int, str]]:
    moved, kept = [], {}
    for ticket_id in handover.tickets:
        ticket = work.session.get(Ticket, ticket_id)
        if ticket is None:
            continue
        if ticket.state not in OPEN_STATES:
            kept[ticket_id] = ticket.state
        elif ticket.assignment_group != handover.from_group:
            kept[ticket_id] = f"now with {ticket.assignment_group or 'nobody'}"
        else:
            tickets.record(work, ticket, "assign", handover.to_group, work.now)
            work.audit("incident.assign", tickets.number(ticket), value=handover.to_group, handover=number(handover))
            breaches.sync_clocks(work, ticket)
            moved.append(ticket_id)
    return moved, kept


def _mark_taken(work: Work, handover: Handover, person_id: str) -> None:
    """The posted handover says who took it over, in place of its button."""
    config = work.ctx.config
    sender = config.group(handover.from_group)
    receiver = config.group(handover.to_group)
    if sender is None or receiver is None or receiver.channel not in config.channels:
        return
    taken = f"✅ Taken over by {config.person_name(person_id)} at {work.now:%H:%M} UTC."
    reply = Reply(title=f"🌗 Handover {number(handover)}: {sender.name} → {receiver.name}", text=taken,
                  tone="ok", private=False,
                  sections=[Section(fields=[Field("Tickets", ", ".join(f"INC-{t}" for t in handover.tickets)
                                                  or "none")])])
    target = config.channels[receiver.channel]
    for platform in ("slack", "teams"):
        address = getattr(target, platform)
        if address:
            anchor = f"{key_of(handover.id)}:{platform}:{address}"
            work.edit(anchor, reply, f"{key_of(handover.id)}:taken:{platform}:{address}")


def taken_by(session, person_id: str) -> list[dict]:
    """The handovers a person took over (for their personal-data export)."""
    rows = session.scalars(select(Handover).where(Handover.taken_by == person_id).order_by(Handover.id)).all()
    return [{"handover": number(h), "from": h.from_group, "to": h.to_group, "at": h.taken_at.isoformat(),
             "tickets": [f"INC-{t}" for t in h.taken_tickets]} for h in rows]


def _already(ctx: Context, handover: Handover) -> Reply:
    return Reply(title=f"{number(handover)} was already taken over by {ctx.config.person_name(handover.taken_by)}",
                 text=f"at {handover.taken_at:%Y-%m-%d %H:%M} UTC; nothing changed.", tone="info")
