"""SLA, OLA and UC clocks (handlers/sla/clocks.py) measured on timelines replayed from events; no database.

Every case of /work/shared/SLA-CASES.md (rows 1–11) runs through ``measure`` with the calendar it names,
built as a real app.yaml would build it (``parse_config`` + ``specs_for``). Every expected instant is worked
out by hand in the comment beside it and written in UTC; none is computed by the code under test.

Offsets: London GMT = UTC+0 in January, BST = UTC+1 from Sun 2025-03-30 to Sun 2025-10-26; Berlin CET =
UTC+1, CEST = UTC+2 from Sun 2025-03-30 02:00. 2025-01-10 is a Friday, 2025-01-13 a Monday.
"""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from handlers.core.config import AppConfig
from handlers.core.config_loading import parse_config
from handlers.sla.clocks import ClockSpec, Event, Measure, measure, replay, specs_for

HOUR = 3600
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
NINE_TO_FIVE = {day: ["09:00-17:00"] for day in WEEKDAYS}
WITH_LUNCH = {day: ["09:00-12:00", "13:00-17:00"] for day in WEEKDAYS}
ENGLAND = [{"country": "GB", "subdivision": "ENG"}]


def utc(*fields) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def london_office(**extra) -> dict:
    return {"timezone": "Europe/London", "hours": NINE_TO_FIVE, **extra}


def twenty_four_seven(zone: str = "UTC") -> dict:
    return {"timezone": zone, "24x7": True}


def target(metric: str, within: str, priority: str | None = None, **extra) -> dict:
    t = {"metric": metric, "within": within, "goal": 90, **extra}
    if priority:
        t["priority"] = priority
    return t


def build(calendar: dict, sla_targets: list[dict], *, pause=("awaiting-customer",), ola_targets=(),
          uc_targets=(), uc2_targets=(), ola_calendar: dict | None = None, uc_calendar: dict | None = None,
          suppliers=("acme",)) -> AppConfig:
    """A small but complete app.yaml: one service on ``calendar`` with an SLA, and optionally an OLA for
    the internal team ``ops`` and UCs with the suppliers ``acme`` (UC-ACME) and ``globex`` (UC-GLOBEX)."""
    calendars = {"service": calendar, "ola": ola_calendar or calendar, "uc": uc_calendar or calendar}
    agreements = [{"id": "SLA-1", "kind": "sla", "service": "svc", "party": "Customers",
                   "pause_states": list(pause), "targets": sla_targets}]
    if ola_targets:
        agreements.append({"id": "OLA-OPS", "kind": "ola", "service": "svc", "party": "ops", "underpins": "SLA-1",
                           "calendar": "ola", "pause_states": list(pause), "targets": list(ola_targets)})
    if uc_targets:
        agreements.append({"id": "UC-ACME", "kind": "uc", "service": "svc", "party": "acme", "underpins": "SLA-1",
                           "calendar": "uc", "targets": list(uc_targets)})
    if uc2_targets:
        agreements.append({"id": "UC-GLOBEX", "kind": "uc", "service": "svc", "party": "globex",
                           "underpins": "SLA-1", "calendar": "uc", "targets": list(uc2_targets)})
    raw = {
        "calendars": calendars,
        "people": [{"id": "owner", "name": "Owner"}],
        "groups": [{"id": "ops", "name": "Operations", "kind": "internal"},
                   {"id": "desk", "name": "Service Desk", "kind": "internal"},
                   {"id": "acme", "name": "Acme Ltd", "kind": "supplier"},
                   {"id": "globex", "name": "Globex BV", "kind": "supplier"}],
        "services": [{"id": "svc", "name": "Service", "owner": "owner", "tier": 1, "calendar": "service",
                      "suppliers": list(suppliers)}],
        "agreements": agreements,
    }
    return parse_config(yaml.safe_dump(raw, sort_keys=False))


def spec(cfg: AppConfig, agreement_id: str, metric: str) -> ClockSpec:
    found = [s for s in specs_for(cfg, "svc") if s.agreement.id == agreement_id and s.metric == metric]
    assert len(found) == 1, f"{agreement_id} {metric}: {found}"
    return found[0]


def ev(at: datetime, kind: str, value: str | None = None) -> Event:
    return Event(at, kind, value)


def opened(at: datetime, priority: str = "P2", group: str | None = None) -> list[Event]:
    events = [ev(at, "open", priority)]
    if group:
        events.append(ev(at, "assign", group))
    return events


def run(s: ClockSpec, events: list[Event], now: datetime) -> Measure:
    m = measure(s, replay(events), now)
    assert m is not None
    return m


# ------------------------------------------------------------------------------------- SLA-CASES 1–4, 10

@pytest.mark.parametrize("case, calendar, within, opened_at, due", [
    # 1: Fri 2025-01-10 16:00 GMT: 1 h on Friday, 7 h from Mon 09:00 -> Mon 2025-01-13 16:00 GMT.
    (1, london_office(), "8 business hours", utc(2025, 1, 10, 16), utc(2025, 1, 13, 16)),
    # 2: Sat 2025-03-29 23:00 CET = 22:00 UTC, 4 h of clock time -> 02:00 UTC = 04:00 CEST (not 03:00).
    (2, twenty_four_seven("Europe/Berlin"), "4 hours", utc(2025, 3, 29, 22), utc(2025, 3, 30, 2)),
    # 2 again with "business" hours on the 24x7 Berlin calendar itself: the same instant.
    (2, twenty_four_seven("Europe/Berlin"), "4 business hours", utc(2025, 3, 29, 22), utc(2025, 3, 30, 2)),
    # 3: Fri 2025-03-28 16:00 CET = 15:00 UTC: 1 h Friday, 7 h Monday -> Mon 16:00 CEST = 14:00 UTC.
    (3, {"timezone": "Europe/Berlin", "hours": NINE_TO_FIVE}, "8 business hours", utc(2025, 3, 28, 15),
     utc(2025, 3, 31, 14)),
    # 4: Thu 2025-04-17 16:00 BST = 15:00 UTC: 1 h Thursday; Good Friday, the weekend and Easter Monday
    # closed; 7 h from Tue 09:00 -> Tue 2025-04-22 16:00 BST = 15:00 UTC.
    (4, london_office(holidays=ENGLAND), "8 business hours", utc(2025, 4, 17, 15), utc(2025, 4, 22, 15)),
    # 10: Mon 2025-01-13 11:30 GMT with lunch 12:00–13:00: 30 min before lunch, 30 min after -> 13:30.
    (10, {"timezone": "Europe/London", "hours": WITH_LUNCH}, "1 business hours", utc(2025, 1, 13, 11, 30),
     utc(2025, 1, 13, 13, 30)),
])
def test_sla_cases_due_instant(case, calendar, within, opened_at, due):
    s = spec(build(calendar, [target("resolution", within)]), "SLA-1", "resolution")
    events = opened(opened_at)
    m = run(s, events, opened_at)
    assert m.due_at == due, case
    assert m.threshold_at[100.0] == due
    assert m.running and m.state == "running" and m.engaged and m.elapsed_seconds == 0
    # Measured again a minute before the due instant (nothing happened meanwhile): the same due instant,
    # and the clock has not breached; a minute after, it has.
    later = run(s, events, due - timedelta(minutes=1))
    assert later.due_at == due and not later.breached
    assert later.target_seconds - later.elapsed_seconds == 60
    after = run(s, events, due + timedelta(minutes=1))
    assert after.breached and after.due_at == due and after.state == "running"
    assert after.elapsed_seconds - after.target_seconds == 60


def test_case_2_measures_plain_hours_in_clock_time_even_on_a_business_calendar():
    # "4 hours" (no "business") on a Mon–Fri 09–17 calendar is clock time: Fri 2025-01-10 16:00 -> 20:00.
    s = spec(build(london_office(), [target("resolution", "4 hours")]), "SLA-1", "resolution")
    assert run(s, opened(utc(2025, 1, 10, 16)), utc(2025, 1, 10, 16)).due_at == utc(2025, 1, 10, 20)
    # "30 min": minutes are accepted too.
    s = spec(build(london_office(), [target("response", "30 min")]), "SLA-1", "response")
    assert run(s, opened(utc(2025, 1, 10, 16)), utc(2025, 1, 10, 16)).due_at == utc(2025, 1, 10, 16, 30)


# ------------------------------------------------------------------------------------- SLA-CASES 5, 6: pauses

def test_case_5_pause_on_a_24x7_calendar():
    # Opened Mon 2025-06-02 08:00, 2 h, awaiting the customer 09:00–10:05: 1 h before, 1 h after -> 11:05.
    s = spec(build(twenty_four_seven(), [target("resolution", "2 hours")]), "SLA-1", "resolution")
    t = utc(2025, 6, 2, 8)
    events = [*opened(t), ev(t + timedelta(hours=1), "state", "awaiting-customer"),
              ev(t + timedelta(hours=2, minutes=5), "state", "in-progress")]
    during = run(s, events, t + timedelta(hours=1, minutes=30))
    assert (during.running, during.state, during.due_at, during.elapsed_seconds) == (False, "paused", None, HOUR)
    after = run(s, events, t + timedelta(hours=2, minutes=5))
    assert after.running and after.elapsed_seconds == HOUR
    assert after.due_at == utc(2025, 6, 2, 11, 5)


def test_case_6_pause_over_a_weekend_on_business_hours():
    # Opened Fri 2025-01-10 16:00, 4 business hours, paused Fri 16:30 -> Mon 10:00: 30 min ran on
    # Friday; 3.5 h from Mon 10:00 -> Mon 2025-01-13 13:30 (the open hour Mon 09–10 is inside the pause).
    s = spec(build(london_office(), [target("resolution", "4 business hours")]), "SLA-1", "resolution")
    events = [*opened(utc(2025, 1, 10, 16)), ev(utc(2025, 1, 10, 16, 30), "state", "awaiting-customer"),
              ev(utc(2025, 1, 13, 10), "state", "in-progress")]
    paused = run(s, events, utc(2025, 1, 13, 9, 30))
    assert paused.state == "paused" and paused.elapsed_seconds == 30 * 60 and paused.due_at is None
    m = run(s, events, utc(2025, 1, 13, 10))
    assert m.due_at == utc(2025, 1, 13, 13, 30)
    assert m.elapsed_seconds == 30 * 60


def test_a_state_outside_the_agreements_pause_states_does_not_pause():
    # The agreement pauses for awaiting-customer only: awaiting-vendor keeps the SLA running.
    s = spec(build(twenty_four_seven(), [target("resolution", "2 hours")]), "SLA-1", "resolution")
    t = utc(2025, 6, 2, 8)
    events = [*opened(t), ev(t + timedelta(minutes=30), "state", "awaiting-vendor")]
    m = run(s, events, t + timedelta(hours=1))
    assert m.running and m.elapsed_seconds == HOUR and m.due_at == t + timedelta(hours=2)


# ------------------------------------------------------------------------------------- SLA-CASES 7: priority

PRIORITY_TARGETS = [target("resolution", "3 business hours", "P3"), target("resolution", "2 business hours", "P2")]


def test_case_7_raised_priority_keeps_elapsed_time_against_the_new_target():
    # Mon 2025-01-13 10:00 as P3 (3 h): due 13:00. At 11:00 raised to P2 (2 h): 1 h has run -> 12:00.
    s = spec(build(london_office(), PRIORITY_TARGETS), "SLA-1", "resolution")
    events = opened(utc(2025, 1, 13, 10), "P3")
    assert run(s, events, utc(2025, 1, 13, 10, 30)).due_at == utc(2025, 1, 13, 13)
    events.append(ev(utc(2025, 1, 13, 11), "priority", "P2"))
    m = run(s, events, utc(2025, 1, 13, 11))
    assert m.elapsed_seconds == HOUR and m.target_seconds == 2 * HOUR
    assert m.due_at == utc(2025, 1, 13, 12)
    # Before the change the P3 target still applies: history is measured as it stood at `now`.
    assert run(s, events, utc(2025, 1, 13, 10, 59)).target_seconds == 3 * HOUR


def test_lowered_priority_keeps_elapsed_time_against_the_new_target():
    # Mon 2025-01-13 10:00 as P2 (2 h, due 12:00); at 11:00 lowered to P3 (3 h): 1 h ran -> due 13:00.
    s = spec(build(london_office(), PRIORITY_TARGETS), "SLA-1", "resolution")
    events = opened(utc(2025, 1, 13, 10), "P2")
    assert run(s, events, utc(2025, 1, 13, 10)).due_at == utc(2025, 1, 13, 12)
    events.append(ev(utc(2025, 1, 13, 11), "priority", "P3"))
    m = run(s, events, utc(2025, 1, 13, 11, 30))
    assert m.elapsed_seconds == 1.5 * HOUR and m.due_at == utc(2025, 1, 13, 13)
    assert not m.breached


def test_a_pause_before_a_priority_change_still_does_not_count():
    # P3 from Mon 09:00, paused 09:30–10:30, raised to P2 at 11:00: 30 + 30 min ran -> due 12:00.
    s = spec(build(london_office(), PRIORITY_TARGETS), "SLA-1", "resolution")
    events = [*opened(utc(2025, 1, 13, 9), "P3"), ev(utc(2025, 1, 13, 9, 30), "state", "awaiting-customer"),
              ev(utc(2025, 1, 13, 10, 30), "state", "in-progress"), ev(utc(2025, 1, 13, 11), "priority", "P2")]
    m = run(s, events, utc(2025, 1, 13, 11))
    assert m.elapsed_seconds == HOUR and m.due_at == utc(2025, 1, 13, 12)


def test_raising_the_priority_past_the_new_target_is_breached_at_once():
    # P3 from Mon 09:00; at 11:30 raised to P2 (2 h): 2.5 h ran, so it fell due at 11:00 and is 30 min late.
    s = spec(build(london_office(), PRIORITY_TARGETS), "SLA-1", "resolution")
    events = [*opened(utc(2025, 1, 13, 9), "P3"), ev(utc(2025, 1, 13, 11, 30), "priority", "P2")]
    m = run(s, events, utc(2025, 1, 13, 11, 30))
    assert m.breached and m.running and m.state == "running"
    assert m.due_at == utc(2025, 1, 13, 11)
    assert m.threshold_at == {50.0: utc(2025, 1, 13, 10), 75.0: utc(2025, 1, 13, 10, 30), 100.0: utc(2025, 1, 13, 11)}
    assert m.elapsed_seconds - m.target_seconds == 30 * 60


def test_a_priority_without_a_target_has_no_clock():
    s = spec(build(london_office(), PRIORITY_TARGETS), "SLA-1", "resolution")
    assert measure(s, replay(opened(utc(2025, 1, 13, 9), "P4")), utc(2025, 1, 13, 10)) is None
    # ...until it is raised to one that has.
    events = [*opened(utc(2025, 1, 13, 9), "P4"), ev(utc(2025, 1, 13, 10), "priority", "P2")]
    m = run(s, events, utc(2025, 1, 13, 10))
    assert m.elapsed_seconds == HOUR and m.due_at == utc(2025, 1, 13, 11)


def test_nothing_is_measured_before_the_ticket_opens():
    s = spec(build(london_office(), PRIORITY_TARGETS), "SLA-1", "resolution")
    assert measure(s, replay(opened(utc(2025, 1, 13, 9))), utc(2025, 1, 13, 8)) is None


# ------------------------------------------------------------------------------------- SLA-CASES 8: warnings

def test_case_8_threshold_instants_for_warnings_at_50_and_75():
    # 8 business hours from Mon 2025-01-13 14:00: 3 h on Monday, then from Tue 09:00.
    # 50 % = 4 h -> Tue 10:00; 75 % = 6 h -> Tue 12:00; 100 % = 8 h -> Tue 14:00.
    s = spec(build(london_office(), [target("resolution", "8 business hours", warn_at=[50, 75])]),
             "SLA-1", "resolution")
    events = opened(utc(2025, 1, 13, 14))
    expected = {50.0: utc(2025, 1, 14, 10), 75.0: utc(2025, 1, 14, 12), 100.0: utc(2025, 1, 14, 14)}
    for now in (utc(2025, 1, 13, 14), utc(2025, 1, 13, 20), utc(2025, 1, 14, 10), utc(2025, 1, 14, 11),
                utc(2025, 1, 14, 12, 30), utc(2025, 1, 14, 14), utc(2025, 1, 14, 16)):
        m = run(s, events, now)
        assert m.threshold_at == expected, now
    # At each threshold instant the clock has used exactly that share.
    for level, at in expected.items():
        assert run(s, events, at).used == pytest.approx(level)


def test_case_8_other_warning_levels_and_a_landing_on_the_close():
    # warn_at [25, 90] on 8 h from Mon 2025-01-13 13:00: 25 % = 2 h -> 15:00; 90 % = 7.2 h = 7 h 12 min:
    # 4 h Monday (13–17) + 3 h 12 min from Tue 09:00 -> Tue 12:12; 100 % -> Tue 13:00.
    s = spec(build(london_office(), [target("resolution", "8 business hours", warn_at=[25, 90])]),
             "SLA-1", "resolution")
    m = run(s, opened(utc(2025, 1, 13, 13)), utc(2025, 1, 13, 13))
    assert m.threshold_at == {25.0: utc(2025, 1, 13, 15), 90.0: utc(2025, 1, 14, 12, 12),
                              100.0: utc(2025, 1, 14, 13)}
    # 4 h from Mon 13:00 lands exactly on Monday's close: the threshold is 17:00 Monday, not 09:00 Tuesday.
    s = spec(build(london_office(), [target("resolution", "8 business hours", warn_at=[50])]), "SLA-1", "resolution")
    assert run(s, opened(utc(2025, 1, 13, 13)), utc(2025, 1, 13, 13)).threshold_at[50.0] == utc(2025, 1, 13, 17)


def test_thresholds_move_with_a_pause_and_keep_the_ones_already_reached():
    # 4 h on 24x7 from 08:00, paused 09:30–10:30. 25 % (1 h) is reached at 09:00, before the pause;
    # 50 % (2 h) = 08:00–09:30 (1.5 h) + 10:30–11:00 -> 11:00; 100 % = 1.5 h + 2.5 h from 10:30 -> 13:00.
    s = spec(build(twenty_four_seven(), [target("resolution", "4 hours", warn_at=[25, 50])]), "SLA-1", "resolution")
    t = utc(2025, 6, 2, 8)
    events = [*opened(t), ev(utc(2025, 6, 2, 9, 30), "state", "awaiting-customer"),
              ev(utc(2025, 6, 2, 10, 30), "state", "in-progress")]
    paused = run(s, events, utc(2025, 6, 2, 10))
    assert paused.threshold_at == {25.0: utc(2025, 6, 2, 9)}  # the levels ahead are unknown while paused
    m = run(s, events, utc(2025, 6, 2, 12))
    assert m.threshold_at == {25.0: utc(2025, 6, 2, 9), 50.0: utc(2025, 6, 2, 11), 100.0: utc(2025, 6, 2, 13)}


def test_warn_before_is_a_lead_in_business_time_that_stays_before_due_when_the_target_changes():
    # P2 8 business hours, P1 4 business hours, each warned 1 hour before due (and no warn_at).
    # Opened Mon 2025-01-13 10:00 as P2: Mon 10–17 is 7 h, Tue 09:00 + 1 h -> due Tue 10:00. One business
    # hour before is 7 h used (87.5 %): Mon 17:00, the close, not Tue 09:00 as clock time would say.
    s = spec(build(london_office(), [
        target("resolution", "8 business hours", "P2", warn_at=[], warn_before=["1 hour"]),
        target("resolution", "4 business hours", "P1", warn_at=[], warn_before=["1 hour"])]),
        "SLA-1", "resolution")
    events = opened(utc(2025, 1, 13, 10))
    m = run(s, events, utc(2025, 1, 13, 10))
    assert m.threshold_at == {87.5: utc(2025, 1, 13, 17), 100.0: utc(2025, 1, 14, 10)}
    assert m.leads == {87.5: HOUR}
    # Raised to P1 at 11:00 with 1 h used: due 11:00 + 3 h = 14:00, so the warning moves to 13:00 (75 %).
    m = run(s, [*events, ev(utc(2025, 1, 13, 11), "priority", "P1")], utc(2025, 1, 13, 11))
    assert m.threshold_at == {75.0: utc(2025, 1, 13, 13), 100.0: utc(2025, 1, 13, 14)}
    assert m.leads == {75.0: HOUR}


def test_warn_before_beside_warn_at_and_on_business_days():
    # 24x7, 2 hours from 08:00 with warn_at [50] and warn_before 30 min and 15 min: 09:00 (50 %),
    # 09:30 (30 min before, 75 %), 09:45 (87.5 %), due 10:00.
    s = spec(build(twenty_four_seven(), [target("resolution", "2 hours", warn_at=[50],
                                                warn_before=["30 min", "15 min"])]), "SLA-1", "resolution")
    m = run(s, opened(utc(2025, 6, 2, 8)), utc(2025, 6, 2, 8))
    assert m.threshold_at == {50.0: utc(2025, 6, 2, 9), 75.0: utc(2025, 6, 2, 9, 30),
                              87.5: utc(2025, 6, 2, 9, 45), 100.0: utc(2025, 6, 2, 10)}
    # "1 business day" opened Mon 2025-01-13 10:00 is due at Monday's 17:00 close (7 h allowed): one
    # hour before is 16:00; "8 hours" before would be before the clock started, so it gives no warning.
    s = spec(build(london_office(), [target("resolution", "1 business days", warn_at=[],
                                            warn_before=["1 hour", "8 hours"])]), "SLA-1", "resolution")
    m = run(s, opened(utc(2025, 1, 13, 10)), utc(2025, 1, 13, 10))
    (level, warned), due = sorted(m.threshold_at.items())
    assert (level, warned, due) == (pytest.approx(600 / 7), utc(2025, 1, 13, 16), (100.0, utc(2025, 1, 13, 17)))


# ------------------------------------------------------------------------------------- SLA-CASES 9: met

def test_case_9_99_995_percent_used_is_met():
    # 2 h = 7 200 s; 99.995 % = 7 199.64 s -> resolved at 09:59:59.640000 from 08:00.
    s = spec(build(twenty_four_seven(), [target("resolution", "2 hours")]), "SLA-1", "resolution")
    t = utc(2025, 6, 2, 8)
    resolved = utc(2025, 6, 2, 9, 59, 59, 640000)
    m = run(s, [*opened(t), ev(resolved, "resolve")], utc(2025, 6, 2, 12))
    assert m.elapsed_seconds == pytest.approx(7199.64)
    assert m.used == pytest.approx(99.995)
    assert m.stopped_at == resolved and not m.running and m.due_at is None
    assert not m.breached and m.state == "met"


@pytest.mark.parametrize("resolved, state", [
    (utc(2025, 6, 2, 10), "met"),  # exactly the target: met
    (utc(2025, 6, 2, 10, 0, 0, 1), "breached"),  # one microsecond over: breached
])
def test_case_9_the_boundary_is_exact(resolved, state):
    s = spec(build(twenty_four_seven(), [target("resolution", "2 hours")]), "SLA-1", "resolution")
    m = run(s, [*opened(utc(2025, 6, 2, 8)), ev(resolved, "resolve")], utc(2025, 6, 3))
    assert m.state == state and m.breached == (state == "breached")


def test_case_9_on_business_hours_with_a_weekend_inside():
    # 8 business hours from Fri 2025-01-10 16:00; resolved Mon 2025-01-13 15:59:58.56: 3 600 s Friday +
    # 25 198.56 s Monday = 28 798.56 s = 99.995 % of 28 800 s -> met.
    s = spec(build(london_office(), [target("resolution", "8 business hours")]), "SLA-1", "resolution")
    m = run(s, [*opened(utc(2025, 1, 10, 16)), ev(utc(2025, 1, 13, 15, 59, 58, 560000), "resolve")],
            utc(2025, 1, 14))
    assert m.elapsed_seconds == pytest.approx(28798.56) and m.state == "met"


# ------------------------------------------------------------------------------------- SLA-CASES 11

def test_case_11_created_directly_in_a_paused_state():
    # Opened at 08:00 already awaiting the customer; it leaves that state at 10:00; 2 h -> due 12:00.
    s = spec(build(twenty_four_seven(), [target("resolution", "2 hours")]), "SLA-1", "resolution")
    t = utc(2025, 6, 2, 8)
    events = [*opened(t), ev(t, "state", "awaiting-customer")]
    m = run(s, events, utc(2025, 6, 2, 9, 30))
    assert (m.running, m.state, m.elapsed_seconds, m.due_at, m.threshold_at) == (False, "paused", 0, None, {})
    assert not m.engaged
    events.append(ev(utc(2025, 6, 2, 10), "state", "in-progress"))
    m = run(s, events, utc(2025, 6, 2, 10))
    assert m.running and m.engaged and m.elapsed_seconds == 0 and m.due_at == utc(2025, 6, 2, 12)


# ------------------------------------------------------------------------------------- reopen

def test_reopen_resumes_the_same_cycle_without_the_time_spent_resolved():
    # 24x7, opened 12:00 with 4 h (due 16:00), resolved 13:00, reopened 15:00: 1 h ran, 3 h remain -> 18:00.
    s = spec(build(twenty_four_seven(), [target("resolution", "4 hours")]), "SLA-1", "resolution")
    events = [*opened(utc(2025, 6, 2, 12)), ev(utc(2025, 6, 2, 13), "resolve")]
    resolved = run(s, events, utc(2025, 6, 2, 14))
    assert (resolved.state, resolved.stopped_at, resolved.elapsed_seconds) == ("met", utc(2025, 6, 2, 13), HOUR)
    assert not resolved.running and resolved.due_at is None
    events.append(ev(utc(2025, 6, 2, 15), "reopen"))
    m = run(s, events, utc(2025, 6, 2, 15))
    assert m.running and m.stopped_at is None and m.elapsed_seconds == HOUR
    assert m.due_at == utc(2025, 6, 2, 18)
    assert m.started_at == utc(2025, 6, 2, 12)  # the same cycle
    # Resolved again at 17:00: 3 h in all, met, stopped at the second resolution.
    events.append(ev(utc(2025, 6, 2, 17), "resolve"))
    m = run(s, events, utc(2025, 6, 2, 20))
    assert (m.state, m.stopped_at, m.elapsed_seconds) == ("met", utc(2025, 6, 2, 17), 3 * HOUR)
    # Left open after the reopen instead: breached at 18:00.
    m = run(s, events[:-1], utc(2025, 6, 2, 18, 30))
    assert m.breached and m.elapsed_seconds == 4.5 * HOUR


def test_reopen_does_not_restart_the_response_clock():
    s = spec(build(twenty_four_seven(), [target("response", "30 min")]), "SLA-1", "response")
    events = [*opened(utc(2025, 6, 2, 12)), ev(utc(2025, 6, 2, 12, 10), "respond"), ev(utc(2025, 6, 2, 13), "resolve"),
              ev(utc(2025, 6, 2, 15), "reopen")]
    m = run(s, events, utc(2025, 6, 2, 16))
    assert (m.state, m.stopped_at, m.elapsed_seconds, m.running) == ("met", utc(2025, 6, 2, 12, 10), 600, False)


def test_resolving_stops_an_unanswered_response_clock_too():
    s = spec(build(twenty_four_seven(), [target("response", "30 min")]), "SLA-1", "response")
    m = run(s, [*opened(utc(2025, 6, 2, 12)), ev(utc(2025, 6, 2, 12, 45), "resolve")], utc(2025, 6, 2, 16))
    assert (m.state, m.stopped_at, m.elapsed_seconds) == ("breached", utc(2025, 6, 2, 12, 45), 45 * 60)


# ------------------------------------------------------------------------------------- units: business days

@pytest.mark.parametrize("within, opened_at, due, seconds", [
    # Thu 2025-01-09 10:00: day 1 is Thursday, day 2 Friday -> Fri 17:00; 7 h + 8 h of open time.
    ("2 business days", utc(2025, 1, 9, 10), utc(2025, 1, 10, 17), 15 * HOUR),
    # Thu 18:00, after the close: day 1 is Friday, day 2 Monday -> Mon 2025-01-13 17:00; 16 h.
    ("2 business days", utc(2025, 1, 9, 18), utc(2025, 1, 13, 17), 16 * HOUR),
    # Fri 2025-01-10 17:00, exactly the close: Friday no longer counts -> Mon 17:00; 8 h.
    ("1 business day", utc(2025, 1, 10, 17), utc(2025, 1, 13, 17), 8 * HOUR),
    # Sat 2025-01-11 12:00: Mon and Tue -> Tue 2025-01-14 17:00; 16 h.
    ("2 business days", utc(2025, 1, 11, 12), utc(2025, 1, 14, 17), 16 * HOUR),
])
def test_n_business_days_by_end_of_day(within, opened_at, due, seconds):
    s = spec(build(london_office(), [target("resolution", within)]), "SLA-1", "resolution")
    m = run(s, opened(opened_at), opened_at)
    assert m.due_at == due and m.target_seconds == seconds


def test_business_days_with_a_holiday_and_on_a_24x7_calendar():
    # England, Thu 2025-04-17 10:00 BST = 09:00 UTC, 2 business days: Thursday, then Good Friday and Easter
    # Monday are off -> Tue 2025-04-22 17:00 BST = 16:00 UTC.
    s = spec(build(london_office(holidays=ENGLAND), [target("resolution", "2 business days")]), "SLA-1", "resolution")
    assert run(s, opened(utc(2025, 4, 17, 9)), utc(2025, 4, 17, 9)).due_at == utc(2025, 4, 22, 16)
    # 24x7 UTC: a working day runs midnight to midnight; 1 business day from 10:00 -> the next midnight.
    s = spec(build(twenty_four_seven(), [target("resolution", "1 business day")]), "SLA-1", "resolution")
    m = run(s, opened(utc(2025, 6, 2, 10)), utc(2025, 6, 2, 10))
    assert m.due_at == utc(2025, 6, 3) and m.target_seconds == 14 * HOUR


def test_business_days_of_an_ola_count_from_when_the_team_has_the_ticket():
    # Ticket opened Mon 2025-01-13 15:00 with the service desk; handed to ops Wed 2025-01-15 10:00. The OLA
    # gives ops "1 business day, by end of day": the end of Wednesday, 17:00. (Counted from the opening,
    # Monday has 2 h left, and ops would be due at Wed 12:00; opened at 16:59 they would get one minute.)
    cfg = build(london_office(), [target("resolution", "3 business days")],
                ola_targets=[target("resolution", "1 business day")])
    s = spec(cfg, "OLA-OPS", "resolution")
    events = [*opened(utc(2025, 1, 13, 15), group="desk"), ev(utc(2025, 1, 15, 10), "assign", "ops")]
    m = run(s, events, utc(2025, 1, 15, 10))
    assert m.due_at == utc(2025, 1, 15, 17)


# ------------------------------------------------------------------------------------- OLA

OLA_CFG = dict(ola_targets=[target("resolution", "2 hours")])


def test_ola_runs_only_while_its_team_has_the_ticket():
    # ops 09:00–09:30, the desk 09:30–10:00, ops again from 10:00: at 10:15 ops used 45 min -> due 11:30.
    cfg = build(twenty_four_seven(), [target("resolution", "8 hours")], **OLA_CFG)
    s = spec(cfg, "OLA-OPS", "resolution")
    events = [*opened(utc(2025, 6, 2, 8), group="desk"), ev(utc(2025, 6, 2, 9), "assign", "ops"),
              ev(utc(2025, 6, 2, 9, 30), "assign", "desk"), ev(utc(2025, 6, 2, 10), "assign", "ops")]
    before = run(s, events, utc(2025, 6, 2, 8, 30))
    assert (before.state, before.engaged, before.elapsed_seconds) == ("paused", False, 0)
    away = run(s, events, utc(2025, 6, 2, 9, 45))
    assert (away.state, away.running, away.elapsed_seconds, away.due_at) == ("paused", False, 30 * 60, None)
    assert away.engaged
    back = run(s, events, utc(2025, 6, 2, 10, 15))
    assert back.running and back.elapsed_seconds == 45 * 60
    assert back.due_at == utc(2025, 6, 2, 11, 30)
    # The SLA ran all along: 2 h 15 min since 08:00.
    assert run(spec(cfg, "SLA-1", "resolution"), events, utc(2025, 6, 2, 10, 15)).elapsed_seconds == 2.25 * HOUR


def test_ola_stops_at_resolution_and_pauses_with_the_agreements_pause_states():
    cfg = build(twenty_four_seven(), [target("resolution", "8 hours")], **OLA_CFG)
    s = spec(cfg, "OLA-OPS", "resolution")
    events = [*opened(utc(2025, 6, 2, 8), group="ops"), ev(utc(2025, 6, 2, 9), "state", "awaiting-customer"),
              ev(utc(2025, 6, 2, 10), "state", "in-progress"), ev(utc(2025, 6, 2, 11), "resolve")]
    m = run(s, events, utc(2025, 6, 2, 15))
    assert (m.state, m.elapsed_seconds, m.stopped_at) == ("met", 2 * HOUR, utc(2025, 6, 2, 11))


def test_an_ola_that_never_ran_is_unused():
    cfg = build(twenty_four_seven(), [target("resolution", "8 hours")], **OLA_CFG)
    events = [*opened(utc(2025, 6, 2, 8), group="desk"), ev(utc(2025, 6, 2, 11), "resolve")]
    ola = run(spec(cfg, "OLA-OPS", "resolution"), events, utc(2025, 6, 2, 12))
    assert (ola.state, ola.engaged, ola.elapsed_seconds, ola.breached) == ("unused", False, 0, False)
    assert ola.stopped_at == utc(2025, 6, 2, 11)
    sla = run(spec(cfg, "SLA-1", "resolution"), events, utc(2025, 6, 2, 12))
    assert (sla.state, sla.engaged, sla.elapsed_seconds) == ("met", True, 3 * HOUR)


def test_ola_uses_its_teams_calendar():
    # OLA on Mon–Fri 09–17 London, SLA on 24x7: assigned to ops Fri 2025-01-10 16:00 with 2 business hours:
    # 1 h Friday, 1 h from Monday 09:00 -> Mon 10:00; the SLA (4 h clock time) is due Fri 20:00.
    cfg = build(twenty_four_seven(), [target("resolution", "4 hours")],
                ola_targets=[target("resolution", "2 business hours")], ola_calendar=london_office())
    events = opened(utc(2025, 1, 10, 16), group="ops")
    assert run(spec(cfg, "OLA-OPS", "resolution"), events, utc(2025, 1, 10, 16)).due_at == utc(2025, 1, 13, 10)
    assert run(spec(cfg, "SLA-1", "resolution"), events, utc(2025, 1, 10, 16)).due_at == utc(2025, 1, 10, 20)


# ------------------------------------------------------------------------------------- UC

UC_CFG = dict(uc_targets=[target("response", "30 min"), target("resolution", "2 hours")],
              uc2_targets=[target("response", "30 min")], suppliers=("acme", "globex"))


def wait_on(at: datetime, supplier: str | None) -> list[Event]:
    out = [ev(at, "supplier", supplier)] if supplier else []
    return out + [ev(at, "state", "awaiting-vendor")]


def test_uc_runs_only_while_the_ticket_waits_on_that_supplier():
    # Waits on acme 09:00–10:00 and 11:00–11:20; on globex 12:00–13:00 (acme's clock does not run).
    cfg = build(twenty_four_seven(), [target("resolution", "8 hours")], **UC_CFG)
    resolution = spec(cfg, "UC-ACME", "resolution")
    events = [*opened(utc(2025, 6, 2, 8)), *wait_on(utc(2025, 6, 2, 9), "acme"),
              ev(utc(2025, 6, 2, 10), "state", "in-progress"), ev(utc(2025, 6, 2, 11), "state", "awaiting-vendor"),
              ev(utc(2025, 6, 2, 11, 20), "state", "in-progress"), *wait_on(utc(2025, 6, 2, 12), "globex")]
    assert run(resolution, events, utc(2025, 6, 2, 8, 30)).state == "paused"
    mid = run(resolution, events, utc(2025, 6, 2, 11, 10))
    assert mid.running and mid.elapsed_seconds == 70 * 60 and mid.due_at == utc(2025, 6, 2, 12, 0)
    m = run(resolution, events, utc(2025, 6, 2, 13))
    assert (m.state, m.running, m.elapsed_seconds) == ("paused", False, 80 * 60)
    # The SLA runs through every one of those states (awaiting-vendor is not one of its pause states).
    assert run(spec(cfg, "SLA-1", "resolution"), events, utc(2025, 6, 2, 13)).elapsed_seconds == 5 * HOUR


def test_uc_response_is_the_supplier_moving_the_ticket_on():
    cfg = build(twenty_four_seven(), [target("resolution", "8 hours")], **UC_CFG)
    response = spec(cfg, "UC-ACME", "response")
    events = [*opened(utc(2025, 6, 2, 8)), *wait_on(utc(2025, 6, 2, 9), "acme")]
    waiting = run(response, events, utc(2025, 6, 2, 9, 10))
    assert waiting.running and waiting.due_at == utc(2025, 6, 2, 9, 30)
    events.append(ev(utc(2025, 6, 2, 9, 20), "state", "in-progress"))
    m = run(response, events, utc(2025, 6, 2, 12))
    assert (m.state, m.stopped_at, m.elapsed_seconds) == ("met", utc(2025, 6, 2, 9, 20), 20 * 60)
    # A later wait on the same supplier does not restart its response clock.
    events += wait_on(utc(2025, 6, 2, 13), "acme")
    assert run(response, events, utc(2025, 6, 2, 14)).stopped_at == utc(2025, 6, 2, 9, 20)
    # Late: moved on after 45 min.
    late = [*opened(utc(2025, 6, 2, 8)), *wait_on(utc(2025, 6, 2, 9), "acme"),
            ev(utc(2025, 6, 2, 9, 45), "state", "in-progress")]
    assert run(response, late, utc(2025, 6, 2, 12)).state == "breached"


def test_a_ticket_responded_to_by_the_service_desk_has_not_had_the_suppliers_response():
    # The desk's response (respond event) does not stop the supplier's response clock.
    cfg = build(twenty_four_seven(), [target("resolution", "8 hours")], **UC_CFG)
    events = [*opened(utc(2025, 6, 2, 8)), ev(utc(2025, 6, 2, 8, 5), "respond"), *wait_on(utc(2025, 6, 2, 9), "acme")]
    m = run(spec(cfg, "UC-ACME", "response"), events, utc(2025, 6, 2, 9, 10))
    assert m.running and m.elapsed_seconds == 600


def test_awaiting_vendor_without_a_named_supplier_counts_for_the_services_suppliers():
    cfg = build(twenty_four_seven(), [target("resolution", "8 hours")], **UC_CFG)
    events = [*opened(utc(2025, 6, 2, 8)), *wait_on(utc(2025, 6, 2, 9), None)]
    assert run(spec(cfg, "UC-ACME", "resolution"), events, utc(2025, 6, 2, 9, 30)).elapsed_seconds == 30 * 60
    # acme is not one of this service's suppliers: an unnamed wait does not count for it.
    cfg = build(twenty_four_seven(), [target("resolution", "8 hours")], uc_targets=[target("resolution", "2 hours")],
                suppliers=("globex",))
    m = run(spec(cfg, "UC-ACME", "resolution"), events, utc(2025, 6, 2, 9, 30))
    assert m.elapsed_seconds == 0 and not m.engaged


def test_a_uc_that_never_ran_is_unused():
    cfg = build(twenty_four_seven(), [target("resolution", "8 hours")], **UC_CFG)
    events = [*opened(utc(2025, 6, 2, 8)), ev(utc(2025, 6, 2, 9), "resolve")]
    for metric in ("response", "resolution"):
        assert run(spec(cfg, "UC-ACME", metric), events, utc(2025, 6, 2, 10)).state == "unused"


def test_uc_response_of_one_supplier_is_not_stopped_by_another_supplier_moving_on():
    # Waits on globex 09:00–10:00 (globex moved it on after 60 min of its 30: late), then on acme from
    # 11:00. At 11:20 acme's response clock has run 20 min of its 30 and is due at 11:30.
    cfg = build(twenty_four_seven(), [target("resolution", "8 hours")], **UC_CFG)
    events = [*opened(utc(2025, 6, 2, 8)), *wait_on(utc(2025, 6, 2, 9), "globex"),
              ev(utc(2025, 6, 2, 10), "state", "in-progress"), *wait_on(utc(2025, 6, 2, 11), "acme")]
    globex = run(spec(cfg, "UC-GLOBEX", "response"), events, utc(2025, 6, 2, 11, 20))
    assert (globex.state, globex.stopped_at) == ("breached", utc(2025, 6, 2, 10))
    acme = run(spec(cfg, "UC-ACME", "response"), events, utc(2025, 6, 2, 11, 20))
    assert acme.running and acme.elapsed_seconds == 20 * 60 and acme.due_at == utc(2025, 6, 2, 11, 30)


# ------------------------------------------------------------------------------------- event order

def test_events_given_out_of_order_measure_the_same():
    cfg = build(london_office(), PRIORITY_TARGETS, ola_targets=[target("resolution", "4 business hours", "P2")])
    events = [*opened(utc(2025, 1, 13, 9), "P3", group="desk"), ev(utc(2025, 1, 13, 9, 20), "respond"),
              ev(utc(2025, 1, 13, 9, 30), "state", "awaiting-customer"), ev(utc(2025, 1, 13, 10), "assign", "ops"),
              ev(utc(2025, 1, 13, 10, 30), "state", "in-progress"), ev(utc(2025, 1, 13, 11), "priority", "P2")]
    now = utc(2025, 1, 13, 11, 15)
    expected = {key: run(spec(cfg, *key), events, now) for key in (("SLA-1", "resolution"), ("OLA-OPS", "resolution"))}
    # Worked by hand: SLA 09:00–09:30 + 10:30–11:15 = 75 min against P2's 2 h -> due 12:00;
    # the OLA (P2, 4 h) ran from 10:30 (ops since 10:00, but paused until 10:30) -> 45 min.
    assert expected["SLA-1", "resolution"].elapsed_seconds == 75 * 60
    assert expected["SLA-1", "resolution"].due_at == utc(2025, 1, 13, 12)
    assert expected["OLA-OPS", "resolution"].elapsed_seconds == 45 * 60
    rng = random.Random(7)
    for _ in range(20):
        shuffled = events[:]
        rng.shuffle(shuffled)
        # The open/assign pair at 09:00 is the only same-instant pair; either order gives P3 with the desk.
        for key, m in expected.items():
            assert run(spec(cfg, *key), shuffled, now) == m


def test_several_events_at_one_instant_the_last_one_stands():
    t = utc(2025, 6, 2, 8)
    events = [ev(t, "open", "P1"), ev(t, "assign", "ops"), ev(t, "state", "awaiting-customer"),
              ev(t + timedelta(hours=1), "state", "awaiting-customer"), ev(t + timedelta(hours=1), "state", "in-progress")]
    timeline = replay(events)
    # Every step is kept in order; what holds for the time after an instant is its last step.
    last_at = {at: snap for at, snap in timeline}
    assert list(last_at) == [t, t + timedelta(hours=1)]
    first, second = last_at[t], last_at[t + timedelta(hours=1)]
    assert (first.priority, first.group, first.state) == ("P1", "ops", "awaiting-customer")
    assert (second.priority, second.group, second.state) == ("P1", "ops", "in-progress")

    # A pause and its end at one instant is no pause; a resolution and a reopening at one instant do not
    # stop the clock.
    s = spec(build(twenty_four_seven(), [target("resolution", "2 hours")]), "SLA-1", "resolution")
    events = [*opened(t), ev(t + timedelta(minutes=30), "state", "awaiting-customer"),
              ev(t + timedelta(minutes=30), "state", "in-progress"),
              ev(t + timedelta(minutes=45), "resolve"), ev(t + timedelta(minutes=45), "reopen")]
    m = run(s, events, t + timedelta(hours=1))
    assert m.running and m.stopped_at is None and m.elapsed_seconds == HOUR and m.due_at == t + timedelta(hours=2)


# ------------------------------------------------------------------------------------- engaged and state

def test_state_values():
    s = spec(build(twenty_four_seven(), [target("resolution", "2 hours")]), "SLA-1", "resolution")
    t = utc(2025, 6, 2, 8)
    base = opened(t)
    assert run(s, base, t + timedelta(hours=1)).state == "running"
    late = run(s, base, t + timedelta(hours=3))
    assert late.state == "running" and late.breached  # running and past due
    assert run(s, [*base, ev(t + timedelta(minutes=10), "state", "awaiting-customer")],
               t + timedelta(hours=3)).state == "paused"
    assert run(s, [*base, ev(t + timedelta(hours=1), "resolve")], t + timedelta(hours=3)).state == "met"
    assert run(s, [*base, ev(t + timedelta(hours=3), "resolve")], t + timedelta(hours=4)).state == "breached"
    closed = run(s, [*base, ev(t + timedelta(hours=1), "close")], t + timedelta(hours=4))
    assert closed.state == "met" and closed.stopped_at == t + timedelta(hours=1)
    # "resolved" given as a state is a resolution too
    assert run(s, [*base, ev(t + timedelta(hours=1), "state", "resolved")], t + timedelta(hours=4)).state == "met"


def test_an_sla_answered_at_the_instant_it_opened_is_met_not_unused():
    # A first-contact resolution (opened and resolved at once) or an auto-acknowledged ticket: the SLA
    # applied to it and was met in 0 s.
    cfg = build(twenty_four_seven(), [target("response", "30 min"), target("resolution", "2 hours")])
    t = utc(2025, 6, 2, 8)
    responded = run(spec(cfg, "SLA-1", "response"), [*opened(t), ev(t, "respond")], t + timedelta(hours=1))
    resolved = run(spec(cfg, "SLA-1", "resolution"), [*opened(t), ev(t, "resolve")], t + timedelta(hours=1))
    assert (responded.state, responded.elapsed_seconds) == ("met", 0)
    assert (resolved.state, resolved.elapsed_seconds) == ("met", 0)
