"""The SLA reports: attainment, breaches, and the clocks at risk a page at a time."""
from __future__ import annotations

import asyncio
from datetime import datetime

from aiohttp import web

from bot.api.common import ApiError, Routes, iso, period_view, plain, read_query
from handlers.sla import attainment
from handlers.sla.alertmanager import parse_rfc3339

AT_RISK_PAGE = 100  # GET /sla/at-risk: a page by default (openapi.yaml: AtRiskLimit says so too)


def _at_risk_cursor(text: str) -> tuple[datetime, int]:
    """The clock a page of at-risk clocks ended with, as the previous page's ``next_cursor`` named it."""
    due, _, clock_id = text.partition("~")
    moment = parse_rfc3339(due) if clock_id.isdigit() else None
    if moment is None:
        raise ApiError(400, "Bad query parameters", ["cursor: not a next_cursor this endpoint gave"])
    return moment, int(clock_id)


class SlaRoutes(Routes):
    """The operations tagged ``sla`` in openapi.yaml, each the method of its operationId."""

    async def sla_attainment(self, request: web.Request) -> web.Response:
        query = read_query(request, "sla_attainment", self.ctx)
        service, period = query.get("service"), query["period"]
        by_group = query.get("by") == "group"
        rows = await asyncio.to_thread(attainment.attainment_data, self.ctx, service.id if service else None, period,
                                       by_group)
        return web.json_response({
            "period": period_view(period), "service": service.id if service else None,
            "by": "group" if by_group else None,
            "targets": [{**plain(r), "ok": r.ok} for r in rows if isinstance(r, attainment.TargetAttainment)],
            "availability": [{**plain(r), "ok": r.ok} for r in rows
                             if isinstance(r, attainment.AvailabilityAttainment)],
            "satisfaction": [{**plain(r), "ok": r.ok} for r in rows
                             if isinstance(r, attainment.SatisfactionAttainment)]})

    async def sla_breaches(self, request: web.Request) -> web.Response:
        period = read_query(request, "sla_breaches", self.ctx)["period"]
        rows = await asyncio.to_thread(attainment.breaches_data, self.ctx, period)
        return web.json_response({"period": period_view(period),
                                  "breaches": [{"ticket": f"INC-{r.ticket_id}", **plain(r)} for r in rows]})

    async def sla_at_risk(self, request: web.Request) -> web.Response:
        query = read_query(request, "sla_at_risk")
        after = _at_risk_cursor(query["cursor"]) if "cursor" in query else None
        page = await asyncio.to_thread(attainment.at_risk_page, self.ctx, None, True, after,
                                       query.get("limit", AT_RISK_PAGE))
        return web.json_response({
            "at_risk": [{"ticket": f"INC-{r.ticket_id}", **{k: v for k, v in plain(r).items() if k != "clock_id"}}
                        for r in page.rows],
            "more": page.more,
            "next_cursor": f"{iso(page.next_after[0])}~{page.next_after[1]}" if page.next_after else None})
