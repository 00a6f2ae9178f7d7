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
from typing import Iterator
from zoneinfo import ZoneInfo

from sqlalchemy import DateTime, Table, TypeDecorator, bindparam, insert

from handlers.core import UserError


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


_UNSEEN = object()


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


def batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def insert_rows(session, table: Table, rows: list[dict], stored_times: dict | None = None) -> None:
    """Insert many rows (dicts with the same keys) with one executemany, in the session's transaction.

    Each distinct time is put in the store's form once, by the column type's own conversion, and bound
    as it is: an import's rows share a few ten thousand instants, and converting each of them again was
    most of the cost of writing them. ``stored_times`` keeps the conversions for the next call (one import's
    batches, within one session's dialect). The rows' dicts are changed in place."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    stored_times = {} if stored_times is None else stored_times
    converting = []
    for name in rows[0]:
        kind = table.c[name].type
        if isinstance(kind.impl if isinstance(kind, TypeDecorator) else kind, DateTime):
            convert = kind.dialect_impl(dialect).bind_processor(dialect)
            if convert is not None:
                # One memo per type: every time column of the models shares one UTCDateTime.
                converting.append((name, convert, stored_times.setdefault(kind, {None: None})))
    for row in rows:
        for name, convert, memo in converting:
            value = row[name]
            kept = memo.get(value, _UNSEEN)
            if kept is _UNSEEN:
                kept = memo[value] = convert(value)
            row[name] = kept
    statement = insert(table).values({name: bindparam(name, type_=_AsStored()) for name, _, _ in converting})
    session.execute(statement, rows)


class _AsStored(TypeDecorator):
    """A time already in the store's form (``insert_rows``): bound as it is, as a column of its type."""

    impl = DateTime
    cache_ok = True

    def bind_processor(self, dialect):
        return None
