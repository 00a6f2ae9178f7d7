"""CSAT, NPS and yes/no results: plain arithmetic over answers, with no I/O.

- CSAT (1–5): the share of answers that are 4 or 5.
- NPS (0–10): the share of promoters (9–10) minus the share of detractors (0–6), from −100 to 100.
- yes/no (1 yes, 0 no): the share of yes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

SCALE_VALUES = {"csat": tuple(range(1, 6)), "nps": tuple(range(0, 11)), "yesno": (1, 0)}
SCALE_NAMES = {"csat": "CSAT 1–5", "nps": "NPS 0–10", "yesno": "yes / no"}
CSAT_WORDS = {1: "very dissatisfied", 2: "dissatisfied", 3: "neither", 4: "satisfied", 5: "very satisfied"}


def value_label(scale: str, value: int) -> str:
    if scale == "csat":
        return f"{value} ({CSAT_WORDS[value]})"
    if scale == "yesno":
        return "yes" if value else "no"
    return str(value)


def parse_value(scale: str, text: str) -> int:
    """An answer as typed or carried by a button; ValueError says what the scale takes."""
    word = text.strip().lower()
    if scale == "yesno" and word in ("yes", "y", "no", "n"):
        return int(word.startswith("y"))
    try:
        value = int(word)
    except ValueError:
        value = None
    if value not in SCALE_VALUES[scale]:
        allowed = {"csat": "a number from 1 to 5", "nps": "a number from 0 to 10", "yesno": "yes or no"}[scale]
        raise ValueError(f"'{text}' is not an answer on this survey's scale; give {allowed}")
    return value


@dataclass(frozen=True)
class Results:
    scale: str
    answers: int
    distribution: dict[int, int] = field(default_factory=dict)  # every value of the scale, 0 when unchosen
    invited: int | None = None  # None: the audience was a channel, whose readers svcbot cannot count

    @property
    def response_rate(self) -> float | None:
        return 100 * self.answers / self.invited if self.invited else None

    def share(self, values: Iterable[int]) -> float | None:
        if not self.answers:
            return None
        return 100 * sum(self.distribution.get(v, 0) for v in values) / self.answers

    @property
    def csat(self) -> float | None:
        return self.share((4, 5)) if self.scale == "csat" else None

    @property
    def nps(self) -> float | None:
        if self.scale != "nps" or not self.answers:
            return None
        return self.share((9, 10)) - self.share(range(0, 7))

    @property
    def yes(self) -> float | None:
        return self.share((1,)) if self.scale == "yesno" else None

    @property
    def score(self) -> float | None:
        """The headline number: CSAT %, NPS, or % yes."""
        return {"csat": self.csat, "nps": self.nps, "yesno": self.yes}[self.scale]

    @property
    def score_name(self) -> str:
        return {"csat": "CSAT", "nps": "NPS", "yesno": "Yes"}[self.scale]

    def score_text(self) -> str:
        score = self.score
        if score is None:
            return "—"
        return f"{score:+.0f}" if self.scale == "nps" else f"{score:.0f} %"

    @property
    def low(self) -> bool:
        """Worth an improvement: CSAT under 80 %, a negative NPS, or under half saying yes."""
        score = self.score
        if score is None:
            return False
        return score < {"csat": 80, "nps": 0, "yesno": 50}[self.scale]

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "answers": self.answers, "invited": self.invited,
                "distribution": {str(k): v for k, v in self.distribution.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Results":
        return cls(data["scale"], data["answers"], {int(k): v for k, v in data["distribution"].items()},
                   data.get("invited"))


def summarise(scale: str, values: Iterable[int], invited: int | None = None) -> Results:
    distribution = {v: 0 for v in SCALE_VALUES[scale]}
    answers = 0
    for v in values:
        distribution[v] += 1
        answers += 1
    return Results(scale, answers, distribution, invited)


def tally(scale: str, counts: dict[int, int], invited: int | None = None) -> Results:
    """Results from the number of answers of each value."""
    distribution = {v: counts.get(v, 0) for v in SCALE_VALUES[scale]}
    return Results(scale, sum(distribution.values()), distribution, invited)


def trend(current: Results, previous: Results | None) -> float | None:
    """The headline's change since the previous survey, in points; None when either has no score."""
    if previous is None or current.scale != previous.scale or current.score is None or previous.score is None:
        return None
    return current.score - previous.score


def bar(count: int, total: int, width: int = 10) -> str:
    filled = round(width * count / total) if total else 0
    return "█" * filled + "░" * (width - filled)
