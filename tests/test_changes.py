"""Change enablement at the handler level: requests for change typed (or submitted as forms) by the people
of the demo app.yaml, through the one router, on the real store with the test clock.

The people: priya is a service manager, on the CAB and the ECAB; sanne and arjun are on the CAB; arjun
and priya on the ECAB; tom, grace, lucas and meera have no role. Time starts at T0, Monday
2 March 2026 09:00 UTC (London is on GMT until 29 March; Kolkata is UTC+5:30 all year).

Every test checks what was stored (changes, votes, services, audit records, outbox rows), not only
what was answered."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from sqlalchemy import select

from bot.outbox import Delivered, Deliverer, DeliveryError, Outgoing
from handlers.changes import approvals, messages, plan
from handlers.changes import commands as changes
from handlers.core.config_loading import parse_config
from handlers.core.context import Command, FormInvalid, UserError
from handlers.core.people import console_actor, resolve_actor
from handlers.router import dispatch
from storage.models import (AuditRecord, Change, ChangeService, ChangeVote, OutboxMessage, ProcessedDelivery,
                            Subscription)
from tests.conftest import T0, db_count, db_rows, demo_config

UTC = timezone.utc
ANNOUNCE_SLACK, ANNOUNCE_TEAMS = "C0ANNOUNCE", "19:announce000000000000000000000@thread.tacv2"
PAYMENTS_SLACK, PAYMENTS_TEAMS = "C0PAYMENTS", "19:payments00000000000000000000000@thread.tacv2"
SHOP_SLACK, SHOP_TEAMS = "C0SHOP0001", "19:shop000000000000000000000000000@thread.tacv2"
PLATFORM_OPS_SLACK = "C0PLATOPS1"
BOTH = ["slack", "teams"]
DM = ["slack"]  # the demo people are on both platforms; direct messages go to Slack only

# A medium-risk change to the mail relays: Email has no maintenance window and no freeze in March.
MAIL = dict(title="Rotate the mail relay TLS certificates", services="email", risk="medium",
            start="2026-03-10 20:00", end="2026-03-10 21:00",
            backout="Reinstall the previous certificate from the vault")
MAIL_START, MAIL_END = datetime(2026, 3, 10, 20, 0, tzinfo=UTC), datetime(2026, 3, 10, 21, 0, tzinfo=UTC)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- helpers --------------------------------------------------------------------------------------------

def person(ctx, pid: str, platform: str = "slack"):
    """The actor behind a demo person's account, resolved as a front end would."""
    p = ctx.config.person(pid)
    return resolve_actor(ctx, platform, getattr(p, platform), p.name)


def run(ctx, who, text: str, key: str | None = None, platform: str = "slack", via: str = "text"):
    actor = person(ctx, who, platform) if isinstance(who, str) else who
    return dispatch(ctx, Command(actor=actor, text=text, delivery_key=key, via=via))


def ok(ctx, who, text: str, **kw):
    reply, outcome = run(ctx, who, text, **kw)
    assert outcome == "ok", all_text(reply)
    return reply


def new_text(**f) -> str:
    return "change new " + " ".join(f'{k}="{v}"' for k, v in f.items())


def submit(ctx, who: str, platform: str = "slack", **f) -> int:
    reply = ok(ctx, who, new_text(**f), platform=platform)
    return int(re.match(r"CHG-(\d+) submitted · ", reply.title)[1])


def mail(ctx, who: str = "tom", **over) -> int:
    return submit(ctx, who, **{**MAIL, **over})


def all_text(reply) -> str:
    out = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(reply.to_dict() if hasattr(reply, "to_dict") else reply)
    return "\n".join(out)


def fields(reply) -> dict[str, str]:
    return {f.label: f.value for s in reply.sections for f in s.fields}


def msg_fields(message: dict) -> dict[str, str]:
    return {f["label"]: f["value"] for s in message["sections"] for f in s["fields"]}


def section(reply, title: str):
    return next((s for s in reply.sections if s.title == title), None)


def the_change(db: str, cid: int):
    (row,) = db_rows(db, Change, Change.id == cid)
    return row


def all_votes(db: str, cid: int) -> list:
    return sorted(db_rows(db, ChangeVote, ChangeVote.change_id == cid), key=lambda v: v.id)


def live_votes(db: str, cid: int) -> list:
    return [v for v in all_votes(db, cid) if v.withdrawn_at is None]


def outbox(db: str, *where) -> list:
    return sorted(db_rows(db, OutboxMessage, *where), key=lambda r: r.id)


def keyed(db: str, prefix: str) -> list:
    return outbox(db, OutboxMessage.dedupe_key.startswith(prefix, autoescape=True))


def audits(db: str, subject: str | None = None) -> list[tuple]:
    where = [AuditRecord.subject == subject] if subject else []
    return [(r.action, r.person_id, r.platform, r.detail)
            for r in sorted(db_rows(db, AuditRecord, *where), key=lambda r: r.id)]


def actions(db: str, subject: str | None = None) -> list[str]:
    return [a[0] for a in audits(db, subject)]


def tally(db: str) -> dict[str, int]:
    return {m.__tablename__: db_count(db, m) for m in (Change, ChangeService, ChangeVote, OutboxMessage,
                                                       AuditRecord, ProcessedDelivery, Subscription)}


def state_of(db: str):
    """Everything a refused or failed command must leave exactly as it was."""
    return (tally(db), [tuple(r) for r in db_rows(db, Change)], [tuple(v) for v in db_rows(db, ChangeVote)],
            [(r.dedupe_key, r.status, r.message) for r in outbox(db)])


def dm_people(ctx, db: str, prefix: str) -> dict[str, list[str]]:
    """Who the direct messages whose keys start with ``prefix`` went to: person → platforms."""
    whose = {(pl, getattr(p, pl)): p.id for p in ctx.config.people for pl in BOTH}
    found: dict[str, list[str]] = {}
    for r in keyed(db, prefix):
        assert r.target_kind == "person", r.dedupe_key
        found.setdefault(whose[(r.platform, r.target)], []).append(r.platform)
    return {k: sorted(v) for k, v in found.items()}


def deliver_announcements(ctx, cid: int) -> dict[str, str]:
    """As if the deliverer had posted the change's announcements: sent, with the platform's message id."""
    ids = {}
    with ctx.sessions.begin() as s:
        change = s.get(Change, cid)
        for key in change.announcements:
            row = s.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))
            row.status, row.sent_at, row.attempts = "sent", ctx.now(), 1
            row.platform_channel = row.target
            row.platform_message_id = (f"1772442{row.id:03d}.000{row.id:03d}" if row.platform == "slack"
                                       else f"1:1Kq{row.id:04d}Xw")
            ids[key] = row.platform_message_id
    return ids


def announce_keys(cid: int, *addresses: tuple[str, str]) -> list[str]:
    return [f"change:{cid}:announce:{platform}:{address}" for platform, address in addresses]


# === creating a change =====================================================================================

def test_the_one_line_form_records_every_field(ctx, database_url):
    reply, outcome = run(ctx, "tom", new_text(
        title="Upgrade the payments database to PostgreSQL 17.2", services="payments, webshop", type="normal",
        risk="high", impact="medium", start="2026-03-10 22:30", end="2026-03-10 23:45", implementer="grace",
        description="Minor version upgrade of the primary, with a failover to the replica.",
        implementation="Fail over to the replica, upgrade the primary, fail back.",
        backout="Fail back to the untouched replica.", test="Run the checkout smoke tests."))
    assert outcome == "ok", all_text(reply)
    assert reply.title == "CHG-1 submitted · Upgrade the payments database to PostgreSQL 17.2"
    assert reply.tone == "ok" and reply.private

    row = the_change(database_url, 1)
    assert (row.source, row.external_id, row.kind, row.model, row.risk, row.impact) == \
        ("chat", None, "normal", None, "high", "medium")
    assert row.title == "Upgrade the payments database to PostgreSQL 17.2"
    assert row.description == "Minor version upgrade of the primary, with a failover to the replica."
    assert (row.implementation_plan, row.backout_plan, row.test_plan) == (
        "Fail over to the replica, upgrade the primary, fail back.", "Fail back to the untouched replica.",
        "Run the checkout smoke tests.")
    # London is on GMT in March: the times typed are UTC
    assert (row.planned_start, row.planned_end) == (utc(2026, 3, 10, 22, 30), utc(2026, 3, 10, 23, 45))
    assert (row.requester, row.implementer) == ("tom", "grace")
    assert (row.state, row.approvals_needed, row.override, row.outcome) == ("awaiting-approval", 2, None, None)
    assert (row.created_at, row.updated_at, row.actual_start, row.actual_end, row.closed_at) == \
        (T0, T0, None, None, None)
    assert row.revision == 1
    services = sorted(db_rows(database_url, ChangeService, ChangeService.change_id == 1), key=lambda r: r.service_id)
    assert [(s.service_id, s.planned_start, s.planned_end) for s in services] == [
        ("payments", row.planned_start, row.planned_end), ("webshop", row.planned_start, row.planned_end)]
    assert audits(database_url, "CHG-1") == [
        ("change.created", "tom", "slack", {"via": "text", "kind": "normal", "risk": "high",
                                            "services": ["payments", "webshop"],
                                            "start": "2026-03-10T22:30:00+00:00", "end": "2026-03-10T23:45:00+00:00"}),
        ("change.state", "tom", "slack", {"was": "new", "state": "awaiting-approval"}),
    ]
    # the CAB is asked, on both platforms; the requester and implementer are not on it anyway
    assert dm_people(ctx, database_url, "change:1:ask:") == {"priya": DM, "sanne": DM, "arjun": DM}
    assert dm_people(ctx, database_url, "change:1:override:") == {}  # nothing blocks it

    f = fields(reply)
    assert f["State"] == "⏳ awaiting-approval"
    assert f["Type"] == "normal, high risk, medium impact"
    assert f["When"] == "Tue 10 Mar 2026 22:30 – 23:45 GMT"
    assert f["Services"] == "Payments Gateway, Web Shop"
    assert (f["Requester"], f["Implementer"], f["Approvals"]) == ("Tom Hughes", "Grace Okafor", "0 of 2")
    plans = {x.label: x.value for x in section(reply, "Plans").fields}
    assert plans == {"Implementation": "Fail over to the replica, upgrade the primary, fail back.",
                     "Back-out": "Fail back to the untouched replica.", "Test": "Run the checkout smoke tests."}
    assert section(reply, "Governance") is None  # inside the Tuesday window, no freeze, no other change
    assert reply.sections[0].text == "Minor version upgrade of the primary, with a failover to the replica."


@pytest.mark.parametrize("typed", ["grace", "GRACE", "Grace Okafor", "grace okafor", "<@U0GRACE07>",
                                   "<@U0GRACE07|grace>"])
def test_the_implementer_may_be_named_by_id_name_or_slack_mention(ctx, database_url, typed):
    cid = mail(ctx, implementer=typed)
    assert the_change(database_url, cid).implementer == "grace"


def test_the_implementer_defaults_to_the_requester(ctx, database_url):
    cid = mail(ctx, "lucas")
    row = the_change(database_url, cid)
    assert (row.requester, row.implementer) == ("lucas", "lucas")


def test_a_standard_change_comes_from_its_model_and_is_scheduled_at_once(ctx, database_url):
    model = ctx.config.changes.model("restart-wms-workers")
    reply = ok(ctx, "meera", 'change new model=restart-wms-workers start="2026-03-07 02:00"')
    assert reply.title == f"CHG-1 submitted · {model.title}"
    row = the_change(database_url, 1)
    # 02:00 on Saturday in Pune is 20:30 UTC on Friday; the model says it takes 30 minutes
    assert row.planned_start == utc(2026, 3, 6, 20, 30)
    assert row.planned_end == row.planned_start + timedelta(minutes=30)
    assert (row.kind, row.model, row.title, row.risk, row.impact) == \
        ("standard", "restart-wms-workers", model.title, model.risk, model.impact)
    assert (row.implementation_plan, row.backout_plan, row.test_plan, row.description) == \
        (model.implementation, model.backout, model.test, model.description)
    assert (row.approvals_needed, row.state, row.requester, row.implementer) == (0, "scheduled", "meera", "meera")
    assert [s.service_id for s in db_rows(database_url, ChangeService, ChangeService.change_id == 1)] == ["wms"]
    assert [a[3] for a in audits(database_url, "CHG-1") if a[0] == "change.state"] == [
        {"was": "new", "state": "awaiting-approval"}, {"was": "awaiting-approval", "state": "scheduled"}]
    assert keyed(database_url, "change:1:ask:") == []  # pre-approved: nobody is asked
    assert row.announcements == announce_keys(1, ("slack", ANNOUNCE_SLACK), ("teams", ANNOUNCE_TEAMS),
                                              ("slack", PLATFORM_OPS_SLACK))
    history = keyed(database_url, "change:1:announce:slack:C0ANNOUNCE:history:")
    assert [h.message["title"] for h in history] == \
        ["🆕 Meera Kulkarni submitted it\n📅 Scheduled (pre-approved standard change)"]
    assert fields(reply)["State"] == "📅 scheduled"
    assert "Approvals" not in fields(reply)


def test_a_standard_change_may_give_its_own_end(ctx, database_url):
    ok(ctx, "sanne", 'change new model=vpn-cert-rotation start="2026-03-11 19:00" end="2026-03-11 19:45"')
    row = the_change(database_url, 1)
    # Amsterdam is UTC+1 in March
    assert (row.planned_start, row.planned_end) == (utc(2026, 3, 11, 18, 0), utc(2026, 3, 11, 18, 45))
    assert (row.kind, row.state, row.approvals_needed) == ("standard", "scheduled", 0)


ALL_WRONG = dict(title="x" * 301, services="email,mainframe", type="major", risk="extreme", impact="huge",
                 start="2026-13-01 20:00", end="soon", implementer="bob")


def test_every_invalid_field_is_named_at_once_and_nothing_is_written(ctx, database_url):
    before = state_of(database_url)
    reply, outcome = run(ctx, "tom", new_text(**ALL_WRONG))
    assert outcome == "user_error" and reply.title == "That didn't work" and reply.tone == "error"
    for fragment in ("title: at most 300 characters",
                     "services: unknown service mainframe (services: payments, webshop, wms, data-platform, email, "
                     "vpn, hr-portal)",
                     "type: 'major' is not a type: standard, normal or emergency",
                     "risk: 'extreme' is not one of low, medium, high",
                     "impact: 'huge' is not one of low, medium, high",
                     "start: '2026-13-01 20:00' is not a date and time like YYYY-MM-DD HH:MM or tomorrow 20:00",
                     "end: 'soon' is not a date and time like YYYY-MM-DD HH:MM or tomorrow 20:00",
                     "implementer: no person 'bob' in app.yaml"):
        assert fragment in reply.text, (fragment, reply.text)
    assert reply.footer == f"Try: /svc {plan.NEW_EXAMPLE}"  # a working example, with the slash command
    assert state_of(database_url) == before
    assert db_count(database_url, Change) == 0 and db_count(database_url, OutboxMessage) == 0
    assert db_count(database_url, AuditRecord) == 0


def test_create_raises_form_invalid_naming_each_field(ctx, database_url):
    with pytest.raises(FormInvalid) as caught:
        changes.create(ctx, Command(person(ctx, "tom"), "change new"), ALL_WRONG, source="chat")
    assert set(caught.value.errors) == {"title", "services", "type", "risk", "impact", "start", "end", "implementer"}
    assert caught.value.errors["services"].startswith("unknown service mainframe")
    # nothing at all given: each required field says so
    with pytest.raises(FormInvalid) as caught:
        changes.create(ctx, Command(person(ctx, "tom"), "change new"), {"description": "Tidy up"}, source="chat")
    assert caught.value.errors == {
        "title": "required", "services": "required: the services the change touches",
        "risk": "required: low, medium or high", "start": "required", "end": "required",
        "backout": "a normal change needs a back-out plan"}
    assert db_count(database_url, Change) == 0 and db_count(database_url, OutboxMessage) == 0
    assert db_count(database_url, AuditRecord) == 0


@pytest.mark.parametrize("over, field, message", [
    ({"end": "2026-03-10 19:30"}, "end", "must be after the start"),
    ({"end": "2026-03-10 20:00"}, "end", "must be after the start"),
    ({"services": ","}, "services", "name at least one service"),
    ({"services": "email,mainframe,tills"}, "services", "unknown services mainframe, tills"),
    ({"type": "standard"}, "model", "a standard change follows a model from the catalogue: say model=…"),
    ({"model": "reboot-the-world"}, "model", "no standard change model 'reboot-the-world' "
                                             "(models: restart-wms-workers, vpn-cert-rotation)"),
    ({"model": "restart-wms-workers", "type": "normal"}, "type", "a change that follows a standard model is a "
                                                                "standard change"),
    ({"backout": ""}, "backout", "a normal change needs a back-out plan"),
    ({"start": "2026-03-02 08:00", "end": "2026-03-02 10:00"}, "start",
     "is in the past (only an emergency change may start at once)"),
    ({"start": "next tuesday"}, "start",
     "'next tuesday' is not a date and time like YYYY-MM-DD HH:MM or tomorrow 20:00"),
    ({"start": "tomorrow 25:00"}, "start", "'tomorrow 25:00' is not a time of day"),
    ({"implementer": "U0NOBODY"}, "implementer", "no person 'U0NOBODY' in app.yaml"),
])
def test_one_bad_field_is_named_and_nothing_is_written(ctx, database_url, over, field, message):
    values = {k: v for k, v in {**MAIL, **over}.items() if v != ""}
    with pytest.raises(FormInvalid) as caught:
        changes.create(ctx, Command(person(ctx, "tom"), "change new"), values, source="chat")
    assert caught.value.errors.get(field, "").startswith(message), caught.value.errors
    reply, outcome = run(ctx, "tom", new_text(**values))
    assert outcome == "user_error" and f"{field}: {message}" in reply.text
    assert set(tally(database_url).values()) == {0}


def test_an_emergency_change_without_a_back_out_plan_is_told_in_good_english(ctx):
    values = {**MAIL, "type": "emergency"}
    del values["backout"]
    with pytest.raises(FormInvalid) as caught:
        changes.create(ctx, Command(person(ctx, "tom"), "change new"), values, source="chat")
    assert caught.value.errors == {"backout": "an emergency change needs a back-out plan"}


@pytest.mark.parametrize("field", ["title", "services", "risk", "impact"])
def test_a_standard_change_may_not_override_what_its_model_says(ctx, database_url, field):
    value = {"title": "Restart", "services": "wms", "risk": "low", "impact": "low"}[field]
    reply, outcome = run(ctx, "meera", f'change new model=restart-wms-workers start="2026-03-07 02:00" {field}={value}')
    assert outcome == "user_error"
    assert f"{field}: comes from the standard model 'restart-wms-workers'; leave it out" in reply.text
    assert reply.footer == f"Try: /svc {plan.STANDARD_EXAMPLE}"
    assert db_count(database_url, Change) == 0


def test_a_standard_change_with_a_bad_start_names_only_the_start(ctx):
    with pytest.raises(FormInvalid) as caught:
        changes.create(ctx, Command(person(ctx, "meera"), "change new"),
                       {"model": "restart-wms-workers", "start": "saturday night"}, source="chat")
    assert set(caught.value.errors) == {"start"}


def test_an_unknown_field_is_named(ctx, database_url):
    reply, outcome = run(ctx, "tom", 'change new titel="Rotate certificates" servces=email risk=low')
    assert outcome == "user_error"
    assert reply.text.startswith("Unknown fields: servces, titel. Fields: title, services, type")
    assert db_count(database_url, Change) == 0


def test_words_outside_key_value_pairs_are_not_silently_dropped(ctx, database_url):
    reply, outcome = run(ctx, "tom", 'change new title=Rotate the relay certificates services=email risk=low '
                                     'start="2026-03-10 20:00" end="2026-03-10 21:00" backout=Reinstall')
    assert outcome == "user_error"
    assert db_count(database_url, Change) == 0


def test_curly_quotes_from_a_phone_keyboard_group_words_in_new(ctx, database_url):
    ok(ctx, "tom", "change new title=“Rotate the relay certificates” services=email risk=low "
                   "start=“2026-03-10 20:00” end=“2026-03-10 21:00” backout=“Reinstall the old one”")
    row = the_change(database_url, 1)
    assert (row.title, row.planned_start, row.backout_plan) == \
        ("Rotate the relay certificates", MAIL_START, "Reinstall the old one")


def test_change_new_without_fields_on_the_console_explains_the_one_line_form(ctx, database_url):
    reply, outcome = run(ctx, console_actor(ctx, "tom"), "change new")
    assert outcome == "user_error" and reply.form is None
    assert "key=value pairs" in reply.text and plan.STANDARD_EXAMPLE in reply.text
    assert reply.footer == f"Try: {plan.NEW_EXAMPLE}"  # no slash command on the console
    assert db_count(database_url, Change) == 0 and db_count(database_url, AuditRecord) == 0


@pytest.mark.parametrize("platform, who, zone", [("slack", "tom", "Europe/London"),
                                                 ("teams", "meera", "Asia/Kolkata")])
def test_change_new_without_fields_in_chat_opens_the_form(ctx, database_url, platform, who, zone):
    reply, outcome = run(ctx, who, "change new", platform=platform)
    assert outcome == "ok"
    form = reply.form
    assert form is not None and form.name == "change_new" and form.submit == "Submit for approval"
    assert [i.id for i in form.inputs] == ["title", "services", "type", "model", "risk", "impact", "start", "end",
                                           "implementer", "description", "implementation", "backout", "test"]
    by_id = {i.id: i for i in form.inputs}
    # title and services may be left out: a standard change takes them from its model; the check is the server's
    assert {i.id for i in form.inputs if i.required} == {"type", "risk", "start"}
    assert [c.value for c in by_id["services"].choices] == [s.id for s in ctx.config.services]
    assert [c.value for c in by_id["model"].choices] == ["restart-wms-workers", "vpn-cert-rotation"]
    assert by_id["implementer"].value == who
    assert zone in by_id["start"].hint
    assert all(not i.error for i in form.inputs)
    assert form.example == plan.NEW_EXAMPLE
    assert db_count(database_url, Change) == 0 and db_count(database_url, OutboxMessage) == 0


def test_the_form_answers_create_the_change(ctx, database_url):
    cmd = Command(person(ctx, "sanne"), "form change_new", via="form")
    values = {"title": "Upgrade the VPN client profile", "services": ["vpn", "email"], "type": "normal",
              "risk": "medium", "impact": "low", "start": "2026-03-10 21:00", "end": "2026-03-10 22:00",
              "implementer": "lucas", "description": "", "implementation": "", "backout": "Push the old profile",
              "test": "", "surprise": "ignored"}
    reply = changes.submit_new(ctx, cmd, values, {})
    assert reply.title == "CHG-1 submitted · Upgrade the VPN client profile"
    row = the_change(database_url, 1)
    # Amsterdam: UTC+1 in March
    assert (row.planned_start, row.planned_end) == (utc(2026, 3, 10, 20, 0), utc(2026, 3, 10, 21, 0))
    assert (row.requester, row.implementer, row.risk, row.impact, row.state) == \
        ("sanne", "lucas", "medium", "low", "awaiting-approval")
    assert audits(database_url, "CHG-1")[0][3]["via"] == "form"
    assert sorted(s.service_id for s in db_rows(database_url, ChangeService)) == ["email", "vpn"]


def test_wrong_form_answers_come_back_on_the_form_with_what_was_typed(ctx, database_url):
    cmd = Command(person(ctx, "sanne"), "form change_new", via="form")
    values = {"title": "Upgrade the VPN client profile", "services": [], "type": "normal", "risk": "medium",
              "start": "2026-03-10 21:00", "end": "2026-03-10 20:00", "implementer": "lucas"}
    with pytest.raises(FormInvalid) as caught:
        changes.submit_new(ctx, cmd, values, {})
    assert set(caught.value.errors) == {"services", "end", "backout"}
    form = caught.value.form
    assert form is not None and form.name == "change_new"
    by_id = {i.id: i for i in form.inputs}
    assert by_id["title"].value == "Upgrade the VPN client profile" and by_id["title"].error == ""
    assert by_id["end"].value == "2026-03-10 20:00" and by_id["end"].error == "must be after the start"
    assert by_id["services"].error == "name at least one service"
    assert by_id["backout"].error == "a normal change needs a back-out plan"
    assert db_count(database_url, Change) == 0 and db_count(database_url, AuditRecord) == 0


def test_a_standard_change_can_be_submitted_through_the_form(ctx, database_url):
    model = ctx.config.changes.model("restart-wms-workers")
    cmd = Command(person(ctx, "meera"), "form change_new", via="form")
    values = {"title": model.title, "services": ["wms"], "type": "standard", "model": model.id, "risk": "medium",
              "impact": "medium", "start": "2026-03-07 02:00", "end": "", "implementer": "meera"}
    changes.submit_new(ctx, cmd, values, {})
    assert the_change(database_url, 1).kind == "standard"


# --- times in the asker's zone ---------------------------------------------------------------------------

@pytest.mark.parametrize("who, start, end, utc_start, when", [
    ("tom", "2026-12-01 20:00", "2026-12-01 21:00", utc(2026, 12, 1, 20, 0), "Tue 01 Dec 2026 20:00 – 21:00 GMT"),
    ("meera", "2026-12-01 20:00", "2026-12-01 21:00", utc(2026, 12, 1, 14, 30), "Tue 01 Dec 2026 20:00 – 21:00 IST"),
    ("sanne", "2026-12-01 20:00", "2026-12-01 21:00", utc(2026, 12, 1, 19, 0), "Tue 01 Dec 2026 20:00 – 21:00 CET"),
    # British Summer Time from 29 March
    ("tom", "2026-04-14 20:00", "2026-04-14 21:00", utc(2026, 4, 14, 19, 0), "Tue 14 Apr 2026 20:00 – 21:00 BST"),
    # an explicit offset wins over the asker's zone; the answer still shows the asker's clock
    ("meera", "2026-12-01T20:00:00+01:00", "2026-12-01T21:00:00+01:00", utc(2026, 12, 1, 19, 0),
     "Wed 02 Dec 2026 00:30 – 01:30 IST"),
    ("tom", "2026-12-01 23:30", "2026-12-02 00:30", utc(2026, 12, 1, 23, 30), "Tue 01 Dec 2026 23:30 – Wed 02 Dec 00:30 GMT"),
])
def test_times_are_read_and_shown_in_the_askers_zone(ctx, database_url, who, start, end, utc_start, when):
    reply = ok(ctx, who, new_text(title="Move the HR portal to the new cluster", services="hr-portal", risk="low",
                                  start=start, end=end, backout="Point DNS back at the old cluster"))
    row = the_change(database_url, 1)
    assert (row.planned_start, row.planned_end) == (utc_start, utc_start + timedelta(hours=1))
    assert fields(reply)["When"] == when
    (svc,) = db_rows(database_url, ChangeService)
    assert (svc.planned_start, svc.planned_end) == (row.planned_start, row.planned_end)


@pytest.mark.parametrize("now, who, start, end, expected_start, expected_end", [
    (T0, "tom", "tomorrow 20:00", "tomorrow 21:30", utc(2026, 3, 3, 20, 0), utc(2026, 3, 3, 21, 30)),
    (T0, "meera", "tomorrow 20:00", "tomorrow 21:30", utc(2026, 3, 3, 14, 30), utc(2026, 3, 3, 16, 0)),
    (T0, "tom", "today 18:00", "TODAY 19:00", utc(2026, 3, 2, 18, 0), utc(2026, 3, 2, 19, 0)),
    # 20:00 UTC on Monday is already 01:30 on Tuesday in Pune: its tomorrow is Wednesday
    (utc(2026, 3, 2, 20, 0), "meera", "tomorrow 09:30", "tomorrow 10:30", utc(2026, 3, 4, 4, 0), utc(2026, 3, 4, 5, 0)),
    (utc(2026, 3, 2, 20, 0), "tom", "tomorrow 09:30", "tomorrow 10:30", utc(2026, 3, 3, 9, 30), utc(2026, 3, 3, 10, 30)),
    (utc(2026, 3, 2, 20, 0), "tom", "today 23:00", "tomorrow 01:00", utc(2026, 3, 2, 23, 0), utc(2026, 3, 3, 1, 0)),
])
def test_today_and_tomorrow_are_the_askers_days(ctx, clock, database_url, now, who, start, end, expected_start,
                                                expected_end):
    clock.to(now)
    ok(ctx, who, new_text(title="Re-index the data platform warehouse", services="data-platform", risk="low",
                          start=start, end=end, backout="Restore last night's index snapshot"))
    row = the_change(database_url, 1)
    assert (row.planned_start, row.planned_end) == (expected_start, expected_end)


def test_a_start_in_the_past_is_refused_except_for_an_emergency(ctx, database_url):
    # 14:00 in Pune on Monday was 08:30 UTC, half an hour before now
    reply, outcome = run(ctx, "meera", new_text(**{**MAIL, "start": "today 14:00", "end": "today 16:00"}))
    assert outcome == "user_error"
    assert "start: is in the past (only an emergency change may start at once)" in reply.text
    assert db_count(database_url, Change) == 0 and db_count(database_url, AuditRecord) == 0

    # a few minutes ago is still now (the time it took to type it)
    cid = mail(ctx, "tom", start="2026-03-02 08:56", end="2026-03-02 10:00", risk="low")
    assert the_change(database_url, cid).planned_start == utc(2026, 3, 2, 8, 56)

    # an emergency change may have started already
    cid = submit(ctx, "meera", title="Restore the data platform loader after the disk filled",
                 services="data-platform", type="emergency", risk="high", start="today 14:00", end="today 16:00",
                 backout="Stop the loader and restore yesterday's snapshot")
    row = the_change(database_url, cid)
    assert (row.kind, row.planned_start, row.state, row.approvals_needed) == \
        ("emergency", utc(2026, 3, 2, 8, 30), "awaiting-approval", 1)
    # the ECAB is asked, not the whole CAB
    assert dm_people(ctx, database_url, f"change:{cid}:ask:") == {"priya": DM, "arjun": DM}


# === approvals ============================================================================================

@pytest.mark.parametrize("risk, needed", [("low", 0), ("medium", 1), ("high", 2)])
def test_approvals_needed_follow_the_risk_in_app_yaml(ctx, database_url, risk, needed):
    assert ctx.config.changes.approvals == {"low": 0, "medium": 1, "high": 2}
    cid = mail(ctx, risk=risk)
    row = the_change(database_url, cid)
    assert row.approvals_needed == needed
    if needed == 0:
        assert row.state == "scheduled"
        assert keyed(database_url, f"change:{cid}:ask:") == []
        assert "no approval needed" in keyed(database_url, f"change:{cid}:announce:slack:C0ANNOUNCE:history:1")[0] \
            .message["title"]
        return
    assert row.state == "awaiting-approval"
    approvers = ["sanne", "arjun"]
    for n, who in enumerate(approvers[:needed], 1):
        reply = ok(ctx, who, f"change approve CHG-{cid} Looks good to me")
        assert reply.title == f"Approved CHG-{cid}"
        row = the_change(database_url, cid)
        assert row.state == ("scheduled" if n == needed else "awaiting-approval")
        assert reply.text == f"{MAIL['title']} — now {row.state}."
    votes = live_votes(database_url, cid)
    assert [(v.person_id, v.decision, v.comment, v.via, v.platform, v.at) for v in votes] == \
        [(who, "approve", "Looks good to me", "text", "slack", T0) for who in approvers[:needed]]
    assert actions(database_url, f"CHG-{cid}").count("change.approve") == needed
    assert [a[3] for a in audits(database_url, f"CHG-{cid}") if a[0] == "change.approve"][0] == \
        {"via": "text", "comment": "Looks good to me"}
    assert actions(database_url, f"CHG-{cid}")[-1] == "change.state"
    history = keyed(database_url, f"change:{cid}:announce:slack:C0ANNOUNCE:history:")
    assert history[-1].message["title"].endswith("📅 Scheduled (approved)")


def test_a_high_risk_change_shows_its_approvals_so_far(ctx, database_url):
    cid = mail(ctx, risk="high")
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    reply = ok(ctx, "grace", f"change show CHG-{cid}")
    assert fields(reply)["Approvals"] == "1 of 2: Sanne de Vries"
    # awaiting approval: the announcement's buttons, which run through the approvers' checks
    assert [b.run for b in reply.buttons] == [f"change approve CHG-{cid}", f"change reject CHG-{cid}"]
    votes = section(reply, "Votes")
    assert votes.text == "👍 Sanne de Vries (text, 02 Mar 09:00)"
    history = keyed(database_url, f"change:{cid}:announce:slack:C0ANNOUNCE:history:2")
    assert history[0].message["title"] == "👍 Sanne de Vries approved (1 of 2)"


def test_an_emergency_change_needs_one_approval_from_the_ecab_only(ctx, database_url):
    cid = submit(ctx, "tom", title="Block the card-testing attack at the payment gateway", services="payments",
                 type="emergency", risk="high", start="2026-03-10 22:15", end="2026-03-10 23:00",
                 backout="Remove the WAF rule")
    assert the_change(database_url, cid).approvals_needed == 1
    before = state_of(database_url)
    reply, outcome = run(ctx, "sanne", f"change approve CHG-{cid}")  # CAB, but not ECAB
    assert outcome == "refused"
    assert reply.text == (f"Only members of the ECAB (roles.emergency_cab) can approve an emergency change like "
                          f"CHG-{cid}; your vote was not counted.")
    assert state_of(database_url) == before
    ok(ctx, "arjun", f"change approve CHG-{cid} Go")
    row = the_change(database_url, cid)
    assert row.state == "scheduled"
    assert [(v.person_id, v.decision) for v in live_votes(database_url, cid)] == [("arjun", "approve")]


def test_the_requester_and_the_implementer_cannot_approve_their_own_change(ctx, database_url):
    cid = mail(ctx, "sanne", implementer="arjun", risk="high")
    # neither is asked
    assert dm_people(ctx, database_url, f"change:{cid}:ask:") == {"priya": DM}
    before = state_of(database_url)
    reply, outcome = run(ctx, "sanne", f"change approve CHG-{cid}")
    assert outcome == "refused"
    assert reply.text == f"You requested CHG-{cid}: someone else must approve or reject it."
    reply, outcome = run(ctx, "arjun", f"change approve CHG-{cid}", platform="teams")
    assert outcome == "refused"
    assert reply.text == f"You implement CHG-{cid}: someone else must approve or reject it."
    reply, outcome = run(ctx, "arjun", f"change reject CHG-{cid} Not mine to judge")
    assert outcome == "refused"
    assert state_of(database_url) == before


@pytest.mark.parametrize("who", ["tom", "grace", "lucas", "meera"])
def test_someone_not_on_the_cab_cannot_approve_or_reject(ctx, database_url, who):
    cid = mail(ctx, "priya", risk="medium")
    before = state_of(database_url)
    for text in (f"change approve CHG-{cid}", f"change reject CHG-{cid} I do not like it"):
        reply, outcome = run(ctx, who, text)
        assert outcome == "refused" and reply.title == "Not allowed"
        assert reply.text.startswith("Only members of the CAB (roles.cab) can ")
    assert state_of(database_url) == before


def test_approving_twice_is_refused_and_counted_once(ctx, database_url):
    cid = mail(ctx, risk="high")
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    before = state_of(database_url)
    reply, outcome = run(ctx, "sanne", f"change approve CHG-{cid} Still fine")
    assert outcome == "user_error" and reply.text == f"You already approved CHG-{cid}."
    assert state_of(database_url) == before
    assert len(live_votes(database_url, cid)) == 1 and the_change(database_url, cid).state == "awaiting-approval"


def test_one_rejection_with_a_reason_rejects(ctx, database_url, clock):
    cid = mail(ctx, risk="high")
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    clock.advance(minutes=20)
    reply = ok(ctx, "arjun", f"change reject CHG-{cid} Clashes with the month-end close")
    assert reply.title == f"Rejected CHG-{cid}"
    row = the_change(database_url, cid)
    assert (row.state, row.closed_at) == ("rejected", clock())
    assert [(v.person_id, v.decision, v.comment) for v in live_votes(database_url, cid)] == \
        [("sanne", "approve", ""), ("arjun", "reject", "Clashes with the month-end close")]
    assert ("change.reject", "arjun", "slack", {"via": "text", "comment": "Clashes with the month-end close"}) in \
        audits(database_url, f"CHG-{cid}")
    history = keyed(database_url, f"change:{cid}:announce:teams:")
    assert history[-1].message["title"] == "⛔ Arjun Mehta rejected it: Clashes with the month-end close"
    # nothing left to decide
    reply, outcome = run(ctx, "priya", f"change approve CHG-{cid}")
    assert outcome == "user_error"
    assert reply.text == f"CHG-{cid} is rejected; only a change awaiting approval can be approved."
    assert dm_people(ctx, database_url, f"change:{cid}:subscribers:") == {}


def test_a_rejection_without_a_reason_is_an_error_on_the_console(ctx, database_url):
    cid = mail(ctx, risk="medium")
    before = state_of(database_url)
    reply, outcome = run(ctx, console_actor(ctx, "priya"), f"change reject CHG-{cid}")
    assert outcome == "user_error" and reply.text == "A rejection needs a reason."
    assert reply.form is None
    assert state_of(database_url) == before
    with pytest.raises(UserError):
        approvals.decide(ctx, Command(console_actor(ctx, "priya"), f"change reject CHG-{cid}"), cid, "reject", "  ")


@pytest.mark.parametrize("platform", BOTH)
def test_a_rejection_without_a_reason_in_chat_asks_for_it_on_a_form(ctx, database_url, platform):
    cid = mail(ctx, risk="medium")
    before = state_of(database_url)
    reply, outcome = run(ctx, "priya", f"change reject CHG-{cid}", platform=platform)
    assert outcome == "ok"
    form = reply.form
    assert (form.name, form.context, form.submit) == ("change_reject", {"change": cid}, "Reject")
    assert [(i.id, i.kind, i.required) for i in form.inputs] == [("reason", "long", True)]
    assert state_of(database_url) == before

    cmd = Command(person(ctx, "priya", platform), "form change_reject", via="form")
    with pytest.raises(FormInvalid) as caught:
        approvals.submit_reject(ctx, cmd, {"reason": "   "}, form.context)
    assert caught.value.errors == {"reason": "required"}
    assert state_of(database_url) == before
    with pytest.raises(UserError):
        approvals.submit_reject(ctx, cmd, {"reason": "No"}, {})

    reply = approvals.submit_reject(ctx, cmd, {"reason": "The back-out plan is not tested"}, form.context)
    assert reply.title == f"Rejected CHG-{cid}"
    (vote,) = live_votes(database_url, cid)
    assert (vote.person_id, vote.decision, vote.comment, vote.via, vote.platform) == \
        ("priya", "reject", "The back-out plan is not tested", "form", platform)
    assert the_change(database_url, cid).state == "rejected"


def test_an_approver_may_switch_from_approve_to_reject(ctx, database_url, clock):
    cid = mail(ctx, risk="high")
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    clock.advance(hours=1)
    ok(ctx, "sanne", f"change reject CHG-{cid} The back-out plan misses the DNS step")
    first, second = all_votes(database_url, cid)
    assert (first.decision, first.withdrawn_at) == ("approve", clock())
    assert (second.decision, second.withdrawn_at, second.comment) == \
        ("reject", None, "The back-out plan misses the DNS step")
    assert the_change(database_url, cid).state == "rejected"


def test_reactions_count_as_votes_and_a_reaction_may_reject_without_words(ctx, database_url):
    cid = mail(ctx, "tom", risk="medium")
    before = state_of(database_url)
    reply, outcome = run(ctx, "meera", f"change approve CHG-{cid}", via="reaction")
    assert outcome == "refused"
    assert reply.text == (f"Only members of the CAB (roles.cab) can approve a change like CHG-{cid}; "
                          "your reaction was not counted.")
    assert state_of(database_url) == before
    ok(ctx, "sanne", f"change reject CHG-{cid}", via="reaction")
    (vote,) = live_votes(database_url, cid)
    assert (vote.decision, vote.comment, vote.via) == ("reject", "Rejected with a reaction on the announcement",
                                                       "reaction")
    assert the_change(database_url, cid).state == "rejected"


def test_an_approval_taken_back_reopens_the_change_until_someone_approves_again(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="medium")  # one approval needed
    ok(ctx, "sanne", f"change approve CHG-{cid}", via="reaction")
    assert the_change(database_url, cid).state == "scheduled"
    clock.advance(minutes=5)
    reply = ok(ctx, "sanne", f"change retract CHG-{cid}")
    assert (reply.title, reply.text) == (f"Approval of CHG-{cid} taken back", f"{MAIL['title']} — now awaiting-approval.")
    (vote,) = all_votes(database_url, cid)
    assert (vote.person_id, vote.withdrawn_at) == ("sanne", clock())
    assert the_change(database_url, cid).state == "awaiting-approval"
    assert ("change.retract", "sanne", "slack", {"via": "text"}) in audits(database_url, f"CHG-{cid}")
    lines = [r.message["title"] for r in keyed(database_url, f"change:{cid}:announce:slack:C0ANNOUNCE:history:")]
    assert lines[-1] == "↩️ Sanne de Vries took back their approval (0 of 1) — approval needed again"
    # The approvers are asked again, sanne too: her approval no longer counts.
    asked = dm_people(ctx, database_url, f"change:{cid}:ask:")
    assert {"sanne", "arjun", "priya"} <= set(asked)
    ok(ctx, "arjun", f"change approve CHG-{cid}")
    assert the_change(database_url, cid).state == "scheduled"


def test_what_cannot_be_taken_back_is_refused_and_changes_nothing(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="medium")
    before = state_of(database_url)
    for text, says in [(f"change retract CHG-{cid}", f"You have no vote on CHG-{cid} to take back."),
                       ("change retract", "Say which change, like CHG-12."),
                       (f"change retract CHG-{cid} now please", "Say only which change, like CHG-12."),
                       ("change retract CHG-999", "There is no CHG-999.")]:
        reply, outcome = run(ctx, "sanne", text)
        assert (outcome, reply.text) == ("user_error", says), text
        assert state_of(database_url) == before
    # A removed reaction that never counted (or counted as the other kind) takes nothing back, quietly.
    ok(ctx, "meera", f"change retract CHG-{cid} approve", via="reaction")
    ok(ctx, "arjun", f"change approve CHG-{cid}")
    ok(ctx, "arjun", f"change retract CHG-{cid} reject", via="reaction")
    assert [(v.person_id, v.withdrawn_at) for v in all_votes(database_url, cid)] == [("arjun", None)]
    assert "change.retract" not in actions(database_url, f"CHG-{cid}")

    rejected = bring_to(ctx, "rejected")
    before = state_of(database_url)
    reply, outcome = run(ctx, "sanne", f"change retract CHG-{rejected}", via="reaction")
    assert (outcome, reply.text) == ("user_error", f"Your rejection ended CHG-{rejected}, and a rejection cannot be "
                                                   "taken back; submit the change again instead.")
    assert state_of(database_url) == before


def test_an_approval_cannot_be_taken_back_once_the_change_started(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="medium", implementer="grace")
    ok(ctx, "arjun", f"change approve CHG-{cid}")
    clock.to(MAIL_START + timedelta(minutes=1))
    ok(ctx, "grace", f"change start CHG-{cid}")
    before = state_of(database_url)
    reply, outcome = run(ctx, "arjun", f"change retract CHG-{cid}")
    assert (outcome, reply.text) == ("user_error", f"CHG-{cid} is in-progress; an approval can be taken back only "
                                                   "before the change starts.")
    assert state_of(database_url) == before


def test_a_delivered_announcement_leads_back_to_its_change(ctx, database_url):
    cid = mail(ctx, "tom", risk="medium")
    posted = deliver_announcements(ctx, cid)
    slack_key, teams_key = the_change(database_url, cid).announcements
    assert messages.announced_change(ctx, "slack", ANNOUNCE_SLACK, posted[slack_key]) == cid
    assert messages.announced_change(ctx, "teams", ANNOUNCE_TEAMS, posted[teams_key]) == cid
    assert messages.announced_change(ctx, "teams", ANNOUNCE_SLACK, posted[slack_key]) is None
    assert messages.announced_change(ctx, "slack", PAYMENTS_SLACK, posted[slack_key]) is None
    assert messages.announced_change(ctx, "slack", ANNOUNCE_SLACK, None) is None


def test_an_unknown_change_or_none_named(ctx):
    reply, outcome = run(ctx, "priya", "change approve CHG-99")
    assert outcome == "user_error" and reply.text == "There is no CHG-99."
    reply, outcome = run(ctx, "priya", "change approve")
    assert outcome == "user_error" and reply.text == "Say which change, like CHG-12."
    assert reply.footer == "Try: /svc change approve CHG-12 Looks good"
    reply, outcome = run(ctx, "priya", "change approve 12")
    assert outcome == "user_error" and reply.text == "Say which change, like CHG-12."
    reply, outcome = run(ctx, "priya", "change frobnicate CHG-1")
    assert outcome == "user_error" and reply.text == "I don't know 'change frobnicate'."


# === governance: freezes, conflicts, maintenance windows ===================================================

PEAK = dict(title="Deploy the new checkout page", services="webshop", risk="medium", start="2026-11-27 10:00",
            end="2026-11-27 11:00", backout="Redeploy the previous release")
PEAK_TEXT = "inside the freeze 'Peak trading' (26 Nov 00:00 – 01 Dec 08:00 UTC)"


def test_a_change_inside_a_freeze_is_shown_as_blocked_and_service_managers_are_told(ctx, database_url):
    reply = ok(ctx, "sanne", new_text(**PEAK))
    cid = 1
    governance = section(reply, "Governance")
    assert governance.text == f"⛔ {PEAK_TEXT}\nApproval is blocked until a service manager overrides."
    assert the_change(database_url, cid).state == "awaiting-approval"
    # the only service manager is told, on both platforms, with how to let it through
    assert dm_people(ctx, database_url, f"change:{cid}:override:") == {"priya": DM}
    dm = keyed(database_url, f"change:{cid}:override:")[0].message
    assert dm["title"] == f"CHG-{cid} needs a service manager's decision"
    assert dm["text"] == f"{PEAK['title']}: {PEAK_TEXT}."
    assert dm["footer"] == f"To let it through: change override CHG-{cid} REASON"
    # the announcement says so too
    (anchor,) = keyed(database_url, f"change:{cid}:announce:slack:C0SHOP0001")[:1]
    assert "Approval is blocked until a service manager overrides." in all_text(anchor.message)


def test_a_freeze_blocks_approval_until_a_service_manager_overrides_with_a_reason(ctx, database_url, clock):
    ok(ctx, "tom", new_text(**PEAK))
    cid = 1
    before = state_of(database_url)
    reply, outcome = run(ctx, "arjun", f"change approve CHG-{cid}")
    assert outcome == "user_error"
    assert reply.text == (f"CHG-{cid} cannot be approved yet: it is {PEAK_TEXT}. "
                          "A service manager must accept this first.")
    assert reply.footer == f"Try: /svc change override CHG-{cid} Agreed with the business owner"
    assert state_of(database_url) == before

    # CAB members and everyone else may not override
    for who in ("arjun", "sanne", "tom", "meera"):
        reply, outcome = run(ctx, who, f"change override CHG-{cid} The business agreed")
        assert outcome == "refused" and "Only a service manager (roles.service_managers)" in reply.text
    reply, outcome = run(ctx, "priya", f"change override CHG-{cid}")
    assert outcome == "user_error" and reply.text == "An override needs a reason."
    assert state_of(database_url) == before

    clock.advance(minutes=5)
    reply = ok(ctx, "priya", f"change override CHG-{cid} Checkout fix agreed with the e-commerce director")
    assert reply.title == f"Overrode CHG-{cid}" and reply.text == "Now awaiting-approval."
    row = the_change(database_url, cid)
    assert row.override == {"by": "priya", "reason": "Checkout fix agreed with the e-commerce director",
                            "at": clock().isoformat(), "issues": ["freeze:Peak trading"]}
    assert ("change.override", "priya", "slack",
            {"via": "text", "reason": "Checkout fix agreed with the e-commerce director",
             "issues": ["freeze:Peak trading"]}) in audits(database_url, f"CHG-{cid}")
    history = keyed(database_url, f"change:{cid}:announce:slack:C0SHOP0001:history:")
    assert history[-1].message["title"] == (f"⚠️ Priya Nair (service manager) overrode: {PEAK_TEXT}. "
                                            "Reason: Checkout fix agreed with the e-commerce director")
    show = ok(ctx, "tom", f"change show CHG-{cid}")
    assert section(show, "Governance").text == f"✔️ overridden: {PEAK_TEXT}"
    assert section(show, "Override").text == "Priya Nair: Checkout fix agreed with the e-commerce director"

    # now an approval counts and schedules it
    ok(ctx, "arjun", f"change approve CHG-{cid}")
    assert the_change(database_url, cid).state == "scheduled"

    # nothing left to override
    reply, outcome = run(ctx, "priya", f"change override CHG-{cid} Again")
    assert outcome == "user_error" and reply.text == f"Nothing blocks CHG-{cid}; there is nothing to override."


def test_a_blocked_change_may_still_be_rejected(ctx, database_url):
    cid = submit(ctx, "tom", **PEAK)
    ok(ctx, "sanne", f"change reject CHG-{cid} Not during peak trading")
    assert the_change(database_url, cid).state == "rejected"
    reply, outcome = run(ctx, "priya", f"change override CHG-{cid} Too late")
    assert outcome == "user_error"
    assert reply.text == f"CHG-{cid} is rejected; only a change awaiting approval or scheduled can be overridden."


def test_an_override_schedules_a_low_risk_change_at_once(ctx, database_url):
    cid = submit(ctx, "grace", **{**PEAK, "risk": "low"})
    assert the_change(database_url, cid).state == "awaiting-approval"
    ok(ctx, "priya", f"change override CHG-{cid} Price display bug fix, agreed with the business")
    assert the_change(database_url, cid).state == "scheduled"


@pytest.mark.parametrize("services, start, end, frozen", [
    ("email", "2026-11-27 10:00", "2026-11-27 11:00", False),     # the freeze names payments and webshop only
    ("webshop", "2026-12-01 08:00", "2026-12-01 09:00", False),   # it ends at 08:00
    ("webshop", "2026-11-25 23:00", "2026-11-26 00:30", True),    # it begins at midnight
    ("webshop", "2026-12-01 07:30", "2026-12-01 09:00", True),
    ("email, webshop", "2026-11-30 12:00", "2026-11-30 13:00", True),
    # the year-end close covers every service, from 18:00 in Amsterdam: 17:00 in London
    ("email", "2026-12-23 16:00", "2026-12-23 17:00", False),
    ("email", "2026-12-23 16:30", "2026-12-23 17:30", True),
])
def test_freezes_cover_their_services_and_their_span(ctx, database_url, services, start, end, frozen):
    reply = ok(ctx, "tom", new_text(**{**PEAK, "services": services, "start": start, "end": end, "risk": "low"}))
    governance = section(reply, "Governance")
    row = the_change(database_url, 1)
    if frozen:
        assert governance is not None and "inside the freeze" in governance.text
        assert row.state == "awaiting-approval"
    else:
        assert governance is None
        assert row.state == "scheduled"


def test_a_conflict_with_another_change_on_the_same_service_is_shown_and_blocks(ctx, database_url):
    first = mail(ctx, "tom", risk="low", title="Patch the mail relays")
    assert the_change(database_url, first).state == "scheduled"
    second = mail(ctx, "grace", services="vpn, email", start="2026-03-10 20:30", end="2026-03-10 21:30",
                  title="Renew the VPN and mail certificates")
    text = f"overlaps CHG-{first} on Email and Calendar"
    show = ok(ctx, "grace", f"change show CHG-{second}")
    assert section(show, "Governance").text.splitlines()[0] == f"⛔ {text}"
    reply, outcome = run(ctx, "sanne", f"change approve CHG-{second}")
    assert outcome == "user_error" and f"it is {text}." in reply.text
    assert live_votes(database_url, second) == []
    assert dm_people(ctx, database_url, f"change:{second}:override:") == {"priya": DM}

    # back to back is not an overlap
    third = mail(ctx, "grace", start="2026-03-10 19:00", end="2026-03-10 20:00", title="Restart the mail relays")
    assert the_change(database_url, third).planned_end == the_change(database_url, first).planned_start
    assert section(ok(ctx, "grace", f"change show CHG-{third}"), "Governance") is None


@pytest.mark.parametrize("first_becomes, blocks", [
    ("awaiting-approval", True), ("scheduled", True), ("in-progress", True), ("closed", False),
    ("cancelled", False), ("rejected", False),
])
def test_only_changes_still_holding_their_window_conflict(ctx, database_url, first_becomes, blocks):
    first = mail(ctx, "tom", risk="low" if first_becomes != "awaiting-approval" and first_becomes != "rejected"
                 else "medium", title="Patch the mail relays")
    steps = {"in-progress": ["start"], "closed": ["start", "complete"], "cancelled": ["cancel"]}
    for verb in steps.get(first_becomes, []):
        ok(ctx, "tom", f"change {verb} CHG-{first}")
    if first_becomes == "rejected":
        ok(ctx, "sanne", f"change reject CHG-{first} Not this week")
    assert the_change(database_url, first).state == first_becomes
    second = mail(ctx, "grace", risk="low", start="2026-03-10 20:30", end="2026-03-10 21:30")
    assert the_change(database_url, second).state == ("awaiting-approval" if blocks else "scheduled")


def test_a_conflict_that_appears_after_an_override_blocks_again(ctx, database_url):
    first = submit(ctx, "tom", **PEAK)
    ok(ctx, "priya", f"change override CHG-{first} Checkout fix agreed with the e-commerce director")
    # another change on the web shop, at the same time, comes along
    second = submit(ctx, "grace", **{**PEAK, "title": "Rotate the CDN keys", "start": "2026-11-27 10:30",
                                     "end": "2026-11-27 10:45"})
    reply, outcome = run(ctx, "arjun", f"change approve CHG-{first}")
    assert outcome == "user_error"
    assert reply.text == (f"CHG-{first} cannot be approved yet: it is overlaps CHG-{second} on Web Shop. "
                          "A service manager must accept this first.")
    show = ok(ctx, "tom", f"change show CHG-{first}")
    assert section(show, "Governance").text.splitlines() == [
        f"⛔ overlaps CHG-{second} on Web Shop", f"✔️ overridden: {PEAK_TEXT}",
        "Approval is blocked until a service manager overrides."]
    # overriding again covers both
    ok(ctx, "priya", f"change override CHG-{first} Both go in one window, agreed with the CDN team")
    assert the_change(database_url, first).override["issues"] == [f"conflict:CHG-{second}", "freeze:Peak trading"]
    ok(ctx, "arjun", f"change approve CHG-{first}")
    assert the_change(database_url, first).state == "scheduled"


PAYMENTS_WINDOWS = "outside Payments Gateway's maintenance windows (tue/thu 22:00-02:00, sun 00:00-06:00 Europe/London)"
WMS_WINDOWS = "outside Warehouse Management's maintenance windows (sat/sun 01:00-06:00 Asia/Kolkata)"


@pytest.mark.parametrize("who, service, start, end, inside", [
    ("tom", "payments", "2026-03-10 22:30", "2026-03-10 23:30", True),        # Tuesday evening
    ("tom", "payments", "2026-03-10 22:00", "2026-03-11 02:00", True),        # the whole window
    ("tom", "payments", "2026-03-10 23:00", "2026-03-11 01:30", True),        # across midnight
    ("tom", "payments", "2026-03-11 00:30", "2026-03-11 01:30", True),        # Wednesday small hours: Tuesday's
    ("tom", "payments", "2026-03-12 23:00", "2026-03-13 02:00", True),        # Thursday into Friday
    ("tom", "payments", "2026-03-08 00:00", "2026-03-08 06:00", True),        # Sunday
    ("tom", "payments", "2026-03-10 21:30", "2026-03-10 22:30", False),       # starts too early
    ("tom", "payments", "2026-03-11 01:30", "2026-03-11 02:30", False),       # ends too late
    ("tom", "payments", "2026-03-11 22:30", "2026-03-11 23:30", False),       # Wednesday
    ("tom", "payments", "2026-03-07 23:30", "2026-03-08 01:00", False),       # Saturday night into Sunday
    ("tom", "payments", "2026-03-10 23:00", "2026-03-12 23:30", False),       # two nights
    ("meera", "payments", "2026-03-11 04:00", "2026-03-11 05:00", True),      # 22:30 in London
    ("meera", "payments", "2026-03-10 22:30", "2026-03-10 23:30", False),     # 17:00 in London
    ("tom", "payments", "2026-04-14 22:30", "2026-04-14 23:30", True),        # under BST, still London time
    ("meera", "wms", "2026-03-07 02:00", "2026-03-07 03:00", True),           # Saturday in Pune
    ("grace", "wms", "2026-03-07 20:00", "2026-03-07 21:00", True),           # 01:30 Sunday in Pune
    ("grace", "wms", "2026-03-07 02:00", "2026-03-07 03:00", False),          # 07:30 Saturday in Pune
    ("meera", "wms", "2026-03-09 02:00", "2026-03-09 03:00", False),          # Monday
    ("meera", "wms", "2026-03-08 05:30", "2026-03-08 06:30", False),          # past 06:00
    ("tom", "email", "2026-03-11 10:00", "2026-03-11 11:00", True),           # no windows: any time
])
def test_maintenance_windows(ctx, database_url, who, service, start, end, inside):
    reply = ok(ctx, who, new_text(title="Apply the vendor's security patch", services=service, risk="low",
                                  start=start, end=end, backout="Roll back to the previous package"))
    row = the_change(database_url, 1)
    governance = section(reply, "Governance")
    if inside:
        assert governance is None
        assert row.state == "scheduled"
        assert keyed(database_url, "change:1:override:") == []
    else:
        expected = PAYMENTS_WINDOWS if service == "payments" else WMS_WINDOWS
        assert governance.text.splitlines()[0] == f"⛔ {expected}"
        assert row.state == "awaiting-approval"
        assert dm_people(ctx, database_url, "change:1:override:") == {"priya": DM}


def test_a_service_manager_who_asked_is_not_told_of_their_own_blocked_change(ctx, database_url):
    submit(ctx, "priya", **PEAK)
    assert keyed(database_url, "change:1:override:") == []


def test_every_issue_is_listed_together(ctx, database_url):
    first = submit(ctx, "tom", title="Rotate the acquirer keys", services="payments", risk="low",
                   start="2026-11-27 12:00", end="2026-11-27 13:00", backout="Reload the old keys")
    second = submit(ctx, "grace", title="Upgrade the payment gateway", services="payments, webshop", risk="low",
                    start="2026-11-27 12:30", end="2026-11-27 14:00", backout="Reinstall the old version")
    dm = keyed(database_url, f"change:{second}:override:")[0].message
    assert dm["text"] == (f"Upgrade the payment gateway: overlaps CHG-{first} on Payments Gateway; {PEAK_TEXT}; "
                          f"{PAYMENTS_WINDOWS}.")
    ok(ctx, "priya", f"change override CHG-{second} Acquirer mandate")
    assert the_change(database_url, second).override["issues"] == [
        f"conflict:CHG-{first}", "freeze:Peak trading", "window:payments"]
    assert the_change(database_url, second).state == "scheduled"


# === the state machine ====================================================================================

def bring_to(ctx, state: str, **over) -> int:
    """A change to the mail relays, requested by tom, implemented by grace, in the given state."""
    risk = "medium" if state in ("awaiting-approval", "rejected") else "low"
    cid = mail(ctx, "tom", **{"risk": risk, "implementer": "grace", **over})
    steps = {"in-progress": ["start"], "closed": ["start", "complete"],
             "review": ["start", "complete with-issues Queue backed up for ten minutes"],
             "cancelled": ["cancel"]}.get(state, [])
    for step in steps:
        verb, *rest = step.split(" ", 1)
        ok(ctx, "grace", f"change {verb} CHG-{cid} {' '.join(rest)}".strip())
    if state == "rejected":
        ok(ctx, "sanne", f"change reject CHG-{cid} Not in this week")
    return cid


def test_a_normal_change_runs_scheduled_in_progress_closed(ctx, database_url, clock):
    cid = bring_to(ctx, "scheduled")
    clock.to(MAIL_START + timedelta(minutes=2))
    reply = ok(ctx, "grace", f"change start CHG-{cid}")
    assert (reply.title, reply.text) == (f"CHG-{cid} started", f"{MAIL['title']} — now in-progress.")
    row = the_change(database_url, cid)
    assert (row.state, row.actual_start, row.actual_end, row.closed_at) == ("in-progress", clock(), None, None)
    show = ok(ctx, "grace", f"change show CHG-{cid}")
    assert [b.run for b in show.buttons] == [f"change complete CHG-{cid}", f"change fail CHG-{cid} Rolled back"]

    clock.to(MAIL_END - timedelta(minutes=10))
    reply = ok(ctx, "grace", f"change complete CHG-{cid} All relays on the new certificate")
    assert reply.text == f"{MAIL['title']} — now closed."
    row = the_change(database_url, cid)
    assert (row.state, row.outcome, row.actual_end, row.closed_at) == ("closed", "successful", clock(), clock())
    subject = f"CHG-{cid}"
    assert [a for a in actions(database_url, subject) if a != "change.state"] == \
        ["change.created", "change.start", "change.complete"]
    assert [(a[3]["was"], a[3]["state"]) for a in audits(database_url, subject) if a[0] == "change.state"] == [
        ("new", "awaiting-approval"), ("awaiting-approval", "scheduled"), ("scheduled", "in-progress"),
        ("in-progress", "closed")]
    assert ("change.complete", "grace", "slack", {"via": "text", "note": "All relays on the new certificate",
                                                  "outcome": "successful"}) in audits(database_url, subject)
    lines = [r.message["title"] for r in keyed(database_url, f"change:{cid}:announce:slack:C0ANNOUNCE:history:")]
    assert lines[-2:] == ["🔧 Grace Okafor started the work",
                          "🏁 Grace Okafor: successful: All relays on the new certificate"]


def test_an_emergency_change_is_reviewed_after_it_completes(ctx, database_url):
    cid = submit(ctx, "tom", title="Block the card-testing attack at the payment gateway", services="email",
                 type="emergency", risk="high", start="today 09:00", end="today 10:00", backout="Remove the rule")
    ok(ctx, "arjun", f"change approve CHG-{cid}")
    ok(ctx, "tom", f"change start CHG-{cid}")
    ok(ctx, "tom", f"change complete CHG-{cid}")
    row = the_change(database_url, cid)
    assert (row.state, row.outcome, row.closed_at) == ("review", "successful", None)
    assert keyed(database_url, f"change:{cid}:announce:slack:C0ANNOUNCE:history:")[-1].message["title"] == \
        "🏁 Tom Hughes: successful — review needed"

    before = state_of(database_url)
    for who in ("tom", "grace", "meera"):
        reply, outcome = run(ctx, who, f"change review CHG-{cid} Looked at it")
        assert outcome == "refused" and reply.text == "Only a service manager or a CAB member closes a change's review."
    reply, outcome = run(ctx, "sanne", f"change review CHG-{cid}")
    assert outcome == "user_error" and reply.text == "Say what happened: `change review` needs a note."
    assert state_of(database_url) == before

    reply = ok(ctx, "sanne", f"change review CHG-{cid} Reviewed at CAB; the WAF rule stays")
    row = the_change(database_url, cid)
    assert (row.state, row.closed_at) == ("closed", T0)
    assert ("change.review", "sanne", "slack", {"via": "text", "note": "Reviewed at CAB; the WAF rule stays",
                                                "outcome": "successful"}) in audits(database_url, f"CHG-{cid}")


@pytest.mark.parametrize("words, outcome_", [("complete with-issues Queue backed up", "with-issues"),
                                             ("complete issues Queue backed up", "with-issues"),
                                             ("fail Rolled back: the migration timed out", "failed")])
def test_issues_and_failures_go_to_review(ctx, database_url, words, outcome_):
    cid = bring_to(ctx, "in-progress")
    verb, rest = words.split(" ", 1)
    ok(ctx, "grace", f"change {verb} CHG-{cid} {rest}")
    row = the_change(database_url, cid)
    assert (row.state, row.outcome, row.closed_at) == ("review", outcome_, None)
    ok(ctx, "priya", f"change review CHG-{cid} Lessons recorded in the post-incident review")
    assert the_change(database_url, cid).state == "closed"


def test_failing_needs_a_note(ctx, database_url):
    cid = bring_to(ctx, "in-progress")
    before = state_of(database_url)
    reply, outcome = run(ctx, "grace", f"change fail CHG-{cid}")
    assert outcome == "user_error" and reply.text == "Say what happened: `change fail` needs a note."
    assert reply.footer == f"Try: /svc change fail CHG-{cid} Rolled back: the migration timed out"
    assert state_of(database_url) == before


@pytest.mark.parametrize("state, words, message", [
    ("awaiting-approval", "start", "is awaiting-approval: it cannot be started (only when scheduled)."),
    ("scheduled", "complete", "is scheduled: it cannot be completed (only when in-progress)."),
    ("scheduled", "fail Rolled back", "is scheduled: it cannot be failed (only when in-progress)."),
    ("scheduled", "review Reviewed", "is scheduled: it cannot be reviewed (only when review)."),
    ("in-progress", "start", "is in-progress: it cannot be started (only when scheduled)."),
    ("in-progress", "cancel", "is in-progress: it cannot be cancelled "
                              "(only when awaiting-approval or new or scheduled)."),
    ("in-progress", "review Reviewed", "is in-progress: it cannot be reviewed (only when review)."),
    ("review", "complete", "is review: it cannot be completed (only when in-progress)."),
    ("review", "cancel", "is review: it cannot be cancelled (only when awaiting-approval or new or scheduled)."),
    ("closed", "start", "is closed: it cannot be started (only when scheduled)."),
    ("closed", "review Again", "is closed: it cannot be reviewed (only when review)."),
    ("closed", "cancel", "is closed: it cannot be cancelled (only when awaiting-approval or new or scheduled)."),
    ("rejected", "start", "is rejected: it cannot be started (only when scheduled)."),
    ("cancelled", "start", "is cancelled: it cannot be started (only when scheduled)."),
    ("cancelled", "cancel", "is cancelled: it cannot be cancelled (only when awaiting-approval or new or scheduled)."),
])
def test_illegal_moves_are_refused_with_a_clear_message(ctx, database_url, state, words, message):
    cid = bring_to(ctx, state)
    assert the_change(database_url, cid).state == state
    before = state_of(database_url)
    verb, *rest = words.split(" ", 1)
    reply, outcome = run(ctx, "priya", f"change {verb} CHG-{cid} {' '.join(rest)}".strip())
    assert outcome == "user_error"
    assert reply.text == f"CHG-{cid} {message}"
    assert reply.footer == f"Try: /svc change show CHG-{cid}"
    assert state_of(database_url) == before


@pytest.mark.parametrize("who, allowed", [("tom", True), ("grace", True), ("priya", True), ("sanne", False),
                                          ("arjun", False), ("meera", False), ("lucas", False)])
def test_who_may_start_and_complete(ctx, database_url, who, allowed):
    cid = bring_to(ctx, "scheduled")  # tom asked, grace implements
    before = state_of(database_url)
    reply, outcome = run(ctx, who, f"change start CHG-{cid}")
    if not allowed:
        assert outcome == "refused"
        assert reply.text == f"Only CHG-{cid}'s requester, its implementer or a service manager can start it."
        assert state_of(database_url) == before
        ok(ctx, "grace", f"change start CHG-{cid}")
        before = state_of(database_url)
        reply, outcome = run(ctx, who, f"change complete CHG-{cid}")
        assert outcome == "refused"
        assert reply.text == f"Only CHG-{cid}'s requester, its implementer or a service manager can complete it."
        reply, outcome = run(ctx, who, f"change cancel CHG-{cid}")
        assert outcome == "refused"
        assert state_of(database_url) == before
        return
    assert outcome == "ok"
    ok(ctx, who, f"change complete CHG-{cid}")
    assert the_change(database_url, cid).state == "closed"
    assert [(a[0], a[1]) for a in audits(database_url, f"CHG-{cid}") if a[0] in ("change.start", "change.complete")] \
        == [("change.start", who), ("change.complete", who)]


@pytest.mark.parametrize("state", ["awaiting-approval", "scheduled"])
def test_cancelling_before_the_start(ctx, database_url, clock, state):
    cid = bring_to(ctx, state)
    clock.advance(hours=2)
    reply = ok(ctx, "tom", f"change cancel CHG-{cid} The vendor pulled the release")
    assert reply.title == f"CHG-{cid} cancelled"
    row = the_change(database_url, cid)
    assert (row.state, row.closed_at, row.due_at) == ("cancelled", clock(), None)
    assert keyed(database_url, f"change:{cid}:announce:slack:C0ANNOUNCE:history:")[-1].message["title"] == \
        "🚫 Tom Hughes cancelled it: The vendor pulled the release"
    # a cancelled change no longer takes approvals
    reply, outcome = run(ctx, "sanne", f"change approve CHG-{cid}")
    assert outcome == "user_error"
    assert reply.text == f"CHG-{cid} is cancelled; only a change awaiting approval can be approved."


def test_list_and_show(ctx, database_url):
    mine = bring_to(ctx, "scheduled")
    other = mail(ctx, "lucas", services="vpn", title="Upgrade the VPN concentrators", start="2026-03-11 20:00",
                 end="2026-03-11 21:00")
    done = bring_to(ctx, "closed", start="2026-03-09 20:00", end="2026-03-09 21:00")
    reply = ok(ctx, "tom", "change list")
    assert reply.title == "Open changes"
    assert [ln.split("*")[1] for ln in reply.text.splitlines()] == [f"CHG-{mine}", f"CHG-{other}"]
    reply = ok(ctx, "grace", "change list mine")
    assert [ln.split("*")[1] for ln in reply.text.splitlines()] == [f"CHG-{mine}"]
    reply = ok(ctx, "grace", "change list all")
    assert sorted(ln.split("*")[1] for ln in reply.text.splitlines()) == sorted(
        [f"CHG-{mine}", f"CHG-{other}", f"CHG-{done}"])
    reply, outcome = run(ctx, "grace", "change list everything")
    assert outcome == "user_error"
    show = ok(ctx, "grace", f"change show CHG-{mine}")
    assert [b.run for b in show.buttons] == [f"change start CHG-{mine}"]
    assert [b.run for b in ok(ctx, "meera", f"change show CHG-{mine}").buttons] == []


# === editing ==============================================================================================

def test_moving_the_dates_withdraws_approvals_and_asks_again(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="medium")
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    assert the_change(database_url, cid).state == "scheduled"
    revision = the_change(database_url, cid).revision
    clock.advance(hours=3)
    reply = ok(ctx, "tom", f'change edit CHG-{cid} start="2026-03-11 20:00" end="2026-03-11 21:00"')
    assert (reply.title, reply.text) == (f"CHG-{cid} updated", "Now awaiting-approval.")
    row = the_change(database_url, cid)
    assert (row.state, row.planned_start, row.planned_end, row.updated_at) == \
        ("awaiting-approval", utc(2026, 3, 11, 20, 0), utc(2026, 3, 11, 21, 0), clock())
    (vote,) = all_votes(database_url, cid)
    assert (vote.person_id, vote.withdrawn_at) == ("sanne", clock())
    assert live_votes(database_url, cid) == []
    (svc,) = db_rows(database_url, ChangeService, ChangeService.change_id == cid)
    assert (svc.planned_start, svc.planned_end) == (row.planned_start, row.planned_end)
    # the CAB is asked again, sanne included
    assert dm_people(ctx, database_url, f"change:{cid}:ask:{revision}:") == \
        {"priya": DM, "sanne": DM, "arjun": DM}
    assert ("change.edited", "tom", "slack", {"via": "text", "fields": ["end", "start"], "replanned": True}) in \
        audits(database_url, f"CHG-{cid}")
    assert ("change.state", "tom", "slack", {"was": "scheduled", "state": "awaiting-approval"}) in \
        audits(database_url, f"CHG-{cid}")
    line = keyed(database_url, f"change:{cid}:announce:slack:C0ANNOUNCE:history:")[-1].message["title"]
    assert line == "✏️ Tom Hughes edited end, start — approvals withdrawn; approval needed again"
    # a new approval schedules it again
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    assert the_change(database_url, cid).state == "scheduled"


def test_editing_only_the_description_keeps_the_approvals(ctx, database_url):
    cid = mail(ctx, "tom", risk="high")
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    asks = len(keyed(database_url, f"change:{cid}:ask:"))
    ok(ctx, "tom", f'change edit CHG-{cid} description="Certificates from the new internal CA"')
    row = the_change(database_url, cid)
    assert (row.description, row.state) == ("Certificates from the new internal CA", "awaiting-approval")
    assert [(v.person_id, v.withdrawn_at) for v in all_votes(database_url, cid)] == [("sanne", None)]
    assert len(keyed(database_url, f"change:{cid}:ask:")) == asks
    assert ("change.edited", "tom", "slack", {"via": "text", "fields": ["description"], "replanned": False}) in \
        audits(database_url, f"CHG-{cid}")
    ok(ctx, "arjun", f"change approve CHG-{cid}")
    assert the_change(database_url, cid).state == "scheduled"
    # on a scheduled change too
    ok(ctx, "tom", f'change edit CHG-{cid} test="Send a signed test mail to every relay"')
    row = the_change(database_url, cid)
    assert (row.state, row.test_plan) == ("scheduled", "Send a signed test mail to every relay")
    assert len(live_votes(database_url, cid)) == 2


def test_adding_a_service_announces_the_change_in_its_channel(ctx, database_url):
    cid = mail(ctx, "tom", risk="low")
    assert the_change(database_url, cid).announcements == announce_keys(
        cid, ("slack", ANNOUNCE_SLACK), ("teams", ANNOUNCE_TEAMS))
    ok(ctx, "tom", f'change edit CHG-{cid} services="email, webshop"')
    row = the_change(database_url, cid)
    new_keys = announce_keys(cid, ("slack", SHOP_SLACK), ("teams", SHOP_TEAMS))
    assert row.announcements == announce_keys(cid, ("slack", ANNOUNCE_SLACK), ("teams", ANNOUNCE_TEAMS)) + new_keys
    for key, target in zip(new_keys, (SHOP_SLACK, SHOP_TEAMS)):
        (post,) = keyed(database_url, key)[:1]
        assert (post.dedupe_key, post.target_kind, post.target, post.anchor_key) == (key, "channel", target, None)
        assert msg_fields(post.message)["Services"] == "Email and Calendar, Web Shop"
    assert sorted(s.service_id for s in db_rows(database_url, ChangeService, ChangeService.change_id == cid)) == \
        ["email", "webshop"]
    assert row.state == "scheduled"  # low risk: scheduled again at once
    # only one announcement per channel however often it is edited
    ok(ctx, "tom", f'change edit CHG-{cid} description="Also the shop\'s mail"')
    assert len(outbox(database_url, OutboxMessage.target_kind == "channel", OutboxMessage.anchor_key.is_(None))) == 4


def test_edit_checks_who_when_and_what(ctx, database_url):
    cid = bring_to(ctx, "scheduled")
    before = state_of(database_url)
    reply, outcome = run(ctx, "meera", f'change edit CHG-{cid} end="2026-03-10 22:00"')
    assert outcome == "refused"
    assert reply.text == f"Only CHG-{cid}'s requester, its implementer or a service manager can edit it."
    reply, outcome = run(ctx, "tom", f"change edit CHG-{cid} type=emergency")
    assert outcome == "user_error" and reply.text.startswith("Give the fields to change as key=value pairs")
    reply, outcome = run(ctx, "tom", f"change edit CHG-{cid}")
    assert outcome == "user_error"
    reply, outcome = run(ctx, "tom", f'change edit CHG-{cid} end="2026-03-10 19:00" risk=severe')
    assert outcome == "user_error"
    assert "end: must be after the start" in reply.text and "risk: 'severe' is not one of low, medium, high" in reply.text
    reply, outcome = run(ctx, "tom", f'change edit CHG-{cid} start="2026-03-01 20:00"')
    assert outcome == "user_error" and "start: is in the past" in reply.text
    assert state_of(database_url) == before
    ok(ctx, "grace", f"change start CHG-{cid}")
    before = state_of(database_url)
    reply, outcome = run(ctx, "tom", f'change edit CHG-{cid} end="2026-03-10 22:00"')
    assert outcome == "user_error"
    assert reply.text == f"CHG-{cid} is in-progress; only a change awaiting approval or scheduled can be edited."
    assert state_of(database_url) == before


def test_the_implementer_and_a_service_manager_may_edit(ctx, database_url):
    cid = bring_to(ctx, "scheduled")
    ok(ctx, "grace", f'change edit CHG-{cid} implementation="Follow runbook RB-214"')
    ok(ctx, "priya", f'change edit CHG-{cid} title="Rotate the mail relay TLS certificates (all four relays)"')
    row = the_change(database_url, cid)
    assert (row.implementation_plan, row.title) == ("Follow runbook RB-214",
                                                    "Rotate the mail relay TLS certificates (all four relays)")


def test_a_wrong_edit_is_answered_with_an_edit_example(ctx, database_url):
    cid = bring_to(ctx, "scheduled")
    reply, outcome = run(ctx, "tom", f'change edit CHG-{cid} end="2026-03-10 19:00"')
    assert outcome == "user_error" and "end: must be after the start" in reply.text
    assert reply.footer.startswith(f"Try: /svc change edit CHG-{cid} ")


def test_moving_a_standard_change_keeps_its_models_duration(ctx, database_url):
    ok(ctx, "meera", 'change new model=restart-wms-workers start="2026-03-07 02:00"')
    reply, outcome = run(ctx, "meera", 'change edit CHG-1 start="2026-03-08 02:00"')
    assert outcome == "ok", all_text(reply)
    row = the_change(database_url, 1)
    assert (row.planned_start, row.planned_end) == (utc(2026, 3, 7, 20, 30), utc(2026, 3, 7, 21, 0))


def test_a_standard_change_cannot_be_edited_onto_other_services(ctx, database_url):
    ok(ctx, "meera", 'change new model=restart-wms-workers start="2026-03-07 02:00"')
    reply, outcome = run(ctx, "meera", "change edit CHG-1 services=wms,email")
    assert outcome == "user_error"
    assert [s.service_id for s in db_rows(database_url, ChangeService)] == ["wms"]


def test_moving_a_change_drops_its_override_and_blocks_it_again(ctx, database_url):
    cid = submit(ctx, "tom", **PEAK)
    ok(ctx, "priya", f"change override CHG-{cid} Checkout fix agreed with the e-commerce director")
    ok(ctx, "arjun", f"change approve CHG-{cid}")
    assert the_change(database_url, cid).state == "scheduled"
    told = len(keyed(database_url, f"change:{cid}:override:"))
    ok(ctx, "tom", f'change edit CHG-{cid} start="2026-11-28 10:00" end="2026-11-28 11:00"')
    row = the_change(database_url, cid)
    assert (row.state, row.override) == ("awaiting-approval", None)
    assert [v.withdrawn_at is not None for v in all_votes(database_url, cid)] == [True]
    # the service managers are told again, for the new revision
    assert len(keyed(database_url, f"change:{cid}:override:")) == told + 1
    reply, outcome = run(ctx, "arjun", f"change approve CHG-{cid}")
    assert outcome == "user_error" and PEAK_TEXT in reply.text


def test_an_edit_into_a_conflict_tells_the_service_managers(ctx, database_url):
    first = mail(ctx, "grace", risk="low", title="Patch the mail relays")  # London: 20:00 is 20:00 UTC
    second = mail(ctx, "tom", risk="low", start="2026-03-11 20:00", end="2026-03-11 21:00")
    assert the_change(database_url, second).state == "scheduled"
    ok(ctx, "tom", f'change edit CHG-{second} start="2026-03-10 20:30" end="2026-03-10 21:30"')
    assert the_change(database_url, second).state == "awaiting-approval"
    dm = keyed(database_url, f"change:{second}:override:")
    assert len(dm) == 1 and f"overlaps CHG-{first} on Email and Calendar" in dm[0].message["text"]


def test_raising_the_risk_of_a_scheduled_change_asks_for_approval_again(ctx, database_url):
    cid = mail(ctx, "tom", risk="low")
    assert the_change(database_url, cid).state == "scheduled"
    ok(ctx, "tom", f"change edit CHG-{cid} risk=high")
    row = the_change(database_url, cid)
    assert row.approvals_needed == 2
    assert row.state == "awaiting-approval"


def test_an_approver_made_implementer_no_longer_counts(ctx, database_url):
    cid = mail(ctx, "tom", risk="high")
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    ok(ctx, "tom", f"change edit CHG-{cid} implementer=sanne")
    ok(ctx, "arjun", f"change approve CHG-{cid}")
    assert the_change(database_url, cid).state == "awaiting-approval"


def test_curly_quotes_group_words_in_edit_too(ctx, database_url):
    cid = mail(ctx, "tom", risk="low")
    ok(ctx, "tom", f"change edit CHG-{cid} start=“2026-03-11 20:00” end=“2026-03-11 21:00”")
    assert the_change(database_url, cid).planned_start == utc(2026, 3, 11, 20, 0)


# === announcements ========================================================================================

def test_one_announcement_per_channel_and_platform(ctx, database_url):
    cid = submit(ctx, "tom", title="Upgrade the payment gateway TLS library", services="payments, webshop",
                 risk="low", start="2026-03-10 22:30", end="2026-03-10 23:30", backout="Reinstall the old library")
    expected = announce_keys(cid, ("slack", ANNOUNCE_SLACK), ("teams", ANNOUNCE_TEAMS), ("slack", PAYMENTS_SLACK),
                             ("teams", PAYMENTS_TEAMS), ("slack", SHOP_SLACK), ("teams", SHOP_TEAMS))
    row = the_change(database_url, cid)
    assert row.announcements == expected
    posts = outbox(database_url, OutboxMessage.target_kind == "channel", OutboxMessage.anchor_key.is_(None))
    assert [(p.dedupe_key, p.platform, p.target, p.subject, p.status) for p in posts] == [
        (k, k.split(":")[3], k.split(":", 4)[4], f"CHG-{cid}", "pending") for k in expected]
    for p in posts:
        assert p.message["title"] == f"CHG-{cid} · Upgrade the payment gateway TLS library"
        assert not p.message["private"]
        # still pending when the change was scheduled: the post goes out with the newest content
        assert msg_fields(p.message)["State"] == "📅 scheduled"
        assert msg_fields(p.message)["When"] == "Tue 10 Mar 2026 22:30 – 23:30 GMT"  # the bot's zone
    # no edits of posts not yet sent; each post gets the first line of its thread
    assert outbox(database_url, OutboxMessage.target_kind == "edit") == []
    replies = outbox(database_url, OutboxMessage.anchor_key.is_not(None))
    assert sorted((r.anchor_key, r.dedupe_key, r.target) for r in replies) == sorted(
        (k, f"{k}:history:1", k.split(":", 4)[4]) for k in expected)


def test_a_medium_change_shows_approve_and_reject_buttons(ctx, database_url):
    cid = mail(ctx, "tom")
    post = keyed(database_url, f"change:{cid}:announce:slack:C0ANNOUNCE")[0]
    assert [(b["label"], b["run"]) for b in post.message["buttons"]] == [
        ("Approve", f"change approve CHG-{cid}"), ("Reject", f"change reject CHG-{cid}")]
    assert post.message["footer"] == "React with :white_check_mark: to approve or :x: to reject"
    # the buttons run ordinary words through the same checks
    ok(ctx, "sanne", post.message["buttons"][0]["run"], via="button")
    assert [v.via for v in live_votes(database_url, cid)] == ["button"]


def test_while_the_post_is_pending_a_step_updates_it_instead_of_editing(ctx, database_url):
    cid = mail(ctx, "tom", risk="medium")
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    assert outbox(database_url, OutboxMessage.target_kind == "edit") == []
    for key in the_change(database_url, cid).announcements:
        (post,) = keyed(database_url, key)[:1]
        assert post.status == "pending"
        f = msg_fields(post.message)
        assert (f["State"], f["Approvals"]) == ("📅 scheduled", "1 of 1: Sanne de Vries")
        assert post.message["buttons"] == []
    # but the thread gets every step
    assert [r.message["title"] for r in keyed(database_url, f"change:{cid}:announce:teams:")
            if r.anchor_key] == ["🆕 Tom Hughes submitted it",
                                 "👍 Sanne de Vries approved (1 of 1)\n📅 Scheduled (approved)"]


def test_after_the_post_is_sent_each_step_adds_an_edit_and_a_thread_reply(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="high")
    posted = deliver_announcements(ctx, cid)
    clock.advance(minutes=10)
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    row = the_change(database_url, cid)
    assert row.revision == 2
    for key in row.announcements:
        (anchor,) = keyed(database_url, key)[:1]
        assert anchor.status == "sent" and anchor.platform_message_id == posted[key]
        assert msg_fields(anchor.message)["Approvals"] == "0 of 2"  # the sent post is never rewritten in the store
        (edit,) = keyed(database_url, f"{key}:rev:2")
        assert (edit.target_kind, edit.anchor_key, edit.platform, edit.target, edit.status, edit.subject) == \
            ("edit", key, anchor.platform, anchor.target, "pending", f"CHG-{cid}")
        assert msg_fields(edit.message)["Approvals"] == "1 of 2: Sanne de Vries"
        (reply,) = keyed(database_url, f"{key}:history:2")
        assert (reply.target_kind, reply.anchor_key, reply.target, reply.thread_id) == \
            ("channel", key, anchor.target, None)
        assert reply.message["title"] == "👍 Sanne de Vries approved (1 of 2)"

    # the next step supersedes the edit still waiting: only the newest content matters
    clock.advance(minutes=10)
    ok(ctx, "arjun", f"change approve CHG-{cid}")
    for key in row.announcements:
        assert [e.status for e in keyed(database_url, f"{key}:rev:")] == ["superseded", "pending"]
        (newest,) = keyed(database_url, f"{key}:rev:3")
        assert msg_fields(newest.message)["State"] == "📅 scheduled"
        assert newest.message["buttons"] == []
    # an edit already sent is left alone
    with ctx.sessions.begin() as s:
        for r in s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("%:rev:3"))):
            r.status = "sent"
    ok(ctx, "tom", f"change start CHG-{cid}")
    for key in row.announcements:
        assert [e.status for e in keyed(database_url, f"{key}:rev:")] == ["superseded", "sent", "pending"]
        assert len(keyed(database_url, f"{key}:history:")) == 4


# --- the deliverer resolves edits and thread replies ------------------------------------------------------

class FakeSender:
    """Records what it is asked to send; ``fail_for`` maps a target to the error its sends raise."""

    def __init__(self, platform: str):
        self.platform = platform
        self.fail_for: dict[str, DeliveryError] = {}
        self.sends: list[Outgoing] = []
        self.lookups: list[Outgoing] = []
        self.n = 0

    async def send(self, item: Outgoing) -> Delivered:
        self.sends.append(item)
        if item.target in self.fail_for:
            raise self.fail_for[item.target]
        if item.target_kind == "edit":
            return Delivered(channel=item.target, message_id=item.message_id)
        self.n += 1
        mid = f"1772445600.{self.n:06d}" if self.platform == "slack" else f"1:1Zx{self.n:05d}"
        return Delivered(channel=item.target, message_id=mid)

    async def find_sent(self, item: Outgoing) -> Delivered | None:
        self.lookups.append(item)
        return None


def sent_to(sender: FakeSender, key: str) -> list[Outgoing]:
    return [i for i in sender.sends if i.key == key]


def row_of(ctx, key: str) -> OutboxMessage:
    with ctx.sessions() as s:
        return s.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))


async def test_edits_wait_for_their_post_then_go_to_its_message(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="medium")
    slack, teams = FakeSender("slack"), FakeSender("teams")
    # the first attempt at each post ends without an answer: it may or may not be there
    slack.fail_for[ANNOUNCE_SLACK] = DeliveryError("read timeout", ambiguous=True)
    teams.fail_for[ANNOUNCE_TEAMS] = DeliveryError("read timeout", ambiguous=True)
    deliverer = Deliverer(ctx, {"slack": slack, "teams": teams})
    await deliverer.sweep()
    keys = the_change(database_url, cid).announcements
    for key in keys:
        anchor = row_of(ctx, key)
        assert (anchor.status, anchor.maybe_sent, anchor.attempts) == ("pending", True, 1)
        # its thread reply was not sent on its own, nor counted as an attempt
        reply = row_of(ctx, f"{key}:history:1")
        assert (reply.status, reply.attempts) == ("pending", 0)
    assert all(i.target_kind == "person" or i.key in keys for i in slack.sends + teams.sends)

    # a step now cannot update the post in place (it may be out already): it queues an edit
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    for key in keys:
        (edit,) = keyed(database_url, f"{key}:rev:2")
        assert (edit.target_kind, edit.anchor_key, edit.status) == ("edit", key, "pending")
    await deliverer.sweep()
    for key in keys:
        edit = row_of(ctx, f"{key}:rev:2")
        assert (edit.status, edit.attempts) == ("pending", 0)  # waiting for its post is not an attempt
        assert edit.next_attempt_at > row_of(ctx, key).next_attempt_at
        assert not sent_to(slack, f"{key}:rev:2") and not sent_to(teams, f"{key}:rev:2")

    # the platforms answer again: the post goes first, then the edit and the thread replies point at it
    slack.fail_for.clear()
    teams.fail_for.clear()
    for _ in range(4):
        clock.advance(seconds=5)
        await deliverer.sweep()
    for key, sender in zip(keys, (slack, teams)):
        anchor = row_of(ctx, key)
        assert anchor.status == "sent" and anchor.platform_message_id
        assert [i.key for i in sender.lookups] == [key]  # looked before posting again
        (edit_item,) = sent_to(sender, f"{key}:rev:2")
        assert (edit_item.target_kind, edit_item.target, edit_item.message_id) == \
            ("edit", anchor.platform_channel, anchor.platform_message_id)
        assert msg_fields(edit_item.message)["State"] == "📅 scheduled"
        edit = row_of(ctx, f"{key}:rev:2")
        assert (edit.status, edit.attempts) == ("sent", 1)
        for n in (1, 2):
            (reply_item,) = sent_to(sender, f"{key}:history:{n}")
            assert (reply_item.target, reply_item.thread_id) == (anchor.platform_channel, anchor.platform_message_id)
            assert row_of(ctx, f"{key}:history:{n}").attempts == 1
    assert {r.status for r in outbox(database_url)} == {"sent"}


async def test_an_edit_of_a_post_that_failed_fails_and_thread_replies_post_on_their_own(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="medium")
    slack, teams = FakeSender("slack"), FakeSender("teams")
    slack.fail_for[ANNOUNCE_SLACK] = DeliveryError("channel_not_found", permanent=True)
    deliverer = Deliverer(ctx, {"slack": slack, "teams": teams})
    await deliverer.sweep()
    slack_key, teams_key = the_change(database_url, cid).announcements
    assert row_of(ctx, slack_key).status == "failed" and row_of(ctx, teams_key).status == "sent"
    clock.advance(seconds=5)
    await deliverer.sweep()
    (alone,) = sent_to(slack, f"{slack_key}:history:1")
    assert (alone.target, alone.thread_id) == (ANNOUNCE_SLACK, None)

    ok(ctx, "sanne", f"change approve CHG-{cid}")
    clock.advance(seconds=5)
    await deliverer.sweep()
    failed = row_of(ctx, f"{slack_key}:rev:2")
    assert (failed.status, failed.last_error) == ("failed", "the message it edits was never delivered")
    assert not sent_to(slack, f"{slack_key}:rev:2")
    teams_post = row_of(ctx, teams_key)
    (edit_item,) = sent_to(teams, f"{teams_key}:rev:2")
    assert (edit_item.target, edit_item.message_id) == (teams_post.platform_channel, teams_post.platform_message_id)
    assert row_of(ctx, f"{teams_key}:rev:2").status == "sent"


# === reminders and prompts: the sweep =====================================================================

def reminder_keys(db: str, cid: int, kind: str) -> list[str]:
    return [r.dedupe_key for r in keyed(db, f"change:{cid}:{kind}:")]


def test_start_reminder_start_prompt_and_end_prompt_each_once(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="low", implementer="grace", start="2026-03-03 20:00", end="2026-03-03 21:00")
    start, end = utc(2026, 3, 3, 20, 0), utc(2026, 3, 3, 21, 0)
    row = the_change(database_url, cid)
    assert row.due_at == start - timedelta(minutes=ctx.config.changes.reminder_minutes)
    assert messages.sweep(ctx) == 0
    clock.to(start - timedelta(minutes=61))
    assert messages.sweep(ctx) == 0
    before = tally(database_url)

    clock.to(start - timedelta(minutes=60))
    assert messages.sweep(ctx) == 1
    assert messages.sweep(ctx) == 0  # twice in a row
    reminder = f"start-reminder:{start.isoformat()}"
    for key in row.announcements:
        (post,) = keyed(database_url, f"{key}:{reminder}")
        assert (post.anchor_key, post.target_kind, post.target) == (key, "channel", key.split(":", 4)[4])
        assert post.message["title"] == "⏰ Starting in 60 minutes"
        assert post.message["text"] == f"CHG-{cid} {MAIL['title']} starts Tue 03 Mar 2026 20:00 – 21:00 GMT"
    assert dm_people(ctx, database_url, f"change:{cid}:{reminder}") == {"grace": DM}  # the implementer only
    assert tally(database_url)["outbox"] == before["outbox"] + 3
    assert ("change.reminded", "svcbot", "system", {"what": "start-reminder"}) in audits(database_url, f"CHG-{cid}")

    clock.to(start - timedelta(seconds=1))
    assert messages.sweep(ctx) == 0
    clock.to(start)
    assert messages.sweep(ctx) == 1
    assert messages.sweep(ctx) == 0
    prompt = keyed(database_url, f"change:{cid}:start-prompt:{start.isoformat()}")
    assert [p.target for p in prompt] == ["U0GRACE07"]  # grace is on both platforms: Slack only
    assert prompt[0].message["title"] == "▶️ Your change is due to start"
    assert [b["run"] for b in prompt[0].message["buttons"]] == [f"change start CHG-{cid}", f"change cancel CHG-{cid}"]

    # a while later it is still scheduled: no prompt again
    clock.advance(hours=1)
    assert messages.sweep(ctx) == 0
    assert the_change(database_url, cid).due_at is None

    # the prompt's button starts it
    ok(ctx, "grace", prompt[0].message["buttons"][0]["run"], via="button")
    assert the_change(database_url, cid).due_at == end
    clock.to(end + timedelta(hours=1))  # it is running late: the end prompt is due since the planned end
    assert messages.sweep(ctx) == 1
    assert messages.sweep(ctx) == 0
    (end_prompt,) = keyed(database_url, f"change:{cid}:end-prompt:{end.isoformat()}")
    assert end_prompt.message["title"] == "⏱️ Your change's window has ended: how did it go?"
    assert [b["run"] for b in end_prompt.message["buttons"]] == [
        f"change complete CHG-{cid}", f"change complete CHG-{cid} with-issues", f"change fail CHG-{cid} Rolled back"]
    clock.advance(days=3)
    assert messages.sweep(ctx) == 0
    row = the_change(database_url, cid)
    assert row.prompts_sent == [reminder, f"start-prompt:{start.isoformat()}", f"end-prompt:{end.isoformat()}"]
    assert row.due_at is None
    assert [a[3]["what"] for a in audits(database_url, f"CHG-{cid}") if a[0] == "change.reminded"] == \
        ["start-reminder", "start-prompt", "end-prompt"]


def test_no_end_prompt_for_a_change_finished_early_or_never_started(ctx, database_url, clock):
    early = mail(ctx, "tom", risk="low", start="2026-03-03 20:00", end="2026-03-03 21:00")
    idle = mail(ctx, "tom", risk="low", services="vpn", start="2026-03-03 20:00", end="2026-03-03 21:00")
    clock.to(utc(2026, 3, 3, 19, 0))
    assert messages.sweep(ctx) == 2  # both start reminders
    clock.to(utc(2026, 3, 3, 20, 0))
    assert messages.sweep(ctx) == 2  # both start prompts
    ok(ctx, "tom", f"change start CHG-{early}")
    clock.to(utc(2026, 3, 3, 20, 40))
    ok(ctx, "tom", f"change complete CHG-{early}")
    clock.to(utc(2026, 3, 3, 21, 0))
    assert messages.sweep(ctx) == 0
    clock.advance(days=1)
    assert messages.sweep(ctx) == 0
    assert keyed(database_url, f"change:{early}:end-prompt:") == []
    assert keyed(database_url, f"change:{idle}:end-prompt:") == []
    assert (the_change(database_url, early).due_at, the_change(database_url, idle).due_at) == (None, None)


def test_a_sweep_that_comes_late_sends_the_prompt_but_not_the_stale_reminder(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="low", start="2026-03-03 20:00", end="2026-03-03 21:00")
    clock.to(utc(2026, 3, 3, 20, 10))
    messages.sweep(ctx)
    assert keyed(database_url, f"change:{cid}:announce:slack:C0ANNOUNCE:start-reminder:") == []
    assert reminder_keys(database_url, cid, "start-reminder") == []
    assert len(reminder_keys(database_url, cid, "start-prompt")) == 1
    assert messages.sweep(ctx) == 0


def test_a_skipped_stale_reminder_is_not_recorded_as_sent(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="low", start="2026-03-03 20:00", end="2026-03-03 21:00")
    clock.to(utc(2026, 3, 3, 20, 10))
    assert messages.sweep(ctx) == 1
    assert [a[3]["what"] for a in audits(database_url, f"CHG-{cid}") if a[0] == "change.reminded"] == ["start-prompt"]


def test_moving_the_dates_re_arms_the_reminders(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="low", implementer="grace", start="2026-03-03 20:00", end="2026-03-03 21:00")
    clock.to(utc(2026, 3, 3, 19, 0))
    assert messages.sweep(ctx) == 1
    ok(ctx, "grace", f'change edit CHG-{cid} start="2026-03-04 20:00" end="2026-03-04 21:00"')
    assert the_change(database_url, cid).state == "scheduled"
    assert the_change(database_url, cid).due_at == utc(2026, 3, 4, 19, 0)
    clock.to(utc(2026, 3, 3, 20, 0))  # the old start: nothing
    assert messages.sweep(ctx) == 0
    assert reminder_keys(database_url, cid, "start-prompt") == []
    clock.to(utc(2026, 3, 4, 19, 0))
    assert messages.sweep(ctx) == 1
    assert {k.split(":")[2] + ":" + k.split(":", 3)[3][:19] for k in reminder_keys(database_url, cid, "start-reminder")} \
        == {"start-reminder:2026-03-03T20:00:00", "start-reminder:2026-03-04T20:00:00"}
    clock.to(utc(2026, 3, 4, 20, 0))
    assert messages.sweep(ctx) == 1
    assert len(reminder_keys(database_url, cid, "start-prompt")) == 1


def test_approval_reminders_go_to_approvers_who_have_not_voted_until_the_start(ctx, database_url, clock):
    every = timedelta(hours=ctx.config.changes.approval_reminder_hours)
    cid = mail(ctx, "tom", risk="high", start="2026-03-02 19:00", end="2026-03-02 20:00")  # T0 + 10 hours
    clock.advance(hours=1)
    ok(ctx, "sanne", f"change approve CHG-{cid}")
    assert the_change(database_url, cid).due_at == T0 + every
    clock.to(T0 + every - timedelta(seconds=1))
    assert messages.sweep(ctx) == 0
    clock.to(T0 + every)
    assert messages.sweep(ctx) == 1
    assert messages.sweep(ctx) == 0
    first = f"change:{cid}:approval:{T0.isoformat()}:1:"
    assert dm_people(ctx, database_url, first) == {"priya": DM, "arjun": DM}
    assert keyed(database_url, first)[0].message["title"] == \
        f"Reminder: Your approval is needed: CHG-{cid} · {MAIL['title']}"
    clock.to(T0 + 2 * every)
    assert messages.sweep(ctx) == 1
    assert messages.sweep(ctx) == 0
    assert dm_people(ctx, database_url, f"change:{cid}:approval:{T0.isoformat()}:2:") == \
        {"priya": DM, "arjun": DM}
    # the third would fall after the planned start: none
    for hours in (12, 13, 24, 72):
        clock.to(T0 + timedelta(hours=hours))
        assert messages.sweep(ctx) == 0
    assert len(keyed(database_url, f"change:{cid}:approval:")) == 4
    assert the_change(database_url, cid).due_at is None


def test_approval_reminders_in_quiet_hours_wait_for_the_morning_as_one(ctx, database_url, clock):
    # Priya keeps quiet hours 22:00–07:00 in Europe/London (GMT in March); Arjun has none. A high-risk change
    # submitted Mon 09:00 and starting Tue 19:00: reminders every 4 hours from 13:00. At 21:00 Priya's goes at
    # once; those of 01:00 and 05:00 wait till 07:00, the later replacing the earlier: one in the morning.
    cfg = demo_config()
    next(p for p in cfg["people"] if p["id"] == "priya")["quiet_hours"] = "22:00-07:00"
    ctx.config = parse_config(yaml.safe_dump(cfg, sort_keys=False))
    cid = mail(ctx, "tom", risk="high", start="2026-03-03 19:00", end="2026-03-03 20:00")
    # Another starting Tue 06:00, before her quiet hours end: a reminder she could read only after its start
    # is not sent to her at all.
    early = mail(ctx, "tom", risk="high", start="2026-03-03 06:00", end="2026-03-03 06:30")
    clock.advance(hours=1)
    for change_id in (cid, early):
        ok(ctx, "sanne", f"change approve CHG-{change_id}")
    for hours in range(4, 21):
        clock.to(T0 + timedelta(hours=hours))
        messages.sweep(ctx)
    base = f"change:{cid}:approval:{T0.isoformat()}:"
    morning = T0 + timedelta(hours=22)  # Tue 07:00
    night = {n: [(r.status, r.next_attempt_at) for r in keyed(database_url, f"{base}{n}:priya:")] for n in (3, 4, 5)}
    assert night == {3: [("pending", T0 + timedelta(hours=12))],  # Mon 21:00, before her quiet hours
                     4: [("superseded", morning)], 5: [("pending", morning)]}
    assert [r.next_attempt_at for r in keyed(database_url, f"{base}5:arjun:")] == [T0 + timedelta(hours=20)]
    early_base = f"change:{early}:approval:{T0.isoformat()}:"
    assert [n for n in range(1, 7) if keyed(database_url, f"{early_base}{n}:priya:")] == [1, 2, 3]
    assert [n for n in range(1, 7) if keyed(database_url, f"{early_base}{n}:arjun:")] == [1, 2, 3, 4, 5]


def test_once_approved_no_approval_reminders(ctx, database_url, clock):
    cid = mail(ctx, "tom", risk="medium", start="2026-03-04 20:00", end="2026-03-04 21:00")
    clock.advance(hours=3)
    ok(ctx, "arjun", f"change approve CHG-{cid}")
    clock.advance(hours=6)
    messages.sweep(ctx)
    assert keyed(database_url, f"change:{cid}:approval:") == []


def test_no_approval_reminders_for_a_change_that_needs_no_approval(ctx, database_url, clock):
    cid = submit(ctx, "tom", title="Patch the payment gateway load balancers", services="payments", risk="low",
                 start="2026-03-11 10:00", end="2026-03-11 11:00", backout="Reinstall the previous firmware")
    row = the_change(database_url, cid)
    assert (row.state, row.approvals_needed) == ("awaiting-approval", 0)  # blocked: outside the window
    clock.advance(hours=5)
    messages.sweep(ctx)
    assert keyed(database_url, f"change:{cid}:approval:") == []


def test_subscribers_of_affected_services_are_told_at_each_step(ctx, database_url, clock):
    ok(ctx, "grace", "subscribe email")
    ok(ctx, "grace", "subscribe vpn")
    ok(ctx, "meera", "subscribe payments")  # not affected
    ok(ctx, "lucas", "subscribe email", platform="teams")
    cid = mail(ctx, "tom", risk="low", services="email, vpn")
    told = {"grace": DM, "lucas": DM}  # once each, on their one platform
    assert dm_people(ctx, database_url, f"change:{cid}:subscribers:scheduled:") == told
    dm = keyed(database_url, f"change:{cid}:subscribers:scheduled:")[0].message
    assert dm["title"] == "📅 Change to Email and Calendar, Remote Access VPN is planned"
    assert dm["text"] == f"CHG-{cid} {MAIL['title']}\nTue 10 Mar 2026 20:00 – 21:00 GMT"
    lucas_dm = [r for r in keyed(database_url, f"change:{cid}:subscribers:scheduled:")
                if r.target == "U0LUCAS06"][0].message
    assert lucas_dm["text"].endswith("Tue 10 Mar 2026 21:00 – 22:00 CET")  # in his zone
    ok(ctx, "tom", f"change start CHG-{cid}")
    assert dm_people(ctx, database_url, f"change:{cid}:subscribers:start:") == told
    ok(ctx, "tom", f"change complete CHG-{cid}")
    assert dm_people(ctx, database_url, f"change:{cid}:subscribers:complete:") == told
    assert keyed(database_url, f"change:{cid}:subscribers:complete:")[0].message["title"] == \
        "✅ Change to Email and Calendar, Remote Access VPN is complete"

    cancelled = mail(ctx, "tom", risk="low", services="email", start="2026-03-12 20:00", end="2026-03-12 21:00")
    ok(ctx, "tom", f"change cancel CHG-{cancelled}")
    assert dm_people(ctx, database_url, f"change:{cancelled}:subscribers:cancel:") == told
    # a change cancelled or rejected before it was ever planned is not news to subscribers
    pending = mail(ctx, "tom", risk="medium", services="email", start="2026-03-13 20:00", end="2026-03-13 21:00")
    ok(ctx, "tom", f"change cancel CHG-{pending}")
    rejected = mail(ctx, "tom", risk="medium", services="email", start="2026-03-14 20:00", end="2026-03-14 21:00")
    ok(ctx, "sanne", f"change reject CHG-{rejected} Not on a Saturday")
    assert keyed(database_url, f"change:{pending}:subscribers:") == []
    assert keyed(database_url, f"change:{rejected}:subscribers:") == []
    assert all(not r.dedupe_key.startswith("change:") or ":meera:" not in r.dedupe_key for r in outbox(database_url))


def test_a_failed_change_tells_subscribers_it_was_rolled_back(ctx, database_url):
    ok(ctx, "meera", "subscribe email")
    cid = bring_to(ctx, "in-progress")
    ok(ctx, "grace", f"change fail CHG-{cid} Rolled back: relays refused the new chain")
    (dm,) = keyed(database_url, f"change:{cid}:subscribers:fail:")
    assert dm.message["title"] == "🔍 Change to Email and Calendar failed and was rolled back"


# === a delivery retried ===================================================================================

def test_a_retried_delivery_changes_nothing_a_second_time(ctx, database_url):
    text = new_text(**{**MAIL, "risk": "high"})
    reply, outcome = run(ctx, "tom", text, key="Ev06RETRY01")
    assert outcome == "ok"
    before = state_of(database_url)
    reply, outcome = run(ctx, "tom", text, key="Ev06RETRY01")
    assert (outcome, reply.title) == ("duplicate", "Already done")
    assert state_of(database_url) == before

    for who, words, key in (("sanne", "change approve CHG-1", "1772442000.000200"),
                            ("arjun", "change approve CHG-1", "1772442000.000300"),
                            ("tom", "change start CHG-1", "1772442000.000400"),
                            ("tom", "change complete CHG-1", "1772442000.000500")):
        assert run(ctx, who, words, key=key)[1] == "ok"
        before = state_of(database_url)
        reply, outcome = run(ctx, who, words, key=key)
        assert outcome == "duplicate", all_text(reply)
        assert state_of(database_url) == before
    assert the_change(database_url, 1).state == "closed"
    assert [v.person_id for v in live_votes(database_url, 1)] == ["sanne", "arjun"]


def test_a_refused_command_does_not_use_up_its_delivery_key(ctx, database_url):
    cid = mail(ctx, "tom", risk="medium")
    assert run(ctx, "meera", f"change approve CHG-{cid}", key="Ev06KEY")[1] == "refused"
    assert db_count(database_url, ProcessedDelivery) == 0
    assert run(ctx, "sanne", f"change approve CHG-{cid}", key="Ev06KEY")[1] == "ok"


def test_a_mistyped_change_verb_gets_a_did_you_mean_with_the_command_put_right(ctx, database_url):
    cid = mail(ctx)
    priya = console_actor(ctx, "priya")
    reply, outcome = run(ctx, priya, f"change aprove CHG-{cid} Looks good")
    assert outcome == "user_error"
    assert reply.text == "I don't know 'change aprove'. Did you mean `change approve`?"
    assert reply.footer == f"Try: change approve CHG-{cid} Looks good"
    assert all_votes(database_url, cid) == []
    ok(ctx, priya, reply.footer.removeprefix("Try: "))  # the example is the command that was meant
    assert [v.decision for v in all_votes(database_url, cid)] == ["approve"]
