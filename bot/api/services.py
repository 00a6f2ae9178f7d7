"""The service catalogue, availability, and outages recorded through the API."""
from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime

from aiohttp import web
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from bot.api.common import (ID_MAX, ApiError, Routes, find_service, iso, not_future, period_view, plain, read_body,
                            read_query, service_problems, time_of)
from handlers.core.context import Actor, Command
from handlers.core.dependencies import Reach, dependency_graph
from handlers.services import impact
from handlers.sla import attainment, dependents, outages
from handlers.sla import availability as availability_math
from handlers.sla.alertmanager import parse_rfc3339
from handlers.sla.dependents import StateWatch
from storage.models import Outage, ServiceStatus

OUTAGE_NUMBER = re.compile(r"^OUT-?(\d+)$", re.IGNORECASE)
AUTO_FINGERPRINT = "#"  # outages posted without an id get "#<uuid>", which no client id can be


class _Raced(Exception):
    """Another request stored the same idempotency key first."""


def outage_view(outage: Outage) -> dict:
    external = outage.fingerprint if outage.source == "api" and not outage.fingerprint.startswith(
        AUTO_FINGERPRINT) else None
    return {"id": f"OUT-{outage.id}", "number": outage.id, "external_id": external, "service": outage.service_id,
            "kind": outage.kind, "source": outage.source, "summary": outage.summary or "",
            "started_at": iso(outage.started_at), "ended_at": iso(outage.ended_at), "runbook": outage.runbook}


def _find_outage(session, key: str) -> Outage:
    m = OUTAGE_NUMBER.match(key)
    outage = (session.get(Outage, int(m[1])) if int(m[1]) <= ID_MAX else None) if m else session.scalar(
        select(Outage).where(Outage.source == "api", Outage.fingerprint == key))
    if outage is None:
        raise ApiError(404, f"There is no outage '{key}'", [f"id: no outage '{key}'; say OUT-N or the id it was "
                                                             "posted with"])
    return outage


class ServiceRoutes(Routes):
    """The operations tagged ``services`` and ``outages`` in openapi.yaml, each the method of its operationId."""

    async def services_list(self, request: web.Request) -> web.Response:
        read_query(request, "services_list")
        return web.json_response(await asyncio.to_thread(self._services))

    def _services(self) -> dict:
        ctx, now = self.ctx, self.ctx.now()
        with ctx.sessions() as s:
            states = {row.service_id: row for row in s.scalars(select(ServiceStatus))}
            current = s.scalars(select(Outage).where(Outage.started_at <= now,
                                                     or_(Outage.ended_at.is_(None), Outage.ended_at > now))
                                .order_by(Outage.started_at, Outage.id)).all()
        out = []
        for svc in ctx.config.services:
            row = states.get(svc.id)
            out.append({
                "id": svc.id, "name": svc.name, "description": svc.description, "owner": svc.owner,
                "team": svc.team, "tier": svc.tier, "calendar": svc.calendar, "channel": svc.channel,
                "suppliers": list(svc.suppliers),
                "depends_on": [{"service": d.service, "impact": d.impact} for d in svc.depends_on],
                "status": {"state": row.state if row else "operational", "message": row.message if row else "",
                           "since": iso(row.since) if row else None},
                "open_outages": [outage_view(o) for o in current if o.service_id == svc.id],
            })
        return {"services": out}

    async def services_availability(self, request: web.Request) -> web.Response:
        service = find_service(self.ctx, request.match_info["id"], "id", status=404)
        period = read_query(request, "services_availability", self.ctx)["period"]
        return web.json_response(await asyncio.to_thread(self._availability, service.id, period))

    def _availability(self, service_id: str, period: attainment.Period) -> dict:
        ctx, now = self.ctx, self.ctx.now()
        with ctx.sessions() as s:
            start = period.start or s.scalar(select(Outage.started_at).where(Outage.service_id == service_id)
                                             .order_by(Outage.started_at).limit(1))
            end = min(period.end or now, now)
            result = outages.service_availability(s, service_id, start, end, now) if start else None
            query = select(Outage).where(Outage.service_id == service_id).order_by(Outage.started_at, Outage.id)
            if period.start:
                query = query.where(or_(Outage.ended_at.is_(None), Outage.ended_at > period.start))
            if period.end:
                query = query.where(Outage.started_at < period.end)
            listed = [outage_view(o) for o in s.scalars(query)]
        agreed = result.agreed_seconds if result else 0.0
        down = result.downtime_seconds if result else 0.0
        share = 100 * result.ratio if result and result.ratio is not None else None
        targets = []
        for agreement_id, target_service, goal in outages.availability_targets(ctx):
            if target_service != service_id:
                continue
            budget = availability_math.error_budget_seconds(goal / 100, agreed) if goal < 100 else 0.0
            targets.append({"agreement": agreement_id, "goal": goal, "met": None if share is None else share >= goal,
                            "error_budget_seconds": budget, "budget_remaining_seconds": budget - down})
        return {"service": service_id, "period": period_view(period), "agreed_seconds": agreed,
                "downtime_seconds": down, "availability": share, "targets": targets, "outages": listed}

    async def services_dependencies(self, request: web.Request) -> web.Response:
        service = find_service(self.ctx, request.match_info["id"], "id", status=404)
        read_query(request, "services_dependencies")
        return web.json_response(await asyncio.to_thread(self._dependencies, service.id))

    def _dependencies(self, service_id: str) -> dict:
        ctx = self.ctx
        graph = dependency_graph(ctx.config)
        with ctx.reader() as s:
            affected = dependents.affected_by(ctx, service_id, s)
        return {"service": service_id,
                "depends_on": [{"service": d.service, "impact": d.impact}
                               for d in ctx.config.service(service_id).depends_on],
                "dependencies": self._reach_views(graph.dependencies(service_id)),
                "dependents": self._reach_views(graph.dependents(service_id)),
                "affected_by": dependents.views(ctx, affected)}

    def _reach_views(self, found: list[Reach]) -> list[dict]:
        return [{"service": r.service, "name": self.ctx.config.service_names([r.service]), "impact": r.impact,
                 "path": list(r.path)} for r in found]

    async def services_impact(self, request: web.Request) -> web.Response:
        service = find_service(self.ctx, request.match_info["id"], "id", status=404)
        read_query(request, "services_impact")
        return web.json_response(plain(await asyncio.to_thread(impact.impact_data, self.ctx, service)))

    async def outages_create(self, request: web.Request) -> web.Response:
        body = await read_body(request, "OutageCreate")
        ctx, now = self.ctx, self.ctx.now()
        started_at = parse_rfc3339(body["started_at"])
        ended_at = time_of(body["ended_at"], now) if "ended_at" in body else None
        problems = service_problems(ctx, body["service"], "service")
        if body.get("id") and OUTAGE_NUMBER.match(body["id"]):
            problems.append(f"id: '{body['id']}' looks like svcbot's own OUT-N numbers; choose another id")
        if ended_at is not None and ended_at < started_at:
            problems.append(f"ended_at: {iso(ended_at)} is before started_at {iso(started_at)}")
        if body["kind"] != "maintenance":
            problems += not_future("started_at", started_at, now)
            if ended_at is not None:
                problems += not_future("ended_at", ended_at, now)
        if problems:
            raise ApiError(422, "The request body is not valid", problems)
        service = ctx.config.service(body["service"])
        status, view = await asyncio.to_thread(self._create_outage, self._client(request).actor(), service.id, body,
                                               started_at, ended_at)
        return web.json_response(view, status=status)

    def _existing_outage(self, key: str | None) -> dict | None:
        if not key:
            return None
        with self.ctx.sessions() as s:
            outage = s.scalar(select(Outage).where(Outage.source == "api", Outage.fingerprint == key))
            return {**outage_view(outage), "duplicate": True} if outage else None

    def _create_outage(self, actor: Actor, service_id: str, body: dict, started_at: datetime,
                       ended_at: datetime | None) -> tuple[int, dict]:
        key = body.get("id")
        existing = self._existing_outage(key)
        if existing:
            return 200, existing
        cmd = Command(actor, f"api: {body['kind']} outage of {service_id}" + (f" ({key})" if key else ""))
        try:
            with self.ctx.change(cmd) as work:
                watch = StateWatch(work, service_id)
                outage = outages.open_outage(work, service_id, body["kind"], "api", key or
                                             AUTO_FINGERPRINT + uuid.uuid4().hex, started_at, body.get("summary", ""))
                if outage is None:
                    raise _Raced(key)
                if ended_at is not None:
                    outages.close_outage(work, outage, ended_at)
                watch.settle(f"outage:{outage.id}:open", body.get("summary", ""))
                view = {**outage_view(outage), "duplicate": False}
        except (IntegrityError, _Raced):
            existing = self._existing_outage(key)  # the same id, posted twice at once
            if existing is None:
                raise
            return 200, existing
        return 201, view

    async def outages_end(self, request: web.Request) -> web.Response:
        key = request.match_info["id"]
        body = await read_body(request, "OutageEnd", optional=True)
        now = self.ctx.now()
        ended_at = time_of(body.get("ended_at"), now)
        problems = not_future("ended_at", ended_at, now)
        if problems:
            raise ApiError(422, "The request body is not valid", problems)
        return web.json_response(await asyncio.to_thread(self._end_outage, self._client(request).actor(), key,
                                                         ended_at, "ended_at" in body))

    def _end_outage(self, actor: Actor, key: str, ended_at: datetime, given: bool) -> dict:
        cmd = Command(actor, f"api: end outage {key}")
        with self.ctx.change(cmd) as work:
            outage = _find_outage(work.session, key)
            watch = StateWatch(work, outage.service_id)
            name = f"OUT-{outage.id}"
            if outage.source != "api":
                raise ApiError(409, f"{name} came from {outage.source}; it ends there",
                               [f"id: {name} was recorded by {outage.source}, not through the API"])
            if ended_at < outage.started_at:
                raise ApiError(422, "The request body is not valid",
                               [f"ended_at: {iso(ended_at)} is before {name} started ({iso(outage.started_at)})"])
            if outage.ended_at is not None and outage.ended_at <= work.now:
                if given and outage.ended_at == ended_at:
                    return {**outage_view(outage), "duplicate": True}
                raise ApiError(409, f"{name} has ended already",
                               [f"id: {name} ended at {iso(outage.ended_at)}"])
            outages.close_outage(work, outage, ended_at)
            watch.settle(f"outage:{outage.id}:end")
            return {**outage_view(outage), "duplicate": False}
