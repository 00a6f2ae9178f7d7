"""The knowledge library: search, as ``kb search`` does in chat (published articles, ranked by the store's
own full-text engine)."""
from __future__ import annotations

import asyncio

from aiohttp import web

from bot.api.common import Routes, read_query
from handlers.knowledge import search as library
from handlers.knowledge.articles import number

DEFAULT_LIMIT = 10  # openapi.yaml: KbLimit says so too


def hit_view(hit: library.Hit) -> dict:
    return {"id": number(hit.id), "number": hit.id, "title": hit.title, "kind": hit.kind, "source": hit.source,
            "services": hit.services, "snippet": library.plain_snippet(hit.snippet), "score": hit.score}


class KbRoutes(Routes):
    """The operations tagged ``kb`` in openapi.yaml, each the method of its operationId."""

    async def kb_search(self, request: web.Request) -> web.Response:
        query = read_query(request, "kb_search", self.ctx)
        words = query.get("q", "")  # no words find nothing (an empty list, not an error)
        limit = query.get("limit", DEFAULT_LIMIT)

        def read() -> dict:
            with self.ctx.sessions() as s:
                return {"results": [hit_view(h) for h in library.search(s, words, limit)]}
        return web.json_response(await asyncio.to_thread(read))
