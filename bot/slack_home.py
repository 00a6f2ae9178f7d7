"""Slack's App Home tab, shortcuts and references: the listeners of handlers/home in Slack.

- ``app_home_opened`` publishes the person's home (views.publish, through the outbox, debounced);
  a button on it runs its command as the person, then the home is published again with the answer on top.
- The message shortcuts open the incident or change form prefilled from the message, with its permalink
  (chat.getPermalink); the global shortcut opens the new-change form.
- A message in a channel with ``unfurl: true`` that names INC-N, CHG-N or SRV-N gets a summary in its thread.
"""
from __future__ import annotations

import asyncio
import html
import logging
import re
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import IntegrityError

from handlers.core.context import Reply
from handlers.core.people import resolve_actor
from handlers.home import published, references, shortcuts

if TYPE_CHECKING:
    from slack_bolt.app.async_app import AsyncApp

log = logging.getLogger("svcbot.slack")

# The callback ids the manifest declares (bot/manifest.py) and the forms they open.
INCIDENT_SHORTCUT = "svc_incident_from_message"
CHANGE_SHORTCUT = "svc_change_from_message"
NEW_CHANGE_SHORTCUT = "svc_new_change"
MARKUP = re.compile(r"<([@#!])?([^>|]+)(?:\|([^>]*))?>")


def plain_text(text: str) -> str:
    """A message's text without Slack's markup: <@U1|ann> → @ann, <url|label> → label, entities decoded."""
    def one(m: re.Match) -> str:
        sigil, target, label = m.groups()
        if sigil in ("@", "#"):
            return f"{sigil}{label}" if label else ""
        if sigil == "!":
            return f"@{label or target.split('^')[0]}"
        return label or target
    return html.unescape(MARKUP.sub(one, text or "")).strip()


class SlackHome:
    def __init__(self, front):  # bot.slack.SlackFront: its runtime, Web API client and form opening
        self.front = front
        self.runtime = front.runtime
        self.ctx = front.runtime.ctx

    def register(self, app: AsyncApp) -> None:
        app.event("app_home_opened")(self.on_home_opened)
        app.action(re.compile(r"^svc_home:"))(self.on_home_button)
        app.shortcut(INCIDENT_SHORTCUT)(self.on_message_shortcut)
        app.shortcut(CHANGE_SHORTCUT)(self.on_message_shortcut)
        app.shortcut(NEW_CHANGE_SHORTCUT)(self.on_new_change)

    async def _actor(self, user: dict | str, register: bool = True):
        if isinstance(user, str):
            uid, name = user, ""
        else:
            uid, name = user["id"], user.get("username") or user.get("name") or ""
        return await asyncio.to_thread(resolve_actor, self.ctx, "slack", uid, name, register=register)

    async def on_home_opened(self, body, event):
        if event.get("tab") != "home":  # the Messages tab is the direct message conversation
            return
        actor = await self._actor(event["user"])
        key = f"home:slack:event:{body.get('event_id') or event.get('event_ts')}"
        try:
            await asyncio.to_thread(published.opened, self.ctx, actor, "slack", event["user"], key)
        except IntegrityError:  # a retried event whose publish is queued already
            log.info("app_home_opened %s was handled before", key)

    async def on_home_button(self, ack, body, action):
        await ack()
        result, key = await self.front.press(body, action)
        if result is None:
            return
        user = body["user"]["id"]
        actor = await self._actor(user, register=False)
        await asyncio.to_thread(published.after_action, self.ctx, actor, "slack", user, result.reply, f"home:{key}")

    async def on_message_shortcut(self, ack, body, shortcut):
        await ack()
        channel, message = (body.get("channel") or {}).get("id"), body.get("message") or {}
        ts = message.get("ts") or body.get("message_ts")
        permalink = await self._permalink(body, channel, ts)
        where = shortcuts.origin("slack", channel, message.get("thread_ts") or ts, permalink,
                                 plain_text(message.get("text", "")))
        actor = await self._actor(body["user"])
        make = shortcuts.incident_form if body.get("callback_id") == INCIDENT_SHORTCUT else shortcuts.change_form
        form = make(self.ctx, actor, where)
        if not await self.front._open_form(body.get("trigger_id"), Reply(title=form.title, form=form)):
            await self._could_not_open(body)

    async def on_new_change(self, ack, body, shortcut):
        await ack()
        user = body["user"]
        result = await self.runtime.execute("slack", user["id"], "change new", name=user.get("username", ""),
                                            via="button")
        if not (result.reply.form and await self.front._open_form(body.get("trigger_id"), result.reply)):
            await self._could_not_open(body)

    async def _could_not_open(self, body) -> None:
        reply = Reply(title="The form did not open", text="Slack took too long to answer; try the shortcut again.",
                      tone="error")
        await self.runtime.queue_reply("slack", "person", body["user"]["id"], reply,
                                       f"reply:slack:shortcut:{body.get('trigger_id') or body.get('action_ts')}")

    async def _permalink(self, body, channel: str | None, ts: str | None) -> str | None:
        if not (channel and ts):
            return None
        try:
            response = await self.front.client.chat_getPermalink(channel=channel, message_ts=ts)
            return response.get("permalink")
        except (SlackApiError, asyncio.TimeoutError, OSError) as exc:
            # The link has a known shape; the workspace's domain comes with the shortcut.
            log.warning("chat.getPermalink failed (%s); the link is made from the workspace's domain", exc)
            domain = (body.get("team") or {}).get("domain")
            return f"https://{domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}" if domain else None

    async def on_channel_message(self, body, event):
        """A message in a channel: references in it are summarised where the channel asks for it."""
        text = event.get("text", "")
        if not references.wanted(self.ctx, "slack", event.get("channel"), text):
            return
        actor = await self._actor(event["user"], register=False)
        await asyncio.to_thread(references.summarise, self.ctx, actor, "slack", event["channel"],
                                event.get("thread_ts") or event["ts"], text)
