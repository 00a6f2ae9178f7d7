"""What svcbot keeps at run time. The catalogue itself is configuration (app.yaml), not rows."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base


class Person(Base):
    __tablename__ = "people"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]


class Identity(Base):
    """A person's account on one platform: Slack user id, or Teams AAD object id."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(128))
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id"), index=True)
    # Teams addresses a user by a channel account id ("29:…") within a tenant, not by the AAD object id.
    address: Mapped[str | None] = mapped_column(String(256))
    tenant_id: Mapped[str | None] = mapped_column(String(64))


class ServiceStatus(Base):
    __tablename__ = "service_status"
    service_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    since: Mapped[datetime]
    updated_by: Mapped[str | None] = mapped_column(ForeignKey("people.id"))


class StatusChange(Base):
    __tablename__ = "status_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64), index=True)
    previous_state: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]
    person_id: Mapped[str | None] = mapped_column(ForeignKey("people.id"))
    platform: Mapped[str] = mapped_column(String(16))


class Subscription(Base):
    __tablename__ = "subscriptions"
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id"), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    created_at: Mapped[datetime]


class AuditRecord(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    person_id: Mapped[str | None] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(16))
    # The API client that made the request: person_id is then whom it acted for ("api": itself).
    client: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OutboxMessage(Base):
    """One message to one place, written with the change that caused it, sent by the deliverer."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(256), unique=True)
    platform: Mapped[str] = mapped_column(String(16))
    # channel: a conversation many read (a Slack channel or DM id, a Teams conversation id);
    # person: a Slack user id or Teams AAD id; response_url: a Slack response URL
    target_kind: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(256))
    thread_id: Mapped[str | None] = mapped_column(String(256))  # a Slack thread ts or Teams reply-to id
    message: Mapped[dict[str, Any]]
    subject: Mapped[str] = mapped_column(String(128), default="")
    # pending → sending → sent | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # An attempt ended without an answer (timeout, crash): the platform may have it already,
    # so the next attempt first looks for it instead of posting again.
    maybe_sent: Mapped[bool] = mapped_column(default=False)
    # What the platform answered, so that later edits update the same message.
    platform_channel: Mapped[str | None] = mapped_column(String(256))
    platform_message_id: Mapped[str | None] = mapped_column(String(256), index=True)
    # The row whose delivered message this one edits (target_kind "edit") or answers in its thread:
    # its channel and message id are known only once it has been delivered.
    anchor_key: Mapped[str | None] = mapped_column(String(256), index=True)


class ProcessedDelivery(Base):
    """A platform delivery already acted on (Slack event id, Teams activity id …)."""

    __tablename__ = "processed_deliveries"
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    at: Mapped[datetime]


class ConversationRef(Base):
    """Where the Teams bot was installed: the only places it can post to proactively."""

    __tablename__ = "teams_conversations"
    conversation_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    conversation_type: Mapped[str] = mapped_column(String(32))  # personal | channel | groupChat
    service_url: Mapped[str] = mapped_column(String(512))
    tenant_id: Mapped[str | None] = mapped_column(String(64), index=True)
    team_id: Mapped[str | None] = mapped_column(String(256))
    # channelData.team.aadGroupId: the team's id in Microsoft Graph, to read a channel's messages back
    team_aad_group_id: Mapped[str | None] = mapped_column(String(64))
    user_aad_id: Mapped[str | None] = mapped_column(String(64), index=True)
    reference: Mapped[dict[str, Any]]
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime]


class Ticket(Base):
    """An incident or service request, from chat, the API or an import. INC-<id> is its short name."""

    __tablename__ = "tickets"
    __table_args__ = (UniqueConstraint("source", "external_id"), Index("ix_tickets_open", "service_id", "state"),
                      Index("ix_tickets_resolved", "resolved_at"))  # migration 0014: the reviews' sweep
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="incident")  # incident | request
    source: Mapped[str] = mapped_column(String(32))  # chat | api | servicenow …
    external_id: Mapped[str | None] = mapped_column(String(128))
    service_id: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str] = mapped_column(String(4))
    state: Mapped[str] = mapped_column(String(32))
    assignment_group: Mapped[str | None] = mapped_column(String(128))
    supplier: Mapped[str | None] = mapped_column(String(64))  # the supplier it waits on, if any
    opened_at: Mapped[datetime]
    responded_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    opened_by: Mapped[str | None] = mapped_column(String(64))
    # An import's own word on when it was resolved (ServiceNow's resolved_at), kept as told; the clocks follow
    # the history's resolve events, which may differ from it.
    source_resolved_at: Mapped[datetime | None]
    # The chat message it was raised from (a Slack permalink, a Teams message link), shown on it.
    permalink: Mapped[str | None] = mapped_column(String(1000))


class TicketEvent(Base):
    """One step of a ticket's history, with the time it happened (not the time svcbot heard of it)."""

    __tablename__ = "ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket", "ticket_id", "at", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    at: Mapped[datetime]
    # open | state | priority | assign | supplier | respond | resolve | reopen | close
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str | None] = mapped_column(String(128))
    person_id: Mapped[str | None] = mapped_column(String(64))
    recorded_at: Mapped[datetime]


class SlaClock(Base):
    """One target of one agreement measured on one ticket; recomputed from the ticket's events."""

    __tablename__ = "sla_clocks"
    __table_args__ = (UniqueConstraint("ticket_id", "agreement_id", "metric"),
                      Index("ix_sla_clocks_due", "next_check_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    agreement_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # sla | ola | uc
    metric: Mapped[str] = mapped_column(String(16))  # response | resolution
    priority: Mapped[str] = mapped_column(String(4))
    target_seconds: Mapped[float]
    elapsed_seconds: Mapped[float]
    # running | paused | met | breached (stopped late) ; a running clock may already be past due
    state: Mapped[str] = mapped_column(String(16))
    breached: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]
    computed_at: Mapped[datetime]
    # When the sweep must look again: the next warning or the breach; None when nothing is left to tell.
    next_check_at: Mapped[datetime | None]
    notified_level: Mapped[float] = mapped_column(default=0)  # highest threshold announced, 100 = breach


class ClockNotice(Base):
    """A warning or breach notice sent for a clock; unique, so each is announced once."""

    __tablename__ = "clock_notices"
    __table_args__ = (UniqueConstraint("clock_id", "level"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clock_id: Mapped[int] = mapped_column(ForeignKey("sla_clocks.id"))
    level: Mapped[float]
    at: Mapped[datetime]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None]


class Outage(Base):
    """Time a service was down (unplanned) or under approved maintenance, from any source."""

    __tablename__ = "outages"
    __table_args__ = (UniqueConstraint("source", "fingerprint"), Index("ix_outages_service", "service_id", "started_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # unplanned | maintenance
    source: Mapped[str] = mapped_column(String(32))  # alertmanager | api | status
    fingerprint: Mapped[str] = mapped_column(String(128))
    summary: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    runbook: Mapped[str | None] = mapped_column(String(500))  # KB-N, or the alert's runbook_url


class Setting(Base):
    """Small facts the running program keeps, such as the hash of the agreements its clocks follow."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Change(Base):
    """A request for change. CHG-<id> is its short name."""

    __tablename__ = "changes"
    __table_args__ = (UniqueConstraint("source", "external_id"), Index("ix_changes_window", "planned_start"),
                      Index("ix_changes_state", "state", "planned_start"), Index("ix_changes_done", "actual_end"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # chat | api | rabobank …
    external_id: Mapped[str | None] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16))  # standard | normal | emergency
    model: Mapped[str | None] = mapped_column(String(64))  # the standard change model it follows
    risk: Mapped[str] = mapped_column(String(16))
    impact: Mapped[str] = mapped_column(String(16))
    planned_start: Mapped[datetime]
    planned_end: Mapped[datetime]
    actual_start: Mapped[datetime | None]
    actual_end: Mapped[datetime | None]
    requester: Mapped[str | None] = mapped_column(String(64))
    implementer: Mapped[str | None] = mapped_column(String(64))
    implementation_plan: Mapped[str] = mapped_column(Text, default="")
    backout_plan: Mapped[str] = mapped_column(Text, default="")
    test_plan: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(24))
    outcome: Mapped[str | None] = mapped_column(String(32))  # successful | with-issues | failed
    approvals_needed: Mapped[int] = mapped_column(Integer, default=0)
    # A service manager's override of the governance issues (conflicts, freezes, maintenance
    # windows) present when it was given: {"by", "reason", "at", "issues": [issue keys]}.
    override: Mapped[dict[str, Any] | None]
    # Reminders and prompts already sent, by key, so a sweep sends each once; and when the next is due.
    prompts_sent: Mapped[list[str]] = mapped_column(JSON, default=list)
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    # The outbox keys of its announcements, one per channel: the messages edited at every step.
    announcements: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Bumped at every step: the announcement's revision and the calendar event's SEQUENCE.
    revision: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    state_since: Mapped[datetime | None]  # when it entered its state; approval reminders count from here
    closed_at: Mapped[datetime | None]
    # The chat message it was raised from (a Slack permalink, a Teams message link), shown on it.
    permalink: Mapped[str | None] = mapped_column(String(1000))


class ChangeService(Base):
    """A service a change affects, with the change's window copied for fast conflict queries."""

    __tablename__ = "change_services"
    __table_args__ = (Index("ix_change_services_window", "service_id", "planned_start", "planned_end"),)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id", ondelete="CASCADE"), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    planned_start: Mapped[datetime]
    planned_end: Mapped[datetime]


class ChangeVote(Base):
    """An approval or a rejection. Withdrawn (not deleted) when the plan's dates or services change."""

    __tablename__ = "change_votes"
    __table_args__ = (Index("ix_change_votes_change", "change_id", "withdrawn_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id", ondelete="CASCADE"))
    person_id: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))  # approve | reject
    comment: Mapped[str] = mapped_column(Text, default="")
    via: Mapped[str] = mapped_column(String(32))  # button | reaction | text | card | api
    platform: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None]


class Survey(Base):
    """A pulse survey, or the one question a ticket's requester is asked once it is resolved. SRV-<id>."""

    __tablename__ = "surveys"
    __table_args__ = (Index("ix_surveys_service", "service_id", "scale"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # pulse | ticket
    question: Mapped[str] = mapped_column(Text)
    scale: Mapped[str] = mapped_column(String(8))  # csat (1–5) | nps (0–10) | yesno (1 yes, 0 no)
    ask_comment: Mapped[bool] = mapped_column(default=True)
    anonymous: Mapped[bool] = mapped_column(default=True)
    # channel: logical channel names; people: person ids (a group is expanded when the survey is made)
    audience_kind: Mapped[str] = mapped_column(String(16))
    audience: Mapped[list[str]] = mapped_column(JSON, default=list)
    owner: Mapped[str | None] = mapped_column(String(64))
    service_id: Mapped[str | None] = mapped_column(String(64))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), unique=True)
    # scheduled (an after-ticket survey waiting for its delay) → open → closed; or cancelled
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    opens_at: Mapped[datetime]
    closes_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    reminded: Mapped[bool] = mapped_column(default=False)
    # When the sweep must look again (open it, remind, close it); None when nothing is left to do.
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    # The outbox keys of the posted questions, edited when the survey closes.
    announcements: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The results as they stood at closing; they outlive the answers, which the retention purge deletes.
    results: Mapped[dict[str, Any] | None]
    answers_purged: Mapped[bool] = mapped_column(default=False)
    comments_purged: Mapped[bool] = mapped_column(default=False)


class SurveyAnswer(Base):
    """One person's answer. An anonymous answer holds no person: only a keyed hash, so that each person
    answers once, and the hash is cleared when the survey closes."""

    __tablename__ = "survey_answers"
    __table_args__ = (UniqueConstraint("survey_id", "respondent_key"), Index("ix_survey_answers_person", "person_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"), index=True)
    respondent_key: Mapped[str | None] = mapped_column(String(64))
    person_id: Mapped[str | None] = mapped_column(String(64))  # named surveys only
    value: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime]  # anonymous answers: to the hour only


class CsiItem(Base):
    """An entry of the continual service improvement register. CSI-<id> is its short name."""

    __tablename__ = "csi_items"
    __table_args__ = (Index("ix_csi_open", "state", "due"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    owner: Mapped[str] = mapped_column(String(64))
    due: Mapped[date | None] = mapped_column(Date)
    service_id: Mapped[str | None] = mapped_column(String(64), index=True)
    survey_id: Mapped[int | None] = mapped_column(ForeignKey("surveys.id", ondelete="SET NULL"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))  # the breached ticket it answers
    state: Mapped[str] = mapped_column(String(16))  # open | done
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    done_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")


class ScheduledRun(Base):
    """One slot of a scheduled post (a digest, a monthly report): posted once, or skipped, never both.

    The unique (job, slot_at) is what makes a slot happen once, however many replicas or restarts try:
    the row commits with the slot's outbox rows or not at all."""

    __tablename__ = "scheduled_runs"
    __table_args__ = (UniqueConstraint("job", "slot_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(120))  # digest:<name> | report:<name>
    slot_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))  # start (first seen) | posted | late | skipped | manual
    decided_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text, default="")


class ReportComment(Base):
    """The service manager's commentary on one month's report of a service, or of all ("all")."""

    __tablename__ = "report_comments"
    __table_args__ = (Index("ix_report_comments_scope", "scope", "month"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))
    month: Mapped[str] = mapped_column(String(7))  # 2026-10
    text: Mapped[str] = mapped_column(Text)
    person_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


class HomeView(Base):
    """Someone who opened svcbot's home (the Slack App Home tab): only they get it published, again when
    what it shows changes (``digest``), and not more often than the debounce allows (``published_at``)."""

    __tablename__ = "home_views"
    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(64), index=True)
    opened_at: Mapped[datetime]
    digest: Mapped[str | None] = mapped_column(String(64))  # a hash of the view last queued for publishing
    published_at: Mapped[datetime | None]


# Tables kept in modules of their own, named here too so that storage.models names every table.
from storage.models_knowledge import (CatalogueConfirmation, CatalogueReview, KbAlert, KbArticle,  # noqa: E402,F401
                                      KbReview, KbTicketLink, KbVersion)
from storage.models_shifts import Handover  # noqa: E402,F401
from storage.models_suppliers import CreditDecision  # noqa: E402,F401
from storage.models_reviews import IncidentReview, ReviewAction, ReviewNote  # noqa: E402,F401
from storage.models_problems import Problem, ProblemIncident, ProblemSuggestion  # noqa: E402,F401
from storage.models_answers import StoreVersion  # noqa: E402,F401
