"""Post-incident reviews: the list, one review with its timeline, impact and follow-ups, and the same review
as Markdown (what ``review export`` gives in chat). Reading only: reviews are written in chat, by people."""
from __future__ import annotations

import asyncio
import re
from datetime import date, datetime

from aiohttp import web
from sqlalchemy import select

from bot.api.common import CHANGES_SHOWN, ID_MAX, ApiError, Routes, iso, read_query
from handlers.reviews import export
from handlers.reviews.record import number, today
from storage.models import IncidentReview, Ticket


def _find_review(session, key: str) -> IncidentReview:
    m = re.fullmatch(r"(?:REV-?)?(\d{1,10})", key, re.IGNORECASE)
    review = session.get(IncidentReview, int(m[1])) if m and int(m[1]) <= ID_MAX else None
    if review is None:
        raise ApiError(404, f"There is no review '{key}'",
                       [f"id: no review '{key}'" + ("" if m else "; say REV-N or N")])
    return review


def _json(value):
    """The review's data as JSON values: times in UTC, days as YYYY-MM-DD, names left to the reader."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items() if not k.endswith("_name") and k != "lines"}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def summary_view(review: IncidentReview, title: str, day: date) -> dict:
    return {"id": number(review), "number": review.id, "ticket": f"INC-{review.ticket_id}", "title": title,
            "service": review.service_id, "priority": review.priority, "owner": review.owner,
            "due": review.due.isoformat(), "overdue": review.state == "open" and review.due < day,
            "state": review.state, "opened_at": iso(review.opened_at), "done_at": iso(review.done_at)}


class ReviewRoutes(Routes):
    """The operations tagged ``reviews`` in openapi.yaml, each the method of its operationId."""

    async def reviews_list(self, request: web.Request) -> web.Response:
        query = read_query(request, "reviews_list", self.ctx)
        state, limit, service = query.get("state", "open"), query.get("limit", CHANGES_SHOWN), query.get("service")

        def read() -> dict:
            with self.ctx.sessions() as s:
                q = select(IncidentReview, Ticket.title).join(Ticket, Ticket.id == IncidentReview.ticket_id)
                if state != "all":
                    q = q.where(IncidentReview.state == state)
                if service:
                    q = q.where(IncidentReview.service_id == service.id)
                if query.get("owner"):
                    q = q.where(IncidentReview.owner == query["owner"])
                order = (IncidentReview.due, IncidentReview.id) if state == "open" else (IncidentReview.id.desc(),)
                day = today(self.ctx)
                return {"reviews": [summary_view(r, t, day) for r, t in s.execute(q.order_by(*order).limit(limit))]}
        return web.json_response(await asyncio.to_thread(read))

    def _data(self, key: str) -> dict:
        with self.ctx.sessions() as s:
            return export.view(self.ctx, s, _find_review(s, key), self.ctx.now())

    async def reviews_get(self, request: web.Request) -> web.Response:
        data = await asyncio.to_thread(self._data, request.match_info["id"])
        return web.json_response(_json(data))

    async def reviews_markdown(self, request: web.Request) -> web.Response:
        data = await asyncio.to_thread(self._data, request.match_info["id"])
        return web.Response(text=export.markdown(data), content_type="text/markdown", charset="utf-8",
                            headers={"Content-Disposition": f'inline; filename="{data["id"]}.md"'})
