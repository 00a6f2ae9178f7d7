"""The forward schedule of change, the change success rate and the iCalendar feed: changes made and moved
through the real handlers on the real store with the demo configuration, time set by the test. The feed is
read back with icalendar's own parser, as a calendar client would."""
from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from icalendar import Calendar
from sqlalchemy import event as sa_event

from handlers.changes import calendar
from handlers.changes import commands as changes
from handlers.core.context import Actor, Command, UserError
from handlers.router import dispatch
from storage.models import Change

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def actor(ctx, pid: str, zone: str | None = None) -> Actor:
    p = ctx.config.person(pid)
    return Actor(person_id=pid, name=p.name, platform="console", roles=ctx.roles_of(pid),
                 timezone=zone or p.timezone)


def run(ctx, pid: str, text: str):
    reply, outcome = dispatch(ctx, Command(actor(ctx, pid), text))
    assert outcome == "ok", (text, reply)
    return reply


def new(ctx, services: str, start: datetime, end: datetime, title: str = "", risk: str = "low", by: str = "priya",
        **more) -> int:
    """A change submitted through the same path as chat's `change new`; low risk needs no approval."""
    values = {"title": title or f"Work on {services}", "services": services, "type": "normal", "risk": risk,
              "start": start.isoformat(), "end": end.isoformat(), "backout": "Undo it", **more}
    change_id, _ = changes.create(ctx, Command(actor(ctx, by), "change new …"), values, source="chat")
    return change_id


def state(ctx, change_id: int) -> str:
    with ctx.sessions() as s:
        return s.get(Change, change_id).state


def implement(ctx, clock, service: str, outcome: str, ended: datetime) -> int:
    """A change planned and done on ``service``, its work ending at ``ended`` with ``outcome``."""
    clock.to(ended - timedelta(hours=2))
    cid = new(ctx, service, ended - timedelta(hours=1), ended, title=f"{outcome} on {service}")
    clock.to(ended - timedelta(hours=1))
    run(ctx, "priya", f"change start CHG-{cid}")
    clock.to(ended)
    verb, extra = {"successful": ("complete", ""), "with-issues": ("complete", " with-issues"),
                   "failed": ("fail", "")}[outcome]
    run(ctx, "priya", f"change {verb} CHG-{cid}{extra} Done")
    return cid


@contextmanager
def selects(engine):
    """The SELECT statements sent to the store inside the block."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)


def day_lines(reply) -> dict[str, list[int]]:
    """Day heading → the change numbers listed under it, in order."""
    return {s.title: [int(n) for n in re.findall(r"\*CHG-(\d+)\*", s.text)] for s in reply.sections}


# ------------------------------------------------------------------------------------------- change calendar

def test_the_calendar_groups_by_day_in_the_readers_zone_across_the_spring_clock_change(ctx, clock):
    clock.to(at("2026-03-26 09:00"))  # a Thursday; Europe moves its clocks on Sunday 29 March at 01:00 UTC
    a = new(ctx, "email", at("2026-03-28 23:30"), at("2026-03-29 00:15"), "Saturday night in London")
    c = new(ctx, "hr-portal", at("2026-03-29 00:30"), at("2026-03-29 00:50"), "Before the change")
    b = new(ctx, "vpn", at("2026-03-29 23:30"), at("2026-03-30 00:30"), "Monday already in London")
    expected = {
        "Europe/London": {"Sat 28 Mar 2026": [a], "Sun 29 Mar 2026": [c], "Mon 30 Mar 2026": [b]},
        "UTC": {"Sat 28 Mar 2026": [a], "Sun 29 Mar 2026": [c, b]},
        "Europe/Amsterdam": {"Sun 29 Mar 2026": [a, c], "Mon 30 Mar 2026": [b]},
        "Asia/Kolkata": {"Sun 29 Mar 2026": [a, c], "Mon 30 Mar 2026": [b]},
    }
    for zone, days in expected.items():
        reply, outcome = dispatch(ctx, Command(actor(ctx, "tom", zone), "change calendar"))
        assert outcome == "ok"
        assert day_lines(reply) == days, zone
    london = dispatch(ctx, Command(actor(ctx, "tom"), "change calendar"))[0]
    text = "\n".join(s.text for s in london.sections)
    # Each window in the reader's zone, with the offset that applies on that day.
    assert "Sat 28 Mar 2026 23:30 – Sun 29 Mar 00:15 GMT" in text
    assert "Sun 29 Mar 2026 00:30 – 00:50 GMT" in text
    assert "Mon 30 Mar 2026 00:30 – 01:30 BST" in text
    assert f"📅 *CHG-{b}* Monday already in London — scheduled" in text and "· Remote Access VPN" in text
    kolkata = dispatch(ctx, Command(actor(ctx, "arjun"), "change calendar"))[0]
    assert "Mon 30 Mar 2026 05:00 – 06:00 IST" in "\n".join(s.text for s in kolkata.sections)


def test_the_calendar_shows_changes_holding_a_window_and_labels_today(ctx, clock):
    clock.to(at("2026-03-02 09:00"))  # Monday
    running = new(ctx, "email", at("2026-03-02 09:30"), at("2026-03-04 18:00"), "Mailbox migration")
    waiting = new(ctx, "vpn", at("2026-03-05 20:00"), at("2026-03-05 21:00"), "New gateway", risk="medium")
    cancelled = new(ctx, "hr-portal", at("2026-03-03 20:00"), at("2026-03-03 21:00"), "Not any more")
    later = new(ctx, "data-platform", at("2026-03-20 20:00"), at("2026-03-20 21:00"), "Beyond a week")
    run(ctx, "priya", f"change cancel CHG-{cancelled}")
    clock.to(at("2026-03-03 10:00"))
    run(ctx, "priya", f"change start CHG-{running}")
    assert (state(ctx, running), state(ctx, waiting)) == ("in-progress", "awaiting-approval")

    reply = run(ctx, "priya", "change calendar")
    assert reply.title == "Forward schedule of change: the next 7 days"
    # Started the day before: it holds its window today, so it is listed today.
    assert day_lines(reply) == {"Tue 03 Mar 2026 · today": [running], "Thu 05 Mar 2026": [waiting]}
    text = "\n".join(s.text for s in reply.sections)
    assert f"🔧 *CHG-{running}* Mailbox migration — in-progress" in text
    assert f"⏳ *CHG-{waiting}* New gateway — awaiting-approval" in text
    assert f"CHG-{cancelled}" not in text and f"CHG-{later}" not in text

    assert day_lines(run(ctx, "priya", "change calendar 1")) == {"Tue 03 Mar 2026 · today": [running]}
    assert later in day_lines(run(ctx, "priya", "change calendar 30"))["Fri 20 Mar 2026"]
    assert day_lines(run(ctx, "priya", "change calendar 30days")) == day_lines(run(ctx, "priya", "change calendar 30"))
    clock.to(at("2026-03-04 10:00"))
    assert "Thu 05 Mar 2026 · tomorrow" in day_lines(run(ctx, "priya", "change calendar 2"))


def test_an_empty_calendar_says_so(ctx):
    reply = run(ctx, "tom", "change calendar 3")
    assert reply.sections == [] and reply.text == "No change holds a window in the next 3 days."
    assert reply.footer == "Change success rate, last 90 days: no change was implemented."


@pytest.mark.parametrize("words", ["0", "91", "soon", "7 8", "-3", "1000"])
def test_a_bad_number_of_days_says_what_is_allowed_with_an_example(ctx, words):
    reply, outcome = dispatch(ctx, Command(actor(ctx, "tom"), f"change calendar {words}"))
    assert outcome == "user_error"
    assert "from 1 to 90" in reply.text and reply.footer == "Try: change calendar 14"
    with pytest.raises(UserError):
        calendar.calendar_reply(ctx, Command(actor(ctx, "tom"), ""), words.split())


def test_the_calendar_footer_is_the_success_rate_of_the_last_90_days(ctx, clock):
    implement(ctx, clock, "email", "successful", at("2026-01-09 12:00"))  # more than 90 days before
    implement(ctx, clock, "email", "failed", at("2026-04-01 12:00"))
    implement(ctx, clock, "vpn", "successful", at("2026-04-02 12:00"))
    implement(ctx, clock, "vpn", "successful", at("2026-04-03 12:00"))
    clock.to(at("2026-04-10 09:00"))
    assert run(ctx, "tom", "change calendar").footer == \
        "Change success rate, last 90 days: 66.7% (2 of 3 implemented changes successful)"


# ------------------------------------------------------------------------------------------- success rate

def test_success_rate_counts_outcomes_by_when_the_work_ended_and_by_service(ctx, clock):
    implement(ctx, clock, "email", "successful", at("2026-03-03 12:00"))
    implement(ctx, clock, "email", "successful", at("2026-03-04 12:00"))
    implement(ctx, clock, "email", "with-issues", at("2026-03-05 12:00"))
    implement(ctx, clock, "vpn", "successful", at("2026-03-06 12:00"))
    implement(ctx, clock, "vpn", "failed", at("2026-03-07 12:00"))
    both = new(ctx, "email,vpn", at("2026-03-08 10:00"), at("2026-03-08 12:00"), "Both")
    clock.to(at("2026-03-08 10:00"))
    run(ctx, "priya", f"change start CHG-{both}")
    clock.to(at("2026-03-08 12:00"))
    run(ctx, "priya", f"change complete CHG-{both}")
    # Neither implemented nor in the period: not counted.
    new(ctx, "hr-portal", at("2026-03-09 10:00"), at("2026-03-09 11:00"))  # scheduled
    cancelled = new(ctx, "email", at("2026-03-09 10:00"), at("2026-03-09 11:00"))
    run(ctx, "priya", f"change cancel CHG-{cancelled}")
    running = new(ctx, "vpn", at("2026-03-09 10:00"), at("2026-03-09 11:00"))
    clock.to(at("2026-03-09 10:00"))
    run(ctx, "priya", f"change start CHG-{running}")
    implement(ctx, clock, "email", "successful", at("2026-04-01 00:00"))  # exactly at the end: excluded

    start, end = at("2026-03-01 00:00"), at("2026-04-01 00:00")
    with ctx.sessions() as s:
        everything = calendar.success_rate(s, start, end)
        email = calendar.success_rate(s, start, end, "email")
        vpn = calendar.success_rate(s, start, end, "vpn")
        wms = calendar.success_rate(s, start, end, "wms")
        from_the_4th = calendar.success_rate(s, at("2026-03-04 12:00"), end)  # the start is included
        april = calendar.success_rate(s, end, end + timedelta(days=30))
    # 6 implemented: 4 successful, 1 with issues (not a success), 1 failed.
    assert (everything.successful, everything.implemented, everything.ratio) == (4, 6, 4 / 6)
    assert (email.successful, email.implemented) == (3, 4)  # the change on both services counts for each
    assert (vpn.successful, vpn.implemented, vpn.ratio) == (2, 3, 2 / 3)
    assert (wms.successful, wms.implemented, wms.ratio) == (0, 0, None)
    assert (from_the_4th.successful, from_the_4th.implemented) == (3, 5)
    assert (april.successful, april.implemented, april.ratio) == (1, 1, 1.0)


def test_success_rate_with_nothing_implemented_is_none_not_zero(ctx):
    with ctx.sessions() as s:
        rate = calendar.success_rate(s, ctx.now() - timedelta(days=365), ctx.now())
    assert (rate.successful, rate.implemented, rate.ratio) == (0, 0, None)


def test_success_rate_is_one_aggregate_query(ctx, clock, runtime):
    for day in range(3, 8):
        implement(ctx, clock, "email", "successful", at(f"2026-03-0{day} 12:00"))
    with selects(runtime.engine) as seen, ctx.sessions() as s:
        rate = calendar.success_rate(s, at("2026-03-01 00:00"), at("2026-04-01 00:00"), "email")
    assert rate.implemented == 5
    assert len(seen) == 1 and "count(" in seen[0].lower() and "sum(" in seen[0].lower()


# ------------------------------------------------------------------------------------------- the iCalendar feed

def feed(ctx, start: datetime, end: datetime) -> Calendar:
    with ctx.sessions() as s:
        document = calendar.ics(s, ctx.config, start, end)
    assert document.startswith(b"BEGIN:VCALENDAR\r\n") and document.endswith(b"END:VCALENDAR\r\n")
    return Calendar.from_ical(document)


def events(cal: Calendar) -> dict[str, object]:
    return {str(e["UID"]): e for e in cal.walk("VEVENT")}


def test_the_feed_has_one_event_per_change_with_its_state_as_status(ctx, clock):
    clock.to(at("2026-03-02 09:00"))
    waiting = new(ctx, "vpn", at("2026-03-05 20:00"), at("2026-03-05 21:00"), "Gateway swap", risk="medium",
                  implementer="sanne", implementation="Swap the standby first", test="Connect from home")
    scheduled = new(ctx, "email", at("2026-03-04 20:00"), at("2026-03-04 22:00"), "Mail relay patch")
    running = new(ctx, "hr-portal", at("2026-03-03 20:00"), at("2026-03-03 22:00"), "Portal upgrade")
    done = new(ctx, "data-platform", at("2026-03-02 20:00"), at("2026-03-02 22:00"), "Warehouse index")
    cancelled = new(ctx, "email", at("2026-03-06 20:00"), at("2026-03-06 21:00"), "Not needed")
    rejected = new(ctx, "webshop", at("2026-03-06 20:00"), at("2026-03-06 21:00"), "Risky", risk="medium")
    outside = new(ctx, "email", at("2026-04-20 20:00"), at("2026-04-20 21:00"), "Next month")
    run(ctx, "priya", f"change cancel CHG-{cancelled}")
    run(ctx, "sanne", f"change reject CHG-{rejected} Clashes with the campaign")
    clock.to(at("2026-03-02 20:10"))
    run(ctx, "priya", f"change start CHG-{done}")
    clock.to(at("2026-03-02 21:40"))
    run(ctx, "priya", f"change complete CHG-{done}")
    clock.to(at("2026-03-03 20:05"))
    run(ctx, "priya", f"change start CHG-{running}")

    cal = feed(ctx, at("2026-03-01 00:00"), at("2026-04-01 00:00"))
    assert str(cal["PRODID"]) == "-//svcbot//change calendar//EN" and str(cal["VERSION"]) == "2.0"
    assert str(cal["X-WR-CALNAME"]) == "svcbot: changes"
    found = events(cal)
    assert set(found) == {f"chg-{i}@svcbot" for i in (waiting, scheduled, running, done, cancelled, rejected)}
    assert f"chg-{outside}@svcbot" not in found
    status = {uid: str(e["STATUS"]) for uid, e in found.items()}
    assert status == {f"chg-{waiting}@svcbot": "TENTATIVE", f"chg-{scheduled}@svcbot": "CONFIRMED",
                      f"chg-{running}@svcbot": "CONFIRMED", f"chg-{done}@svcbot": "CONFIRMED",
                      f"chg-{cancelled}@svcbot": "CANCELLED", f"chg-{rejected}@svcbot": "CANCELLED"}

    gateway = found[f"chg-{waiting}@svcbot"]
    assert str(gateway["SUMMARY"]) == f"CHG-{waiting} Gateway swap"
    assert gateway["CATEGORIES"].cats == ["normal"]
    assert (gateway.decoded("DTSTART"), gateway.decoded("DTEND")) == (at("2026-03-05 20:00"), at("2026-03-05 21:00"))
    assert gateway.decoded("DTSTART").utcoffset() == timedelta(0)
    description = str(gateway["DESCRIPTION"])
    for part in ("State: awaiting-approval", "Type: normal, medium risk, medium impact",
                 "Services: Remote Access VPN", "Implementer: Sanne de Vries", "Requester: Priya Nair",
                 "Implementation plan:\nSwap the standby first", "Back-out plan:\nUndo it",
                 "Test plan:\nConnect from home"):
        assert part in description, part
    # Done: at its actual window, with its outcome.
    warehouse = found[f"chg-{done}@svcbot"]
    assert (warehouse.decoded("DTSTART"), warehouse.decoded("DTEND")) == (at("2026-03-02 20:10"),
                                                                          at("2026-03-02 21:40"))
    assert "State: closed (successful)" in str(warehouse["DESCRIPTION"])
    assert "Planned: 2026-03-02 20:00 – 2026-03-02 22:00 UTC" in str(warehouse["DESCRIPTION"])
    # Times are written in UTC, as UTC ("Z") values.
    with ctx.sessions() as s:
        raw = calendar.ics(s, ctx.config, at("2026-03-01 00:00"), at("2026-04-01 00:00")).decode()
    assert "DTSTART:20260305T200000Z" in raw and "TZID" not in raw


def test_the_sequence_rises_as_the_change_moves_so_clients_update_the_event(ctx, clock):
    clock.to(at("2026-03-02 09:00"))
    cid = new(ctx, "vpn", at("2026-03-05 20:00"), at("2026-03-05 21:00"), "Gateway swap", risk="medium")
    window = (at("2026-03-01 00:00"), at("2026-04-01 00:00"))

    def seen():
        e = events(feed(ctx, *window))[f"chg-{cid}@svcbot"]
        return int(e["SEQUENCE"]), str(e["STATUS"]), e.decoded("DTSTAMP")

    first = seen()
    assert first[1] == "TENTATIVE" and first[2] == at("2026-03-02 09:00")
    clock.to(at("2026-03-02 11:30"))
    run(ctx, "sanne", f"change approve CHG-{cid}")
    second = seen()
    assert second[0] > first[0] and second[1] == "CONFIRMED" and second[2] == at("2026-03-02 11:30")
    clock.to(at("2026-03-05 19:55"))
    run(ctx, "priya", f"change cancel CHG-{cid}")
    third = seen()
    assert third[0] > second[0] and third[1] == "CANCELLED"


def test_a_change_without_a_known_actual_window_keeps_its_planned_one(ctx, clock):
    clock.to(at("2026-03-02 09:00"))
    cid = new(ctx, "email", at("2026-03-02 20:00"), at("2026-03-02 21:00"))
    with ctx.sessions.begin() as s:  # as an import might leave it: closed, with no actual times
        s.get(Change, cid).state = "closed"
    e = events(feed(ctx, at("2026-03-01 00:00"), at("2026-04-01 00:00")))[f"chg-{cid}@svcbot"]
    assert (e.decoded("DTSTART"), e.decoded("DTEND")) == (at("2026-03-02 20:00"), at("2026-03-02 21:00"))
    with ctx.sessions.begin() as s:  # started and ended in the same minute: an instant, no DTEND
        c = s.get(Change, cid)
        c.actual_start = c.actual_end = at("2026-03-02 20:30")
    e = events(feed(ctx, at("2026-03-01 00:00"), at("2026-04-01 00:00")))[f"chg-{cid}@svcbot"]
    assert e.decoded("DTSTART") == at("2026-03-02 20:30") and "DTEND" not in e


def test_the_feed_takes_two_queries_however_many_changes(ctx, clock, runtime):
    clock.to(at("2026-03-02 09:00"))
    counts = {}
    for n in (3, 12):
        while True:
            with ctx.sessions() as s:
                have = s.query(Change).count()
            if have >= n:
                break
            day = at("2026-03-03 20:00") + timedelta(days=have)
            new(ctx, "email,vpn", day, day + timedelta(hours=1), f"Change {have}")
        with selects(runtime.engine) as seen:
            cal = feed(ctx, at("2026-03-01 00:00"), at("2026-04-01 00:00"))
        assert len(list(cal.walk("VEVENT"))) == n
        counts[n] = len(seen)
    assert counts == {3: 2, 12: 2}
