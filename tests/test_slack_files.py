"""Pictures that go with a message (a report's charts): Slack gets them through its files upload API
(files.getUploadURLExternal, the upload URL, files.completeUploadExternal) once the message is there,
from the real SlackSender against the fake Slack Web API on loopback; Teams and text show them inline."""
from __future__ import annotations

import asyncio
import base64

from sqlalchemy import select

from bot import render
from bot.outbox import Deliverer
from bot.slack import SlackSender, web_client
from handlers.core.context import SYSTEM, Image, Reply, Work
from storage.models import OutboxMessage

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def chart_reply() -> Reply:
    return Reply(title="Payments Gateway — October 2026", text="97.5 % of targets met", private=False,
                 images=[Image("attainment.png", "Attainment, Payments Gateway", "Met 97.5 % in October", PNG),
                         Image("breaches.png", "Breaches by cause, Payments Gateway", "2 breaches: UC-CARDLINK", PNG)])


def queue(ctx, reply: Reply, key: str = "report:payments:2026-10") -> None:
    with ctx.sessions.begin() as s:
        Work(ctx, s, SYSTEM).post_to_channel("payments", reply, key, "report:payments")


def rows(ctx) -> list[OutboxMessage]:
    with ctx.sessions() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.platform == "slack").order_by(OutboxMessage.id)))


def deliverer(ctx, fake_slack) -> Deliverer:
    return Deliverer(ctx, {"slack": SlackSender(web_client("xoxb-test", fake_slack.url + "/api/"))})


def deliver(ctx, clock, fake_slack) -> int:
    """Sweep as the server does, a few seconds apart: the pictures wait for their message's answer."""
    sent = 0
    for _ in range(3):
        sent += asyncio.run(deliverer(ctx, fake_slack).sweep())
        clock.advance(seconds=2)
    return sent


def test_slack_gets_the_message_then_its_pictures_as_files(ctx, clock, fake_slack):
    queue(ctx, chart_reply())
    message, files = rows(ctx)
    assert (message.target_kind, files.target_kind, files.anchor_key) == ("channel", "files", message.dedupe_key)
    assert message.message["images"] == [] and len(files.message["images"]) == 2

    assert deliver(ctx, clock, fake_slack) == 2
    [post] = fake_slack.called("chat.postMessage")
    assert post.params["channel"] == "C0PAYMENTS"
    asked = fake_slack.called("files.getUploadURLExternal")
    assert [(c.params["filename"], c.params["alt_txt"]) for c in asked] == [
        ("attainment.png", "Met 97.5 % in October"), ("breaches.png", "2 breaches: UC-CARDLINK")]
    assert all(data == base64.b64decode(PNG) for data in fake_slack.uploads.values())
    [done] = fake_slack.called("files.completeUploadExternal")
    assert done.params["channel_id"] == "C0PAYMENTS"
    assert fake_slack.calls.index(post) < fake_slack.calls.index(asked[0])  # the message first
    assert [r.status for r in rows(ctx)] == ["sent", "sent"]


def test_a_failed_share_is_retried_and_shared_once(ctx, clock, fake_slack):
    queue(ctx, chart_reply())
    fake_slack.script("files.completeUploadExternal", 503)
    deliver(ctx, clock, fake_slack)
    assert [r.status for r in rows(ctx)] == ["sent", "pending"]
    assert "Slack answered 503" in rows(ctx)[1].last_error
    clock.advance(minutes=5)
    deliver(ctx, clock, fake_slack)
    assert [r.status for r in rows(ctx)] == ["sent", "sent"]
    assert len(fake_slack.called("files.completeUploadExternal")) == 2
    assert len([m for m in fake_slack.posted if m.get("files")]) == 1


def test_an_unanswered_share_is_looked_for_before_sharing_again(ctx, clock, fake_slack):
    queue(ctx, chart_reply())
    deliver_message = asyncio.run(deliverer(ctx, fake_slack).sweep())
    assert deliver_message == 1
    clock.advance(seconds=2)
    fake_slack.script("files.completeUploadExternal", "hang")  # shared, but the answer never comes
    asyncio.run(asyncio.wait_for(_sweep_until_hanging(deliverer(ctx, fake_slack), fake_slack), 30))
    with ctx.sessions() as s:  # as a crash would leave it: claimed
        assert s.scalar(select(OutboxMessage.status).where(OutboxMessage.target_kind == "files")) == "sending"
    clock.advance(minutes=5)  # the lease has run out
    asyncio.run(deliverer(ctx, fake_slack).sweep())
    files_row = rows(ctx)[1]
    assert files_row.status == "sent" and files_row.maybe_sent is False
    assert len(fake_slack.called("files.completeUploadExternal")) == 1  # found, not shared again
    assert len([m for m in fake_slack.posted if m.get("files")]) == 1


async def _sweep_until_hanging(sweep: Deliverer, fake_slack) -> None:
    task = asyncio.ensure_future(sweep.sweep())
    while not fake_slack.called("files.completeUploadExternal"):
        await asyncio.sleep(0.02)
    task.cancel()


def test_pictures_wait_for_their_message_and_fail_with_it(ctx, clock, fake_slack):
    queue(ctx, chart_reply())
    fake_slack.script("chat.postMessage", {"ok": False, "error": "channel_not_found"})
    deliver(ctx, clock, fake_slack)
    assert rows(ctx)[0].status == "failed"
    assert rows(ctx)[1].status == "failed" and "goes with was never delivered" in rows(ctx)[1].last_error
    assert fake_slack.called("files.getUploadURLExternal") == []


def test_teams_and_text_show_the_pictures_inline():
    reply = chart_reply()
    images = [b for b in render.teams_card(reply)["body"] if b["type"] == "Image"]
    assert [i["altText"] for i in images] == ["Met 97.5 % in October", "2 breaches: UC-CARDLINK"]
    assert images[0]["url"] == "data:image/png;base64," + PNG
    text = render.text(reply)
    assert "[chart: Attainment, Payments Gateway] Met 97.5 % in October" in text
    assert "image" not in str(render.slack_message(reply)["blocks"])  # Slack: files, not blocks


def test_a_message_without_pictures_has_no_files_row(ctx):
    queue(ctx, Reply(title="Plain", private=False))
    assert [r.target_kind for r in rows(ctx)] == ["channel"]
