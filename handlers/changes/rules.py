"""Governance of a change's plan: conflicts with other changes, freeze windows and maintenance windows.

Each finding is an ``Issue`` with a stable key, so that a service manager's override covers exactly
the issues present when it was given: a new conflict that appears later blocks again.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.core.config import AppConfig
from handlers.core.config_catalogue import WEEKDAYS, MaintenanceWindow
from storage.models import Change, ChangeService

# A change in one of these states holds its window: another change on the same service conflicts.
HOLDING = ("awaiting-approval", "scheduled", "in-progress")


@dataclass(frozen=True)
class Issue:
    key: str
    text: str


def conflicts(session: Session, services: list[str], start: datetime, end: datetime,
              exclude: int | None = None) -> list[tuple[int, str]]:
    """(change id, service) of every holding change that shares a service and overlaps [start, end)."""
    query = (select(ChangeService.change_id, ChangeService.service_id)
             .join(Change, Change.id == ChangeService.change_id)
             .where(ChangeService.service_id.in_(services), ChangeService.planned_start < end,
                    ChangeService.planned_end > start, Change.state.in_(HOLDING))
             .order_by(ChangeService.change_id, ChangeService.service_id))
    if exclude is not None:
        query = query.where(ChangeService.change_id != exclude)
    return [(cid, sid) for cid, sid in session.execute(query)]


def freezes(cfg: AppConfig, services: list[str], start: datetime, end: datetime) -> list[Issue]:
    found = []
    for f in cfg.changes.freezes:
        f_start, f_end = f.span()
        hit = [s for s in services if f.covers(s)]
        if hit and f_start < end and start < f_end:
            found.append(Issue(f"freeze:{f.name}", f"inside the freeze '{f.name}' "
                                                   f"({f_start:%d %b %H:%M} – {f_end:%d %b %H:%M} UTC)"))
    return found


def inside_maintenance(windows: list[MaintenanceWindow], zone: ZoneInfo, start: datetime, end: datetime) -> bool:
    """True if [start, end] lies wholly inside one occurrence of one window (which may pass midnight)."""
    local_start = start.astimezone(zone)
    # An occurrence that contains the start began on the start's day or, passing midnight, the day before.
    for day_offset in (0, -1):
        day = local_start.date() + timedelta(days=day_offset)
        for w in windows:
            if WEEKDAYS[day.weekday()] not in w.days:
                continue
            w_start = datetime.combine(day, w.hours.start, zone)
            w_end_day = day if w.hours.end > w.hours.start else day + timedelta(days=1)
            w_end = datetime.combine(w_end_day, w.hours.end, zone)
            if w_start <= start and end <= w_end:
                return True
    return False


def outside_windows(cfg: AppConfig, services: list[str], start: datetime, end: datetime) -> list[Issue]:
    found = []
    for sid in services:
        service = cfg.service(sid)
        if service is None or not service.maintenance:
            continue
        zone = ZoneInfo(cfg.calendars[service.calendar].timezone)
        if not inside_maintenance(service.maintenance, zone, start, end):
            spans = ", ".join(f"{'/'.join(w.days)} {w.hours.start:%H:%M}-{w.hours.end:%H:%M}"
                              for w in service.maintenance)
            found.append(Issue(f"window:{sid}", f"outside {service.name}'s maintenance windows ({spans} {zone.key})"))
    return found


def issues(session: Session, cfg: AppConfig, change: Change, services: list[str]) -> list[Issue]:
    """Everything about the plan a service manager must accept before it can be approved."""
    start, end = change.planned_start, change.planned_end
    found = []
    by_change: dict[int, list[str]] = {}
    for cid, sid in conflicts(session, services, start, end, exclude=change.id):
        by_change.setdefault(cid, []).append(sid)
    for cid, sids in by_change.items():
        found.append(Issue(f"conflict:CHG-{cid}", f"overlaps CHG-{cid} on {cfg.service_names(sids)}"))
    return found + freezes(cfg, services, start, end) + outside_windows(cfg, services, start, end)


def blocking(change: Change, found: list[Issue]) -> list[Issue]:
    """The issues not covered by an override."""
    accepted = set((change.override or {}).get("issues", []))
    return [i for i in found if i.key not in accepted]
