"""SLA, OLA and UC clocks: which targets a ticket is measured against, and how far each has run.

A clock is never incremented; it is measured again from the ticket's whole history whenever the
history grows, so a late event, a priority change or a new app.yaml gives the same answer as if
things had been known all along. Rules, per agreement kind:

- SLA: runs while the ticket is open and not in one of the agreement's pause states.
- OLA: runs only while the ticket is assigned to that internal team (and not paused).
- UC: runs only while the ticket waits on that supplier (state awaiting-vendor).

Response stops at the first response; resolution stops at resolution. A reopened ticket resumes its
resolution clock in the same cycle, and the time it spent resolved does not count. A priority change
keeps the elapsed time and measures it against the new priority's target.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable

from handlers.core.business_time import BusinessCalendar
from handlers.core.config import AppConfig
from handlers.core.config_catalogue import Agreement, Calendar, Target
from handlers.sla.clock_warnings import warning_levels

OPEN_STATES = ("new", "in-progress", "awaiting-customer", "awaiting-vendor", "awaiting-problem",
               "awaiting-evidence")
DONE_STATES = ("resolved", "closed")
VENDOR_STATE = "awaiting-vendor"


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str  # open | state | priority | assign | supplier | respond | resolve | reopen | close
    value: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """The ticket as it stood between two events."""

    state: str
    priority: str
    group: str | None
    supplier: str | None
    responded: bool
    # Suppliers that moved the ticket on after it waited on them (a UC's response); "" for an unnamed one.
    vendor_answered: frozenset[str]


def replay(events: Iterable[Event]) -> list[tuple[datetime, Snapshot]]:
    """The ticket's states over time: each entry holds from its instant until the next one."""
    state, priority, group, supplier, responded = "new", "P3", None, None, False
    vendor_answered: frozenset[str] = frozenset()
    out: list[tuple[datetime, Snapshot]] = []
    for e in sorted(events, key=lambda e: e.at):
        was = state
        if e.kind == "open":
            priority = e.value or priority
        elif e.kind == "state":
            state = e.value or state
        elif e.kind == "priority":
            priority = e.value or priority
        elif e.kind == "assign":
            group = e.value
        elif e.kind == "supplier":
            supplier = e.value
        elif e.kind == "respond":
            responded = True
        elif e.kind == "resolve":
            state = "resolved"
        elif e.kind == "reopen":
            state = "in-progress"
        elif e.kind == "close":
            state = "closed"
        if e.kind in ("resolve", "close") or (e.kind == "state" and state in DONE_STATES):
            responded = True  # resolving answers the customer too
        if was == VENDOR_STATE and state != VENDOR_STATE:
            vendor_answered |= {supplier or ""}
        # Every step is kept, even several at one instant: the last one stands for the time that
        # follows, but a clock that could run at the first (a ticket answered as it opened) did start.
        out.append((e.at, Snapshot(state, priority, group, supplier, responded, vendor_answered)))
    return out


@dataclass(frozen=True)
class Measure:
    target_seconds: float
    elapsed_seconds: float
    running: bool  # counting at `now`
    stopped_at: datetime | None  # when the target's measurement ended (response given, resolved)
    due_at: datetime | None  # when it is (or was) due, if it is running; None while paused or stopped
    threshold_at: dict[float, datetime | None]  # warning level (% of target) → when it is reached, if running
    started_at: datetime
    engaged: bool  # it ran at some point (an OLA whose team never had the ticket did not)
    leads: dict[float, float] = field(default_factory=dict)  # warning level from warn_before → its lead, s

    @property
    def breached(self) -> bool:
        # Compared in seconds, not in rounded percentages: 99.995 % used is met.
        return self.elapsed_seconds > self.target_seconds

    @property
    def used(self) -> float:
        return 100 * self.elapsed_seconds / self.target_seconds if self.target_seconds else 0.0

    @property
    def state(self) -> str:
        if self.stopped_at is not None:
            if not self.engaged:
                return "unused"  # never ran: an OLA whose team never had the ticket, say
            return "breached" if self.breached else "met"
        return "running" if self.running else "paused"


@dataclass(frozen=True)
class ClockSpec:
    """One target of one agreement as it applies to a ticket."""

    agreement: Agreement
    metric: str
    calendar: BusinessCalendar
    targets: dict[str, Target]  # by priority ("*" for a target of every priority)
    counts: Callable[[Snapshot], bool]  # whether the clock runs in this state of the ticket
    stops: Callable[[Snapshot], bool]  # whether the target has been reached (responded, resolved)

    def target_for(self, priority: str) -> Target | None:
        return self.targets.get(priority) or self.targets.get("*")


def target_seconds(target: Target, calendar: BusinessCalendar, started_at: datetime) -> float:
    within = target.within
    if within.whole_days:
        end = calendar.end_of_business_days(started_at, within.whole_days)
        return calendar.business_seconds(started_at, end)
    return within.minutes * 60


def measure(spec: ClockSpec, timeline: list[tuple[datetime, Snapshot]], now: datetime) -> Measure | None:
    """How far the clock has run at ``now``; None when the ticket's current priority has no target here."""
    timeline = [(at, snap) for at, snap in timeline if at <= now]
    if not timeline:
        return None
    started_at, last = timeline[0][0], timeline[-1][1]
    target = spec.target_for(last.priority)
    if target is None:
        return None
    calendar = spec.calendar if target.within.business else ALWAYS
    # "N business days" run from when this clock starts (an OLA: when its team gets the ticket).
    first_run = next((at for at, snap in timeline if spec.counts(snap) and not spec.stops(snap)), started_at)
    total = target_seconds(target, calendar, first_run)
    stopped = spec.stops
    levels = warning_levels(target, total)
    leads = {level: lead for level, lead in levels.items() if lead is not None}
    goals = {level: total - leads[level] if level in leads else total * level / 100 for level in levels}
    goals[100.0] = total

    elapsed, stopped_at, engaged, counting = 0.0, None, False, False
    reached: dict[float, datetime | None] = {}
    for i, (at, snap) in enumerate(timeline):
        if stopped(snap):
            # Reaching the target while the clock could run (even at the instant it opened) is a run.
            engaged = engaged or counting
            stopped_at, counting = stopped_at or at, False
            continue
        stopped_at = None  # reopened: the same clock resumes
        counting = spec.counts(snap)
        end = timeline[i + 1][0] if i + 1 < len(timeline) else now
        if not counting or end <= at:
            continue
        engaged = True
        segment = calendar.business_seconds(at, end)
        for level, goal in goals.items():
            if level not in reached and elapsed < goal <= elapsed + segment:
                reached[level] = calendar.add(at, goal - elapsed)
        elapsed += segment
    running = stopped_at is None and spec.counts(last)
    # An SLA always applies: one that ended without running (paused from opening to resolution) is
    # met, not unused; only OLAs and UCs can go unused.
    engaged = engaged or running or (stopped_at is not None and spec.agreement.kind == "sla")
    if running:  # the levels still ahead are reached if it keeps running from now
        for level, goal in goals.items():
            if level not in reached:
                reached[level] = calendar.add(now, goal - elapsed) if goal > elapsed else now
    due_at = reached.get(100.0) if running else None
    return Measure(total, elapsed, running, stopped_at, due_at, reached, started_at, engaged, leads)


class _Always(BusinessCalendar):
    """Clock time: for targets given in plain hours or minutes."""

    def __init__(self):
        super().__init__(Calendar(timezone="UTC", **{"24x7": True}))


ALWAYS = _Always()


_calendars: dict[int, tuple[Calendar, BusinessCalendar]] = {}


def _calendar(cal: Calendar) -> BusinessCalendar:
    """One BusinessCalendar (and its cache of working days) per calendar of the loaded app.yaml."""
    known = _calendars.get(id(cal))
    if known is None or known[0] is not cal:
        known = _calendars[id(cal)] = (cal, BusinessCalendar(cal))
    return known[1]


def _stops(kind: str, metric: str, party: str = "", unnamed: bool = False) -> Callable[[Snapshot], bool]:
    """``unnamed``: a wait on no named supplier counts as a wait on this one (it serves the service)."""
    if metric == "resolution":
        return lambda s: s.state in DONE_STATES
    if kind == "uc":  # the supplier responds by moving the ticket on
        return lambda s: party in s.vendor_answered or ("" in s.vendor_answered and unnamed) \
            or s.state in DONE_STATES
    return lambda s: s.responded


def specs_for(config: AppConfig, service_id: str) -> list[ClockSpec]:
    """Every clock a ticket of this service gets: a response and a resolution clock per agreement that
    has targets for them."""
    service = config.service(service_id)
    if service is None:
        return []
    out = []
    for agreement in config.agreements:
        if agreement.service != service.id:
            continue
        team = config.group(agreement.party) if agreement.kind == "ola" else None
        calendar_name = agreement.calendar or (team and team.calendar) or service.calendar
        calendar = _calendar(config.calendars[calendar_name])
        paused = set(agreement.pause_states)
        if agreement.kind == "sla":
            def counts(s, paused=paused):
                return s.state not in paused and s.state not in DONE_STATES
        elif agreement.kind == "ola":
            def counts(s, paused=paused, team=agreement.party):
                return s.group == team and s.state not in paused and s.state not in DONE_STATES
        else:
            def counts(s, supplier=agreement.party, default=(agreement.party in service.suppliers)):
                return s.state == VENDOR_STATE and (s.supplier == supplier or (s.supplier is None and default))
        for metric in ("response", "resolution"):
            targets = {t.priority or "*": t for t in agreement.targets if t.metric == metric}
            if targets:
                stops = _stops(agreement.kind, metric, agreement.party, agreement.party in service.suppliers)
                out.append(ClockSpec(agreement, metric, calendar, targets, counts, stops))
    return out
