"""The suppliers: the list, and a supplier's scorecard with its service credits, as ``supplier`` shows them in
chat (money as decimal text, never a float)."""
from __future__ import annotations

import asyncio

from aiohttp import web

from bot.api.common import ApiError, Routes, read_query
from handlers.core.context import UserError
from handlers.suppliers import scorecard


class SupplierRoutes(Routes):
    """The operations tagged ``suppliers`` in openapi.yaml, each the method of its operationId."""

    async def suppliers_list(self, request: web.Request) -> web.Response:
        month = read_query(request, "suppliers_list").get("month")

        def read() -> dict:
            with self.ctx.reader() as s:
                return {"suppliers": scorecard.supplier_list(self.ctx, s, month)}
        return web.json_response(await asyncio.to_thread(_or_400, read))

    async def suppliers_scorecard(self, request: web.Request) -> web.Response:
        month = read_query(request, "suppliers_scorecard").get("month")
        key = request.match_info["id"]
        group = self.ctx.config.group(key.lower())
        if group is None or group.kind != "supplier":
            known = ", ".join(g.id for g in self.ctx.config.groups if g.kind == "supplier")
            raise ApiError(404, f"There is no supplier '{key}'",
                           [f"id: there is no supplier '{key}'; suppliers: {known}"])

        def read() -> dict:
            with self.ctx.reader() as s:
                return scorecard.scorecard(self.ctx, s, group.id, month).to_dict()
        return web.json_response(await asyncio.to_thread(_or_400, read))


def _or_400(read):
    try:
        return read()
    except UserError as exc:  # a month not yet begun
        raise ApiError(400, "Bad query parameters", [f"month: {exc.message}"]) from None
