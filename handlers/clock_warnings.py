"""A target's warning levels: ``warn_at`` (shares of the target) and ``warn_before`` (lead times before due).

Both become levels in % of the target, so the sweep announces and de-duplicates them alike (one notice
per clock and level). A lead time is measured in the target's own kind of time — business time on a
business-time target, clock time on a clock-time one — and its level is worked out from the time this
ticket is allowed, so "1 hour" stays one hour before due when the target or the priority changes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handlers.config import Target

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


def lead_problems(path: str, target: "Target") -> list[str]:
    """check-config's objections to a target's ``warn_before``, each by its path in app.yaml."""
    problems = []
    within = target.within
    for i, lead in enumerate(target.warn_before):
        where = f"{path}.warn_before[{i}]"
        if lead.whole_days:
            problems.append(f"{where}: say hours or minutes, like '1 hour' or '15 min'")
        elif lead.minutes <= 0:
            problems.append(f"{where}: a warning must come some time before due, like '15 min'")
        elif within is None:
            problems.append(f"{where}: a {target.metric} target has no time allowed to warn before")
        elif lead.business and not within.business:
            problems.append(f"{where}: this target counts clock time, so its warnings do too: say "
                            f"'{_text(lead.minutes)}'")
        elif within.whole_days and lead.minutes >= within.whole_days * 24 * 60:
            problems.append(f"{where}: {_text(lead.minutes)} is not shorter than the target "
                            f"({within.whole_days} business day{'s' * (within.whole_days != 1)})")
        elif not within.whole_days and lead.minutes >= within.minutes:
            problems.append(f"{where}: {_text(lead.minutes)} is not shorter than the target "
                            f"({_text(within.minutes)})")
    return problems


def _text(minutes: float) -> str:
    """As app.yaml would say it, so that a suggestion can be pasted back: '1 hour', '90 min'."""
    if minutes % 60:
        return f"{minutes:g} min"
    hours = minutes / 60
    return f"{hours:g} hour{'s' * (hours != 1)}"
