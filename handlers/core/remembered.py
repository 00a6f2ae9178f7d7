"""Answers kept in memory: what nearly every request reads and few change (`status`, who is asking).

Each value is kept with the number of the store's version row (storage.models_answers.StoreVersion) read
before the value was, and is handed only to a request that read the same number. The store's own triggers
move that number on in the same transaction as any write to the service states or the people, so a change
committed by any replica is seen by the next request of every replica, and nothing is ever cleared by hand.
A value read after the version may be newer than its label, never older: it is never served stale."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Hashable

from sqlalchemy import select

from storage.models import StoreVersion

# The version row, read once for each request that may be answered from memory: built once.
VERSION = select(StoreVersion.version).where(StoreVersion.id == 1)
VERSION_SQL = "SELECT version FROM store_version WHERE id = 1"  # the same, for a driver's own connection
# The key of what `status` alone answers (handlers/services/status.py), which the router may give from memory.
STATUS_OVERVIEW = ("status",)
# A bound on what is kept (one entry for each person who asked, and one for `status`): past it, everything
# is dropped and read again.
LIMIT = 10_000


class Remembered:
    def __init__(self) -> None:
        self._kept: dict[Hashable, tuple[int, datetime | None, Any]] = {}

    def get(self, key: Hashable, version: int | None, now: datetime | None = None) -> Any:
        """What was kept under ``key`` at this version of the store, if it still holds at ``now``; None if
        nothing was, or at another version, or it was kept only until a time now past."""
        if version is None:
            return None
        kept = self._kept.get(key)
        if kept is None or kept[0] != version or (kept[1] is not None and (now is None or now >= kept[1])):
            return None
        return kept[2]

    def keep(self, key: Hashable, version: int | None, value: Any, until: datetime | None = None) -> None:
        """Keep ``value``, read from the store after ``version`` was, for requests that read that version;
        ``until``: a time at which it stops holding although nothing is written (an outage planned to begin)."""
        if version is None:
            return
        if len(self._kept) >= LIMIT and key not in self._kept:
            self._kept.clear()
        self._kept[key] = (version, until, value)
