"""Change enablement through Slack, as a new user meets it: the real server, requests signed as Slack
signs them, Slack's own payload samples, and the fake Web API recording what svcbot sends."""
from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
import requests
import yaml

from storage.models import AuditRecord, Change, ChangeVote, OutboxMessage
from tests.conftest import db_rows, demo_config, load_payload, slack_headers, slash_command_body, wait_until
from tests.when import at, next_weekday, today

pytestmark = pytest.mark.e2e

SANNE = "U0SANNE03"   # CAB; requests the change
PRIYA = "U0PRIYA01"   # service manager, CAB
ARJUN = "U0ARJUN04"   # CAB
TOM = "U0TOM0002"     # no role
ANNOUNCE, PAYMENTS = "C0ANNOUNCE", "C0PAYMENTS"


def slash(server, fake_slack, text, user):
    body = slash_command_body(text, user, fake_slack.url + "/hooks/commands/T0NORTH/1/x")
    return requests.post(server.url + "/slack/events", data=body, headers=slack_headers(body), timeout=10)


def interact(server, payload):
    body = urlencode({"payload": json.dumps(payload)})
    return requests.post(server.url + "/slack/events", data=body, headers=slack_headers(body), timeout=10)


def click(server, fake_slack, user, value):
    payload = load_payload("slack", "bolt_python", "block_actions.json")
    payload["user"] = {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0NORTH"}
    payload["response_url"] = fake_slack.url + f"/hooks/actions/{time.time_ns()}"
    payload["actions"][0].update(action_id="svc_run:0:1", value=value, action_ts=str(time.time()))
    return interact(server, payload)


def submit(server, view, user, answers):
    """Submit the modal svcbot opened, filled in with answers, as Slack's own view_submission sample."""
    payload = load_payload("slack", "bolt_python", "view_submission.json")
    payload["user"] = {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0NORTH"}
    state = {}
    for block in view["blocks"]:
        value = answers.get(block["block_id"], "")
        kind = block["element"]["type"]
        if kind == "multi_static_select":
            element = {"type": kind, "selected_options": [{"value": v} for v in value]}
        elif kind == "static_select":
            element = {"type": kind, "selected_option": {"value": value} if value else None}
        else:
            element = {"type": kind, "value": value or None}
        state[block["block_id"]] = {"value": element}
    payload["view"].update(callback_id=view["callback_id"], private_metadata=view["private_metadata"],
                           blocks=view["blocks"], state={"values": state}, id=f"V{time.time_ns()}",
                           hash=str(time.time_ns()))
    return interact(server, payload)


def react(server, user, channel, ts, reaction, event_id, retry=None, removed=False):
    payload = load_payload("slack", "bolt_python", "event_callback_reaction_added.json")
    # reaction_removed has reaction_added's shape; only its type differs.
    payload["event"].update(user=user, reaction=reaction, item={"type": "message", "channel": channel, "ts": ts},
                            type="reaction_removed" if removed else "reaction_added")
    payload["event_id"] = event_id
    body = json.dumps(payload)
    headers = slack_headers(body, content_type="application/json")
    if retry:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    return requests.post(server.url + "/slack/events", data=body, headers=headers, timeout=10)


def announcement_ts(fake_slack, channel):
    post = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == channel
                               and "CHG-1" in c.params["text"] and not c.params.get("thread_ts"))[0]
    return next(m["ts"] for m in fake_slack.posted if m["channel"] == channel and m["text"] == post.params["text"])


def updates_of(fake_slack, channel, ts):
    return [c for c in fake_slack.called("chat.update") if c.params["channel"] == channel and c.params["ts"] == ts]


def votes(database_url):
    return [(v.person_id, v.decision, v.via) for v in db_rows(database_url, ChangeVote) if v.withdrawn_at is None]


def with_freezes(config_file, *freezes: dict) -> None:
    """The demo configuration with these freezes only: app.yaml's own are demo data on fixed dates."""
    cfg = demo_config()
    cfg["changes"]["freezes"] = list(freezes)
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture
def no_freezes(config_file):
    with_freezes(config_file)


def test_a_high_risk_change_from_the_modal_to_scheduled(start_server, fake_slack, database_url, no_freezes):
    server = start_server()
    thursday = next_weekday("thu", "Europe/Amsterdam")

    # /svc change new opens the form as a modal.
    assert slash(server, fake_slack, "change new", SANNE).status_code == 200
    view = fake_slack.wait_for("views.open")[0].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == "svc_form"
    assert {b["block_id"] for b in view["blocks"]} >= {"title", "services", "risk", "start", "end", "backout"}

    # Bad fields go back into the open form, and nothing is written.
    answers = {"title": "Upgrade the payments database", "services": ["payments"], "type": "normal",
               "risk": "high", "impact": "high", "start": at(thursday, "23:30"), "end": at(thursday, "23:00"),
               "implementer": "sanne", "backout": ""}
    response = submit(server, view, SANNE, answers)
    assert response.status_code == 200
    errors = response.json()
    assert errors["response_action"] == "errors"
    assert set(errors["errors"]) == {"end", "backout"}
    assert db_rows(database_url, Change) == []

    # Sanne is in Amsterdam: 23:30-00:30 her time is inside payments' Thursday window in London.
    answers.update(end=at(thursday, "00:30", days=1), backout="Restore last night's snapshot")
    response = submit(server, view, SANNE, answers)
    assert response.status_code == 200 and not response.text.strip()
    [change] = db_rows(database_url, Change)
    assert (change.state, change.approvals_needed, change.requester) == ("awaiting-approval", 2, "sanne")

    # One announcement in the changes channel and one in the service's channel, with the buttons.
    ts = {channel: announcement_ts(fake_slack, channel) for channel in (ANNOUNCE, PAYMENTS)}
    wait_until(lambda: {r.platform_message_id for r in db_rows(database_url, OutboxMessage)} >= set(ts.values()),
               "the announcements recorded as sent")
    post = next(c for c in fake_slack.called("chat.postMessage") if c.params["channel"] == PAYMENTS)
    assert "Approve" in json.dumps(post.params["blocks"]) and "0 of 2" in json.dumps(post.params["blocks"])

    # The requester's own approval is refused, privately, and counts for nothing.
    click(server, fake_slack, SANNE, "change approve CHG-1")
    refusal = fake_slack.wait_for("response_url")[-1]
    assert refusal.params["response_type"] == "ephemeral" and "someone else" in json.dumps(refusal.params)
    # A reaction from someone who is not an approver changes nothing but a private note.
    assert react(server, TOM, PAYMENTS, ts[PAYMENTS], "white_check_mark", "Ev-tom-1").status_code == 200
    note = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == TOM)[0]
    assert "CAB" in json.dumps(note.params["blocks"])
    assert votes(database_url) == []

    # An approver's reaction counts; the announcements are edited in place and the step goes in the threads.
    assert react(server, PRIYA, ANNOUNCE, ts[ANNOUNCE], "white_check_mark", "Ev-priya-1").status_code == 200
    wait_until(lambda: votes(database_url) == [("priya", "approve", "reaction")], "priya's vote")
    for channel in (ANNOUNCE, PAYMENTS):
        update = fake_slack.wait_for("chat.update", where=lambda c, ch=channel: c.params["channel"] == ch
                                     and "1 of 2" in json.dumps(c.params["blocks"]))[0]
        assert update.params["ts"] == ts[channel]
        fake_slack.wait_for("chat.postMessage", where=lambda c, ch=channel: c.params.get("thread_ts") == ts[ch]
                            and "Priya Nair approved" in c.params["text"])
    # Slack retries the same event: nothing changes a second time.
    react(server, PRIYA, ANNOUNCE, ts[ANNOUNCE], "white_check_mark", "Ev-priya-1", retry=1)
    time.sleep(1)
    assert votes(database_url) == [("priya", "approve", "reaction")]

    # The second approval, by the text command, schedules it.
    reply = slash(server, fake_slack, "change approve CHG-1 Backed up and rehearsed", ARJUN).json()
    assert "scheduled" in json.dumps(reply)
    wait_until(lambda: db_rows(database_url, Change)[0].state == "scheduled", "the change scheduled")
    for channel in (ANNOUNCE, PAYMENTS):
        fake_slack.wait_for("chat.update", where=lambda c, ch=channel: c.params["channel"] == ch
                            and "scheduled" in json.dumps(c.params["blocks"]))
        assert {c.params["ts"] for c in updates_of(fake_slack, channel, ts[channel])} == {ts[channel]}
        assert sum(c.params["channel"] == channel and not c.params.get("thread_ts")
                   for c in fake_slack.called("chat.postMessage")) == 1  # no second announcement
    final = updates_of(fake_slack, PAYMENTS, ts[PAYMENTS])[-1]
    assert "Approve" not in json.dumps(final.params["blocks"])
    actions = [a.action for a in db_rows(database_url, AuditRecord) if a.subject == "CHG-1"]
    assert actions.count("change.approve") == 2 and "change.created" in actions


def test_taking_a_reaction_off_takes_the_approval_back(start_server, fake_slack, database_url, no_freezes):
    server = start_server()
    text = ('change new title="Rotate the mail relay TLS certificates" services=email risk=medium '
            'start="tomorrow 20:00" end="tomorrow 21:00" backout="Reinstall the previous certificate"')
    assert "submitted" in json.dumps(slash(server, fake_slack, text, SANNE).json())
    ts = announcement_ts(fake_slack, ANNOUNCE)
    wait_until(lambda: ts in {r.platform_message_id for r in db_rows(database_url, OutboxMessage)},
               "the announcement recorded as sent")

    react(server, ARJUN, ANNOUNCE, ts, "white_check_mark", "Ev-arjun-1")
    wait_until(lambda: db_rows(database_url, Change)[0].state == "scheduled", "the change scheduled")

    # Arjun takes his ✅ off: his approval is withdrawn and the change waits for approval again.
    assert react(server, ARJUN, ANNOUNCE, ts, "white_check_mark", "Ev-arjun-2", removed=True).status_code == 200
    wait_until(lambda: db_rows(database_url, Change)[0].state == "awaiting-approval", "the change reopened")
    assert votes(database_url) == []
    fake_slack.wait_for("chat.update", where=lambda c: c.params["ts"] == ts
                        and "0 of 1" in json.dumps(c.params["blocks"]))
    fake_slack.wait_for("chat.postMessage", where=lambda c: c.params.get("thread_ts") == ts
                        and "Arjun Mehta took back their approval" in c.params["text"])
    # Slack retries the removal, and someone whose reaction never counted takes theirs off: nothing more.
    react(server, ARJUN, ANNOUNCE, ts, "white_check_mark", "Ev-arjun-2", retry=1, removed=True)
    react(server, TOM, ANNOUNCE, ts, "white_check_mark", "Ev-tom-2", removed=True)
    time.sleep(1)
    retracts = [a for a in db_rows(database_url, AuditRecord) if a.action == "change.retract"]
    assert [(a.person_id, a.detail) for a in retracts] == [("arjun", {"via": "reaction"})]
    assert not [c for c in fake_slack.called("chat.postMessage") if c.params["channel"] == TOM]

    # Putting it back approves again.
    react(server, ARJUN, ANNOUNCE, ts, "white_check_mark", "Ev-arjun-3")
    wait_until(lambda: db_rows(database_url, Change)[0].state == "scheduled", "the change scheduled again")
    assert votes(database_url) == [("arjun", "approve", "reaction")]


def test_a_change_in_a_freeze_needs_a_service_managers_override(start_server, fake_slack, database_url,
                                                                config_file):
    # 01:00-02:00 on Sunday in Amsterdam is inside payments' Sunday window in London; only the freeze is in the way.
    sunday = next_weekday("sun", "Europe/Amsterdam")
    with_freezes(config_file, {"name": "Peak trading", "start": at(today("Europe/London"), "00:00"),
                               "end": at(sunday, "08:00", days=1), "timezone": "Europe/London",
                               "services": ["payments", "webshop"]})
    server = start_server()
    text = ('change new title="Hotfix for card declines" services=payments type=normal risk=medium '
            f'start="{at(sunday, "01:00")}" end="{at(sunday, "02:00")}" backout="Redeploy the previous build"')
    assert "submitted" in json.dumps(slash(server, fake_slack, text, SANNE).json())
    [change] = db_rows(database_url, Change)
    assert change.state == "awaiting-approval"
    fake_slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == PAYMENTS)
    announcement = next(c for c in fake_slack.called("chat.postMessage") if c.params["channel"] == PAYMENTS)
    assert "Peak trading" in json.dumps(announcement.params["blocks"])

    refused = slash(server, fake_slack, "change approve CHG-1", ARJUN).json()
    assert "cannot be approved yet" in json.dumps(refused) and "Peak trading" in json.dumps(refused)
    refused = slash(server, fake_slack, "change override CHG-1 Card declines cost more than the risk", ARJUN).json()
    assert "Not allowed" in json.dumps(refused)
    assert votes(database_url) == [] and db_rows(database_url, Change)[0].override is None

    slash(server, fake_slack, "change override CHG-1 Card declines cost more than the risk", PRIYA)
    assert "scheduled" in json.dumps(slash(server, fake_slack, "change approve CHG-1", ARJUN).json())
    [change] = db_rows(database_url, Change)
    assert change.state == "scheduled" and change.override["by"] == "priya"
    fake_slack.wait_for("chat.update", where=lambda c: c.params["channel"] == PAYMENTS
                        and "overridden" in json.dumps(c.params["blocks"]))
