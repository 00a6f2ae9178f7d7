"""A person's quiet hours: when a reminder by direct message waits for the morning.

A person's own ``quiet_hours`` (in their ``timezone``, else the bot's) come first; without them, those
of the calendar of the first group they belong to that has some. The arithmetic is the calendars' own
(BusinessCalendar.in_quiet_hours and quiet_hours_end), so warnings and reminders agree on when a night
ends, across daylight-saving changes too.
"""
from __future__ import annotations

from datetime import datetime

from handlers.core.business_time import BusinessCalendar
from handlers.core.config import AppConfig
from handlers.core.config_catalogue import Calendar

_calendars: dict[tuple, BusinessCalendar] = {}


def quiet_calendar(config: AppConfig, person_id: str) -> BusinessCalendar | None:
    """The calendar whose quiet hours hold this person's reminders; None when they have none."""
    person = config.person(person_id)
    if person is not None and person.quiet_hours is not None:
        zone = person.timezone or config.bot.timezone
        key = ("person", zone, person.quiet_hours)
        if key not in _calendars:
            _calendars[key] = BusinessCalendar(Calendar(timezone=zone, quiet_hours=person.quiet_hours,
                                                        **{"24x7": True}))
        return _calendars[key]
    for group in config.groups:
        calendar = config.calendars.get(group.calendar) if group.calendar else None
        if person_id in group.members and calendar is not None and calendar.quiet_hours is not None:
            key = ("calendar", id(calendar))
            known = _calendars.get(key)
            if known is None or known.calendar is not calendar:
                known = _calendars[key] = BusinessCalendar(calendar)
            return known
    return None


def release_at(config: AppConfig, person_id: str, now: datetime) -> datetime:
    """``now``, or the end of the quiet hours the person is in at ``now``."""
    calendar = quiet_calendar(config, person_id)
    return now if calendar is None else calendar.quiet_hours_end(now)
