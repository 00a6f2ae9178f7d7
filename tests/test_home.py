"""Each person's home, work raised from a message, and references summarised, at the handler level: the
demo app.yaml's people through the one router, on the real store with the test clock (T0, a Monday).

tom owns payments and is in payments-eng with grace; sanne and arjun are on the CAB, priya is the
service manager (and on the CAB)."""
from __future__ import annotations

from datetime import timedelta

import yaml
from sqlalchemy import select

from bot import manifest, render
from handlers.core.config_loading import parse_config
from handlers.core.context import Command
from handlers.core.people import resolve_actor
from handlers.home import published, references, shortcuts
from handlers.router import dispatch, submit_form
from handlers.sla import breaches
from storage.models import AuditRecord, Change, HomeView, OutboxMessage, Ticket
from tests.conftest import T0, demo_config

MAIL = dict(title="Rotate the mail relay TLS certificates", services="email", risk="medium",
            start="2026-03-10 20:00", end="2026-03-10 21:00", backout="Reinstall the previous certificate")
PAYMENTS_SLACK = "C0PAYMENTS"
LINK = "https://northwind.slack.com/archives/C0PAYMENTS/p1700000000000100"


def actor(ctx, pid: str, platform: str = "slack"):
    p = ctx.config.person(pid)
    return resolve_actor(ctx, platform, getattr(p, platform), p.name)


def run(ctx, who: str, text: str):
    reply, outcome = dispatch(ctx, Command(actor=actor(ctx, who), text=text, via="button"))
    return reply, outcome


def home(ctx, who: str):
    reply, outcome = run(ctx, who, "home")
    assert outcome == "ok", reply
    return reply


def section(reply, title: str):
    found = [s for s in reply.sections if s.title == title]
    return found[0] if found else None


def new_change(ctx, who: str = "lucas") -> int:
    words = " ".join(f'{k}="{v}"' for k, v in MAIL.items())
    reply, outcome = run(ctx, who, f"change new {words}")
    assert outcome == "ok", reply
    with ctx.sessions() as s:
        return s.scalars(select(Change.id).order_by(Change.id.desc())).first()


def test_a_vote_waits_on_the_home_of_each_eligible_approver_and_its_button_is_the_ordinary_command(ctx):
    change = new_change(ctx)
    waiting = section(home(ctx, "sanne"), "Waiting for your vote")
    assert waiting and f"CHG-{change}" in waiting.text
    assert [b.run for b in waiting.buttons] == [f"change approve CHG-{change}", f"change reject CHG-{change}"]
    assert section(home(ctx, "tom"), "Waiting for your vote") is None  # not on the CAB
    mine = section(home(ctx, "lucas"), "Your changes")
    assert f"CHG-{change}" in mine.text and "waits on approvals, 0 of" in mine.text

    reply, outcome = run(ctx, "sanne", waiting.buttons[0].run)
    assert outcome == "ok" and reply.title == f"Approved CHG-{change}"
    assert section(home(ctx, "sanne"), "Waiting for your vote") is None
    # The requester pressing the same button is refused as anywhere else.
    reply, outcome = run(ctx, "lucas", f"change approve CHG-{change}")
    assert outcome == "refused"


def test_the_team_sees_its_incidents_nearest_breach_first_and_acknowledges_a_breach_from_home(ctx, clock):
    run(ctx, "tom", "incident new payments P3 Refunds are slow")
    run(ctx, "tom", "incident new payments P1 Card payments fail")
    incidents = section(home(ctx, "grace"), "Your team's open incidents")
    first, second = incidents.text.splitlines()[:2]
    assert "P1" in first and "P3" in second  # the P1's clocks are due sooner
    assert section(home(ctx, "sanne"), "Your team's open incidents") is None

    clock.advance(hours=5)
    breaches.sweep(ctx)
    notices = [s for s in home(ctx, "grace").sections if s.buttons and s.buttons[0].label == "Acknowledge"]
    assert notices and notices[0].title == "Breach notices not acknowledged"
    reply, outcome = run(ctx, "grace", notices[0].buttons[0].run)
    assert outcome == "ok"
    after = [s for s in home(ctx, "grace").sections if s.buttons and s.buttons[0].label == "Acknowledge"]
    assert len(after) == len(notices) - 1


def test_services_csi_and_the_month_at_a_glance_are_shown_to_whom_they_concern(ctx):
    run(ctx, "meera", "subscribe vpn")
    services = section(home(ctx, "meera"), "Your services").text
    assert "Remote Access VPN" in services and "(followed)" in services and "Data Platform" in services
    run(ctx, "priya", 'csi add title="Publish VPN set-up steps" owner=sanne due="in 2 weeks"')
    assert "Publish VPN set-up steps" in section(home(ctx, "sanne"), "Your improvement items").text
    assert any("so far" in s.title for s in home(ctx, "priya").sections)
    assert not any("so far" in s.title for s in home(ctx, "sanne").sections)
    reply, outcome = run(ctx, "sanne", "home please")
    assert outcome == "user_error"


def test_the_slack_home_is_published_to_those_who_opened_it_when_it_changes_and_debounced(ctx, clock):
    sanne = actor(ctx, "sanne")
    assert published.sweep(ctx) == 0  # nobody opened it: nothing is published
    assert published.opened(ctx, sanne, "slack", "U0SANNE03", "home:1")
    assert not published.opened(ctx, sanne, "slack", "U0SANNE03", "home:2")  # the same view again
    first = _homes(ctx)
    assert [(r.target, r.status) for r in first] == [("U0SANNE03", "pending")]
    view = render.slack_home(published.home_reply(ctx, sanne))
    assert view["type"] == "home" and view["blocks"][0]["type"] == "header"

    with ctx.sessions.begin() as s:  # as the deliverer would, once views.publish answered
        s.get(OutboxMessage, first[0].id).status = "sent"

    new_change(ctx)  # now a vote waits for her: her home changes, twice in a row
    assert published.sweep(ctx) == 1
    run(ctx, "meera", "subscribe vpn")  # not on her home
    assert published.sweep(ctx) == 0
    run(ctx, "sanne", "subscribe payments")
    assert published.sweep(ctx) == 1
    rows = _homes(ctx)
    assert [r.status for r in rows] == ["sent", "superseded", "pending"]
    debounce = timedelta(seconds=ctx.config.delivery.home_debounce_seconds)
    assert rows[2].next_attempt_at == rows[0].next_attempt_at + debounce
    assert "Waiting for your vote" in str(rows[2].message)
    assert published.sweep(ctx) == 0  # nothing changed since


def test_a_press_on_the_home_publishes_it_again_with_the_answer_on_top(ctx):
    change = new_change(ctx)
    sanne = actor(ctx, "sanne")
    reply, _ = run(ctx, "sanne", f"change approve CHG-{change}")
    published.after_action(ctx, sanne, "slack", "U0SANNE03", reply, "home:press")
    [row] = _homes(ctx)
    assert row.message["sections"][0]["text"].startswith(f"✅ *Approved CHG-{change}*")
    refreshed, _ = run(ctx, "sanne", "home")  # its Refresh: the home alone, nothing on top
    published.after_action(ctx, sanne, "slack", "U0SANNE03", refreshed, "home:refresh")
    assert _homes(ctx)[-1].message["sections"] == refreshed.to_dict()["sections"]


def _homes(ctx):
    with ctx.sessions() as s:
        return s.scalars(select(OutboxMessage).where(OutboxMessage.target_kind == "home")
                         .order_by(OutboxMessage.id)).all()


def where(text: str = "Card payments fail for Amex\nSeen at 10:02 on all tills") -> dict:
    return shortcuts.origin("slack", PAYMENTS_SLACK, "1700000000.000100", LINK, text)


def submit(ctx, who: str, form: str, values: dict, context: dict):
    return submit_form(ctx, Command(actor=actor(ctx, who), text=f"form {form}", via="form"), form, values, context)


def test_an_incident_from_a_message_keeps_its_link_and_is_announced_in_the_thread(ctx):
    form = shortcuts.incident_form(ctx, actor(ctx, "tom"), where())
    assert {i.id: i.value for i in form.inputs}["title"] == "Card payments fail for Amex"
    long = shortcuts.change_form(ctx, actor(ctx, "tom"), where("Long\n" + "x" * 5000))
    assert len(render.slack_modal(long)["private_metadata"]) < 3000  # Slack's limit; the text is not carried
    reply, outcome, invalid = submit(ctx, "tom", form.name, {"priority": "P2", "title": "Amex fails"}, form.context)
    assert outcome == "user_error" and set(invalid.errors) == {"service"}
    assert reply.form.name == shortcuts.INCIDENT_FORM and reply.form.context["permalink"] == LINK

    reply, outcome, _ = submit(ctx, "tom", form.name, {"service": "payments", "priority": "P2", "title": "Amex fails"},
                               form.context)
    assert outcome == "ok", reply
    with ctx.sessions() as s:
        ticket = s.scalars(select(Ticket)).one()
        thread = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith("from-message:"))).one()
        audit = s.scalars(select(AuditRecord).where(AuditRecord.action == "incident.new")).one()
    assert ticket.permalink == LINK and ticket.opened_by == "tom"
    assert (thread.target, thread.thread_id) == (PAYMENTS_SLACK, "1700000000.000100")
    assert audit.detail["permalink"] == LINK and audit.person_id == "tom"
    assert ("Raised from", LINK) in [(f.label, f.value) for f in reply.sections[0].fields]
    assert LINK in str(thread.message)


def test_a_change_from_a_message_goes_through_the_same_checks_and_keeps_its_link(ctx):
    form = shortcuts.change_form(ctx, actor(ctx, "lucas"), where("Mail relay certs expire Friday"))
    assert form.name == shortcuts.CHANGE_FORM and {i.id: i.value for i in form.inputs}["title"] == \
        "Mail relay certs expire Friday"
    values = {**MAIL, "type": "normal", "impact": "medium", "backout": ""}
    reply, outcome, invalid = submit(ctx, "lucas", form.name, values, form.context)
    assert outcome == "user_error" and "backout" in invalid.errors and reply.form.context["permalink"] == LINK
    reply, outcome, _ = submit(ctx, "lucas", form.name, {**values, "backout": "Old certificate"}, form.context)
    assert outcome == "ok", reply
    with ctx.sessions() as s:
        change = s.scalars(select(Change)).one()
        thread = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith("from-message:"))).one()
    assert change.permalink == LINK and change.requester == "lucas"
    assert thread.thread_id == "1700000000.000100"
    assert f"CHG-{change.id} requested from this message" in thread.message["title"]


def test_references_are_summarised_once_per_thread_where_the_channel_asks_for_it(ctx):
    run(ctx, "tom", "incident new payments P2 Card payments fail")
    tom = actor(ctx, "tom")
    text = "Is INC-1 still on? see also CHG-99 and inc-1"
    assert references.summarise(ctx, tom, "slack", PAYMENTS_SLACK, "1.1", text) == 0  # off by default
    cfg = demo_config()
    cfg["channels"]["payments"]["unfurl"] = True
    ctx.config = parse_config(yaml.safe_dump(cfg, sort_keys=False))
    assert references.summarise(ctx, tom, "slack", PAYMENTS_SLACK, "1.1", text) == 1  # CHG-99 does not exist
    assert references.summarise(ctx, tom, "slack", PAYMENTS_SLACK, "1.1", "INC-1 again") == 0
    assert references.summarise(ctx, tom, "slack", PAYMENTS_SLACK, "2.2", "INC-1 again") == 1  # another thread
    assert references.summarise(ctx, tom, "slack", "C0SHOP0001", "3.3", "INC-1") == 0
    with ctx.sessions() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith("unfurl:"))).all()
    assert [r.thread_id for r in rows] == ["1.1", "2.2"]
    assert rows[0].message["title"].startswith("INC-1 P2 payments · Card payments fail — new")
    assert rows[0].message["buttons"][0]["run"] == "incident show INC-1"


def test_the_manifests_declare_the_home_tab_the_events_and_the_shortcuts(ctx, tmp_path):
    slack = yaml.safe_load(manifest.slack_manifest(ctx.config, "https://svc.example", False))
    assert slack["features"]["app_home"]["home_tab_enabled"] is True
    assert {"app_home_opened", "message.channels"} <= set(slack["settings"]["event_subscriptions"]["bot_events"])
    assert {(s["type"], s["callback_id"]) for s in slack["features"]["shortcuts"]} == {
        ("message", "svc_incident_from_message"), ("message", "svc_change_from_message"), ("global", "svc_new_change")}
    assert all(len(s["name"]) <= 24 for s in slack["features"]["shortcuts"])
    import json
    import zipfile
    path = tmp_path / "teams.zip"
    manifest.teams_package(ctx.config, "00000000-0000-0000-0000-000000000001", "svc.example", str(path))
    teams = json.loads(zipfile.ZipFile(path).read("manifest.json"))
    commands = teams["composeExtensions"][0]["commands"]
    assert {c["id"] for c in commands} == {"incidentFromMessage", "changeFromMessage"}
    assert all(c["type"] == "action" and c["context"] == ["message"] and c["fetchTask"] for c in commands)


def test_articles_whose_review_fell_due_wait_on_their_owners_home(ctx, clock):
    reply, outcome = run(ctx, "tom", 'kb new kind=runbook title="Restart the card gateway" services=payments '
                                     'body="Drain, then restart." review=30')
    assert outcome == "ok", reply
    reply, outcome = run(ctx, "tom", "kb publish KB-1")
    assert outcome == "ok", reply
    assert section(home(ctx, "tom"), "Your articles due for review") is None
    clock.advance(days=31)
    due = section(home(ctx, "tom"), "Your articles due for review")
    assert due is not None and due.text.startswith("KB-1 Restart the card gateway — review due")
    assert section(home(ctx, "grace"), "Your articles due for review") is None  # not hers
    run(ctx, "tom", "kb retire KB-1")
    assert section(home(ctx, "tom"), "Your articles due for review") is None
