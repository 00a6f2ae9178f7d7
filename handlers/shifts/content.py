"""What a handover says: read from the store as it stands, for one group going off shift.

- *Open P1/P2*: the group's open P1 and P2 tickets, each with its owner (the last member of the group that
  has it who recorded a step of it: opened, acknowledged, moved on or took it over) and its clocks still
  running or paused.
- *Falls due on your shift*: clocks of the group's open tickets (any priority) whose next unannounced
  warning or breach comes before the next handover, i.e. before the receiving group's shift ends.
- *Changes before the next handover*: changes awaiting approval or scheduled that start before then, on
  the services either group is the team of.
- *Breach notices not acknowledged*: on the group's open tickets.

Every ticket named is listed for taking over; times are in the receiving group's time zone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.changes.calendar import holding_rows
from handlers.changes.record import window_text
from handlers.core import on_shift
from handlers.core.config import AppConfig
from handlers.core.config_catalogue import Group
from handlers.core.context import Button, Context, Reply, Section, batches
from handlers.sla import breaches
from handlers.sla.clocks import OPEN_STATES
from storage.models import ClockNotice, SlaClock, Ticket, TicketEvent

URGENT = ("P1", "P2")
SHOWN = 15  # lines per section; the rest is counted
LONGEST_WINDOW = timedelta(hours=24)


@dataclass
class Content:
    sender: Group
    receiver: Group
    shift_end: datetime
    until: datetime  # the next handover: the end of the receiving group's shift
    urgent: list[tuple[Ticket, str | None, list[str]]] = field(default_factory=list)  # ticket, owner, clocks
    due: list[tuple[Ticket, str]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    unacknowledged: list[tuple[Ticket, str]] = field(default_factory=list)

    @property
    def tickets(self) -> list[int]:
        """Every ticket named, in the order first named: what *Take over* reassigns."""
        named = [t.id for t, _, _ in self.urgent] + [t.id for t, _ in self.due + self.unacknowledged]
        return list(dict.fromkeys(named))


def window_end(config: AppConfig, sender: Group, receiver: Group, shift_end: datetime) -> datetime:
    """Until the receiving group's shift (the one under way at ``shift_end``, or its next) ends; for a
    receiver always on, until the sender is back; at most a day."""
    shift = on_shift.current_or_next(config, receiver, shift_end)
    if shift is None:
        back = on_shift.current_or_next(config, sender, shift_end + timedelta(seconds=1))
        shift = (shift_end, back[0]) if back else None
    end = shift[1] if shift else shift_end + LONGEST_WINDOW
    return min(max(end, shift_end), shift_end + LONGEST_WINDOW)


def zone_of(config: AppConfig, group: Group) -> ZoneInfo:
    cal = config.calendars.get(group.calendar) if group.calendar else None
    return ZoneInfo(cal.timezone if cal else config.bot.timezone)


def owners(session: Session, config: AppConfig, tickets: list[Ticket]) -> dict[int, str]:
    """Each ticket's owner: the last member of its assignment group who recorded a step of it. Whoever
    else opened it (a requester) or moved it (a manager) does not own it."""
    members = {t.id: set(g.members) if (g := config.group(t.assignment_group or "")) else set() for t in tickets}
    out: dict[int, str] = {}
    for chunk in batches(sorted(members), breaches.BATCH):
        rows = session.execute(select(TicketEvent.ticket_id, TicketEvent.person_id)
                               .where(TicketEvent.ticket_id.in_(chunk), TicketEvent.person_id.is_not(None))
                               .order_by(TicketEvent.at, TicketEvent.id))
        for ticket_id, person_id in rows:
            if person_id in members[ticket_id]:
                out[ticket_id] = person_id
    return out


def build(ctx: Context, session: Session, sender: Group, shift_end: datetime, now: datetime) -> Content:
    config = ctx.config
    receiver = config.group(sender.handover_to)
    until = window_end(config, sender, receiver, shift_end)
    zone = zone_of(config, receiver)
    content = Content(sender, receiver, shift_end, until)
    tickets = session.scalars(select(Ticket).where(Ticket.assignment_group == sender.id,
                                                   Ticket.state.in_(OPEN_STATES))
                              .order_by(Ticket.priority, Ticket.opened_at, Ticket.id)).all()
    by_id = {t.id: t for t in tickets}
    clocks: list[SlaClock] = []
    for chunk in batches(list(by_id), breaches.BATCH):
        clocks += session.scalars(select(SlaClock).where(SlaClock.ticket_id.in_(chunk))
                                  .order_by(SlaClock.ticket_id, SlaClock.kind, SlaClock.agreement_id,
                                            SlaClock.metric)).all()
    measured = breaches.measured_now(session, ctx, clocks, now)
    lines: dict[int, list[str]] = {}
    for clock in clocks:
        m = measured.get(clock.id)
        if m is None or m.state not in ("running", "paused") or not m.engaged:  # an OLA that never ran, say
            continue
        what = f"{clock.kind.upper()} {clock.agreement_id} {clock.metric}"
        when = f"due {_at(m.due_at, zone)}" if m.due_at else m.state
        lines.setdefault(clock.ticket_id, []).append(f"{what}: {m.used:.0f} % used, {when}")
        ahead = sorted((at, level) for level, at in m.threshold_at.items()
                       if at is not None and level > clock.notified_level and now <= at < until)
        if m.running and ahead:
            warning = next(((at, level) for at, level in ahead if level < breaches.BREACH), None)
            breach = next((at for at, level in ahead if level >= breaches.BREACH), None)
            said = ([f"warns ({warning[1]:g} % used) {_at(warning[0], zone)}"] if warning else []) + \
                ([f"breaches {_at(breach, zone)}"] if breach else [])
            content.due.append((by_id[clock.ticket_id], f"{what} {', '.join(said)}"))
    owner_of = owners(session, config, tickets)
    content.urgent = [(t, owner_of.get(t.id), lines.get(t.id, [])) for t in tickets if t.priority in URGENT]
    content.due.sort(key=lambda pair: pair[1])
    notices = []
    for chunk in batches(list(by_id), breaches.BATCH):
        notices += session.execute(
            select(ClockNotice, SlaClock).join(SlaClock, SlaClock.id == ClockNotice.clock_id)
            .where(SlaClock.ticket_id.in_(chunk), ClockNotice.level >= breaches.BREACH,
                   ClockNotice.acknowledged_by.is_(None))).all()
    for notice, clock in sorted(notices, key=lambda pair: (pair[0].at, pair[0].id)):
        content.unacknowledged.append((by_id[clock.ticket_id], f"{clock.kind.upper()} {clock.agreement_id} "
                                       f"{clock.metric} breached {_at(notice.at, zone)}: `sla ack {notice.id}`"))
    teams = {sender.id, receiver.id}
    ours = {s.id for s in config.services if s.team in teams}
    for change, services in holding_rows(session, now, until):
        if change.planned_start >= now and ours & set(services):
            content.changes.append(f"CHG-{change.id} {change.title} · {config.service_names(services)} · "
                                   f"{window_text(change, zone.key)} · {change.state}")
    return content


def _at(moment: datetime, zone: ZoneInfo) -> str:
    return f"{moment.astimezone(zone):%a %H:%M %Z}"


def _lines(items: list[str]) -> str:
    shown = items[:SHOWN] + ([f"… and {len(items) - SHOWN} more"] if len(items) > SHOWN else [])
    return "\n".join(shown)


def describe(ctx: Context, content: Content, number: str | None = None, late_for: datetime | None = None,
             taken: str = "") -> Reply:
    """The handover as posted (``number`` given: with its *Take over* button) or previewed."""
    config, sender, receiver = ctx.config, content.sender, content.receiver
    zone = zone_of(config, receiver)
    where = lambda g: f"{g.name}" + (f" ({g.location})" if g.location else "")  # noqa: E731
    title = f"🌗 Handover{' ' + number if number else ''}: {where(sender)} → {where(receiver)}"
    text = (f"{sender.name}'s shift ended {_at(content.shift_end, zone)}; what falls due is looked for until "
            f"{_at(content.until, zone)}, the end of the receiving team's shift (a day at most).")
    if late_for:
        text += " ⏰ Posted late: svcbot was not running when the shift ended."
    sections = []
    if content.urgent:
        sections.append(Section(title="Open P1/P2", text=_lines([
            f"INC-{t.id} {t.priority} {config.service_names([t.service_id])}: {t.title} — {t.state} · owner "
            f"{config.person_name(owner) if owner else 'nobody yet'}" + "".join(f"\n    {c}" for c in clocks)
            for t, owner, clocks in content.urgent])))
    if content.due:
        sections.append(Section(title="Falls due on your shift", text=_lines(
            [f"INC-{t.id} {t.priority} · {line}" for t, line in content.due])))
    if content.changes:
        sections.append(Section(title="Changes before the next handover", text=_lines(content.changes)))
    if content.unacknowledged:
        sections.append(Section(title="Breach notices not acknowledged", text=_lines(
            [f"INC-{t.id} {t.priority} · {line}" for t, line in content.unacknowledged])))
    count = len(content.tickets)
    if taken:
        footer, buttons = taken, []
    elif not count:
        footer, buttons = "Nothing to take over.", []
    elif number:
        footer = (f"{count} ticket{'s' * (count != 1)} to take over: Take over assigns them to {receiver.name}; "
                  "not taken over within an hour, this goes to the service managers.")
        buttons = [Button("Take over", f"handover take {number}", "primary")]
    else:
        footer, buttons = f"{count} ticket{'s' * (count != 1)} would be listed for taking over.", []
    if not sections:
        text += " Nothing open, due or coming: a quiet handover."
    return Reply(title=title, text=text, sections=sections, buttons=buttons, footer=footer, private=False,
                 tone="ok" if not sections else "info")
