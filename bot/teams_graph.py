"""Reading svcbot's own Teams posts back through Microsoft Graph, so that a lost answer is not posted twice.

The Bot Framework connector cannot read a conversation, so the outbox asks Graph instead, with an
app-only token (client credentials: the bot's own app id and password) for the conversation's tenant:

- a channel: ``/teams/{team aadGroupId}/channels/{channel id}/messages`` (or a thread's ``/replies``),
  resource-specific permission ``ChannelMessage.Read.Group``;
- a group chat or the bot's 1:1 chat: ``/chats/{chat id}/messages``, ``ChatMessage.Read.Chat``.

Every card svcbot posts carries a marker derived from its outbox key (a hash; nothing personal), which
Graph returns inside the card's JSON (``attachments[].content``). A Teams message id is the same in
Graph and in the Bot Framework (a channel thread's conversation id ends in ``;messageid=`` its root's
Graph id), so the id found is the one later edits must update.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import aiohttp

from bot.outbox import DeliveryError

log = logging.getLogger("svcbot.teams")

GRAPH_URL = "https://graph.microsoft.com/v1.0"
LOGIN_URL = "https://login.microsoftonline.com"
PAGES = 5  # 50 messages a page: far more than can be posted in a conversation between two attempts
EARLIER = timedelta(seconds=60)  # clocks differ: look a little before the row was written
TIMEOUT = aiohttp.ClientTimeout(total=15)


def marker(key: str) -> str:
    """What identifies an outbox row's card among a conversation's messages."""
    return "svcbot-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def mark_card(card: dict, key: str) -> dict:
    """The card with the row's marker as the id of its first element without one (ids are part of the
    Adaptive Card schema, so Teams keeps them and shows nothing)."""
    body = [dict(element) for element in card.get("body") or []]
    for element in body:
        if "id" not in element:
            element["id"] = marker(key)
            break
    else:
        body.append({"type": "TextBlock", "text": " ", "isVisible": False, "id": marker(key)})
    return {**card, "body": body}


class GraphUnavailable(Exception):
    """Graph cannot be asked about this conversation at all (not configured, or ids unknown)."""


class Graph:
    """An app-only Graph client: tokens by client credentials, one per tenant, kept until near expiry."""

    def __init__(self, app_id: str, password: str, tenant: str = "", graph_url: str | None = None,
                 login_url: str | None = None):
        self.app_id, self.password, self.tenant = app_id, password, tenant
        self.graph_url = (graph_url or os.environ.get("MICROSOFT_GRAPH_URL") or GRAPH_URL).rstrip("/")
        self.login_url = (login_url or os.environ.get("MICROSOFT_LOGIN_URL") or LOGIN_URL).rstrip("/")
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings) -> "Graph | None":
        """None without a password: an emulator set-up, or a managed identity svcbot holds no secret for."""
        if not settings.APP_ID or not settings.APP_PASSWORD:
            return None
        return cls(settings.APP_ID, settings.APP_PASSWORD, settings.APP_TENANTID)

    async def _token(self, session: aiohttp.ClientSession, tenant: str) -> str:
        async with self._lock:
            token, until = self._tokens.get(tenant, ("", 0.0))
            if token and time.monotonic() < until:
                return token
            url = f"{self.login_url}/{quote(tenant, safe='')}/oauth2/v2.0/token"
            form = {"grant_type": "client_credentials", "client_id": self.app_id, "client_secret": self.password,
                    "scope": "https://graph.microsoft.com/.default"}
            async with session.post(url, data=form) as response:
                body = await _json(response)
                if response.status != 200 or "access_token" not in body:
                    raise _refused("token", response.status, body.get("error_description") or body.get("error"))
            # Renew five minutes before it expires, so that no request carries a token about to lapse.
            lifetime = float(body.get("expires_in", 3600))
            self._tokens[tenant] = (body["access_token"], time.monotonic() + max(lifetime - 300, lifetime / 2))
            return body["access_token"]

    async def find(self, tenant: str | None, path: str, key: str, since: datetime) -> str | None:
        """The id of the message in ``path`` (a messages collection) carrying the marker of ``key``,
        created since ``since``; None if Graph shows none there."""
        tenant = tenant or self.tenant  # the conversation's tenant holds it (a multi-tenant bot serves many)
        if not tenant:
            raise GraphUnavailable("the conversation's tenant is unknown")
        wanted = marker(key)
        earliest = _aware(since) - EARLIER
        url = f"{self.graph_url}{path}?$top=50"
        try:
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
                token = await self._token(session, tenant)
                for _ in range(PAGES):
                    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
                        body = await _json(response)
                        if response.status != 200:
                            raise _refused("messages", response.status, (body.get("error") or {}).get("message"),
                                           response.headers.get("Retry-After"))
                    messages = body.get("value") or []
                    for message in messages:
                        if any(wanted in str(a.get("content") or "") for a in message.get("attachments") or []):
                            return str(message["id"])
                    older = [m for m in messages if _created(m) and _created(m) < earliest]
                    url = body.get("@odata.nextLink")
                    if not url or (messages and len(older) == len(messages)):
                        return None
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"cannot reach Microsoft Graph to check for an earlier post: {exc!r}") from None
        except asyncio.TimeoutError:
            raise DeliveryError("no answer from Microsoft Graph to check for an earlier post") from None
        log.warning("no post marked %s among the newest %d messages of %s; taking it as not sent",
                    wanted, PAGES * 50, path)
        return None


def _refused(what: str, status: int, detail, retry_after: str | None = None) -> DeliveryError:
    detail = f": {detail}" if detail else ""
    if status == 429 or status >= 500:
        wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
        return DeliveryError(f"Microsoft Graph answered {status} ({what}){detail}; will look again",
                             retry_after=wait)
    # No permission, or Graph does not know the conversation: it cannot tell whether the earlier attempt
    # arrived, so the row is not posted again blind (as for Slack when it cannot read the history).
    return DeliveryError(f"cannot check whether an earlier attempt was posted: Microsoft Graph answered {status} "
                         f"({what}){detail}; not posting again, to avoid a duplicate (grant the app's "
                         "ChannelMessage.Read.Group / ChatMessage.Read.Chat permissions)", permanent=True)


async def _json(response: aiohttp.ClientResponse) -> dict:
    try:
        body = await response.json(content_type=None)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _created(message: dict) -> datetime | None:
    text = message.get("createdDateTime") or ""
    try:
        return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def messages_path(conversation_type: str, conversation_id: str, team_aad_group_id: str | None,
                  user_aad_id: str | None, bot_app_id: str, thread_id: str | None) -> str:
    """Where Graph lists the messages a post to this conversation lands among."""
    if conversation_type == "channel":
        if not team_aad_group_id:
            raise GraphUnavailable("the team's Graph id (aadGroupId) was never seen for this channel")
        channel, _, rest = conversation_id.partition(";")
        root = thread_id or (rest.split("=", 1)[1] if rest.startswith("messageid=") else None)
        path = f"/teams/{quote(team_aad_group_id, safe='')}/channels/{quote(channel, safe='')}/messages"
        return f"{path}/{quote(root, safe='')}/replies" if root else path
    if conversation_id.startswith("19:"):  # a group chat, or a 1:1 chat whose id is already Graph's
        return f"/chats/{quote(conversation_id, safe='')}/messages"
    if conversation_type == "personal" and user_aad_id and bot_app_id:
        return f"/chats/{quote(personal_chat_id(user_aad_id, bot_app_id), safe='')}/messages"
    raise GraphUnavailable("no Graph id is known for this conversation")


def personal_chat_id(user_aad_id: str, bot_app_id: str) -> str:
    """The Bot Framework names a bot's 1:1 chat opaquely ('a:...'); Graph names it after its two members."""
    return f"19:{user_aad_id}_{bot_app_id}@unq.gbl.spaces"
