"""app.yaml: the demo configuration meets the brief, and a broken file is refused with every problem
listed by its path in the file (CONTRACT.md, Configuration)."""
from __future__ import annotations

import copy
from datetime import time

import holidays
import pytest
import yaml

from handlers.core.config import AppConfig
from handlers.core.config_catalogue import Duration
from handlers.core.config_loading import ConfigError, load_config, parse_config
from tests.conftest import ROOT, demo_config

# ---------------------------------------------------------------------------------------------- helpers

def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.problems, "a ConfigError must list at least one problem"
    return caught.value.problems


def problems_after(mutate) -> list[str]:
    """The demo configuration with one thing broken: the problems it is refused with."""
    cfg = demo_config()
    mutate(cfg)
    return problems_of(dump(cfg))


def index_of(items: list[dict], key: str, value) -> int:
    return next(i for i, item in enumerate(items) if item[key] == value)


@pytest.fixture(scope="module")
def demo() -> AppConfig:
    return load_config(ROOT / "app.yaml")


# ---------------------------------------------------------------------------------------------- the demo

def test_demo_app_yaml_loads(demo):
    assert isinstance(demo, AppConfig)
    # The file on disk and the dict the other tests start from describe the same catalogue.
    assert [s.id for s in demo.services] == [s["id"] for s in demo_config()["services"]]


def test_demo_has_six_to_eight_services_of_several_tiers(demo):
    assert 6 <= len(demo.services) <= 8
    assert len({s.tier for s in demo.services}) >= 3
    for s in demo.services:
        assert demo.person(s.owner) is not None
        assert s.calendar in demo.calendars
        assert s.channel in demo.channels


def test_demo_teams_work_in_several_locations_with_their_own_calendars_and_holidays(demo):
    internal = [g for g in demo.groups if g.kind == "internal"]
    assert len({g.location for g in internal}) >= 2
    calendars = {g.location: g.calendar for g in internal}
    assert len(set(calendars.values())) == len(calendars), "each location keeps its own calendar"
    zones = {demo.calendars[c].timezone for c in calendars.values()}
    assert len(zones) >= 2
    for name in calendars.values():
        cal = demo.calendars[name]
        assert cal.holidays, f"calendar {name} has no public holidays"
        assert any(cal.hours.values())
        for h in cal.holidays:  # the holiday data really exists for the country and region named
            assert len(holidays.country_holidays(h.country, subdiv=h.subdivision, years=2026)) > 0
    # the amsterdam calendar has a lunch break: several intervals a day
    assert any(len(ivs) > 1 for cal in demo.calendars.values() for ivs in cal.hours.values())
    assert any(cal.always_open for cal in demo.calendars.values())


def test_demo_has_an_sla_underpinned_by_an_ola_and_a_uc(demo):
    kinds_under = {}
    for a in demo.agreements:
        if a.underpins:
            kinds_under.setdefault(a.underpins, set()).add(a.kind)
    slas = {a.id: a for a in demo.agreements if a.kind == "sla"}
    both = [sla for sla, kinds in kinds_under.items() if {"ola", "uc"} <= kinds]
    assert both and all(sla in slas for sla in both)
    for a in demo.agreements:
        if a.kind == "ola":
            assert demo.group(a.party).kind == "internal"
        if a.kind == "uc":
            assert demo.group(a.party).kind == "supplier"
        if a.underpins:
            assert slas[a.underpins].service == a.service


def test_demo_has_roles_channels_and_a_digest(demo):
    people = {p.id for p in demo.people}
    assert demo.roles.service_managers and set(demo.roles.service_managers) <= people
    assert demo.roles.cab and set(demo.roles.cab) <= people
    assert demo.roles.emergency_cab and set(demo.roles.emergency_cab) <= people
    assert demo.channels
    assert all(ch.slack or ch.teams for ch in demo.channels.values())
    assert any(ch.slack and ch.teams for ch in demo.channels.values())
    assert demo.digests
    for d in demo.digests:
        assert d.channel in demo.channels and d.sections


def test_demo_quiet_hours_pass_midnight_and_24x7_is_read(demo):
    quiet = demo.calendars["london"].quiet_hours
    assert quiet.start == time(21, 0) and quiet.end == time(7, 0)
    assert demo.calendars["always"].always_open is True


def test_load_config_reads_a_file_and_reports_a_missing_one(config_file, tmp_path):
    assert len(load_config(config_file).services) == len(demo_config()["services"])
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert caught.value.source == str(missing)
    assert caught.value.problems == ["(file): cannot read: No such file or directory"]


# ---------------------------------------------------------------------------------------------- broken files

def _set(path, value):
    """A mutation that sets cfg[path...] = value."""
    def mutate(cfg):
        node = cfg
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return mutate


def _drop(path):
    def mutate(cfg):
        node = cfg
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    return mutate


def _append(path, item):
    def mutate(cfg):
        node = cfg
        for part in path:
            node = node[part]
        node.append(item(cfg) if callable(item) else item)
    return mutate


BROKEN = {
    "unknown calendar": (_set(("services", 2, "calendar"), "uk"),
                         ["services[2].calendar: unknown calendar 'uk'"]),
    "unknown agreement calendar": (_set(("agreements", 1, "calendar"), "mars"),
                                   ["agreements[1].calendar: unknown calendar 'mars'"]),
    "unknown owner": (_set(("services", 0, "owner"), "nobody"),
                      ["services[0].owner: unknown person 'nobody'"]),
    "unknown group member": (_set(("groups", 0, "members"), ["tom", "ghost"]),
                             ["groups[0].members[1]: unknown person 'ghost'"]),
    "unknown cab member": (_set(("roles", "cab"), ["priya", "ghost"]),
                           ["roles.cab[1]: unknown person 'ghost'"]),
    "unknown team": (_set(("services", 0, "team"), "nope"),
                     ["services[0].team: unknown group 'nope'"]),
    "unknown channel": (_set(("services", 0, "channel"), "nochan"),
                        ["services[0].channel: unknown channel 'nochan'"]),
    "unknown digest channel": (_set(("digests", 0, "channel"), "nochan"),
                               ["digests[0].channel: unknown channel 'nochan'"]),
    "channel with no address": (_set(("channels", "empty"), {}),
                                ["channels.empty: give a slack channel id, a teams conversation id, or both"]),
    "unknown supplier": (_set(("services", 0, "suppliers"), ["acme"]),
                         ["services[0].suppliers[0]: unknown supplier 'acme'"]),
    "internal team named as supplier": (_set(("services", 0, "suppliers"), ["cardlink", "platform-ops"]),
                                        ["services[0].suppliers[1]: unknown supplier 'platform-ops'"]),
    "unknown agreement service": (_set(("agreements", 0, "service"), "nope"),
                                  ["agreements[0].service: unknown service 'nope'"]),
    "OLA whose party is a supplier": (_set(("agreements", 1, "party"), "cardlink"),
                                      ["agreements[1].party: an OLA needs an internal group, not 'cardlink'"]),
    "OLA without underpins": (_drop(("agreements", 1, "underpins")),
                              ["agreements[1].underpins: say which SLA this OLA underpins"]),
    "UC without underpins": (_drop(("agreements", 2, "underpins")),
                             ["agreements[2].underpins: say which SLA this UC underpins"]),
    "UC underpinning an unknown SLA": (_set(("agreements", 2, "underpins"), "SLA-NOPE"),
                                       ["agreements[2].underpins: unknown SLA 'SLA-NOPE'"]),
    "UC underpinning an OLA": (_set(("agreements", 2, "underpins"), "OLA-PAY-OPS"),
                               ["agreements[2].underpins: unknown SLA 'OLA-PAY-OPS'"]),
    "SLA that underpins": (_set(("agreements", 0, "underpins"), "SLA-SHOP"),
                           ["agreements[0].underpins: an SLA underpins nothing; OLAs and UCs underpin SLAs"]),
    "duplicate person id": (_append(("people",), {"id": "priya", "name": "Another Priya"}),
                            ["people[7].id: duplicate id 'priya'"]),
    "duplicate agreement id": (_append(("agreements",), lambda cfg: copy.deepcopy(cfg["agreements"][0])),
                               ["agreements[5].id: duplicate id 'SLA-PAY'"]),
    "duplicate group id": (_append(("groups",), {"id": "cardlink", "name": "Again", "kind": "supplier"}),
                           ["groups[5].id: duplicate id 'cardlink'"]),
    "duplicate service id": (_append(("services",), lambda cfg: copy.deepcopy(cfg["services"][3])),
                             ["services[7].id: duplicate id 'data-platform'"]),
    "two people with one slack account": (_set(("people", 1, "slack"), "U0PRIYA01"),
                                          ["people[1].slack: 'U0PRIYA01' is also people[0]"]),
    "unknown key": (_set(("services", 1, "colour"), "red"), ["services[1].colour: unknown key"]),
    "unknown top-level key": (_set(("surveyz",), {}), ["surveyz: unknown key"]),
    "missing required key": (_drop(("services", 1, "name")), ["services[1].name: required"]),
    "missing section": (_drop(("calendars",)), ["calendars: required"]),
    "tier too high": (_set(("services", 1, "tier"), 5),
                      ["services[1].tier: Input should be less than or equal to 4"]),
    "tier zero": (_set(("services", 1, "tier"), 0),
                  ["services[1].tier: Input should be greater than or equal to 1"]),
    "tier not a number": (_set(("services", 1, "tier"), "gold"),
                          ["services[1].tier: Input should be a valid integer, unable to parse string as an integer"]),
    "bad calendar time zone": (_set(("calendars", "london", "timezone"), "Europe/Londres"),
                               ["calendars.london.timezone: unknown IANA time zone 'Europe/Londres'"]),
    "bad person time zone": (_set(("people", 0, "timezone"), "Mars/Base"),
                             ["people[0].timezone: unknown IANA time zone 'Mars/Base'"]),
    "bad digest time zone": (_set(("digests", 1, "timezone"), "CET+1"),
                             ["digests[1].timezone: unknown IANA time zone 'CET+1'"]),
    "bad bot time zone": (_set(("bot", "timezone"), "London"), ["bot.timezone: unknown IANA time zone 'London'"]),
    "overlapping intervals": (_set(("calendars", "amsterdam", "hours", "tue"), ["08:30-12:30", "12:00-17:30"]),
                              ["calendars.amsterdam.hours.tue: intervals overlap"]),
    "calendar with no hours": (_set(("calendars", "empty"), {"timezone": "UTC"}),
                               ["calendars.empty.hours: no working hours (say 24x7: true for a 24x7 calendar)"]),
    "unknown holiday country": (_set(("calendars", "london", "holidays"), [{"country": "XX"}]),
                                ["calendars.london.holidays[0].country: no holiday data for 'XX'"]),
    "response target without time": (_drop(("agreements", 0, "targets", 0, "within")),
                                      ["agreements[0].targets[0].within: a response target needs a time allowed"]),
    "delivery retention shorter than a retry": (
        _set(("retention", "deliveries_days"), 1),
        ["retention.deliveries_days: keep deliveries at least 2 days, longer than Slack and API clients retry one, "
         "or a retried delivery is acted on again (e.g. 30)"]),
    "warnings that fall": (_set(("agreements", 0, "targets", 0, "warn_at"), [75, 50]),
                           ["agreements[0].targets[0].warn_at: thresholds must rise"]),
    "api client with an unknown scope": (
        _set(("api_clients",), [{"name": "mon", "token_hash": "sha256:" + "a" * 64, "scopes": ["alerts", "admin"]}]),
        ["api_clients[0].scopes[1]: Input should be 'alerts', 'tickets', 'outages', 'changes', 'surveys', 'csi' "
         "or 'read'"]),
    "api client acting for an unknown person": (
        _set(("api_clients",), [{"name": "itsm", "token_hash": "sha256:" + "a" * 64, "scopes": ["changes"],
                                 "on_behalf_of": ["priya", "zed"]}]),
        ["api_clients[0].on_behalf_of[1]: unknown person 'zed'"]),
    "api clients with one name and one token": (
        _set(("api_clients",), [{"name": "mon", "token_hash": "sha256:" + "a" * 64, "scopes": ["alerts"]},
                                {"name": "mon", "token_hash": "sha256:" + "a" * 64, "scopes": ["read"]}]),
        ["api_clients[1].name: duplicate name 'mon' (also api_clients[0])",
         "api_clients[1].token_hash: the same token as api_clients[0]; give each client its own"]),
    "api client with a malformed hash": (
        _set(("api_clients",), [{"name": "mon", "token_hash": "sha256:ABC", "scopes": ["alerts"]}]),
        ["api_clients[0].token_hash: 'sha256:ABC' is not a token hash like sha256:<64 hex digits>; "
         "`svcbot api-client new NAME` makes a token and prints its hash"]),
    "api client named legacy": (
        _set(("api_clients",), [{"name": "legacy", "token_hash": "sha256:" + "a" * 64, "scopes": ["read"]}]),
        ["api_clients[0].name: 'legacy' is the client of SVCBOT_API_TOKEN; choose another name"]),
    "unknown status page mode": (_set(("status_page",), "secret"),
                                 ["status_page.mode: Input should be 'public', 'hide_incident_titles' or 'private'"]),
    "bad quiet hours of a person": (_set(("people", 0, "quiet_hours"), "22-07"),
                                    ["people[0].quiet_hours: '22-07' is not an interval like 09:00-17:30"]),
    "warning lead that is no duration": (
        _set(("agreements", 0, "targets", 1, "warn_before"), ["1 hour", "soon"]),
        ["agreements[0].targets[1].warn_before[1]: 'soon' is not a duration like '30 min', '4 business hours', "
         "'2 business days'"]),
    "warning lead as long as the target": (
        _set(("agreements", 0, "targets", 0, "warn_before"), ["15 min"]),
        ["agreements[0].targets[0].warn_before[0]: 15 min is not shorter than the target (15 min)"]),
    "sweeper priority that is no niceness": (
        _set(("delivery",), {"sweeper_niceness": 25}),
        ["delivery.sweeper_niceness: 25 is neither 'idle' nor a niceness from 0 to 19"]),
    "business warning lead on a clock-time target": (
        _set(("agreements", 0, "targets", 1, "warn_before"), ["90 business minutes"]),
        ["agreements[0].targets[1].warn_before[0]: this target counts clock time, so its warnings do too: "
         "say '90 min'"]),
}


@pytest.mark.parametrize("mutate, expected", BROKEN.values(), ids=BROKEN.keys())
def test_broken_file_is_refused_with_the_problem_by_path(mutate, expected):
    assert problems_after(mutate) == expected


def test_touching_intervals_do_not_overlap():
    cfg = demo_config()
    cfg["calendars"]["amsterdam"]["hours"]["tue"] = ["08:30-12:30", "12:30-17:30"]
    assert parse_config(dump(cfg)).calendars["amsterdam"].hours["tue"][1].start == time(12, 30)


@pytest.mark.parametrize("interval, message", [
    ("18:00-08:00", "'18:00-08:00' ends before it starts"),
    ("09:00-09:00", "'09:00-09:00' ends before it starts"),
    ("9-17", "'9-17' is not an interval like 09:00-17:30"),
    ("25:00-26:00", "'25:00-26:00': hour must be in 0..23"),
])
def test_bad_interval_is_refused(interval, message):
    problems = problems_after(_set(("calendars", "london", "hours", "mon"), [interval]))
    assert len(problems) == 1
    assert problems[0].startswith("calendars.london.hours")
    assert problems[0].endswith(f": {message}")


def test_bad_interval_names_its_weekday():
    problems = problems_after(_set(("calendars", "london", "hours", "wed"), ["18:00-08:00"]))
    assert len(problems) == 1 and problems[0].startswith("calendars.london.hours.wed")


def test_unknown_weekday_is_reported_at_its_key():
    problems = problems_after(_set(("calendars", "london", "hours", "funday"), ["09:00-10:00"]))
    assert len(problems) == 1
    assert problems[0].startswith("calendars.london.hours.funday: ")


def test_unknown_holiday_subdivision_is_reported_at_the_subdivision():
    problems = problems_after(_set(("calendars", "london", "holidays"), [{"country": "GB", "subdivision": "ZZZ"}]))
    assert len(problems) == 1
    assert problems[0].startswith("calendars.london.holidays[0].subdivision: ")
    assert "ZZZ" in problems[0]


def test_unknown_holiday_subdivision_is_refused():
    """Whatever the path, a region that has no holiday data must not be accepted."""
    problems = problems_after(_set(("calendars", "pune", "holidays"), [{"country": "IN", "subdivision": "ZZ"}]))
    assert len(problems) == 1 and problems[0].startswith("calendars.pune.holidays[0].")


def test_uc_whose_party_is_an_internal_team_is_refused():
    problems = problems_after(_set(("agreements", 2, "party"), "platform-ops"))
    assert len(problems) == 1
    assert problems[0].startswith("agreements[2].party: ")
    assert problems[0].endswith("supplier group, not 'platform-ops'")


def test_uc_party_message_reads_correctly():
    assert problems_after(_set(("agreements", 2, "party"), "platform-ops")) == [
        "agreements[2].party: a UC needs a supplier group, not 'platform-ops'"]


def test_ambiguous_one_day_duration_is_refused():
    [problem] = problems_after(_set(("agreements", 0, "targets", 0, "within"), "1 day"))
    assert problem.startswith("agreements[0].targets[0].within: '1 day' is ambiguous: say '1 business day")
    assert problem.endswith(" or '24 hours'")


def test_bad_duration_is_refused():
    assert problems_after(_set(("agreements", 1, "targets", 1, "within"), "soon")) == [
        "agreements[1].targets[1].within: 'soon' is not a duration like '30 min', '4 business hours', "
        "'2 business days'"]


@pytest.mark.parametrize("cron", ["every morning", "0 25 * * *", "0 8 * * someday"])
def test_bad_cron_is_refused(cron):
    [problem] = problems_after(_set(("digests", 0, "cron"), cron))
    assert problem.startswith(f"digests[0].cron: '{cron}' is not a crontab expression: ")


def test_unknown_digest_section_is_refused():
    [problem] = problems_after(_set(("digests", 0, "sections"), ["status", "weather"]))
    assert problem.startswith("digests[0].sections[1]: Input should be ")


def test_invalid_yaml_gives_line_and_column():
    text = dump(demo_config()).replace("services:\n", "services:\n  - id: broken\n\tname: tab\n", 1)
    line = text.splitlines().index("\tname: tab") + 1
    assert problems_of(text) == [
        f"line {line}, column 1: not valid YAML: found character '\\t' that cannot start any token"]


def test_unclosed_quote_gives_line_and_column():
    problems = problems_of('bot:\n  name: svcbot\n  slash_command: "/svc\n')
    assert len(problems) == 1 and problems[0].startswith("line 4, column 1: not valid YAML: ")


@pytest.mark.parametrize("text", ["- calendars\n- services\n", "just words\n", "", "42\n"])
def test_top_level_must_be_a_mapping(text):
    assert problems_of(text) == ["(top): expected a mapping of sections (calendars, services, …)"]


def test_several_reference_problems_are_all_listed():
    def mutate(cfg):
        cfg["services"][2]["calendar"] = "uk"
        cfg["services"][0]["owner"] = "nobody"
        cfg["agreements"][1]["party"] = "cardlink"
        cfg["digests"][0]["channel"] = "nochan"
    problems = problems_after(mutate)
    assert sorted(problems) == sorted([
        "services[2].calendar: unknown calendar 'uk'",
        "services[0].owner: unknown person 'nobody'",
        "agreements[1].party: an OLA needs an internal group, not 'cardlink'",
        "digests[0].channel: unknown channel 'nochan'",
    ])


def test_several_structural_problems_are_all_listed():
    def mutate(cfg):
        cfg["services"][0]["colour"] = "red"
        cfg["services"][2]["tier"] = 0
        cfg["calendars"]["london"]["timezone"] = "Mars/Olympus"
        cfg["servics"] = cfg.pop("services")
    problems = problems_after(mutate)
    assert sorted(problems) == sorted([
        "servics: unknown key",
        "services: required",
        "calendars.london.timezone: unknown IANA time zone 'Mars/Olympus'",
    ])
    # and the same with services in place: every structural fault, each by its path
    def mutate2(cfg):
        cfg["services"][0]["colour"] = "red"
        cfg["services"][2]["tier"] = 0
        cfg["calendars"]["london"]["timezone"] = "Mars/Olympus"
    assert sorted(problems_after(mutate2)) == sorted([
        "services[0].colour: unknown key",
        "services[2].tier: Input should be greater than or equal to 1",
        "calendars.london.timezone: unknown IANA time zone 'Mars/Olympus'",
    ])


def test_structural_and_reference_problems_are_listed_together():
    def mutate(cfg):
        cfg["services"][0]["colour"] = "red"
        cfg["services"][2]["calendar"] = "uk"
    assert sorted(problems_after(mutate)) == sorted([
        "services[0].colour: unknown key",
        "services[2].calendar: unknown calendar 'uk'",
    ])


def test_duplicate_mapping_key_is_refused():
    text = dump(demo_config()).replace("channels:\n", "channels:\n  ops: {slack: C0DUPLICATE}\n", 1)
    problems = problems_of(text)
    assert any("ops" in p and "duplicate" in p for p in problems), problems


def test_config_error_message_lists_every_problem():
    cfg = demo_config()
    cfg["services"][2]["calendar"] = "uk"
    cfg["services"][0]["owner"] = "nobody"
    with pytest.raises(ConfigError) as caught:
        parse_config(dump(cfg), source="conf/app.yaml")
    message = str(caught.value)
    assert message.startswith("conf/app.yaml: 2 problem(s)")
    for p in caught.value.problems:
        assert f"\n  {p}" in message


# ---------------------------------------------------------------------------------------------- calendars

@pytest.mark.parametrize("quiet, start, end", [
    ("21:00-07:00", time(21, 0), time(7, 0)),
    ("23:30-00:15", time(23, 30), time(0, 15)),
    ("12:00-13:00", time(12, 0), time(13, 0)),
])
def test_quiet_hours_may_pass_midnight(quiet, start, end):
    cfg = demo_config()
    cfg["calendars"]["amsterdam"]["quiet_hours"] = quiet
    parsed = parse_config(dump(cfg)).calendars["amsterdam"].quiet_hours
    assert (parsed.start, parsed.end) == (start, end)


def test_quiet_hours_of_no_length_are_refused():
    assert problems_after(_set(("calendars", "london", "quiet_hours"), "22:00-22:00")) == [
        "calendars.london.quiet_hours: '22:00-22:00' ends before it starts"]


def test_24x7_calendar_needs_no_hours():
    cfg = demo_config()
    cfg["calendars"]["noc"] = {"timezone": "America/New_York", "24x7": True}
    cal = parse_config(dump(cfg)).calendars["noc"]
    assert cal.always_open and not cal.hours and cal.timezone == "America/New_York"


def test_closures_and_holidays_are_read():
    cal = parse_config(dump(demo_config())).calendars["london"]
    assert [(c.date.isoformat(), bool(c.reason)) for c in cal.closures] == [("2026-12-24", True)]
    assert [(h.country, h.subdivision) for h in cal.holidays] == [("GB", "ENG")]


def test_bad_closure_date_is_refused():
    [problem] = problems_after(_set(("calendars", "london", "closures"), [{"date": "2026-13-40"}]))
    assert problem.startswith("calendars.london.closures[0].date: ")


# ---------------------------------------------------------------------------------------------- durations

@pytest.mark.parametrize("text, minutes, business, whole_days", [
    ("30 min", 30, False, None),
    ("1 minute", 1, False, None),
    ("45 minutes", 45, False, None),
    ("2h", 120, False, None),
    ("4 hours", 240, False, None),
    ("1.5 hours", 90, False, None),
    ("1 business hour", 60, True, None),
    ("4 business hours", 240, True, None),
    ("  8   business   hours ", 480, True, None),
    ("90 business minutes", 90, True, None),
    ("1 business day", 0, True, 1),
    ("2 business days", 0, True, 2),
])
def test_duration_parses(text, minutes, business, whole_days):
    d = Duration.parse(text)
    assert (d.minutes, d.business, d.whole_days) == (minutes, business, whole_days)


@pytest.mark.parametrize("text, hours", [("1 day", 24), ("3 days", 72)])
def test_clock_days_are_ambiguous(text, hours):
    with pytest.raises(ValueError) as caught:
        Duration.parse(text)
    message = str(caught.value)
    assert message.startswith(f"'{text}' is ambiguous: say '")
    assert "business day" in message and message.endswith(f" or '{hours} hours'")


def test_business_days_must_be_whole():
    with pytest.raises(ValueError, match=r"^'1\.5 business days': business days must be whole$"):
        Duration.parse("1.5 business days")


@pytest.mark.parametrize("text", ["soon", "30", "-5 min", "5 weeks", "business hours", "4 hours 30 min", ""])
def test_not_a_duration(text):
    with pytest.raises(ValueError) as caught:
        Duration.parse(text)
    assert str(caught.value) == (f"'{text}' is not a duration like '30 min', '4 business hours', "
                                 f"'2 business days'")


def test_durations_in_the_demo_agreements():
    cfg = parse_config(dump(demo_config()))
    sla = next(a for a in cfg.agreements if a.id == "SLA-PAY")
    within = {(t.metric, t.priority): t.within for t in sla.targets if t.within}
    assert within[("response", "P1")] == Duration(minutes=15, business=False)
    assert within[("response", "P2")] == Duration(minutes=60, business=True)
    assert within[("resolution", "P3")] == Duration(minutes=0, business=True, whole_days=3)
    assert all(t.within is None for t in sla.targets if t.metric in ("availability", "satisfaction"))
