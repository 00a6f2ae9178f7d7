"""The home and work raised from a message, end to end where the door matters: a Slack App Home opened
and a change approved from it, a Slack message made an incident with its permalink, and a Teams message
made a change through the messaging extension's message action. The real server, requests shaped like
the platforms' own samples, and the fake Slack Web API and Teams connector on loopback."""
from __future__ import annotations

import json
import time

import pytest
import requests
import yaml

from storage.models import AuditRecord, Change, ChangeVote, OutboxMessage, Ticket
from tests.conftest import db_rows, demo_config, load_payload, slack_headers, wait_until
from tests.test_changes_slack_e2e import interact, slash, submit
from tests.test_teams_e2e import (ADAPTIVE, PAYMENTS_CONV, channel_mention, execute_invoke, new_id, posted, sample,
                                  sends)
from tests.test_teams_e2e import SANNE as TEAMS_SANNE
from tests.when import at, next_weekday

pytestmark = pytest.mark.e2e

LUCAS, SANNE, TOM = "U0LUCAS06", "U0SANNE03", "U0TOM0002"
PAYMENTS = "C0PAYMENTS"


@pytest.fixture
def config(config_file):
    cfg = demo_config()
    cfg["changes"]["freezes"] = []
    cfg["delivery"]["home_debounce_seconds"] = 0.5
    cfg["channels"]["payments"]["teams"] = PAYMENTS_CONV
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))


def publishes(fake_slack, user: str, containing: str = "") -> list[dict]:
    views = []
    for call in fake_slack.called("views.publish"):
        view = call.params["view"]
        view = json.loads(view) if isinstance(view, str) else view
        if call.params["user_id"] == user and containing in json.dumps(view, ensure_ascii=False):
            views.append(view)
    return views


def test_a_change_approved_from_the_slack_home_and_a_message_made_an_incident(start_server, fake_slack,
                                                                               database_url, config):
    server = start_server()
    wednesday = next_weekday("wed", "Europe/Amsterdam")
    words = (f'title="Rotate the mail relay certificates" services=email risk=medium '
             f'start="{at(wednesday, "20:00")}" end="{at(wednesday, "21:00")}" backout="Previous certificate"')
    assert "CHG-1 submitted" in json.dumps(slash(server, fake_slack, f"change new {words}", LUCAS).json())

    # Sanne opens svcbot's Home tab (app_home_opened, in the shape of Slack's own sample).
    event = load_payload("slack", "java_sdk_schema_skeletons", "AppHomeOpenedPayload.json")
    event.update(type="event_callback", team_id="T0NORTH", api_app_id="A0SVCBOT", event_id="Ev0HOME1",
                 event_time=int(time.time()))
    event["event"].update(user=SANNE, channel="D0SANNE", tab="home", event_ts=str(time.time()))
    body = json.dumps(event)
    assert requests.post(server.url + "/slack/events", data=body, timeout=10,
                         headers=slack_headers(body, content_type="application/json")).status_code == 200
    wait_until(lambda: publishes(fake_slack, SANNE, "CHG-1"), "her home published")
    [view] = publishes(fake_slack, SANNE)
    assert view["type"] == "home" and "Waiting for your vote" in json.dumps(view, ensure_ascii=False)
    approve = next(e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]
                   if e["value"] == "change approve CHG-1")
    assert approve["action_id"].startswith("svc_home:")
    assert publishes(fake_slack, TOM) == []  # nobody else opened it: nothing published to them

    # She presses Approve on it: a block action from a view of type home, with no response URL.
    action = load_payload("slack", "bolt_python", "block_actions.json")
    action["user"] = {"id": SANNE, "username": "sanne", "name": "sanne", "team_id": "T0NORTH"}
    action.pop("response_url", None)
    action.pop("message", None)
    action.pop("channel", None)
    action["container"] = {"type": "view", "view_id": "V0HOME"}
    action["view"] = {"id": "V0HOME", "type": "home", "blocks": view["blocks"]}
    action["actions"][0].update(action_id=approve["action_id"], value=approve["value"], action_ts=str(time.time()))
    assert interact(server, action).status_code == 200
    wait_until(lambda: publishes(fake_slack, SANNE, "Approved CHG-1"), "her home published again with the answer")
    votes = [(v.person_id, v.decision, v.via, v.platform) for v in db_rows(database_url, ChangeVote)]
    assert votes == [("sanne", "approve", "button", "slack")]
    [again] = publishes(fake_slack, SANNE, "Approved CHG-1")
    assert "change approve CHG-1" not in json.dumps(again)

    # Tom makes a message in #payments an incident with the message shortcut.
    shortcut = load_payload("slack", "bolt_python", "shortcut_message.json")
    shortcut.update(callback_id="svc_incident_from_message", trigger_id=f"{time.time_ns()}.trigger",
                    user={"id": TOM, "name": "tom"}, channel={"id": PAYMENTS, "name": "payments"})
    shortcut["message"].update(text="<@U0GRACE07> Card payments fail for Amex\nsince 10:02 on every till",
                               ts="1700000000.000300", user="U0GRACE07")
    shortcut["message_ts"] = "1700000000.000300"
    assert interact(server, shortcut).status_code == 200
    form = fake_slack.wait_for("views.open")[0].params["view"]
    form = json.loads(form) if isinstance(form, str) else form
    title = next(b for b in form["blocks"] if b["block_id"] == "title")["element"]["initial_value"]
    assert title == "Card payments fail for Amex"  # its first line, without the mention
    response = submit(server, form, TOM, {"service": "payments", "priority": "P2", "title": "Amex payments fail"})
    assert response.status_code == 200
    wait_until(lambda: db_rows(database_url, Ticket), "the incident")
    [ticket] = db_rows(database_url, Ticket)
    link = "https://northwind.slack.com/archives/C0PAYMENTS/p1700000000000300"
    assert (ticket.permalink, ticket.opened_by, ticket.priority) == (link, "tom", "P2")
    thread = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params.get("thread_ts") == "1700000000.000300")
    assert thread[0].params["channel"] == PAYMENTS and "INC-1 opened from this message" in thread[0].params["text"]
    assert link in json.dumps(thread[0].params["blocks"])
    assert [a.person_id for a in db_rows(database_url, AuditRecord, AuditRecord.action == "incident.new")] == ["tom"]

    # The global shortcut "New change" opens the ordinary new-change form.
    shortcut = load_payload("slack", "bolt_python", "shortcut_global.json")
    shortcut.update(callback_id="svc_new_change", trigger_id=f"{time.time_ns()}.trigger",
                    user={"id": SANNE, "username": "sanne", "team_id": "T0NORTH"})
    assert interact(server, shortcut).status_code == 200
    opened = fake_slack.wait_for("views.open", count=2)[1].params["view"]
    opened = json.loads(opened) if isinstance(opened, str) else opened
    assert json.loads(opened["private_metadata"])["form"] == "change_new"


@pytest.fixture
def teams_env(server_env):
    return {**server_env, "SVCBOT_TEAMS_EMULATOR": "1"}


def overheard(fake_teams, text: str, root: str | None = None) -> dict:
    """A channel message that does not mention svcbot, which Teams delivers under the RSC permission."""
    activity = channel_mention(fake_teams, TEAMS_SANNE, text)
    activity["entities"] = [e for e in activity["entities"] if e.get("type") != "mention"]
    activity["text"], activity["attachments"][0]["content"] = text, f"<p>{text}</p>"
    if root:  # a reply in that thread
        activity["id"], activity["conversation"]["id"] = new_id(), f"{PAYMENTS_CONV};messageid={root}"
    return activity


def test_a_teams_message_made_a_change_with_the_message_action(start_server, fake_teams, teams_env,
                                                                database_url, config, config_file):
    cfg = yaml.safe_load(config_file.read_text())
    cfg["channels"]["payments"]["unfurl"] = True
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    server = start_server(**teams_env)
    invoke = sample("msteams_docs/invoke_composeExtension_fetchTask.json", fake_teams, sender=TEAMS_SANNE)
    invoke["id"] = f"f:{new_id()}"
    root = new_id()
    invoke["conversation"] = {"isGroup": True, "conversationType": "channel", "id": PAYMENTS_CONV,
                              "tenantId": invoke["channelData"]["tenant"]["id"]}
    link = f"https://teams.microsoft.com/l/message/{PAYMENTS_CONV}/{root}"
    message = {"id": root, "linkToMessage": link, "messageType": "message",
               "body": {"contentType": "html", "content": "<p>VPN certificates expire Friday</p><p>renew them</p>"}}
    invoke["value"] = {"commandId": "changeFromMessage", "commandContext": "message", "requestId": "r1",
                       "context": {"theme": "default"}, "messagePayload": message}
    answer = posted(server, invoke).json()
    card = answer["task"]["value"]["card"]["content"]
    title = next(e for e in card["body"] if e.get("id") == "title")
    assert answer["task"]["type"] == "continue" and title["value"] == "VPN certificates expire Friday"
    [submit_action] = card["actions"]
    assert submit_action["type"] == "Action.Submit"

    wednesday = next_weekday("wed", "Europe/Amsterdam")
    submitted = dict(invoke, id=f"f:{new_id()}", name="composeExtension/submitAction")
    submitted["value"] = {**invoke["value"], "data": {
        **submit_action["data"], "title": "Renew the VPN certificates", "services": "vpn", "type": "normal",
        "risk": "medium", "impact": "low", "start": at(wednesday, "20:00"), "end": at(wednesday, "21:00"),
        "implementer": "sanne", "backout": "Previous certificate", "context": {"channel": "19:elsewhere"}}}
    answer = posted(server, submitted).json()
    assert answer["task"]["type"] == "message" and "CHG-1 submitted" in answer["task"]["value"]
    [change] = db_rows(database_url, Change)
    assert (change.permalink, change.requester, change.state) == (link, "sanne", "awaiting-approval")
    wait_until(lambda: [c for c in sends(fake_teams, PAYMENTS_CONV) if c.params["_reply_to"] == root],
               "the change announced in the message's thread")
    assert not sends(fake_teams, "19:elsewhere")  # where it is announced comes from the invoke, not the card

    # Her home in the personal chat: its Refresh button (an Action.Execute "home") answers with the card
    # itself, which Teams puts in place of the one pressed.
    refreshed = posted(server, execute_invoke(fake_teams, TEAMS_SANNE, {"run": "home"})).json()
    assert refreshed["type"] == ADAPTIVE
    text = json.dumps(refreshed["value"], ensure_ascii=False)
    assert "Home · Sanne de Vries" in text and "CHG-1" in text and '"run": "home"' in text

    # Talk in the channel that does not mention svcbot is not a command: no "I don't know", nothing queued.
    queued = len(db_rows(database_url, OutboxMessage))
    assert posted(server, overheard(fake_teams, "Morning all, coffee first")).status_code in (200, 201)
    assert len(db_rows(database_url, OutboxMessage)) == queued
    # With unfurl on, a reference in it is summarised in its thread, once however often it is named there.
    first = overheard(fake_teams, "Is CHG-1 the one for Friday?")
    posted(server, first)
    summary = wait_until(lambda: [c for c in sends(fake_teams, PAYMENTS_CONV)
                                  if c.params["_reply_to"] == first["id"] and "CHG-1" in json.dumps(c.params)],
                         "CHG-1 summarised in the thread")
    posted(server, overheard(fake_teams, "Yes, CHG-1", root=first["id"]))
    assert len(db_rows(database_url, OutboxMessage)) == queued + 1 and len(summary) == 1
