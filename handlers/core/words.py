"""What people type besides the command words: ``key=value`` pairs, times ("tomorrow 22:00") and spans
("in 3 days")."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from handlers.core.context import UserError

PAIR = re.compile(r'(\w+)=(?:"([^"]*)"|(\S*))')


AHEAD = re.compile(r"(?:in\s+)?(\d+)\s*(h|hours?|d|days?|w|weeks?)", re.IGNORECASE)


def pairs(text: str, example: str) -> dict[str, str]:
    """key=value and key="several words" pairs of a one-line form; anything else is refused, not dropped."""
    text = text.replace("“", '"').replace("”", '"')
    leftover = PAIR.sub(" ", text).split()
    if leftover:
        raise UserError(f"'{' '.join(leftover)}' is not part of a key=value pair; put a value with spaces in "
                        'quotes: title="Patch the VPN gateways".', example)
    return {m[1].lower(): m[2] if m[2] is not None else m[3] for m in PAIR.finditer(text)}


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


def after_verb(text: str, verb: str) -> str:
    """What was typed after the command's verb (a regular expression): the key=value pairs of ``change new …``."""
    m = re.search(rf"\b{verb}\b", text, re.IGNORECASE)
    return text[m.end():] if m else ""
