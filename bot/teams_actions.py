"""Teams message actions: "Open an incident from this" and "Request a change from this" on a message.

They are action commands of the app's messaging extension (bot/manifest.py declares them). Teams asks
for the form with ``composeExtension/fetchTask`` (answered with the Adaptive Card form in a task module)
and sends its answers with ``composeExtension/submitAction`` (answered by closing the task module, or
with the form again and a message beside each wrong field). Where the new record is announced, the
message's thread, comes from the invoke itself, never from the card's data.
"""
from __future__ import annotations

import asyncio
import html
import re

from botbuilder.schema import Activity

from bot import render
from handlers.core.context import Reply
from handlers.core.people import resolve_actor
from handlers.home import shortcuts

INVOKES = ("composeExtension/fetchTask", "composeExtension/submitAction")
# The messaging extension's command ids, as the manifest declares them, and their forms.
COMMANDS = {"incidentFromMessage": (shortcuts.incident_form, shortcuts.INCIDENT_FORM),
            "changeFromMessage": (shortcuts.change_form, shortcuts.CHANGE_FORM)}
TAGS = re.compile(r"<[^>]+>")


def message_text(payload: dict) -> str:
    body = payload.get("body") or {}
    content = body.get("content") or ""
    if body.get("contentType") == "html":
        content = html.unescape(TAGS.sub("", re.sub(r"<br\s*/?>|</p>|</div>", "\n", content)))
    return content.strip()


def where_from(activity, value: dict) -> dict:
    payload = value.get("messagePayload") or {}
    thread = payload.get("replyToId") or payload.get("id") or None
    return shortcuts.origin("teams", activity.conversation.id, thread, payload.get("linkToMessage"),
                            message_text(payload))


def task_card(form_reply: Reply) -> dict:
    """A task module showing the form. A task module sends its answers with Action.Submit."""
    card = render.teams_card(form_reply)
    for action in card.get("actions", []):
        if action.get("type") == "Action.Execute":
            action["type"] = "Action.Submit"
            action.pop("verb", None)
    return {"task": {"type": "continue", "value": {
        "title": form_reply.form.title if form_reply.form else form_reply.title, "width": "medium",
        "card": {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}}}}


async def answer(bot, activity: Activity, tenant: str | None) -> dict:
    """The invoke's answer; ``bot`` is the SvcTeamsBot that received it (its runtime and delivery keys)."""
    value = activity.value if isinstance(activity.value, dict) else {}
    command = COMMANDS.get(value.get("commandId"))
    if command is None:
        return {"task": {"type": "message", "value": "svcbot does not know this action."}}
    runtime, ctx = bot.runtime, bot.runtime.ctx
    user = activity.from_property
    person = user.aad_object_id or user.id
    where = where_from(activity, value)
    make, form_name = command
    if activity.name == "composeExtension/fetchTask":
        actor = await asyncio.to_thread(resolve_actor, ctx, "teams", person, user.name or "", user.id, tenant)
        form = make(ctx, actor, where)
        return task_card(Reply(title=form.title, form=form))
    data = value.get("data") if isinstance(value.get("data"), dict) else {}
    values = {k: v for k, v in data.items() if k not in ("form", "context")}
    result = await runtime.submit("teams", person, form_name, values, where, name=user.name or "",
                                  key=bot._delivery_key(activity), address=user.id, tenant=tenant)
    if result.reply.form:
        return task_card(result.reply)
    return {"task": {"type": "message", "value": render.plain(result.reply)}}
