"""Slack over Socket Mode (a loopback WebSocket standing in for Slack's), and the slow path of a slash
command: acknowledged at once, answered through the response URL."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
import requests
from aiohttp import WSMsgType, web

from bot import slack as slack_front
from bot.runtime import Outcome
from handlers.core.context import Reply
from tests.conftest import free_port


class FakeSocketModeServer:
    """Answers apps.connections.open with a loopback WebSocket URL, then plays Slack's side of it."""

    def __init__(self):
        self.envelopes_to_send: list[dict] = []
        self.acks: list[dict] = []
        self.connections_open_tokens: list[str] = []
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        self._ready.wait(10)

    @property
    def api_url(self):
        return f"http://127.0.0.1:{self.port}/api/"

    def _serve(self):
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link", self._link)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _api(self, request):
        method = request.match_info["method"]
        if method == "apps.connections.open":
            self.connections_open_tokens.append(request.headers.get("Authorization", ""))
            return web.json_response({"ok": True, "url": f"ws://127.0.0.1:{self.port}/link"})
        if method == "auth.test":
            return web.json_response({"ok": True, "user_id": "U0SVCBOT", "bot_id": "B0SVCBOT", "team_id": "T0NORTH"})
        return web.json_response({"ok": True, "channel": "C0", "ts": "1.1"})

    async def _link(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0SVC"}})
        for envelope in self.envelopes_to_send:
            await ws.send_json(envelope)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                self.acks.append(json.loads(msg.data))
        return ws

    def stop(self):
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.mark.e2e
def test_socket_mode_answers_a_slash_command_over_the_websocket(start_server):
    fake = FakeSocketModeServer()
    fake.envelopes_to_send.append({
        "envelope_id": "env-1", "type": "slash_commands", "accepts_response_payload": True,
        "payload": {"token": "x", "team_id": "T0NORTH", "channel_id": "C0PAYMENTS", "user_id": "U0TOM0002",
                    "user_name": "tom", "command": "/svc", "text": "status", "api_app_id": "A0SVC",
                    "response_url": f"http://127.0.0.1:{fake.port}/hooks/x", "trigger_id": "1.2.3"}})
    try:
        server = start_server(SLACK_APP_TOKEN="xapp-1-test", SLACK_SIGNING_SECRET="", SLACK_API_URL=fake.api_url)
        end = time.monotonic() + 20
        while time.monotonic() < end and not fake.acks:
            time.sleep(0.05)
        assert fake.connections_open_tokens == ["Bearer xapp-1-test"]
        [ack] = fake.acks
        assert ack["envelope_id"] == "env-1"
        text = json.dumps(ack["payload"])
        assert "Payments Gateway" in text and "Web Shop" in text
        # Over Socket Mode the HTTP endpoint is not Slack's way in.
        assert requests.post(server.url + "/slack/events", data="x", timeout=5).status_code == 503
    finally:
        fake.stop()


class SlowRuntime:
    """Stands in for the runtime: the command takes ``delay`` seconds; queued answers are recorded."""

    def __init__(self, runtime, delay: float):
        self.ctx, self.metrics, self.delay = runtime.ctx, runtime.metrics, delay
        self.queued = []

    def answer_from_memory(self, *args, **kw):
        return None  # nothing kept in memory: every command takes its time

    async def execute(self, platform, user_id, text, **kw):
        await asyncio.sleep(self.delay)
        return Outcome(Reply(title=f"done: {text}"), "ok", "tom")

    async def queue_reply(self, *args, **kw):
        self.queued.append((args, kw))
        return True


COMMAND = {"user_id": "U0TOM0002", "text": "status", "trigger_id": "t1", "response_url": "https://hooks.example/1"}


async def test_slow_slash_command_is_acknowledged_then_answered_through_the_outbox(runtime, monkeypatch):
    monkeypatch.setattr(slack_front, "ANSWER_BUDGET_SECONDS", 0.05)
    slow = SlowRuntime(runtime, 0.3)
    front = slack_front.SlackFront(slow, "xoxb-test", "secret", "http://127.0.0.1:9/api/")
    acks = []

    async def ack(**kw):
        acks.append(kw)
        assert not slow.queued  # acknowledged before the answer exists

    await front.on_command(ack, COMMAND)
    assert [a["text"] for a in acks] == ["Working on it…"]
    [(args, kw)] = slow.queued
    assert args[:3] == ("slack", "response_url", "https://hooks.example/1")
    assert args[3].title == "done: status" and args[4] == "reply:slack:command:t1"


async def test_quick_slash_command_is_answered_in_the_acknowledgement(runtime):
    quick = SlowRuntime(runtime, 0)
    front = slack_front.SlackFront(quick, "xoxb-test", "secret", "http://127.0.0.1:9/api/")
    acks = []

    async def ack(**kw):
        acks.append(kw)

    await front.on_command(ack, COMMAND)
    assert len(acks) == 1 and acks[0]["blocks"][0]["text"]["text"] == "done: status"
    assert acks[0]["response_type"] == "ephemeral"
    assert not quick.queued
