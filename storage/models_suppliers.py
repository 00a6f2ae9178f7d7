"""What a service manager decided about a supplier's service credits. Kept apart from storage.models, which
re-exports it."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base


class CreditDecision(Base):
    """A month's service credits of one underpinning contract, marked claimed or waived, with the amount as
    computed when it was decided (clocks measured later may differ: the scorecard says so). One per
    contract and month; deciding again replaces the status, amount and note, and the audit keeps each."""

    __tablename__ = "credit_decisions"
    __table_args__ = (UniqueConstraint("agreement_id", "month"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    supplier: Mapped[str] = mapped_column(String(64), index=True)
    agreement_id: Mapped[str] = mapped_column(String(64))
    month: Mapped[str] = mapped_column(String(7))  # 2026-10
    status: Mapped[str] = mapped_column(String(16))  # claimed | waived
    # The amount as exact decimal text ("1250.00"): a Numeric column comes back through float on SQLite.
    amount: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str] = mapped_column(String(3))
    note: Mapped[str] = mapped_column(Text, default="")
    decided_by: Mapped[str] = mapped_column(String(64), index=True)
    decided_at: Mapped[datetime]
