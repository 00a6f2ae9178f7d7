"""Post-incident reviews: the review of a resolved P1 or P2, its owner's notes on the timeline, and the
follow-up actions it raised in the CSI register. Kept apart from storage.models, which re-exports them."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base


class IncidentReview(Base):
    """The review of one ticket (unique: two sweeps or two replicas cannot open a second). REV-<id>.

    Each written part keeps who wrote it last and when (``*_by``, ``*_at``): authorship is governance."""

    __tablename__ = "incident_reviews"
    __table_args__ = (Index("ix_incident_reviews_open", "state", "due"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), unique=True)
    service_id: Mapped[str] = mapped_column(String(64), index=True)
    priority: Mapped[str] = mapped_column(String(4))
    owner: Mapped[str] = mapped_column(String(64), index=True)
    due: Mapped[date] = mapped_column(Date)  # a day of the bot's zone
    state: Mapped[str] = mapped_column(String(16))  # open | done
    opened_by: Mapped[str] = mapped_column(String(64))  # a person, or svcbot when the sweep opened it
    opened_at: Mapped[datetime]
    what_happened: Mapped[str] = mapped_column(Text, default="")
    what_by: Mapped[str | None] = mapped_column(String(64), index=True)
    what_at: Mapped[datetime | None]
    impact: Mapped[str] = mapped_column(Text, default="")
    impact_by: Mapped[str | None] = mapped_column(String(64), index=True)
    impact_at: Mapped[datetime | None]
    factors: Mapped[str] = mapped_column(Text, default="")
    factors_by: Mapped[str | None] = mapped_column(String(64), index=True)
    factors_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    done_by: Mapped[str | None] = mapped_column(String(64))


class ReviewNote(Base):
    """The owner's (or a contributor's) annotation of the timeline, at a moment of the incident."""

    __tablename__ = "incident_review_notes"
    __table_args__ = (Index("ix_incident_review_notes_review", "review_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("incident_reviews.id", ondelete="CASCADE"))
    at: Mapped[datetime]  # where on the timeline it belongs
    text: Mapped[str] = mapped_column(Text)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    written_at: Mapped[datetime]


class ReviewAction(Base):
    """A follow-up action of a review: an item of the CSI register, which keeps its owner, due date and state."""

    __tablename__ = "incident_review_actions"
    review_id: Mapped[int] = mapped_column(ForeignKey("incident_reviews.id", ondelete="CASCADE"), primary_key=True)
    csi_item_id: Mapped[int] = mapped_column(ForeignKey("csi_items.id", ondelete="CASCADE"), primary_key=True,
                                             unique=True)
