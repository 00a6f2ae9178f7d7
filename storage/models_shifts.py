"""Follow-the-sun handovers: one row per group and shift end. Kept apart from storage.models, which
re-exports them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base


class Handover(Base):
    """The work a group hands to the next at the end of its shift (``HND-N``).

    The unique (from_group, shift_end) makes a shift's handover be posted once, however many sweeps or
    replicas try: the row commits with its outbox rows or not at all. ``due_at`` is when it goes to the
    service managers if nobody has taken it over; None once taken over or sent to them."""

    __tablename__ = "handovers"
    __table_args__ = (UniqueConstraint("from_group", "shift_end"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    from_group: Mapped[str] = mapped_column(String(64))
    to_group: Mapped[str] = mapped_column(String(64), index=True)
    shift_end: Mapped[datetime]
    posted_at: Mapped[datetime]
    tickets: Mapped[list[int]] = mapped_column(JSON, default=list)  # the tickets listed for taking over
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    taken_by: Mapped[str | None] = mapped_column(String(64), index=True)
    taken_at: Mapped[datetime | None]
    taken_tickets: Mapped[list[int]] = mapped_column(JSON, default=list)  # those still the sender's, reassigned
    escalated_at: Mapped[datetime | None]
