"""A change as it is stored: its kinds, states and moves, its number and window, its services and votes."""
from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.core.context import Context, UserError
from storage.models import Change, ChangeService, ChangeVote

KINDS = ("standard", "normal", "emergency")
STATES = ("new", "awaiting-approval", "scheduled", "in-progress", "review", "closed", "rejected", "cancelled")
OUTCOMES = ("successful", "with-issues", "failed")
# verb → (the states it may be given in, the state it leads to; complete decides for itself)
MOVES = {
    "start": ({"scheduled"}, "in-progress"),
    "complete": ({"in-progress"}, None),  # closed, or review when it needs one
    "fail": ({"in-progress"}, "review"),
    "cancel": ({"new", "awaiting-approval", "scheduled"}, "cancelled"),
    "review": ({"review"}, "closed"),
}
NUMBER = re.compile(r"^CHG-?(\d{1,9})$", re.IGNORECASE)


STATE_ICON = {"new": "🆕", "awaiting-approval": "⏳", "scheduled": "📅", "in-progress": "🔧", "review": "🔍",
              "closed": "✅", "rejected": "⛔", "cancelled": "🚫"}
OUTCOME_TEXT = {"successful": "successful", "with-issues": "successful with issues",
                "failed": "failed and rolled back"}


def number(change: Change) -> str:
    return f"CHG-{change.id}"


def window_text(change: Change, zone: str) -> str:
    z = ZoneInfo(zone)
    start, end = change.planned_start.astimezone(z), change.planned_end.astimezone(z)
    end_fmt = "%H:%M %Z" if end.date() == start.date() else "%a %d %b %H:%M %Z"
    # Across a clock change the two ends are in different offsets: name both.
    start_fmt = "%a %d %b %Y %H:%M" + (" %Z" if start.tzname() != end.tzname() else "")
    return f"{start:{start_fmt}} – {end:{end_fmt}}"


def id_from(rest: list[str], example: str) -> int:
    m = NUMBER.match(rest[0]) if rest else None
    if not m:
        raise UserError("Say which change, like CHG-12.", example)
    return int(m[1])


def find(session: Session, key: str | int, example: str, lock: bool = False) -> Change:
    m = NUMBER.match(key) if isinstance(key, str) else None
    if isinstance(key, str) and not m:
        raise UserError("Say which change, like CHG-12.", example)
    change_id = int(m[1]) if m else key
    query = select(Change).where(Change.id == change_id)
    if lock and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()  # two approvers at once must both be counted
    change = session.scalar(query)
    if change is None:
        raise UserError(f"There is no CHG-{change_id}.", "change list")
    return change


def set_services(session: Session, change: Change, services: list[str]) -> None:
    session.query(ChangeService).filter(ChangeService.change_id == change.id).delete(synchronize_session=False)
    for sid in services:
        session.add(ChangeService(change_id=change.id, service_id=sid, planned_start=change.planned_start,
                                  planned_end=change.planned_end))
    session.flush()


def services_of(session: Session, change: Change) -> list[str]:
    return list(session.scalars(select(ChangeService.service_id).where(ChangeService.change_id == change.id)
                                .order_by(ChangeService.service_id)))


def approver_role(change: Change) -> str:
    return "emergency_cab" if change.kind == "emergency" else "cab"


def votes(session: Session, change: Change) -> list[ChangeVote]:
    return list(session.scalars(select(ChangeVote).where(ChangeVote.change_id == change.id,
                                                         ChangeVote.withdrawn_at.is_(None))
                                .order_by(ChangeVote.id)))


def eligible_approvers(ctx: Context, change: Change) -> list[str]:
    return [p for p in getattr(ctx.config.roles, approver_role(change)) if p not in (change.requester, change.implementer)]
