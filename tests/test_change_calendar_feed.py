"""The iCalendar feed as text: the document svcbot writes line by line is the one icalendar's object model
builds from the same changes (compared byte for byte and as icalendar parses them, with text that needs
escaping and folding), and its ETag changes whenever the feed would and not when it would not. Changes are
made through the real handlers on the real store, the clock set by the test."""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar, vText
from icalendar.parser import Contentline
from sqlalchemy import select

from handlers.changes import calendar, messages, record
from handlers.imports.rabobank import import_rabobank_changes
from storage.models import Change, ChangeService
from tests.test_change_calendar import new, run
from tests.test_import_rabobank_changes import row, write

UTC = timezone.utc


# ------------------------------------------------------------------------------------------- the reference

def reference_document(ctx, start: datetime, end: datetime) -> bytes:
    """The feed as icalendar's object model builds it, the way svcbot built it before writing it as text."""
    from icalendar import Event, vCategory, vDatetime, vDuration, vInt
    cfg = ctx.config
    cal = Calendar()
    cal.add("prodid", calendar.PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", f"{cfg.bot.name}: changes")
    cal.add("x-wr-caldesc", calendar.CALDESC)
    cal["refresh-interval"] = vDuration(timedelta(minutes=15))
    cal["refresh-interval"].params["VALUE"] = "DURATION"
    cal["x-published-ttl"] = vDuration(timedelta(minutes=15))
    head = cal.to_ical().removesuffix(b"END:VCALENDAR\r\n")
    where = (Change.state.in_(tuple(calendar.ICS_STATUS)), Change.planned_start < end,
             Change.planned_end > start)
    with ctx.sessions() as s:
        rows = s.scalars(select(Change).where(*where).order_by(Change.planned_start, Change.id)).all()
        services: dict[int, list[str]] = {}
        for change_id, service_id in s.execute(select(ChangeService.change_id, ChangeService.service_id)
                                               .order_by(ChangeService.change_id, ChangeService.service_id)):
            services.setdefault(change_id, []).append(service_id)
    events = []
    for c in rows:
        state = c.state + (f" ({record.OUTCOME_TEXT.get(c.outcome, c.outcome)})" if c.outcome else "")
        lines = [f"State: {state}",
                 f"Type: {c.kind}" + (f" ({c.model})" if c.model else "") + f", {c.risk} risk, {c.impact} impact",
                 "Services: " + cfg.service_names(services.get(c.id, [])),
                 f"Requester: {cfg.person_name(c.requester)}", f"Implementer: {cfg.person_name(c.implementer)}",
                 f"Planned: {c.planned_start:%Y-%m-%d %H:%M} – {c.planned_end:%Y-%m-%d %H:%M} UTC"]
        if c.actual_start or c.actual_end:
            lines.append("Actual: " + " – ".join(f"{t:%Y-%m-%d %H:%M}" if t else "?"
                                                  for t in (c.actual_start, c.actual_end)) + " UTC")
        for label, text in (("Description", c.description), ("Implementation plan", c.implementation_plan),
                            ("Back-out plan", c.backout_plan), ("Test plan", c.test_plan)):
            if text:
                lines += ["", f"{label}:", text]
        start_at, end_at = c.planned_start, c.planned_end
        if c.state in calendar.DONE and (c.actual_start or c.actual_end):
            if (c.actual_end or end_at) >= (c.actual_start or start_at):
                start_at, end_at = c.actual_start or start_at, c.actual_end or end_at
        e = Event()
        e["uid"] = vText(f"chg-{c.id}@svcbot")
        e["sequence"] = vInt(c.revision or 0)
        e["dtstamp"] = vDatetime(c.updated_at)
        e["created"] = vDatetime(c.created_at)
        e["last-modified"] = vDatetime(c.updated_at)
        e["dtstart"] = vDatetime(start_at)
        if end_at > start_at:
            e["dtend"] = vDatetime(end_at)
        e["summary"] = vText(f"CHG-{c.id} {c.title}")
        e["description"] = vText("\n".join(lines))
        e["categories"] = vCategory([c.kind])
        e["status"] = vText(calendar.ICS_STATUS[c.state])
        e["transp"] = vText("TRANSPARENT")
        events.append(e.to_ical(sorted=False))
    return head + b"".join(events) + b"END:VCALENDAR\r\n"


def document(ctx, start: datetime, end: datetime) -> bytes:
    with ctx.sessions() as s:
        return calendar.ics(s, ctx.config, start, end)


def properties(cal: Calendar) -> list[list[tuple[str, bytes]]]:
    """Each component's properties as icalendar reads them back, in order."""
    return [[(name, value.to_ical() if hasattr(value, "to_ical") else value)
             for name, value in component.property_items(recursive=False, sorted=False)]
            for component in cal.walk()]


def lines_of(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n")
    return data[:-2].split(b"\r\n")


# ------------------------------------------------------------------------------------------- as icalendar writes it

TRICKY = {
    "title": 'Patch; reboot, then verify \\ done — naïve café ☕ 日本語 and "quotes": 🙂',
    "description": "Line one\nLine two\r\nWindows line\rOld Mac line, with commas; semicolons\\backslashes\\\\ "
                   "a literal \\N, C:\\Temp\\new and ^caret^ and tabs\tinside",
    "implementation_plan": "Ünïcödé " * 12 + "€" * 30 + "😀" * 25 + "日本" * 40 + "\\;" * 50,
    "backout_plan": "\n".join("x" * n + "é€😀"[n % 3] * (n % 7) + "\\" * (n % 4) + ",;" * (n % 2)
                              for n in range(60, 90)),
    "test_plan": "",
}


def test_the_document_is_what_icalendar_builds_for_text_that_needs_escaping_and_folding(ctx, clock):
    now = clock()
    plain = new(ctx, "email", now + timedelta(days=1), now + timedelta(days=1, hours=2), "Plain")
    tricky = new(ctx, "email,vpn", now + timedelta(days=2), now + timedelta(days=2, hours=3), "Tricky",
                 risk="medium", implementer="sanne")
    done = new(ctx, "vpn", now + timedelta(hours=1), now + timedelta(hours=2), "Done")
    clock.advance(hours=1, minutes=5)
    run(ctx, "priya", f"change start CHG-{done}")
    clock.advance(minutes=50)
    run(ctx, "priya", f"change complete CHG-{done} with-issues")
    with ctx.sessions.begin() as s:  # what an import or a long edit may leave in the store
        c = s.get(Change, tricky)
        for name, value in TRICKY.items():
            setattr(c, name, value)
    window = (now - timedelta(days=30), now + timedelta(days=30))

    written, built = document(ctx, *window), reference_document(ctx, *window)
    assert written == built
    assert properties(Calendar.from_ical(written)) == properties(Calendar.from_ical(built))
    # As RFC 5545 wants it: CRLF lines of at most 75 octets, folded between whole UTF-8 characters.
    lines = lines_of(written)
    assert not any(b"\r" in line or b"\n" in line for line in lines)
    assert max(len(line) for line in lines) == 75
    for line in lines:
        line.decode("utf-8")  # a character split by a fold would not decode
    assert any(line.startswith(b" ") and not line.isascii() for line in lines)
    # Read back, the text is what was stored (line breaks as \n; icalendar reads "\N" as one too).
    found = {str(e["UID"]): e for e in Calendar.from_ical(written).walk("VEVENT")}
    assert set(found) == {f"chg-{i}@svcbot" for i in (plain, tricky, done)}
    event = found[f"chg-{tricky}@svcbot"]
    assert str(event["SUMMARY"]) == f"CHG-{tricky} {TRICKY['title']}"
    description = str(event["DESCRIPTION"])
    for name in ("implementation_plan", "backout_plan"):
        assert TRICKY[name] in description
    assert "Line one\nLine two\nWindows line\nOld Mac line, with commas; semicolons\\backslashes\\\\ " in description
    assert "Services: Email and Calendar, Remote Access VPN" in description
    assert " (successful with issues)\n" in str(found[f"chg-{done}@svcbot"]["DESCRIPTION"])


@pytest.mark.parametrize("extra", ["é", "€", "😀", "\\", "^", ";", ","])
def test_lines_are_escaped_and_folded_as_icalendar_does_at_every_octet_offset(extra):
    for width, text in itertools.product(range(0, 80), ("", "abc", "x,y;z\\")):
        value = "a" * width + (extra + text) * 12
        line = "DESCRIPTION:" + calendar._text(value)
        assert calendar._text(value) == vText(value).to_ical().decode()
        assert calendar._fold(line) == Contentline(line).to_ical().decode(), (width, text)


def test_the_stream_reads_a_page_at_a_time_and_writes_each_change_once(ctx, clock):
    now = clock()
    ids = [new(ctx, "email,vpn" if i % 2 else "hr-portal", now + timedelta(days=1 + i // 3),
               now + timedelta(days=1 + i // 3, hours=1), f"Change {i}") for i in range(8)]  # three at a time
    start, end = now - timedelta(days=1), now + timedelta(days=30)
    with ctx.sessions() as s:
        whole = calendar.ics_rows(s, start, end)
    assert [c.id for c, _ in whole] == ids
    pages = list(calendar.ics_pages(ctx.sessions, start, end, first=2, page=3))
    assert [len(rows) for rows in pages] == [2, 3, 3, 0]
    assert [(tuple(c), services) for rows in pages for c, services in rows] == \
        [(tuple(c), services) for c, services in whole]
    assert b"".join(calendar.ics_stream(ctx.sessions, ctx.config, start, end)) == document(ctx, start, end)
    # A change moved past the next page while the first is written: written once, where it was read first.
    pages = calendar.ics_pages(ctx.sessions, start, end, first=2, page=3)
    first = next(pages)
    later = now + timedelta(days=10)
    run(ctx, "priya", f'change edit CHG-{ids[0]} start="{later.isoformat()}" '
                      f'end="{(later + timedelta(hours=1)).isoformat()}"')
    written = [c.id for c, _ in first] + [c.id for rows in pages for c, _ in rows]
    assert written == ids


# ------------------------------------------------------------------------------------------- the ETag

DAYS, PAST = 30, 7


def version(ctx, days: int = DAYS, past: int = PAST) -> tuple[str, bytes]:
    """The feed's ETag and the document itself, for the window around the clock's now."""
    now = ctx.now()
    start, end = now - timedelta(days=past), now + timedelta(days=days)
    with ctx.sessions() as s:
        return (calendar.ics_etag(s, ctx.config, start, end, f"days={days}&past={past}"),
                calendar.ics(s, ctx.config, start, end))


def renamed(items, key: str, name: str):
    return [item.model_copy(update={"name": name}) if item.id == key else item for item in items]


def rabobank_row(change_id: str, change_type: str, start: datetime, opened: datetime) -> dict:
    def local(t: datetime) -> str:  # the export's format, in Amsterdam time
        t = t.astimezone(ZoneInfo("Europe/Amsterdam"))
        return f"{t.day}-{t.month}-{t.year} {t.hour}:{t.minute:02}"
    return row(Change_ID=change_id, Change_Type=change_type, Planned_Start=local(start),
               Planned_End=local(start + timedelta(hours=2)), Actual_Start="", Actual_End="",
               Change_record_Open_Time=local(opened), Change_record_Close_Time="")


def test_the_etag_changes_whenever_the_feed_does_and_only_then(ctx, clock, tmp_path):
    now = clock()
    soon = new(ctx, "email", now + timedelta(days=2), now + timedelta(days=2, hours=1), "Relay patch")
    waiting = new(ctx, "vpn", now + timedelta(days=3), now + timedelta(days=3, hours=1), "Gateway", risk="medium")
    leaving = new(ctx, "hr-portal", now + timedelta(hours=1), now + timedelta(hours=2), "Short one")
    arriving = new(ctx, "data-platform", now + timedelta(days=DAYS + 1), now + timedelta(days=DAYS + 1, hours=1),
                   "Later")
    opened = now - timedelta(days=20)
    import_rabobank_changes(ctx, write(tmp_path / "a.csv", rabobank_row("C1", "Release Type 1", now + timedelta(
        days=4), opened)))

    def reimport_with_another_title():  # the import keeps the export's (old) times: only the revision moves
        import_rabobank_changes(ctx, write(tmp_path / "b.csv", rabobank_row(
            "C1", "Release Type 2", now + timedelta(days=4), opened)))

    def rename_service():
        ctx.config = ctx.config.model_copy(update={"services": renamed(ctx.config.services, "email", "Mail")})

    def rename_person():
        ctx.config = ctx.config.model_copy(update={"people": renamed(ctx.config.people, "priya", "Priya N.")})

    def rename_bot():
        ctx.config = ctx.config.model_copy(update={"bot": ctx.config.bot.model_copy(update={"name": "opsbot"})})

    # (what happens, whether the feed changes: True, False, or None when either is right)
    steps = [
        ("nothing", lambda: None, False),
        ("an hour passes, no change crosses the window's edges", lambda: clock.advance(hours=1), False),
        ("reminders are sent", lambda: messages.sweep(ctx), False),
        ("approved", lambda: run(ctx, "sanne", f"change approve CHG-{waiting}"), True),
        ("title edited", lambda: run(ctx, "priya", f'change edit CHG-{soon} title="Relay patch, take two"'), True),
        ("moved", lambda: run(ctx, "priya", f'change edit CHG-{soon} start="{(now + timedelta(days=5)).isoformat()}"'
                                            f' end="{(now + timedelta(days=5, hours=1)).isoformat()}"'), True),
        ("services edited", lambda: run(ctx, "priya", f'change edit CHG-{soon} services="email, vpn"'), True),
        ("imported again with another title", reimport_with_another_title, True),
        ("a change far ahead is made", lambda: new(ctx, "vpn", now + timedelta(days=DAYS + 40),
                                                   now + timedelta(days=DAYS + 40, hours=1)), None),
        ("cancelled", lambda: run(ctx, "priya", f"change cancel CHG-{soon}"), True),
        ("a service renamed in app.yaml", rename_service, True),
        ("a person renamed in app.yaml", rename_person, True),
        ("the bot renamed in app.yaml", rename_bot, True),
        ("a day on: a change enters the window", lambda: clock.advance(days=1), True),
        ("a week on: a change leaves it", lambda: clock.advance(days=PAST), True),
        ("an hour more", lambda: clock.advance(hours=1), False),
    ]
    seen = {}
    before = version(ctx)
    for what, step, changes_feed in steps:
        step()
        after = version(ctx)
        if changes_feed is not None:
            assert (after[1] != before[1]) is changes_feed, f"the feed after: {what}"
            assert (after[0] != before[0]) is changes_feed, f"the ETag after: {what}"
        seen.setdefault(after[0], after[1])
        assert seen[after[0]] == after[1], f"one ETag, two documents after: {what}"
        before = after
    assert f"chg-{leaving}@svcbot".encode() not in before[1] and f"chg-{arriving}@svcbot".encode() in before[1]
    # The window is part of it: the same store seen further ahead or back is another feed.
    assert len({version(ctx, days, past)[0] for days, past in ((DAYS, PAST), (DAYS + 1, PAST), (DAYS, PAST + 1),
                                                               (PAST, DAYS))}) == 4
