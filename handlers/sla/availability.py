"""Availability and error budgets: plain arithmetic on time intervals, no I/O.

Intervals are half-open [start, end) pairs of timezone-aware datetimes. Availability follows SLA-CASES.md:
(agreed service time − downtime) / agreed service time, where agreed service time is the period minus
approved maintenance. Burn-rate alerting follows the Google SRE Workbook, "Alerting on SLOs"
(multiwindow, multi-burn-rate).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Iterable, NamedTuple

Interval = tuple[datetime, datetime]


@dataclass(frozen=True)
class Availability:
    agreed_seconds: float
    downtime_seconds: float
    ratio: float | None  # None when there is no agreed service time to measure against


@dataclass(frozen=True)
class BurnAlert:
    severity: str  # "page" or "ticket"
    long_window: timedelta
    short_window: timedelta
    long_burn: float
    short_burn: float
    threshold: float


class BurnRule(NamedTuple):
    severity: str
    long_window: timedelta
    short_window: timedelta
    threshold: float


# The SRE Workbook's recommended rules; pages first, so burn_alerts returns them in that order.
BURN_RULES: tuple[BurnRule, ...] = (
    BurnRule("page", timedelta(hours=1), timedelta(minutes=5), 14.4),
    BurnRule("page", timedelta(hours=6), timedelta(minutes=30), 6.0),
    BurnRule("ticket", timedelta(days=3), timedelta(hours=6), 1.0),
)


def _require_aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment!r}")


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping and touching intervals joined and empty ones dropped."""
    checked = []
    for start, end in intervals:
        if start is None or end is None:
            # An outage still open has no end yet: the caller decides what "now" is and passes it.
            raise ValueError("an interval needs both start and end; pass `now` as the end of one still open")
        _require_aware(start, "interval start")
        _require_aware(end, "interval end")
        if end < start:
            raise ValueError(f"interval ends before it starts: {start.isoformat()} → {end.isoformat()}")
        if end > start:  # [t, t) is empty and counts for nothing
            checked.append((start, end))
    checked.sort()
    merged: list[Interval] = []
    for start, end in checked:
        if merged and start <= merged[-1][1]:  # overlapping, or touching: [a, b) + [b, c) = [a, c)
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _clip(merged: list[Interval], start: datetime, end: datetime) -> list[Interval]:
    """The parts of already merged intervals that fall inside [start, end)."""
    clipped = []
    for lo, hi in merged:
        lo, hi = max(lo, start), min(hi, end)
        if lo < hi:
            clipped.append((lo, hi))
    return clipped


def _total(merged: list[Interval]) -> timedelta:
    return sum((end - start for start, end in merged), timedelta())


def _overlap(a: list[Interval], b: list[Interval]) -> timedelta:
    """Time covered by both lists; each list is merged (sorted, disjoint), so one pass suffices."""
    overlap = timedelta()
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            overlap += hi - lo
        if a[i][1] <= b[j][1]:
            i += 1
        else:
            j += 1
    return overlap


def availability(start: datetime, end: datetime, outages: Iterable[Interval],
                 maintenance: Iterable[Interval] = ()) -> Availability:
    """Availability over [start, end). Downtime is unplanned outage time inside the period and outside
    approved maintenance; overlapping outages count once."""
    _require_aware(start, "period start")
    _require_aware(end, "period end")
    if end < start:
        raise ValueError(f"period ends before it starts: {start.isoformat()} → {end.isoformat()}")
    maintenance_in_period = _clip(merge(maintenance), start, end)
    outages_in_period = _clip(merge(outages), start, end)
    agreed = (end - start) - _total(maintenance_in_period)
    downtime = _total(outages_in_period) - _overlap(outages_in_period, maintenance_in_period)
    # timedelta ÷ timedelta divides whole microseconds, so 43050/43080 comes out exactly as that fraction.
    ratio = (agreed - downtime) / agreed if agreed else None
    return Availability(agreed.total_seconds(), downtime.total_seconds(), ratio)


def _as_written(number: float) -> Fraction:
    """The decimal a person wrote: 0.999 as exactly 999/1000, not the nearest binary float.
    Otherwise 1 − 0.999 is 0.0010000000000000009, the 30-day budget 2592.0000000000023 s, and a burn
    of exactly 14.4 comes out as 14.399999999999988 and misses its threshold."""
    return Fraction(repr(float(number)))


def _check_target(target: float) -> None:
    if not 0 < target < 1:
        raise ValueError(f"target is a fraction between 0 and 1 (0.999 for 99.9 %), got {target!r}")


def error_budget_seconds(target: float, period_seconds: float) -> float:
    """Bad time the target allows over the period: 99.9 % over 30 days is 2592 s (43.2 min)."""
    _check_target(target)
    if period_seconds < 0:
        raise ValueError(f"period_seconds must not be negative, got {period_seconds!r}")
    return float((1 - _as_written(target)) * _as_written(period_seconds))


def burn_rate(bad_seconds: float, window_seconds: float, target: float) -> float:
    """How fast the window spends the budget: its bad share ÷ (1 − target). 1.0 spends exactly the
    budget over the SLO period; 14.4 spends 2 % of a 30-day budget in one hour."""
    _check_target(target)
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds!r}")
    if not 0 <= bad_seconds <= window_seconds:
        raise ValueError(f"bad_seconds must be between 0 and the window ({window_seconds}), got {bad_seconds!r}")
    bad_share = _as_written(bad_seconds) / _as_written(window_seconds)
    return float(bad_share / (1 - _as_written(target)))


def burn_alerts(outages: Iterable[Interval], now: datetime, target: float) -> list[BurnAlert]:
    """The BURN_RULES that fire at `now`: both the long and the short window, each ending at `now`, burn at
    or above the rule's threshold. The short window makes an alert stop soon after the burning stops."""
    _require_aware(now, "now")
    merged = merge(outages)
    firing = []
    for rule in BURN_RULES:
        long_burn = _window_burn(merged, now, rule.long_window, target)
        short_burn = _window_burn(merged, now, rule.short_window, target)
        if long_burn >= rule.threshold and short_burn >= rule.threshold:
            firing.append(BurnAlert(rule.severity, rule.long_window, rule.short_window,
                                    long_burn, short_burn, rule.threshold))
    return firing


def _window_burn(merged: list[Interval], now: datetime, window: timedelta, target: float) -> float:
    bad = _total(_clip(merged, now - window, now))
    return burn_rate(bad.total_seconds(), window.total_seconds(), target)
