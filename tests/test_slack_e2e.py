"""Slack end to end: the real server in a subprocess, requests signed as Slack signs them, and a fake
Slack Web API on loopback that records what svcbot sends."""
from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
import requests

from storage.models import AuditRecord, OutboxMessage, ServiceStatus, Subscription
from tests.conftest import db_rows, demo_config, load_payload, slack_headers, slash_command_body

pytestmark = pytest.mark.e2e

TOM = "U0TOM0002"      # owner of payments
MEERA = "U0MEERA05"    # platform-ops; not allowed to set payments' status
SANNE = "U0SANNE03"
PAYMENTS_CHANNEL = "C0PAYMENTS"


def slash(server, fake_slack, text, user, trigger_id=None, **sign):
    body = slash_command_body(text, user, fake_slack.url + "/hooks/commands/T0NORTH/1/x", trigger_id=trigger_id)
    return requests.post(server.url + "/slack/events", data=body, headers=slack_headers(body, **sign), timeout=10)


def blocks_text(payload: dict) -> str:
    return json.dumps(payload.get("blocks", []), ensure_ascii=False) + payload.get("text", "")





def posts_to(fake_slack, channel):
    return [c for c in fake_slack.called("chat.postMessage") if c.params.get("channel") == channel]


def test_status_answers_in_the_response_and_lists_every_service(start_server, fake_slack):
    server = start_server()
    response = slash(server, fake_slack, "status", TOM)
    assert response.status_code == 200
    payload = response.json()
    assert payload["response_type"] == "ephemeral"
    text = blocks_text(payload)
    for service in demo_config()["services"]:
        assert service["name"] in text
    assert not fake_slack.called("response_url")  # answered in the response itself


def test_owner_announces_to_channel_and_subscribers_refusal_is_private(start_server, fake_slack, database_url):
    server = start_server()
    assert "now follow" in blocks_text(slash(server, fake_slack, "subscribe payments", SANNE).json())

    refused = slash(server, fake_slack, "service set payments major-outage everything is down", MEERA).json()
    assert refused["response_type"] == "ephemeral"
    assert "Not allowed" in blocks_text(refused) and "Tom Hughes" in blocks_text(refused)
    assert db_rows(database_url, OutboxMessage) == []
    assert db_rows(database_url, ServiceStatus) == []

    reply = slash(server, fake_slack, 'service set payments degraded "Card payments are slow"', TOM).json()
    assert "degraded" in blocks_text(reply)
    channel_post = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == PAYMENTS_CHANNEL)[0]
    dm = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == SANNE)[0]
    assert "Card payments are slow" in blocks_text(channel_post.params)
    assert channel_post.headers["Authorization"] == "Bearer xoxb-test-token"
    assert dm.params["text"] == channel_post.params["text"]
    # Nobody else was told, nothing twice; the refused attempt posted nothing.
    time.sleep(1)
    assert len(fake_slack.called("chat.postMessage")) == 2
    [status] = db_rows(database_url, ServiceStatus)
    assert status.state == "degraded" and status.updated_by == "tom"
    audit = db_rows(database_url, AuditRecord, AuditRecord.action == "service.set")
    assert [(a.person_id, a.platform) for a in audit] == [("tom", "slack")]
    sent = db_rows(database_url, OutboxMessage, OutboxMessage.target == PAYMENTS_CHANNEL)
    assert sent[0].status == "sent" and sent[0].platform_message_id == channel_post_ts(fake_slack)


def channel_post_ts(fake_slack):
    return next(m["ts"] for m in fake_slack.posted if m["channel"] == PAYMENTS_CHANNEL)


@pytest.mark.parametrize("how", ["bad-signature", "stale-timestamp", "no-signature"])
def test_unsigned_or_stale_requests_are_refused_and_change_nothing(start_server, fake_slack, database_url, how):
    server = start_server()
    body = slash_command_body("service set payments major-outage fake", TOM, fake_slack.url + "/hooks/x")
    headers = {
        "bad-signature": slack_headers(body, secret="not-the-secret"),
        "stale-timestamp": slack_headers(body, timestamp=int(time.time()) - 6 * 60),
        "no-signature": {"Content-Type": "application/x-www-form-urlencoded"},
    }[how]
    response = requests.post(server.url + "/slack/events", data=body, headers=headers, timeout=10)
    assert response.status_code == 401
    time.sleep(0.5)
    assert db_rows(database_url, ServiceStatus) == []
    assert db_rows(database_url, OutboxMessage) == []
    assert not fake_slack.called("chat.postMessage")
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert 'svcbot_requests_refused_total{platform="slack",reason="signature"} 1.0' in metrics


def test_retried_event_is_answered_once(start_server, fake_slack, database_url):
    server = start_server()
    event = load_payload("slack", "bolt_python", "event_callback_app_mention.json")
    event["event"].update(text="<@U0SVCBOT> service set payments degraded retried", user=TOM,
                          channel=PAYMENTS_CHANNEL)
    body = json.dumps(event)
    first = requests.post(server.url + "/slack/events", data=body,
                          headers=slack_headers(body, content_type="application/json"), timeout=10)
    assert first.status_code == 200
    fake_slack.wait_for("chat.postMessage", where=lambda c: c.params.get("thread_ts") == event["event"]["ts"])
    # Slack retries the same event id, with X-Slack-Retry-Num; it must change and post nothing more.
    retry_headers = {**slack_headers(body, content_type="application/json"),
                     "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    again = requests.post(server.url + "/slack/events", data=body, headers=retry_headers, timeout=10)
    assert again.status_code == 200
    time.sleep(1)
    assert len(db_rows(database_url, AuditRecord, AuditRecord.action == "service.set")) == 1
    replies = [c for c in fake_slack.called("chat.postMessage") if c.params.get("thread_ts")]
    assert len(replies) == 1 and "degraded" in replies[0].params["text"]
    announcements = posts_to(fake_slack, PAYMENTS_CHANNEL)
    assert len(announcements) == 2  # the announcement and the threaded answer, each once


def test_same_slash_command_delivered_twice_changes_once(start_server, fake_slack, database_url):
    server = start_server()
    first = slash(server, fake_slack, "service set payments degraded once", TOM, trigger_id="123.456.abc").json()
    second = slash(server, fake_slack, "service set payments degraded once", TOM, trigger_id="123.456.abc").json()
    assert "degraded" in blocks_text(first)
    assert "Already done" in blocks_text(second)
    assert len(db_rows(database_url, AuditRecord, AuditRecord.action == "service.set")) == 1


def test_malformed_commands_get_an_example_and_change_nothing(start_server, fake_slack, database_url):
    server = start_server()
    for words, expected in [("service set payments", "Say the service and its new state"),
                            ("service set payments sideways", "'sideways' is not a state"),
                            ("service set nowhere degraded", "There is no service 'nowhere'"),
                            ('service set payments degraded "unclosed', "A quote is not closed"),
                            ("frobnicate", "I don't know 'frobnicate'")]:
        reply = slash(server, fake_slack, words, TOM).json()
        text = blocks_text(reply)
        assert expected in text, text
        assert "Try: /svc " in text
        assert "Traceback" not in text
    assert db_rows(database_url, OutboxMessage) == []
    assert db_rows(database_url, AuditRecord) == []


def test_rate_limited_three_times_arrives_once_honouring_retry_after(start_server, fake_slack, database_url):
    fake_slack.script("chat.postMessage", 429, 429, 429)
    server = start_server()
    slash(server, fake_slack, "service set payments degraded slow lane", TOM)
    calls = fake_slack.wait_for("chat.postMessage", 4, timeout=30)
    time.sleep(1)
    calls = fake_slack.called("chat.postMessage")
    assert len(calls) == 4
    assert [m["channel"] for m in fake_slack.posted] == [PAYMENTS_CHANNEL]
    gaps = [b.at - a.at for a, b in zip(calls, calls[1:])]
    assert all(gap >= 0.95 for gap in gaps), gaps  # Retry-After: 1 is honoured
    [row] = db_rows(database_url, OutboxMessage, OutboxMessage.platform == "slack")
    assert row.status == "sent" and row.attempts == 4


def test_server_errors_are_retried_and_permanent_errors_are_not(start_server, fake_slack, database_url):
    fake_slack.script("chat.postMessage", 503, {"ok": False, "error": "channel_not_found"})
    server = start_server()
    slash(server, fake_slack, "subscribe payments", SANNE)
    slash(server, fake_slack, "service set payments degraded flaky", TOM)
    fake_slack.wait_for("chat.postMessage", 3, timeout=30)
    time.sleep(1.5)
    outcome = {r.target: (r.status, r.attempts) for r in db_rows(database_url, OutboxMessage,
                                                               OutboxMessage.platform == "slack")}
    # One of the two rows met the 503 and then succeeded; the other met channel_not_found and stopped.
    assert sorted(outcome.values()) == [("failed", 1), ("sent", 2)] or \
        sorted(outcome.values()) == [("failed", 2), ("sent", 1)]
    assert len(fake_slack.called("chat.postMessage")) == 3


def test_killed_before_delivery_arrives_once_after_restart(start_server, fake_slack, database_url):
    fake_slack.script("chat.postMessage", *([503] * 1000))
    server = start_server()
    slash(server, fake_slack, "service set payments major-outage card terminals offline", TOM)
    fake_slack.wait_for("chat.postMessage")
    server.kill()
    fake_slack.scripts.clear()
    start_server()
    fake_slack.wait_for("chat.postMessage", where=lambda c: True, count=2, timeout=30)
    time.sleep(1.5)
    assert [m["channel"] for m in fake_slack.posted] == [PAYMENTS_CHANNEL]


def test_crash_mid_delivery_is_not_posted_twice(start_server, fake_slack, database_url):
    # Slack receives the post, but the answer never comes back before the server dies.
    fake_slack.script("chat.postMessage", "hang")
    server = start_server()
    slash(server, fake_slack, "service set payments degraded hung", TOM)
    fake_slack.wait_for("chat.postMessage")
    server.kill()
    start_server()
    fake_slack.wait_for("conversations.history", timeout=30)
    time.sleep(1)
    assert len(fake_slack.called("chat.postMessage")) == 1
    [row] = db_rows(database_url, OutboxMessage, OutboxMessage.platform == "slack")
    assert row.status == "sent" and row.platform_message_id == fake_slack.posted[0]["ts"]


def test_subscribe_button_runs_the_command(start_server, fake_slack, database_url):
    server = start_server()
    payload = load_payload("slack", "bolt_python", "block_actions.json")
    payload["user"] = {"id": SANNE, "username": "sanne", "name": "sanne", "team_id": "T0NORTH"}
    payload["response_url"] = fake_slack.url + "/hooks/actions/T0NORTH/1/x"
    payload["actions"][0].update(action_id="svc_run:0:1", value="subscribe payments")
    body = urlencode({"payload": json.dumps(payload)})
    response = requests.post(server.url + "/slack/events", data=body, headers=slack_headers(body), timeout=10)
    assert response.status_code == 200
    hook = fake_slack.wait_for("response_url")[0]
    assert "now follow Payments Gateway" in blocks_text(hook.params)
    assert hook.params["replace_original"] is False
    assert [(s.person_id, s.service_id) for s in db_rows(database_url, Subscription)] == [("sanne", "payments")]


def test_health_metrics_and_clean_shutdown(start_server, fake_slack):
    server = start_server()
    assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    slash(server, fake_slack, "status", TOM)
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert 'svcbot_commands_total{command="status",outcome="ok",platform="slack"} 1.0' in metrics
    assert "svcbot_outbox_backlog" in metrics
    assert "\nsvcbot_clock_checks_late_seconds 0.0\n" in metrics
    assert server.stop() == 0


def test_incident_from_slack_starts_its_clocks_and_moves_on(start_server, fake_slack, database_url):
    from storage.models import SlaClock, Ticket
    server = start_server()
    opened = blocks_text(slash(server, fake_slack, "incident new payments P1 Card payments fail", TOM).json())
    assert "INC-1 opened: Card payments fail" in opened
    assert "SLA SLA-PAY response" in opened and "SLA SLA-PAY resolution" in opened
    acked = blocks_text(slash(server, fake_slack, "incident ack INC-1", TOM).json())
    assert "INC-1 acknowledged" in acked
    refused = blocks_text(slash(server, fake_slack, "incident resolve INC-1", MEERA).json())
    assert "Not allowed" in refused
    [ticket] = db_rows(database_url, Ticket)
    assert (ticket.state, ticket.priority, ticket.assignment_group) == ("in-progress", "P1", "payments-eng")
    clocks = {(c.agreement_id, c.metric): c.state for c in db_rows(database_url, SlaClock)}
    assert clocks[("SLA-PAY", "response")] == "met"
    assert clocks[("SLA-PAY", "resolution")] == "running"
    assert clocks[("OLA-PAY-OPS", "resolution")] == "paused"  # platform-ops does not have it
