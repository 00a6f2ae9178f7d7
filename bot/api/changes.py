"""Requests for change through the API, run as the person named, and the change calendar as iCalendar
(``GET /changes.ics``, public unless ``status_page`` makes it private)."""
from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

from bot.api.common import CHANGES_SHOWN, PREFIX, ApiError, Routes, iso, read_body, read_query
from bot.api.spec import show
from handlers.changes import approvals, calendar, plan, record
from handlers.changes import commands as changes
from handlers.core.context import Actor, Command, FormInvalid, UserError
from handlers.router import guarded
from handlers.sla.alertmanager import parse_rfc3339
from storage.models import Change, ChangeService, ChangeVote

ICS_PATH = "/changes.ics"  # public, like a status page: the forward schedule of change for calendar clients
ICS_DAYS, ICS_DAYS_MAX = 180, 730  # ahead
ICS_PAST, ICS_PAST_MAX = 30, 365  # back
ICS_WINDOWS_KEPT = 64  # windows whose Last-Modified is remembered


def change_view(change: Change, services: list[str], approvals: list[str]) -> dict:
    return {
        "id": record.number(change), "number": change.id, "source": change.source, "title": change.title,
        "type": change.kind, "model": change.model, "risk": change.risk, "impact": change.impact,
        "state": change.state, "outcome": change.outcome, "services": services,
        "planned_start": iso(change.planned_start), "planned_end": iso(change.planned_end),
        "actual_start": iso(change.actual_start), "actual_end": iso(change.actual_end),
        "requester": change.requester, "implementer": change.implementer,
        "approvals_needed": change.approvals_needed, "approvals": approvals, "revision": change.revision,
        "description": change.description or "", "implementation": change.implementation_plan or "",
        "backout": change.backout_plan or "", "test": change.test_plan or "",
        "created_at": iso(change.created_at), "updated_at": iso(change.updated_at),
    }


def change_views(session, rows: list[Change]) -> list[dict]:
    """Views of many changes: their services and standing approvals in two queries per 500 changes."""
    services: dict[int, list[str]] = {}
    approvals: dict[int, list[str]] = {}
    ids = [c.id for c in rows]
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for change_id, service_id in session.execute(
                select(ChangeService.change_id, ChangeService.service_id).where(ChangeService.change_id.in_(chunk))
                .order_by(ChangeService.change_id, ChangeService.service_id)):
            services.setdefault(change_id, []).append(service_id)
        for change_id, person_id in session.execute(
                select(ChangeVote.change_id, ChangeVote.person_id).where(
                    ChangeVote.change_id.in_(chunk), ChangeVote.withdrawn_at.is_(None),
                    ChangeVote.decision == "approve").order_by(ChangeVote.id)):
            approvals.setdefault(change_id, []).append(person_id)
    return [change_view(c, services.get(c.id, []), approvals.get(c.id, [])) for c in rows]


def _find_change(session, key: str) -> Change:
    m = re.fullmatch(r"(?:CHG-?)?(\d{1,9})", key, re.IGNORECASE)
    change = session.get(Change, int(m[1])) if m else None
    if change is None:
        raise ApiError(404, f"There is no change '{key}'",
                       [f"id: no change '{key}'" + ("" if m else "; say CHG-N or N")])
    return change


def _not_modified(request: web.Request, etag: str, since: datetime) -> bool:
    """Whether the client's copy is the feed as it is (RFC 9110 13.2.2): If-None-Match decides when given,
    compared weakly; else If-Modified-Since."""
    if request.if_none_match is not None:
        return any(tag.value in (etag, "*") for tag in request.if_none_match)
    return request.if_modified_since is not None and since <= request.if_modified_since


def _ics_window(request: web.Request) -> tuple[int, int]:
    """?days= (ahead) and ?past= (back) of /changes.ics, whole days within their limits; 400 otherwise."""
    limits = {"days": (ICS_DAYS, ICS_DAYS_MAX), "past": (ICS_PAST, ICS_PAST_MAX)}
    problems, values = [], {}
    for name in dict.fromkeys(request.query.keys()):
        given = request.query.getall(name)
        if name == "key":  # a feed key, checked before (bot/api_clients.py)
            continue
        if name not in limits:
            problems.append(f"{name}: unknown parameter; parameters: days, past, key")
        elif len(given) > 1:
            problems.append(f"{name}: given {len(given)} times")
        elif not re.fullmatch(r"\d{1,4}", given[0]) or int(given[0]) > limits[name][1]:
            problems.append(f"{name}: expected a whole number of days from 0 to {limits[name][1]}, "
                            f"got {show(given[0])}")
        else:
            values[name] = int(given[0])
    if problems:
        raise ApiError(400, "Bad query parameters", problems)
    return values.get("days", ICS_DAYS), values.get("past", ICS_PAST)


class ChangeRoutes(Routes):
    """The operations tagged ``changes`` in openapi.yaml, each the method of its operationId, and the
    calendar feed ``GET /changes.ics`` beside the API."""

    def __init__(self, runtime):
        super().__init__(runtime)
        self._ics_seen: dict[str, tuple[str, datetime]] = {}  # window → (ETag, since when)

    def _change(self, change_id: int) -> dict:
        with self.ctx.sessions() as s:
            return change_views(s, [_find_change(s, str(change_id))])[0]

    async def changes_create(self, request: web.Request) -> web.Response:
        body = await read_body(request, "ChangeCreate")
        actor = self._acting(request, body["requester"], "requester")
        view = await asyncio.to_thread(self._create_change, actor, body)
        return web.json_response(view, status=201, headers={"Location": f"{PREFIX}/changes/{view['id']}"})

    def _create_change(self, actor: Actor, body: dict) -> dict:
        values = {k: v for k, v in body.items() if k in plan.FIELDS}
        cmd = Command(actor, f"api: change new for {actor.person_id}", via="api")
        try:
            change_id, _ = changes.create(self.ctx, cmd, values, source="api")
        except FormInvalid as exc:
            raise ApiError(422, "The request for change is not valid",
                           [f"{name}: {problem}" for name, problem in exc.errors.items()]) from None
        except UserError as exc:
            raise ApiError(422, "The request for change is not valid", [exc.message]) from None
        return self._change(change_id)

    async def changes_list(self, request: web.Request) -> web.Response:
        query = read_query(request, "changes_list", self.ctx)
        start, end = (parse_rfc3339(query[k]) if k in query else None for k in ("from", "to"))
        if start and end and end <= start:
            raise ApiError(400, "Bad query parameters", [f"to: {iso(end)} is not after from {iso(start)}"])

        def read():
            q = select(Change).order_by(Change.planned_start.desc(), Change.id.desc())
            if "state" in query:
                q = q.where(Change.state == query["state"])
            if "service" in query:
                q = q.where(Change.id.in_(select(ChangeService.change_id)
                                          .where(ChangeService.service_id == query["service"].id)))
            if start:
                q = q.where(Change.planned_end > start)
            if end:
                q = q.where(Change.planned_start < end)
            with self.ctx.sessions() as s:
                return {"changes": change_views(s, s.scalars(q.limit(query.get("limit", CHANGES_SHOWN))).all())}
        return web.json_response(await asyncio.to_thread(read))

    async def changes_get(self, request: web.Request) -> web.Response:
        key = request.match_info["id"]

        def read():
            with self.ctx.sessions() as s:
                return change_views(s, [_find_change(s, key)])[0]
        return web.json_response(await asyncio.to_thread(read))

    async def changes_success_rate(self, request: web.Request) -> web.Response:
        query = read_query(request, "changes_success_rate", self.ctx)
        now = self.ctx.now()
        end = parse_rfc3339(query["to"]) if "to" in query else now
        start = parse_rfc3339(query["from"]) if "from" in query else end - timedelta(days=calendar.RATE_DAYS)
        if end <= start:
            raise ApiError(400, "Bad query parameters", [f"to: {iso(end)} is not after from {iso(start)}"])
        service = query.get("service")

        def read():
            with self.ctx.sessions() as s:
                return calendar.success_rate(s, start, end, service.id if service else None)
        rate = await asyncio.to_thread(read)
        return web.json_response({"from": iso(start), "to": iso(end), "service": service.id if service else None,
                                  "successful": rate.successful, "implemented": rate.implemented,
                                  "rate": None if rate.ratio is None else 100 * rate.ratio})

    async def changes_start(self, request: web.Request) -> web.Response:
        return await self._step(request, "start", "ChangeStep")

    async def changes_complete(self, request: web.Request) -> web.Response:
        return await self._step(request, "complete", "ChangeComplete")

    async def changes_fail(self, request: web.Request) -> web.Response:
        return await self._step(request, "fail", "ChangeFail")

    async def changes_cancel(self, request: web.Request) -> web.Response:
        return await self._step(request, "cancel", "ChangeStep")

    async def _step(self, request: web.Request, verb: str, schema: str) -> web.Response:
        """One step of a change's life, as its chat command run by the person in `by`: the same grammar,
        rights and checks as in Slack or Teams."""
        key = request.match_info["id"]
        body = await read_body(request, schema)
        actor = self._acting(request, body["by"], "by")
        note = " ".join(body.get("note", "").split())
        if verb == "fail" and not note:
            raise ApiError(422, "The request body is not valid", ["note: say what happened"])

        def run() -> tuple[str, Any]:
            with self.ctx.sessions() as s:
                change_id = _find_change(s, key).id
            cmd = Command(actor, f"change {verb} CHG-{change_id}", via="api")
            reply, outcome, _ = guarded(self.ctx, cmd, lambda: approvals.move(
                self.ctx, cmd, change_id, verb, note, body.get("outcome") == "with-issues"))
            return outcome, self._change(change_id) if outcome == "ok" else reply
        outcome, answer = await asyncio.to_thread(run)
        if outcome == "ok":
            return web.json_response(answer)
        if outcome == "refused":
            raise ApiError(403, answer.text, [f"by: {answer.text}"])
        if outcome == "user_error":
            raise ApiError(409, answer.text, [f"state: {answer.text}"])
        ref = answer.text.rsplit(" ", 1)[-1]  # guarded logged it with this reference
        return web.json_response({"error": f"Something went wrong. Reference: {ref}", "problems": [],
                                  "reference": ref}, status=500)

    async def changes_ics(self, request: web.Request) -> web.StreamResponse:
        """GET /changes.ics: streamed as the store is read. Public unless status_page makes the calendar
        private. Calendar clients poll: one aggregate query answers an unchanged feed with 304, by its ETag
        or its Last-Modified."""
        refusal = self.clients.feed_refusal(request, self.ctx.config.status_page.calendar_private)
        if refusal is not None:
            return refusal.response()
        try:
            days, past = _ics_window(request)
        except ApiError as exc:
            return exc.response()
        now, cfg = self.ctx.now(), self.ctx.config
        start, end, window = now - timedelta(days=past), now + timedelta(days=days), f"days={days}&past={past}"

        def version():
            with self.ctx.sessions() as s:
                return calendar.ics_etag(s, cfg, start, end, window)
        etag = await asyncio.to_thread(version)  # read before the events: never newer than what follows
        since = self._ics_since(window, etag, now)
        headers = {"Cache-Control": "no-cache", "ETag": f'"{etag}"'}
        if since <= now:  # never later than the response itself (RFC 9110 8.8.2.1)
            headers["Last-Modified"] = format_datetime(since, usegmt=True)
        if _not_modified(request, etag, since):
            return web.Response(status=304, headers=headers)
        response = web.StreamResponse(headers={"Content-Disposition": 'inline; filename="changes.ics"', **headers})
        response.content_type = "text/calendar"
        response.charset = "utf-8"
        await response.prepare(request)
        pieces = calendar.ics_stream(self.ctx.sessions, cfg, start, end)
        try:
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                await response.write(piece)
        finally:
            await asyncio.to_thread(pieces.close)  # no page more is read, also when the client went away
        await response.write_eof()
        return response

    def _ics_since(self, window: str, etag: str, now: datetime) -> datetime:
        """The Last-Modified of the feed of this window: when this process first served it as it is now, in
        whole seconds, each version a later second than the one before it so that If-Modified-Since tells
        them apart. Unknown after a restart: from then on, which costs each client one full answer."""
        seen = self._ics_seen
        known = seen.pop(window, None)
        if known is None or known[0] != etag:
            since = now.astimezone(timezone.utc).replace(microsecond=0)
            if known is not None and since <= known[1]:
                since = known[1] + timedelta(seconds=1)
            known = (etag, since)
        seen[window] = known  # the most recently asked last
        while len(seen) > ICS_WINDOWS_KEPT:
            del seen[next(iter(seen))]
        return known[1]
