"""Shifts and follow-the-sun handovers (handlers/shifts/, handlers/core/on_shift.py) on the real store, with
a clock the test moves. Every time is built around now: London's shift ends at END (this minute), Pune's
shift runs from an hour before END to eight hours after it, both on calendars that only give the time zone
(24x7, so no holiday of any year closes them)."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import func, select

from bot.runtime import Runtime
from handlers import gdpr
from handlers.changes.record import set_services
from handlers.core import on_shift
from handlers.core.config_loading import parse_config
from handlers.core.context import SYSTEM, Command, Reply
from handlers.router import dispatch
from handlers.shifts import handover
from handlers.sla import breaches
from handlers.sla.tickets import open_ticket, record
from storage.db import utcnow
from storage.models import AuditRecord, Change, ClockNotice, Handover, OutboxMessage, SlaClock, Ticket, TicketEvent
from tests.conftest import Clock, demo_config
from tests.test_handlers import all_text, person

LONDON, KOLKATA = ZoneInfo("Europe/London"), ZoneInfo("Asia/Kolkata")


def hours(start: datetime, end: datetime, zone: ZoneInfo) -> str:
    return f"{start.astimezone(zone):%H:%M}-{end.astimezone(zone):%H:%M}"


def shifts_config(end: datetime) -> dict:
    """The demo, with payments-eng (London) handing over to platform-ops (Pune) at ``end``."""
    cfg = demo_config()
    cfg["calendars"]["london-desk"] = {"timezone": "Europe/London", "24x7": True}
    cfg["calendars"]["pune-desk"] = {"timezone": "Asia/Kolkata", "24x7": True}
    every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    groups = {g["id"]: g for g in cfg["groups"]}
    groups["payments-eng"].update(calendar="london-desk", handover_to="platform-ops", shifts=[
        {"days": every_day, "hours": hours(end - timedelta(hours=8), end, LONDON)}])
    groups["platform-ops"].update(calendar="pune-desk", shifts=[
        {"days": every_day, "hours": hours(end - timedelta(hours=1), end + timedelta(hours=8), KOLKATA)}])
    people = {p["id"]: p for p in cfg["people"]}
    people["tom"]["skills"] = ["payments"]
    people["meera"]["skills"] = ["payments", "linux"]
    people["arjun"]["skills"] = ["wms"]
    cfg["changes"]["freezes"] = []  # the demo's are on fixed dates
    return cfg


@pytest.fixture
def end() -> datetime:
    return utcnow().replace(second=0, microsecond=0)


@pytest.fixture
def shift_ctx(database_url, tmp_path, end):
    path = tmp_path / "shifts.yaml"
    path.write_text(yaml.safe_dump(shifts_config(end), sort_keys=False))
    made = []

    def start(clock: Clock):
        rt = Runtime(parse_config(path.read_text()), database_url)
        rt.ctx.now = clock
        made.append(rt)
        return rt.ctx

    yield start
    for rt in made:
        rt.engine.dispose()


def run(ctx, actor, text: str, key: str | None = None):
    reply, _ = dispatch(ctx, Command(actor=actor, text=text, delivery_key=key))
    return reply


def ticket(ctx, priority: str, at: datetime, service: str = "payments", group: str = "payments-eng") -> int:
    with ctx.change(Command(SYSTEM, "test")) as work:
        t = open_ticket(work, source="api", service_id=service, priority=priority, title=f"{priority} trouble",
                        at=at, group=group)
        breaches.sync_clocks(work, t)
        return t.id


@pytest.fixture
def open_work(shift_ctx, end):
    """A P1 opened two hours before END, acknowledged by Tom an hour later (its response breached and the
    notice not acknowledged), a P3, a Pune ticket, and a change on a Pune service starting in an hour."""
    clock = Clock(end - timedelta(hours=2))
    ctx = shift_ctx(clock)
    p1 = ticket(ctx, "P1", clock())
    clock.advance(minutes=20)
    breaches.sweep(ctx)  # the 15-minute response target has passed: breach notice
    clock.advance(minutes=40)
    assert "acknowledged" in run(ctx, person(ctx, "tom"), f"incident ack INC-{p1}").title
    p3 = ticket(ctx, "P3", clock())
    pune = ticket(ctx, "P2", clock(), service="wms", group="platform-ops")
    with ctx.change(Command(SYSTEM, "test")) as work:
        change = Change(source="api", title="Restart the WMS pick workers", kind="standard", risk="low",
                        impact="low", planned_start=end + timedelta(hours=1), planned_end=end + timedelta(hours=2),
                        state="scheduled", created_at=clock(), updated_at=clock())
        work.session.add(change)
        work.session.flush()
        set_services(work.session, change, ["wms"])
    return ctx, clock, {"p1": p1, "p3": p3, "pune": pune, "change": change.id}


def handovers(ctx) -> list[Handover]:
    with ctx.sessions() as s:
        return s.scalars(select(Handover).order_by(Handover.id)).all()


def outbox(ctx, prefix: str) -> list[OutboxMessage]:
    with ctx.sessions() as s:
        return s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith(prefix))
                         .order_by(OutboxMessage.id)).all()


def test_the_handover_is_posted_once_at_the_shift_end_with_what_is_open_and_due(open_work, shift_ctx, end):
    ctx, clock, ids = open_work
    clock.to(end - timedelta(seconds=30))
    assert handover.sweep(ctx) == 0  # the shift has not ended yet
    clock.to(end + timedelta(seconds=20))
    replica = shift_ctx(clock)  # a second replica on the same store and clock
    assert handover.sweep(ctx) + handover.sweep(replica) + handover.sweep(ctx) == 1
    [h] = handovers(ctx)
    assert (h.from_group, h.to_group, h.shift_end, h.taken_by) == ("payments-eng", "platform-ops", end, None)
    assert h.tickets == [ids["p1"]]  # the P3 is neither urgent nor due on Pune's shift; Pune's own is not listed
    assert h.due_at == clock() + timedelta(hours=1)
    [post] = outbox(ctx, f"handover:{h.id}:")
    assert (post.target_kind, post.target) == ("channel", ctx.config.channels["platform-ops"].slack)
    text = all_text(Reply.from_dict(post.message))
    sections = {s["title"]: s["text"] for s in post.message["sections"]}
    assert f"INC-{ids['p1']} P1" in sections["Open P1/P2"] and "owner Tom Hughes" in sections["Open P1/P2"]
    assert "SLA SLA-PAY resolution: 50 % used" in sections["Open P1/P2"]
    assert "OLA" not in sections["Open P1/P2"]  # platform-ops never had it: its clock is unused
    # Four-hour resolution, two used: it warns one hour and breaches two hours into Pune's shift.
    breach_at = (end + timedelta(hours=2)).astimezone(KOLKATA)
    warn_at = (end + timedelta(hours=1)).astimezone(KOLKATA)  # 75 % of the four hours
    assert (f"SLA-PAY resolution warns (75 % used) {warn_at:%a %H:%M %Z}, breaches {breach_at:%a %H:%M %Z}"
            in sections["Falls due on your shift"])
    assert f"CHG-{ids['change']} Restart the WMS pick workers" in sections["Changes before the next handover"]
    notice_id = _notice_of(ctx, ids["p1"])
    assert f"`sla ack {notice_id}`" in sections["Breach notices not acknowledged"]
    assert f"INC-{ids['p3']}" not in text and f"INC-{ids['pune']}" not in text
    assert [b["run"] for b in post.message["buttons"]] == [f"handover take HND-{h.id}"]
    # The next sweeps, and the next minutes of the grace period, post nothing more.
    clock.advance(minutes=30)
    assert handover.post_due(ctx) == 0 and len(handovers(ctx)) == 1


def test_a_shift_that_ended_before_svcbot_first_saw_the_handover_is_not_owed(open_work, end):
    ctx, clock, _ = open_work
    clock.to(end + timedelta(minutes=5))  # a new install, or handover_to just added
    assert handover.sweep(ctx) == 0
    clock.advance(minutes=1)
    assert handover.sweep(ctx) == 0 and handovers(ctx) == []


def _notice_of(ctx, ticket_id: int) -> int:
    with ctx.sessions() as s:
        return s.scalar(select(ClockNotice.id).join(SlaClock, SlaClock.id == ClockNotice.clock_id)
                        .where(SlaClock.ticket_id == ticket_id, ClockNotice.level >= 100))


def test_take_over_reassigns_the_listed_tickets_once_and_says_who_took_it(open_work, shift_ctx, end):
    ctx, clock, ids = open_work
    clock.to(end + timedelta(seconds=30))
    handover.sweep(ctx)
    [h] = handovers(ctx)
    clock.advance(minutes=5)
    refused = run(ctx, person(ctx, "tom"), f"handover take HND-{h.id}")  # not of the receiving team
    assert refused.title == "Not allowed" and handovers(ctx)[0].taken_by is None
    taken = run(ctx, person(ctx, "arjun", "teams"), f"handover take HND-{h.id}", key="press-1")
    assert taken.title == f"HND-{h.id} taken over: 1 ticket reassigned"
    replica = shift_ctx(clock)  # the second press reaches another replica
    again = run(replica, person(replica, "meera"), f"handover take HND-{h.id}", key="press-2")
    assert again.title == f"HND-{h.id} was already taken over by Arjun Mehta"
    [h] = handovers(ctx)
    assert (h.taken_by, h.taken_at, h.taken_tickets, h.due_at) == ("arjun", clock(), [ids["p1"]], None)
    with ctx.sessions() as s:
        assert s.get(Ticket, ids["p1"]).assignment_group == "platform-ops"
        assigns = s.execute(select(TicketEvent.value, TicketEvent.person_id).where(
            TicketEvent.ticket_id == ids["p1"], TicketEvent.kind == "assign").order_by(TicketEvent.id)).all()
        ola = s.scalar(select(SlaClock).where(SlaClock.ticket_id == ids["p1"], SlaClock.kind == "ola"))
        takes = s.scalar(select(func.count()).where(AuditRecord.action == "handover.take"))
    assert assigns == [("payments-eng", "svcbot"), ("platform-ops", "arjun")]
    assert ola.state == "running"  # the OLA clock follows the ticket to platform-ops
    assert takes == 1
    # The posted handover now says who took it over, in place of its button (not yet delivered here, so
    # the post itself goes out so; a delivered one is edited in place).
    [post] = outbox(ctx, f"handover:{h.id}:slack:")
    assert "Taken over by Arjun Mehta" in all_text(Reply.from_dict(post.message)) and post.message["buttons"] == []


def test_two_presses_at_once_on_two_replicas_take_it_over_once(open_work, shift_ctx, end):
    ctx, clock, ids = open_work
    clock.to(end + timedelta(seconds=30))
    handover.sweep(ctx)
    [h] = handovers(ctx)
    replicas = [ctx, shift_ctx(clock)]
    actors = [person(replicas[0], "arjun"), person(replicas[1], "meera")]
    barrier = threading.Barrier(2)
    titles = [None, None]

    def press(i: int) -> None:
        barrier.wait()
        titles[i] = run(replicas[i], actors[i], f"handover take HND-{h.id}", key=f"press-{i}").title

    threads = [threading.Thread(target=press, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted("taken over: 1 ticket" in t for t in titles) == [False, True], titles
    [h] = handovers(ctx)
    with ctx.sessions() as s:
        assigns = s.scalar(select(func.count()).where(TicketEvent.ticket_id == ids["p1"],
                                                      TicketEvent.kind == "assign"))
    assert assigns == 2 and h.taken_by in ("arjun", "meera")  # the opening one, and the take-over's


def test_a_ticket_closed_or_moved_meanwhile_is_left_as_it_is(open_work, end):
    ctx, clock, ids = open_work
    clock.to(end)
    p2 = ticket(ctx, "P2", clock())
    clock.advance(seconds=30)
    handover.sweep(ctx)
    [h] = handovers(ctx)
    assert h.tickets == [ids["p1"], p2]
    run(ctx, person(ctx, "tom"), f"incident resolve INC-{ids['p1']}")
    run(ctx, person(ctx, "tom"), f"incident assign INC-{p2} workplace-it")
    taken = run(ctx, person(ctx, "priya"), f"handover take HND-{h.id}")  # a service manager
    assert taken.title == f"HND-{h.id} taken over: 0 tickets reassigned"
    assert f"INC-{ids['p1']} left as it is: resolved" in taken.text
    assert f"INC-{p2} left as it is: now with workplace-it" in taken.text


def test_a_handover_nobody_takes_over_goes_to_the_service_managers_after_an_hour(open_work, end):
    ctx, clock, _ = open_work
    clock.to(end + timedelta(seconds=10))
    handover.sweep(ctx)
    clock.advance(minutes=59)
    assert handover.sweep(ctx) == 0
    clock.advance(minutes=2)
    assert handover.sweep(ctx) == 1
    assert handover.sweep(ctx) == 0
    [h] = handovers(ctx)
    assert h.escalated_at == clock() and h.due_at is None
    messages = outbox(ctx, f"handover:{h.id}:escalated:")
    assert {m.target for m in messages} == {ctx.config.person("priya").slack}
    assert "not taken over" in messages[0].message["title"]
    # It can still be taken over afterwards.
    assert "taken over: 1 ticket" in run(ctx, person(ctx, "meera"), f"handover take HND-{h.id}").title


def test_a_handover_taken_within_the_hour_is_not_sent_on(open_work, end):
    ctx, clock, _ = open_work
    clock.to(end + timedelta(seconds=10))
    handover.sweep(ctx)
    [h] = handovers(ctx)
    run(ctx, person(ctx, "meera"), f"handover take HND-{h.id}")
    clock.advance(hours=2)
    assert handover.sweep(ctx) == 0 and outbox(ctx, f"handover:{h.id}:escalated") == []


def test_preview_shows_the_handover_now_and_changes_nothing(open_work, end):
    ctx, clock, ids = open_work
    clock.to(end - timedelta(minutes=10))
    reply = run(ctx, person(ctx, "grace"), "handover preview payments-eng")
    assert reply.title == "Preview — 🌗 Handover: Payments Engineering (London) → Platform Operations (Pune)"
    assert f"INC-{ids['p1']} P1" in all_text(reply) and reply.buttons == [] and reply.private
    assert f"Next handover: {end.astimezone(LONDON):%a %d %b %H:%M}" in reply.footer
    assert handovers(ctx) == []
    unknown = run(ctx, person(ctx, "grace"), "handover preview payments-en")
    assert "Did you mean payments-eng?" in unknown.text
    assert "hands over to nobody" in run(ctx, person(ctx, "grace"), "handover preview workplace-it").text
    assert "Did you mean `handover take`?" in run(ctx, person(ctx, "grace"), "handover tak HND-1").text
    assert "There is no handover HND-99" in run(ctx, person(ctx, "arjun"), "handover take HND-99").text


def test_team_shows_workload_by_group_location_and_person_and_who_is_on_shift(open_work, end):
    ctx, clock, ids = open_work
    clock.to(end + timedelta(minutes=5))
    reply = run(ctx, person(ctx, "priya"), "team")
    assert "Open tickets by location: London 2 · Pune 1 · Amsterdam 0" in reply.text
    by_title = {s.title: {f.label: f.value for f in s.fields} for s in reply.sections}
    london = by_title["Payments Engineering · London (payments-eng)"]
    assert london["Open"] == "2 (P1 1, P3 1)"
    assert london["By person"] == "Tom Hughes 1 · nobody yet 1"
    assert london["Age"] == "under 4 h: 2"  # 2 h and 1 h of a 24x7 desk
    assert london["On shift now"].startswith("no; next from")
    pune = by_title["Platform Operations · Pune (platform-ops)"]
    assert pune["On shift now"] == "yes: Arjun Mehta, Meera Kulkarni"
    assert pune["OLA this month"] == "no OLA clock decided yet"
    one = run(ctx, person(ctx, "priya"), "team platform-ops")
    assert [s.title for s in one.sections] == ["Platform Operations · Pune (platform-ops)"]
    assert "Did you mean platform-ops?" in run(ctx, person(ctx, "priya"), "team platform-op").text


def test_team_counts_ola_attainment_this_month(shift_ctx, end):
    clock = Clock(end - timedelta(hours=3))
    ctx = shift_ctx(clock)
    met, late = ticket(ctx, "P1", clock(), group="platform-ops"), ticket(ctx, "P1", clock(), group="platform-ops")
    clock.advance(minutes=30)
    run(ctx, person(ctx, "arjun"), f"incident resolve INC-{met}")  # within the OLA's 2 hours
    clock.advance(hours=2)  # the other is past them
    fields = {f.label: f.value for f in run(ctx, person(ctx, "priya"), "team platform-ops").sections[0].fields}
    zone = ZoneInfo(ctx.config.bot.timezone)
    opened = (clock() - timedelta(hours=2, minutes=30)).astimezone(zone)
    this_month = opened.month == clock().astimezone(zone).month  # "this month" began after they opened
    assert fields["OLA this month"] == ("50.0 % met (1/2)" if this_month else "no OLA clock decided yet")


def test_a_new_ticket_suggests_the_people_on_shift_whose_skills_match(shift_ctx, end):
    clock = Clock(end + timedelta(minutes=5))  # London is off shift, Pune on
    ctx = shift_ctx(clock)
    reply = run(ctx, person(ctx, "tom"), "incident new payments P2 Card payments fail for Amex")
    [suggested] = [s for s in reply.sections if s.title == "On shift now, with the skills for it"]
    assert suggested.text.splitlines()[0] == "Meera Kulkarni (payments)"  # Tom knows it too, but is off shift
    assert "Tom" not in suggested.text and "Arjun" not in suggested.text
    with ctx.sessions() as s:
        assert s.scalar(select(Ticket.assignment_group)) == "payments-eng"  # a suggestion assigns nobody
    clock.to(end - timedelta(minutes=30))  # both on shift: the service's own team first
    reply = run(ctx, person(ctx, "tom"), "incident new payments P3 Slow refunds")
    [suggested] = [s for s in reply.sections if s.title == "On shift now, with the skills for it"]
    assert suggested.text.splitlines()[:2] == ["Tom Hughes (payments)", "Meera Kulkarni (payments)"]


def test_shift_ends_pass_midnight_merge_touching_shifts_and_follow_the_calendar_by_default(end):
    cfg = shifts_config(end)
    group = {g["id"]: g for g in cfg["groups"]}
    group["payments-eng"]["shifts"] = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                        "hours": "22:00-06:00"}]
    group["platform-ops"]["shifts"] = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                        "hours": "00:00-12:00"},
                                       {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                        "hours": "12:00-24:00"}]
    config = parse_config(yaml.safe_dump(cfg, sort_keys=False))
    night, round_the_clock = config.group("payments-eng"), config.group("platform-ops")
    ends = on_shift.shift_ends(config, night, end, end + timedelta(days=3))
    assert len(ends) == 3 and {e.astimezone(LONDON).strftime("%H:%M") for e in ends} == {"06:00"}
    assert on_shift.shift_ends(config, round_the_clock, end, end + timedelta(days=3)) == []
    assert on_shift.on_shift(config, round_the_clock, end)
    # Amsterdam's calendar has a lunch break: the shift ends at the last closing, not at lunch.
    workplace = config.group("workplace-it")
    week = on_shift.shift_ends(config, workplace, end, end + timedelta(days=7))
    local = {e.astimezone(ZoneInfo("Europe/Amsterdam")).strftime("%H:%M") for e in week}
    assert local <= {"17:30", "16:00"} and "12:30" not in local


def test_shift_and_handover_mistakes_are_refused_naming_their_path(end):
    def problems(mutate) -> list[str]:
        cfg = shifts_config(end)
        mutate({g["id"]: g for g in cfg["groups"]}, cfg)
        with pytest.raises(Exception) as caught:
            parse_config(yaml.safe_dump(cfg, sort_keys=False))
        return caught.value.problems

    index = {g["id"]: i for i, g in enumerate(shifts_config(end)["groups"])}
    pay, ops, work = index["payments-eng"], index["platform-ops"], index["workplace-it"]
    assert problems(lambda g, c: g["payments-eng"].update(handover_to="pune-ops")) == [
        f"groups[{pay}].handover_to: unknown group 'pune-ops'"]
    assert problems(lambda g, c: g["payments-eng"].update(handover_to="payments-eng")) == [
        f"groups[{pay}].handover_to: a group cannot hand over to itself"]
    assert problems(lambda g, c: g["payments-eng"].update(handover_to="cardlink")) == [
        f"groups[{pay}].handover_to: handovers pass work between internal teams; 'cardlink' is a supplier"]
    assert problems(lambda g, c: g["platform-ops"].pop("channel")) == [
        f"groups[{pay}].handover_to: 'platform-ops' has no channel to post the handover to; give it a channel"]
    assert problems(lambda g, c: g["platform-ops"].pop("calendar")) == [
        f"groups[{ops}].shifts: shifts are in the group's calendar's time zone; give it a calendar"]
    assert problems(lambda g, c: g["payments-eng"].pop("shifts")) == [
        f"groups[{pay}].handover_to: 'payments-eng' works 24x7 on calendar 'london-desk', so its shifts never "
        "end; give it shifts"]
    assert problems(lambda g, c: g["workplace-it"].update(shifts=[{"days": ["mon"], "hours": "9-17"}])) == [
        f"groups[{work}].shifts[0].hours: '9-17' is not an interval like 09:00-17:30"]
    assert problems(lambda g, c: c["people"][0].update(skills=["Payments"]))[0].startswith("people[0].skills[0]:")


def test_gdpr_export_lists_skills_memberships_assignments_and_handovers_taken(open_work, end):
    ctx, clock, ids = open_work
    clock.to(end + timedelta(seconds=30))
    handover.sweep(ctx)
    [h] = handovers(ctx)
    run(ctx, person(ctx, "meera"), f"handover take HND-{h.id}")
    data = gdpr.export(ctx, "meera")
    assert data["skills"] == ["payments", "linux"]
    assert data["team_memberships"] == ["platform-ops"]
    assert data["ticket_assignments_made"] == [{"ticket": f"INC-{ids['p1']}", "to": "platform-ops",
                                                "at": clock().isoformat()}]
    assert data["handovers_taken"] == [{"handover": f"HND-{h.id}", "from": "payments-eng", "to": "platform-ops",
                                        "at": clock().isoformat(), "tickets": [f"INC-{ids['p1']}"]}]
    assert gdpr.export(ctx, "tom")["handovers_taken"] == []
    gdpr.erase(ctx, "meera")  # a record of who took the work over is kept, as tickets are
    assert handovers(ctx)[0].taken_by == "meera"
