"""Pulse and after-ticket surveys: send one on a person's behalf, list, read (results hidden below the
minimum number of respondents), close."""
from __future__ import annotations

import asyncio
import re

from aiohttp import web
from sqlalchemy import func, select

from bot.api.common import CHANGES_SHOWN, PREFIX, ApiError, Routes, iso, read_body, read_query
from handlers.core.context import Actor, Command, Context, FormInvalid, Refused, UserError
from handlers.sla.alertmanager import parse_rfc3339
from handlers.surveys import commands as surveys
from handlers.surveys import record, satisfaction
from handlers.surveys import results as survey_results
from storage.models import Survey, SurveyAnswer


def _survey_number(key: str) -> int | None:
    m = re.fullmatch(r"(?:SRV-?)?(\d{1,9})", key, re.IGNORECASE)
    return int(m[1]) if m else None


def _find_survey(session, key: str) -> Survey:
    number = _survey_number(key)
    survey = session.get(Survey, number) if number is not None else None
    if survey is None:
        raise ApiError(404, f"There is no survey '{key}'",
                       [f"id: no survey '{key}'" + ("" if number is not None else "; say SRV-N or N")])
    return survey


def _survey_head(survey: Survey) -> dict:
    return {"id": record.number(survey), "number": survey.id, "kind": survey.kind, "question": survey.question,
            "scale": survey.scale, "anonymous": survey.anonymous, "owner": survey.owner, "service": survey.service_id,
            "ticket": f"INC-{survey.ticket_id}" if survey.ticket_id else None, "state": survey.state,
            "created_at": iso(survey.created_at), "opens_at": iso(survey.opens_at),
            "closes_at": iso(survey.closes_at), "closed_at": iso(survey.closed_at)}


def survey_view(ctx: Context, session, survey: Survey) -> dict:
    """A survey and its results. Nothing in it tells who answered an anonymous survey: its results and
    comments stay hidden below surveys.min_respondents, its comments carry no names and come in an order
    that says nothing (alphabetical), and who was asked is only counted."""
    results = survey_results.results_of(session, survey)
    hide = survey_results.hidden(ctx, survey, results)
    if survey.audience_kind == "channel":
        audience, asked = list(survey.audience), None
    else:
        audience, asked = (None if survey.anonymous else list(survey.audience)), len(survey.audience)
    head = _survey_head(survey)
    return {**{k: head[k] for k in ("id", "number", "kind", "question", "scale", "anonymous")},
            "comment": survey.ask_comment, "audience_kind": survey.audience_kind, "audience": audience,
            "asked": asked, **{k: head[k] for k in ("owner", "service", "ticket", "state", "created_at", "opens_at",
                                                     "closes_at", "closed_at")},
            "answers": results.answers, "hidden": hide,
            "results": None if hide else _results_view(ctx, session, survey, results)}


def _results_view(ctx: Context, session, survey: Survey, results: satisfaction.Results) -> dict:
    trend = None
    previous = survey_results.previous_survey(session, survey)
    if previous is not None:
        before = survey_results.results_of(session, previous)
        change = None if survey_results.hidden(ctx, previous, before) else satisfaction.trend(results, before)
        if change is not None:
            trend = {"previous": record.number(previous), "change": change}
    comments: list = []
    if not survey.comments_purged:
        newest = (select(SurveyAnswer.comment, SurveyAnswer.person_id)
                  .where(SurveyAnswer.survey_id == survey.id, SurveyAnswer.comment.is_not(None))
                  .order_by(SurveyAnswer.answered_at.desc(), SurveyAnswer.id.desc()).limit(record.SHOWN_COMMENTS))
        rows = session.execute(newest).all()
        if survey.anonymous:
            comments = sorted(text for text, _ in rows)
        else:
            comments = [{"person": person, "comment": text} for text, person in rows]
    return {"answers": results.answers, "invited": results.invited, "response_rate": results.response_rate,
            "score_name": results.score_name, "score": results.score, "csat": results.csat, "nps": results.nps,
            "yes": results.yes, "distribution": {str(v): n for v, n in sorted(results.distribution.items())},
            "trend": trend, "comments": comments}


def survey_summaries(ctx: Context, session, rows: list[Survey]) -> list[dict]:
    """Surveys with their headline scores: the answers of those without kept results in one query."""
    live = [s.id for s in rows if s.results is None]
    counts: dict[int, dict[int, int]] = {}
    for i in range(0, len(live), 500):
        for survey_id, value, n in session.execute(
                select(SurveyAnswer.survey_id, SurveyAnswer.value, func.count())
                .where(SurveyAnswer.survey_id.in_(live[i:i + 500]))
                .group_by(SurveyAnswer.survey_id, SurveyAnswer.value)):
            counts.setdefault(survey_id, {})[value] = n
    out = []
    for survey in rows:
        if survey.results is not None:
            results = satisfaction.Results.from_dict(survey.results)
        else:
            invited = len(survey.audience) if survey.audience_kind == "people" else None
            results = satisfaction.tally(survey.scale, counts.get(survey.id, {}), invited)
        hide = survey_results.hidden(ctx, survey, results)
        out.append({**_survey_head(survey), "answers": results.answers, "hidden": hide,
                    "score_name": results.score_name, "score": None if hide else results.score})
    return out


class SurveyRoutes(Routes):
    """The operations tagged ``surveys`` in openapi.yaml, each the method of its operationId."""

    def _survey(self, survey_id: int) -> dict:
        with self.ctx.sessions() as s:
            return survey_view(self.ctx, s, _find_survey(s, str(survey_id)))

    async def surveys_create(self, request: web.Request) -> web.Response:
        body = await read_body(request, "SurveyCreate")
        actor = self._acting(request, body["owner"], "owner")
        view = await asyncio.to_thread(self._create_survey, actor, body)
        return web.json_response(view, status=201, headers={"Location": f"{PREFIX}/surveys/{view['id']}"})

    def _create_survey(self, actor: Actor, body: dict) -> dict:
        """The chat form's text values: lists as comma-separated names, true and false as yes and no, the
        closing time in UTC (its schema has made sure it is an RFC 3339 date-time)."""
        values: dict[str, str] = {}
        for name in surveys.FIELDS:
            if name not in body:
                continue
            value = body[name]
            if isinstance(value, list):
                value = ",".join(value)
            elif isinstance(value, bool):
                value = "yes" if value else "no"
            elif name == "closes":
                value = parse_rfc3339(value).isoformat()
            values[name] = value
        cmd = Command(actor, f"api: survey new for {actor.person_id}", via="api")
        try:
            survey_id, _ = surveys.create(self.ctx, cmd, values)
        except Refused as exc:
            raise ApiError(403, exc.message, [f"owner: {exc.message}"]) from None
        except FormInvalid as exc:
            raise ApiError(422, "The survey is not valid",
                           [f"{name}: {problem}" for name, problem in exc.errors.items()]) from None
        except UserError as exc:
            raise ApiError(422, "The survey is not valid", [exc.message]) from None
        return self._survey(survey_id)

    async def surveys_list(self, request: web.Request) -> web.Response:
        query = read_query(request, "surveys_list", self.ctx)

        def read():
            q = select(Survey).order_by(Survey.created_at.desc(), Survey.id.desc())
            if "state" in query:
                q = q.where(Survey.state == query["state"])
            if "kind" in query:
                q = q.where(Survey.kind == query["kind"])
            if "service" in query:
                q = q.where(Survey.service_id == query["service"].id)
            with self.ctx.sessions() as s:
                rows = s.scalars(q.limit(query.get("limit", CHANGES_SHOWN))).all()
                return {"surveys": survey_summaries(self.ctx, s, rows)}
        return web.json_response(await asyncio.to_thread(read))

    async def surveys_get(self, request: web.Request) -> web.Response:
        key = request.match_info["id"]

        def read():
            with self.ctx.sessions() as s:
                return survey_view(self.ctx, s, _find_survey(s, key))
        return web.json_response(await asyncio.to_thread(read))

    async def surveys_close(self, request: web.Request) -> web.Response:
        key = request.match_info["id"]
        body = await read_body(request, "SurveyClose")
        actor = self._acting(request, body["person"], "person")

        def run() -> dict:
            with self.ctx.sessions() as s:
                survey_id = _find_survey(s, key).id
            cmd = Command(actor, f"survey close {record.number(survey_id)}", via="api")
            try:
                surveys.close_cmd(self.ctx, cmd, survey_id)
            except Refused as exc:
                raise ApiError(403, exc.message, [f"person: {exc.message}"]) from None
            except UserError as exc:
                raise ApiError(409, exc.message, [f"state: {exc.message}"]) from None
            return self._survey(survey_id)
        return web.json_response(await asyncio.to_thread(run))
