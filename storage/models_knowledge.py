"""What keeps knowledge in the work and true: the articles linked to tickets, and the catalogue's
confirmations by service owners. Kept apart from storage.models, which re-exports them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base


class KbTicketLink(Base):
    """An article that helped with a ticket (``incident kb``, a *This helped* button): once per pair."""

    __tablename__ = "kb_ticket_links"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"), primary_key=True,
                                            index=True)
    person_id: Mapped[str | None] = mapped_column(String(64), index=True)
    via: Mapped[str] = mapped_column(String(16))  # text | button | api
    at: Mapped[datetime]


class CatalogueReview(Base):
    """When a service's catalogue entry is next due for its owner's confirmation, and how far the asking
    has gone (0 not asked, 1 asked, 2 reminded, 3 the service managers told)."""

    __tablename__ = "catalogue_reviews"
    service_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    due_at: Mapped[datetime]
    stage: Mapped[int] = mapped_column(Integer, default=0)
    confirmed_at: Mapped[datetime | None]
    confirmed_by: Mapped[str | None] = mapped_column(String(64))


class CatalogueConfirmation(Base):
    """An owner's answer about their service's catalogue entry: confirmed or needs-change."""

    __tablename__ = "catalogue_confirmations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64), index=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
