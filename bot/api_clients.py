"""Who calls the JSON API and the status feeds: named API clients, their scopes, and on whose behalf they act.

- Each client of ``api_clients`` in app.yaml has its own bearer token, of which only the SHA-256 is
  configured (``svcbot api-client new NAME`` makes one). A token is hashed and compared with every
  client's hash in constant time; an unknown token is 401.
- ``SVCBOT_API_TOKEN`` stays a client, ``legacy``, with every scope and the right to act for anyone: what
  the one token could do before named clients. Without it and without clients the API is off (503).
- Each operation wants one scope (``alerts``, ``tickets``, ``outages``, ``changes``, ``surveys``, ``csi``);
  reading also accepts ``read``, and the catalogue and SLA reports want ``read``. A token without the scope
  is 403 naming it. Which scopes each operation wants is written in the OpenAPI document
  (bot/api/openapi.yaml, each operation's ``security``), which the API enforces.
- A client acts as itself (audit person ``api``, its client name beside it) unless the body names a person
  it may act for (``on_behalf_of``): then as that person, with their rights, the audit naming both.
- The status page, ``/status.json`` and ``/changes.ics`` follow ``status_page``: public, public without
  incident titles, or private. Private wants a bearer token with ``read``, or ``?key=`` a feed key (of
  ``status_page.feed_keys``, again only hashes configured) for calendar clients and wall displays.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from handlers.core.config import API_SCOPES, AppConfig
from handlers.core.context import Actor

LEGACY = "legacy"
TOKEN_PREFIX = "svc_"


class ApiError(Exception):
    def __init__(self, status: int, error: str, problems: list[str] | None = None, headers: dict | None = None):
        super().__init__(error)
        self.status, self.error, self.problems, self.headers = status, error, problems or [], headers or {}

    def response(self) -> web.Response:
        return web.json_response({"error": self.error, "problems": self.problems}, status=self.status,
                                 headers=self.headers)


def hash_token(token: str) -> str:
    """What app.yaml holds instead of a token. Tokens are 256 random bits, so a plain SHA-256 is enough."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Client:
    name: str
    digest: bytes
    scopes: frozenset[str]
    on_behalf_of: frozenset[str] | None  # None: anyone

    def may_act_for(self, person_id: str) -> bool:
        return self.on_behalf_of is None or person_id in self.on_behalf_of

    @property
    def acts_for_people(self) -> bool:
        return self.on_behalf_of is None or bool(self.on_behalf_of)

    def actor(self) -> Actor:
        """The client acting as itself."""
        return Actor(person_id="api", name=f"API client {self.name}", platform="api", client=self.name)

    def actor_for(self, person, roles: frozenset[str]) -> Actor:
        """The client acting for a person: their rights, the API's platform, times without a zone in UTC."""
        return Actor(person_id=person.id, name=person.name, platform="api", roles=roles, timezone="UTC",
                     client=self.name)


def _digest(hashed: str) -> bytes:
    return bytes.fromhex(hashed.removeprefix("sha256:"))


def _matching(given: str, digests: list[tuple[bytes, object]]):
    """The entry whose digest is the given secret's, compared with every entry in constant time."""
    probe = hashlib.sha256(given.encode()).digest()
    found = None
    for digest, entry in digests:
        if hmac.compare_digest(probe, digest) and found is None:
            found = entry
    return found


class Clients:
    def __init__(self, config: AppConfig, legacy_token: str | None):
        self.all: list[Client] = [
            Client(c.name, _digest(c.token_hash), frozenset(c.scopes),
                   None if c.on_behalf_of == "*" else frozenset(c.on_behalf_of)) for c in config.api_clients]
        if legacy_token:
            self.all.append(Client(LEGACY, hashlib.sha256(legacy_token.encode()).digest(), frozenset(API_SCOPES),
                                   None))
        self.policy = config.status_page
        self.feed_keys = [(_digest(k.key_hash), k.name) for k in config.status_page.feed_keys]

    @property
    def off(self) -> bool:
        return not self.all

    def identify(self, token: str) -> Client | None:
        return _matching(token, [(c.digest, c) for c in self.all])

    def authenticate(self, request: web.Request, metrics) -> Client:
        """The client whose token the request bears; 503 when the API is off, 401 without a known token."""
        if self.off:
            raise ApiError(503, "The JSON API is off: SVCBOT_API_TOKEN is not set and app.yaml has no "
                                "api_clients", ["server: add api_clients to app.yaml (svcbot api-client new NAME), or "
                                           "set SVCBOT_API_TOKEN, to turn the API on"])
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        client = None
        if not header:
            problem, error = "Authorization: missing; send Authorization: Bearer TOKEN", None
        elif scheme.lower() != "bearer" or not given.strip():
            problem, error = "Authorization: not a bearer token; send Authorization: Bearer TOKEN", "invalid_request"
        elif (client := self.identify(given.strip())) is None:
            problem, error = "Authorization: wrong token", "invalid_token"
        if client is not None:
            return client
        metrics.requests_refused.labels(platform="api", reason="token").inc()
        challenge = 'Bearer realm="svcbot"' + (f', error="{error}"' if error else "")
        raise ApiError(401, "A valid bearer token is needed", [problem], {"WWW-Authenticate": challenge})

    # ------------------------------------------------------------------ the status page and feeds

    def feed_refusal(self, request: web.Request, private: bool) -> ApiError | None:
        """None when the request may read a feed; else why not (401)."""
        if not private:
            return None
        key = request.query.get("key")
        if key and _matching(key, self.feed_keys) is not None:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        client = self.identify(given.strip()) if scheme.lower() == "bearer" and given.strip() else None
        if client is not None and "read" in client.scopes:
            return None
        if client is not None:
            problem = f"Authorization: client '{client.name}' lacks the scope 'read'"
        elif key:
            problem = "key: not a feed key of this server"
        else:
            problem = ("send ?key=FEED_KEY (status_page.feed_keys; svcbot feed-key new NAME) or "
                       "Authorization: Bearer TOKEN of an API client with the scope 'read'")
        return ApiError(401, "This feed is private", [problem], {"WWW-Authenticate": 'Bearer realm="svcbot"'})


def require_scope(client: Client, accepted: tuple[str, ...], method: str, path: str) -> None:
    if accepted and not client.scopes.intersection(accepted):
        wanted = " or ".join(f"'{s}'" for s in accepted)
        raise ApiError(403, f"The API client '{client.name}' lacks the scope {wanted}",
                       [f"Authorization: {method} {path} needs the scope {wanted}; client '{client.name}' has "
                        f"{', '.join(sorted(client.scopes))}"])


def on_behalf(client: Client, person_id: str, field: str) -> None:
    """403 unless the client may name this person as the one acting."""
    if client.may_act_for(person_id):
        return
    if not client.acts_for_people:
        raise ApiError(403, f"The API client '{client.name}' acts as itself and may not act on anyone's behalf",
                       [f"{field}: '{person_id}' cannot be named by client '{client.name}'; its app.yaml entry "
                        f"needs on_behalf_of: [{person_id}]"])
    raise ApiError(403, f"The API client '{client.name}' may not act on behalf of '{person_id}'",
                   [f"{field}: client '{client.name}' acts only for {', '.join(sorted(client.on_behalf_of))}"])
