"""A target's warning levels: ``warn_at`` (shares of the target) and ``warn_before`` (lead times before due).

Both become levels in % of the target, so the sweep announces and de-duplicates them alike (one notice
per clock and level). A lead time is measured in the target's own kind of time — business time on a
business-time target, clock time on a clock-time one — and its level is worked out from the time this
ticket is allowed, so "1 hour" stays one hour before due when the target or the priority changes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handlers.core.config_catalogue import Target

BREACH = 100.0


def warning_levels(target: "Target", total_seconds: float) -> dict[float, float | None]:
    """Warning level (% of the target) → its lead time in seconds, or None for a ``warn_at`` share.

    A lead not shorter than the time allowed (a short "1 business day", say) has no level: it would
    warn the moment the clock starts."""
    levels: dict[float, float | None] = {float(level): None for level in target.warn_at}
    if total_seconds <= 0:
        return levels
    for lead in target.warn_before:
        seconds = lead.minutes * 60
        if 0 < seconds < total_seconds:
            # Rounded so that the same lead gives the same level (and the same notice key) every time.
            levels.setdefault(round(100 * (total_seconds - seconds) / total_seconds, 6), seconds)
    return levels


