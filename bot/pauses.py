"""Rate-limit pauses shared by every row and every replica.

A platform's rate limit belongs to an API method (Slack counts calls per method per workspace), not to
one message: when one call is answered 429, the other rows that would call that method wait out the
same Retry-After instead of each earning a 429 of their own. The pause is a row of the store's
settings (``pause:slack:chat.postMessage`` → the UTC instant it ends), so replicas sharing a store
share it too.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Setting

PREFIX = "pause:"


def _key(platform: str, scope: str) -> str:
    return f"{PREFIX}{platform}:{scope}"[:64]


def _stamp(when: datetime) -> str:
    # Fixed width, so that the store can compare two of them as text.
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def pause(session: Session, platform: str, scope: str, until: datetime) -> None:
    """Hold back calls of ``scope`` until ``until``; a pause already longer stays as it is."""
    # The dialect's insert, imported here: the PostgreSQL dialect is a large import a SQLite store never needs.
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(Setting).values(key=_key(platform, scope), value=_stamp(until))
    session.execute(stmt.on_conflict_do_update(
        index_elements=[Setting.key], set_={"value": stmt.excluded.value},
        where=Setting.__table__.c.value < stmt.excluded.value))


def paused_until(session: Session, platform: str, scopes: Iterable[str], now: datetime) -> datetime | None:
    """The end of the longest pause still running for any of ``scopes``; None if calls may go."""
    keys = [_key(platform, scope) for scope in scopes]
    if not keys:
        return None
    ends = [datetime.strptime(v, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
            for v in session.scalars(select(Setting.value).where(Setting.key.in_(keys)))]
    until = max(ends, default=None)
    return until if until is not None and until > now else None
