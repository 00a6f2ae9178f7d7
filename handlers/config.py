"""The shape of app.yaml: the catalogue, agreements, calendars, people and roles.

Loading is strict: unknown keys, wrong types and dangling references are all reported at once,
each by its path in the file (``services[2].calendar: unknown calendar 'uk'``), and nothing starts.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from handlers.clock_warnings import lead_problems

SERVICE_STATES = ("operational", "degraded", "partial-outage", "major-outage", "maintenance")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


class ConfigError(Exception):
    """app.yaml is unusable; ``problems`` lists every fault by its path."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


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

    @model_validator(mode="after")
    def _prefer_a_platform_they_are_on(self):
        if self.prefer and not getattr(self, self.prefer):
            raise ValueError(f"prefer: {self.prefer} needs this person's {self.prefer} id "
                             f"(e.g. {self.prefer}: {'U0ABC123' if self.prefer == 'slack' else '<AAD object id>'})")
        return self

    _zone = field_validator("timezone")(lambda cls, v: v if v is None else Calendar._zone(v))
    _quiet = field_validator("quiet_hours", mode="before")(
        lambda cls, v: _parse_interval(v, wraps=True) if isinstance(v, str) else v)


class Group(Strict):
    """An internal team (party to OLAs) or a supplier (party to underpinning contracts)."""

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    name: str
    kind: Literal["internal", "supplier"]
    location: str | None = None
    calendar: str | None = None
    channel: str | None = None
    members: list[str] = []


class Roles(Strict):
    service_managers: list[str] = []
    cab: list[str] = []
    emergency_cab: list[str] = []


class ChannelTarget(Strict):
    slack: str | None = None
    teams: str | None = None


class MaintenanceWindow(Strict):
    """When changes to a service may run, in the service calendar's zone; may pass midnight."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]]
    hours: Interval

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, value):
        return _parse_interval(value, wraps=True) if isinstance(value, str) else value


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
    ticket_survey: TicketSurvey | None = None  # none: no survey after its tickets are resolved


class Target(Strict):
    metric: Literal["response", "resolution", "availability", "satisfaction"]
    priority: Literal["P1", "P2", "P3", "P4"] | None = None
    within: Duration | None = None
    goal: Annotated[float, Field(gt=0, le=100)]
    warn_at: list[Annotated[float, Field(gt=0, lt=100)]] = [50, 75]
    # Lead times before due ("1 hour", "15 min"), in the target's own kind of time; see clock_warnings.py.
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


RISKS = ("low", "medium", "high")
ByRisk = dict[Literal["low", "medium", "high"], Annotated[int, Field(ge=0)]]


class Freeze(Strict):
    """A period when no change may run on the services named (all services if none are)."""

    name: str
    start: datetime
    end: datetime
    timezone: str = "UTC"
    services: list[str] = []
    _zone = field_validator("timezone")(lambda cls, v: Calendar._zone(v))

    @model_validator(mode="after")
    def _order(self):
        start, end = self.span()
        if end <= start:
            raise ValueError("a freeze must end after it starts")
        return self

    def span(self) -> tuple[datetime, datetime]:
        """Start and end in UTC; times without an offset are in the freeze's own zone."""
        zone = ZoneInfo(self.timezone)
        return tuple((t if t.tzinfo else t.replace(tzinfo=zone)).astimezone(ZoneInfo("UTC"))
                     for t in (self.start, self.end))

    def covers(self, service_id: str) -> bool:
        return not self.services or service_id in self.services


class ChangeModel(Strict):
    """A standard change: pre-approved, low risk, done the same way every time."""

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    title: str
    services: list[str]
    risk: Literal["low", "medium", "high"] = "low"
    impact: Literal["low", "medium", "high"] = "low"
    duration: Duration
    implementation: str = ""
    backout: str = ""
    test: str = ""
    description: str = ""

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value):
        return Duration.parse(value) if isinstance(value, (str, int, float)) else value


class ChangePolicy(Strict):
    channel: str | None = None  # where every change is announced, besides its services' own channels
    approvals: ByRisk = {"low": 0, "medium": 1, "high": 2}
    emergency_approvals: Annotated[int, Field(ge=1)] | ByRisk = 1
    reminder_minutes: Annotated[int, Field(ge=0)] = 60  # before the planned start
    approval_reminder_hours: Annotated[float, Field(gt=0)] = 4
    approve_reaction: str = "white_check_mark"
    reject_reaction: str = "x"
    freezes: list[Freeze] = []
    models: list[ChangeModel] = []

    def approvals_needed(self, kind: str, risk: str) -> int:
        if kind == "standard":
            return 0
        if kind == "emergency":
            e = self.emergency_approvals
            return max(e if isinstance(e, int) else e.get(risk, 1), 1)
        return self.approvals.get(risk, 0)

    def model(self, model_id: str) -> ChangeModel | None:
        return next((m for m in self.models if m.id == model_id), None)


CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_trigger(expr: str, zone: str) -> CronTrigger:
    """A crontab line as an APScheduler trigger in a time zone. APScheduler 3 counts weekdays from
    Monday = 0, crontab from Sunday = 0 (7 is Sunday too): numbered weekdays are turned into names
    first, so "0 9 * * 1-5" means Monday to Friday, as it does in cron."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    fields[4] = ",".join(_cron_weekdays(part) for part in fields[4].lower().split(","))
    return CronTrigger(minute=fields[0], hour=fields[1], day=fields[2], month=fields[3], day_of_week=fields[4],
                       timezone=zone)


def _cron_weekdays(part: str) -> str:
    span, _, step = part.partition("/")
    if not any(c.isdigit() for c in span) and not step:
        return part  # *, names and name ranges mean the same to both
    number = {d: str(i) for i, d in enumerate(CRON_DAYS)}
    low, _, high = ("0-6" if span == "*" else span).partition("-")
    try:
        first, last = int(number.get(low, low)), int(number.get(high or low, high or low))
        every = int(step) if step else 1
    except ValueError:
        raise ValueError(f"'{part}' is not a weekday, a range or a step of weekdays") from None
    if not (0 <= first <= 7 and 0 <= last <= 7 and every >= 1) or first > last:
        raise ValueError(f"'{part}': weekdays run from 0 (Sunday) to 7 (Sunday again)")
    return ",".join(sorted({CRON_DAYS[d % 7] for d in range(first, last + 1, every)}, key=CRON_DAYS.index))


DIGEST_SECTIONS = ("status", "incidents", "breaches", "at-risk", "approvals", "changes", "surveys", "csi")


class Scheduled(Strict):
    """A post on a cron in a time zone: a digest, or the monthly reports."""

    name: Annotated[str, Field(pattern=ID_PATTERN)]
    channel: str
    cron: str
    timezone: str
    # A slot missed while svcbot was stopped is posted late, marked so, if it is at most this old;
    # an older one is skipped (and logged): yesterday's digest is not news.
    late_grace: Annotated[Duration, Field(validate_default=True)] = "2 hours"

    _zone = field_validator("timezone")(lambda cls, v: Calendar._zone(v))

    _grace = field_validator("late_grace", mode="before")(lambda cls, v: _clock_time(v, "the grace"))

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            cron_trigger(value, "UTC")
        except ValueError as exc:
            raise ValueError(f"'{value}' is not a crontab expression: {exc}") from None
        return value

    def trigger(self) -> CronTrigger:
        return cron_trigger(self.cron, self.timezone)


class Digest(Scheduled):
    sections: Annotated[list[Literal[DIGEST_SECTIONS]], Field(min_length=1)]
    days_ahead: Annotated[int, Field(ge=1, le=60)] = 3  # how far the changes section looks


class ReportSchedule(Scheduled):
    """Last month's service reports, posted with their charts: ``all`` is the overall report."""

    services: Annotated[list[str], Field(min_length=1)] = ["all"]


class SurveyPolicy(Strict):
    # Anonymous results stay hidden until this many people have answered.
    min_respondents: Annotated[int, Field(ge=1)] = 5
    # Answers are deleted this many days after their survey closed; comments may go sooner.
    retention_days: Annotated[int, Field(ge=1)] = 365
    comment_retention_days: Annotated[int, Field(ge=1)] | None = None
    # Those who have not answered are reminded this long before a survey closes.
    reminder_hours: Annotated[float, Field(gt=0)] = 24
    # An after-ticket answer at or below this (CSAT 1–5) is passed to the service owner.
    low_score: Annotated[int, Field(ge=1, le=5)] = 2

    @model_validator(mode="after")
    def _comments_go_first(self):
        if self.comment_retention_days and self.comment_retention_days > self.retention_days:
            raise ValueError("comment_retention_days cannot be longer than retention_days")
        return self


class Delivery(Strict):
    """How the outbox is swept: how often, how long a claim lasts, when to give up on a message."""

    sweep_seconds: Annotated[float, Field(gt=0)] = 2
    lease_seconds: Annotated[float, Field(gt=0)] = 30
    give_up_hours: Annotated[float, Field(gt=0)] = 24


# Where Teams' connector lives: the public cloud (smba.trafficmanager.net/<region>/), the Bot Framework's
# own hosts, and the US government clouds (GCC, GCC High, DoD).
TEAMS_SERVICE_HOSTS = (
    "smba.trafficmanager.net",
    "*.botframework.com",
    "smba.infra.gcc.teams.microsoft.com",
    "smba.infra.gov.teams.microsoft.us",
    "smba.infra.dod.teams.microsoft.us",
    "*.botframework.us",
)


class TeamsSettings(Strict):
    """The hosts svcbot may post Teams messages to (an activity's serviceUrl): host names, ``*.`` for
    any subdomain. Replaces the default list of Bot Framework hosts when given."""

    service_hosts: tuple[str, ...] = TEAMS_SERVICE_HOSTS

    @field_validator("service_hosts")
    @classmethod
    def _host_names(cls, hosts):
        for host in hosts:
            if not re.fullmatch(r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", host):
                raise ValueError(f"'{host}' is not a host name in lower case; write just the host, "
                                 "e.g. smba.trafficmanager.net or *.botframework.com")
        return hosts


API_SCOPES = ("alerts", "tickets", "outages", "changes", "surveys", "csi", "read")
TOKEN_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
STATUS_PAGE_MODES = ("public", "hide_incident_titles", "private")


def _token_hash(value: str) -> str:
    if not isinstance(value, str) or not TOKEN_HASH.match(value):
        raise ValueError(f"'{value}' is not a token hash like sha256:<64 hex digits>; "
                         "`svcbot api-client new NAME` makes a token and prints its hash")
    return value


class ApiClient(Strict):
    """A system that calls the JSON API with its own token; only the token's SHA-256 is configured."""

    name: Annotated[str, Field(pattern=ID_PATTERN)]
    token_hash: str
    scopes: Annotated[list[Literal[API_SCOPES]], Field(min_length=1)]
    # People it may name as the one acting (requester, by, owner, person); "*" for anyone. Empty: it acts
    # as itself and names nobody.
    on_behalf_of: list[str] | Literal["*"] = []

    _hash = field_validator("token_hash")(lambda cls, v: _token_hash(v))

    @field_validator("on_behalf_of", mode="before")
    @classmethod
    def _people(cls, value):
        if isinstance(value, str) and value != "*":
            raise ValueError(f"'{value}': say \"*\" (anyone) or a list of person ids, like [priya, meera]")
        return value


class FeedKey(Strict):
    """A secret that opens a private status page and its feeds as ?key=…; only its SHA-256 is configured."""

    name: Annotated[str, Field(pattern=ID_PATTERN)]
    key_hash: str

    _hash = field_validator("key_hash")(lambda cls, v: _token_hash(v))


class StatusPagePolicy(Strict):
    """Who may read GET /, /status.json and /changes.ics."""

    mode: Literal[STATUS_PAGE_MODES] = "public"
    # /changes.ics: by default private when the page is, public otherwise (it shows no incident titles).
    calendar: Literal["public", "private"] | None = None
    feed_keys: list[FeedKey] = []

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        return {"mode": value} if isinstance(value, str) else value

    @property
    def calendar_private(self) -> bool:
        return (self.calendar or ("private" if self.mode == "private" else "public")) == "private"


# A delivery key must outlive every retry of its delivery, or the retry is acted on again: Slack retries
# an event three times within minutes and a response URL lives 30 minutes; API clients may retry after
# an outage of their own. Two days is the floor.
MIN_DELIVERIES_DAYS = 2


class Retention(Strict):
    """How long the store keeps delivered (or failed) outbox rows and the keys of deliveries acted on."""

    deliveries_days: int = 30

    @field_validator("deliveries_days")
    @classmethod
    def _outlives_retries(cls, v: int) -> int:
        if v < MIN_DELIVERIES_DAYS:
            raise ValueError(f"keep deliveries at least {MIN_DELIVERIES_DAYS} days, longer than Slack and API "
                             f"clients retry one, or a retried delivery is acted on again (e.g. 30)")
        return v


class BotSettings(Strict):
    name: str = "svcbot"
    slash_command: Annotated[str, Field(pattern=r"^/[a-z0-9_-]+$")] = "/svc"
    timezone: str = "UTC"
    # A folder of Jinja2 templates that replace the built-in ones of the same path (slack/digest.json.j2,
    # teams/digest.json.j2, text/digest.txt.j2, …); relative to the folder of app.yaml.
    templates: str | None = None

    _zone = field_validator("timezone")(lambda cls, v: Calendar._zone(v))


class AppConfig(Strict):
    bot: BotSettings = BotSettings()
    delivery: Delivery = Delivery()
    teams: TeamsSettings = TeamsSettings()
    retention: Retention = Retention()
    calendars: dict[str, Calendar]
    people: list[Person] = []
    groups: list[Group] = []
    roles: Roles = Roles()
    channels: dict[str, ChannelTarget] = {}
    services: list[Service]
    agreements: list[Agreement] = []
    changes: ChangePolicy = ChangePolicy()
    digests: list[Digest] = []
    reports: list[ReportSchedule] = []
    surveys: SurveyPolicy = SurveyPolicy()
    api_clients: list[ApiClient] = []
    status_page: StatusPagePolicy = StatusPagePolicy()

    # Lookups used everywhere; built once since the model is frozen.
    def service(self, key: str) -> Service | None:
        key = key.lower()
        return next((s for s in self.services if s.id == key or s.name.lower() == key), None)

    def service_names(self, ids) -> str:
        """Services by name, for people to read; an id app.yaml does not know (an imported one) as itself."""
        return ", ".join(s.name if (s := self.service(i)) else i for i in ids)

    def person_name(self, person_id: str | None) -> str:
        p = self.person(person_id) if person_id else None
        return p.name if p else (person_id or "—")

    def person(self, person_id: str) -> Person | None:
        return next((p for p in self.people if p.id == person_id), None)

    def person_by_platform(self, platform: str, user_id: str) -> Person | None:
        return next((p for p in self.people if getattr(p, platform, None) == user_id), None)

    def group(self, group_id: str) -> Group | None:
        return next((g for g in self.groups if g.id == group_id), None)


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top)"


def _structure_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"]
                    if not (isinstance(p, str) and (p.startswith(("function-", "lax-")) or p == "[key]")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required"
        problems.append(f"{_path(loc)}: {msg}")
    return problems


def _reference_problems(cfg: AppConfig) -> list[str]:
    problems: list[str] = []
    people = {p.id for p in cfg.people}
    groups = {g.id: g for g in cfg.groups}
    services = {s.id for s in cfg.services}
    agreements = {a.id: a for a in cfg.agreements}

    def dupes(kind: str, ids: list[str], key: str = "id"):
        seen = set()
        for i, x in enumerate(ids):
            if x in seen:
                problems.append(f"{kind}[{i}].{key}: duplicate {key} '{x}'")
            seen.add(x)

    def ref(path: str, value: str | None, known, what: str):
        if value is not None and value not in known:
            problems.append(f"{path}: unknown {what} '{value}'")

    dupes("people", [p.id for p in cfg.people])
    dupes("groups", [g.id for g in cfg.groups])
    dupes("services", [s.id for s in cfg.services])
    dupes("agreements", [a.id for a in cfg.agreements])
    for platform in ("slack", "teams"):
        seen: dict[str, int] = {}
        for i, p in enumerate(cfg.people):
            uid = getattr(p, platform)
            if uid and uid in seen:
                problems.append(f"people[{i}].{platform}: '{uid}' is also people[{seen[uid]}]")
            seen.setdefault(uid, i)

    for name, cal in cfg.calendars.items():
        if not cal.always_open and not any(cal.hours.values()):
            problems.append(f"calendars.{name}.hours: no working hours (say 24x7: true for a 24x7 calendar)")
        for day, intervals in cal.hours.items():
            ordered = sorted(intervals, key=lambda i: i.start)
            for a, b in zip(ordered, ordered[1:]):
                if b.start < a.end:
                    problems.append(f"calendars.{name}.hours.{day}: intervals overlap")
        for i, h in enumerate(cal.holidays):
            try:
                holidays.country_holidays(h.country)
            except NotImplementedError:
                problems.append(f"calendars.{name}.holidays[{i}].country: no holiday data for '{h.country}'")
                continue
            try:
                holidays.country_holidays(h.country, subdiv=h.subdivision)
            except NotImplementedError:
                problems.append(f"calendars.{name}.holidays[{i}].subdivision: '{h.country}' has no "
                                f"subdivision '{h.subdivision}'")

    for i, p in enumerate(cfg.groups):
        ref(f"groups[{i}].calendar", p.calendar, cfg.calendars, "calendar")
        ref(f"groups[{i}].channel", p.channel, cfg.channels, "channel")
        for j, m in enumerate(p.members):
            ref(f"groups[{i}].members[{j}]", m, people, "person")
    for role in ("service_managers", "cab", "emergency_cab"):
        for j, m in enumerate(getattr(cfg.roles, role)):
            ref(f"roles.{role}[{j}]", m, people, "person")
    for name, ch in cfg.channels.items():
        if not ch.slack and not ch.teams:
            problems.append(f"channels.{name}: give a slack channel id, a teams conversation id, or both")

    for i, s in enumerate(cfg.services):
        ref(f"services[{i}].owner", s.owner, people, "person")
        ref(f"services[{i}].team", s.team, groups, "group")
        ref(f"services[{i}].channel", s.channel, cfg.channels, "channel")
        ref(f"services[{i}].calendar", s.calendar, cfg.calendars, "calendar")
        for j, sup in enumerate(s.suppliers):
            if sup not in groups or groups[sup].kind != "supplier":
                problems.append(f"services[{i}].suppliers[{j}]: unknown supplier '{sup}'")

    for i, a in enumerate(cfg.agreements):
        ref(f"agreements[{i}].service", a.service, services, "service")
        ref(f"agreements[{i}].calendar", a.calendar, cfg.calendars, "calendar")
        if a.kind == "sla":
            if a.underpins:
                problems.append(f"agreements[{i}].underpins: an SLA underpins nothing; OLAs and UCs underpin SLAs")
        else:
            want = "internal" if a.kind == "ola" else "supplier"
            if a.party not in groups or groups[a.party].kind != want:
                article = "an" if a.kind == "ola" else "a"
                problems.append(f"agreements[{i}].party: {article} {a.kind.upper()} needs "
                                f"{'an' if want == 'internal' else 'a'} {want} group, not '{a.party}'")
            if a.underpins is None:
                problems.append(f"agreements[{i}].underpins: say which SLA this {a.kind.upper()} underpins")
            elif a.underpins not in agreements or agreements[a.underpins].kind != "sla":
                problems.append(f"agreements[{i}].underpins: unknown SLA '{a.underpins}'")
        for j, t in enumerate(a.targets):
            path = f"agreements[{i}].targets[{j}]"
            if t.metric in ("response", "resolution") and t.within is None:
                problems.append(f"{path}.within: a {t.metric} target needs a time allowed")
            if sorted(t.warn_at) != list(t.warn_at):
                problems.append(f"{path}.warn_at: thresholds must rise")
            problems += lead_problems(path, t)

    ch = cfg.changes
    ref("changes.channel", ch.channel, cfg.channels, "channel")
    if isinstance(ch.emergency_approvals, dict):
        for risk in RISKS:
            if ch.emergency_approvals.get(risk, 1) < 1:
                problems.append(f"changes.emergency_approvals.{risk}: an emergency change needs at least one approval")
    for i, f in enumerate(ch.freezes):
        for j, sid in enumerate(f.services):
            ref(f"changes.freezes[{i}].services[{j}]", sid, services, "service")
    dupes("changes.models", [m.id for m in ch.models])
    for i, m in enumerate(ch.models):
        for j, sid in enumerate(m.services):
            ref(f"changes.models[{i}].services[{j}]", sid, services, "service")
        if not m.services:
            problems.append(f"changes.models[{i}].services: name at least one service")
    dupes("digests", [d.name for d in cfg.digests], "name")
    for i, d in enumerate(cfg.digests):
        ref(f"digests[{i}].channel", d.channel, cfg.channels, "channel")
    problems += _access_problems(cfg, people)
    dupes("reports", [r.name for r in cfg.reports], "name")
    for i, r in enumerate(cfg.reports):
        ref(f"reports[{i}].channel", r.channel, cfg.channels, "channel")
        for j, sid in enumerate(r.services):
            if sid != "all":
                ref(f"reports[{i}].services[{j}]", sid, services, "service")
    return problems


def _access_problems(cfg: AppConfig, people: set[str]) -> list[str]:
    problems = []
    names: dict[str, int] = {}
    hashes: dict[str, str] = {}
    for i, c in enumerate(cfg.api_clients):
        if c.name == "legacy":
            problems.append(f"api_clients[{i}].name: 'legacy' is the client of SVCBOT_API_TOKEN; choose another name")
        elif c.name in names:
            problems.append(f"api_clients[{i}].name: duplicate name '{c.name}' (also api_clients[{names[c.name]}])")
        names.setdefault(c.name, i)
        if c.token_hash in hashes:
            problems.append(f"api_clients[{i}].token_hash: the same token as {hashes[c.token_hash]}; "
                            "give each client its own")
        hashes.setdefault(c.token_hash, f"api_clients[{i}]")
        if c.on_behalf_of != "*":
            for j, pid in enumerate(c.on_behalf_of):
                if pid not in people:
                    problems.append(f"api_clients[{i}].on_behalf_of[{j}]: unknown person '{pid}'")
    keys: set[str] = set()
    for i, k in enumerate(cfg.status_page.feed_keys):
        if k.name in keys:
            problems.append(f"status_page.feed_keys[{i}].name: duplicate name '{k.name}'")
        keys.add(k.name)
        if k.key_hash in hashes:
            problems.append(f"status_page.feed_keys[{i}].key_hash: the same secret as {hashes[k.key_hash]}; "
                            "a feed key is only for reading the feeds")
        hashes.setdefault(k.key_hash, f"status_page.feed_keys[{i}]")
    return problems


class _StrictLoader(yaml.SafeLoader):
    """safe_load, except that a key given twice in one mapping is an error rather than the last one winning."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _without_unknown_keys(raw, exc: ValidationError):
    """A copy of raw without the keys pydantic called unknown, or None if other faults remain too."""
    import copy
    errors = exc.errors()
    if any(e["type"] != "extra_forbidden" for e in errors):
        return None
    pruned = copy.deepcopy(raw)
    for e in errors:
        *parents, key = e["loc"]
        node = pruned
        for p in parents:
            node = node[p]
        node.pop(key, None)
    return pruned


def parse_config(text: str, source: str = "app.yaml") -> AppConfig:
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(source, [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["(top): expected a mapping of sections (calendars, services, …)"])
    try:
        cfg = AppConfig.model_validate(raw)
    except ValidationError as exc:
        problems = _structure_problems(exc)
        # Unknown keys (typos, mostly) do not stop the references from being checked too.
        pruned = _without_unknown_keys(raw, exc)
        if pruned is not None:
            problems += _reference_problems(AppConfig.model_validate(pruned))
        raise ConfigError(source, problems) from None
    problems = _reference_problems(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: str | Path) -> AppConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"(file): cannot read: {exc.strerror}"]) from None
    cfg = parse_config(text, str(path))
    if cfg.bot.templates:
        folder = (path.parent / cfg.bot.templates).resolve()
        problems = _template_problems(folder, cfg.bot.templates)
        if problems:
            raise ConfigError(str(path), problems)
        cfg = cfg.model_copy(update={"bot": cfg.bot.model_copy(update={"templates": str(folder)})})
    return cfg


def _template_problems(folder: Path, given: str) -> list[str]:
    """A deployment's templates must exist and parse; a template that fails only when rendered falls
    back to the built-in one then (see bot/render.py)."""
    from jinja2 import Environment, TemplateSyntaxError
    if not folder.is_dir():
        return [f"bot.templates: no folder '{given}' (looked in {folder})"]
    problems = []
    for file in sorted(folder.rglob("*.j2")):
        try:
            Environment().parse(file.read_text(encoding="utf-8"))
        except TemplateSyntaxError as exc:
            problems.append(f"bot.templates: {file.relative_to(folder)}, line {exc.lineno}: {exc.message}")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"bot.templates: {file.relative_to(folder)}: cannot read: {exc}")
    return problems
