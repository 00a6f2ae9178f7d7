"""``team [GROUP]``: the workload of each internal team — open tickets by location, group and person, how
old they are in the group's business time, the group's OLA attainment this month, and who is on shift now.

A ticket's person is its owner as a handover names it (handlers/shifts/content.py: the last member of the
group who worked on it); age is counted on the
group's calendar (clock time for a group without one) from the ticket's opening. OLA attainment is
``attainment.attainment_data`` for this month (in the bot's time zone), over the OLAs the group is party to.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import select

from handlers.core import on_shift
from handlers.core.config_catalogue import Group
from handlers.core.context import Command, Context, Field, Reply, Section, UserError, nearest
from handlers.shifts.content import owners, zone_of
from handlers.sla import attainment
from handlers.sla.clocks import OPEN_STATES
from storage.models import Ticket

EXAMPLE = "team payments-eng"
# Ages in business hours: the upper bound of each bucket and its label.
AGES = ((4, "under 4 h"), (8, "4–8 h"), (24, "8–24 h"), (None, "over 24 h"))


def team_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    internal = [g for g in ctx.config.groups if g.kind == "internal"]
    if len(args) > 1:
        raise UserError("Say one group, or none for every team.", EXAMPLE)
    if args:
        group = ctx.config.group(args[0].lower())
        if group is None or group.kind != "internal":
            close = nearest(args[0], [g.id for g in internal])
            raise UserError(f"There is no team '{args[0]}'." + (f" Did you mean {close}?" if close else "")
                            + f" Teams: {', '.join(g.id for g in internal) or 'none'}.", EXAMPLE)
        internal = [group]
    if not internal:
        return Reply(title="No teams", text="app.yaml names no internal groups.")
    now = ctx.now()
    with ctx.reader() as session:
        ids = [g.id for g in internal]
        tickets = session.scalars(select(Ticket).where(Ticket.assignment_group.in_(ids),
                                                       Ticket.state.in_(OPEN_STATES))).all()
        owner_of = owners(session, ctx.config, tickets)
        period = attainment.parse_period("this-month", now, ctx.config.bot.timezone)
        ola = [r for r in attainment.attainment_data(ctx, None, period, session=session)
               if isinstance(r, attainment.TargetAttainment) and r.agreement_kind == "ola"]
    by_group: dict[str, list[Ticket]] = {g.id: [] for g in internal}
    for t in tickets:
        by_group[t.assignment_group].append(t)
    sections = [_group_section(ctx, g, by_group[g.id], owner_of, ola, now) for g in internal]
    by_location = Counter()
    for g in internal:
        by_location[g.location or "no location"] += len(by_group[g.id])
    text = "Open tickets by location: " + " · ".join(f"{where} {n}" for where, n in by_location.items())
    return Reply(title=f"Workload{' — ' + internal[0].name if args else ''}", text=text, sections=sections,
                 footer="Ages in each group's business hours since opening; a ticket's person is the last "
                        "member of its group who worked on it.")


def _group_section(ctx: Context, group: Group, open_tickets: list[Ticket], owner_of: dict[int, str],
                   ola: list, now: datetime) -> Section:
    config = ctx.config
    cal = on_shift.calendar_of(config, group)
    ages = Counter()
    for t in open_tickets:
        hours = (cal.business_seconds(t.opened_at, now) if cal else (now - t.opened_at).total_seconds()) / 3600
        ages[next(label for limit, label in AGES if limit is None or hours < limit)] += 1
    priorities = Counter(t.priority for t in open_tickets)
    people = Counter(config.person_name(owner_of[t.id]) if t.id in owner_of else "nobody yet"
                     for t in open_tickets)
    mine = [r for r in ola if r.party == group.id]
    measured, met = sum(r.measured for r in mine), sum(r.met for r in mine)
    fields = [
        Field("Open", f"{len(open_tickets)}" + (" (" + ", ".join(f"{p} {n}" for p, n in sorted(priorities.items()))
                                                + ")" if open_tickets else "")),
        Field("Age", " · ".join(f"{label}: {ages[label]}" for _, label in AGES if ages[label]) or "—"),
        Field("By person", " · ".join(f"{name} {n}" for name, n in people.most_common()) or "—"),
        Field("OLA this month", f"{100 * met / measured:.1f} % met ({met}/{measured})" if measured
              else "no OLA clock decided yet"),
        Field("On shift now", _on_shift_text(ctx, group, now)),
    ]
    title = group.name + (f" · {group.location}" if group.location else "") + f" ({group.id})"
    return Section(title=title, fields=fields)


def _on_shift_text(ctx: Context, group: Group, now: datetime) -> str:
    config = ctx.config
    state = on_shift.on_shift(config, group, now)
    if state is None:
        return "hours unknown (no calendar)"
    if state:
        names = ", ".join(config.person_name(p) for p in group.members) or "no members listed"
        return f"yes: {names}"
    upcoming = on_shift.current_or_next(config, group, now)
    when = f"; next from {upcoming[0].astimezone(zone_of(config, group)):%a %H:%M %Z}" if upcoming else ""
    return f"no{when}"
