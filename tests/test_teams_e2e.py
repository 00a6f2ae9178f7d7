"""Microsoft Teams end to end: the real server in a subprocess, Bot Framework activities shaped like
Teams' own samples POSTed to /api/messages, and a fake connector on loopback (the activities'
``serviceUrl``) that records every reply, proactive post and conversation the bot creates."""
from __future__ import annotations

import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests
import yaml

from storage.models import AuditRecord, ConversationRef, OutboxMessage, ServiceStatus, StatusChange, Subscription
from tests.conftest import db_count, db_rows, demo_config, load_payload, wait_until

pytestmark = pytest.mark.e2e

ADAPTIVE = "application/vnd.microsoft.card.adaptive"
TENANT = "b28fdbfd-2b78-4f93-b0f8-8881793f0f8f"          # the tenant of the install sample
BOT = {"id": "28:608cacfd-1cea-40c9-b678-4b93e69bb72b", "name": "svcbot"}
TEAM_ID = "19:zFLSDFWsesfzcmKArqKJ-65aOXJz@sgf462H2wz41@thread.tacv2"
# The channel the bot is added to in the install sample; the test configuration maps `payments` to it.
PAYMENTS_CONV = "19:0b7f32667e064dd9b25d7969801541f4@thread.tacv2"


@dataclass(frozen=True)
class Member:
    aad: str       # AAD object id: what app.yaml's `teams:` names
    account: str   # the Teams channel account id ("29:…") the connector addresses
    name: str

    @property
    def personal(self) -> str:
        """This member's 1:1 conversation with the bot."""
        return f"a:1{self.account[3:]}-personal"

    def as_from(self) -> dict:
        return {"id": self.account, "name": self.name, "aadObjectId": self.aad}


TOM = Member("7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0002", "29:1tomHughesQx7vJr0002", "Tom Hughes")        # owns payments
SANNE = Member("7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0003", "29:1sanneDeVriesPq3k0003", "Sanne de Vries")
MEERA = Member("7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0005", "29:1meeraKulkarniZt0005", "Meera Kulkarni")  # may not set it

_ids = itertools.count(1)


def new_id() -> str:
    """Teams message ids are millisecond timestamps; unique per test run here."""
    return str(1759944781430 + next(_ids))


# ---------------------------------------------------------------------------------------------------------
# Activities: Teams' own samples, with only the service URL, ids, text and tenant changed.

def sample(name: str, fake_teams, *, conversation: str | None = None, sender: Member | None = None) -> dict:
    folder, file = name.split("/")
    activity = load_payload("teams", folder, file)
    activity["serviceUrl"] = fake_teams.url + "/"
    activity["recipient"] = dict(BOT)
    activity.setdefault("channelData", {})["tenant"] = {"id": TENANT}
    if "tenantId" in activity.get("conversation", {}):
        activity["conversation"]["tenantId"] = TENANT
    if conversation:
        activity["conversation"]["id"] = conversation
    if sender:
        activity["from"] = sender.as_from()
    if activity["type"] != "conversationUpdate":
        activity["id"] = new_id()
    return activity


def personal_message(fake_teams, sender: Member, text: str) -> dict:
    """A 1:1 chat message (conversationType personal), as in the Teams docs' inbound sample."""
    activity = sample("msteams_docs/message_channel_inbound.json", fake_teams, conversation=sender.personal,
                      sender=sender)
    activity["text"] = text
    activity["attachments"][0]["content"] = f"<p>{text}</p>"
    return activity


def channel_mention(fake_teams, sender: Member, text: str, channel: str = PAYMENTS_CONV) -> dict:
    """An @mention of the bot in a channel thread, as Teams sends it (mention entity and all)."""
    activity = sample("teams_net/message_channel_reply_with_mention.json", fake_teams, sender=sender)
    root = activity["id"]
    activity["conversation"]["id"] = f"{channel};messageid={root}"
    data = activity["channelData"]
    data["teamsChannelId"] = data["channel"]["id"] = channel
    data["teamsTeamId"] = data["team"]["id"] = TEAM_ID
    mention = activity["entities"][0]
    mention["mentioned"] = dict(BOT)
    mention["text"] = f"<at>{BOT['name']}</at>"
    activity["text"] = f"<at>{BOT['name']}</at> {text}"
    activity["attachments"][0]["content"] = (
        f'<p><span itemtype="http://schema.skype.com/Mention" itemscope="" itemid="0">{BOT["name"]}</span>'
        f"&nbsp;{text}</p>")
    return activity


def execute_invoke(fake_teams, sender: Member, data) -> dict:
    """An Adaptive Card Action.Execute press (an `adaptiveCard/action` invoke) in a 1:1 chat."""
    activity = sample("teams_net/invoke_adaptiveCard_action_execute.json", fake_teams,
                      conversation=sender.personal, sender=sender)
    activity["id"] = f"f:{new_id()}"
    activity["value"]["action"]["data"] = data
    return activity


def card_submit(fake_teams, sender: Member, words: str) -> dict:
    """An Adaptive Card Action.Submit: a message with `value` and no text, in the docs sample's channel thread
    (a sample old enough to carry no conversationType: channelData says it is a channel)."""
    activity = sample("msteams_docs/message_messageBack_with_value.json", fake_teams, sender=sender)
    activity["value"] = {"run": words}
    del activity["text"]
    return activity


def installed_in_channel(fake_teams, channel: str = PAYMENTS_CONV) -> dict:
    activity = sample("msteams_docs/conversationUpdate_teamMemberAdded_bot_added_to_team.json", fake_teams,
                      conversation=channel)
    activity["membersAdded"] = [{"id": BOT["id"]}]
    activity["channelData"]["settings"]["selectedChannel"]["id"] = channel
    activity["channelData"]["team"]["id"] = TEAM_ID
    return activity


def installed_personally(fake_teams, member: Member) -> dict:
    activity = sample("msteams_docs/conversationUpdate_bot_added_personal.json", fake_teams,
                      conversation=member.personal, sender=member)
    activity["membersAdded"] = [{"id": BOT["id"]}, {"id": member.account, "aadObjectId": member.aad}]
    return activity


def post(server, activity: dict, **headers) -> requests.Response:
    return requests.post(server.url + "/api/messages", json=activity, headers=headers or None, timeout=15)


def posted(server, activity: dict) -> requests.Response:
    response = post(server, activity)
    assert response.status_code in (200, 201), (response.status_code, response.text, server.log()[-3000:])
    return response


# ---------------------------------------------------------------------------------------------------------
# What the connector saw, and what the store holds.

def sends(fake_teams, conversation: str | None = None) -> list:
    return [c for c in fake_teams.called("send") if conversation is None or c.params["_conversation"] == conversation]


def card_of(call) -> dict:
    attachments = call.params.get("attachments") or []
    assert attachments and attachments[0]["contentType"] == ADAPTIVE, call.params
    card = attachments[0]["content"]
    assert card["type"] == "AdaptiveCard"
    return card


def unmarked(card: dict) -> dict:
    """The card without the outbox row's marker (an element id ``svcbot-…``)."""
    body = [{k: v for k, v in e.items() if not (k == "id" and str(v).startswith("svcbot-"))} for e in card["body"]]
    return {**card, "body": body}


def card_text(call) -> str:
    return json.dumps(card_of(call), ensure_ascii=False)







@pytest.fixture
def server_env(server_env):
    """Without credentials Teams is off; these servers take unauthenticated activities from loopback, as
    with the Bot Framework Emulator, because the emulator mode is switched on."""
    return {**server_env, "SVCBOT_TEAMS_EMULATOR": "1"}


def preferring_teams(config_file, *members: "Member") -> None:
    """These people (on both platforms in the demo) get their direct messages in Teams, not Slack."""
    cfg = yaml.safe_load(config_file.read_text())
    aads = {m.aad for m in members}
    for person in cfg["people"]:
        if person.get("teams") in aads:
            person["prefer"] = "teams"
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture
def channel_config(config_file):
    """The demo configuration with #payments mapped to the Teams channel the bot gets installed in."""
    cfg = demo_config()
    cfg["channels"]["payments"]["teams"] = PAYMENTS_CONV
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["channel", "personal"])
def test_installation_stores_the_conversation_reference(start_server, fake_teams, database_url, kind):
    server = start_server()
    if kind == "channel":
        activity, conversation = installed_in_channel(fake_teams), PAYMENTS_CONV
    else:
        activity, conversation = installed_personally(fake_teams, SANNE), SANNE.personal
    assert db_rows(database_url, ConversationRef) == []
    posted(server, activity)

    [ref] = db_rows(database_url, ConversationRef)
    assert ref.conversation_id == conversation
    assert ref.conversation_type == kind
    assert ref.service_url == fake_teams.url + "/"
    assert ref.tenant_id == TENANT
    assert ref.active is True
    assert ref.reference["conversation"]["id"] == conversation
    assert ref.reference["bot"]["id"] == BOT["id"]
    assert ref.reference["serviceUrl"] == fake_teams.url + "/"
    if kind == "channel":
        assert ref.team_id == TEAM_ID and ref.user_aad_id is None
    else:
        assert ref.user_aad_id == SANNE.aad and ref.team_id is None
    assert not fake_teams.calls  # installing says nothing by itself

    # The same install again, unauthenticated, naming another host: the stored serviceUrl stays.
    forged = {**activity, "id": new_id(), "serviceUrl": "http://169.254.169.254/"}
    posted(server, forged)
    [ref] = db_rows(database_url, ConversationRef)
    assert (ref.service_url, ref.reference["serviceUrl"]) == (fake_teams.url + "/", fake_teams.url + "/")


def test_teams_is_off_without_an_app_id_or_the_emulator_mode(start_server, fake_teams, database_url):
    server = start_server(SVCBOT_TEAMS_EMULATOR=None)
    forged = personal_message(fake_teams, TOM, "service set payments major-outage forged")
    for activity in (installed_in_channel(fake_teams), forged):
        response = post(server, activity)
        assert response.status_code == 503, response.text
        assert "MICROSOFT_APP_ID" in response.json()["error"]
    assert db_rows(database_url, ConversationRef) == []
    assert db_rows(database_url, ServiceStatus) == []
    assert db_rows(database_url, AuditRecord) == []
    assert not fake_teams.calls


def test_personal_status_is_answered_with_an_adaptive_card_naming_every_service(start_server, fake_teams):
    server = start_server()
    activity = personal_message(fake_teams, TOM, "status")
    posted(server, activity)
    [reply] = fake_teams.wait_for("send")
    assert reply.params["_conversation"] == TOM.personal
    assert reply.params["_reply_to"] == activity["id"] and reply.params["replyToId"] == activity["id"]
    assert reply.params["type"] == "message"
    assert reply.params["recipient"]["id"] == TOM.account and reply.params["from"]["id"] == BOT["id"]
    text = card_text(reply)
    for service in demo_config()["services"]:
        assert service["name"] in text, service["name"]
    assert "All services operational" in text


def test_channel_mention_is_stripped_and_answered_in_the_thread(start_server, fake_teams):
    server = start_server()
    activity = channel_mention(fake_teams, TOM, "status")
    posted(server, activity)
    [reply] = fake_teams.wait_for("send")
    assert reply.params["_conversation"] == activity["conversation"]["id"]
    assert reply.params["_reply_to"] == activity["id"]
    text = card_text(reply)
    for service in demo_config()["services"]:
        assert service["name"] in text, service["name"]
    assert "I don't know" not in text and "That didn't work" not in text  # the <at> mention did not leak in


def test_owner_announces_to_the_channel_and_to_a_subscriber(start_server, fake_teams, fake_slack, database_url,
                                                            channel_config, config_file):
    preferring_teams(config_file, SANNE)
    server = start_server()
    posted(server, installed_in_channel(fake_teams))
    posted(server, installed_personally(fake_teams, SANNE))
    subscribe = personal_message(fake_teams, SANNE, "subscribe payments")
    posted(server, subscribe)
    answer = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == SANNE.personal)[-1]
    assert "now follow Payments Gateway" in card_text(answer)

    command = personal_message(fake_teams, TOM, 'service set payments degraded "Card payments are slow"')
    posted(server, command)
    inbound_ids = {subscribe["id"], command["id"]}
    [answer] = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == TOM.personal)
    assert answer.params["_reply_to"] == command["id"]
    assert "Payments Gateway is now degraded" in card_text(answer)
    assert "Announced to #payments (Slack and Teams) and 1 subscriber" in card_text(answer)

    channel_post = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == PAYMENTS_CONV)[0]
    dm = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == SANNE.personal
                             and "Payments Gateway: degraded" in card_text(c))[0]
    # Proactive posts answer nobody's message: they are new messages, not replies.
    assert channel_post.params["_reply_to"] is None and dm.params["_reply_to"] is None
    assert "replyToId" not in channel_post.params or channel_post.params["replyToId"] not in inbound_ids
    for call in (channel_post, dm):
        text = card_text(call)
        assert "Payments Gateway: degraded" in text and "Card payments are slow" in text and "Tom Hughes" in text
    # The same card, each marked as its own outbox row's (what finds it again after a lost answer).
    assert unmarked(card_of(dm)) == unmarked(card_of(channel_post)) and card_of(dm) != card_of(channel_post)
    assert dm.params["recipient"]["id"] == SANNE.account

    time.sleep(1)  # settle: nothing else, nothing twice
    assert len(sends(fake_teams, PAYMENTS_CONV)) == 1
    assert len(sends(fake_teams, SANNE.personal)) == 2  # her subscribe answer and the announcement
    assert len(sends(fake_teams)) == 4
    assert not fake_teams.called("create_conversation")
    # She prefers Teams: no direct message in Slack as well.
    assert not [c for c in fake_slack.called("chat.postMessage") if c.params.get("channel") == "U0SANNE03"]

    [status] = db_rows(database_url, ServiceStatus)
    assert (status.service_id, status.state, status.message, status.updated_by) == \
        ("payments", "degraded", "Card payments are slow", "tom")
    audit = db_rows(database_url, AuditRecord, AuditRecord.action == "service.set")
    assert [(a.person_id, a.platform) for a in audit] == [("tom", "teams")]
    teams_rows = {r.target: r for r in db_rows(database_url, OutboxMessage, OutboxMessage.platform == "teams",
                                            OutboxMessage.subject != "reply")}
    assert set(teams_rows) == {PAYMENTS_CONV, SANNE.aad}
    assert teams_rows[PAYMENTS_CONV].status == "sent"
    assert teams_rows[PAYMENTS_CONV].platform_message_id == channel_post.params["_id"]
    assert teams_rows[SANNE.aad].platform_message_id == dm.params["_id"]
    assert teams_rows[SANNE.aad].platform_channel == SANNE.personal


def test_subscriber_without_a_personal_chat_is_reached_through_a_new_one(start_server, fake_teams, database_url,
                                                                         channel_config, config_file):
    """Sanne only ever pressed a button (no 1:1 chat stored); the bot is installed in the team, so it opens one."""
    preferring_teams(config_file, SANNE)
    server = start_server()
    posted(server, installed_in_channel(fake_teams))
    assert posted(server, execute_invoke(fake_teams, SANNE, {"run": "subscribe payments"})).json()["statusCode"] == 200
    assert [r.conversation_id for r in db_rows(database_url, ConversationRef)] == [PAYMENTS_CONV]
    posted(server, execute_invoke(fake_teams, TOM, {"run": "service set payments partial-outage EU cards fail"}))

    [created] = fake_teams.wait_for("create_conversation")
    assert [m["id"] for m in created.params["members"]] == [SANNE.account]
    assert created.params["channelData"]["tenant"]["id"] == TENANT and created.params["isGroup"] is False
    dm = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"].startswith("a:personal-"))[0]
    assert "EU cards fail" in card_text(dm)
    fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == PAYMENTS_CONV)
    time.sleep(1)  # settle
    assert len(fake_teams.called("create_conversation")) == 1 and len(sends(fake_teams)) == 2
    [row] = db_rows(database_url, OutboxMessage, OutboxMessage.target == SANNE.aad)
    assert row.status == "sent" and row.platform_channel == dm.params["_conversation"]


@pytest.mark.parametrize("where", ["channel", "personal", "channel-card-submit"])
def test_refused_status_change_is_told_privately_and_changes_nothing(start_server, fake_teams, fake_slack,
                                                                    database_url, channel_config, where):
    server = start_server()
    posted(server, installed_in_channel(fake_teams))
    words = "service set payments major-outage everything is down"
    activity = {"channel": channel_mention, "personal": personal_message,
                "channel-card-submit": card_submit}[where](fake_teams, MEERA, words)
    posted(server, activity)

    if where != "personal":
        [created] = fake_teams.wait_for("create_conversation")
        params = created.params
        assert params["isGroup"] is False
        assert [m["id"] for m in params["members"]] == [MEERA.account]
        assert params["bot"]["id"] == BOT["id"]
        assert params["channelData"]["tenant"]["id"] == TENANT
        [refusal] = fake_teams.wait_for("send")
        assert refusal.params["_conversation"].startswith("a:personal-")  # the 1:1 chat just created
    else:
        assert not fake_teams.called("create_conversation")
        [refusal] = fake_teams.wait_for("send")
        assert refusal.params["_conversation"] == MEERA.personal
    text = card_text(refusal)
    assert "Not allowed" in text and "Tom Hughes" in text

    time.sleep(1)  # settle: nothing announced anywhere
    assert not [c for c in sends(fake_teams) if c.params["_conversation"].startswith(PAYMENTS_CONV)]
    assert len(sends(fake_teams)) == 1
    assert not fake_slack.called("chat.postMessage")
    assert db_rows(database_url, ServiceStatus) == []
    assert db_rows(database_url, StatusChange) == []
    assert [r.subject for r in db_rows(database_url, OutboxMessage)] == ["reply"]  # only the private answer
    assert db_rows(database_url, AuditRecord) == []


def test_action_execute_runs_the_command_and_answers_in_the_invoke_response(start_server, fake_teams,
                                                                             database_url):
    server = start_server()
    response = posted(server, execute_invoke(fake_teams, SANNE, {"run": "subscribe payments"}))
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["statusCode"] == 200
    assert body["type"] == "application/vnd.microsoft.activity.message"
    assert "now follow Payments Gateway" in body["value"]
    assert [(s.person_id, s.service_id) for s in db_rows(database_url, Subscription)] == [("sanne", "payments")]
    assert [(a.person_id, a.platform) for a in db_rows(database_url, AuditRecord)] == [("sanne", "teams")]

    # The sample's own data carries no command: a 400 in the body, nothing changed.
    bad = post(server, execute_invoke(fake_teams, SANNE, {"feedback": "test invokes"}))
    assert bad.status_code == 200
    assert bad.json()["statusCode"] == 400
    assert bad.json()["type"] == "application/vnd.microsoft.error"
    not_words = post(server, execute_invoke(fake_teams, SANNE, {"run": 42}))
    assert not_words.json()["statusCode"] == 400
    assert len(db_rows(database_url, AuditRecord)) == 1
    assert not fake_teams.calls  # every answer went back in the HTTP response


def test_action_submit_message_with_value_runs_the_command(start_server, fake_teams, database_url):
    server = start_server()
    activity = card_submit(fake_teams, SANNE, "subscribe payments")
    assert "text" not in activity and activity["type"] == "message"
    posted(server, activity)
    assert [(s.person_id, s.service_id) for s in db_rows(database_url, Subscription)] == [("sanne", "payments")]
    [reply] = fake_teams.wait_for("send")
    assert reply.params["_conversation"] == activity["conversation"]["id"]
    assert reply.params["_reply_to"] == activity["id"]
    assert "now follow Payments Gateway" in card_text(reply)


@pytest.mark.parametrize("timing", ["one-after-the-other", "at-once"])
def test_the_same_activity_delivered_twice_changes_state_once(start_server, fake_teams, fake_slack, database_url,
                                                             timing):
    server = start_server()
    activity = personal_message(fake_teams, TOM, "service set payments degraded retried by the channel")
    if timing == "one-after-the-other":
        responses = [post(server, activity), post(server, activity)]
    else:
        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(lambda a: post(server, a), [activity, activity]))
    assert all(r.status_code in (200, 201) for r in responses), [(r.status_code, r.text) for r in responses]

    fake_slack.wait_for("chat.postMessage")  # the announcement went out ...
    time.sleep(1)  # ... and, after a settle, nothing more did
    assert db_count(database_url, AuditRecord, AuditRecord.action == "service.set") == 1
    assert db_count(database_url, StatusChange) == 1
    # the Slack and the Teams announcement, once each, and one answer
    assert db_count(database_url, OutboxMessage, OutboxMessage.subject != "reply") == 2
    assert db_count(database_url, OutboxMessage, OutboxMessage.subject == "reply") == 1
    replies = sends(fake_teams, TOM.personal)
    assert len(replies) == 1 and replies[0].params["_reply_to"] == activity["id"]
    assert "Payments Gateway is now degraded" in card_text(replies[0])
    assert len(fake_slack.called("chat.postMessage")) == 1


def test_with_an_app_id_unauthenticated_activities_are_refused(start_server, fake_teams, database_url):
    # The emulator mode asked for as well changes nothing: with an app id every activity needs its token.
    server = start_server(MICROSOFT_APP_ID="9b1e4f0c-3d1a-4b6e-8f2a-5c7d9e0a1b2c",
                          MICROSOFT_APP_PASSWORD="not-a-real-secret", SVCBOT_TEAMS_EMULATOR="1")
    forged = personal_message(fake_teams, TOM, "service set payments major-outage forged")
    attempts = [(installed_in_channel(fake_teams), {}), (forged, {}),
                (forged, {"Authorization": "Bearer not-a-jwt"}), (forged, {"Authorization": "Bearer a.b.c"}),
                (forged, {"Authorization": "Basic dG9tOnNlY3JldA=="})]
    for activity, headers in attempts:
        response = post(server, activity, **headers)
        assert response.status_code == 401, (headers, response.status_code, response.text)
    time.sleep(0.5)
    assert db_rows(database_url, ConversationRef) == []
    assert db_rows(database_url, ServiceStatus) == []
    assert db_rows(database_url, OutboxMessage) == []
    assert db_rows(database_url, AuditRecord) == []
    assert not fake_teams.calls
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert f'svcbot_requests_refused_total{{platform="teams",reason="auth"}} {len(attempts)}.0' in metrics


def test_rate_limited_announcement_arrives_once_later(start_server, fake_teams, database_url, channel_config):
    server = start_server()
    posted(server, installed_in_channel(fake_teams))
    fake_teams.scripts = [429, 429]
    answer = posted(server, execute_invoke(fake_teams, TOM, {"run": "service set payments degraded slow lane"}))
    assert "Payments Gateway is now degraded" in answer.json()["value"]

    fake_teams.wait_for("send", 3, timeout=30)
    time.sleep(1)  # settle: no fourth attempt after the success
    calls = sends(fake_teams)
    assert len(calls) == 3
    assert all(c.params["_conversation"] == PAYMENTS_CONV for c in calls)
    assert all("slow lane" in card_text(c) for c in calls)
    gaps = [b.at - a.at for a, b in zip(calls, calls[1:])]
    assert all(gap >= 0.95 for gap in gaps), gaps  # Retry-After: 1 is honoured
    [row] = db_rows(database_url, OutboxMessage, OutboxMessage.platform == "teams")
    assert row.status == "sent" and row.attempts == 3
    assert row.platform_message_id == calls[-1].params["_id"]


def test_removed_bot_marks_the_reference_inactive_and_announcements_wait(start_server, fake_teams, fake_slack,
                                                                       database_url, channel_config):
    server = start_server()
    posted(server, installed_in_channel(fake_teams))

    # Someone else leaving the team is not the bot leaving it.
    someone_left = sample("msteams_docs/conversationUpdate_teamMemberRemoved.json", fake_teams,
                          conversation=PAYMENTS_CONV)
    someone_left["channelData"]["team"]["id"] = TEAM_ID
    posted(server, someone_left)
    assert [r.active for r in db_rows(database_url, ConversationRef)] == [True]

    removed = sample("msteams_docs/conversationUpdate_teamMemberRemoved.json", fake_teams, conversation=PAYMENTS_CONV)
    removed["channelData"]["team"]["id"] = TEAM_ID
    removed["membersRemoved"] = [{"id": BOT["id"]}]
    posted(server, removed)
    [ref] = db_rows(database_url, ConversationRef)
    assert ref.conversation_id == PAYMENTS_CONV and ref.active is False

    answer = posted(server, execute_invoke(fake_teams, TOM, {"run": "service set payments degraded nobody hears"}))
    assert answer.json()["statusCode"] == 200
    fake_slack.wait_for("chat.postMessage")  # the Slack side of the same announcement went out
    [row] = wait_until(lambda: db_rows(database_url, OutboxMessage, OutboxMessage.platform == "teams",
                                    OutboxMessage.attempts >= 1, OutboxMessage.status == "pending"),
                       what="the Teams announcement to be tried")
    assert row.target == PAYMENTS_CONV
    assert "not installed" in row.last_error
    time.sleep(0.5)
    assert not sends(fake_teams)
    [row] = db_rows(database_url, OutboxMessage, OutboxMessage.platform == "teams")
    assert row.status == "pending" and row.attempts == 1  # waits for a reinstall; no hot retry loop
    assert "unexpected error" not in server.log() and "Traceback" not in server.log()
