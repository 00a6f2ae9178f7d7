"""Dates for tests that run against the real clock (a server subprocess, a CLI run): always ahead of
today, whatever today is, so that no test expires as the calendar moves on."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def today(zone: str = "UTC") -> date:
    return datetime.now(ZoneInfo(zone)).date()


def next_weekday(weekday: str, zone: str = "UTC") -> date:
    """The first such weekday after today in ``zone``: one to seven days ahead, never today, so any time
    of day on it is still to come."""
    now = today(zone)
    return now + timedelta(days=(WEEKDAYS.index(weekday) - now.weekday() - 1) % 7 + 1)


def at(day: date, hhmm: str, days: int = 0) -> str:
    """'YYYY-MM-DD HH:MM', as a person types a time, ``days`` after ``day``."""
    return f"{day + timedelta(days=days):%Y-%m-%d} {hhmm}"
