"""Loopback stand-ins for Slack's Web API and a Teams (Bot Framework) connector.

Each runs an aiohttp server on 127.0.0.1 in a thread of its own and records every call it gets, so
tests can start the real svcbot server as a subprocess and see exactly what it sent.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from aiohttp import web


@dataclass
class Call:
    method: str
    params: dict
    headers: dict
    at: float = field(default_factory=time.monotonic)
    path: str = ""  # the request's path (which response URL a hook call used)


class LoopbackServer:
    def __init__(self):
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def start(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def _serve(self):
        asyncio.set_event_loop(self._loop)
        self._released = asyncio.Event()
        app = web.Application()
        self.routes(app)
        runner = self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def stop(self):
        # Clean up first so that handlers still waiting (a scripted "hang") are cancelled, not leaked.
        self._loop.call_soon_threadsafe(self._released.set)
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self, method: str, params: dict, headers, path: str = "") -> Call:
        call = Call(method, params, dict(headers), path=path)
        with self._lock:
            self.calls.append(call)
        return call

    def called(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 15.0, where=None) -> list[Call]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = [c for c in self.called(method) if where is None or where(c)]
            if len(calls) >= count:
                return calls
            time.sleep(0.02)
        raise AssertionError(f"expected {count} {method} call(s), got {len(self.called(method))}: "
                             f"{[c.params for c in self.called(method)]}")


class FakeSlack(LoopbackServer):
    """Slack's Web API at /api/<method>, and response URLs at /hooks/<anything>.

    ``script(method, *answers)`` queues answers for the next calls of a method: an int status
    (429 comes with ``Retry-After: 1``), a dict body, or ``"hang"`` to record the call and never answer.
    ``rate_limit(method)`` makes it behave like Slack's own limit; ``delays[method]`` makes every answer of
    a method come back that many seconds after the call took effect.
    """

    def __init__(self):
        super().__init__()
        self.scripts: dict[str, list] = {}
        self.delays: dict[str, float] = {}
        self.limits: dict[str, list] = {}  # method → [Retry-After seconds, when the window ends or None]
        self.refused: list[Call] = []  # the calls answered 429 by a rate limit
        self.clock = time.monotonic  # what rate-limit windows are measured by; a test may give its own
        self.posted: list[dict] = []  # messages that "exist" in channels, for conversations.history
        self.uploads: dict[str, bytes] = {}  # file id → the bytes uploaded to its upload URL
        self._ts = itertools.count(1)

    def script(self, method: str, *answers) -> None:
        self.scripts.setdefault(method, []).extend(answers)

    def rate_limit(self, method: str, retry_after: int = 1) -> None:
        """The next call of ``method`` is answered 429 with ``Retry-After``, and so is every call of it
        until that time has passed (by ``self.clock``), as Slack does."""
        self.limits[method] = [retry_after, None]

    def _limited(self, method: str) -> int | None:
        limit = self.limits.get(method)
        if limit is None:
            return None
        if limit[1] is None:
            limit[1] = self.clock() + limit[0]
        elif self.clock() >= limit[1]:
            del self.limits[method]
            return None
        return limit[0]

    def routes(self, app):
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/hooks/{rest:.*}", self._hook)
        app.router.add_post("/upload/{file_id}", self._upload)

    async def _upload(self, request):
        """The upload URL files.getUploadURLExternal hands out: keeps the bytes by file id."""
        self.uploads[request.match_info["file_id"]] = await request.read()
        self.record("upload", {"file_id": request.match_info["file_id"]}, request.headers, path=request.path)
        return web.Response(text="OK - " + str(len(self.uploads[request.match_info["file_id"]])))

    async def _params(self, request) -> dict:
        query = dict(request.query)  # some methods (files.completeUploadExternal) send theirs here
        if request.method == "GET":
            return query
        if request.content_type == "application/json":
            return {**query, **await request.json()}
        return {**query, **{k: v[0] for k, v in parse_qs(await request.text()).items()}}

    async def _hook(self, request):
        self.record("response_url", await request.json(), request.headers, path=request.path)
        return web.Response(text="ok")

    async def _api(self, request):
        method = request.match_info["method"]
        params = await self._params(request)
        call = self.record(method, params, request.headers)
        retry_after = self._limited(method)
        if retry_after is not None:
            with self._lock:
                self.refused.append(call)
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(retry_after)})
        script = self.scripts.get(method)
        if script:
            answer = script.pop(0)
            if answer == "hang":  # the call takes effect, but its answer never comes
                self._answer(method, params)
                await self._released.wait()
            if isinstance(answer, int):
                headers = {"Retry-After": "1"} if answer == 429 else {}
                return web.json_response({"ok": False, "error": "ratelimited" if answer == 429 else "fatal_error"},
                                         status=answer, headers=headers)
            if isinstance(answer, dict):
                return web.json_response(answer)
        answer = self._answer(method, params)
        if self.delays.get(method):  # the call takes effect at once; its answer is slow to come back
            await asyncio.sleep(self.delays[method])
        return web.json_response(answer)

    def _store(self, method, params) -> dict:
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        channel = params.get("channel", "")
        if channel.startswith("U"):
            channel = "D" + channel[1:]
        message = {"type": "message", "ts": ts, "channel": channel, "text": params.get("text"),
                   "thread_ts": params.get("thread_ts")}
        if params.get("metadata"):
            meta = params["metadata"]
            message["metadata"] = json.loads(meta) if isinstance(meta, str) else meta
        self.posted.append(message)
        return message

    def _answer(self, method: str, params: dict) -> dict:
        if method == "auth.test":
            return {"ok": True, "user_id": "U0SVCBOT", "bot_id": "B0SVCBOT", "team_id": "T0NORTH", "team": "Northwind"}
        if method == "chat.postMessage":
            message = self._store(method, params)
            return {"ok": True, "channel": message["channel"], "ts": message["ts"], "message": message}
        if method == "chat.update":
            found = next((m for m in self.posted if m["channel"] == params.get("channel")
                          and m["ts"] == params.get("ts")), None)
            if found is None:
                return {"ok": False, "error": "message_not_found"}
            found["text"] = params.get("text")
            return {"ok": True, "channel": found["channel"], "ts": found["ts"], "text": found["text"]}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts):07d}"
            return {"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"}
        if method == "files.completeUploadExternal":
            files = params.get("files")
            files = json.loads(files) if isinstance(files, str) else files
            missing = [f["id"] for f in files if f["id"] not in self.uploads]
            if missing:
                return {"ok": False, "error": "file_not_found"}
            message = self._store(method, {"channel": params.get("channel_id"), "text": params.get("initial_comment")})
            message["files"] = [{"id": f["id"], "title": f.get("title")} for f in files]
            return {"ok": True, "files": message["files"]}
        if method in ("views.open", "views.publish"):
            return {"ok": True, "view": {"id": f"V{next(self._ts):06d}"}}
        if method == "chat.getPermalink":
            ts = str(params.get("message_ts", "")).replace(".", "")
            return {"ok": True, "channel": params.get("channel"),
                    "permalink": f"https://northwind.slack.com/archives/{params.get('channel')}/p{ts}"}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + params.get("users", "")[1:]}}
        if method in ("conversations.history", "conversations.replies"):
            found = [m for m in self.posted if m["channel"] == params.get("channel")]
            return {"ok": True, "messages": list(reversed(found)), "has_more": False}
        return {"ok": True}


class FakeTeamsConnector(LoopbackServer):
    """The Bot Framework connector API a Teams bot posts to (its activities' serviceUrl)."""

    def __init__(self):
        super().__init__()
        self.scripts: list = []
        self._ids = itertools.count(1)

    def routes(self, app):
        app.router.add_post("/v3/conversations", self._create)
        app.router.add_post("/v3/conversations/{conversation}/activities", self._send)
        app.router.add_post("/v3/conversations/{conversation}/activities/{reply_to}", self._send)
        app.router.add_put("/v3/conversations/{conversation}/activities/{activity}", self._update)

    async def _create(self, request):
        body = await request.json()
        self.record("create_conversation", body, request.headers)
        return web.json_response({"id": f"a:personal-{next(self._ids)}", "serviceUrl": self.url}, status=201)

    async def _send(self, request):
        body = await request.json()
        body["_conversation"] = request.match_info["conversation"]
        body["_reply_to"] = request.match_info.get("reply_to")
        self.record("send", body, request.headers)
        if self.scripts:
            answer = self.scripts.pop(0)
            headers = {"Retry-After": "1"} if answer == 429 else {}
            return web.json_response({"error": {"code": "Throttled", "message": "slow down"}},
                                     status=answer, headers=headers)
        body["_id"] = f"activity-{next(self._ids)}"  # what the connector answered, for tests to match
        return web.json_response({"id": body["_id"]}, status=201)

    async def _update(self, request):
        body = await request.json()
        body["_conversation"] = request.match_info["conversation"]
        body["_activity"] = request.match_info["activity"]
        self.record("update", body, request.headers)
        return web.json_response({"id": request.match_info["activity"]})


class FakeGraph(LoopbackServer):
    """Microsoft Graph's messages lists and the token endpoint, on loopback. What a conversation's list
    holds is what ``connector`` (a FakeTeamsConnector) received there, as Graph shows it: the card's JSON
    as a string in ``attachments[].content``, the connector's activity id as the message id.
    ``conversations`` maps a Graph messages path to the connector's conversation id; ``refuse`` holds
    statuses the next message lists answer with, in order."""

    def __init__(self, connector: FakeTeamsConnector, conversations: dict[str, str]):
        super().__init__()
        self.connector = connector
        self.conversations = conversations
        self.refuse: list[int] = []
        self.tokens_issued = 0

    def routes(self, app):
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/v1.0/{path:.*}", self._messages)

    async def _token(self, request):
        form = dict(await request.post())
        self.record("token", {**form, "tenant": request.match_info["tenant"]}, request.headers)
        if form.get("grant_type") != "client_credentials" or form.get("client_secret") != "graph-secret":
            return web.json_response({"error": "invalid_client"}, status=401)
        self.tokens_issued += 1
        return web.json_response({"access_token": f"graph-token-{self.tokens_issued}", "expires_in": 3599,
                                  "token_type": "Bearer"})

    async def _messages(self, request):
        path = "/" + request.match_info["path"]
        self.record("messages", {"path": path, "query": dict(request.query)}, request.headers, path=path)
        if not request.headers.get("Authorization", "").startswith("Bearer graph-token-"):
            return web.json_response({"error": {"code": "InvalidAuthenticationToken"}}, status=401)
        if self.refuse:
            status = self.refuse.pop(0)
            return web.json_response({"error": {"code": "Forbidden", "message": f"refused ({status})"}},
                                     status=status)
        conversation = self.conversations.get(path)
        if conversation is None:
            return web.json_response({"error": {"code": "NotFound", "message": "no such conversation"}},
                                     status=404)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        sent = [c.params for c in self.connector.called("send")
                if c.params["_conversation"] == conversation and "_id" in c.params]
        messages = [{"id": body["_id"], "createdDateTime": now, "messageType": "message",
                     "attachments": [{"id": str(i), "contentType": a.get("contentType"),
                                      "content": json.dumps(a.get("content"))}
                                     for i, a in enumerate(body.get("attachments") or [])]}
                    for body in reversed(sent)]
        return web.json_response({"value": messages})
