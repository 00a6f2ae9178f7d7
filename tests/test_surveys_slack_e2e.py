"""Pulse and after-ticket surveys through Slack, end to end: the real server in a subprocess, requests
signed as Slack signs them (slash commands, Slack's own block_actions and view_submission samples), and
the fake Slack Web API on loopback recording what svcbot posts, edits, opens and answers."""
from __future__ import annotations

import itertools
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode, urlparse

import pytest
import requests
import yaml
from sqlalchemy import create_engine, inspect, text

from storage.models import (AuditRecord, Identity, OutboxMessage, Person, ProcessedDelivery, Survey, SurveyAnswer,
                            Ticket)
from tests.conftest import (SIGNING_SECRET, db_count, db_rows, demo_config, load_payload, slack_headers,
                            slash_command_body, wait_until)

pytestmark = pytest.mark.e2e

PRIYA = "U0PRIYA01"   # service manager: runs surveys
TOM = "U0TOM0002"     # owns payments
SANNE = "U0SANNE03"
ARJUN = "U0ARJUN04"
MEERA = "U0MEERA05"
ANNOUNCE = "C0ANNOUNCE"  # it-announce
# Slack users nobody wrote into app.yaml: what an anonymous answer must leave no trace of.
STRANGERS = ("U0ANON0001", "U0ANON0002", "U0ANON0003")

_n = itertools.count(1)


# ---------------------------------------------------------------------------------------------------------
# Requests, as Slack sends them

def trigger_id() -> str:
    """Shaped like Slack's (numbers and a hex tail): nothing in it says who acted."""
    return f"{time.time_ns() // 1000}.{next(_n)}.{secrets.token_hex(12)}"


def response_url(fake_slack, kind: str = "actions") -> str:
    return fake_slack.url + f"/hooks/{kind}/T0NORTH/{next(_n)}/{secrets.token_hex(8)}"


def slash(server, fake_slack, words: str, user: str, secret: str = SIGNING_SECRET) -> requests.Response:
    body = slash_command_body(words, user, response_url(fake_slack, "commands"), trigger_id=trigger_id())
    return requests.post(server.url + "/slack/events", data=body, headers=slack_headers(body, secret=secret),
                         timeout=10)


def interact(server, payload: dict, secret: str = SIGNING_SECRET) -> requests.Response:
    body = urlencode({"payload": json.dumps(payload)})
    return requests.post(server.url + "/slack/events", data=body, headers=slack_headers(body, secret=secret),
                         timeout=10)


def as_user(user: str) -> dict:
    return {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0NORTH"}


def click_payload(fake_slack, user: str, button: dict, where: tuple[str, str] | None = None,
                  action_ts: str | None = None) -> dict:
    """Slack's own block_actions sample: this user pressed this button of a message svcbot posted."""
    payload = load_payload("slack", "bolt_python", "block_actions.json")
    payload["user"] = as_user(user)
    payload["trigger_id"] = trigger_id()
    payload["response_url"] = response_url(fake_slack)
    if where:
        channel, ts = where
        payload["container"] = {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False}
        payload["channel"] = {"id": channel, "name": "it-announce"}
    payload["actions"][0].update(action_id=button["action_id"], value=button["value"], text=button["text"],
                                 action_ts=action_ts or f"{time.time():.6f}")
    return payload


def click(server, fake_slack, user, button, where=None, action_ts=None) -> dict:
    payload = click_payload(fake_slack, user, button, where, action_ts)
    response = interact(server, payload)
    assert response.status_code == 200, response.text
    return payload


def answer_of(fake_slack, payload: dict, timeout: float = 15.0):
    """What svcbot said back through this click's response URL."""
    path = urlparse(payload["response_url"]).path
    return fake_slack.wait_for("response_url", where=lambda c: c.path == path, timeout=timeout)[0]


def submit(server, fake_slack, user: str, view: dict, answers: dict, secret: str = SIGNING_SECRET):
    """Slack's own view_submission sample: the modal svcbot opened, filled in and sent."""
    payload = load_payload("slack", "bolt_python", "view_submission.json")
    payload["user"] = as_user(user)
    payload["trigger_id"] = trigger_id()
    state = {}
    for block in view["blocks"]:
        kind = block["element"]["type"]
        value = answers.get(block["block_id"])
        if kind == "static_select":
            element = {"type": kind, "selected_option": {"value": value} if value else None}
        else:
            element = {"type": kind, "value": value}
        state[block["block_id"]] = {block["element"]["action_id"]: element}
    payload["view"].update(callback_id=view["callback_id"], private_metadata=view["private_metadata"],
                           blocks=view["blocks"], state={"values": state}, id=f"V{time.time_ns()}",
                           hash=f"{time.time():.6f}.{secrets.token_hex(4)}")
    return interact(server, payload, secret=secret)


# ---------------------------------------------------------------------------------------------------------
# What Slack saw, and what the store holds

def text_of(payload: dict) -> str:
    return json.dumps(payload.get("blocks", []), ensure_ascii=False) + (payload.get("text") or "")


def elements(blocks: list[dict]) -> list[dict]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def survey_post(fake_slack, survey: str):
    """The question as posted in #it-announce, and its ts."""
    call = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == ANNOUNCE
                               and not c.params.get("thread_ts") and survey in text_of(c.params))[0]
    ts = next(m["ts"] for m in fake_slack.posted if m["channel"] == ANNOUNCE and m["text"] == call.params["text"])
    return call, ts


def rating(post, value: int) -> dict:
    return next(e for e in elements(post.params["blocks"]) if e["value"].endswith(f" {value}")
                and e["value"].startswith("survey answer"))


def comment_button(post) -> dict:
    return next(e for e in elements(post.params["blocks"]) if e["value"].startswith("survey comment"))


def opened_view(fake_slack, count: int) -> dict:
    view = fake_slack.wait_for("views.open", count)[count - 1].params["view"]
    return json.loads(view) if isinstance(view, str) else view


def answers(database_url) -> list[tuple]:
    return sorted((a.person_id or "", a.value, a.comment or "") for a in db_rows(database_url, SurveyAnswer))


def new_survey(server, fake_slack, extra: str = "", question: str = "How satisfied are you with the new laptops?"):
    reply = slash(server, fake_slack, f'survey new question="{question}" scale=csat channel=it-announce '
                                      f'closes="in 2 days" {extra}', PRIYA).json()
    assert "SRV-1 sent" in text_of(reply), reply
    return survey_post(fake_slack, "SRV-1")


def stored_text(database_url) -> list[tuple[str, str, str]]:
    """Every value of every column of every table, as text: (table, column, value)."""
    engine = create_engine(database_url)
    found = []
    try:
        with engine.connect() as conn:
            for table in inspect(engine).get_table_names():
                result = conn.execute(text(f'SELECT * FROM "{table}"'))
                columns = list(result.keys())
                for row in result:
                    for column, value in zip(columns, row):
                        if value is None:
                            continue
                        if isinstance(value, (bytes, memoryview)):
                            value = bytes(value).decode("utf-8", "replace")
                        elif not isinstance(value, str):
                            value = json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)
                        found.append((table, column, value))
    finally:
        engine.dispose()
    return found


def traces(database_url, server, needles) -> list[str]:
    """Where any of these strings (case-insensitive) is stored or logged."""
    needles = [n.lower() for n in needles]
    hits = [f"{table}.{column}: {value[:200]}" for table, column, value in stored_text(database_url)
            if any(n in value.lower() for n in needles)]
    hits += [f"log: {line[:300]}" for line in server.log().splitlines() if any(n in line.lower() for n in needles)]
    return hits


# ---------------------------------------------------------------------------------------------------------

def test_three_people_answer_one_changes_and_the_results_count_three(start_server, fake_slack, database_url):
    server = start_server()
    post, ts = new_survey(server, fake_slack, "anonymous=no")
    ratings = [e for e in elements(post.params["blocks"]) if e["value"].startswith("survey answer SRV-1 ")]
    assert [e["value"] for e in ratings] == [f"survey answer SRV-1 {v}" for v in range(1, 6)]
    assert all(e["action_id"].startswith("svc_run:") for e in ratings)
    assert comment_button(post)["value"] == "survey comment SRV-1"
    assert "Named" in text_of(post.params)

    where = (ANNOUNCE, ts)
    thanks = {}
    for user, value in ((TOM, 4), (SANNE, 5), (ARJUN, 2)):
        thanks[user] = answer_of(fake_slack, click(server, fake_slack, user, rating(post, value), where))
    for user, value in ((TOM, 4), (SANNE, 5), (ARJUN, 2)):
        said = thanks[user].params
        assert said["response_type"] == "ephemeral" and said["replace_original"] is False
        assert "Thank you" in text_of(said) and f"*{value} (" in text_of(said)
    changed = answer_of(fake_slack, click(server, fake_slack, SANNE, rating(post, 3), where)).params
    assert "Answer changed" in text_of(changed) and "3 (neither)" in text_of(changed)

    assert answers(database_url) == [("arjun", 2, ""), ("sanne", 3, ""), ("tom", 4, "")]
    audit = db_rows(database_url, AuditRecord, AuditRecord.action == "survey.answer")
    assert sorted((a.person_id, a.detail["changed"]) for a in audit) == \
        [("arjun", False), ("sanne", False), ("sanne", True), ("tom", False)]

    # Only the owner and the service managers see the results while it is open.
    refused = slash(server, fake_slack, "survey results SRV-1", TOM).json()
    assert "Not allowed" in text_of(refused) and "3 answers" not in text_of(refused)
    results = text_of(slash(server, fake_slack, "survey results SRV-1", PRIYA).json())
    assert "3 answers" in results
    assert "CSAT" in results and "33 %" in results  # one of three said 4 or 5
    assert "Distribution" in results
    assert "4 (satisfied)" in results and "3 (neither)" in results and "2 (dissatisfied)" in results
    assert "5 (very satisfied)  ░░░░░░░░░░ 0" in results  # Sanne's first answer no longer counts
    # Nobody answering was registered anew, and no direct message went to anyone.
    assert not [c for c in fake_slack.called("chat.postMessage") if c.params["channel"].startswith("U")]


def test_after_closing_a_fourth_answer_is_refused_and_the_question_is_edited(start_server, fake_slack,
                                                                             database_url):
    server = start_server()
    post, ts = new_survey(server, fake_slack, "anonymous=no")
    where = (ANNOUNCE, ts)
    for user, value in ((TOM, 4), (SANNE, 5), (ARJUN, 2)):
        answer_of(fake_slack, click(server, fake_slack, user, rating(post, value), where))
    wait_until(lambda: db_rows(database_url, OutboxMessage, OutboxMessage.target == ANNOUNCE)[0].status == "sent",
               "the question recorded as posted")

    refused = slash(server, fake_slack, "survey close SRV-1", TOM).json()
    assert "Not allowed" in text_of(refused)
    closed = text_of(slash(server, fake_slack, "survey close SRV-1", PRIYA).json())
    assert "SRV-1 results" in closed and "3 answers" in closed and "closed" in closed
    [survey] = db_rows(database_url, Survey)
    assert survey.state == "closed" and survey.results["answers"] == 3

    # The posted question is edited in place (no buttons any more), and the results go into its thread.
    edit = fake_slack.wait_for("chat.update", where=lambda c: c.params["channel"] == ANNOUNCE)[0]
    assert edit.params["ts"] == ts
    assert "closed" in text_of(edit.params) and not elements(edit.params["blocks"])
    thread = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params.get("thread_ts") == ts)[0]
    assert "3 answers" in text_of(thread.params) and "Distribution" in text_of(thread.params)

    # Meera presses a button of the old message (still on screens that were not refreshed).
    late = answer_of(fake_slack, click(server, fake_slack, MEERA, rating(post, 5), where)).params
    assert late["response_type"] == "ephemeral"
    assert "SRV-1 closed on" in text_of(late) and "takes no more answers" in text_of(late)
    # Changing an answer after closing is refused the same way.
    again = answer_of(fake_slack, click(server, fake_slack, TOM, rating(post, 1), where)).params
    assert "takes no more answers" in text_of(again)
    typed = text_of(slash(server, fake_slack, "survey answer SRV-1 5", MEERA).json())
    assert "takes no more answers" in typed
    assert answers(database_url) == [("arjun", 2, ""), ("sanne", 5, ""), ("tom", 4, "")]
    assert db_count(database_url, AuditRecord, AuditRecord.action == "survey.answer") == 3
    assert db_rows(database_url, Survey)[0].results["answers"] == 3
    assert db_count(database_url, SurveyAnswer, SurveyAnswer.respondent_key.is_not(None)) == 0  # forgotten


def test_anonymous_results_stay_hidden_below_the_minimum(start_server, fake_slack, database_url):
    server = start_server()
    post, ts = new_survey(server, fake_slack)
    assert "Anonymous" in text_of(post.params)
    for user, value in ((TOM, 5), (SANNE, 1), (ARJUN, 4)):
        said = answer_of(fake_slack, click(server, fake_slack, user, rating(post, value), (ANNOUNCE, ts))).params
        assert "Your answer is anonymous" in text_of(said)
    assert len(answers(database_url)) == 3

    for when in ("open", "closed"):
        shown = text_of(slash(server, fake_slack, "survey results SRV-1", PRIYA).json())
        assert "3 answers" in shown and "show once 5 people have answered" in shown, when
        for leak in ("Distribution", "CSAT", " %", "very dissatisfied", "very satisfied", "░", "█"):
            assert leak not in shown, (when, leak)
        if when == "open":
            slash(server, fake_slack, "survey close SRV-1", PRIYA)
    # The results posted in the question's thread at closing are hidden too.
    thread = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params.get("thread_ts") == ts)[0]
    assert "show once 5 people" in text_of(thread.params) and "Distribution" not in text_of(thread.params)
    listed = text_of(slash(server, fake_slack, "survey list", PRIYA).json())
    assert "results hidden" in listed and "CSAT" not in listed


def test_anonymous_answers_from_people_outside_app_yaml_leave_no_trace(start_server, fake_slack, database_url):
    server = start_server()
    post, ts = new_survey(server, fake_slack, question="How easy was the move to the new office?")
    where = (ANNOUNCE, ts)
    first, second, third = STRANGERS

    said = answer_of(fake_slack, click(server, fake_slack, first, rating(post, 4), where)).params
    assert "Thank you" in text_of(said) and "anonymous" in text_of(said)
    answer_of(fake_slack, click(server, fake_slack, second, rating(post, 5), where))
    changed = answer_of(fake_slack, click(server, fake_slack, second, rating(post, 2), where)).params
    assert "Answer changed" in text_of(changed)

    # The third answers with a comment: the button opens the answer form as a modal ...
    button = comment_button(post)
    opened = click(server, fake_slack, third, button, where)
    call = fake_slack.wait_for("views.open")[0]
    assert call.params["trigger_id"] == opened["trigger_id"]
    view = opened_view(fake_slack, 1)
    assert {b["block_id"] for b in view["blocks"]} == {"value", "comment"}
    assert json.loads(view["private_metadata"]) == {"form": "survey_answer", "context": {"survey": 1}}
    # ... and the thanks replaces the modal's content rather than arriving as a direct message.
    response = submit(server, fake_slack, third, view, {"value": "3", "comment": "The lifts are too slow"})
    assert response.status_code == 200
    body = response.json()
    assert body["response_action"] == "update"
    assert body["view"]["type"] == "modal" and "Your answer to SRV-1" in json.dumps(body["view"])
    assert "anonymous" in json.dumps(body["view"])

    assert answers(database_url) == [("", 2, ""), ("", 3, "The lifts are too slow"), ("", 4, "")]
    shown = text_of(slash(server, fake_slack, "survey results SRV-1", PRIYA).json())
    assert "3 answers" in shown and "show once 5 people" in shown and "lifts" not in shown

    # Nobody was registered; the answers, the audit and the outbox name no one.
    wait_until(lambda: all(r.status == "sent" for r in db_rows(database_url, OutboxMessage,
                                                               OutboxMessage.platform == "slack")),
               "the thank-yous delivered")
    assert {p.id for p in db_rows(database_url, Person)} == {p["id"] for p in demo_config()["people"]}
    assert not [i for i in db_rows(database_url, Identity) if i.external_id in STRANGERS]
    assert all(a.person_id is None for a in db_rows(database_url, SurveyAnswer))
    audit = db_rows(database_url, AuditRecord, AuditRecord.action == "survey.answer")
    assert len(audit) == 4 and all(a.person_id is None for a in audit)
    assert not [r for r in db_rows(database_url, OutboxMessage) if r.target in STRANGERS
                or r.target_kind == "person"]
    assert not [c for c in fake_slack.called("chat.postMessage") if c.params["channel"] in STRANGERS]
    needles = [*STRANGERS, *(f"slack-{s}" for s in STRANGERS)]
    assert traces(database_url, server, needles) == []

    # Nor after closing (the results go to the owner and into the thread).
    slash(server, fake_slack, "survey close SRV-1", PRIYA)
    fake_slack.wait_for("chat.postMessage", where=lambda c: c.params.get("thread_ts") == ts)
    assert traces(database_url, server, needles) == []


def test_a_named_comment_from_the_modal_is_stored_and_thanked_by_direct_message(start_server, fake_slack,
                                                                                  database_url):
    server = start_server()
    post, ts = new_survey(server, fake_slack, "anonymous=no")
    click(server, fake_slack, TOM, comment_button(post), (ANNOUNCE, ts))
    view = opened_view(fake_slack, 1)
    # Without a rating the modal says so beside the field, and nothing is stored.
    response = submit(server, fake_slack, TOM, view, {"comment": "Battery life is great"})
    assert response.json() == {"response_action": "errors", "errors": {"value": "choose an answer"}}
    assert answers(database_url) == []
    response = submit(server, fake_slack, TOM, view, {"value": "5", "comment": "Battery life is great"})
    assert response.status_code == 200 and not response.text.strip()  # the modal just closes
    assert answers(database_url) == [("tom", 5, "Battery life is great")]
    dm = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == TOM)[0]
    assert "Your answer to SRV-1" in text_of(dm.params) and "with your comment" in text_of(dm.params)
    # Opened again, the form shows his answer and comment.
    click(server, fake_slack, TOM, comment_button(post), (ANNOUNCE, ts))
    again = opened_view(fake_slack, 2)
    blocks = {b["block_id"]: b["element"] for b in again["blocks"]}
    assert blocks["value"]["initial_option"]["value"] == "5"
    assert blocks["comment"]["initial_value"] == "Battery life is great"
    results = text_of(slash(server, fake_slack, "survey results SRV-1", PRIYA).json())
    assert "Battery life is great" in results and "Tom Hughes" in results


def test_a_retried_button_delivery_changes_nothing_twice(start_server, fake_slack, database_url):
    server = start_server()
    post, ts = new_survey(server, fake_slack)
    first = click(server, fake_slack, SANNE, rating(post, 4), (ANNOUNCE, ts))
    answer_of(fake_slack, first)
    answer_of(fake_slack, click(server, fake_slack, SANNE, rating(post, 2), (ANNOUNCE, ts)))
    assert [a.value for a in db_rows(database_url, SurveyAnswer)] == [2]

    # Slack delivers the first click again (same user, same action_ts): it must not bring the 4 back.
    response = interact(server, first)
    assert response.status_code == 200
    time.sleep(1)  # settle: nothing happens
    assert [a.value for a in db_rows(database_url, SurveyAnswer)] == [2]
    assert db_count(database_url, AuditRecord, AuditRecord.action == "survey.answer") == 2
    assert len(fake_slack.called("response_url")) == 2  # no second thank-you either
    # The stored delivery keys are keyed hashes filed under the survey, never the user.
    keys = [d.key for d in db_rows(database_url, ProcessedDelivery) if d.key.startswith("survey:1:answer:")]
    assert len(keys) == 2 and not [k for k in keys if SANNE.lower() in k.lower()]


def test_two_first_answers_of_one_person_at_once_make_one_answer(start_server, fake_slack, database_url):
    server = start_server()
    post, ts = new_survey(server, fake_slack)
    payloads = [click_payload(fake_slack, SANNE, rating(post, v), (ANNOUNCE, ts)) for v in (1, 5)]
    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(lambda p: interact(server, p), payloads))
    assert [r.status_code for r in responses] == [200, 200]
    said = [text_of(answer_of(fake_slack, p).params) for p in payloads]
    assert sorted("Answer changed" in t for t in said) == [False, True], said
    [row] = db_rows(database_url, SurveyAnswer)
    assert row.value in (1, 5) and row.person_id is None
    assert "Something went wrong" not in "".join(said)


@pytest.mark.parametrize("what", ["button", "modal"])
def test_a_wrongly_signed_answer_is_refused_and_stores_nothing(start_server, fake_slack, database_url, what):
    server = start_server()
    post, ts = new_survey(server, fake_slack)
    if what == "button":
        response = interact(server, click_payload(fake_slack, SANNE, rating(post, 5), (ANNOUNCE, ts)),
                            secret="not-the-signing-secret")
    else:
        click(server, fake_slack, SANNE, comment_button(post), (ANNOUNCE, ts))
        view = opened_view(fake_slack, 1)
        response = submit(server, fake_slack, SANNE, view, {"value": "5", "comment": "forged"},
                          secret="not-the-signing-secret")
    assert response.status_code == 401
    forged = slash(server, fake_slack, "survey answer SRV-1 1", SANNE, secret="not-the-signing-secret")
    assert forged.status_code == 401
    time.sleep(0.5)
    assert db_rows(database_url, SurveyAnswer) == []
    assert db_count(database_url, AuditRecord, AuditRecord.action == "survey.answer") == 0
    assert not fake_slack.called("response_url")
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert 'svcbot_requests_refused_total{platform="slack",reason="signature"} 2.0' in metrics


def test_slash_survey_new_alone_opens_the_form_and_its_answers_send_the_survey(start_server, fake_slack,
                                                                               database_url):
    server = start_server()
    response = slash(server, fake_slack, "survey new", PRIYA)
    assert response.status_code == 200
    view = opened_view(fake_slack, 1)
    assert json.loads(view["private_metadata"])["form"] == "survey_new"
    payload = load_payload("slack", "bolt_python", "view_submission.json")
    payload["user"] = as_user(PRIYA)
    values = {"question": {"type": "plain_text_input", "value": "How was the town hall?"},
              "scale": {"type": "static_select", "selected_option": {"value": "csat"}},
              "channel": {"type": "multi_static_select", "selected_options": [{"value": "it-announce"}]},
              "people": {"type": "multi_static_select", "selected_options": []},
              "group": {"type": "static_select", "selected_option": None},
              "anonymous": {"type": "static_select", "selected_option": {"value": "yes"}},
              "comment": {"type": "static_select", "selected_option": {"value": "yes"}},
              "closes": {"type": "plain_text_input", "value": "in 3 days"},
              "service": {"type": "static_select", "selected_option": None}}
    payload["view"].update(callback_id=view["callback_id"], private_metadata=view["private_metadata"],
                           blocks=view["blocks"], id="V0NEWSURVEY", hash="1.new",
                           state={"values": {k: {"value": v} for k, v in values.items()}})
    assert interact(server, payload).status_code == 200
    [survey] = db_rows(database_url, Survey)
    assert (survey.question, survey.anonymous, survey.audience) == ("How was the town hall?", True, ["it-announce"])
    survey_post(fake_slack, "SRV-1")
    # Someone who runs no surveys (neither a service manager nor an owner) gets no form.
    refused = text_of(slash(server, fake_slack, "survey new", STRANGERS[0]).json())
    assert "Not allowed" in refused and len(fake_slack.called("views.open")) == 1


# ---------------------------------------------------------------------------------------------------------
# After-ticket surveys

def with_quick_ticket_survey(config_file) -> dict:
    """The demo configuration, with payments' requesters asked 1.2 seconds after resolution, not two hours."""
    cfg = demo_config()
    payments = next(s for s in cfg["services"] if s["id"] == "payments")
    payments["ticket_survey"] = {"sample_percent": 100, "delay": "0.02 min"}
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


@pytest.fixture
def quick_ticket_survey(config_file):
    return with_quick_ticket_survey(config_file)


def survey_dms(fake_slack, user: str) -> list:
    return [c for c in fake_slack.called("chat.postMessage") if c.params["channel"] == user
            and "How satisfied are you with how INC-1 was handled?" in text_of(c.params)]


def test_a_resolved_ticket_asks_its_requester_once(start_server, fake_slack, database_url, quick_ticket_survey):
    server = start_server()
    opened = text_of(slash(server, fake_slack, "incident new payments P3 Card reader in store 12 is slow",
                           SANNE).json())
    assert "INC-1 opened" in opened
    body = slash_command_body("incident resolve INC-1 Reader replaced", TOM, response_url(fake_slack, "commands"),
                              trigger_id=trigger_id())
    resolved = requests.post(server.url + "/slack/events", data=body, headers=slack_headers(body), timeout=10)
    assert "INC-1 resolved" in text_of(resolved.json())
    # Slack delivers the same slash command again, and Tom presses Resolve a second time.
    again = requests.post(server.url + "/slack/events", data=body, headers=slack_headers(body), timeout=10)
    assert "Already done" in text_of(again.json())
    assert "cannot be resolved" in text_of(slash(server, fake_slack, "incident resolve INC-1", TOM).json())

    dm = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == SANNE
                             and "INC-1" in text_of(c.params))[0]
    assert "How satisfied are you with how INC-1 was handled?" in text_of(dm.params)
    assert [e["value"] for e in elements(dm.params["blocks"]) if e["value"].startswith("survey answer")] == \
        [f"survey answer SRV-1 {v}" for v in range(1, 6)]
    [survey] = db_rows(database_url, Survey)
    assert (survey.kind, survey.ticket_id, survey.audience, survey.anonymous) == ("ticket", 1, ["sanne"], False)
    [ticket] = db_rows(database_url, Ticket)
    assert abs((survey.opens_at - ticket.resolved_at).total_seconds() - 1.2) < 0.01  # the configured delay
    [sent] = [r for r in db_rows(database_url, OutboxMessage) if r.target == SANNE and r.subject == "SRV-1"]
    assert sent.created_at >= survey.opens_at  # not before the delay was over

    # Reopened and resolved again: the ticket was surveyed already.
    assert "INC-1 reopened" in text_of(slash(server, fake_slack, "incident reopen INC-1", TOM).json())
    assert "INC-1 resolved" in text_of(slash(server, fake_slack, "incident resolve INC-1", TOM).json())
    time.sleep(2)  # ten sweeps
    assert len(survey_dms(fake_slack, SANNE)) == 1
    assert db_count(database_url, Survey) == 1
    assert not [c for c in fake_slack.called("chat.postMessage") if c.params["channel"] == TOM
                and "How satisfied" in text_of(c.params)]

    # She answers from the direct message: a named answer, about payments.
    said = answer_of(fake_slack, click(server, fake_slack, SANNE, next(
        e for e in elements(dm.params["blocks"]) if e["value"] == "survey answer SRV-1 5"))).params
    assert "Thank you" in text_of(said)
    assert [(a.person_id, a.value) for a in db_rows(database_url, SurveyAnswer)] == [("sanne", 5)]


def test_a_ticket_reopened_before_its_survey_went_out_is_asked_about_once(start_server, fake_slack, database_url,
                                                                        quick_ticket_survey):
    server = start_server()
    slash(server, fake_slack, "incident new payments P3 Refunds fail for gift cards", SANNE)
    for verb in ("resolve", "reopen", "resolve"):
        assert f"INC-1 {verb}" in text_of(slash(server, fake_slack, f"incident {verb} INC-1", TOM).json())
    fake_slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == SANNE
                        and "INC-1" in text_of(c.params))
    time.sleep(2)  # ten sweeps
    assert len(survey_dms(fake_slack, SANNE)) == 1
    [survey] = db_rows(database_url, Survey)
    assert survey.state == "open"


# ---------------------------------------------------------------------------------------------------------
# Anonymity on the other ways in

def direct_message(server, user: str, channel: str, words: str) -> requests.Response:
    """Slack's own message event sample, as a direct message (channel_type im) to the bot."""
    payload = load_payload("slack", "bolt_python", "event_callback_message.json")
    payload["event"].update(text=words, user=user, channel=channel, channel_type="im", ts=f"{time.time():.6f}",
                            blocks=[])
    payload["event_id"] = f"Ev{time.time_ns()}"
    body = json.dumps(payload)
    return requests.post(server.url + "/slack/events", data=body,
                         headers=slack_headers(body, content_type="application/json"), timeout=10)


def test_an_anonymous_answer_by_direct_message_sends_nothing_stored_to_that_chat(start_server, fake_slack,
                                                                                 database_url):
    server = start_server()
    new_survey(server, fake_slack)
    im = "D07QX2N4K1"  # the stranger's direct message channel with the bot
    assert direct_message(server, STRANGERS[0], im, "survey answer SRV-1 4").status_code == 200
    wait_until(lambda: db_rows(database_url, SurveyAnswer), "the answer stored")
    time.sleep(1)  # settle: the outbox has had its chance
    assert [(a.person_id, a.value) for a in db_rows(database_url, SurveyAnswer)] == [(None, 4)]
    assert not [r for r in db_rows(database_url, OutboxMessage) if r.target in (im, STRANGERS[0])]


def test_a_comment_modal_sent_after_closing_is_refused_in_the_modal(start_server, fake_slack, database_url):
    server = start_server()
    post, ts = new_survey(server, fake_slack)
    click(server, fake_slack, STRANGERS[0], comment_button(post), (ANNOUNCE, ts))
    view = opened_view(fake_slack, 1)
    slash(server, fake_slack, "survey close SRV-1", PRIYA)
    response = submit(server, fake_slack, STRANGERS[0], view, {"value": "2", "comment": "Too late?"})
    assert response.status_code == 200
    time.sleep(1)  # settle
    assert db_rows(database_url, SurveyAnswer) == []
    assert not [r for r in db_rows(database_url, OutboxMessage) if r.target == STRANGERS[0]]
    # The refusal shows where the answer was given: in the modal.
    assert "takes no more answers" in response.text
    assert not [c for c in fake_slack.called("chat.postMessage") if c.params["channel"] == STRANGERS[0]]
