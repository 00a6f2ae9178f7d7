"""Business-calendar arithmetic (handlers/core/business_time.py): the calendar cases of ../shared/SLA-CASES.md,
the building blocks the pause and priority cases need, DST changes, holidays, closures, quiet hours and
property checks. Every expected value is worked out by hand in the comment beside it (or taken from
SLA-CASES.md); none is computed by the code under test.

Offsets used below: London GMT = UTC+0, BST = UTC+1 (2025: BST from Sun 30 Mar to Sun 26 Oct);
Berlin / Amsterdam CET = UTC+1, CEST = UTC+2; New York EST = UTC-5, EDT = UTC-4 (2025: EDT from Sun 9 Mar
to Sun 2 Nov); Kolkata IST = UTC+5:30; Santiago -04 then -03 from Sun 8 Sep 2024 (clocks 00:00 -> 01:00).
"""
from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from handlers.core.business_time import BusinessCalendar
from handlers.core.config_catalogue import Calendar
from handlers.imports.csv_files import day_first_time
from tests.when import today

NINE_TO_FIVE = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
ALL_DAY_EVERY_DAY = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
NINE_TO_FIVE_EVERY_DAY = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
WITH_LUNCH = {day: ["09:00-12:00", "13:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
ENGLAND = [{"country": "GB", "subdivision": "ENG"}]
SCOTLAND = [{"country": "GB", "subdivision": "SCT"}]
HOUR = 3600


def business(timezone: str = "Europe/London", hours: dict | None = None, **extra) -> BusinessCalendar:
    spec = {"timezone": timezone, **extra}
    if hours is not None:
        spec["hours"] = hours
    return BusinessCalendar(Calendar.model_validate(spec))


def always(timezone: str, **extra) -> BusinessCalendar:
    return BusinessCalendar(Calendar.model_validate({"timezone": timezone, "24x7": True, **extra}))


def local(zone: str, *fields) -> datetime:
    return datetime(*fields, tzinfo=ZoneInfo(zone))


def london(*fields) -> datetime:
    return local("Europe/London", *fields)


def utc(*fields) -> datetime:
    return datetime(*fields, tzinfo=UTC)


@pytest.fixture
def office():
    """Mon–Fri 09:00–17:00 London with England's bank holidays."""
    return business("Europe/London", NINE_TO_FIVE, holidays=ENGLAND)


# ------------------------------------------------------------------------------- SLA-CASES.md, directly

def test_case_1_friday_afternoon_plus_8_business_hours_is_monday_afternoon(office):
    # Fri 2025-06-06 16:00 BST: Fri 16–17 is 1 h, Mon 09:00 + 7 h = Mon 2025-06-09 16:00 BST = 15:00 UTC.
    assert office.add(london(2025, 6, 6, 16), 8 * HOUR) == utc(2025, 6, 9, 15)


def test_case_2_24x7_across_spring_forward_is_elapsed_time():
    # SLA-CASES #2: Sat 2025-03-29 23:00 CET (22:00 UTC) + 4 h = Sun 04:00 CEST = 02:00 UTC, not 03:00 CEST.
    berlin = always("Europe/Berlin")
    due = berlin.add(local("Europe/Berlin", 2025, 3, 29, 23), 4 * HOUR)
    assert due == utc(2025, 3, 30, 2)
    assert due.astimezone(ZoneInfo("Europe/Berlin")).hour == 4


def test_case_3_berlin_over_the_dst_weekend():
    # SLA-CASES #3: Fri 2025-03-28 16:00 CET: 1 h on Friday, 7 h from Mon 09:00 -> Mon 16:00 CEST = 14:00 UTC.
    berlin = business("Europe/Berlin", NINE_TO_FIVE)
    assert berlin.add(local("Europe/Berlin", 2025, 3, 28, 16), 8 * HOUR) == utc(2025, 3, 31, 14)


def test_case_4_good_friday_and_easter_monday_are_off(office):
    # SLA-CASES #4: Thu 2025-04-17 16:00 BST: 1 h Thursday; Fri 18 (Good Friday), the weekend and Mon 21
    # (Easter Monday) closed; Tue 2025-04-22 09:00 + 7 h = 16:00 BST = 15:00 UTC.
    assert office.add(london(2025, 4, 17, 16), 8 * HOUR) == utc(2025, 4, 22, 15)


def test_case_10_lunch_break_is_not_counted():
    # SLA-CASES #10: Wed 2025-06-11 11:30 CEST: 30 min to 12:00, lunch, 30 min from 13:00
    # -> 13:30 CEST = 11:30 UTC.
    amsterdam = business("Europe/Amsterdam", WITH_LUNCH)
    assert amsterdam.add(local("Europe/Amsterdam", 2025, 6, 11, 11, 30), HOUR) == utc(2025, 6, 11, 11, 30)


# ------------------------------------------------------------------ building blocks for cases 5–9 and 11

def test_case_5_building_blocks_24x7_pause():
    # 24x7 (UTC), opened 08:00, 2 h target, paused 09:00–10:05: 1 h ran before the pause, 1 h remains
    # from the resume at 10:05 -> 11:05.
    clock_24x7 = always("UTC")
    ran = clock_24x7.business_seconds(utc(2025, 6, 10, 8), utc(2025, 6, 10, 9))
    assert ran == HOUR
    assert clock_24x7.add(utc(2025, 6, 10, 10, 5), 2 * HOUR - ran) == utc(2025, 6, 10, 11, 5)


def test_case_6_building_blocks_business_hours_pause(office):
    # Opened Fri 2025-06-06 16:00 BST, 4 business hours, paused Fri 16:30 -> Mon 10:00.
    ran = office.business_seconds(london(2025, 6, 6, 16), london(2025, 6, 6, 16, 30))
    assert ran == 30 * 60
    # Open time inside the pause window (excluded from the clock): Fri 16:30–17:00 + Mon 09:00–10:00 = 1.5 h.
    assert office.business_seconds(london(2025, 6, 6, 16, 30), london(2025, 6, 9, 10)) == 1.5 * HOUR
    # 3.5 h remain from Mon 10:00 -> Mon 13:30 BST = 12:30 UTC (SLA-CASES #6).
    assert office.add(london(2025, 6, 9, 10), 4 * HOUR - ran) == utc(2025, 6, 9, 12, 30)


def test_case_7_building_blocks_priority_change_carries_elapsed_time(office):
    # Opened Tue 2025-06-10 10:00 BST as Medium (3 h); at 11:00 raised to High (2 h): 1 h has run, 1 h
    # remains from 11:00 -> 12:00 BST = 11:00 UTC.
    ran = office.business_seconds(london(2025, 6, 10, 10), london(2025, 6, 10, 11))
    assert ran == HOUR
    assert office.add(london(2025, 6, 10, 11), 2 * HOUR - ran) == utc(2025, 6, 10, 11)


def test_case_8_building_blocks_warning_instants(office):
    # Opened Mon 2025-06-09 09:00 BST, 8 h: 50 % at 13:00 BST, 75 % at 15:00 BST, breach at 17:00 BST (the
    # closing, not Tue 09:00) = 12:00, 14:00, 16:00 UTC.
    opened = london(2025, 6, 9, 9)
    assert office.add(opened, 0.50 * 8 * HOUR) == utc(2025, 6, 9, 12)
    assert office.add(opened, 0.75 * 8 * HOUR) == utc(2025, 6, 9, 14)
    assert office.add(opened, 8 * HOUR) == utc(2025, 6, 9, 16)


def test_case_9_building_blocks_fractional_seconds(office):
    # 99.995 % of 8 h = 28 798.56 s. Opened Fri 2025-06-06 16:00 BST, resolved Mon 15:59:58.56 BST:
    # 3 600 s on Friday + 6 h 59 min 58.56 s = 25 198.56 s on Monday = 28 798.56 s, still under 28 800.
    opened, resolved = london(2025, 6, 6, 16), london(2025, 6, 9, 15, 59, 58, 560000)
    elapsed = office.business_seconds(opened, resolved)
    assert elapsed == pytest.approx(28798.56, abs=1e-6)
    assert elapsed < 8 * HOUR
    assert office.add(opened, 28798.56) == resolved
    assert office.add(opened, 8 * HOUR) == utc(2025, 6, 9, 15)  # due Mon 16:00 BST, after the resolution


def test_case_11_building_blocks_created_paused(office):
    # Created paused Mon 2025-06-09 10:00 BST, leaves the paused state at 11:00; nothing ran while paused,
    # and a 2 h target counts from 11:00 -> 13:00 BST = 12:00 UTC.
    created, resumed = london(2025, 6, 9, 10), london(2025, 6, 9, 11)
    assert office.business_seconds(created, created) == 0
    assert office.business_seconds(resumed, created) == 0  # end before start
    assert office.add(resumed, 2 * HOUR) == utc(2025, 6, 9, 12)


# ------------------------------------------------------------------------------- opening and closing

def test_start_before_opening_counts_from_the_opening(office):
    # Mon 2025-06-09 07:00 BST + 1 h -> 09:00 + 1 h = 10:00 BST = 09:00 UTC.
    assert office.add(london(2025, 6, 9, 7), HOUR) == utc(2025, 6, 9, 9)


def test_start_after_closing_counts_from_the_next_morning(office):
    # Mon 18:00 BST + 1 h -> Tue 2025-06-10 10:00 BST = 09:00 UTC.
    assert office.add(london(2025, 6, 9, 18), HOUR) == utc(2025, 6, 10, 9)


def test_start_at_the_weekend_counts_from_monday(office):
    # Sat 2025-06-07 12:00 BST + 1 h -> Mon 2025-06-09 10:00 BST = 09:00 UTC; Sat 12:00 -> Mon 10:00 holds 1 h.
    assert office.add(london(2025, 6, 7, 12), HOUR) == utc(2025, 6, 9, 9)
    assert office.business_seconds(london(2025, 6, 7, 12), london(2025, 6, 9, 10)) == HOUR


def test_adding_exactly_to_the_closing_returns_the_closing(office):
    # Mon 2025-06-09 16:00 BST + 1 h = 17:00 BST = 16:00 UTC, not Tue 09:00.
    assert office.add(london(2025, 6, 9, 16), HOUR) == utc(2025, 6, 9, 16)


def test_adding_nothing(office):
    # Open: the start itself (Mon 12:00 BST = 11:00 UTC). Closed or at the closing: the next opening,
    # Tue 2025-06-10 09:00 BST = 08:00 UTC.
    assert office.add(london(2025, 6, 9, 12), 0) == utc(2025, 6, 9, 11)
    assert office.add(london(2025, 6, 9, 17), 0) == utc(2025, 6, 10, 8)
    assert office.add(london(2025, 6, 9, 20), 0) == utc(2025, 6, 10, 8)


def test_intervals_are_half_open(office):
    assert office.is_open(london(2025, 6, 9, 9))
    assert office.is_open(london(2025, 6, 9, 16, 59, 59))
    assert not office.is_open(london(2025, 6, 9, 8, 59, 59))
    assert not office.is_open(london(2025, 6, 9, 17))
    assert not office.is_open(london(2025, 6, 7, 12))  # Saturday


def test_next_opening(office):
    assert office.next_opening(london(2025, 6, 9, 12)) == utc(2025, 6, 9, 11)  # open: itself
    assert office.next_opening(london(2025, 6, 6, 17)) == utc(2025, 6, 9, 8)  # Fri close -> Mon 09:00 BST
    assert office.next_opening(london(2025, 4, 17, 17)) == utc(2025, 4, 22, 8)  # over Easter -> Tue 09:00 BST


def test_open_intervals_are_clipped_and_in_utc(office):
    # Fri 2025-06-06 12:00 BST -> Mon 2025-06-09 12:00 BST: Fri 12:00–17:00 BST and Mon 09:00–12:00 BST.
    intervals = list(office.open_intervals(london(2025, 6, 6, 12), london(2025, 6, 9, 12)))
    assert intervals == [(utc(2025, 6, 6, 11), utc(2025, 6, 6, 16)), (utc(2025, 6, 9, 8), utc(2025, 6, 9, 11))]
    assert all(a.tzinfo is UTC and b.tzinfo is UTC for a, b in intervals)
    assert list(office.open_intervals(london(2025, 6, 9, 12), london(2025, 6, 9, 12))) == []


def test_lunch_break():
    amsterdam = business("Europe/Amsterdam", WITH_LUNCH)
    wednesday = (2025, 6, 11)
    # 09:00–12:00 and 13:00–17:00 CEST = 07:00–10:00 and 11:00–15:00 UTC.
    day_long = (local("Europe/Amsterdam", *wednesday), local("Europe/Amsterdam", 2025, 6, 12))
    assert list(amsterdam.open_intervals(*day_long)) == [(utc(*wednesday, 7), utc(*wednesday, 10)),
                                                         (utc(*wednesday, 11), utc(*wednesday, 15))]
    # 11:00 -> 14:00 holds 11–12 and 13–14: 2 h.
    assert amsterdam.business_seconds(local("Europe/Amsterdam", *wednesday, 11),
                                      local("Europe/Amsterdam", *wednesday, 14)) == 2 * HOUR
    assert not amsterdam.is_open(local("Europe/Amsterdam", *wednesday, 12, 30))
    assert amsterdam.next_opening(local("Europe/Amsterdam", *wednesday, 12, 30)) == utc(*wednesday, 11)
    # From 12:15 (lunch) + 30 min -> 13:30 CEST = 11:30 UTC.
    assert amsterdam.add(local("Europe/Amsterdam", *wednesday, 12, 15), 30 * 60) == utc(*wednesday, 11, 30)
    # Exactly the morning's 3 h from 09:00 ends at the 12:00 closing (10:00 UTC), not at 13:00.
    assert amsterdam.add(local("Europe/Amsterdam", *wednesday, 9), 3 * HOUR) == utc(*wednesday, 10)


def test_saturday_hours():
    # Pune: Mon–Fri 09:30–18:30, Sat 10:00–14:00 IST. Fri 2025-06-13 17:30 + 6 h: 1 h Friday, 4 h Saturday,
    # 1 h from Mon 09:30 -> Mon 2025-06-16 10:30 IST = 05:00 UTC.
    pune = business("Asia/Kolkata", {**{d: ["09:30-18:30"] for d in ("mon", "tue", "wed", "thu", "fri")},
                                     "sat": ["10:00-14:00"]})
    assert pune.add(local("Asia/Kolkata", 2025, 6, 13, 17, 30), 6 * HOUR) == utc(2025, 6, 16, 5)
    assert pune.is_open(local("Asia/Kolkata", 2025, 6, 14, 12))
    assert not pune.is_open(local("Asia/Kolkata", 2025, 6, 15, 12))  # Sunday
    # The whole weekend holds Saturday's 4 h.
    weekend = (local("Asia/Kolkata", 2025, 6, 14), local("Asia/Kolkata", 2025, 6, 16))
    assert pune.business_seconds(*weekend) == 4 * HOUR


# ------------------------------------------------------------------------------- holidays and closures

def test_england_easter_holidays(office):
    assert not office.is_open(london(2025, 4, 18, 12))  # Good Friday
    assert not office.is_open(london(2025, 4, 21, 12))  # Easter Monday
    assert office.is_open(london(2025, 4, 22, 12))
    # Thu 2025-04-17 00:00 -> Wed 2025-04-23 00:00 BST: Thursday 8 h + Tuesday 8 h.
    assert office.business_seconds(london(2025, 4, 17), london(2025, 4, 23)) == 16 * HOUR


def test_scottish_only_holiday_does_not_close_england(office):
    # Mon 2025-08-04 is Scotland's Summer Bank Holiday; England's is Mon 2025-08-25.
    scotland = business("Europe/London", NINE_TO_FIVE, holidays=SCOTLAND)
    assert office.is_open(london(2025, 8, 4, 10))
    assert not scotland.is_open(london(2025, 8, 4, 10))
    assert not office.is_open(london(2025, 8, 25, 10))
    assert scotland.is_open(london(2025, 8, 25, 10))


def test_closure_closes_the_whole_day():
    offices = business("Europe/London", NINE_TO_FIVE, closures=[{"date": "2025-06-11", "reason": "office move"}])
    assert not offices.is_open(london(2025, 6, 11, 12))
    assert offices.business_seconds(london(2025, 6, 11), london(2025, 6, 12)) == 0
    # Tue 2025-06-10 16:00 BST + 2 h: 1 h Tuesday, Wednesday closed, Thu 09:00 + 1 h = 10:00 BST = 09:00 UTC.
    assert offices.add(london(2025, 6, 10, 16), 2 * HOUR) == utc(2025, 6, 12, 9)


def test_a_year_of_england_office_hours(office):
    # 2025: 261 weekdays (52 weeks + Wed 31 Dec); bank holidays on weekdays: 1 Jan, 18 Apr, 21 Apr, 5 May,
    # 26 May, 25 Aug, 25 Dec, 26 Dec = 8. 253 days x 8 h = 2 024 h = 7 286 400 s.
    assert office.business_seconds(london(2025, 1, 1), london(2026, 1, 1)) == 7_286_400


def test_24x7_ignores_holidays_and_closures():
    # Decision: a 24x7 calendar is always open; holidays and closures listed on it do not apply.
    round_the_clock = always("Europe/London", holidays=ENGLAND, closures=[{"date": "2025-04-22"}])
    assert round_the_clock.is_open(london(2025, 4, 18, 12))  # Good Friday
    assert round_the_clock.is_open(london(2025, 4, 22, 3))  # the closure
    assert round_the_clock.business_seconds(london(2025, 4, 18), london(2025, 4, 19)) == 24 * HOUR
    assert round_the_clock.next_opening(london(2025, 4, 18, 3)) == utc(2025, 4, 18, 2)  # itself
    # Sat 2025-03-29 23:00 GMT + 3 h across the skipped hour = 02:00 UTC (03:00 BST).
    assert round_the_clock.add(london(2025, 3, 29, 23), 3 * HOUR) == utc(2025, 3, 30, 2)


# ------------------------------------------------------------------------------- DST changes

@pytest.mark.parametrize("zone, short_day, long_day", [
    ("Europe/London", (2025, 3, 30), (2025, 10, 26)),
    ("America/New_York", (2025, 3, 9), (2025, 11, 2)),
])
def test_all_day_hours_count_23_and_25_hour_days(zone, short_day, long_day):
    # A 00:00–24:00 working day on the day the clocks go forward lasts 23 h; when they go back, 25 h.
    cal = business(zone, ALL_DAY_EVERY_DAY)
    next_day = lambda d: (datetime(*d) + timedelta(days=1)).timetuple()[:3]
    assert cal.business_seconds(local(zone, *short_day), local(zone, *next_day(short_day))) == 23 * HOUR
    assert cal.business_seconds(local(zone, *long_day), local(zone, *next_day(long_day))) == 25 * HOUR


def test_all_day_hours_in_london_are_elapsed_time():
    cal = business("Europe/London", ALL_DAY_EVERY_DAY)
    # Sat 2025-03-29 00:00 GMT -> Tue 2025-04-01 00:00 BST: Sat 24 h + Sun 23 h + Mon 24 h = 71 h, as one
    # merged interval from 2025-03-29 00:00 UTC to 2025-03-31 23:00 UTC (Tue 00:00 BST).
    assert list(cal.open_intervals(london(2025, 3, 29), london(2025, 4, 1))) \
        == [(utc(2025, 3, 29, 0), utc(2025, 3, 31, 23))]
    assert cal.business_seconds(london(2025, 3, 29), london(2025, 4, 1)) == 71 * HOUR
    # Sat 23:00 GMT + 4 h = Sun 03:00 UTC (04:00 BST), the same answer as a 24x7 calendar.
    assert cal.add(london(2025, 3, 29, 23), 4 * HOUR) == utc(2025, 3, 30, 3)
    # The close of Sunday 30 March is Mon 00:00 BST = Sun 23:00 UTC.
    assert cal.end_of_business_days(london(2025, 3, 30, 10), 1) == utc(2025, 3, 30, 23)


@pytest.mark.parametrize("zone, days", [
    ("Europe/London", [(2025, 3, 30), (2025, 10, 26)]),
    ("America/New_York", [(2025, 3, 9), (2025, 11, 2)]),
])
def test_nine_to_five_on_dst_days_is_eight_hours(zone, days):
    # 09:00–17:00 local is untouched by a change at 01:00/02:00: still 8 h of open time on the day.
    cal = business(zone, NINE_TO_FIVE_EVERY_DAY)
    for day in days:
        following = (datetime(*day) + timedelta(days=1)).timetuple()[:3]
        assert cal.business_seconds(local(zone, *day), local(zone, *following)) == 8 * HOUR


def test_nine_to_five_opens_at_local_nine_after_the_change():
    # Sun 2025-03-30 09:00 BST = 08:00 UTC; Sun 2025-10-26 09:00 GMT = 09:00 UTC.
    cal = business("Europe/London", NINE_TO_FIVE_EVERY_DAY)
    assert cal.next_opening(utc(2025, 3, 30, 5)) == utc(2025, 3, 30, 8)
    assert cal.next_opening(utc(2025, 10, 26, 5)) == utc(2025, 10, 26, 9)


def test_weekday_hours_across_dst_weekends():
    # London: Fri 2025-03-28 16:00 GMT (16:00 UTC) + 2 h: 1 h Friday, Mon 09:00 + 1 h = 10:00 BST = 09:00 UTC.
    assert business("Europe/London", NINE_TO_FIVE).add(london(2025, 3, 28, 16), 2 * HOUR) == utc(2025, 3, 31, 9)
    # New York: Fri 2025-10-31 16:00 EDT (20:00 UTC) + 2 h -> Mon 2025-11-03 10:00 EST = 15:00 UTC.
    new_york = business("America/New_York", NINE_TO_FIVE)
    assert new_york.add(local("America/New_York", 2025, 10, 31, 16), 2 * HOUR) == utc(2025, 11, 3, 15)
    # New York: Fri 2025-03-07 16:00 EST (21:00 UTC) + 2 h -> Mon 2025-03-10 10:00 EDT = 14:00 UTC.
    assert new_york.add(local("America/New_York", 2025, 3, 7, 16), 2 * HOUR) == utc(2025, 3, 10, 14)


def second_sunday_of_march(year: int) -> date:
    eighth = date(year, 3, 8)
    return eighth + timedelta(days=(6 - eighth.weekday()) % 7)


def last_sunday_of_march(year: int) -> date:
    last = date(year, 3, 31)
    return last - timedelta(days=(last.weekday() - 6) % 7)


def next_spring_forward(sunday_of, zone: str) -> date:
    """The next spring-forward Sunday after today, whatever today is."""
    year = today(zone).year
    return sunday_of(year) if sunday_of(year) > today(zone) else sunday_of(year + 1)


def at_wall(zone: str, day: date, hour: int, minute: int = 0) -> datetime:
    """A local wall time read as zoneinfo reads it (fold=0), in UTC."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def test_an_interval_opening_in_the_skipped_hour_opens_as_zoneinfo_and_biz_read_it():
    # Los Angeles skips 02:00-03:00 PST on the second Sunday of March. 02:30 does not exist: read with the
    # offset before the jump (-08:00) it is 10:30 UTC, 03:30 PDT (zendesk/biz opens "02:30-05:00" at 03:30
    # too). Closes 05:00 PDT = 12:00 UTC: 1.5 h that day. A week later, 02:30 PDT = 09:30 UTC: 2.5 h.
    zone = "America/Los_Angeles"
    sunday = next_spring_forward(second_sunday_of_march, zone)
    cal = business(zone, {"sun": ["02:30-05:00"]})
    jump = datetime.combine(sunday, time(10), UTC)  # 02:00 PST = 03:00 PDT
    assert [(jump + timedelta(seconds=s)).astimezone(ZoneInfo(zone)).hour for s in (-1, 0)] == [1, 3]
    assert cal.next_opening(jump - timedelta(hours=2)) == jump + timedelta(minutes=30)
    day = lambda d: (datetime.combine(d, time(8), UTC), datetime.combine(d + timedelta(days=1), time(8), UTC))
    assert cal.business_seconds(*day(sunday)) == 1.5 * HOUR
    assert cal.business_seconds(*day(sunday + timedelta(days=7))) == 2.5 * HOUR
    # The importers read a skipped time the same way: the calendar opens when an imported 02:30 says.
    pattern = re.compile(r"(\d{2})-(\d{2})-(\d{4}) (\d{2}):(\d{2})()")
    imported = day_first_time(f"{sunday:%d-%m-%Y} 02:30", pattern, {""}, ZoneInfo(zone), {}, "opened")
    assert imported == cal.next_opening(jump - timedelta(hours=2)) == at_wall(zone, sunday, 2, 30)


def test_intervals_in_london_s_skipped_hour_move_with_it():
    # London skips 01:00-02:00 GMT on the last Sunday of March (the jump is 01:00 UTC). "01:30-03:00" opens
    # at 01:30 GMT = 01:30 UTC = 02:30 BST and closes 03:00 BST = 02:00 UTC: 30 min. "01:10-01:50" becomes
    # 02:10-02:50 BST: 40 min, as on any Sunday. "01:30-02:15" would open after it closes: no time.
    sunday = next_spring_forward(last_sunday_of_march, "Europe/London")
    span = (datetime.combine(sunday, time(0), UTC), datetime.combine(sunday, time(6), UTC))
    gap_start = business("Europe/London", {"sun": ["01:30-03:00"]})
    assert list(gap_start.open_intervals(*span)) == [(span[0] + timedelta(hours=1.5), span[0] + timedelta(hours=2))]
    inside = business("Europe/London", {"sun": ["01:10-01:50"]})
    assert list(inside.open_intervals(*span)) == [(span[0] + timedelta(minutes=70), span[0] + timedelta(minutes=110))]
    assert business("Europe/London", {"sun": ["01:30-02:15"]}).business_seconds(*span) == 0


def test_interval_starting_in_the_repeated_hour_uses_the_first_occurrence():
    # London repeats 01:00–02:00 on Sun 2025-10-26. 01:30 first happens at 01:30 BST = 00:30 UTC; the
    # 03:00 GMT close is 03:00 UTC: 2.5 h.
    cal = business("Europe/London", {"sun": ["01:30-03:00"]})
    assert cal.next_opening(utc(2025, 10, 26, 0)) == utc(2025, 10, 26, 0, 30)
    assert cal.business_seconds(london(2025, 10, 26), london(2025, 10, 27)) == 2.5 * HOUR


def test_midnight_that_does_not_exist():
    # Santiago: Sun 2024-09-08 00:00 -04 does not exist (clocks go to 01:00 -03 = 04:00 UTC).
    # Saturday 00:00–24:00 runs from 2024-09-07 04:00 UTC to that jump, 2024-09-08 04:00 UTC: 24 h.
    # Sunday runs from the jump to Mon 00:00 -03 = 2024-09-09 03:00 UTC: 23 h.
    saturday = business("America/Santiago", {"sat": ["00:00-24:00"]})
    sunday = business("America/Santiago", {"sun": ["00:00-24:00"]})
    span = (utc(2024, 9, 6), utc(2024, 9, 11))
    assert list(saturday.open_intervals(*span)) == [(utc(2024, 9, 7, 4), utc(2024, 9, 8, 4))]
    assert list(sunday.open_intervals(*span)) == [(utc(2024, 9, 8, 4), utc(2024, 9, 9, 3))]


# ------------------------------------------------------------------------------- business days

def test_end_of_business_days_counts_today_while_it_is_open(office):
    # Mon 2025-06-09: from 10:00 or 08:00, day 1 is Monday, closing 17:00 BST = 16:00 UTC.
    assert office.end_of_business_days(london(2025, 6, 9, 10), 1) == utc(2025, 6, 9, 16)
    assert office.end_of_business_days(london(2025, 6, 9, 8), 1) == utc(2025, 6, 9, 16)
    # At or after the closing, day 1 is Tuesday: 17:00 BST = 16:00 UTC.
    assert office.end_of_business_days(london(2025, 6, 9, 17), 1) == utc(2025, 6, 10, 16)
    assert office.end_of_business_days(london(2025, 6, 9, 18), 1) == utc(2025, 6, 10, 16)


def test_end_of_business_days_over_a_weekend(office):
    # Fri 2025-06-06 10:00, 2 days: Friday, Monday -> Mon 17:00 BST = 16:00 UTC.
    assert office.end_of_business_days(london(2025, 6, 6, 10), 2) == utc(2025, 6, 9, 16)
    # Sat 2025-06-07, 1 day: Monday.
    assert office.end_of_business_days(london(2025, 6, 7, 10), 1) == utc(2025, 6, 9, 16)


def test_end_of_business_days_over_a_holiday(office):
    # Thu 2025-04-17 10:00: day 1 Thursday, Good Friday, weekend and Easter Monday skipped, day 2 Tue 22,
    # day 3 Wed 23; 17:00 BST = 16:00 UTC.
    assert office.end_of_business_days(london(2025, 4, 17, 10), 2) == utc(2025, 4, 22, 16)
    assert office.end_of_business_days(london(2025, 4, 17, 10), 3) == utc(2025, 4, 23, 16)


def test_end_of_business_days_with_lunch_and_24x7():
    # Opened during lunch (Wed 2025-06-11 12:30 CEST): the day still counts, closing 17:00 CEST = 15:00 UTC.
    amsterdam = business("Europe/Amsterdam", WITH_LUNCH)
    at_lunch = local("Europe/Amsterdam", 2025, 6, 11, 12, 30)
    assert amsterdam.end_of_business_days(at_lunch, 1) == utc(2025, 6, 11, 15)
    # 24x7 Berlin, Sat 2025-03-29 23:00 CET: day 1 ends Sun 00:00 CET = Sat 23:00 UTC; day 2 (Sunday, 23 h)
    # ends Mon 00:00 CEST = Sun 22:00 UTC.
    berlin = always("Europe/Berlin")
    assert berlin.end_of_business_days(local("Europe/Berlin", 2025, 3, 29, 23), 1) == utc(2025, 3, 29, 23)
    assert berlin.end_of_business_days(local("Europe/Berlin", 2025, 3, 29, 23), 2) == utc(2025, 3, 30, 22)


def test_end_of_business_days_needs_at_least_one(office):
    with pytest.raises(ValueError):
        office.end_of_business_days(london(2025, 6, 9, 10), 0)


# ------------------------------------------------------------------------------- quiet hours

def test_quiet_hours_across_midnight():
    cal = business("Europe/London", NINE_TO_FIVE, quiet_hours="21:00-07:00")
    assert cal.in_quiet_hours(london(2025, 6, 10, 23))
    assert cal.in_quiet_hours(london(2025, 6, 11, 6, 59))
    assert not cal.in_quiet_hours(london(2025, 6, 11, 7))
    assert not cal.in_quiet_hours(london(2025, 6, 10, 20, 59))
    assert cal.in_quiet_hours(london(2025, 6, 10, 21))
    # Both end Wed 2025-06-11 07:00 BST = 06:00 UTC; outside quiet hours, the instant itself in UTC.
    assert cal.quiet_hours_end(london(2025, 6, 10, 23)) == utc(2025, 6, 11, 6)
    assert cal.quiet_hours_end(london(2025, 6, 11, 6, 59)) == utc(2025, 6, 11, 6)
    end = cal.quiet_hours_end(london(2025, 6, 11, 12))
    assert end == utc(2025, 6, 11, 11) and end.tzinfo is UTC


def test_quiet_hours_over_a_dst_change():
    cal = business("Europe/London", NINE_TO_FIVE, quiet_hours="21:00-07:00")
    # Sat 2025-03-29 23:00 GMT: quiet until Sun 07:00 BST = 06:00 UTC (a 7-hour wait, not 8).
    assert cal.quiet_hours_end(london(2025, 3, 29, 23)) == utc(2025, 3, 30, 6)
    # Sat 2025-10-25 23:00 BST: quiet until Sun 07:00 GMT = 07:00 UTC.
    assert cal.quiet_hours_end(london(2025, 10, 25, 23)) == utc(2025, 10, 26, 7)


def test_quiet_hours_ending_in_the_repeated_hour():
    # 21:00–01:30 on Sun 2025-10-26: 01:30 happens at 00:30 UTC (BST) and again at 01:30 UTC (GMT).
    cal = business("Europe/London", NINE_TO_FIVE, quiet_hours="21:00-01:30")
    assert cal.quiet_hours_end(utc(2025, 10, 26, 0, 15)) == utc(2025, 10, 26, 0, 30)  # 01:15 BST
    # 01:15 GMT (the second 01:15) is still before a wall-clock 01:30: quiet until the second 01:30.
    assert cal.quiet_hours_end(utc(2025, 10, 26, 1, 15)) == utc(2025, 10, 26, 1, 30)


def test_quiet_hours_within_a_day_and_until_midnight():
    midday = business("Europe/London", NINE_TO_FIVE, quiet_hours="12:00-13:00")
    assert midday.in_quiet_hours(london(2025, 6, 10, 12, 30))
    assert not midday.in_quiet_hours(london(2025, 6, 10, 13))
    assert midday.quiet_hours_end(london(2025, 6, 10, 12, 30)) == utc(2025, 6, 10, 12)  # 13:00 BST
    late = business("Europe/London", NINE_TO_FIVE, quiet_hours="22:00-24:00")
    assert late.in_quiet_hours(london(2025, 6, 10, 23, 59, 30))
    assert not late.in_quiet_hours(london(2025, 6, 11, 0, 0))
    assert late.quiet_hours_end(london(2025, 6, 10, 23)) == utc(2025, 6, 10, 23)  # Wed 00:00 BST


def test_no_quiet_hours(office):
    assert not office.in_quiet_hours(london(2025, 6, 10, 3))
    assert office.quiet_hours_end(london(2025, 6, 10, 3)) == utc(2025, 6, 10, 2)


# ------------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("hours", [{}, {"mon": []}])
def test_calendar_without_hours_refuses_to_search(hours):
    cal = business("Europe/London", hours)
    with pytest.raises(ValueError):
        cal.add(london(2025, 6, 9, 10), HOUR)
    with pytest.raises(ValueError):
        cal.add(london(2025, 6, 9, 10), 0)
    with pytest.raises(ValueError):
        cal.next_opening(london(2025, 6, 9, 10))
    with pytest.raises(ValueError):
        cal.end_of_business_days(london(2025, 6, 9, 10), 1)
    # Bounded questions still have an answer: no open time.
    assert not cal.is_open(london(2025, 6, 9, 10))
    assert cal.business_seconds(london(2025, 1, 1), london(2026, 1, 1)) == 0
    assert list(cal.open_intervals(london(2025, 1, 1), london(2026, 1, 1))) == []


def test_naive_datetimes_and_negative_durations_are_refused(office):
    with pytest.raises(ValueError):
        office.is_open(datetime(2025, 6, 9, 10))
    with pytest.raises(ValueError):
        office.open_intervals(datetime(2025, 6, 9, 10), london(2025, 6, 10))
    with pytest.raises(ValueError):
        office.add(london(2025, 6, 9, 10), -1)


# ------------------------------------------------------------------------------- properties

PROPERTY_CALENDARS = {
    "london office": lambda: business("Europe/London", NINE_TO_FIVE, holidays=ENGLAND,
                                      closures=[{"date": "2025-06-11"}]),
    "amsterdam lunch": lambda: business("Europe/Amsterdam", WITH_LUNCH, holidays=[{"country": "NL"}]),
    "new york all day": lambda: business("America/New_York", ALL_DAY_EVERY_DAY),
    "london gap hours": lambda: business("Europe/London", {"sun": ["01:30-03:00"], "wed": ["00:00-24:00"]}),
    "london vanishing hours": lambda: business("Europe/London", {"sun": ["01:10-01:50"]}),
    "santiago": lambda: business("America/Santiago", {"sat": ["20:00-24:00"], "sun": ["00:00-03:00"],
                                                      "mon": ["09:00-17:00"]}),
    "pune": lambda: business("Asia/Kolkata", {"fri": ["09:30-18:30"], "sat": ["10:00-14:00"]}),
    "berlin 24x7": lambda: always("Europe/Berlin"),
}


def random_instants(rng: random.Random, count: int) -> list[datetime]:
    # Whole seconds between 2024-08-01 and 2026-01-01 UTC, so every sum below is an exact float.
    low, high = int(utc(2024, 8, 1).timestamp()), int(utc(2026, 1, 1).timestamp())
    return [datetime.fromtimestamp(rng.randrange(low, high), UTC) for _ in range(count)]


@pytest.mark.parametrize("name", PROPERTY_CALENDARS)
def test_business_seconds_is_additive_and_add_inverts_it(name):
    cal = PROPERTY_CALENDARS[name]()
    rng = random.Random(20250330)
    for _ in range(300):
        a, b, c = sorted(random_instants(rng, 3))
        assert cal.business_seconds(a, b) + cal.business_seconds(b, c) == cal.business_seconds(a, c)
        spent = cal.business_seconds(a, c)
        landed = cal.add(a, spent)
        if spent == 0:
            assert landed == cal.next_opening(a)
            continue
        # The earliest instant by which `spent` has passed: c itself if open time runs up to c, else the
        # closing before c.
        assert cal.business_seconds(a, landed) == spent
        assert landed <= c
        assert cal.business_seconds(a, landed - timedelta(seconds=1)) < spent
        if cal.is_open(c - timedelta(seconds=1)):
            assert landed == c
        else:
            assert cal.business_seconds(landed, c) == 0


@pytest.mark.parametrize("name", PROPERTY_CALENDARS)
def test_is_open_next_opening_and_open_intervals_agree(name):
    cal = PROPERTY_CALENDARS[name]()
    rng = random.Random(20251026)
    for at in random_instants(rng, 300):
        around = list(cal.open_intervals(at - timedelta(days=3), at + timedelta(days=3)))
        assert cal.is_open(at) == any(a <= at < b for a, b in around)
        assert all(b < following_a for (_, b), (following_a, _) in zip(around, around[1:]))  # merged, ordered
        opening = cal.next_opening(at)
        assert opening >= at and cal.is_open(opening)
        assert cal.business_seconds(at, opening) == 0
        assert (opening == at) == cal.is_open(at)


