"""Problems and known errors: list them, read one with its incidents and impact, and link incidents to one
on a person's behalf, through the same handler and rights as ``problem link`` in chat."""
from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import func, select

from bot.api.common import CHANGES_SHOWN, ApiError, Routes, iso, read_body, read_query
from handlers.core.context import Command, Context, Refused, UserError
from handlers.problems import commands, record
from storage.models import Problem, ProblemIncident


def _find(session, key: str) -> Problem:
    try:
        return record.find(session, key if key.upper().startswith("PRB") else f"PRB-{key}", "")
    except UserError:
        raise ApiError(404, f"There is no problem '{key}'", [f"id: no problem '{key}'; say PRB-N or N"]) from None


def summary_view(problem: Problem, incidents: int) -> dict:
    return {"id": record.number(problem), "number": problem.id, "title": problem.title, "state": problem.state,
            "services": list(problem.services), "owner": problem.owner, "incidents": incidents,
            "source": problem.source, "external_id": problem.external_id, "updated_at": iso(problem.updated_at)}


def problem_view(ctx: Context, session, problem: Problem) -> dict:
    figures = record.impact(ctx, session, problem.id, ctx.now())
    tickets = record.tickets_of(session, problem.id)
    return {**summary_view(problem, len(tickets)), "symptom": problem.symptom, "workaround": problem.workaround,
            "cause": problem.cause, "article": f"KB-{problem.article_id}" if problem.article_id else None,
            "fixed_by": f"CHG-{problem.fix_change_id}" if problem.fix_change_id else None,
            "resolved_at": iso(problem.resolved_at), "reopened": problem.reopened,
            "impact": {"incidents": figures.incidents, "open": figures.still_open,
                       "business_seconds": round(figures.business_seconds, 1),
                       "clock_seconds": round(figures.clock_seconds, 1), "breaches": figures.breaches},
            "incident_list": [{"id": f"INC-{t.id}", "title": t.title, "service": t.service_id, "state": t.state,
                               "opened_at": iso(t.opened_at), "resolved_at": iso(t.resolved_at)} for t in tickets]}


class ProblemRoutes(Routes):
    """The operations tagged ``problems`` in openapi.yaml, each the method of its operationId."""

    async def problems_list(self, request: web.Request) -> web.Response:
        query = read_query(request, "problems_list", self.ctx)
        states = [query["state"]] if query.get("state") else ["open", "known-error"]
        service, limit = query.get("service"), query.get("limit", CHANGES_SHOWN)

        def read() -> dict:
            with self.ctx.reader() as s:
                problems = s.scalars(select(Problem).where(Problem.state.in_(states))
                                     .order_by(Problem.updated_at.desc(), Problem.id.desc())).all()
                if service:  # services is a JSON list: filtered here, the same on SQLite and PostgreSQL
                    problems = [p for p in problems if service.id in p.services]
                problems = problems[:limit]
                counts = dict(s.execute(select(ProblemIncident.problem_id, func.count())
                                        .where(ProblemIncident.problem_id.in_([p.id for p in problems]))
                                        .group_by(ProblemIncident.problem_id)).all()) if problems else {}
                return {"problems": [summary_view(p, counts.get(p.id, 0)) for p in problems]}
        return web.json_response(await asyncio.to_thread(read))

    async def problems_get(self, request: web.Request) -> web.Response:
        key = request.match_info["id"]

        def read() -> dict:
            with self.ctx.reader() as s:
                return problem_view(self.ctx, s, _find(s, key))
        return web.json_response(await asyncio.to_thread(read))

    async def problems_link(self, request: web.Request) -> web.Response:
        key = request.match_info["id"]
        body = await read_body(request, "ProblemLink")
        actor = self._acting(request, body["person"], "person")

        def run() -> dict:
            with self.ctx.reader() as s:
                problem_id = _find(s, key).id
            cmd = Command(actor, f"problem link PRB-{problem_id} {' '.join(body['incidents'])}", via="api")
            try:
                commands.link(self.ctx, cmd, f"PRB-{problem_id}", body["incidents"])
            except Refused as exc:
                raise ApiError(403, exc.message, [f"person: {exc.message}"]) from None
            except UserError as exc:
                status = 422 if exc.message.startswith("There is no ticket") else 409
                raise ApiError(status, exc.message, [f"incidents: {exc.message}"]) from None
            with self.ctx.reader() as s:
                return problem_view(self.ctx, s, _find(s, str(problem_id)))
        return web.json_response(await asyncio.to_thread(run))
