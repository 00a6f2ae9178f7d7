"""Reading other tools' CSV exports: the pieces every importer shares.

An export arrives as a CSV file or a .zip holding one; its times are day-first local wall times without
a zone. Rows that cannot be used raise ``Skip`` with the reason the import counts.
"""
from __future__ import annotations

import gc
import re
import zipfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from handlers.core.context import UserError

_UNSEEN = object()


class Skip(Exception):
    """This row cannot be used; the message is the reason counted in the result."""


def csv_member(archive: zipfile.ZipFile, path: Path) -> str:
    """The one .csv member of a .zip export."""
    members = [m for m in archive.namelist() if m.lower().endswith(".csv") and not m.endswith("/")]
    if len(members) != 1:
        raise UserError(f"{path} holds {len(members)} .csv files; it should hold exactly one.")
    return members[0]


def day_first_time(text: str, pattern: re.Pattern, missing, zone: ZoneInfo, cache: dict,
                   column: str) -> datetime | None:
    """A day-first local wall time (groups: day, month, year, hour, minute, optional second) in UTC; None
    when missing. A time repeated or skipped at a clock change is read with fold=0, as zoneinfo does."""
    value = cache.get(text, _UNSEEN)
    if value is not _UNSEEN:
        return value
    if text.strip() in missing:
        return None
    m = pattern.match(text)
    if not m:
        raise Skip(f"unreadable {column}")
    day, month, year, hour, minute, second = [int(g or 0) for g in m.groups()]
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        raise Skip(f"unreadable {column}") from None
    value = cache[text] = local.astimezone(timezone.utc)
    return value


@contextmanager
def collector_paused():
    """Python's cycle collector paused for the block, and as it was after. An import makes a few hundred
    thousand small tuples that live till it ends, and the collector went over them again and again (an
    eighth of a second import). Everything is still freed when its last reference goes; only cycles wait."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


