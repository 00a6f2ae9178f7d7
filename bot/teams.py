"""Microsoft Teams: activities in through botbuilder's CloudAdapter; proactive posts out.

A Teams bot can only post where it was installed, so every conversation it sees (installation,
conversationUpdate, any message) is remembered, and the outbox posts through those references.
Adaptive Card buttons arrive as ``Action.Execute`` invokes (answered here, since botbuilder 4.17
cannot serialise a plain invoke body) or as ``Action.Submit`` messages carrying ``value``.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import os
from types import SimpleNamespace

import jwt
from aiohttp import web
from aiohttp.web_exceptions import HTTPException
from botbuilder.core import ActivityHandler, BotAdapter, CardFactory, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import (Activity, ActivityTypes, ChannelAccount, ConversationParameters, ConversationReference,
                               InvokeResponse)
from msrest.exceptions import ClientRequestError, HttpOperationError
from sqlalchemy import select

from bot import render, teams_actions
from bot.outbox import Delivered, DeliveryError, Outgoing
from bot.runtime import Runtime, answered_privately
from bot.teams_graph import Graph, GraphUnavailable, mark_card, messages_path, personal_chat_id
from bot.teams_trust import service_url_refusal, teams_mode, vouched_service_url
from handlers.core.context import Reply
from handlers.core.people import resolve_actor
from handlers.home import references
from handlers.surveys import record
from storage.models import ConversationRef, Identity

log = logging.getLogger("svcbot.teams")

# The body of an Action.Execute answer for the request being processed.
_invoke_answer: contextvars.ContextVar[dict | None] = contextvars.ContextVar("invoke_answer", default=None)


def teams_settings() -> SimpleNamespace:
    return SimpleNamespace(
        APP_ID=os.environ.get("MICROSOFT_APP_ID", ""),
        APP_PASSWORD=os.environ.get("MICROSOFT_APP_PASSWORD", ""),
        APP_TYPE=os.environ.get("MICROSOFT_APP_TYPE", "MultiTenant"),
        APP_TENANTID=os.environ.get("MICROSOFT_APP_TENANT_ID", ""),
    )


def card_activity(reply: Reply, key: str | None = None) -> Activity:
    """The reply as an Adaptive Card; with an outbox ``key``, marked so that Graph can find it again."""
    card = render.teams_card(reply)
    activity = MessageFactory.attachment(CardFactory.adaptive_card(mark_card(card, key) if key else card))
    activity.summary = reply.plain()[:200]
    return activity


def conversation_kind(activity: Activity) -> str:
    """personal, channel or groupChat; older Teams activities carry no conversationType, only channelData."""
    data = activity.channel_data or {}
    return activity.conversation.conversation_type or (
        "channel" if (data.get("channel") or data.get("team")) else "personal")


def addressed_to_bot(activity: Activity) -> bool:
    """Whether a message speaks to svcbot: in a personal chat always; in a channel or group chat only by an
    @mention, since the resource-specific permissions deliver every other message there too."""
    if conversation_kind(activity) == "personal":
        return True
    bot_id = activity.recipient.id if activity.recipient else None
    # botbuilder keeps a mention entity's fields in additional_properties, as its own remove_mention_text reads them
    return any(((m.additional_properties or {}).get("mentioned") or {}).get("id") == bot_id
               for m in TurnContext.get_mentions(activity))


def thread_of(activity: Activity) -> tuple[str, str]:
    """A channel message's channel and the root of its thread ("19:…;messageid=ROOT" names both)."""
    channel, _, rest = activity.conversation.id.partition(";")
    root = rest.split("=", 1)[1] if rest.startswith("messageid=") else activity.id
    return channel, root


def tenant_of(activity: Activity) -> str | None:
    return ((activity.channel_data or {}).get("tenant") or {}).get("id") or activity.conversation.tenant_id


def token_vouches(turn_context: TurnContext) -> bool:
    """Whether this turn's Bot Framework token names the activity's serviceUrl as the channel's own."""
    identity = turn_context.turn_state.get(BotAdapter.BOT_IDENTITY_KEY)
    return vouched_service_url(getattr(identity, "claims", None), bool(getattr(identity, "is_authenticated", False)),
                               turn_context.activity.service_url)


def save_reference(runtime: Runtime, activity: Activity, active: bool = True, vouched: bool = False) -> None:
    """Remember where the bot can post. Personal chats are also filed under the user's AAD id.

    A conversation's serviceUrl, once stored, is replaced only when the activity's token ``vouched`` for
    the new one: otherwise anyone who can reach /api/messages could redirect a channel's posts."""
    ref = TurnContext.get_conversation_reference(activity)
    data = activity.channel_data or {}
    conv = activity.conversation
    kind = conversation_kind(activity)
    tenant = tenant_of(activity)
    user_aad = activity.from_property.aad_object_id if kind == "personal" and activity.from_property else None
    now = runtime.ctx.now()
    with runtime.ctx.sessions.begin() as s:
        row = s.get(ConversationRef, conv.id)
        if row is None:
            row = ConversationRef(conversation_id=conv.id)
            s.add(row)
        elif row.service_url and row.service_url != activity.service_url and not vouched:
            log.warning("Teams conversation %s: kept its serviceUrl %s; an activity whose token does not vouch "
                        "for it named %s", conv.id, row.service_url, activity.service_url)
            ref.service_url = row.service_url
        row.conversation_type, row.service_url, row.tenant_id = kind, ref.service_url, tenant
        team = data.get("team") or {}
        row.team_id = team.get("id")
        row.team_aad_group_id = team.get("aadGroupId") or row.team_aad_group_id
        row.user_aad_id = user_aad or row.user_aad_id
        row.reference, row.active, row.updated_at = ref.serialize(), active, now


class SvcTeamsBot(ActivityHandler):
    def __init__(self, runtime: Runtime, adapter: CloudAdapter, app_id: str):
        self.runtime = runtime
        self.adapter = adapter
        self.app_id = app_id

    async def on_turn(self, turn_context: TurnContext):
        activity = turn_context.activity
        if activity.type == ActivityTypes.invoke and activity.name == "adaptiveCard/action":
            _invoke_answer.set(await self._on_execute(turn_context))
            # Tell the adapter the invoke was answered; the HTTP layer sends the body itself.
            await turn_context.send_activity(Activity(type=ActivityTypes.invoke_response,
                                                      value=InvokeResponse(status=200)))
            return
        if activity.type == ActivityTypes.invoke and activity.name in teams_actions.INVOKES:
            # The new record is announced in this conversation's thread: the bot must be able to post there.
            await asyncio.to_thread(save_reference, self.runtime, activity, True, token_vouches(turn_context))
            _invoke_answer.set(await teams_actions.answer(self, activity, tenant_of(activity)))
            await turn_context.send_activity(Activity(type=ActivityTypes.invoke_response,
                                                      value=InvokeResponse(status=200)))
            return
        await super().on_turn(turn_context)

    async def on_conversation_update_activity(self, turn_context: TurnContext):
        activity = turn_context.activity
        bot_id = activity.recipient.id if activity.recipient else None
        if any(m.id == bot_id for m in activity.members_added or []):
            await asyncio.to_thread(save_reference, self.runtime, activity, True, token_vouches(turn_context))
            log.info("installed in Teams conversation %s", activity.conversation.id)
        elif any(m.id == bot_id for m in activity.members_removed or []):
            await asyncio.to_thread(save_reference, self.runtime, activity, False, token_vouches(turn_context))
            log.info("removed from Teams conversation %s", activity.conversation.id)

    async def on_installation_update_add(self, turn_context: TurnContext):
        await asyncio.to_thread(save_reference, self.runtime, turn_context.activity, True,
                                token_vouches(turn_context))

    async def on_message_activity(self, turn_context: TurnContext):
        activity = turn_context.activity
        value = activity.value if isinstance(activity.value, dict) else {}
        form = value.get("form") if isinstance(value.get("form"), str) else None
        if not form and "run" not in value and not addressed_to_bot(activity):
            await self._overheard(activity)
            return
        text = str(value["run"]) if "run" in value else (
            "" if form else TurnContext.remove_recipient_mention(activity) or activity.text or "")
        # A conversation reference names the sender; a survey answer (maybe anonymous) must not be stored
        # with it. The conversation is known already: the survey was posted there.
        if not record.is_answer(text, form):
            await asyncio.to_thread(save_reference, self.runtime, activity, True, token_vouches(turn_context))
        if form:  # Action.Submit of a form card: the inputs' values arrive beside the form's name
            result = await self._submit(activity, value)
        else:  # a message, or the Action.Submit of one of our buttons
            result = await self._execute(activity, text, via="card" if "run" in value else "text")
        if result.outcome == "duplicate" or answered_privately(result, text, form):
            return
        key = f"reply:teams:{activity.conversation.id}:{activity.id}"
        if result.outcome == "refused" and conversation_kind(activity) != "personal":
            # Teams has no ephemeral messages: a refusal in a channel goes to the person's 1:1 chat.
            user = activity.from_property
            await self.runtime.queue_reply("teams", "person", user.aad_object_id or user.id, result.reply, key)
        else:
            await self.runtime.queue_reply("teams", "channel", activity.conversation.id, result.reply, key,
                                           thread_id=activity.id)

    async def _overheard(self, activity: Activity):
        """A message not addressed to svcbot: references in it are summarised where the channel asks for it
        (``unfurl: true``); anything else is none of svcbot's business, and nothing is stored."""
        channel, root = thread_of(activity)
        text = activity.text or ""
        if not references.wanted(self.runtime.ctx, "teams", channel, text):
            return
        user = activity.from_property
        actor = await asyncio.to_thread(resolve_actor, self.runtime.ctx, "teams", user.aad_object_id or user.id,
                                        user.name or "", register=False)
        await asyncio.to_thread(references.summarise, self.runtime.ctx, actor, "teams", channel, root, text)

    async def _on_execute(self, turn_context: TurnContext) -> dict:
        activity = turn_context.activity
        action = (activity.value or {}).get("action") or {}
        data = action.get("data") or {}
        if isinstance(data, dict) and isinstance(data.get("form"), str):
            return _card_answer((await self._submit(activity, data)).reply)
        if not isinstance(data, dict) or not isinstance(data.get("run"), str):
            return {"statusCode": 400, "type": "application/vnd.microsoft.error",
                    "value": {"code": "BadRequest", "message": "This button carries no command."}}
        result = await self._execute(activity, data["run"], via="card")
        if result.reply.form or result.reply.in_place:  # a form, or a card that replaces this one (home)
            return _card_answer(result.reply)
        # A message answer is shown to the person who pressed the button only; the card stays as it was.
        return {"statusCode": 200, "type": "application/vnd.microsoft.activity.message",
                "value": render.plain(result.reply)}

    async def _execute(self, activity: Activity, text: str, via: str = "text"):
        user = activity.from_property
        return await self.runtime.execute(
            "teams", user.aad_object_id or user.id, text, name=user.name or "", key=self._delivery_key(activity),
            address=user.id, tenant=tenant_of(activity), via=via)

    def _delivery_key(self, activity: Activity) -> str | None:
        # The conversation goes in only as a keyed hash: a 1:1 chat names its person, and the key is
        # stored with the time of what may be an anonymous answer.
        conversation = self.runtime.ctx.pseudonym("teams", activity.conversation.id)[:16]
        return f"teams:{conversation}:{activity.id}" if activity.id else None

    async def _submit(self, activity: Activity, data: dict):
        user = activity.from_property
        values = {k: v for k, v in data.items() if k not in ("form", "context")}
        return await self.runtime.submit(
            "teams", user.aad_object_id or user.id, data["form"], values, data.get("context") or {},
            name=user.name or "", key=self._delivery_key(activity), address=user.id, tenant=tenant_of(activity))


def _card_answer(reply: Reply) -> dict:
    """An Action.Execute answer that replaces the card, for the person who pressed, with this one."""
    return {"statusCode": 200, "type": "application/vnd.microsoft.card.adaptive", "value": render.teams_card(reply)}


class TeamsFront:
    def __init__(self, runtime: Runtime):
        settings = teams_settings()
        self.app_id = settings.APP_ID
        self.mode = teams_mode()
        self.runtime = runtime
        self.adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(settings))
        self.adapter.on_turn_error = self._on_error
        self.bot = SvcTeamsBot(runtime, self.adapter, self.app_id)

    async def handle(self, request: web.Request) -> web.Response:
        if "application/json" not in request.headers.get("Content-Type", ""):
            return web.json_response({"error": "expected an application/json activity"}, status=415)
        _invoke_answer.set(None)
        try:
            response = await self.adapter.process(request, self.bot)
        except (web.HTTPUnauthorized, jwt.PyJWTError):  # no token, or one that is not even a JWT
            self.runtime.metrics.requests_refused.labels(platform="teams", reason="auth").inc()
            log.warning("refused a Teams activity without a valid token")
            return web.json_response({"error": "unauthorized"}, status=401)
        except HTTPException as exc:
            return web.json_response({"error": exc.reason}, status=exc.status)
        answer = _invoke_answer.get()
        if answer is not None:
            return web.json_response(answer, status=200)
        return response or web.Response(status=201)

    async def _on_error(self, turn_context: TurnContext, error: Exception):
        log.error("Teams turn failed: %r", error, exc_info=error)


class TeamsSender:
    platform = "teams"

    def __init__(self, front: TeamsFront, graph: Graph | None = None):
        self.front = front
        self.runtime = front.runtime
        self.graph = graph if graph is not None else Graph.from_settings(teams_settings())

    def _reference(self, item: Outgoing) -> ConversationReference | dict | None:
        with self.runtime.ctx.sessions() as s:
            if item.target_kind in ("channel", "edit"):
                row = s.get(ConversationRef, item.target)
                return ConversationReference().deserialize(row.reference) if row and row.active else None
            row = s.scalar(select(ConversationRef).where(ConversationRef.user_aad_id == item.target,
                                                         ConversationRef.conversation_type == "personal",
                                                         ConversationRef.active.is_(True)))
            if row:
                return ConversationReference().deserialize(row.reference)
            # No 1:1 chat yet: open one, if the user was ever seen in a tenant where the bot is installed.
            ident = s.scalar(select(Identity).where(Identity.platform == "teams", Identity.external_id == item.target))
            if ident is None or not ident.address:
                return None
            anywhere = s.scalar(select(ConversationRef)
                                .where(ConversationRef.active.is_(True), ConversationRef.tenant_id == ident.tenant_id)
                                .order_by(ConversationRef.updated_at.desc()))
            if anywhere is None:
                return None
            return {"user": ident.address, "aad": item.target, "tenant": anywhere.tenant_id,
                    "service_url": anywhere.service_url, "bot": anywhere.reference.get("bot")}

    async def send(self, item: Outgoing) -> Delivered:
        reference = await asyncio.to_thread(self._reference, item)
        if reference is None:
            where = "conversation" if item.target_kind == "channel" else "user's chat"
            raise DeliveryError(f"svcbot is not installed in that Teams {where} ({item.target}); "
                                "add the app there", retry_after=300)
        service_url = reference["service_url"] if isinstance(reference, dict) else reference.service_url
        refusal = service_url_refusal(service_url, self.runtime.ctx.config.teams.service_hosts,
                                      allow_loopback=self.front.mode == "emulator")
        if refusal:  # never retried: the stored address will not become a Bot Framework one by waiting
            log.error("refused to post to Teams %s %s: %s", item.target_kind, item.target, refusal)
            raise DeliveryError(f"refused: {refusal}", permanent=True)
        activity = card_activity(Reply.from_dict(item.message), item.key)
        sent: dict = {}

        async def deliver(ctx: TurnContext):
            # A post replies to the turn's activity: here a made-up continuation event. Point it at the
            # thread's message instead, or at nothing so that the post starts a message of its own.
            ctx.activity.id = item.thread_id
            try:
                if item.target_kind == "edit":
                    activity.id = item.message_id
                    response = await ctx.update_activity(activity)
                else:
                    response = await ctx.send_activity(activity)
            except Exception as exc:  # noqa: BLE001 - the adapter's turn-error handler would swallow it
                sent["error"] = exc
                return
            sent["id"] = response.id if response else ""
            sent["conversation"] = ctx.activity.conversation.id

        try:
            if isinstance(reference, dict):
                params = ConversationParameters(
                    is_group=False, members=[ChannelAccount(id=reference["user"], aad_object_id=reference["aad"])],
                    bot=ChannelAccount(**reference["bot"]) if reference["bot"] else None,
                    tenant_id=reference["tenant"], channel_data={"tenant": {"id": reference["tenant"]}})
                await self.front.adapter.create_conversation(self.front.app_id, deliver, params, "msteams",
                                                             reference["service_url"])
            else:
                await self.front.adapter.continue_conversation(reference, deliver, self.front.app_id)
            if "error" in sent:  # a failed send must reach the outbox as a failure, not as "sent"
                raise sent["error"]
        except HttpOperationError as exc:
            raise _delivery_error(exc) from None
        except ClientRequestError as exc:
            raise DeliveryError(f"no answer from Teams: {exc}", ambiguous=True) from None
        return Delivered(sent.get("conversation", item.target), sent.get("id", ""))

    async def find_sent(self, item: Outgoing) -> Delivered | None:
        """The post an unanswered attempt made, found through Microsoft Graph (bot/teams_graph.py).
        Graph refusing or failing raises (the row is not posted again blind); only where Graph cannot be
        asked at all (no app password, or a conversation it has no id for) is the row posted again, with a
        warning, since a duplicate is then possible."""
        if item.target_kind == "edit":
            return None  # an edit made twice leaves the same message
        try:
            if self.graph is None:
                raise GraphUnavailable("Microsoft Graph is not configured (MICROSOFT_APP_PASSWORD is unset)")
            conversation, tenant, path = await asyncio.to_thread(self._where, item)
            found = await self.graph.find(tenant, path, item.key, item.created_at)
        except GraphUnavailable as exc:
            log.warning("outbox %s: an earlier attempt may have been posted, but it cannot be checked (%s); "
                        "posting again, which may show it twice", item.id, exc)
            return None
        return Delivered(conversation, found) if found else None

    def _where(self, item: Outgoing) -> tuple[str, str | None, str]:
        """The conversation a post of this row lands in, its tenant, and where Graph lists its messages."""
        with self.runtime.ctx.sessions() as s:
            if item.target_kind == "channel":
                row = s.get(ConversationRef, item.target)
            else:
                row = s.scalar(select(ConversationRef).where(ConversationRef.user_aad_id == item.target,
                                                             ConversationRef.conversation_type == "personal"))
            if row is not None:
                path = messages_path(row.conversation_type, row.conversation_id, row.team_aad_group_id,
                                     row.user_aad_id, self.front.app_id, item.thread_id)
                return row.conversation_id, row.tenant_id, path
            if item.target_kind == "channel":
                raise GraphUnavailable(f"svcbot has no record of the conversation {item.target}")
            # A 1:1 chat the attempt had to open: it is filed under nothing yet.
            ident = s.scalar(select(Identity).where(Identity.platform == "teams", Identity.external_id == item.target))
            chat = personal_chat_id(item.target, self.front.app_id)
            path = messages_path("personal", chat, None, item.target, self.front.app_id, None)
            return chat, ident.tenant_id if ident else None, path


def _delivery_error(exc: HttpOperationError) -> DeliveryError:
    response = exc.response
    status = getattr(response, "status_code", None) or getattr(response, "status", 0) or 0
    headers = getattr(response, "headers", {}) or {}
    if status == 429:
        retry_after = float(headers.get("Retry-After", 1))
        return DeliveryError(f"Teams rate limit; Retry-After {retry_after:g}s", retry_after=retry_after)
    if status >= 500 or status in (408, 412):
        return DeliveryError(f"Teams answered {status}")
    return DeliveryError(f"Teams refused it: {status} {exc}", permanent=True)
