"""Writing many rows at once: one executemany, each distinct time converted to the store's form once."""
from __future__ import annotations

from sqlalchemy import DateTime, Table, TypeDecorator, bindparam, insert

_UNSEEN = object()


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
