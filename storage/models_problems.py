"""Problems: the one cause behind repeated incidents, its known error and its fix. Kept apart from
storage.models, which re-exports them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base


class Problem(Base):
    """A problem (PRB-<id>): open → known-error → resolved, and back to known-error or open on a recurrence."""

    __tablename__ = "problems"
    __table_args__ = (UniqueConstraint("source", "external_id"), Index("ix_problems_state", "state", "id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # chat | api | servicenow
    external_id: Mapped[str | None] = mapped_column(String(128))  # the export's problem id
    title: Mapped[str] = mapped_column(String(300))
    services: Mapped[list[str]] = mapped_column(JSON, default=list)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))  # open | known-error | resolved
    symptom: Mapped[str] = mapped_column(Text, default="")
    workaround: Mapped[str] = mapped_column(Text, default="")
    cause: Mapped[str] = mapped_column(Text, default="")
    article_id: Mapped[int | None] = mapped_column(ForeignKey("kb_articles.id", ondelete="SET NULL"))
    fix_change_id: Mapped[int | None] = mapped_column(ForeignKey("changes.id"))
    resolved_at: Mapped[datetime | None]
    reopened: Mapped[int] = mapped_column(Integer, default=0)  # recurrences after a fix
    created_by: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ProblemIncident(Base):
    """An incident of a problem: an incident has at most one cause, so at most one problem."""

    __tablename__ = "problem_incidents"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"), index=True)
    person_id: Mapped[str | None] = mapped_column(String(64), index=True)
    via: Mapped[str] = mapped_column(String(16))  # text | button | api | import
    at: Mapped[datetime]
    workaround_told: Mapped[bool] = mapped_column(default=False)  # the known error announced on it


class ProblemSuggestion(Base):
    """An incident already told to its service owner as one of a cluster of similar ones: each is told once,
    and the primary key keeps two sweeps (two replicas) from telling it twice."""

    __tablename__ = "problem_suggestions"
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    cluster: Mapped[int] = mapped_column(Integer, index=True)  # the cluster's first incident
    service_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
