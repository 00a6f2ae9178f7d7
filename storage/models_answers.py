"""The store's version row: what lets a replica keep an answer in memory and know, with one read, that it
still holds. Kept apart from storage.models, which re-exports it."""
from __future__ import annotations

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base

# The tables the version row follows: triggers of migration 0016 count every statement that writes to them.
VERSIONED_TABLES = ("service_status", "outages", "people", "identities")


class StoreVersion(Base):
    """One row (id 1) whose ``version`` goes up in the same transaction as any write to VERSIONED_TABLES,
    by the store's own triggers: no code path can change a service's state or a person and leave it as it
    was, and every replica reads the new number as soon as the change is committed."""

    __tablename__ = "store_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
