"""Handler tests: commands through the one router, on the real store (SQLite, or PostgreSQL when
SVCBOT_TEST_DATABASE_URL is set), with the demo configuration and a controllable clock."""
from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import func, select

from handlers import help
from handlers.core.context import Actor, Command, Work
from handlers.core.people import console_actor, resolve_actor
from handlers.router import dispatch
from storage.models import (AuditRecord, Identity, OutboxMessage, Person, ProcessedDelivery, ServiceStatus,
                            StatusChange, Subscription)
from tests.conftest import T0

CHANGE_TABLES = {"service_status": ServiceStatus, "status_history": StatusChange, "audit_log": AuditRecord,
                 "outbox": OutboxMessage}
ALL_TABLES = {**CHANGE_TABLES, "subscriptions": Subscription, "processed_deliveries": ProcessedDelivery,
              "people": Person, "identities": Identity}
OVERVIEW_LINE = re.compile(r"\(`(?P<id>[a-z0-9_-]+)`, tier (?P<tier>\d)\) — (?P<state>[a-z-]+)(?::\s(?P<msg>.*))?$")






def person(ctx, pid: str, platform: str = "slack"):
    """The actor behind a demo person's account, resolved as a front end would."""
    p = ctx.config.person(pid)
    return resolve_actor(ctx, platform, getattr(p, platform), p.name)


def run(ctx, actor, text: str, key: str | None = None):
    return dispatch(ctx, Command(actor=actor, text=text, delivery_key=key))


def counts(ctx, tables=ALL_TABLES) -> dict[str, int]:
    with ctx.sessions() as s:
        return {name: s.scalar(select(func.count()).select_from(model)) for name, model in tables.items()}


def rows(ctx, model, *order):
    with ctx.sessions() as s:
        return s.scalars(select(model).order_by(*order)).all()


def all_text(reply) -> str:
    """Every string a reply carries, wherever it sits."""
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

    walk(reply.to_dict())
    return "\n".join(out)


def fields(reply) -> dict[str, str]:
    return {f.label: f.value for s in reply.sections for f in s.fields}


def overview(reply) -> list[dict]:
    found = []
    for section in reply.sections:
        m = OVERVIEW_LINE.search(section.text)
        assert m, f"unexpected overview line {section.text!r}"
        found.append(m.groupdict())
    return found


# --- status ---------------------------------------------------------------------------------------

def test_status_overview_lists_every_service_by_tier_all_operational(ctx):
    reply, outcome = run(ctx, person(ctx, "meera"), "status")
    assert outcome == "ok"
    lines = overview(reply)
    cfg = {s.id: s for s in ctx.config.services}
    assert sorted(line["id"] for line in lines) == sorted(cfg)
    assert len(lines) == len(cfg)
    tiers = [int(line["tier"]) for line in lines]
    assert tiers == sorted(tiers) and len(set(tiers)) > 1
    assert all(int(line["tier"]) == cfg[line["id"]].tier for line in lines)
    # within a tier, by name
    for tier in set(tiers):
        names = [cfg[line["id"]].name for line in lines if int(line["tier"]) == tier]
        assert names == sorted(names)
    assert {line["state"] for line in lines} == {"operational"}
    assert reply.title == "All services operational" and reply.tone == "ok"


def test_status_overview_reflects_states_that_were_set(ctx):
    assert run(ctx, person(ctx, "tom"), "service set payments major-outage Card authorisations failing")[1] == "ok"
    assert run(ctx, person(ctx, "sanne"), "service set vpn maintenance")[1] == "ok"
    assert run(ctx, person(ctx, "arjun"), "service set wms degraded")[1] == "ok"
    reply, outcome = run(ctx, person(ctx, "lucas"), "status")
    assert outcome == "ok"
    by_id = {line["id"]: line for line in overview(reply)}
    assert by_id["payments"]["state"] == "major-outage"
    assert by_id["payments"]["msg"] == "Card authorisations failing"
    assert by_id["vpn"]["state"] == "maintenance" and by_id["vpn"]["msg"] is None
    assert by_id["wms"]["state"] == "degraded"
    untouched = set(by_id) - {"payments", "vpn", "wms"}
    assert untouched and all(by_id[i]["state"] == "operational" for i in untouched)
    assert reply.title == "Some services are affected" and reply.tone == "error"

    # back to operational everywhere but a degraded one: the worst state sets the tone
    run(ctx, person(ctx, "tom"), "service set payments operational Recovered")
    reply, _ = run(ctx, person(ctx, "lucas"), "status")
    assert {line["id"]: line["state"] for line in overview(reply)}["payments"] == "operational"
    assert reply.title == "Some services are affected" and reply.tone == "warning"


def test_status_of_one_service_shows_owner_team_suppliers_and_history(ctx, clock):
    tom = person(ctx, "tom")
    assert run(ctx, tom, "service set payments degraded Slow card payments")[1] == "ok"
    clock.advance(minutes=45)
    assert run(ctx, tom, "service set payments operational Fixed")[1] == "ok"

    reply, outcome = run(ctx, person(ctx, "meera"), "status payments")
    assert outcome == "ok"
    cfg = ctx.config
    svc = cfg.service("payments")
    team = cfg.group(svc.team)
    f = fields(reply)
    assert reply.title == svc.name
    assert "operational" in f["Status"]
    assert f["Since"] == clock().strftime("%Y-%m-%d %H:%M UTC")
    assert f["Owner"] == cfg.person(svc.owner).name
    assert team.name in f["Team"] and team.location in f["Team"]
    assert f["Suppliers"] == ", ".join(cfg.group(g).name for g in svc.suppliers)
    assert f["Tier"] == str(svc.tier)
    assert f["Subscribers"] == "0"
    history = next(s for s in reply.sections if s.title == "Recent status changes").text.splitlines()
    assert len(history) == 2
    assert history[0].startswith(clock().strftime("%Y-%m-%d %H:%M")) and history[0].endswith("operational: Fixed")
    assert history[1].startswith(T0.strftime("%Y-%m-%d %H:%M")) and history[1].endswith("degraded: Slow card payments")
    assert reply.sections[0].text == "Fixed"


def test_status_of_one_service_without_history_or_suppliers(ctx):
    reply, outcome = run(ctx, person(ctx, "tom"), "status email")
    assert outcome == "ok"
    f = fields(reply)
    assert f["Since"] == "—" and f["Suppliers"] == "—"
    assert not any(s.title == "Recent status changes" for s in reply.sections)
    assert reply.sections[0].text == ctx.config.service("email").description


def test_status_button_is_subscribe_or_unsubscribe_for_the_person_asking(ctx):
    grace, tom = person(ctx, "grace"), person(ctx, "tom")

    def button(actor):
        reply, outcome = run(ctx, actor, "status payments")
        assert outcome == "ok" and len(reply.buttons) == 1
        return reply.buttons[0]

    b = button(grace)
    assert (b.label, b.run) == ("Subscribe", "subscribe payments")
    # the button's words are a working command
    assert run(ctx, grace, b.run)[1] == "ok"
    b = button(grace)
    assert (b.label, b.run) == ("Unsubscribe", "unsubscribe payments")
    assert button(tom).label == "Subscribe"
    reply, _ = run(ctx, tom, "status payments")
    assert fields(reply)["Subscribers"] == "1"
    assert run(ctx, grace, b.run)[1] == "ok"
    assert button(grace).label == "Subscribe"


def test_status_finds_a_service_by_its_name_in_any_case(ctx):
    reply, outcome = run(ctx, person(ctx, "tom"), 'status "payments GATEWAY"')
    assert outcome == "ok" and reply.title == ctx.config.service("payments").name


# --- service set: who may --------------------------------------------------------------------------

@pytest.mark.parametrize("who, why", [("tom", "owner"), ("grace", "team member"), ("priya", "service manager")])
def test_service_set_is_allowed_for_owner_team_and_service_managers(ctx, clock, who, why):
    actor = person(ctx, who)
    reply, outcome = run(ctx, actor, "service set payments degraded Card payments are slow")
    assert outcome == "ok", (why, reply)
    assert "Payments Gateway" in reply.title and "degraded" in reply.title
    assert reply.text == "Card payments are slow"

    (status,) = rows(ctx, ServiceStatus)
    assert (status.service_id, status.state, status.message, status.updated_by, status.since) == \
        ("payments", "degraded", "Card payments are slow", who, clock())
    (change,) = rows(ctx, StatusChange)
    assert (change.previous_state, change.state, change.person_id, change.platform, change.at) == \
        ("operational", "degraded", who, "slack", clock())
    (audit,) = rows(ctx, AuditRecord)
    assert (audit.person_id, audit.platform, audit.action, audit.subject, audit.at) == \
        (who, "slack", "service.set", "service:payments", clock())
    assert audit.detail == {"previous": "operational", "state": "degraded", "message": "Card payments are slow"}


@pytest.mark.parametrize("who", ["meera", "sanne", "arjun", "newcomer"])
def test_service_set_by_anyone_else_is_refused_and_writes_nothing(ctx, who):
    if who == "newcomer":
        actor = resolve_actor(ctx, "slack", "U0STRANGER", "Stranger")
    else:
        actor = person(ctx, who)
    before = counts(ctx)
    reply, outcome = run(ctx, actor, "service set payments major-outage Everything is down", key=f"ev-{who}")
    assert outcome == "refused"
    assert reply.tone == "error" and reply.private
    assert "Tom Hughes" in reply.text  # told who may
    assert "Traceback" not in all_text(reply)
    assert counts(ctx) == before
    assert all(n == 0 for n in counts(ctx, CHANGE_TABLES).values())


def test_console_person_has_the_same_rights(ctx):
    assert run(ctx, console_actor(ctx, "meera"), "service set payments degraded")[1] == "refused"
    assert run(ctx, console_actor(ctx, None), "service set payments degraded")[1] == "ok"  # priya
    (change,) = rows(ctx, StatusChange)
    assert (change.person_id, change.platform) == ("priya", "console")


# --- service set: the announcement -----------------------------------------------------------------

def _expected_targets(ctx, service_id: str, subscribers: list[str]) -> set[tuple[str, str, str]]:
    cfg = ctx.config
    channel = cfg.channels[cfg.service(service_id).channel]
    expected = {(p, "channel", getattr(channel, p)) for p in ("slack", "teams") if getattr(channel, p)}
    with ctx.sessions() as s:
        # A direct message goes to one platform: Slack, for a subscriber who is on both.
        for ident in s.scalars(select(Identity).where(Identity.person_id.in_(subscribers), Identity.platform == "slack")):
            expected.add((ident.platform, "person", ident.external_id))
    return expected


def test_announcement_queues_one_row_per_channel_platform_and_subscriber_identity(ctx, clock):
    grace = person(ctx, "grace")
    newcomer = resolve_actor(ctx, "slack", "U0NEWBIE1", "New Bee")
    assert run(ctx, grace, "subscribe payments")[1] == "ok"
    assert run(ctx, newcomer, "subscribe payments")[1] == "ok"
    assert run(ctx, person(ctx, "lucas"), "subscribe email")[1] == "ok"  # another service's subscriber
    clock.advance(minutes=5)

    reply, outcome = run(ctx, person(ctx, "tom"), "service set payments partial-outage Wallets failing")
    assert outcome == "ok"
    expected = _expected_targets(ctx, "payments", ["grace", newcomer.person_id])
    # both channel platforms, grace and the newcomer on Slack
    assert len(expected) == 4
    outbox = rows(ctx, OutboxMessage, OutboxMessage.id)
    got = [(r.platform, r.target_kind, r.target) for r in outbox]
    assert sorted(got) == sorted(expected)  # exactly one each: no duplicates, nobody else

    (change,) = rows(ctx, StatusChange)
    audit = [a for a in rows(ctx, AuditRecord) if a.action == "service.set"]
    assert len(audit) == 1
    keys = [r.dedupe_key for r in outbox]
    assert len(set(keys)) == len(keys)
    assert all(k.startswith(f"status:{change.id}:") for k in keys)
    for r in outbox:
        assert r.status == "pending" and r.attempts == 0 and not r.maybe_sent
        assert r.created_at == r.next_attempt_at == audit[0].at == change.at == clock()
        assert r.subject == "service:payments"
        assert "partial-outage" in r.message["title"] and r.message["text"] == "Wallets failing"
        assert r.message["private"] is False
    assert "2 subscribers" in reply.footer and "Slack" in reply.footer and "Teams" in reply.footer


def test_announcement_to_a_channel_mapped_on_one_platform_only(ctx):
    reply, outcome = run(ctx, person(ctx, "arjun"), "service set wms degraded Picking is slow")
    assert outcome == "ok"
    outbox = rows(ctx, OutboxMessage)
    assert {(r.platform, r.target_kind, r.target) for r in outbox} == _expected_targets(ctx, "wms", [])
    assert len(outbox) == 1
    assert "subscriber" not in reply.footer


def test_services_sharing_a_channel_get_distinct_dedupe_keys(ctx):
    # wms and data-platform both announce to #platform-ops
    assert run(ctx, person(ctx, "arjun"), "service set wms degraded")[1] == "ok"
    assert run(ctx, person(ctx, "meera"), "service set data-platform degraded")[1] == "ok"
    assert run(ctx, person(ctx, "meera"), "service set data-platform operational")[1] == "ok"
    outbox = rows(ctx, OutboxMessage)
    assert len(outbox) == 3 and len({r.dedupe_key for r in outbox}) == 3
    assert {r.target for r in outbox} == {ctx.config.channels["platform-ops"].slack}


@pytest.mark.parametrize("failing", ["post_to_channel", "message_person"])
def test_a_failure_after_the_state_change_leaves_nothing_behind(ctx, monkeypatch, caplog, failing):
    grace = person(ctx, "grace")
    assert run(ctx, grace, "subscribe payments")[1] == "ok"  # so that message_person is reached
    before = counts(ctx)

    def boom(*args, **kwargs):
        raise RuntimeError("database exploded mid-announcement")

    monkeypatch.setattr(Work, failing, boom)
    with caplog.at_level(logging.ERROR, logger="svcbot"):
        reply, outcome = run(ctx, person(ctx, "tom"), "service set payments major-outage Down", key="Ev-atomic")
    assert outcome == "error"
    assert reply.tone == "error"
    m = re.search(r"Reference: ([0-9a-f]{8})\b", reply.text)
    assert m, reply.text
    assert "Nothing was changed" in reply.text
    text = all_text(reply)
    assert "Traceback" not in text and "RuntimeError" not in text and "exploded" not in text
    assert any(m.group(1) in r.getMessage() for r in caplog.records), "the reference id is in the log"
    # the status, its history, the audit record, the outbox rows and the dedupe key: none of them
    assert counts(ctx) == before

    # the delivery key was not used up: the platform's retry goes through once the fault is gone
    monkeypatch.undo()
    reply, outcome = run(ctx, person(ctx, "tom"), "service set payments major-outage Down", key="Ev-atomic")
    assert outcome == "ok"
    assert rows(ctx, ServiceStatus)[0].state == "major-outage"


def test_same_state_without_a_message_is_a_user_error_with_a_message_an_update(ctx, clock):
    tom = person(ctx, "tom")
    # nothing set yet: the service is operational already
    reply, outcome = run(ctx, tom, "service set payments operational")
    assert outcome == "user_error" and "already operational" in reply.text
    assert all(n == 0 for n in counts(ctx, CHANGE_TABLES).values())

    assert run(ctx, tom, "service set payments degraded Slow")[1] == "ok"
    set_at = clock()
    before = counts(ctx)
    clock.advance(minutes=20)
    reply, outcome = run(ctx, tom, "service set payments degraded")
    assert outcome == "user_error"
    assert reply.footer == "Try: /svc service set payments degraded Still investigating"
    assert counts(ctx) == before

    reply, outcome = run(ctx, tom, "service set payments degraded Still investigating")
    assert outcome == "ok" and "still" in reply.title
    (status,) = rows(ctx, ServiceStatus)
    assert status.state == "degraded" and status.message == "Still investigating"
    assert status.since == set_at  # an update does not restart the state's clock
    last = rows(ctx, StatusChange, StatusChange.id)[-1]
    assert (last.previous_state, last.state, last.message) == ("degraded", "degraded", "Still investigating")
    new_rows = [r for r in rows(ctx, OutboxMessage) if r.dedupe_key.startswith(f"status:{last.id}:")]
    assert new_rows and all(r.message["title"].endswith("update") for r in new_rows)
    assert counts(ctx)["audit_log"] == before["audit_log"] + 1


def test_a_repeated_delivery_key_is_a_duplicate_and_changes_nothing(ctx):
    tom = person(ctx, "tom")
    assert run(ctx, tom, "service set payments degraded Slow", key="Ev0001")[1] == "ok"
    before = counts(ctx)
    reply, outcome = run(ctx, tom, "service set payments degraded Slow", key="Ev0001")
    assert outcome == "duplicate" and reply.tone != "error"
    assert counts(ctx) == before
    # even different words under the same key (a retried delivery) are not acted on twice
    reply, outcome = run(ctx, tom, "service set payments major-outage Down", key="Ev0001")
    assert outcome == "duplicate"
    assert counts(ctx) == before
    assert rows(ctx, ServiceStatus)[0].state == "degraded"
    # a new key is a new request
    assert run(ctx, tom, "service set payments major-outage Down", key="Ev0002")[1] == "ok"


def test_a_repeated_delivery_key_on_subscribe_is_a_duplicate(ctx):
    grace = person(ctx, "grace")
    assert run(ctx, grace, "subscribe payments", key="click-1")[1] == "ok"
    assert run(ctx, grace, "unsubscribe payments", key="click-1")[1] == "duplicate"
    assert len(rows(ctx, Subscription)) == 1


def test_service_set_by_name_with_curly_quotes_and_any_case(ctx):
    reply, outcome = run(ctx, person(ctx, "tom"), "service set “Payments Gateway” DEGRADED “Card payments slow”")
    assert outcome == "ok"
    (status,) = rows(ctx, ServiceStatus)
    assert (status.service_id, status.state, status.message) == ("payments", "degraded", "Card payments slow")


# --- subscribe / unsubscribe -----------------------------------------------------------------------

def test_subscribe_and_unsubscribe_are_idempotent(ctx):
    grace = person(ctx, "grace")
    r1, o1 = run(ctx, grace, "subscribe payments")
    r2, o2 = run(ctx, grace, "subscribe payments")
    assert (o1, o2) == ("ok", "ok")
    assert r1.title != r2.title and "already" in r2.title
    subs = rows(ctx, Subscription)
    assert [(s.person_id, s.service_id) for s in subs] == [("grace", "payments")]
    assert [a.action for a in rows(ctx, AuditRecord)] == ["service.subscribe"]

    r3, o3 = run(ctx, grace, "unsubscribe payments")
    r4, o4 = run(ctx, grace, "unsubscribe payments")
    assert (o3, o4) == ("ok", "ok")
    assert r3.title != r4.title and "not following" in r4.title
    assert rows(ctx, Subscription) == []
    assert [a.action for a in rows(ctx, AuditRecord, AuditRecord.id)] == ["service.subscribe", "service.unsubscribe"]
    assert rows(ctx, OutboxMessage) == []


def test_an_unsubscribed_person_is_no_longer_messaged(ctx):
    grace = person(ctx, "grace")
    run(ctx, grace, "subscribe payments")
    run(ctx, grace, "unsubscribe payments")
    run(ctx, person(ctx, "tom"), "service set payments degraded")
    assert {r.target_kind for r in rows(ctx, OutboxMessage)} == {"channel"}


# --- people ---------------------------------------------------------------------------------------

def test_an_unknown_person_is_remembered_on_first_contact(ctx):
    before = counts(ctx)
    actor = resolve_actor(ctx, "slack", "U0NEWBIE9", "New Bee")
    assert actor.person_id == "slack-u0newbie9"
    assert actor.name == "New Bee" and actor.platform == "slack"
    assert actor.roles == frozenset()
    assert actor.timezone == ctx.config.bot.timezone
    after = counts(ctx)
    assert after["people"] == before["people"] + 1 and after["identities"] == before["identities"] + 1
    with ctx.sessions() as s:
        ident = s.scalar(select(Identity).where(Identity.platform == "slack", Identity.external_id == "U0NEWBIE9"))
        assert ident.person_id == actor.person_id
        assert s.get(Person, actor.person_id).name == "New Bee"

    again = resolve_actor(ctx, "slack", "U0NEWBIE9", "New Bee")
    assert again == actor
    assert counts(ctx) == after
    # the newcomer may use the bot at once
    assert run(ctx, actor, "subscribe payments")[1] == "ok"


def test_a_known_person_is_resolved_on_either_platform_with_roles(ctx):
    priya = ctx.config.person("priya")
    before = counts(ctx)
    on_slack = resolve_actor(ctx, "slack", priya.slack, "whatever slack says")
    on_teams = resolve_actor(ctx, "teams", priya.teams, "", address="29:priya-channel-account")
    assert on_slack.person_id == on_teams.person_id == "priya"
    assert on_slack.name == priya.name
    assert "service_managers" in on_slack.roles and "cab" in on_teams.roles
    assert on_teams.timezone == priya.timezone
    assert counts(ctx) == before  # known from app.yaml: nobody new
    with ctx.sessions() as s:
        ident = s.scalar(select(Identity).where(Identity.platform == "teams", Identity.external_id == priya.teams))
        assert ident.address == "29:priya-channel-account"


def test_an_actor_built_directly_works_like_a_resolved_one(ctx):
    actor = Actor(person_id="grace", name="Grace Okafor", platform="teams")
    assert run(ctx, actor, "service set webshop degraded Checkout slow")[1] == "ok"
    (audit,) = rows(ctx, AuditRecord)
    assert (audit.person_id, audit.platform) == ("grace", "teams")


# --- wrong commands -------------------------------------------------------------------------------

BAD_COMMANDS = [
    "frobnicate",
    "status payments webshop",
    "status nosuch",
    "service",
    "service get payments",
    "service set payments",
    "service set nosuch degraded",
    "service set payments purple Everything is purple",
    'service set payments degraded "Card payments are slow',
    "subscribe",
    "subscribe nosuch",
    "subscribe payments webshop",
    "unsubscribe",
    "unsubscribe nosuch",
    "help nosuch",
]


@pytest.mark.parametrize("platform", ["slack", "teams", "console"])
@pytest.mark.parametrize("text", BAD_COMMANDS)
def test_every_user_error_says_what_was_wrong_shows_a_working_example_and_changes_nothing(ctx, text, platform):
    actor = console_actor(ctx, "priya") if platform == "console" else person(ctx, "priya", platform)
    before = counts(ctx)
    reply, outcome = run(ctx, actor, text, key=f"bad-{platform}")
    assert outcome == "user_error"
    assert reply.tone == "error" and reply.private
    assert reply.text.strip()
    prefix = "Try: /svc " if platform == "slack" else "Try: "
    assert reply.footer.startswith(prefix), reply.footer
    example = reply.footer[len(prefix):]
    assert example and not example.startswith("/")
    body = all_text(reply)
    assert "Traceback" not in body and "Error" not in body and 'File "' not in body
    assert counts(ctx) == before
    # the example shown is a right one
    _, example_outcome = run(ctx, actor, example)
    assert example_outcome == "ok", example


def test_unknown_command_names_the_word_and_points_to_help(ctx):
    reply, outcome = run(ctx, person(ctx, "tom"), "Frobnicate payments")
    assert outcome == "user_error"
    assert "Frobnicate" in reply.text
    assert reply.footer == "Try: /svc help"


@pytest.mark.parametrize("text, says", [
    ("incident ack INC-99999999999999999999", "There is no ticket 'INC-99999999999999999999'."),
    ("change approve CHG-99999999999999999999", "Say which change, like CHG-12."),
    ("survey close SRV-99999999999999999999", "Say which survey, like SRV-3."),
    ("csi done CSI-99999999999999999999", "Say which item, like CSI-4."),
    ('csi add title="Faster VPN" ticket=INC-99999999999999999999', "ticket: there is no INC-99999999999999999999")])
def test_a_number_beyond_any_row_is_refused_like_any_unknown_one(ctx, text, says):
    # The store's integers end at 2**31 - 1: a longer number must not reach a query (OverflowError in SQLite).
    reply, outcome = run(ctx, person(ctx, "priya"), text)
    assert (outcome, reply.text) == ("user_error", says)


def test_an_unknown_state_lists_the_states(ctx):
    from handlers.core.config_catalogue import SERVICE_STATES
    reply, outcome = run(ctx, person(ctx, "tom"), "service set payments purple")
    assert outcome == "user_error"
    assert "purple" in reply.text and all(s in reply.text for s in SERVICE_STATES)


def test_an_unknown_service_lists_the_services(ctx):
    reply, outcome = run(ctx, person(ctx, "tom"), "status nosuch")
    assert outcome == "user_error"
    assert "nosuch" in reply.text and all(s.id in reply.text for s in ctx.config.services)


# --- help -----------------------------------------------------------------------------------------

def _examples(reply) -> list[str]:
    return [m for s in reply.sections for m in re.findall(r"`([^`]+)`", s.text)]


@pytest.mark.parametrize("text", ["help", "", "HELP"])
def test_help_lists_every_topic_with_working_examples(ctx, text):
    actor = person(ctx, "priya")
    reply, outcome = run(ctx, actor, text)
    assert outcome == "ok"
    assert ctx.config.bot.name in reply.title
    topics = {title for title, _ in help.TOPICS.values()}
    assert len(reply.sections) == len(topics)
    assert {s.title for s in reply.sections} == topics
    examples = _examples(reply)
    assert any(e.startswith("/svc status") for e in examples)
    assert any(e.startswith("/svc service set") for e in examples)
    assert any(e.startswith("/svc subscribe") for e in examples)
    assert any(e.startswith("/svc unsubscribe") for e in examples)
    assert "help TOPIC" in reply.footer
    for example in examples:
        assert example.startswith("/svc ")
        words = example[len("/svc "):]
        # Examples that name a ticket, change or notice (INC-12, CHG-12, 12) need one to exist; the rest must run.
        expected = ("ok", "user_error") if " 12" in words or "-12" in words else ("ok",)
        assert run(ctx, actor, words)[1] in expected, example


@pytest.mark.parametrize("topic, expected", [("status", "status payments"), ("Service", "service set"),
                                             ("subscribe", "unsubscribe payments"),
                                             ("unsubscribe", "subscribe payments")])
def test_help_on_one_topic(ctx, topic, expected):
    reply, outcome = run(ctx, console_actor(ctx, "tom"), f"help {topic}")
    assert outcome == "ok"
    assert len(reply.sections) == 1
    examples = _examples(reply)
    assert any(e.startswith(expected) for e in examples)
    assert not any(e.startswith("/") for e in examples)  # no slash command outside Slack


def test_help_on_an_unknown_topic_lists_the_topics(ctx):
    reply, outcome = run(ctx, person(ctx, "tom"), "help changes")
    assert outcome == "user_error"
    assert "changes" in reply.text
    assert all(t in reply.text for t in ("status", "service", "subscribe"))


# --- free text and case ---------------------------------------------------------------------------

@pytest.mark.parametrize("message", ["We're looking into it", "We’re looking into it", "Customers' cards declined",
                                     "We're sorry, it's down"])
def test_a_status_message_may_contain_apostrophes(ctx, message):
    reply, outcome = run(ctx, person(ctx, "tom"), f"service set payments degraded {message}")
    assert outcome == "ok", reply.text
    assert rows(ctx, ServiceStatus)[0].message == message


def test_the_sub_command_is_matched_in_any_case_like_every_other_word(ctx):
    reply, outcome = run(ctx, person(ctx, "tom"), "Service Set Payments DEGRADED")
    assert outcome == "ok", reply.text
    assert rows(ctx, ServiceStatus)[0].state == "degraded"


def test_double_quotes_still_group_words(ctx):
    reply, outcome = run(ctx, person(ctx, "tom"), 'service set payments degraded "Card  payments" are slow')
    assert outcome == "ok", reply.text
    assert rows(ctx, ServiceStatus)[0].message == "Card  payments are slow"


def test_maintenance_alone_is_not_called_all_operational(ctx):
    run(ctx, person(ctx, "arjun"), "service set wms maintenance Scanner firmware upgrade")
    reply, _ = run(ctx, person(ctx, "tom"), "status")
    assert reply.title == "Services operational; maintenance under way"


@pytest.mark.parametrize("text, says, example", [
    ("statuss", "I don't know 'statuss'. Did you mean `status`?", "status"),
    ("Statuss payments", "I don't know 'Statuss'. Did you mean `status`?", "status payments"),
    ('servce set payments degraded "Card payments are slow"', "I don't know 'servce'. Did you mean `service`?",
     'service set payments degraded "Card payments are slow"'),
    ("service sett payments degraded", "Use `service set SERVICE STATE [message]`. Did you mean `service set`?",
     "service set payments degraded"),
    ("digest previw morning-ops", "Use `digest list`, `digest preview NAME` or `digest send NAME`. "
                                  "Did you mean `digest preview`?", "digest preview morning-ops"),
])
def test_a_mistyped_word_gets_a_did_you_mean_and_the_command_put_right(ctx, text, says, example):
    actor = console_actor(ctx, "priya")
    before = counts(ctx)
    reply, outcome = run(ctx, actor, text)
    assert (outcome, reply.text, reply.footer) == ("user_error", says, f"Try: {example}")
    assert counts(ctx) == before
    assert run(ctx, actor, example)[1] == "ok"


def test_a_word_far_from_every_command_gets_no_guess(ctx):
    reply, outcome = run(ctx, console_actor(ctx, "priya"), "frobnicate now")
    assert (outcome, reply.text, reply.footer) == ("user_error", "I don't know 'frobnicate'.", "Try: help")


def test_closing_an_open_ticket_names_the_state_it_needs_and_the_step_that_gets_there(ctx):
    tom = console_actor(ctx, "tom")
    reply, _ = run(ctx, tom, "incident new payments P3 Receipts print twice")
    ticket = reply.title.split()[0]
    before = counts(ctx)
    reply, outcome = run(ctx, tom, f"incident close {ticket}")
    assert outcome == "user_error"
    assert reply.text == f"{ticket} is new; it cannot be closed (only when resolved)."
    assert reply.footer == f"Try: incident resolve {ticket}"
    assert counts(ctx) == before
    assert run(ctx, tom, f"incident resolve {ticket}")[1] == "ok"
    assert run(ctx, tom, f"incident close {ticket}")[1] == "ok"
    reply, outcome = run(ctx, tom, f"incident clsoe {ticket}")
    assert (outcome, reply.text) == ("user_error", "I don't know 'incident clsoe'. Did you mean `incident close`?")
