"""The continual service improvement (CSI) register: list, raise on a person's behalf, mark done."""
from __future__ import annotations

import asyncio
import re
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select

from bot.api.common import CHANGES_SHOWN, PREFIX, ApiError, Routes, iso, read_body, read_query
from handlers.core.context import Actor, Command, Context, FormInvalid, Refused, UserError
from handlers.services import csi
from handlers.surveys import record
from storage.models import CsiItem


def _find_csi(session, key: str) -> CsiItem:
    m = re.fullmatch(r"(?:CSI-?)?(\d{1,9})", key, re.IGNORECASE)
    item = session.get(CsiItem, int(m[1])) if m else None
    if item is None:
        raise ApiError(404, f"There is no CSI item '{key}'",
                       [f"id: no CSI item '{key}'" + ("" if m else "; say CSI-N or N")])
    return item


def csi_view(ctx: Context, item: CsiItem) -> dict:
    today = ctx.now().astimezone(ZoneInfo(ctx.config.bot.timezone)).date()
    return {"id": csi.number(item), "number": item.id, "title": item.title, "owner": item.owner,
            "due": item.due.isoformat() if item.due else None,
            "overdue": item.state == "open" and item.due is not None and item.due < today,
            "service": item.service_id, "survey": record.number(item.survey_id) if item.survey_id else None,
            "ticket": f"INC-{item.ticket_id}" if item.ticket_id else None, "state": item.state,
            "created_by": item.created_by, "created_at": iso(item.created_at), "done_at": iso(item.done_at),
            "done_by": item.done_by, "note": item.note or ""}


class CsiRoutes(Routes):
    """The operations tagged ``csi`` in openapi.yaml, each the method of its operationId."""

    async def csi_list(self, request: web.Request) -> web.Response:
        query = read_query(request, "csi_list", self.ctx)
        state, limit = query.get("state", "open"), query.get("limit", CHANGES_SHOWN)
        service = query.get("service")

        def read():
            with self.ctx.sessions() as s:
                items = csi.open_items(s, service.id if service else None, limit) if state != "done" else []
                if state != "open" and len(items) < limit:
                    q = select(CsiItem).where(CsiItem.state == "done")
                    if service:
                        q = q.where(CsiItem.service_id == service.id)
                    items += s.scalars(q.order_by(CsiItem.done_at.desc(), CsiItem.id.desc())
                                       .limit(limit - len(items))).all()
                return {"items": [csi_view(self.ctx, i) for i in items]}
        return web.json_response(await asyncio.to_thread(read))

    async def csi_create(self, request: web.Request) -> web.Response:
        body = await read_body(request, "CsiCreate")
        actor = self._acting(request, body["person"], "person")
        view = await asyncio.to_thread(self._create_csi, actor, body)
        return web.json_response(view, status=201, headers={"Location": f"{PREFIX}/csi/{view['id']}"})

    def _create_csi(self, actor: Actor, body: dict) -> dict:
        values = {k: v for k, v in body.items() if k in csi.FIELDS}
        cmd = Command(actor, f"api: csi add for {actor.person_id}", via="api")
        try:
            item_id = csi.add(self.ctx, cmd, values)[0]
        except FormInvalid as exc:
            raise ApiError(422, "The improvement is not valid",
                           [f"{name}: {problem}" for name, problem in exc.errors.items()]) from None
        except UserError as exc:
            raise ApiError(422, "The improvement is not valid", [exc.message]) from None
        with self.ctx.sessions() as s:
            return csi_view(self.ctx, _find_csi(s, str(item_id)))

    async def csi_done(self, request: web.Request) -> web.Response:
        key = request.match_info["id"]
        body = await read_body(request, "CsiDone")
        actor = self._acting(request, body["person"], "person")
        note = " ".join(body.get("note", "").split())

        def run() -> dict:
            with self.ctx.sessions() as s:
                item_id = _find_csi(s, key).id
            cmd = Command(actor, f"csi done CSI-{item_id}", via="api")
            try:
                csi.done(self.ctx, cmd, item_id, note)
            except Refused as exc:
                raise ApiError(403, exc.message, [f"person: {exc.message}"]) from None
            except UserError as exc:
                raise ApiError(409, exc.message, [f"state: {exc.message}"]) from None
            with self.ctx.sessions() as s:
                return csi_view(self.ctx, _find_csi(s, str(item_id)))
        return web.json_response(await asyncio.to_thread(run))
