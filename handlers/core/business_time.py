"""Business-calendar arithmetic: when a calendar is open, how much open time lies between two instants,
and when a given amount of open time will have passed. Pure functions of the calendar; no I/O.

Working intervals are laid out on local dates in the calendar's own time zone and only then turned into
UTC instants, so days of 23 or 25 hours, skipped hours and repeated hours at a DST change are counted as
they really are. Every datetime taken must be timezone-aware; every datetime returned is in UTC.

Rules worth knowing:

- An interval is half-open, ``[start, end)``: open at 09:00:00, closed at 17:00:00. An interval ending
  at 23:59 (what the config makes of "24:00") ends at the next local midnight.
- A local time the clocks skip at spring-forward is read as zoneinfo reads it (fold=0, the offset before
  the jump): 02:30 on the morning Los Angeles skips 02:00-03:00 is 03:30 PDT. See ``_to_utc``.
- A holiday (from the ``holidays`` package, by country and subdivision) or a closure closes the whole
  local day.
- A 24x7 calendar is always open: it is plain elapsed time, and holidays and closures do not apply to it.
  Its "working day" (for ``end_of_business_days``) is the local calendar day, from midnight to midnight.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

from handlers.core.config_catalogue import WEEKDAYS, Calendar

ONE_DAY = timedelta(days=1)
MIDNIGHT = time(0, 0)
UNTIL_MIDNIGHT = time(23, 59)  # how the config spells an interval end of "24:00"
MAX_IDLE_YEARS = 3
MAX_IDLE_DAYS = MAX_IDLE_YEARS * 366

Span = tuple[datetime, datetime]


class BusinessCalendar:
    def __init__(self, calendar: Calendar):
        self.calendar = calendar
        self.zone = ZoneInfo(calendar.timezone)
        self.always_open = calendar.always_open
        # Per weekday (0 = Monday), the local (start, end) times in order; end None means the next midnight.
        self._hours: list[list[tuple[time, time | None]]] = [
            sorted((i.start, None if i.end == UNTIL_MIDNIGHT else i.end) for i in calendar.hours.get(day, []))
            for day in WEEKDAYS]
        self._closures = {c.date for c in calendar.closures}
        self._holidays_by_year: dict[int, frozenset[date]] = {}
        # Local date -> that day's open intervals in UTC. A plain dict: a bot asks about a few thousand days
        # at most, and an lru_cache on a method would keep every instance alive.
        self._intervals_by_day: dict[date, tuple[Span, ...]] = {}

    # ------------------------------------------------------------------------------------- public

    def is_open(self, at: datetime) -> bool:
        at = _utc(at)
        if self.always_open:
            return True
        today = self._local_date(at)
        # Yesterday's hours cannot reach past today's midnight, but look anyway: it costs nothing.
        return any(a <= at < b for day in (today - ONE_DAY, today) for a, b in self._day_intervals(day))

    def open_intervals(self, start: datetime, end: datetime) -> Iterator[Span]:
        """The UTC instants ``[a, b)`` when the calendar is open, clipped to ``[start, end)``, in order,
        merged where one ends as the next begins."""
        start, end = _utc(start), _utc(end)  # checked now, not when the iterator is first read
        if end <= start:
            return iter(())
        if self.always_open:
            return iter(((start, end),))
        return self._merged_intervals(start, end)

    def business_seconds(self, start: datetime, end: datetime) -> float:
        """Open time between two instants, in seconds; 0 if end <= start."""
        return sum((b - a for a, b in self.open_intervals(start, end)), timedelta()).total_seconds()

    def add(self, start: datetime, seconds: float) -> datetime:
        """The instant at which ``seconds`` of open time have passed since ``start``.

        Counting begins at the next opening if ``start`` is outside hours, so ``add(start, 0)`` is ``start``
        itself when open, else the next opening. Landing exactly on a closing time returns that closing
        instant, not the next opening. Raises ValueError if the calendar has no open time for 3 years.
        """
        if seconds < 0:
            raise ValueError(f"cannot add a negative amount of business time ({seconds} s)")
        start = _utc(start)
        if self.always_open:
            return start + timedelta(seconds=seconds)
        remaining = timedelta(seconds=seconds)
        for a, b in self._intervals_from(start):
            if remaining <= b - a:
                return a + remaining
            remaining -= b - a
        raise AssertionError("unreachable: _intervals_from never runs dry")

    def end_of_business_days(self, start: datetime, days: int) -> datetime:
        """"N business days, by end of day": the close of the Nth working day.

        A working day is a local date with some open time (so not a weekend without hours, a holiday or a
        closure). The day of ``start`` counts as day 1 only if it is a working day and ``start`` is before
        that day's last closing time; otherwise day 1 is the next working day. The answer is the last
        closing time of day N (the end of its last interval, lunch breaks and all). For a 24x7 calendar
        every local date is a working day that closes at the next local midnight.
        """
        if days < 1:
            raise ValueError(f"business days must be at least 1, not {days}")
        start = _utc(start)
        day = self._local_date(start)
        idle_days = 0
        while idle_days <= MAX_IDLE_DAYS:
            intervals = self._day_intervals(day)
            if intervals and intervals[-1][1] > start:
                days -= 1
                if days == 0:
                    return intervals[-1][1]
                idle_days = 0
            else:
                idle_days += 1
            day += ONE_DAY
        raise _no_open_time()

    def closed_on(self, day: date) -> bool:
        """Whether a holiday or a closure closes this local date (never on a 24x7 calendar)."""
        return not self.always_open and (day in self._closures or day in self._holidays(day.year))

    def next_opening(self, at: datetime) -> datetime:
        """``at`` itself if open, else the next instant the calendar opens."""
        at = _utc(at)
        if self.always_open:
            return at
        return next(self._intervals_from(at))[0]

    def in_quiet_hours(self, at: datetime) -> bool:
        """Whether the local wall-clock time is within quiet hours (which may pass midnight); False when
        the calendar has none."""
        quiet = self.calendar.quiet_hours
        if quiet is None:
            return False
        now = _utc(at).astimezone(self.zone).time()
        if quiet.end == UNTIL_MIDNIGHT:
            return now >= quiet.start
        if quiet.start < quiet.end:
            return quiet.start <= now < quiet.end
        return now >= quiet.start or now < quiet.end  # passes midnight, e.g. 21:00-07:00

    def quiet_hours_end(self, at: datetime) -> datetime:
        """The instant the current quiet hours end; ``at`` itself (in UTC) if not in quiet hours."""
        at = _utc(at)
        if not self.in_quiet_hours(at):
            return at
        quiet = self.calendar.quiet_hours
        local = at.astimezone(self.zone)
        if quiet.end == UNTIL_MIDNIGHT:
            wall_end = datetime.combine(local.date() + ONE_DAY, MIDNIGHT)
        elif quiet.start < quiet.end or local.time() < quiet.end:
            wall_end = datetime.combine(local.date(), quiet.end)  # ends later today
        else:
            wall_end = datetime.combine(local.date() + ONE_DAY, quiet.end)  # started this evening
        end = self._to_utc(wall_end)
        if end <= at:
            # The end time happens twice tonight (clocks go back) and `at` is already past the first one.
            end = self._to_utc(wall_end, fold=1)
        return max(end, at)

    # ------------------------------------------------------------------------------------- intervals

    def _merged_intervals(self, start: datetime, end: datetime) -> Iterator[Span]:
        pending: Span | None = None
        day, last_day = self._local_date(start) - ONE_DAY, self._local_date(end)
        while day <= last_day:
            for a, b in self._day_intervals(day):
                a, b = max(a, start), min(b, end)
                if a >= b:
                    continue
                if pending and a <= pending[1]:
                    pending = (pending[0], max(pending[1], b))
                else:
                    if pending:
                        yield pending
                    pending = (a, b)
            day += ONE_DAY
        if pending:
            yield pending

    def _intervals_from(self, at: datetime) -> Iterator[Span]:
        """Every open interval that ends after ``at``, the first clipped to begin at ``at``, without end
        and unmerged (merging would never finish on a calendar open round the clock). Raises ValueError
        once 3 years pass without any open time."""
        day = self._local_date(at) - ONE_DAY
        idle_days = 0
        while idle_days <= MAX_IDLE_DAYS:
            intervals = self._day_intervals(day)
            idle_days = 0 if intervals else idle_days + 1
            for a, b in intervals:
                if b > at:
                    yield max(a, at), b
            day += ONE_DAY
        raise _no_open_time()

    def _day_intervals(self, day: date) -> tuple[Span, ...]:
        intervals = self._intervals_by_day.get(day)
        if intervals is None:
            intervals = self._intervals_by_day[day] = self._compute_day_intervals(day)
        return intervals

    def _compute_day_intervals(self, day: date) -> tuple[Span, ...]:
        """One local date's open intervals as UTC instants, in order, merged where they touch."""
        if self.always_open:
            hours = [(MIDNIGHT, None)]
        elif day in self._closures or day in self._holidays(day.year):
            return ()
        else:
            hours = self._hours[day.weekday()]
        intervals: list[Span] = []
        for start, end in hours:
            a = self._to_utc(datetime.combine(day, start))
            b = self._to_utc(datetime.combine(day + ONE_DAY, MIDNIGHT) if end is None
                             else datetime.combine(day, end))
            if a >= b:
                continue  # its start, read past a skipped hour, is not before its end: no time that day
            if intervals and a <= intervals[-1][1]:
                intervals[-1] = (intervals[-1][0], max(intervals[-1][1], b))
            else:
                intervals.append((a, b))
        return tuple(intervals)

    def _holidays(self, year: int) -> frozenset[date]:
        found = self._holidays_by_year.get(year)
        if found is None:
            found = frozenset().union(*(
                holidays.country_holidays(source.country, subdiv=source.subdivision, years=year).keys()
                for source in self.calendar.holidays))
            self._holidays_by_year[year] = found
        return found

    # ------------------------------------------------------------------------------------- local time

    def _local_date(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()

    def _to_utc(self, wall: datetime, fold: int = 0) -> datetime:
        """The UTC instant of a naive local wall-clock time, read as Python's zoneinfo reads it.

        A time that happens twice (clocks go back) is taken at its first occurrence (fold=0) unless told
        otherwise. A time that does not exist (clocks go forward over it) is read with the offset in force
        before the jump, so it lands as far after the jump as it was after the gap's start: 02:30 on the
        morning Los Angeles skips 02:00-03:00 becomes 03:30 PDT. The importers (zoneinfo) and zendesk/biz
        read it so too; one convention, so that a calendar and an imported time never disagree.
        """
        return wall.replace(tzinfo=self.zone, fold=fold).astimezone(UTC)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} has no time zone; business time needs aware datetimes")
    return at.astimezone(UTC)


def _no_open_time() -> ValueError:
    return ValueError(f"the calendar has no open time in {MAX_IDLE_YEARS} years "
                      "(no working hours, or every working day closed)")
