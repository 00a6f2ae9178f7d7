"""Teams delivery is idempotent: a post whose answer was lost is looked up through Microsoft Graph before
it is sent again. The real TeamsSender and deliverer in this process, the fake connector and a fake Graph
(token endpoint and messages lists) on loopback, the real store."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import pytest
from botbuilder.schema import Activity

from bot.outbox import Delivered, Deliverer, Outgoing
from bot.teams import TeamsFront, TeamsSender, save_reference
from bot.teams_graph import Graph, GraphUnavailable, marker, messages_path
from storage.models import OutboxMessage
from tests.conftest import load_payload
from tests.fakes import FakeGraph
from tests.test_outbox import queue, row_by_key

CHANNEL = "19:0b7f32667e064dd9b25d7969801541f4@thread.tacv2"  # where the install sample adds the bot
GROUP = "f3ec8cd2-e704-4344-8c47-9a3a21d683c0"                 # that team's aadGroupId
TENANT = "b28fdbfd-2b78-4f93-b0f8-8881793f0f8f"
CHANNEL_MESSAGES = f"/teams/{GROUP}/channels/{CHANNEL}/messages"


@pytest.fixture
def graph(fake_teams):
    server = FakeGraph(fake_teams, {CHANNEL_MESSAGES: CHANNEL}).start()
    yield server
    server.stop()


@pytest.fixture
def installed(runtime, fake_teams, monkeypatch):
    """svcbot installed in a team's channel, as Teams' own install activity tells it."""
    monkeypatch.setenv("MICROSOFT_APP_ID", "")  # emulator mode: no connector token, a loopback connector
    monkeypatch.setenv("SVCBOT_TEAMS_EMULATOR", "1")
    activity = load_payload("teams", "msteams_docs", "conversationUpdate_teamMemberAdded_bot_added_to_team.json")
    activity["serviceUrl"] = fake_teams.url + "/"
    save_reference(runtime, Activity().deserialize(activity))
    return TeamsFront(runtime)


def sender_for(front, graph: FakeGraph | None) -> TeamsSender:
    return TeamsSender(front, Graph("bot-app-id", "graph-secret", graph_url=graph.url + "/v1.0",
                                    login_url=graph.url) if graph else None)


class DiesAfterPosting(TeamsSender):
    """Teams accepts the post, then the process dies before the outbox marks the row."""

    def __init__(self, front):
        super().__init__(front, None)
        self.posted = asyncio.Event()

    async def send(self, item: Outgoing) -> Delivered:
        await super().send(item)
        self.posted.set()
        await asyncio.Event().wait()  # never answers: cancelled like a crash


async def crash_after_posting(ctx, front) -> None:
    dying = DiesAfterPosting(front)
    task = asyncio.ensure_future(Deliverer(ctx, {"teams": dying}).sweep())
    await asyncio.wait_for(dying.posted.wait(), 30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def posts(fake_teams) -> list[dict]:
    return [c.params for c in fake_teams.called("send") if c.params["_conversation"] == CHANNEL]


async def test_every_card_carries_its_rows_marker_and_nothing_else_changes(runtime, ctx, clock, installed,
                                                                        fake_teams):
    queue(runtime, "announce:payments:1", platform="teams", target=CHANNEL, title="Payments degraded")
    assert await Deliverer(ctx, {"teams": sender_for(installed, None)}).sweep() == 1
    [post] = posts(fake_teams)
    card = post["attachments"][0]["content"]
    assert marker("announce:payments:1") in json.dumps(card)
    assert "announce:payments:1" not in json.dumps(post)  # a hash of the key, not the key
    assert card["body"][0]["id"] == marker("announce:payments:1")
    assert "Payments degraded" in json.dumps(card["body"])
    assert marker("announce:payments:1") != marker("announce:payments:2")


async def test_a_post_made_before_a_crash_is_found_through_graph_and_not_posted_again(
        runtime, ctx, clock, installed, fake_teams, graph):
    queue(runtime, "k1", platform="teams", target=CHANNEL)
    await crash_after_posting(ctx, installed)
    [first] = posts(fake_teams)
    row = row_by_key(ctx, "k1")
    assert row.status == "sending" and row.platform_message_id is None

    clock.advance(seconds=ctx.config.delivery.lease_seconds + 1)
    assert await Deliverer(ctx, {"teams": sender_for(installed, graph)}).sweep() == 1
    assert len(posts(fake_teams)) == 1  # found, not posted again
    row = row_by_key(ctx, "k1")
    assert row.status == "sent" and not row.maybe_sent and row.attempts == 2
    assert (row.platform_channel, row.platform_message_id) == (CHANNEL, first["_id"])
    [token] = graph.called("token")
    assert (token.params["tenant"], token.params["client_id"]) == (TENANT, "bot-app-id")
    assert token.params["scope"] == "https://graph.microsoft.com/.default"
    [lookup] = graph.called("messages")
    assert lookup.path == CHANNEL_MESSAGES and lookup.headers["Authorization"] == "Bearer graph-token-1"


async def test_a_crash_before_teams_took_the_post_sends_it_once(runtime, ctx, clock, installed, fake_teams, graph):
    queue(runtime, "k0", platform="teams", target=CHANNEL, title="another, sent earlier")
    await Deliverer(ctx, {"teams": sender_for(installed, graph)}).sweep()
    queue(runtime, "k1", platform="teams", target=CHANNEL)
    with ctx.sessions.begin() as s:  # as a crash before the connector took the post leaves it
        s.get(OutboxMessage, row_by_key(ctx, "k1").id).maybe_sent = True
    assert await Deliverer(ctx, {"teams": sender_for(installed, graph)}).sweep() == 1
    assert len(graph.called("messages")) == 1 and len(posts(fake_teams)) == 2  # k0's card is not k1's
    row = row_by_key(ctx, "k1")
    assert row.status == "sent" and row.platform_message_id == posts(fake_teams)[-1]["_id"]


@pytest.mark.parametrize("status", [403, 503])
async def test_when_graph_cannot_answer_the_row_is_not_posted_blind(runtime, ctx, clock, installed, fake_teams,
                                                                    graph, status):
    queue(runtime, "k1", platform="teams", target=CHANNEL)
    await crash_after_posting(ctx, installed)
    clock.advance(seconds=ctx.config.delivery.lease_seconds + 1)
    graph.refuse.append(status)
    sender = sender_for(installed, graph)
    assert await Deliverer(ctx, {"teams": sender}).sweep() == 0
    assert len(posts(fake_teams)) == 1
    row = row_by_key(ctx, "k1")
    if status == 403:  # no permission to look: a failure an operator must see, never a second post
        assert row.status == "failed" and "Microsoft Graph answered 403" in row.last_error
        assert "ChannelMessage.Read.Group" in row.last_error
    else:  # a passing fault: look again later
        assert row.status == "pending" and row.maybe_sent and "503" in row.last_error
        clock.to(row.next_attempt_at)
        assert await Deliverer(ctx, {"teams": sender}).sweep() == 1
        assert len(posts(fake_teams)) == 1
        assert row_by_key(ctx, "k1").platform_message_id == posts(fake_teams)[0]["_id"]
        assert graph.tokens_issued == 1  # the token is kept until near its expiry


async def test_without_graph_credentials_it_posts_again_and_says_so(runtime, ctx, clock, installed, fake_teams,
                                                                    caplog):
    queue(runtime, "k1", platform="teams", target=CHANNEL)
    await crash_after_posting(ctx, installed)
    clock.advance(seconds=ctx.config.delivery.lease_seconds + 1)
    with caplog.at_level(logging.WARNING, logger="svcbot.teams"):
        assert await Deliverer(ctx, {"teams": sender_for(installed, None)}).sweep() == 1
    assert len(posts(fake_teams)) == 2
    assert any("cannot be checked" in r.getMessage() and "not configured" in r.getMessage() for r in caplog.records)


def test_where_graph_lists_the_messages_of_each_kind_of_conversation():
    thread = f"{CHANNEL};messageid=1759944781431"
    assert messages_path("channel", CHANNEL, GROUP, None, "app", None) == (
        f"/teams/{GROUP}/channels/19%3A0b7f32667e064dd9b25d7969801541f4%40thread.tacv2/messages")
    assert messages_path("channel", thread, GROUP, None, "app", None).endswith("/messages/1759944781431/replies")
    assert messages_path("channel", CHANNEL, GROUP, None, "app", "1759944781499").endswith(
        "/messages/1759944781499/replies")
    assert messages_path("groupChat", "19:abc@thread.v2", None, None, "app", None) == (
        "/chats/19%3Aabc%40thread.v2/messages")
    assert messages_path("personal", "a:1xyz", None, "aad-1", "app-2", None) == (
        "/chats/19%3Aaad-1_app-2%40unq.gbl.spaces/messages")
    for args in [("channel", CHANNEL, None, None, "app", None), ("personal", "a:1xyz", None, None, "app", None),
                 ("personal", "a:1xyz", None, "aad-1", "", None)]:
        with pytest.raises(GraphUnavailable):
            messages_path(*args)
