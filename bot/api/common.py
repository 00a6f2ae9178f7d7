"""What every resource of the JSON API shares: the base of its routes (the bearer-token hook, the JSON
errors, the person a client acts for), request bodies and query parameters checked against the OpenAPI
document, and the small views and checks several resources use."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from bot import api_clients
from bot.api.spec import check, document_json, operations, query_parameters, show
from bot.api_clients import ApiError
from handlers.core.context import Actor, Context, UserError
from handlers.sla import attainment
from handlers.sla.alertmanager import parse_rfc3339

log = logging.getLogger("svcbot.api")

PREFIX = "/api/v1"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
ACTOR = Actor(person_id="api", name="API", platform="api")
UTC = timezone.utc
CHANGES_SHOWN = 100  # a list's length by default (openapi.yaml: Limit says so too)
CLIENT = web.RequestKey("api_client", api_clients.Client)  # the client of the request's token
ID_MAX = 2**31 - 1  # the largest row id (PostgreSQL's integer); a larger number names nothing: 404


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def plain(value: Any) -> Any:
    """Dataclasses, dicts and lists with datetimes in them, as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    return value


async def read_body(request: web.Request, schema: str, *, optional: bool = False) -> dict:
    raw = await request.read()
    if not raw.strip():
        if optional:
            return {}
        raise ApiError(400, "The request needs a JSON body", ["(body): empty"])
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "The request body is not JSON", [f"(body): {exc}"]) from None
    problems = check({"$ref": f"#/components/schemas/{schema}"}, data)
    if problems:
        raise ApiError(422, "The request body is not valid", problems)
    return data


def read_query(request: web.Request, op_id: str, ctx: Context | None = None) -> dict[str, Any]:
    """The query parameters an operation documents, checked against their schemas; 400 for anything else.
    A period comes back as an attainment.Period (this month when not given), a service as its app.yaml entry."""
    documented = query_parameters(op_id)
    problems: list[str] = []
    values: dict[str, str] = {}
    seen: set[str] = set()
    for name in request.query.keys():
        if name in seen:
            continue
        seen.add(name)
        if name not in documented:
            problems.append(f"{name}: unknown parameter" + (f"; parameters: {', '.join(documented)}"
                                                             if documented else "; this endpoint takes none"))
            continue
        given = request.query.getall(name)
        if len(given) > 1:
            problems.append(f"{name}: given {len(given)} times")
            continue
        value: Any = given[0]
        if documented[name]["schema"].get("type") == "integer":  # a query string is text
            if not re.fullmatch(r"-?\d{1,9}", value):
                problems.append(f"{name}: expected a whole number, got {show(value)}")
                continue
            value = int(value)
        found = check({"$ref": documented[name]["schema_ref"]}, value, name)
        problems += found
        if not found:
            values[name] = value
    if "period" in documented:
        try:
            values["period"] = attainment.parse_period(values.get("period"), ctx.now(), ctx.config.bot.timezone)
        except UserError as exc:
            problems.append(f"period: {exc.message}")
    if "service" in values:
        problems += service_problems(ctx, values["service"], "service")
        values["service"] = ctx.config.service(values["service"])
    if problems:
        raise ApiError(400, "Bad query parameters", problems)
    return values


def time_of(text: str | None, now: datetime) -> datetime:
    return now if text is None else parse_rfc3339(text)  # the schema has checked the format


def not_future(field: str, moment: datetime, now: datetime) -> list[str]:
    return [f"{field}: {iso(moment)} is in the future (it is {iso(now)} here)"] if moment > now else []


def period_view(period: attainment.Period) -> dict:
    return {"name": period.name, "start": iso(period.start), "end": iso(period.end)}


def service_problems(ctx: Context, key: str, field: str) -> list[str]:
    if ctx.config.service(key) is not None:
        return []
    return [f"{field}: there is no service '{key}'; services: {', '.join(s.id for s in ctx.config.services)}"]


def find_service(ctx: Context, key: str, field: str, status: int):
    problems = service_problems(ctx, key, field)
    if problems:
        raise ApiError(status, f"There is no service '{key}'", problems)
    return ctx.config.service(key)


def group_problems(ctx: Context, key: str, field: str, kind: str) -> list[str]:
    group = ctx.config.group(key)
    if group is not None and group.kind == kind:
        return []
    known = ", ".join(g.id for g in ctx.config.groups if g.kind == kind)
    what = "internal team" if kind == "internal" else "supplier"
    return [f"{field}: there is no {what} '{key}'; {what}s: {known}"]


def scopes_of(op: dict) -> tuple[str, ...]:
    """The scopes an operation's security lists (any of them lets a token in); none for a public one."""
    return tuple(dict.fromkeys(scope for requirement in op.get("security", [])
                               for scope in requirement.get("bearerAuth", [])))


class Routes:
    """The base of every resource's routes: the runtime, the API clients, and the scopes each operation
    wants, as the OpenAPI document lists them."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.clients = api_clients.Clients(runtime.ctx.config, os.environ.get("SVCBOT_API_TOKEN"))
        self.scopes = {(method.upper(), path): scopes_of(op) for method, path, op in operations().values()}

    @property
    def ctx(self) -> Context:
        return self.runtime.ctx

    def authorize(self, request: web.Request) -> None:
        """The client of the request's token, kept on the request; 401, 403 or 503 otherwise."""
        client = self.clients.authenticate(request, self.runtime.metrics)
        route = request.match_info.route.resource
        scopes = self.scopes.get((request.method, route.canonical)) if route is not None else None
        if scopes:
            try:
                api_clients.require_scope(client, scopes, request.method, route.canonical)
            except ApiError:
                self.runtime.metrics.requests_refused.labels(platform="api", reason="scope").inc()
                raise
        request[CLIENT] = client

    @staticmethod
    def _client(request: web.Request) -> api_clients.Client:
        return request[CLIENT]

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        if not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
            return await handler(request)
        try:
            if request.path != OPENAPI_PATH:
                self.authorize(request)
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except web.HTTPException as exc:  # no such route, method not allowed, body too large …
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            problems = {404: [f"path: no endpoint {request.path}; see {OPENAPI_PATH}"],
                        405: [f"method: {request.method} is not allowed here; allowed: {exc.headers.get('Allow')}"]}
            return web.json_response({"error": exc.reason, "problems": problems.get(exc.status, [exc.text or ""])},
                                     status=exc.status, headers=headers)
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("API request failed [ref %s]: %s %s", ref, request.method, request.path)
            return web.json_response({"error": f"Something went wrong. Reference: {ref}",
                                      "problems": [], "reference": ref}, status=500)

    def _acting(self, request: web.Request, key: str, field: str) -> Actor:
        """The person the body names, as the request's client acting on their behalf: 403 when the client
        may not act for them, 422 when app.yaml has no such person."""
        client = self._client(request)
        if not client.acts_for_people:
            api_clients.on_behalf(client, key, field)
        person = self.ctx.config.person(key)
        if person is None:
            people = ", ".join(p.id for p in self.ctx.config.people)
            raise ApiError(422, "The request body is not valid",
                           [f"{field}: there is no person '{key}' in app.yaml; people: {people}"])
        api_clients.on_behalf(client, person.id, field)
        return client.actor_for(person, self.ctx.roles_of(person.id))

    async def openapi_document(self, request: web.Request) -> web.Response:
        return web.Response(body=document_json(), content_type="application/json", charset="utf-8")
