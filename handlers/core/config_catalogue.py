"""The shape of app.yaml, its catalogue: calendars, people, groups and roles, channels, services,
agreements and their targets.
"""
from __future__ import annotations

import re
from datetime import date, time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from handlers.core.config_commercial import Commercial, ServiceCost

SERVICE_STATES = ("operational", "degraded", "partial-outage", "major-outage", "maintenance")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Interval(Strict):
    start: time
    end: time

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value):
        return _parse_interval(value).model_dump() if isinstance(value, str) else value


def _parse_interval(text: str, wraps: bool = False) -> Interval:
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", str(text))
    if not m:
        raise ValueError(f"'{text}' is not an interval like 09:00-17:30")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h2 == 24 and m2 == 0:
        h2, m2 = 23, 59  # "24:00" means until the end of the day
    try:
        start, end = time(h1, m1), time(h2, m2)
    except ValueError as exc:
        raise ValueError(f"'{text}': {exc}") from None
    if end == start or (end < start and not wraps):
        raise ValueError(f"'{text}' ends before it starts")
    return Interval(start=start, end=end)


class HolidaySource(Strict):
    country: str
    subdivision: str | None = None


class Closure(Strict):
    date: date
    reason: str = ""


class Calendar(Strict):
    timezone: str
    always_open: bool = Field(False, alias="24x7")
    hours: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[Interval]] = {}
    holidays: list[HolidaySource] = []
    closures: list[Closure] = []
    quiet_hours: Interval | None = None  # may pass midnight: "21:00-07:00"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("quiet_hours", mode="before")
    @classmethod
    def _quiet(cls, value):
        return _parse_interval(value, wraps=True) if isinstance(value, str) else value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone '{value}'") from None
        return value


class Person(Strict):
    id: Annotated[str, Field(pattern=ID_PATTERN)]
    name: str
    slack: str | None = None
    teams: str | None = None  # Azure AD object id
    timezone: str | None = None
    location: str | None = None
    # Reminders by direct message wait till these end, in the person's time zone; may pass midnight.
    quiet_hours: Interval | None = None
    # Where direct messages go for someone on both platforms; default Slack when it is connected.
    prefer: Literal["slack", "teams"] | None = None
    # What they know (payments, linux, …): a new ticket suggests the people on shift whose skills match its
    # service's (handlers/core/on_shift.py).
    skills: list[Annotated[str, Field(pattern=ID_PATTERN)]] = []

    @model_validator(mode="after")
    def _prefer_a_platform_they_are_on(self):
        if self.prefer and not getattr(self, self.prefer):
            raise ValueError(f"prefer: {self.prefer} needs this person's {self.prefer} id "
                             f"(e.g. {self.prefer}: {'U0ABC123' if self.prefer == 'slack' else '<AAD object id>'})")
        return self

    _zone = field_validator("timezone")(lambda cls, v: v if v is None else Calendar._zone(v))
    _quiet = field_validator("quiet_hours", mode="before")(
        lambda cls, v: _parse_interval(v, wraps=True) if isinstance(v, str) else v)


class Shift(Strict):
    """When a group is on shift, in its calendar's time zone; may pass midnight ("22:00-06:00")."""

    days: Annotated[list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]], Field(min_length=1)]
    hours: Interval

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, value):
        return _parse_interval(value, wraps=True) if isinstance(value, str) else value


class Group(Strict):
    """An internal team (party to OLAs) or a supplier (party to underpinning contracts)."""

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    name: str
    kind: Literal["internal", "supplier"]
    location: str | None = None
    calendar: str | None = None
    channel: str | None = None
    members: list[str] = []
    # When its people are on shift; none: its calendar's working days, from opening to last closing.
    shifts: list[Shift] = []
    # The group that takes over its open work at the end of each of its shifts (follow the sun).
    handover_to: str | None = None


class Roles(Strict):
    service_managers: list[str] = []
    cab: list[str] = []
    emergency_cab: list[str] = []


class ChannelTarget(Strict):
    slack: str | None = None
    teams: str | None = None
    # INC-N, CHG-N and SRV-N written here are answered in the thread with a one-line summary.
    unfurl: bool = False


DURATION = re.compile(
    r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<biz>business\s+)?(?P<unit>min|mins|minutes?|h|hours?|days?)\s*$")


class Duration(Strict):
    minutes: float
    business: bool
    whole_days: int | None = None  # "N business days": due at the end of the Nth working day

    @classmethod
    def parse(cls, text: str) -> "Duration":
        m = DURATION.match(str(text))
        if not m:
            raise ValueError(f"'{text}' is not a duration like '30 min', '4 business hours', '2 business days'")
        n, business, unit = float(m["n"]), bool(m["biz"]), m["unit"]
        if unit.startswith("day"):
            if not business:
                unit = "day" if n == 1 else "days"
                raise ValueError(f"'{text}' is ambiguous: say '{m['n']} business {unit}' or '{int(n * 24)} hours'")
            if n != int(n):
                raise ValueError(f"'{text}': business days must be whole")
            return cls(minutes=0, business=True, whole_days=int(n))
        minutes = n * 60 if unit.startswith("h") else n
        return cls(minutes=minutes, business=business)


SCALES = ("csat", "nps", "yesno")


def _clock_time(value, what: str):
    """A duration that must be clock time, not business time."""
    duration = Duration.parse(value) if isinstance(value, (str, int, float)) else value
    if isinstance(duration, Duration) and duration.business:
        raise ValueError(f"{what} is clock time, like '2 hours'")
    return duration


class TicketSurvey(Strict):
    """The one-question survey a ticket's requester gets when it is resolved."""

    enabled: bool = True
    sample_percent: Annotated[float, Field(gt=0, le=100)] = 100
    delay: Annotated[Duration, Field(validate_default=True)] = "1 hours"  # clock time after the resolution
    question: str = "How satisfied are you with how {ticket} was handled?"

    _delay = field_validator("delay", mode="before")(lambda cls, v: _clock_time(v, "a survey's delay"))


class Dependency(Strict):
    """One service another depends on: ``full`` (it stops when this one stops) or ``partial`` (it limps on).
    Written as the bare id (``payments``) or as ``{service: payments, impact: partial}``."""

    service: str
    impact: Literal["full", "partial"] = "full"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        return {"service": value} if isinstance(value, str) else value


class Service(Strict):
    id: Annotated[str, Field(pattern=ID_PATTERN)]
    name: str
    owner: str
    team: str | None = None
    tier: Annotated[int, Field(ge=1, le=4)]
    channel: str | None = None
    calendar: str
    suppliers: list[str] = []
    description: str = ""
    maintenance: list[MaintenanceWindow] = []  # none: changes may run at any time
    # The skills its tickets need; none: a person with the service's id among their skills matches.
    skills: list[Annotated[str, Field(pattern=ID_PATTERN)]] = []
    ticket_survey: TicketSurvey | None = None  # none: no survey after its tickets are resolved
    cost: ServiceCost | None = None  # what it costs a month, by line (people, hardware, software, suppliers)
    depends_on: list[Dependency] = []  # see handlers/core/dependencies.py


class Target(Strict):
    metric: Literal["response", "resolution", "availability", "satisfaction"]
    priority: Literal["P1", "P2", "P3", "P4"] | None = None
    within: Duration | None = None
    goal: Annotated[float, Field(gt=0, le=100)]
    warn_at: list[Annotated[float, Field(gt=0, lt=100)]] = [50, 75]
    # Lead times before due ("1 hour", "15 min"), in the target's own kind of time; see handlers/sla/clock_warnings.py.
    warn_before: list[Annotated[Duration, BeforeValidator(
        lambda v: Duration.parse(v) if isinstance(v, (str, int, float)) else v)]] = []

    @field_validator("within", mode="before")
    @classmethod
    def _duration(cls, value):
        return Duration.parse(value) if isinstance(value, (str, int, float)) else value


class Agreement(Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
    kind: Literal["sla", "ola", "uc"]
    service: str
    party: str
    underpins: str | None = None
    calendar: str | None = None
    pause_states: list[str] = []
    targets: list[Target]
    commercial: Commercial | None = None  # a UC's monthly charge and its service-credit rules


class MaintenanceWindow(Strict):
    """When changes to a service may run, in the service calendar's zone; may pass midnight."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]]
    hours: Interval

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, value):
        return _parse_interval(value, wraps=True) if isinstance(value, str) else value
