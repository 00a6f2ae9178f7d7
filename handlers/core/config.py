"""The shape of app.yaml, its operational sections: change policy, schedules, surveys, delivery, Teams,
API clients, the status page, retention and the bot itself, gathered in ``AppConfig``.
"""
from __future__ import annotations

import re
from datetime import datetime
from functools import cached_property
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, field_validator, model_validator

from handlers.core.config_catalogue import (ID_PATTERN, Agreement, Calendar, ChannelTarget, Duration, Group, Person,
                                            Roles, Service, Strict, _clock_time)

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


DIGEST_SECTIONS = ("status", "incidents", "breaches", "at-risk", "approvals", "changes", "surveys", "csi",
                   "knowledge", "reviews")


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
    # At most one publish of a person's Slack home per this many seconds, however much changes at once.
    home_debounce_seconds: Annotated[float, Field(ge=0)] = 5
    # Where `svcbot run` sweeps (clocks, digests, surveys, …): a process of its own, so that sweeps never
    # hold up requests, or the server's own threads, one process the less (bot/sweeps.py).
    sweeps_in: Literal["process", "thread"] = "process"
    # How the sweeper gives way to the server when the machine is busy: "idle", only the CPU time nothing
    # else wants (bot.sweeps.lower_priority), or a niceness added to the server's.
    sweeper_niceness: int | Literal["idle"] = "idle"

    @field_validator("sweeper_niceness", mode="before")
    @classmethod
    def _priority(cls, v: object) -> object:
        if v == "idle" or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 19):
            return v
        raise ValueError(f"{v!r} is neither 'idle' nor a niceness from 0 to 19")


KB_KINDS = ("runbook", "known-error", "how-to", "faq")
# How many days an article of each kind stays trusted before its owner is asked to review it.
KB_REVIEW_DAYS = {"runbook": 180, "known-error": 90, "how-to": 365, "faq": 365}


class KnowledgePolicy(Strict):
    """The knowledge library: review intervals per article kind (a kind not given keeps its default)."""

    review_days: dict[Literal[KB_KINDS], Annotated[int, Field(ge=1, le=3650)]] = {}
    # A due review's owner is reminded once after this many days, and the service managers told after these.
    reminder_days: Annotated[int, Field(ge=1, le=365)] = 3
    escalate_days: Annotated[int, Field(ge=1, le=365)] = 7

    @model_validator(mode="after")
    def _reminder_first(self):
        return _reminder_before_escalation(self)

    def review_days_for(self, kind: str) -> int:
        return self.review_days.get(kind, KB_REVIEW_DAYS[kind])


class CataloguePolicy(Strict):
    """How often each service owner confirms their service's catalogue entry, and the reminder and the
    word to the service managers when they do not."""

    review_days: Annotated[int, Field(ge=1, le=3650)] = 90
    reminder_days: Annotated[int, Field(ge=1, le=365)] = 3
    escalate_days: Annotated[int, Field(ge=1, le=365)] = 7

    @model_validator(mode="after")
    def _reminder_first(self):
        return _reminder_before_escalation(self)


def _reminder_before_escalation(policy):
    if policy.escalate_days <= policy.reminder_days:
        raise ValueError(f"escalate_days ({policy.escalate_days}) must come after reminder_days "
                         f"({policy.reminder_days})")
    return policy


REVIEW_PRIORITIES = ("P1", "P2", "P3", "P4")


class ReviewPolicy(Strict):
    """Post-incident reviews: which priorities get one when resolved, and how many days after the
    resolution each is due, by priority."""

    priorities: list[Literal[REVIEW_PRIORITIES]] = ["P1", "P2"]
    due_days: dict[Literal[REVIEW_PRIORITIES], Annotated[int, Field(ge=1, le=365)]] = {"P1": 5, "P2": 10}
    # A ticket resolved longer ago than this is not reviewed unasked (the first start after an upgrade,
    # a sweep that was stopped for a while); `review new INC-N` still opens one.
    lookback_days: Annotated[int, Field(ge=1, le=90)] = 7

    @model_validator(mode="after")
    def _every_priority_has_a_due_date(self):
        missing = [p for p in self.priorities if p not in self.due_days]
        if missing:
            raise ValueError(f"due_days gives no days for {', '.join(missing)}, which priorities lists; "
                             f"add it, like due_days: {{{missing[0]}: 10}}")
        if len(set(self.priorities)) != len(self.priorities):
            raise ValueError("priorities lists a priority twice")
        return self

    def days_for(self, priority: str) -> int:
        """Days to review a ticket of this priority: its own, else the longest given (``review new`` on a P3)."""
        return self.due_days.get(priority) or max(self.due_days.values(), default=10)


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
    knowledge: KnowledgePolicy = KnowledgePolicy()
    catalogue: CataloguePolicy = CataloguePolicy()
    reviews: ReviewPolicy = ReviewPolicy()
    api_clients: list[ApiClient] = []
    status_page: StatusPagePolicy = StatusPagePolicy()

    # Lookups used everywhere, by dictionaries built at first use: the model is frozen, so they stay true.
    @cached_property
    def _services_by_key(self) -> dict[str, Service]:
        found: dict[str, Service] = {}
        for s in reversed(self.services):  # the first service to bear an id or a name wins, as in the list
            found[s.name.lower()] = found[s.id] = s
        return found

    @cached_property
    def _people_by_id(self) -> dict[str, Person]:
        return {p.id: p for p in reversed(self.people)}

    @cached_property
    def _people_by_account(self) -> dict[tuple[str, str], Person]:
        return {(platform, account): p for p in reversed(self.people) for platform in ("slack", "teams")
                if (account := getattr(p, platform))}

    @cached_property
    def _groups_by_id(self) -> dict[str, Group]:
        return {g.id: g for g in reversed(self.groups)}

    def model_copy(self, *, update=None, deep: bool = False) -> "AppConfig":
        """A copy made with other services, people or groups builds its dictionaries again."""
        copy = super().model_copy(update=update, deep=deep)
        for name in ("_services_by_key", "_people_by_id", "_people_by_account", "_groups_by_id"):
            copy.__dict__.pop(name, None)
        return copy

    def service(self, key: str) -> Service | None:
        return self._services_by_key.get(key.lower())

    def service_names(self, ids) -> str:
        """Services by name, for people to read; an id app.yaml does not know (an imported one) as itself."""
        return ", ".join(s.name if (s := self.service(i)) else i for i in ids)

    def person_name(self, person_id: str | None) -> str:
        p = self.person(person_id) if person_id else None
        return p.name if p else (person_id or "—")

    def person(self, person_id: str) -> Person | None:
        return self._people_by_id.get(person_id)

    def person_by_platform(self, platform: str, user_id: str) -> Person | None:
        return self._people_by_account.get((platform, user_id))

    def group(self, group_id: str) -> Group | None:
        return self._groups_by_id.get(group_id)
