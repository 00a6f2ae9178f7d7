"""The Prometheus Alertmanager webhook (payload version 4): firing alerts open outages of the service
named by a label, resolved ones end them."""
from __future__ import annotations

import asyncio
import json

from aiohttp import web

from bot.api.common import ApiError, Routes, read_query
from bot.api.spec import show
from handlers.sla import outages
from handlers.sla.alertmanager import PayloadError, parse_webhook

SERVICE_LABEL = "service"  # the Alertmanager label that names the service
FINGERPRINT_MAX = 128 - 33  # outages.fingerprint holds "<alert fingerprint>:<startsAt isoformat>"


class AlertmanagerRoutes(Routes):
    """The operations tagged ``alertmanager`` in openapi.yaml, each the method of its operationId."""

    async def alertmanager_webhook(self, request: web.Request) -> web.Response:
        read_query(request, "alertmanager_webhook")
        raw = await request.read()
        try:
            payload = json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ApiError(400, "The request body is not JSON", [f"(body): {exc}"]) from None
        if payload is None:
            raise ApiError(400, "The request needs a JSON body", ["(body): empty"])
        try:
            events, notes = parse_webhook(payload, SERVICE_LABEL)
        except PayloadError as exc:
            raise ApiError(400, "Not an Alertmanager webhook payload (version 4)", exc.problems) from None
        long = [f"alerts: fingerprint {show(e.fingerprint)} is longer than {FINGERPRINT_MAX} characters"
                for e in events if len(e.fingerprint) > FINGERPRINT_MAX]
        if long:
            raise ApiError(400, "Not an Alertmanager webhook payload (version 4)", long)
        notes += [f"alerts: {e.fingerprint} names service '{e.service}', which is not in the catalogue"
                  for e in events if self.ctx.config.service(e.service) is None]
        counts = await asyncio.to_thread(outages.apply_alerts, self.ctx, events, self._client(request).actor())
        return web.json_response({**counts, "notes": notes})
