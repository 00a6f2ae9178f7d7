"""The knowledge library: articles, their versions, the alerts they answer, their reviews, the articles
linked to tickets, and the catalogue's confirmations by service owners. Kept apart from storage.models,
which re-exports them."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
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


class KbArticle(Base):
    """An article of the knowledge library (a runbook, a known error, a how-to, an FAQ). KB-<id>.

    The full-text index follows these columns inside the same transaction: an FTS5 table kept by triggers
    on SQLite, a generated tsvector column (not mapped here) with a GIN index on PostgreSQL."""

    __tablename__ = "kb_articles"
    __table_args__ = (Index("ix_kb_articles_review", "state", "next_review_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # runbook | known-error | how-to | faq
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")  # Markdown
    # A known error's parts; empty for other kinds.
    symptom: Mapped[str] = mapped_column(Text, default="")
    workaround: Mapped[str] = mapped_column(Text, default="")
    cause: Mapped[str] = mapped_column(Text, default="")
    fixed_by: Mapped[str] = mapped_column(String(64), default="")  # the problem or change that fixes it
    services: Mapped[list[str]] = mapped_column(JSON, default=list)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    alerts: Mapped[list[str]] = mapped_column(JSON, default=list)  # the Prometheus alerts it answers
    owner: Mapped[str | None] = mapped_column(String(64))
    review_days: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # draft → published → retired
    version: Mapped[int] = mapped_column(Integer, default=1)
    # From git: the file's path relative to the synced folder, and the hash of its text as last synced.
    source: Mapped[str | None] = mapped_column(String(500), unique=True)
    source_hash: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    published_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    reviewed_at: Mapped[datetime | None]  # last verified by its owner (or published)
    next_review_at: Mapped[datetime | None]  # when its owner is asked next; None unless published
    review_stage: Mapped[int] = mapped_column(Integer, default=0)  # 1 asked, 2 reminded, 3 managers told


class KbAlert(Base):
    """Which article answers a Prometheus alert: the alert's name looked up by index."""

    __tablename__ = "kb_article_alerts"
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"), primary_key=True)
    alert: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)


class KbVersion(Base):
    """One version of an article as it was written: every edit (chat or git) adds one."""

    __tablename__ = "kb_versions"
    __table_args__ = (UniqueConstraint("article_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the other fields as they were
    author: Mapped[str | None] = mapped_column(String(64), index=True)  # a person; None for git
    via: Mapped[str] = mapped_column(String(16))  # text | form | git | api
    at: Mapped[datetime]
    changed: Mapped[list[str]] = mapped_column(JSON, default=list)  # which fields this version changed


class KbReview(Base):
    """An owner's answer when an article's review fell due: verified, needs-work or retire."""

    __tablename__ = "kb_reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]
