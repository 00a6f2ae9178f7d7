"""Calendar months as reports name them: ``YYYY-MM``, ``last-month``, ``this-month``, in the bot's zone."""
from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from handlers.core.context import UserError

MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
MONTH_WORDS = ("last-month", "this-month")
FIRST_YEAR = 1970


def resolve_month(text: str | None, now: datetime, zone: str, example: str) -> str:
    """``YYYY-MM``, ``last-month`` or ``this-month`` (default: last month) as YYYY-MM, in the bot's zone.
    A month that has not begun is refused: there is nothing to report yet."""
    today = now.astimezone(ZoneInfo(zone)).date()
    word = (text or "last-month").lower()
    if word == "this-month":
        year, month = today.year, today.month
    elif word == "last-month":
        year, month = months_back(today.year, today.month, 1)
    else:
        m = MONTH.match(word)
        if not m or not 1 <= int(m[2]) <= 12 or int(m[1]) < FIRST_YEAR:
            raise UserError(f"'{text}' is not a month; give one as YYYY-MM, or last-month or this-month.",
                            example)
        year, month = int(m[1]), int(m[2])
        if (year, month) > (today.year, today.month):
            raise UserError(f"{date(year, month, 1):%B %Y} has not begun yet; a report covers a past month, or "
                            "this month so far.", example)
    return f"{year:04d}-{month:02d}"


def months_back(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + month - 1 - n
    return index // 12, index % 12 + 1


def month_key(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def month_label(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{date(year, number, 1):%b %Y}"


def is_month_word(word: str) -> bool:
    return word.lower() in MONTH_WORDS or bool(re.match(r"^\d{4}-\d+$", word))
