"""Slack: slash commands, buttons, mentions and direct messages in; Web API calls out.

Bolt checks every request's signature and refuses timestamps older than five minutes. Slash commands
answer inside the HTTP response when the work is quick, else acknowledge at once and answer later
through the response URL; buttons acknowledge at once and answer the same way. Every answer that
does not travel in the HTTP response goes through the outbox, keyed by the delivery, so a retried
event is answered once and changes nothing twice.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import render
from bot.outbox import Delivered, DeliveryError, Outgoing
from bot.runtime import Runtime, answered_privately
from bot.slack_home import SlackHome
from handlers.changes.messages import announced_change
from handlers.core.context import Reply

if TYPE_CHECKING:
    from slack_bolt.app.async_app import AsyncApp

log = logging.getLogger("svcbot.slack")

DEFAULT_API_URL = "https://slack.com/api/"
# Answer inside the slash command's own response when the work takes less than this; Slack allows 3 s.
ANSWER_BUDGET_SECONDS = 2.0
MENTION = re.compile(r"^\s*<@[A-Z0-9]+(\|[^>]*)?>\s*")
# Slack error codes worth another try; every other error from the API is permanent.
RETRYABLE = {"ratelimited", "service_unavailable", "internal_error", "fatal_error", "request_timeout"}


def web_client(token: str, api_url: str | None) -> AsyncWebClient:
    base = (api_url or DEFAULT_API_URL).rstrip("/") + "/"
    # No built-in retries: the outbox decides when to try again, and a blind retry after a
    # timeout could post twice.
    return AsyncWebClient(token=token, base_url=base, retry_handlers=[], timeout=10)


def slack_payload(reply: Reply) -> dict:
    return render.slack_message(reply)


class SlackFront:
    def __init__(self, runtime: Runtime, token: str, signing_secret: str | None, api_url: str | None = None):
        self.runtime = runtime
        self.client = web_client(token, api_url)
        self.signing_secret = signing_secret
        self._app: AsyncApp | None = None
        self.home = SlackHome(self)
        self._last_remembered: tuple[Reply, dict] | None = None  # see _remembered_response

    @property
    def app(self) -> AsyncApp:
        """Bolt's app, built for the first request (or the Socket Mode connection): slack_bolt is a large
        import, and the outbox posts to Slack with the client alone."""
        if self._app is None:
            from slack_bolt.app.async_app import AsyncApp
            app = AsyncApp(client=self.client, signing_secret=self.signing_secret or "socket-mode",
                           request_verification_enabled=self.signing_secret is not None,
                           process_before_response=False)
            app.command(self.runtime.ctx.config.bot.slash_command)(self.on_command)
            app.action(re.compile(r"^svc_run:"))(self.on_button)
            app.event("app_mention")(self.on_mention)
            app.event("message")(self.on_message)
            app.event("reaction_added")(self.on_reaction)
            app.event("reaction_removed")(self.on_reaction)
            app.view("svc_form")(self.on_form)
            self.home.register(app)
            app.error(self.on_error)
            self._app = app
        return self._app

    async def handle(self, request: web.Request) -> web.Response:
        from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
        bolt_request = await to_bolt_request(request)
        response = await self.app.async_dispatch(bolt_request)
        if response.status == 401:
            self.runtime.metrics.requests_refused.labels(platform="slack", reason="signature").inc()
            log.warning("refused a Slack request with a bad signature or a stale timestamp")
        elif response.status == 404:
            # Signed, but nothing here listens for it (an event or action svcbot does not use). A 404
            # would make Slack retry the delivery; accept it and do nothing.
            return web.Response(status=200)
        return await to_aiohttp_response(response)

    async def on_command(self, ack, command):
        key = f"slack:command:{command['trigger_id']}" if command.get("trigger_id") else None
        found = self.runtime.answer_from_memory("slack", command["user_id"], command.get("text", ""), key=key)
        if found is not None:  # `status`, kept in memory: answered at once, with no task or thread to wait for
            await ack(**self._remembered_response(found.reply))
            return
        task = asyncio.ensure_future(self.runtime.execute(
            "slack", command["user_id"], command.get("text", ""), name=command.get("user_name", ""), key=key))
        done, _ = await asyncio.wait({task}, timeout=ANSWER_BUDGET_SECONDS)
        if done:
            reply = task.result().reply
            if reply.form and await self._open_form(command.get("trigger_id"), reply):
                await ack()
            else:
                await ack(**_response(reply))
            return
        await ack(text="Working on it…", response_type="ephemeral")
        result = await task
        await self.runtime.queue_reply("slack", "response_url", command["response_url"], result.reply,
                                       f"reply:{result.delivery_key or key or command['response_url']}")

    def _remembered_response(self, reply: Reply) -> dict:
        """The response to a reply kept in memory: rendered once for as long as the same reply is kept."""
        if self._last_remembered is None or self._last_remembered[0] is not reply:
            self._last_remembered = (reply, _response(reply))
        return self._last_remembered[1]

    async def on_button(self, ack, body, action):
        await ack()
        result, key = await self.press(body, action)
        if result is not None and body.get("response_url"):
            await self.runtime.queue_reply("slack", "response_url", body["response_url"], result.reply,
                                           f"reply:{result.delivery_key or key}")

    async def press(self, body, action):
        """Run a button's command words as the person who pressed it. Returns its result and delivery key;
        no result when there is nothing more to answer (a form opened, or a press already handled)."""
        user = body["user"]["id"]
        # The clicker goes into the key only as a keyed hash: the key is stored, and a click may be an
        # anonymous answer.
        key = f"slack:action:{action.get('action_ts')}:{self.runtime.ctx.pseudonym('slack', user)[:16]}"
        result = await self.runtime.execute("slack", user, action.get("value", ""),
                                            name=body["user"].get("username", ""), key=key, via="button")
        if result.reply.form and await self._open_form(body.get("trigger_id"), result.reply):
            return None, key
        return (None if result.outcome == "duplicate" else result), key

    async def _open_form(self, trigger_id: str | None, reply: Reply) -> bool:
        """Open a form as a modal; False (answer with the reply itself) if Slack would not open it."""
        if not trigger_id:
            return False
        try:
            await self.client.views_open(trigger_id=trigger_id, view=render.slack_modal(reply.form))
        except SlackApiError as exc:  # an expired trigger (over 3 s), most often
            log.warning("could not open the %s form: %s", reply.form.name, exc.response.get("error"))
            return False
        return True

    async def on_form(self, ack, body, view):
        """A modal's answers. Bad fields go back into the open form; a good answer closes it."""
        user = body["user"]["id"]
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            meta = {}
        result = await self.runtime.submit(
            "slack", user, str(meta.get("form", "")), render.form_values(view), meta.get("context") or {},
            name=body["user"].get("username", ""), key=f"slack:view:{view.get('id')}:{view.get('hash')}")
        if result.invalid is not None and result.invalid.errors:
            fields = {i["block_id"] for i in view.get("blocks", []) if i.get("type") == "input"}
            errors = {k: v for k, v in result.invalid.errors.items() if k in fields}
            if errors:
                await ack(response_action="errors", errors=errors)
                return
        if answered_privately(result, "", meta.get("form")):  # shown in the modal, not by direct message
            await ack(response_action="update", view=render.slack_notice(result.reply))
            return
        await ack()
        if result.outcome != "duplicate":
            await self.runtime.queue_reply("slack", "person", user, result.reply, f"reply:slack:view:{view.get('id')}")

    async def on_reaction(self, body, event):
        """An approver's reaction on a change announcement counts as their approval or rejection; taking
        the reaction off takes the approval back."""
        policy = self.runtime.ctx.config.changes
        decision = {policy.approve_reaction: "approve", policy.reject_reaction: "reject"}.get(event.get("reaction"))
        item = event.get("item") or {}
        if decision is None or item.get("type") != "message":
            return
        change = await asyncio.to_thread(announced_change, self.runtime.ctx, "slack", item.get("channel"), item.get("ts"))
        if change is None:
            return
        removed = event.get("type") == "reaction_removed"
        event_id = body.get("event_id") or \
            f"{item['channel']}:{item['ts']}:{event['user']}:{event['reaction']}:{event.get('event_ts')}"
        text = f"change retract CHG-{change} {decision}" if removed else f"change {decision} CHG-{change}"
        result = await self.runtime.execute("slack", event["user"], text, key=f"slack:event:{event_id}",
                                            via="reaction")
        if result.outcome not in ("ok", "duplicate"):
            # The reaction stays on the message but counts for nothing: say why, privately.
            await self.runtime.queue_reply("slack", "person", event["user"], result.reply, f"reply:slack:{event_id}")

    async def on_mention(self, body, event):
        await self._event_command(body, event, MENTION.sub("", event.get("text", "")),
                                  thread=event.get("thread_ts") or event["ts"])

    async def on_message(self, body, event):
        # Only direct messages to the bot are commands; edits, joins and bot posts are not. Channel
        # messages are only looked at for references to summarise (bot/slack_home.py).
        if event.get("subtype") or event.get("bot_id"):
            return
        if event.get("channel_type") in ("channel", "group"):
            await self.home.on_channel_message(body, event)
            return
        if event.get("channel_type") != "im":
            return
        await self._event_command(body, event, event.get("text", ""), thread=event.get("thread_ts"))

    async def _event_command(self, body, event, text: str, thread: str | None):
        event_id = body.get("event_id") or f"{event['channel']}:{event['ts']}"
        result = await self.runtime.execute("slack", event["user"], text, key=f"slack:event:{event_id}")
        if result.outcome == "duplicate" or answered_privately(result, text):
            return
        if result.outcome == "refused":  # refusals are private: by direct message, not in the channel
            await self.runtime.queue_reply("slack", "person", event["user"], result.reply, f"reply:slack:{event_id}")
        else:
            await self.runtime.queue_reply("slack", "channel", event["channel"], result.reply,
                                           f"reply:slack:{event_id}", thread_id=thread)

    async def on_error(self, error, body):
        log.error("Slack listener failed: %r", error, exc_info=error)


def _response(reply: Reply) -> dict:
    payload = slack_payload(reply)
    payload["response_type"] = "ephemeral" if reply.private else "in_channel"
    return payload


class SlackSender:
    """Posts outbox rows with chat.postMessage, tagged with message metadata that identifies the row, so
    that an attempt whose answer was lost can be found in the conversation instead of posted again."""

    platform = "slack"
    EVENT_TYPE = "svcbot_outbox"

    def __init__(self, client: AsyncWebClient):
        self.client = client

    @staticmethod
    def rate_scopes(item: Outgoing) -> tuple[str, ...]:
        """The Web API methods an attempt at this row calls: Slack limits each method per workspace, so a
        429 on one pauses every row that needs it. A response URL's limit is its own (no shared pause)."""
        if item.target_kind == "response_url":
            return ()
        if item.target_kind == "edit":
            return ("chat.update",)
        if item.target_kind == "home":
            return ("views.publish",)
        if item.target_kind == "files":
            sends = ("files.getUploadURLExternal", "files.completeUploadExternal")
            return sends + ("conversations.history",) if item.maybe_sent else sends
        if not item.maybe_sent:
            return ("chat.postMessage",)
        looks = ("conversations.replies",) if item.thread_id else ("conversations.history",)
        opens = ("conversations.open",) if item.target_kind == "person" else ()
        return ("chat.postMessage",) + looks + opens

    async def send(self, item: Outgoing) -> Delivered:
        reply = Reply.from_dict(item.message)
        if item.target_kind == "response_url":
            # A reply made to stand in place of the message (home's Refresh) replaces the one pressed.
            return await self._respond(item.target, {**_response(reply), "replace_original": reply.in_place})
        if item.target_kind == "files":
            return await self._upload(item, reply)
        if item.target_kind == "home":  # a person's App Home tab; publishing it again replaces it
            response = await self._call(self.client.views_publish(user_id=item.target, view=render.slack_home(reply)))
            return Delivered(item.target, (response.get("view") or {}).get("id", ""))
        payload = slack_payload(reply)
        if item.target_kind == "edit":
            response = await self._call(self.client.chat_update(
                channel=item.target, ts=item.message_id, text=payload["text"], blocks=payload["blocks"]))
            return Delivered(response["channel"], response["ts"])
        kwargs = {"thread_ts": item.thread_id} if item.thread_id else {}
        response = await self._call(self.client.chat_postMessage(
            channel=item.target, text=payload["text"], blocks=payload["blocks"], unfurl_links=False,
            metadata={"event_type": self.EVENT_TYPE, "event_payload": {"outbox_key": item.key}}, **kwargs))
        return Delivered(response["channel"], response["ts"])

    async def _upload(self, item: Outgoing, reply: Reply) -> Delivered:
        """A message's pictures (a report's charts) as files shared in its channel (files upload API)."""
        uploads = [{"file": base64.b64decode(i.png), "filename": i.name, "title": i.title, "alt_txt": i.alt}
                   for i in reply.images]
        try:
            response = await self._call(self.client.files_upload_v2(
                file_uploads=uploads, channel=item.target, request_file_info=False))
        except SlackRequestError as exc:  # the upload URL answered badly: nothing was shared yet
            raise DeliveryError(f"file upload failed: {exc}") from None
        files = response.get("files") or [{}]
        return Delivered(item.target, files[0].get("id", ""))

    async def _respond(self, url: str, payload: dict) -> Delivered:
        """Answer through a response URL (a slash command's or a button's), as Slack's own respond() does."""
        try:
            response = await AsyncWebhookClient(url, timeout=10).send_dict(payload)
        except aiohttp.ClientConnectorError as exc:
            raise DeliveryError(f"cannot reach Slack: {exc}") from None
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            raise DeliveryError(f"no answer from Slack: {exc!r}", ambiguous=True) from None
        if response.status_code == 200:
            return Delivered("response_url", "")
        if response.status_code == 429:
            retry_after = float(response.headers.get("Retry-After", 1))
            raise DeliveryError(f"rate limited; Retry-After {retry_after:g}s", retry_after=retry_after)
        if response.status_code >= 500:
            raise DeliveryError(f"Slack answered {response.status_code}")
        # 404 and 410: the response URL expired (they last 30 minutes) or was used up.
        raise DeliveryError(f"Slack refused the response: {response.status_code} {response.body}", permanent=True)

    async def find_sent(self, item: Outgoing) -> Delivered | None:
        if item.target_kind in ("response_url", "edit", "home"):
            # Answers through a response URL leave nothing to look up (they are ephemeral); an edit
            # or a home published twice leaves the same message.
            return None
        if item.target_kind == "files":
            return await self._find_files(item)
        channel = item.target
        if item.target_kind == "person":
            opened = await self._call(self.client.conversations_open(users=item.target))
            channel = opened["channel"]["id"]
        history = self.client.conversations_replies if item.thread_id else self.client.conversations_history
        kwargs = {"ts": item.thread_id} if item.thread_id else {}
        response = await self._call(history(channel=channel, oldest=f"{item.created_at.timestamp() - 60:.6f}",
                                            include_all_metadata=True, limit=200, **kwargs))
        for message in response.get("messages", []):
            meta = message.get("metadata") or {}
            if meta.get("event_type") == self.EVENT_TYPE and \
                    (meta.get("event_payload") or {}).get("outbox_key") == item.key:
                return Delivered(channel, message["ts"])
        return None

    async def _find_files(self, item: Outgoing) -> Delivered | None:
        """Files shared by an attempt whose answer was lost: a message since then carrying all of them."""
        titles = {i["title"] for i in item.message.get("images", [])}
        response = await self._call(self.client.conversations_history(
            channel=item.target, oldest=f"{item.created_at.timestamp() - 60:.6f}", limit=200))
        for message in response.get("messages", []):
            shared = message.get("files") or []
            if shared and titles <= {f.get("title") for f in shared}:
                return Delivered(item.target, shared[0].get("id", ""))
        return None

    @staticmethod
    async def _call(awaitable):
        try:
            return await awaitable
        except SlackApiError as exc:
            status = exc.response.status_code
            error = exc.response.data.get("error", "") if isinstance(exc.response.data, dict) else ""
            if status == 429 or error == "ratelimited":
                retry_after = float(exc.response.headers.get("Retry-After", 1))
                method = (exc.response.api_url or "").rstrip("/").rsplit("/", 1)[-1] or None
                raise DeliveryError(f"{method or 'Slack'} rate limited; Retry-After {retry_after:g}s",
                                    retry_after=retry_after, scope=method) from None
            if status >= 500 or error in RETRYABLE:
                raise DeliveryError(f"Slack answered {status} {error}".strip()) from None
            raise DeliveryError(f"Slack refused it: {error or status}", permanent=True) from None
        except aiohttp.ClientConnectorError as exc:  # never connected: nothing was sent
            raise DeliveryError(f"cannot reach Slack: {exc}") from None
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:  # sent, but the answer was lost
            raise DeliveryError(f"no answer from Slack: {exc!r}", ambiguous=True) from None
