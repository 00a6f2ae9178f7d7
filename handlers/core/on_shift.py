"""Who is on shift, and when shifts end: pure functions of app.yaml and an instant; no I/O.

A group's shifts are its ``shifts:`` in its calendar's time zone (one may pass midnight), on the days they
name, except the days a holiday or closure of that calendar closes. A group without ``shifts:`` is on shift
from its calendar's first opening to its last closing of each working day (a lunch break does not end the
shift); on a 24x7 calendar it is always on, and no shift of it ever ends. Shifts that touch or overlap are
one shift: it ends once, when the last of them does.

This lives in the core, below the capabilities, because a new ticket (handlers/sla/tickets.py) suggests
the people on shift whose skills match its service, and the sla layer cannot reach up to handlers/shifts.

Skills: a person's ``skills`` match a service when they share one with the service's ``skills``; a service
that names none is matched by the skill of its own id (``payments``).
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from handlers.core.business_time import MIDNIGHT, UNTIL_MIDNIGHT, BusinessCalendar
from handlers.core.config import AppConfig
from handlers.core.config_catalogue import WEEKDAYS, Calendar, Group, Person

ONE_DAY = timedelta(days=1)
HORIZON = timedelta(days=8)  # how far ahead a next shift is looked for: every weekday comes round once
Span = tuple[datetime, datetime]

_calendars: dict[int, tuple[Calendar, BusinessCalendar]] = {}


def business_calendar(cal: Calendar) -> BusinessCalendar:
    """One BusinessCalendar (and its cache of days) per calendar of the loaded app.yaml."""
    known = _calendars.get(id(cal))
    if known is None or known[0] is not cal:
        known = _calendars[id(cal)] = (cal, BusinessCalendar(cal))
    return known[1]


def calendar_of(config: AppConfig, group: Group) -> BusinessCalendar | None:
    return business_calendar(config.calendars[group.calendar]) if group.calendar in config.calendars else None


def has_hours(config: AppConfig, group: Group) -> bool:
    """Whether svcbot knows when the group is on shift (shifts, or a calendar)."""
    return calendar_of(config, group) is not None


def always_on(config: AppConfig, group: Group) -> bool:
    cal = calendar_of(config, group)
    return cal is not None and not group.shifts and cal.always_open


def spans(config: AppConfig, group: Group, start: datetime, end: datetime) -> list[Span]:
    """The group's shifts that overlap ``[start, end)``, whole (not clipped), in UTC, merged, in order."""
    cal = calendar_of(config, group)
    if cal is None or end <= start:
        return []
    if always_on(config, group):
        return [(start.astimezone(UTC), end.astimezone(UTC))]
    day, last = _local(cal, start) - ONE_DAY, _local(cal, end) + ONE_DAY
    raw: list[Span] = []
    while day <= last:
        raw += _day_shifts(cal, group, day)
        day += ONE_DAY
    merged: list[Span] = []
    for a, b in sorted(raw):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return [(a, b) for a, b in merged if b > start and a < end]


def _day_shifts(cal: BusinessCalendar, group: Group, day: date) -> list[Span]:
    """The shifts that start on one local date."""
    if not group.shifts:
        opened = list(cal.open_intervals(_instant(cal, day, MIDNIGHT), _instant(cal, day + ONE_DAY, MIDNIGHT)))
        return [(opened[0][0], opened[-1][1])] if opened else []
    if cal.closed_on(day):
        return []
    out = []
    for shift in group.shifts:
        if WEEKDAYS[day.weekday()] not in shift.days:
            continue
        start, end = shift.hours.start, shift.hours.end
        end_day = day + ONE_DAY if end == UNTIL_MIDNIGHT or end <= start else day
        a = _instant(cal, day, start)
        b = _instant(cal, end_day, MIDNIGHT if end == UNTIL_MIDNIGHT else end)
        if a < b:
            out.append((a, b))
    return out


def _instant(cal: BusinessCalendar, day: date, wall: time) -> datetime:
    """A local wall-clock time as a UTC instant, read as the calendars read it (a skipped time lands past
    the jump, a repeated one is its first occurrence)."""
    return datetime.combine(day, wall).replace(tzinfo=cal.zone).astimezone(UTC)


def _local(cal: BusinessCalendar, at: datetime) -> date:
    return at.astimezone(cal.zone).date()


def on_shift(config: AppConfig, group: Group, at: datetime) -> bool | None:
    """Whether the group is on shift at ``at``; None when svcbot does not know its hours."""
    if not has_hours(config, group):
        return None
    return any(a <= at < b for a, b in spans(config, group, at, at + timedelta(seconds=1)))


def current_or_next(config: AppConfig, group: Group, at: datetime) -> Span | None:
    """The shift the group is on at ``at``, else its next one (within a week); None if it has none."""
    if always_on(config, group):
        return None
    return next(((a, b) for a, b in spans(config, group, at, at + HORIZON) if b > at), None)


def shift_ends(config: AppConfig, group: Group, after: datetime, until: datetime) -> list[datetime]:
    """The instants in ``(after, until]`` when a shift of the group ends."""
    if always_on(config, group):
        return []
    return [b for _, b in spans(config, group, after - HORIZON, until + ONE_DAY) if after < b <= until]


def people_on_shift(config: AppConfig, at: datetime) -> dict[str, list[str]]:
    """Person id → the groups they are on shift with at ``at``."""
    out: dict[str, list[str]] = {}
    for group in config.groups:
        if on_shift(config, group, at):
            for person_id in group.members:
                out.setdefault(person_id, []).append(group.id)
    return out


def skills_wanted(config: AppConfig, service_id: str) -> set[str]:
    service = config.service(service_id)
    if service is None:
        return set()
    return set(service.skills) or {service.id}


def suggested_people(config: AppConfig, service_id: str, at: datetime) -> list[tuple[Person, list[str]]]:
    """The people on shift at ``at`` whose skills match the service's, each with the skills that match;
    the service's own team first, then by name. A suggestion only: nothing is assigned."""
    wanted = skills_wanted(config, service_id)
    service = config.service(service_id)
    team = config.group(service.team) if service and service.team else None
    on = people_on_shift(config, at)
    found = []
    for person in config.people:
        matched = sorted(wanted & set(person.skills))
        if matched and person.id in on:
            found.append((person, matched))
    return sorted(found, key=lambda pm: (not (team and pm[0].id in team.members), pm[0].name))
