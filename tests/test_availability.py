"""Availability, error budget and burn-rate alerts (SLA-CASES.md, Availability and Error budget).
Every expected number is worked out by hand in the test, never by the code under test."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from handlers.sla.availability import (BURN_RULES, Availability, BurnAlert, availability, burn_alerts, burn_rate,
                                       error_budget_seconds, merge)

UTC = timezone.utc
APRIL_1 = datetime(2025, 4, 1, tzinfo=UTC)
MAY_1 = datetime(2025, 5, 1, tzinfo=UTC)  # April has 30 days: 2 592 000 s
NOW = datetime(2025, 4, 15, 12, 0, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2025, 4, day, hour, minute, second, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# ------------------------------------------------------------------------------------------- merge

def test_merge_sorts_and_joins_overlapping_and_touching_intervals():
    a, b, c, d = at(2, 10), at(2, 10, 10), at(2, 10, 20), at(2, 10, 30)
    later = (at(3, 9), at(3, 9, 5))
    # [10:10, 10:20) overlaps [10:00, 10:15); [10:20, 10:30) touches it: one interval 10:00–10:30
    assert merge([later, (c, d), (b, c), (a, at(2, 10, 15))]) == [(a, d), later]


def test_merge_swallows_an_interval_inside_another():
    assert merge([(at(2, 10), at(2, 11)), (at(2, 10, 15), at(2, 10, 30))]) == [(at(2, 10), at(2, 11))]


def test_merge_keeps_intervals_with_a_gap_apart_and_drops_empty_ones():
    first, second = (at(2, 10), at(2, 11)), (at(2, 11, 0, 1), at(2, 12))
    assert merge([second, (at(2, 13), at(2, 13)), first]) == [first, second]


def test_merge_refuses_an_open_interval():
    with pytest.raises(ValueError, match="now"):
        merge([(at(2, 10), None)])


def test_merge_refuses_an_interval_that_ends_before_it_starts_and_naive_times():
    with pytest.raises(ValueError):
        merge([(at(2, 11), at(2, 10))])
    with pytest.raises(ValueError, match="timezone-aware"):
        merge([(datetime(2025, 4, 2, 10), datetime(2025, 4, 2, 11))])


# ------------------------------------------------------------------------------------------- availability

def test_sla_cases_month_with_maintenance_and_downtime_is_99_930_percent():
    maintenance = [(at(6, 2), at(6, 4))]   # 120 min approved
    outages = [(at(17, 14), at(17, 14, 30))]  # 30 min unplanned
    result = availability(APRIL_1, MAY_1, outages, maintenance)
    # agreed: 43 200 min − 120 min = 43 080 min = 2 584 800 s; downtime 1 800 s
    assert result == Availability(agreed_seconds=2_584_800.0, downtime_seconds=1_800.0, ratio=43050 / 43080)
    assert f"{result.ratio:.3%}" == "99.930%"


def test_no_outages_and_no_maintenance_is_fully_available():
    assert availability(APRIL_1, MAY_1, []) == Availability(2_592_000.0, 0.0, 1.0)


def test_overlapping_outages_count_once():
    outages = [(at(10, 10), at(10, 10, 20)), (at(10, 10, 10), at(10, 10, 30)), (at(10, 10, 5), at(10, 10, 15))]
    assert availability(APRIL_1, MAY_1, outages).downtime_seconds == 1_800.0  # 10:00–10:30


def test_touching_outages_add_up():
    outages = [(at(10, 10), at(10, 10, 10)), (at(10, 10, 10), at(10, 10, 25))]
    assert availability(APRIL_1, MAY_1, outages).downtime_seconds == 1_500.0


def test_outage_partly_in_maintenance_counts_only_outside_it():
    maintenance = [(at(6, 2), at(6, 4))]
    outages = [(at(6, 3, 30), at(6, 4, 30))]  # 30 min inside the window, 30 min after it
    result = availability(APRIL_1, MAY_1, outages, maintenance)
    assert result.agreed_seconds == 2_592_000.0 - 7_200.0
    assert result.downtime_seconds == 1_800.0
    assert result.ratio == (2_584_800 - 1_800) / 2_584_800


def test_outage_wholly_in_maintenance_is_no_downtime_and_overlapping_windows_count_once():
    maintenance = [(at(6, 2), at(6, 4)), (at(6, 3), at(6, 5))]  # 02:00–05:00, 3 h
    result = availability(APRIL_1, MAY_1, [(at(6, 2, 30), at(6, 4, 30))], maintenance)
    assert (result.agreed_seconds, result.downtime_seconds, result.ratio) == (2_592_000.0 - 10_800.0, 0.0, 1.0)


def test_outage_partly_outside_the_period_counts_only_inside_it():
    outages = [(APRIL_1 - minutes(10), APRIL_1 + minutes(20)),  # 20 min inside
               (MAY_1 - minutes(5), MAY_1 + minutes(60)),       # 5 min inside
               (MAY_1, MAY_1 + minutes(30))]                    # starts at the period's (excluded) end
    assert availability(APRIL_1, MAY_1, outages).downtime_seconds == 1_500.0


def test_maintenance_partly_outside_the_period_shortens_agreed_time_only_inside_it():
    maintenance = [(APRIL_1 - minutes(60), APRIL_1 + minutes(30))]
    assert availability(APRIL_1, MAY_1, [], maintenance).agreed_seconds == 2_592_000.0 - 1_800.0


def test_zero_agreed_time_has_no_ratio():
    whole_month_maintenance = [(APRIL_1 - minutes(1), MAY_1 + minutes(1))]
    outage = [(at(10, 10), at(10, 11))]
    assert availability(APRIL_1, MAY_1, outage, whole_month_maintenance) == Availability(0.0, 0.0, None)
    assert availability(APRIL_1, APRIL_1, outage) == Availability(0.0, 0.0, None)


def test_whole_period_down_is_zero():
    assert availability(APRIL_1, MAY_1, [(APRIL_1 - minutes(1), MAY_1)]).ratio == 0.0


def test_period_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError):
        availability(MAY_1, APRIL_1, [])


def test_availability_stays_between_0_and_1_for_random_intervals():
    rng = random.Random(20250401)
    period_seconds = 2_592_000

    def random_intervals(count: int) -> list[tuple[datetime, datetime]]:
        intervals = []
        for _ in range(count):
            # some start before the period and some run past its end
            start = APRIL_1 + timedelta(seconds=rng.randint(-86_400, period_seconds + 86_400))
            intervals.append((start, start + timedelta(seconds=rng.choice([0, 1, rng.randint(1, 500_000)]))))
        return intervals

    for _ in range(500):
        start = APRIL_1 + timedelta(seconds=rng.randint(0, 86_400))
        end = start + timedelta(seconds=rng.randint(0, period_seconds))
        result = availability(start, end, random_intervals(rng.randint(0, 12)), random_intervals(rng.randint(0, 4)))
        assert 0 <= result.downtime_seconds <= result.agreed_seconds <= (end - start).total_seconds()
        if result.agreed_seconds == 0:
            assert result.ratio is None
        else:
            assert 0.0 <= result.ratio <= 1.0


# ------------------------------------------------------------------------------------------- error budget

def test_error_budget_for_99_9_percent_over_30_days_is_43_2_minutes():
    budget = error_budget_seconds(0.999, 30 * 86_400)
    assert budget == 2592.0  # 0.001 × 2 592 000 s, exactly
    assert budget / 60 == 43.2


def test_error_budget_for_other_targets():
    assert error_budget_seconds(0.9995, 30 * 86_400) == 1296.0  # 21.6 min
    assert error_budget_seconds(0.99, 7 * 86_400) == 6048.0     # 1 % of 604 800 s


@pytest.mark.parametrize("target", [0, 1, 99.9, -0.5])
def test_target_must_be_a_fraction(target):
    with pytest.raises(ValueError, match="0.999"):
        error_budget_seconds(target, 3600)


def test_burn_rate_is_bad_share_over_allowed_share():
    assert burn_rate(0, 3600, 0.999) == 0.0
    assert burn_rate(3.6, 3600, 0.999) == 1.0       # 0.1 % bad against 0.1 % allowed
    assert burn_rate(51.84, 3600, 0.999) == 14.4    # 1.44 % bad: exactly the fast-page threshold
    assert burn_rate(3600, 3600, 0.999) == 1000.0   # all bad
    assert burn_rate(900, 3600, 0.99) == 25.0       # 25 % bad against 1 %


# ------------------------------------------------------------------------------------------- burn alerts

def test_burn_rules_are_the_sre_workbook_ones_pages_first():
    assert [tuple(rule) for rule in BURN_RULES] == [
        ("page", timedelta(hours=1), timedelta(minutes=5), 14.4),
        ("page", timedelta(hours=6), timedelta(minutes=30), 6.0),
        ("ticket", timedelta(days=3), timedelta(hours=6), 1.0),
    ]


def test_no_outages_no_alerts():
    assert burn_alerts([], NOW, 0.999) == []


def test_fast_page_fires_alone_for_a_short_sharp_outage():
    # 60 s bad ending now. 1 h: 60/3600 ÷ 0.001 = 16.67 ≥ 14.4; 5 min: 60/300 ÷ 0.001 = 200.
    # 6 h: 60/21600 ÷ 0.001 = 2.78 < 6; 3 days: 60/259200 ÷ 0.001 = 0.23 < 1.
    alerts = burn_alerts([(NOW - timedelta(seconds=60), NOW)], NOW, 0.999)
    assert alerts == [BurnAlert("page", timedelta(hours=1), timedelta(minutes=5),
                                long_burn=pytest.approx(60 / 3.6), short_burn=200.0, threshold=14.4)]


def test_fast_page_fires_at_exactly_the_threshold_and_not_below_it():
    # 51.84 s bad in the last hour is a burn of exactly 14.4; 51.83 s is not enough
    exact = burn_alerts([(NOW - timedelta(seconds=51.84), NOW)], NOW, 0.999)
    assert [(a.severity, a.long_window, a.long_burn) for a in exact] == [("page", timedelta(hours=1), 14.4)]
    assert burn_alerts([(NOW - timedelta(seconds=51.83), NOW)], NOW, 0.999) == []


def test_slow_page_fires_alone_when_the_last_5_minutes_are_clean():
    # 150 s bad, from 25 min to 22.5 min ago. 6 h: 150/21600 ÷ 0.001 = 6.94 ≥ 6; 30 min: 150/1800 ÷ 0.001 = 83.3.
    # The fast page's 1 h window burns 41.7 but its 5 min window 0; 3 days: 150/259200 ÷ 0.001 = 0.58 < 1.
    outage = (NOW - minutes(25), NOW - minutes(22.5))
    assert burn_alerts([outage], NOW, 0.999) == [
        BurnAlert("page", timedelta(hours=6), timedelta(minutes=30),
                  long_burn=pytest.approx(150 / 21.6), short_burn=pytest.approx(150 / 1.8), threshold=6.0)]


def test_ticket_fires_alone_for_a_slow_steady_burn():
    # 300 s two days ago and 30 s two hours ago. 3 days: 330/259200 ÷ 0.001 = 1.27 ≥ 1; 6 h: 30/21600 ÷ 0.001 = 1.39.
    # Both pages have a clean short window (5 min, 30 min).
    outages = [(NOW - timedelta(days=2), NOW - timedelta(days=2) + minutes(5)),
               (NOW - timedelta(hours=2), NOW - timedelta(hours=2) + timedelta(seconds=30))]
    assert burn_alerts(outages, NOW, 0.999) == [
        BurnAlert("ticket", timedelta(days=3), timedelta(hours=6),
                  long_burn=pytest.approx(330 / 259.2), short_burn=pytest.approx(30 / 21.6), threshold=1.0)]


def test_a_big_outage_still_going_fires_every_rule_pages_first():
    # down for the last 10 min: every window burns far above its threshold
    alerts = burn_alerts([(NOW - minutes(10), NOW)], NOW, 0.999)
    assert [(a.severity, a.long_window) for a in alerts] == [
        ("page", timedelta(hours=1)), ("page", timedelta(hours=6)), ("ticket", timedelta(days=3))]
    assert alerts[0].short_burn == 1000.0  # the whole 5 min bad


def test_short_window_fast_but_long_window_slow_is_no_alert():
    # a 5 s blip ending now. 5 min: 5/300 ÷ 0.001 = 16.7 ≥ 14.4, but 1 h: 5/3600 ÷ 0.001 = 1.39 < 14.4;
    # 30 min: 2.78 < 6; 6 h (ticket's short window): 0.23 < 1.
    assert burn_alerts([(NOW - timedelta(seconds=5), NOW)], NOW, 0.999) == []


def test_long_window_fast_but_short_window_slow_is_no_page():
    # an hour down that ended 40 min ago. 1 h: 1200/3600 ÷ 0.001 = 333 but 5 min: 0; 6 h: 166.7 but 30 min: 0.
    # Only the ticket fires (3 days: 3600/259200 ÷ 0.001 = 13.9; 6 h: 166.7): the burn is over, pages stop.
    outage = (NOW - minutes(100), NOW - minutes(40))
    assert [a.severity for a in burn_alerts([outage], NOW, 0.999)] == ["ticket"]


def test_outages_after_now_are_ignored():
    assert burn_alerts([(NOW, NOW + minutes(30))], NOW, 0.999) == []
