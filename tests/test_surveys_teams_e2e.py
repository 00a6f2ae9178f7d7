"""Pulse and after-ticket surveys through Microsoft Teams, end to end: the real server in a subprocess,
Bot Framework activities shaped like Teams' own samples (messages, Action.Execute invokes), and the fake
connector on loopback recording every card svcbot posts, updates and answers with."""
from __future__ import annotations

import itertools
import json
import time

import pytest

from storage.models import (AuditRecord, ConversationRef, Identity, OutboxMessage, Person, Survey, SurveyAnswer)
from tests.conftest import db_count, db_rows, demo_config, wait_until
from tests.test_surveys_slack_e2e import stored_text, traces, with_quick_ticket_survey
from tests.test_teams_e2e import (ADAPTIVE, TEAM_ID, TENANT, Member, card_of, card_text, execute_invoke,
                                  installed_in_channel, installed_personally, personal_message, posted, sends,
                                  preferring_teams, server_env)  # noqa: F401 - a fixture: the emulator mode

pytestmark = pytest.mark.e2e

MESSAGE = "application/vnd.microsoft.activity.message"
# it-announce's Teams channel in the demo app.yaml: where the surveys below are posted.
ANNOUNCE_CONV = demo_config()["channels"]["it-announce"]["teams"]

PRIYA = Member("7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0001", "29:1priyaNairKw8s0001", "Priya Nair")       # service manager
TOM = Member("7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0002", "29:1tomHughesQx7vJr0002", "Tom Hughes")        # owns payments
SANNE = Member("7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0003", "29:1sanneDeVriesPq3k0003", "Sanne de Vries")
ARJUN = Member("7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0004", "29:1arjunMehtaLm2d0004", "Arjun Mehta")
MEERA = Member("7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0005", "29:1meeraKulkarniZt0005", "Meera Kulkarni")
# Colleagues nobody wrote into app.yaml: what an anonymous answer must leave no trace of.
STRANGERS = (
    Member("e3b0c442-98fc-4c14-9afb-f4c8996fb924", "29:1Xq8vRnoorHaddad2kLmZp", "Noor Haddad"),
    Member("5f2d8a17-0b6e-4e51-a3c9-7d41c2e8f605", "29:1Bv7TjkenjiWatanabe9Qd", "Kenji Watanabe"),
    Member("a9c4e6b2-3d71-48f0-b5e2-1f8d07c3a4e9", "29:1Hs3MwelenaPetrova4Rx", "Elena Petrova"),
)

_ids = itertools.count(1)


def in_channel(activity: dict, channel: str, root: str) -> dict:
    """Move an activity into a channel thread (the thread of the message with id ``root``), as Teams sends
    a press on a card posted in a channel."""
    activity["conversation"] = {"id": f"{channel};messageid={root}", "isGroup": True, "conversationType": "channel",
                                "tenantId": TENANT}
    activity["channelData"].update(teamsChannelId=channel, teamsTeamId=TEAM_ID, channel={"id": channel},
                                   team={"id": TEAM_ID})
    activity["replyToId"] = root
    return activity


def press(server, fake_teams, member: Member, data: dict, where: tuple[str, str] | None = None,
          activity: dict | None = None) -> dict:
    """An Action.Execute press; its answer comes back in the HTTP response."""
    if activity is None:
        activity = execute_invoke(fake_teams, member, data)
        if where:
            in_channel(activity, *where)
    return posted(server, activity).json()


def survey_card(fake_teams, survey: str = "SRV-1"):
    """The question as posted in it-announce's Teams channel: (the call, its card, its activity id)."""
    call = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == ANNOUNCE_CONV
                               and not c.params["_reply_to"] and survey in card_text(c))[0]
    return call, card_of(call), call.params["_id"]


def card_actions(card: dict) -> list[dict]:
    nested = [a for e in card["body"] if e["type"] == "ActionSet" for a in e["actions"]]
    return nested + card.get("actions", [])


def rating(card: dict, value: int) -> dict:
    return next(a["data"] for a in card_actions(card) if a["data"].get("run", "").startswith("survey answer")
                and a["data"]["run"].endswith(f" {value}"))


def comment_action(card: dict) -> dict:
    return next(a["data"] for a in card_actions(card) if a["data"].get("run", "").startswith("survey comment"))


def said(fake_teams, member: Member, words: str, server) -> str:
    """Send a 1:1 message and return the card text of the answer to it."""
    activity = personal_message(fake_teams, member, words)
    posted(server, activity)
    reply = fake_teams.wait_for("send", where=lambda c: c.params["_reply_to"] == activity["id"])[0]
    return card_text(reply)


def answers(database_url) -> list[tuple]:
    return sorted((a.person_id or "", a.value, a.comment or "") for a in db_rows(database_url, SurveyAnswer))


def start(start_server, fake_teams, *members: Member):
    server = start_server()
    posted(server, installed_in_channel(fake_teams, ANNOUNCE_CONV))
    for member in members:
        posted(server, installed_personally(fake_teams, member))
    return server


def new_survey_from_the_card(server, fake_teams, anonymous: str, question: str):
    """'survey new' in a 1:1 chat answers with the form as a card; its Action.Execute sends the survey."""
    posted(server, personal_message(fake_teams, PRIYA, "survey new"))
    form = card_of(fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == PRIYA.personal)[0])
    ids = {e.get("id") for e in form["body"]}
    assert {"question", "scale", "channel", "people", "group", "anonymous", "closes"} <= ids
    [submit] = form["actions"]
    assert submit["type"] == "Action.Execute" and submit["data"] == {"form": "survey_new", "context": {}}
    done = press(server, fake_teams, PRIYA, {**submit["data"], "question": question, "scale": "csat",
                                             "channel": "it-announce", "anonymous": anonymous, "comment": "yes",
                                             "closes": "in 2 days"})
    assert done["type"] == ADAPTIVE and "SRV-1 sent" in json.dumps(done["value"]), done
    return survey_card(fake_teams)


# ---------------------------------------------------------------------------------------------------------

def test_three_answer_by_card_one_changes_and_a_fourth_after_closing_is_refused(start_server, fake_teams,
                                                                                 fake_slack, database_url):
    server = start(start_server, fake_teams, PRIYA)
    call, card, activity_id = new_survey_from_the_card(server, fake_teams, "no",
                                                       "How satisfied are you with the new laptops?")
    runs = [a["data"]["run"] for a in card_actions(card) if a["type"] == "Action.Execute"]
    assert runs == [f"survey answer SRV-1 {v}" for v in range(1, 6)] + ["survey comment SRV-1"]
    fake_slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == "C0ANNOUNCE")  # and in Slack

    where = (ANNOUNCE_CONV, activity_id)
    for member, value in ((TOM, 4), (SANNE, 5), (ARJUN, 2)):
        answer = press(server, fake_teams, member, rating(card, value), where)
        assert answer["statusCode"] == 200 and answer["type"] == MESSAGE
        assert "Thank you" in answer["value"] and f"{value} (" in answer["value"]
    changed = press(server, fake_teams, SANNE, rating(card, 3), where)
    assert "Answer changed" in changed["value"] and "3 (neither)" in changed["value"]
    assert answers(database_url) == [("arjun", 2, ""), ("sanne", 3, ""), ("tom", 4, "")]

    results = said(fake_teams, PRIYA, "survey results SRV-1", server)
    assert "3 answers" in results and "CSAT" in results and "33 %" in results and "Distribution" in results
    assert "5 (very satisfied)  ░░░░░░░░░░ 0" in results

    closed = said(fake_teams, PRIYA, "survey close SRV-1", server)
    assert "SRV-1 results" in closed and "3 answers" in closed
    # The card in the channel is updated in place, without buttons; the results go into its thread.
    update = fake_teams.wait_for("update", where=lambda c: c.params["_conversation"] == ANNOUNCE_CONV)[0]
    assert update.params["_activity"] == activity_id
    assert "closed" in card_text(update) and not card_actions(card_of(update))
    thread = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == ANNOUNCE_CONV
                                 and c.params["_reply_to"] == activity_id)[0]
    assert "3 answers" in card_text(thread)

    # A press on the card as it was before the update: refused, politely, and nothing stored.
    late = press(server, fake_teams, MEERA, rating(card, 5), where)
    assert late["statusCode"] == 200
    assert "SRV-1 closed on" in late["value"] and "takes no more answers" in late["value"]
    assert "takes no more answers" in press(server, fake_teams, TOM, rating(card, 1), where)["value"]
    form = press(server, fake_teams, MEERA, comment_action(card), where)
    assert "takes no more answers" in json.dumps(form["value"])
    assert answers(database_url) == [("arjun", 2, ""), ("sanne", 3, ""), ("tom", 4, "")]
    assert db_count(database_url, AuditRecord, AuditRecord.action == "survey.answer") == 4
    assert db_rows(database_url, Survey)[0].results["answers"] == 3


def test_the_comment_card_round_trip_of_a_named_survey(start_server, fake_teams, database_url):
    server = start(start_server, fake_teams, PRIYA)
    _, card, activity_id = new_survey_from_the_card(server, fake_teams, "no", "How was the move?")
    where = (ANNOUNCE_CONV, activity_id)
    press(server, fake_teams, TOM, rating(card, 2), where)

    # "Answer with a comment" answers with the form as a card, his answer already chosen.
    form = press(server, fake_teams, TOM, comment_action(card), where)
    assert form["type"] == ADAPTIVE
    body = {e.get("id"): e for e in form["value"]["body"] if e.get("id")}
    assert set(body) == {"value", "comment"} and body["value"]["value"] == "2"
    [send] = form["value"]["actions"]
    assert send["type"] == "Action.Execute" and send["data"] == {"form": "survey_answer", "context": {"survey": 1}}

    # Teams merges the inputs' values into the action's data.
    empty = press(server, fake_teams, TOM, {**send["data"], "value": "", "comment": "Boxes arrived late"})
    assert empty["type"] == ADAPTIVE and "choose an answer" in json.dumps(empty["value"])
    assert answers(database_url) == [("tom", 2, "")]
    done = press(server, fake_teams, TOM, {**send["data"], "value": "3", "comment": "Boxes arrived late"})
    assert "Answer changed" in json.dumps(done["value"]) and "with your comment" in json.dumps(done["value"])
    assert answers(database_url) == [("tom", 3, "Boxes arrived late")]
    results = said(fake_teams, PRIYA, "survey results SRV-1", server)
    assert "Boxes arrived late" in results and "Tom Hughes" in results


def test_anonymous_answers_from_people_outside_app_yaml_leave_no_trace(start_server, fake_teams, fake_slack,
                                                                      database_url):
    server = start(start_server, fake_teams, PRIYA)
    _, card, activity_id = new_survey_from_the_card(server, fake_teams, "yes", "How easy was the move?")
    assert "Anonymous" in json.dumps(card)
    where = (ANNOUNCE_CONV, activity_id)
    first, second, third = STRANGERS

    assert "Thank you" in press(server, fake_teams, first, rating(card, 4), where)["value"]
    press(server, fake_teams, second, rating(card, 5), where)
    assert "Answer changed" in press(server, fake_teams, second, rating(card, 1), where)["value"]
    # The third answers with a comment, through the answer card.
    form = press(server, fake_teams, third, comment_action(card), where)
    [send] = form["value"]["actions"]
    done = press(server, fake_teams, third, {**send["data"], "value": "3", "comment": "The lifts are too slow"},
                 where)
    assert done["type"] == ADAPTIVE and "Your answer to SRV-1" in json.dumps(done["value"])
    assert answers(database_url) == [("", 1, ""), ("", 3, "The lifts are too slow"), ("", 4, "")]

    # Below five answers the results stay hidden, even from the survey's owner.
    results = said(fake_teams, PRIYA, "survey results SRV-1", server)
    assert "3 answers" in results and "show once 5 people have answered" in results
    for leak in ("Distribution", "CSAT", "very dissatisfied", "lifts"):
        assert leak not in results

    # Nobody was registered; the answers, the audit and the outbox name no one; the answers went back in
    # the HTTP responses.
    assert {p.id for p in db_rows(database_url, Person)} == {p["id"] for p in demo_config()["people"]}
    strangers = {m.aad for m in STRANGERS} | {m.account for m in STRANGERS}
    assert not [i for i in db_rows(database_url, Identity) if i.external_id in strangers or i.address in strangers]
    assert not [r for r in db_rows(database_url, ConversationRef) if r.user_aad_id in strangers]
    assert all(a.person_id is None for a in db_rows(database_url, SurveyAnswer))
    audit = db_rows(database_url, AuditRecord, AuditRecord.action == "survey.answer")
    assert len(audit) == 4 and all(a.person_id is None for a in audit)
    assert not [r for r in db_rows(database_url, OutboxMessage) if r.target in strangers]
    assert not [c for c in fake_teams.called("send") if c.params["recipient"]["id"] in strangers]
    assert not fake_teams.called("create_conversation")
    needles = [*(m.aad for m in STRANGERS), *(m.account for m in STRANGERS), *(m.name for m in STRANGERS)]
    assert traces(database_url, server, needles) == []

    said(fake_teams, PRIYA, "survey close SRV-1", server)
    fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == ANNOUNCE_CONV
                        and c.params["_reply_to"] == activity_id)
    late = press(server, fake_teams, first, rating(card, 2), where)
    assert "takes no more answers" in late["value"]
    assert traces(database_url, server, needles) == []


def test_a_retried_press_changes_nothing_twice(start_server, fake_teams, database_url):
    server = start(start_server, fake_teams, PRIYA)
    _, card, activity_id = new_survey_from_the_card(server, fake_teams, "yes", "How was the town hall?")
    where = (ANNOUNCE_CONV, activity_id)
    first = in_channel(execute_invoke(fake_teams, SANNE, rating(card, 4)), *where)
    press(server, fake_teams, SANNE, {}, activity=first)
    press(server, fake_teams, SANNE, rating(card, 2), where)
    again = press(server, fake_teams, SANNE, {}, activity=first)  # the first press, delivered again
    assert "Already done" in again["value"]
    assert [a.value for a in db_rows(database_url, SurveyAnswer)] == [2]
    assert db_count(database_url, AuditRecord, AuditRecord.action == "survey.answer") == 2


# ---------------------------------------------------------------------------------------------------------
# After-ticket surveys

@pytest.fixture
def quick_ticket_survey(config_file):
    return with_quick_ticket_survey(config_file)


def survey_sends(fake_teams, member: Member) -> list:
    return [c for c in sends(fake_teams, member.personal)
            if "How satisfied are you with how INC-1 was handled?" in card_text(c)]


def test_a_resolved_ticket_asks_its_requester_once(start_server, fake_teams, fake_slack, database_url,
                                                   quick_ticket_survey, config_file):
    preferring_teams(config_file, SANNE, TOM)
    server = start(start_server, fake_teams, SANNE, TOM)
    assert "INC-1 opened" in said(fake_teams, SANNE, "incident new payments P3 Card reader in store 12 is slow",
                                  server)
    resolve = execute_invoke(fake_teams, TOM, {"run": "incident resolve INC-1"})
    assert "INC-1 resolved" in press(server, fake_teams, TOM, {}, activity=resolve)["value"]
    assert "Already done" in press(server, fake_teams, TOM, {}, activity=resolve)["value"]  # delivered again

    ask = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == SANNE.personal
                              and "INC-1 was handled" in card_text(c))[0]
    assert ask.params["_reply_to"] is None  # a message of its own, not an answer to hers
    card = card_of(ask)
    assert [a["data"]["run"] for a in card_actions(card)][:5] == [f"survey answer SRV-1 {v}" for v in range(1, 6)]

    assert "INC-1 reopened" in press(server, fake_teams, TOM, {"run": "incident reopen INC-1"})["value"]
    assert "INC-1 resolved" in press(server, fake_teams, TOM, {"run": "incident resolve INC-1"})["value"]
    time.sleep(2)  # ten sweeps
    assert len(survey_sends(fake_teams, SANNE)) == 1
    assert db_count(database_url, Survey) == 1
    # She is on Slack too, but prefers Teams: not asked there.
    assert not [c for c in fake_slack.called("chat.postMessage") if c.params["channel"] == "U0SANNE03"
                and "INC-1 was handled" in json.dumps(c.params["blocks"])]

    # A low score, pressed in her chat, is a named answer, and goes on to the service's owner.
    thanks = press(server, fake_teams, SANNE, rating(card, 2))
    assert "Thank you" in thanks["value"]
    assert [(a.person_id, a.value) for a in db_rows(database_url, SurveyAnswer)] == [("sanne", 2)]
    low = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == TOM.personal
                              and "Low satisfaction on INC-1" in card_text(c))[0]
    assert "Sanne de Vries" in card_text(low)
    wait_until(lambda: db_rows(database_url, OutboxMessage, OutboxMessage.target == TOM.aad,
                               OutboxMessage.status == "sent"), "the owner told")


def test_an_anonymous_answer_pressed_in_a_1to1_chat_stores_nothing_naming_that_chat(start_server, fake_teams,
                                                                                    database_url, config_file):
    """An anonymous survey asked by direct message (group workplace-it: Sanne and Lucas) is answered in
    each person's 1:1 chat with the bot: no row written by the answer may name that chat, since the chat
    names the person."""
    preferring_teams(config_file, SANNE)
    server = start(start_server, fake_teams, PRIYA, SANNE)
    answer = press(server, fake_teams, PRIYA, {"run": 'survey new question="How is working from home?" '
                                                      'scale=csat group=workplace-it closes="in 3 days"'})
    assert "SRV-1 sent" in answer["value"]
    ask = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == SANNE.personal)[0]
    wait_until(lambda: db_rows(database_url, OutboxMessage, OutboxMessage.target == SANNE.aad,
                               OutboxMessage.status == "sent"), "the question recorded as sent")
    assert [r.user_aad_id for r in db_rows(database_url, ConversationRef,
                                           ConversationRef.conversation_id == SANNE.personal)] == [SANNE.aad]
    before = {(t, c, v) for t, c, v in stored_text(database_url)}
    assert "Thank you" in press(server, fake_teams, SANNE, rating(card_of(ask), 4))["value"]
    [row] = db_rows(database_url, SurveyAnswer)
    assert (row.person_id, row.value) == (None, 4)
    added = [(t, c, v) for t, c, v in stored_text(database_url) if (t, c, v) not in before]
    assert not [(t, c, v) for t, c, v in added if SANNE.personal in v or SANNE.aad in v or SANNE.account in v]
