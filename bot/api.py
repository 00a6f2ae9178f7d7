"""The JSON API for other systems, under /api/v1: tickets and their history, outages, the service catalogue
and its availability, the SLA reports, requests for change, pulse and after-ticket surveys, the CSI register,
the Prometheus Alertmanager webhook, and the OpenAPI document that describes all of them. Beside it, as the
status page is (``status_page`` in app.yaml), ``GET /changes.ics``: the forward schedule of change as iCalendar.

- Every endpoint but the OpenAPI document wants the bearer token of an API client, with the scope the
  operation needs (bot/api_clients.py: tokens, scopes, on whose behalf; ``SVCBOT_API_TOKEN`` is the client
  ``legacy``). Without any client the API is off and says so (503); a missing or unknown token is 401, a token
  without the scope 403.
- Every write runs as the client (platform ``api``, person ``api``, the client's name in the audit) inside
  ``ctx.change(...)``, so the audit and outbox rows commit with the change or not at all. The Alertmanager
  webhook writes through ``handlers.outages.apply_alerts``, which keeps its own transaction with the same
  actor. Changes, surveys and CSI items are the exception: they are requested, started, run, closed … by
  people, so those calls name the person (``requester``, ``by``, ``owner``, ``person``) and run as them
  (platform ``api``), through the same handlers and rights as chat, if the client may act on their behalf
  (403 otherwise). A ticket may name its ``requester`` (the same rule): resolved through the API, it arms
  their after-ticket survey as chat does.
- Who answered an anonymous survey is never told: its results and comments stay hidden below
  ``surveys.min_respondents`` answers, its comments carry no names, and who was asked is only counted.
- ``OPENAPI`` below is the one description of the API: routes are registered from its paths, and request
  bodies and query parameters are checked against its schemas by ``check``.
- A bad request gets ``{"error": ..., "problems": [...]}`` and changes nothing: 400 (not JSON, a bad query
  parameter, a malformed Alertmanager payload), 403 (a token without the scope, a person the client may not
  act for, or a person who may not do it), 404 (an unknown
  ticket, outage, service, change, survey or CSI item in the path), 409 (the request conflicts with what is
  stored), 422 (JSON that does not fit the schema or names something unknown). Anything unexpected is logged
  with a reference and answered 500 with it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from bot import api_clients
from bot.api_clients import ApiError
from handlers import availability as availability_math
from handlers import breaches, change_calendar, changes, csi, outages, satisfaction, sla, surveys, tickets
from handlers.alertmanager import PayloadError, parse_rfc3339, parse_webhook
from handlers.clocks import DONE_STATES, OPEN_STATES, replay
from handlers.config import RISKS, SCALES
from handlers.core import Actor, AlreadyHandled, Command, Context, FormInvalid, Refused, UserError
from handlers.router import guarded
from storage.models import (Change, ChangeService, ChangeVote, ClockNotice, CsiItem, Outage, ServiceStatus, SlaClock,
                            Survey, SurveyAnswer, Ticket, TicketEvent)

log = logging.getLogger("svcbot.api")

PREFIX = "/api/v1"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
ACTOR = Actor(person_id="api", name="API", platform="api")
SERVICE_LABEL = "service"  # the Alertmanager label that names the service
OUTAGE_NUMBER = re.compile(r"^OUT-?(\d+)$", re.IGNORECASE)
AUTO_FINGERPRINT = "#"  # outages posted without an id get "#<uuid>", which no client id can be
FINGERPRINT_MAX = 128 - 33  # outages.fingerprint holds "<alert fingerprint>:<startsAt isoformat>"
UTC = timezone.utc
CHANGES_SHOWN, CHANGES_MAX = 100, 1000  # GET /changes: by default, and at most
ICS_PATH = "/changes.ics"  # public, like a status page: the forward schedule of change for calendar clients
ICS_DAYS, ICS_DAYS_MAX = 180, 730  # ahead
ICS_PAST, ICS_PAST_MAX = 30, 365  # back
CLIENT = web.RequestKey("api_client", api_clients.Client)  # the client of the request's token
ID_MAX = 2**31 - 1  # the largest row id (PostgreSQL's integer); a larger number names nothing: 404


# ================================================================================== the OpenAPI document

def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _time(description: str, nullable: bool = False) -> dict:
    return {"type": ["string", "null"] if nullable else "string", "format": "date-time",
            "description": description}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


ID_TEXT = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$", "maxLength": 100}
PERIOD_TEXT = ("this-month (default), last-month, this-week, today, Nd (the last N days, e.g. 30d), "
               "YYYY-MM (a calendar month), or all; months, weeks and days in the bot's time zone")
CLOCK_STATES = ["running", "paused", "met", "breached", "unused"]
SERVICE_STATES = ["operational", "degraded", "partial-outage", "major-outage", "maintenance"]
OUTAGE_KINDS = ["unplanned", "maintenance", "partial"]
SURVEY_KINDS = ("pulse", "ticket")
SURVEY_STATES = ("scheduled", "open", "closed", "cancelled")
CSI_STATES = ("open", "done", "all")
LIST_ITEM = {"type": "string", "pattern": r"^[^,\s]+$", "maxLength": 128}  # sent on as a comma-separated list

SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object", "required": ["error", "problems"],
        "properties": {
            "error": {"type": "string", "description": "what was wrong, in a sentence"},
            "problems": {"type": "array", "items": {"type": "string"},
                         "description": "every fault, each by the field or parameter it concerns"},
            "reference": {"type": "string", "description": "500 only: the reference in the server's log"},
        },
    },
    "TicketCreate": {
        "type": "object", "additionalProperties": False, "required": ["service", "priority", "title"],
        "properties": {
            "service": {"type": "string", "minLength": 1, "maxLength": 64,
                        "description": "a service id (or name) from the catalogue"},
            "priority": {"type": "string", "enum": list(tickets.PRIORITIES)},
            "title": {"type": "string", "minLength": 1, "maxLength": 1000},
            "external_id": {"type": "string", "pattern": r"^[^/]+$", "maxLength": 128,
                            "description": "the ticket's id in the sending system; makes the request idempotent "
                                           "(the same external_id again answers 200 with the stored ticket and "
                                           "changes nothing) and addresses it as ext:EXTERNAL_ID"},
            "kind": {"type": "string", "enum": ["incident", "request"], "default": "incident"},
            "opened_at": _time("when it was opened (default now); not in the future"),
            "group": {"type": "string", "maxLength": 128,
                      "description": "the internal team it is assigned to; unassigned if left out"},
            "state": {"type": "string", "enum": list(OPEN_STATES), "default": "new",
                      "description": "the state it starts in; a clock that pauses in that state does not run "
                                     "until the ticket leaves it"},
            "requester": {"type": "string", "minLength": 1, "maxLength": 64,
                          "description": "a person id from app.yaml: who asked for it. When the ticket is resolved, "
                                         "they get the after-ticket survey if its service has one "
                                         "(ticket_survey in app.yaml)"},
        },
    },
    "TicketEventCreate": {
        "type": "object", "additionalProperties": False, "required": ["kind"],
        "properties": {
            "kind": {"type": "string", "enum": list(tickets.EVENT_KINDS),
                     "description": "state (value: a state), priority (value: P1-P4), assign (value: an internal "
                                    "team, or null for unassigned), supplier (value: a supplier, or null), "
                                    "respond, resolve, reopen, close (no value)"},
            "value": {"type": ["string", "null"], "maxLength": 128},
            "at": _time("when it happened (default now); not before the ticket was opened, not in the future; "
                        "events may arrive in any order"),
            "event_id": {"type": "string", "minLength": 1, "maxLength": 200,
                         "description": "your id for this event: a second request with the same event_id changes "
                                        "nothing and answers 200 with \"duplicate\": true (remembered for 7 days)"},
        },
    },
    "TicketEvent": {
        "type": "object", "required": ["kind", "value", "at", "recorded_at", "by"],
        "properties": {
            "kind": {"type": "string", "enum": ["open", *tickets.EVENT_KINDS]},
            "value": {"type": ["string", "null"]},
            "at": _time("when it happened"),
            "recorded_at": _time("when svcbot heard of it"),
            "by": {"type": ["string", "null"], "description": "the person (or api) who recorded it"},
        },
    },
    "ClockLevel": {
        "type": "object", "required": ["level", "at"],
        "properties": {"level": {"type": "number", "description": "% of the target; 100 is the breach"},
                       "at": _time("when the level was (or, while the clock runs, will be) reached")},
    },
    "ClockNotice": {
        "type": "object", "required": ["level", "at", "acknowledged_by", "acknowledged_at"],
        "properties": {"level": {"type": "number"}, "at": _time("when it was announced"),
                       "acknowledged_by": {"type": ["string", "null"]},
                       "acknowledged_at": _time("when it was acknowledged", nullable=True)},
    },
    "Clock": {
        "type": "object",
        "required": ["agreement", "kind", "metric", "priority", "target_seconds", "elapsed_seconds", "state",
                     "breached", "started_at", "due_at", "stopped_at", "computed_at", "levels", "notices"],
        "properties": {
            "agreement": {"type": "string"},
            "kind": {"type": "string", "enum": ["sla", "ola", "uc"]},
            "metric": {"type": "string", "enum": ["response", "resolution"]},
            "priority": {"type": "string", "enum": list(tickets.PRIORITIES)},
            "target_seconds": {"type": "number"},
            "elapsed_seconds": {"type": "number", "description": "time counted, as of computed_at"},
            "state": {"type": "string", "enum": CLOCK_STATES},
            "breached": {"type": "boolean"},
            "started_at": _time("the start of the ticket's history"),
            "due_at": _time("when it is due, while it runs; null while paused or stopped", nullable=True),
            "stopped_at": _time("when its measurement ended (responded, resolved)", nullable=True),
            "computed_at": _time("when it was measured: at the request, from the ticket's whole history"),
            "levels": {"type": "array", "items": _ref("ClockLevel"),
                       "description": "the warning levels and the breach (100), each with its instant"},
            "notices": {"type": "array", "items": _ref("ClockNotice"),
                        "description": "the warnings and breach announced, each once"},
        },
    },
    "Ticket": {
        "type": "object",
        "required": ["id", "number", "kind", "source", "external_id", "service", "title", "priority", "state",
                     "group", "supplier", "requester", "opened_at", "responded_at", "resolved_at", "closed_at",
                     "updated_at", "events", "clocks"],
        "properties": {
            "id": {"type": "string", "pattern": r"^INC-\d+$"},
            "number": {"type": "integer"},
            "kind": {"type": "string", "enum": ["incident", "request"]},
            "source": {"type": "string", "description": "api, chat, or an import's name"},
            "external_id": {"type": ["string", "null"]},
            "service": {"type": "string"},
            "title": {"type": "string"},
            "priority": {"type": "string", "enum": list(tickets.PRIORITIES)},
            "state": {"type": "string", "enum": list(tickets.STATES)},
            "group": {"type": ["string", "null"]},
            "supplier": {"type": ["string", "null"]},
            "requester": {"type": ["string", "null"],
                          "description": "the person who asked for it (a person id); null when the API opened it "
                                         "without naming one"},
            "opened_at": _time("when it was opened"),
            "responded_at": _time("first response", nullable=True),
            "resolved_at": _time("resolution", nullable=True),
            "closed_at": _time("closure", nullable=True),
            "updated_at": _time("its latest event"),
            "events": {"type": "array", "items": _ref("TicketEvent"), "description": "its history, by time"},
            "clocks": {"type": "array", "items": _ref("Clock"),
                       "description": "one per SLA, OLA and UC target that applies to it"},
            "duplicate": {"type": "boolean",
                          "description": "POST only: true when the request repeated one already handled"},
        },
    },
    "Outage": {
        "type": "object",
        "required": ["id", "number", "external_id", "service", "kind", "source", "summary", "started_at",
                     "ended_at"],
        "properties": {
            "id": {"type": "string", "pattern": r"^OUT-\d+$"},
            "number": {"type": "integer"},
            "external_id": {"type": ["string", "null"], "description": "the id it was posted with, if any"},
            "service": {"type": "string"},
            "kind": {"type": "string", "enum": OUTAGE_KINDS},
            "source": {"type": "string", "description": "api, alertmanager or status"},
            "summary": {"type": "string"},
            "started_at": _time("start"),
            "ended_at": _time("end; null while it lasts", nullable=True),
            "duplicate": {"type": "boolean",
                          "description": "POST only: true when the request repeated one already handled"},
        },
    },
    "OutageCreate": {
        "type": "object", "additionalProperties": False, "required": ["service", "kind", "started_at"],
        "properties": {
            "service": {"type": "string", "minLength": 1, "maxLength": 64},
            "kind": {"type": "string", "enum": OUTAGE_KINDS,
                     "description": "unplanned counts as downtime; maintenance is approved time left out of "
                                    "agreed service time; partial is recorded but is not downtime"},
            "started_at": _time("start; only maintenance may be in the future"),
            "ended_at": _time("end, if known; not before the start; only maintenance may end in the future"),
            "summary": {"type": "string", "maxLength": 2000},
            "id": {**ID_TEXT, "description": "your id for it: posting the same id again answers 200 with the stored "
                                            "outage and changes nothing; also usable in /outages/{id}/end"},
        },
    },
    "OutageEnd": {
        "type": "object", "additionalProperties": False,
        "properties": {"ended_at": _time("when it ended (default now); not before its start, not in the future")},
    },
    "ServiceStatus": {
        "type": "object", "required": ["state", "message", "since"],
        "properties": {"state": {"type": "string", "enum": SERVICE_STATES}, "message": {"type": "string"},
                       "since": _time("when it entered this state; null if it never changed", nullable=True)},
    },
    "Service": {
        "type": "object",
        "required": ["id", "name", "description", "owner", "team", "tier", "calendar", "channel", "suppliers",
                     "status", "open_outages"],
        "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
            "owner": {"type": "string"}, "team": {"type": ["string", "null"]},
            "tier": {"type": "integer", "minimum": 1, "maximum": 4}, "calendar": {"type": "string"},
            "channel": {"type": ["string", "null"]},
            "suppliers": {"type": "array", "items": {"type": "string"}},
            "status": _ref("ServiceStatus"),
            "open_outages": {"type": "array", "items": _ref("Outage")},
        },
    },
    "ServiceList": {"type": "object", "required": ["services"],
                    "properties": {"services": {"type": "array", "items": _ref("Service")}}},
    "Period": {
        "type": "object", "required": ["name", "start", "end"],
        "properties": {"name": {"type": "string"}, "start": _time("start; null for all time", nullable=True),
                       "end": _time("end; null for up to now", nullable=True)},
    },
    "AvailabilityTarget": {
        "type": "object",
        "required": ["agreement", "goal", "met", "error_budget_seconds", "budget_remaining_seconds"],
        "properties": {
            "agreement": {"type": "string"}, "goal": {"type": "number", "description": "% available"},
            "met": {"type": ["boolean", "null"]},
            "error_budget_seconds": {"type": "number", "description": "downtime the goal allows over the period"},
            "budget_remaining_seconds": {"type": "number", "description": "negative once overspent"},
        },
    },
    "Availability": {
        "type": "object",
        "required": ["service", "period", "agreed_seconds", "downtime_seconds", "availability", "targets",
                     "outages"],
        "properties": {
            "service": {"type": "string"}, "period": _ref("Period"),
            "agreed_seconds": {"type": "number", "description": "the period up to now, less approved maintenance"},
            "downtime_seconds": {"type": "number", "description": "unplanned outage time outside maintenance"},
            "availability": {"type": ["number", "null"],
                             "description": "% of agreed service time up; null with nothing to measure"},
            "targets": {"type": "array", "items": _ref("AvailabilityTarget")},
            "outages": {"type": "array", "items": _ref("Outage"), "description": "outages in the period"},
        },
    },
    "TargetAttainment": {
        "type": "object",
        "required": ["agreement", "agreement_kind", "party", "metric", "priority", "group", "measured", "met",
                     "share", "goal", "ok"],
        "properties": {
            "agreement": {"type": "string"}, "agreement_kind": {"type": ["string", "null"]},
            "party": {"type": ["string", "null"]}, "metric": {"type": "string"}, "priority": {"type": "string"},
            "group": {"type": ["string", "null"], "description": "with by=group: the assignment group"},
            "measured": {"type": "integer", "description": "decided clocks: met, or breached"},
            "met": {"type": "integer"}, "share": {"type": "number", "description": "% met"},
            "goal": {"type": ["number", "null"]}, "ok": {"type": "boolean"},
        },
    },
    "AvailabilityAttainment": {
        "type": "object",
        "required": ["agreement", "agreement_kind", "party", "service", "share", "agreed_seconds",
                     "downtime_seconds", "goal", "ok"],
        "properties": {
            "agreement": {"type": "string"}, "agreement_kind": {"type": ["string", "null"]},
            "party": {"type": ["string", "null"]}, "service": {"type": "string"},
            "share": {"type": "number", "description": "% available"}, "agreed_seconds": {"type": "number"},
            "downtime_seconds": {"type": "number"}, "goal": {"type": "number"}, "ok": {"type": "boolean"},
        },
    },
    "SatisfactionAttainment": {
        "type": "object",
        "required": ["agreement", "agreement_kind", "party", "service", "answers", "satisfied", "share", "goal", "ok"],
        "properties": {
            "agreement": {"type": "string"}, "agreement_kind": {"type": ["string", "null"]},
            "party": {"type": ["string", "null"]}, "service": {"type": "string"},
            "answers": {"type": "integer",
                        "description": "CSAT answers about the service given in the period: its after-ticket surveys "
                                       "and its CSAT pulse surveys (anonymous ones only once their results show)"},
            "satisfied": {"type": "integer", "description": "answers of 4 or 5"},
            "share": {"type": "number", "description": "CSAT: % satisfied"},
            "goal": {"type": "number"}, "ok": {"type": "boolean"},
        },
    },
    "Attainment": {
        "type": "object", "required": ["period", "service", "by", "targets", "availability", "satisfaction"],
        "properties": {
            "period": _ref("Period"), "service": {"type": ["string", "null"]},
            "by": {"type": ["string", "null"], "enum": ["group", None]},
            "targets": {"type": "array", "items": _ref("TargetAttainment")},
            "availability": {"type": "array", "items": _ref("AvailabilityAttainment")},
            "satisfaction": {"type": "array", "items": _ref("SatisfactionAttainment"),
                             "description": "per agreement with a satisfaction target, for services with answers in "
                                            "the period"},
        },
    },
    "ClockUse": {
        "type": "object",
        "required": ["kind", "agreement", "metric", "elapsed_seconds", "target_seconds", "breached"],
        "properties": {"kind": {"type": "string", "enum": ["ola", "uc"]}, "agreement": {"type": "string"},
                       "metric": {"type": "string"}, "elapsed_seconds": {"type": "number"},
                       "target_seconds": {"type": "number"}, "breached": {"type": "boolean"}},
    },
    "Breach": {
        "type": "object",
        "required": ["ticket", "ticket_id", "priority", "title", "service", "state", "agreement", "metric",
                     "started_at", "due_at", "stopped_at", "late_seconds", "used_by"],
        "properties": {
            "ticket": {"type": "string", "pattern": r"^INC-\d+$"}, "ticket_id": {"type": "integer"},
            "priority": {"type": "string"}, "title": {"type": "string"}, "service": {"type": "string"},
            "state": {"type": "string"}, "agreement": {"type": "string"}, "metric": {"type": "string"},
            "started_at": _time("clock start"), "due_at": _time("due, while running", nullable=True),
            "stopped_at": _time("stopped", nullable=True), "late_seconds": {"type": "number"},
            "used_by": {"type": "array", "items": _ref("ClockUse"),
                        "description": "the OLAs and UCs under the SLA and the time each used"},
        },
    },
    "Breaches": {
        "type": "object", "required": ["period", "breaches"],
        "properties": {"period": _ref("Period"),
                       "breaches": {"type": "array", "items": _ref("Breach"),
                                    "description": f"newest first, {sla.BREACHES_SHOWN} at most"}},
    },
    "AtRiskClock": {
        "type": "object",
        "required": ["ticket", "ticket_id", "priority", "service", "kind", "agreement", "metric", "used",
                     "elapsed_seconds", "target_seconds", "due_at", "late"],
        "properties": {
            "ticket": {"type": "string", "pattern": r"^INC-\d+$"}, "ticket_id": {"type": "integer"},
            "priority": {"type": "string"}, "service": {"type": "string"},
            "kind": {"type": "string", "enum": ["sla", "ola", "uc"]}, "agreement": {"type": "string"},
            "metric": {"type": "string"}, "used": {"type": "number", "description": "% used when last measured"},
            "elapsed_seconds": {"type": "number"}, "target_seconds": {"type": "number"},
            "due_at": _time("due"), "late": {"type": "boolean"},
        },
    },
    "AtRisk": {
        "type": "object", "required": ["at_risk"],
        "properties": {"at_risk": {"type": "array", "items": _ref("AtRiskClock"),
                                   "description": "running clocks past their first warning, soonest due first"}},
    },
    "ChangeCreate": {
        "type": "object", "additionalProperties": False, "required": ["requester"],
        "description": "The chat form's fields. A standard change needs only `model` and `start`; a normal or "
                       "emergency one `title`, `services`, `risk`, `start`, `end` and `backout`. Every faulty field "
                       "is named in the 422 answer.",
        "properties": {
            "requester": {"type": "string", "minLength": 1, "maxLength": 64,
                          "description": "a person id from app.yaml: the change is requested on their behalf, "
                                         "and they may not approve it"},
            "title": {"type": "string", "maxLength": 300},
            "services": {"type": "array", "items": {"type": "string", "maxLength": 64},
                         "description": "service ids (or names) from the catalogue"},
            "type": {"type": "string", "enum": list(changes.KINDS), "default": "normal"},
            "model": {"type": "string", "maxLength": 64,
                      "description": "a standard change model from app.yaml; its title, services, risk and plans "
                                     "come from the model"},
            "risk": {"type": "string", "enum": list(RISKS)},
            "impact": {"type": "string", "enum": list(RISKS), "description": "default: the risk"},
            "start": {"type": "string", "maxLength": 40,
                      "description": "planned start, ISO 8601 (YYYY-MM-DDTHH:MM:SS+01:00) or tomorrow 20:00; "
                                     "without an offset it is UTC; not in the past unless the change is an "
                                     "emergency"},
            "end": {"type": "string", "maxLength": 40,
                    "description": "planned end, as start; a standard change may leave it out (its model's duration)"},
            "implementer": {"type": "string", "maxLength": 200,
                            "description": "a person id or name from app.yaml; default the requester"},
            "description": {"type": "string", "maxLength": 10000},
            "implementation": {"type": "string", "maxLength": 10000, "description": "the implementation plan"},
            "backout": {"type": "string", "maxLength": 10000,
                        "description": "the back-out plan; required for normal and emergency changes"},
            "test": {"type": "string", "maxLength": 10000, "description": "the test plan"},
        },
    },
    "Change": {
        "type": "object",
        "required": ["id", "number", "source", "title", "type", "model", "risk", "impact", "state", "outcome",
                     "services", "planned_start", "planned_end", "actual_start", "actual_end", "requester",
                     "implementer", "approvals_needed", "approvals", "revision", "description", "implementation",
                     "backout", "test", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string", "pattern": r"^CHG-\d+$"},
            "number": {"type": "integer"},
            "source": {"type": "string", "description": "chat, api, or an import's name"},
            "title": {"type": "string"},
            "type": {"type": "string", "enum": list(changes.KINDS)},
            "model": {"type": ["string", "null"], "description": "the standard change model it follows"},
            "risk": {"type": "string"}, "impact": {"type": "string"},
            "state": {"type": "string", "enum": list(changes.STATES)},
            "outcome": {"type": ["string", "null"], "enum": [*changes.OUTCOMES, None],
                        "description": "once implemented"},
            "services": {"type": "array", "items": {"type": "string"}},
            "planned_start": _time("planned start"), "planned_end": _time("planned end"),
            "actual_start": _time("when the work started", nullable=True),
            "actual_end": _time("when the work ended", nullable=True),
            "requester": {"type": ["string", "null"]}, "implementer": {"type": ["string", "null"]},
            "approvals_needed": {"type": "integer", "description": "approvals its type and risk need"},
            "approvals": {"type": "array", "items": {"type": "string"},
                          "description": "the people whose approval currently stands (votes withdrawn when the "
                                         "plan's dates or services changed are not counted)"},
            "revision": {"type": "integer",
                         "description": "rises at every step; the SEQUENCE of its event in /changes.ics"},
            "description": {"type": "string"}, "implementation": {"type": "string"},
            "backout": {"type": "string"}, "test": {"type": "string"},
            "created_at": _time("when it was submitted"),
            "updated_at": _time("when it entered its current state"),
        },
    },
    "ChangeList": {
        "type": "object", "required": ["changes"],
        "properties": {"changes": {"type": "array", "items": _ref("Change"),
                                   "description": "newest planned start first"}},
    },
    "ChangeStep": {
        "type": "object", "additionalProperties": False, "required": ["by"],
        "properties": {
            "by": {"type": "string", "minLength": 1, "maxLength": 64,
                   "description": "the person id (app.yaml) doing it: the change's requester, its implementer or "
                                  "a service manager"},
            "note": {"type": "string", "maxLength": 2000, "description": "added to the change's history"},
        },
    },
    "ChangeComplete": {
        "type": "object", "additionalProperties": False, "required": ["by"],
        "properties": {
            "by": {"type": "string", "minLength": 1, "maxLength": 64,
                   "description": "the requester, the implementer or a service manager"},
            "note": {"type": "string", "maxLength": 2000},
            "outcome": {"type": "string", "enum": ["successful", "with-issues"], "default": "successful",
                        "description": "with-issues sends the change to review before it closes"},
        },
    },
    "ChangeFail": {
        "type": "object", "additionalProperties": False, "required": ["by", "note"],
        "properties": {
            "by": {"type": "string", "minLength": 1, "maxLength": 64,
                   "description": "the requester, the implementer or a service manager"},
            "note": {"type": "string", "minLength": 1, "maxLength": 2000,
                     "description": "what happened (required)"},
        },
    },
    "SuccessRate": {
        "type": "object", "required": ["from", "to", "service", "successful", "implemented", "rate"],
        "properties": {
            "from": _time("start of the period (included)"), "to": _time("end of the period (excluded)"),
            "service": {"type": ["string", "null"]},
            "successful": {"type": "integer", "description": "changes implemented with outcome successful"},
            "implemented": {"type": "integer",
                            "description": "changes whose work ended in the period: successful, with issues or "
                                           "failed"},
            "rate": {"type": ["number", "null"],
                     "description": "% of implemented changes that were successful; null when none was implemented"},
        },
    },
    "SurveyCreate": {
        "type": "object", "additionalProperties": False, "required": ["owner"],
        "description": "The chat form's fields. Say who is asked with `channel`, or with `people` and/or `group` "
                       "(not both kinds). Every faulty field is named in the 422 answer.",
        "properties": {
            "owner": {"type": "string", "minLength": 1, "maxLength": 64,
                      "description": "a person id from app.yaml: the survey is run on their behalf and they get its "
                                     "results; a service manager or the owner of a service"},
            "question": {"type": "string", "maxLength": 500},
            "scale": {"type": "string", "enum": list(SCALES), "default": "csat",
                      "description": "csat (1–5), nps (0–10) or yesno"},
            "channel": {"type": "array", "items": LIST_ITEM,
                        "description": "logical channel names from app.yaml: the question is posted there with a "
                                       "button per answer"},
            "people": {"type": "array", "items": LIST_ITEM,
                       "description": "person ids from app.yaml: each is asked by direct message"},
            "group": {"type": "string", "maxLength": 128,
                      "description": "a group from app.yaml: its members are asked"},
            "anonymous": {"type": "boolean", "default": True,
                          "description": "answers are kept without who gave them, and the results show only once "
                                         "surveys.min_respondents people have answered"},
            "comment": {"type": "boolean", "default": True, "description": "offer a comment box"},
            "closes": _time("when it closes (default in 5 days); at least five minutes from now"),
            "service": {"type": "string", "maxLength": 64,
                        "description": "the service it is about (id or name); its CSAT answers count towards the "
                                       "service's satisfaction"},
        },
    },
    "SurveyTrend": {
        "type": "object", "required": ["previous", "change"],
        "properties": {
            "previous": {"type": "string", "pattern": r"^SRV-\d+$",
                         "description": "the last closed pulse survey that asked the same question on the same scale"},
            "change": {"type": "number", "description": "the score's change since then, in points (NPS: in NPS)"},
        },
    },
    "SurveyResults": {
        "type": "object",
        "required": ["answers", "invited", "response_rate", "score_name", "score", "csat", "nps", "yes",
                     "distribution", "trend", "comments"],
        "properties": {
            "answers": {"type": "integer"},
            "invited": {"type": ["integer", "null"],
                        "description": "people asked; null for a channel, whose readers cannot be counted"},
            "response_rate": {"type": ["number", "null"], "description": "% of those asked who answered"},
            "score_name": {"type": "string", "enum": ["CSAT", "NPS", "Yes"]},
            "score": {"type": ["number", "null"],
                      "description": "the headline: csat, nps or yes; null without answers"},
            "csat": {"type": ["number", "null"], "description": "csat scale: % of answers that are 4 or 5"},
            "nps": {"type": ["number", "null"],
                    "description": "nps scale: % promoters (9–10) − % detractors (0–6), from −100 to 100"},
            "yes": {"type": ["number", "null"], "description": "yesno scale: % yes"},
            "distribution": {"type": "object", "additionalProperties": {"type": "integer"},
                             "description": "answers per value of the scale (yesno: 1 yes, 0 no), every value "
                                            "listed"},
            "trend": {"anyOf": [_ref("SurveyTrend"), {"type": "null"}],
                      "description": "the change since the previous survey of the same question; null without one "
                                     "(or when either has no score, or the previous one's results are hidden)"},
            "comments": {"type": "array", "items": {
                "type": ["string", "object"], "required": ["person", "comment"], "additionalProperties": False,
                "properties": {"person": {"type": ["string", "null"]}, "comment": {"type": "string"}}},
                "description": f"at most {surveys.SHOWN_COMMENTS}, newest first; an anonymous survey's are plain "
                               "strings in alphabetical order (so that their order tells nothing), a named "
                               "survey's are {person, comment}; none once the retention purge cleared them"},
        },
    },
    "Survey": {
        "type": "object",
        "required": ["id", "number", "kind", "question", "scale", "anonymous", "comment", "audience_kind",
                     "audience", "asked", "owner", "service", "ticket", "state", "created_at", "opens_at",
                     "closes_at", "closed_at", "answers", "hidden", "results"],
        "properties": {
            "id": {"type": "string", "pattern": r"^SRV-\d+$"},
            "number": {"type": "integer"},
            "kind": {"type": "string", "enum": list(SURVEY_KINDS),
                     "description": "pulse: asked by a person; ticket: asked of a resolved ticket's requester"},
            "question": {"type": "string"},
            "scale": {"type": "string", "enum": list(SCALES)},
            "anonymous": {"type": "boolean"},
            "comment": {"type": "boolean", "description": "whether a comment box is offered"},
            "audience_kind": {"type": "string", "enum": ["channel", "people"]},
            "audience": {"type": ["array", "null"], "items": {"type": "string"},
                         "description": "the channels it was posted in, or the people asked; null for an anonymous "
                                        "survey sent to people (who was asked is not shown, only how many)"},
            "asked": {"type": ["integer", "null"], "description": "people asked; null for channels"},
            "owner": {"type": ["string", "null"]},
            "service": {"type": ["string", "null"]},
            "ticket": {"type": ["string", "null"], "pattern": r"^INC-\d+$",
                       "description": "after-ticket surveys: the ticket"},
            "state": {"type": "string", "enum": list(SURVEY_STATES),
                      "description": "scheduled (an after-ticket survey waiting for its delay), open, closed, or "
                                     "cancelled (its ticket was reopened before it went out)"},
            "created_at": _time("when it was made"),
            "opens_at": _time("when it was (or will be) sent"),
            "closes_at": _time("when it closes (or closed, as planned)"),
            "closed_at": _time("when it closed", nullable=True),
            "answers": {"type": "integer", "description": "how many have answered (also when the results are hidden)"},
            "hidden": {"type": "boolean",
                       "description": "true for an anonymous survey with fewer answers than surveys.min_respondents: "
                                      "its results (and comments) are not shown, so that no answer can be traced"},
            "results": {"anyOf": [_ref("SurveyResults"), {"type": "null"}],
                        "description": "null while hidden"},
        },
    },
    "SurveySummary": {
        "type": "object",
        "required": ["id", "number", "kind", "question", "scale", "anonymous", "owner", "service", "ticket", "state",
                     "created_at", "opens_at", "closes_at", "closed_at", "answers", "hidden", "score_name", "score"],
        "properties": {
            "id": {"type": "string", "pattern": r"^SRV-\d+$"}, "number": {"type": "integer"},
            "kind": {"type": "string", "enum": list(SURVEY_KINDS)}, "question": {"type": "string"},
            "scale": {"type": "string", "enum": list(SCALES)}, "anonymous": {"type": "boolean"},
            "owner": {"type": ["string", "null"]}, "service": {"type": ["string", "null"]},
            "ticket": {"type": ["string", "null"], "pattern": r"^INC-\d+$"},
            "state": {"type": "string", "enum": list(SURVEY_STATES)},
            "created_at": _time("when it was made"), "opens_at": _time("when it was (or will be) sent"),
            "closes_at": _time("when it closes"), "closed_at": _time("when it closed", nullable=True),
            "answers": {"type": "integer"},
            "hidden": {"type": "boolean", "description": "the results of an anonymous survey with too few answers"},
            "score_name": {"type": "string", "enum": ["CSAT", "NPS", "Yes"]},
            "score": {"type": ["number", "null"], "description": "null without answers, or while hidden"},
        },
    },
    "SurveyList": {
        "type": "object", "required": ["surveys"],
        "properties": {"surveys": {"type": "array", "items": _ref("SurveySummary"),
                                   "description": "newest first; GET /surveys/{id} for one with its results"}},
    },
    "SurveyClose": {
        "type": "object", "additionalProperties": False, "required": ["person"],
        "properties": {"person": {"type": "string", "minLength": 1, "maxLength": 64,
                                  "description": "the person id (app.yaml) closing it: its owner or a service "
                                                 "manager"}},
    },
    "CsiCreate": {
        "type": "object", "additionalProperties": False, "required": ["person", "title"],
        "properties": {
            "person": {"type": "string", "minLength": 1, "maxLength": 64,
                       "description": "the person id (app.yaml) raising it; anyone may"},
            "title": {"type": "string", "minLength": 1, "maxLength": 300, "description": "what will improve"},
            "owner": {"type": "string", "maxLength": 64,
                      "description": "a person id: who will do it (default the person raising it); told by direct "
                                     "message"},
            "due": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "YYYY-MM-DD"},
            "service": {"type": "string", "maxLength": 64,
                        "description": "a service id (or name); default the survey's or the ticket's"},
            "survey": {"type": "string", "maxLength": 20, "description": "SRV-N: the survey that prompted it"},
            "ticket": {"type": "string", "maxLength": 20, "description": "INC-N: the (breached) ticket it answers"},
        },
    },
    "CsiDone": {
        "type": "object", "additionalProperties": False, "required": ["person"],
        "properties": {
            "person": {"type": "string", "minLength": 1, "maxLength": 64,
                       "description": "the person id (app.yaml) finishing it: its owner or a service manager"},
            "note": {"type": "string", "maxLength": 2000, "description": "what was done"},
        },
    },
    "CsiItem": {
        "type": "object",
        "required": ["id", "number", "title", "owner", "due", "overdue", "service", "survey", "ticket", "state",
                     "created_by", "created_at", "done_at", "done_by", "note"],
        "properties": {
            "id": {"type": "string", "pattern": r"^CSI-\d+$"}, "number": {"type": "integer"},
            "title": {"type": "string"}, "owner": {"type": "string"},
            "due": {"type": ["string", "null"], "description": "YYYY-MM-DD"},
            "overdue": {"type": "boolean", "description": "open and past its due date (in the bot's time zone)"},
            "service": {"type": ["string", "null"]},
            "survey": {"type": ["string", "null"], "pattern": r"^SRV-\d+$"},
            "ticket": {"type": ["string", "null"], "pattern": r"^INC-\d+$"},
            "state": {"type": "string", "enum": ["open", "done"]},
            "created_by": {"type": ["string", "null"]}, "created_at": _time("when it was raised"),
            "done_at": _time("when it was done", nullable=True), "done_by": {"type": ["string", "null"]},
            "note": {"type": "string", "description": "what was done"},
        },
    },
    "CsiList": {
        "type": "object", "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref("CsiItem"),
                                 "description": "open items soonest due first (undated last), then done items "
                                                "latest first"}},
    },
    "AlertmanagerAlert": {
        "type": "object", "required": ["status", "labels", "startsAt"],
        "properties": {
            "status": {"type": "string", "enum": ["firing", "resolved"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": f"the '{SERVICE_LABEL}' label names the service; alerts without it are "
                                      "skipped with a note"},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "startsAt": {"type": "string", "format": "date-time"},
            "endsAt": {"type": "string", "format": "date-time",
                       "description": "required when resolved; Go's zero time while firing"},
            "generatorURL": {"type": "string"},
            "fingerprint": {"type": "string", "minLength": 1, "maxLength": FINGERPRINT_MAX},
        },
    },
    "AlertmanagerWebhook": {
        "type": "object", "required": ["version", "alerts"],
        "description": "Alertmanager's webhook_config message, payload version 4",
        "properties": {
            "version": {"type": "string", "enum": ["4"]}, "groupKey": {"type": "string"},
            "truncatedAlerts": {"type": "integer", "minimum": 0}, "status": {"type": "string"},
            "receiver": {"type": "string"},
            "groupLabels": {"type": "object", "additionalProperties": {"type": "string"}},
            "commonLabels": {"type": "object", "additionalProperties": {"type": "string"}},
            "commonAnnotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "externalURL": {"type": "string"},
            "alerts": {"type": "array", "items": _ref("AlertmanagerAlert")},
        },
    },
    "AlertmanagerResult": {
        "type": "object", "required": ["opened", "closed", "repeated", "unknown_service", "notes"],
        "properties": {
            "opened": {"type": "integer", "description": "outages opened"},
            "closed": {"type": "integer", "description": "outages ended"},
            "repeated": {"type": "integer", "description": "alerts already recorded (Alertmanager repeats)"},
            "unknown_service": {"type": "integer", "description": "alerts naming a service not in the catalogue"},
            "notes": {"type": "array", "items": {"type": "string"},
                      "description": "what was left out, and why"},
        },
    },
}

RESPONSES = {
    "BadRequest": _error("Not JSON, or a bad query parameter; nothing changed"),
    "Unauthorized": {**_error("No bearer token, or the wrong one"),
                     "headers": {"WWW-Authenticate": {"schema": {"type": "string"},
                                                      "description": "Bearer realm=\"svcbot\""}}},
    "NotFound": _error("No such ticket, outage, service, change, survey or CSI item"),
    "Forbidden": _error("The token lacks the scope this operation needs, the client may not act for the person "
                        "named, or that person may not do this; nothing changed"),
    "Conflict": _error("The request conflicts with what is stored; nothing changed"),
    "Unprocessable": _error("The body does not fit the schema, or names something unknown; nothing changed"),
    "ApiOff": _error("Neither api_clients nor SVCBOT_API_TOKEN is set on this server: the API is off"),
    "ServerError": _error("Something unexpected; the answer carries a reference to the server's log"),
}

PARAMETERS = {
    "TicketRef": {"name": "ref", "in": "path", "required": True,
                  "description": "INC-N, or ext:EXTERNAL_ID for a ticket created with an external_id",
                  "schema": {"type": "string"}},
    "OutageId": {"name": "id", "in": "path", "required": True,
                 "description": "OUT-N, or the id the outage was posted with", "schema": {"type": "string"}},
    "ServiceId": {"name": "id", "in": "path", "required": True, "description": "a service id (or name)",
                  "schema": {"type": "string"}},
    "Period": {"name": "period", "in": "query", "required": False, "description": PERIOD_TEXT,
               "schema": {"type": "string", "default": "this-month", "maxLength": 20}},
    "Service": {"name": "service", "in": "query", "required": False, "description": "one service id (or name)",
                "schema": {"type": "string", "maxLength": 64}},
    "By": {"name": "by", "in": "query", "required": False, "description": "group: per assignment group too",
           "schema": {"type": "string", "enum": ["group"]}},
    "ChangeId": {"name": "id", "in": "path", "required": True, "description": "CHG-N, or just N",
                 "schema": {"type": "string"}},
    "ChangeState": {"name": "state", "in": "query", "required": False, "description": "only changes in this state",
                    "schema": {"type": "string", "enum": list(changes.STATES)}},
    "From": {"name": "from", "in": "query", "required": False,
             "schema": {"type": "string", "format": "date-time"},
             "description": "changes: those whose planned window ends after this; success-rate: the period's start "
                            "(default 90 days ago)"},
    "To": {"name": "to", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"},
           "description": "changes: those whose planned window starts before this; success-rate: the period's end "
                          "(default now)"},
    "Limit": {"name": "limit", "in": "query", "required": False, "description": "at most this many",
              "schema": {"type": "integer", "minimum": 1, "maximum": CHANGES_MAX, "default": CHANGES_SHOWN}},
    "SurveyId": {"name": "id", "in": "path", "required": True, "description": "SRV-N, or just N",
                 "schema": {"type": "string"}},
    "SurveyState": {"name": "state", "in": "query", "required": False, "description": "only surveys in this state",
                    "schema": {"type": "string", "enum": list(SURVEY_STATES)}},
    "SurveyKind": {"name": "kind", "in": "query", "required": False,
                   "description": "pulse (asked by a person) or ticket (after a ticket was resolved)",
                   "schema": {"type": "string", "enum": list(SURVEY_KINDS)}},
    "CsiId": {"name": "id", "in": "path", "required": True, "description": "CSI-N, or just N",
              "schema": {"type": "string"}},
    "CsiState": {"name": "state", "in": "query", "required": False,
                 "description": "open (default), done, or all",
                 "schema": {"type": "string", "enum": list(CSI_STATES), "default": "open"}},
}


def _param(name: str) -> dict:
    return {"$ref": f"#/components/parameters/{name}"}


def _answer(name: str) -> dict:
    return {"$ref": f"#/components/responses/{name}"}


def _operation(op_id: str, summary: str, ok: dict, *, errors=(), params=(), body: str | None = None,
               body_required: bool = True, public: bool = False, description: str = "") -> dict:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [op_id.split("_")[0]]}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = [_param(p) for p in params]
    if body:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": _ref(body)}}}
    op["responses"] = dict(ok)
    if public:
        op["security"] = []
    else:
        op["responses"].update({"401": _answer("Unauthorized"), "503": _answer("ApiOff")})
    for status, name in errors:
        op["responses"][status] = _answer(name)
    op["responses"]["500"] = _answer("ServerError")
    return op


_WRITE_ERRORS = (("400", "BadRequest"), ("422", "Unprocessable"))


def _step_operation(verb: str, summary: str, body: str, more: str = "") -> dict:
    return _operation(
        f"changes_{verb}", summary, {"200": _json(_ref("Change"), "Done: the change as it is now")},
        errors=(*_WRITE_ERRORS, ("403", "Forbidden"), ("404", "NotFound"), ("409", "Conflict")),
        params=("ChangeId",), body=body,
        description=f"Runs `change {verb} CHG-N [note]` as the person in `by`, with the rights and checks it has "
                    f"in chat, and adds the step to the change's announcements. {more + ' ' if more else ''}403 "
                    "when that person may not; 409 when the change's state does not allow it. Approving and "
                    "rejecting are not offered here: approvers decide in Slack or Teams.")

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "svcbot API", "version": "1.0.0",
        "description": "Tickets and their history, outages, services and availability, SLA reports, requests for "
                       "change, pulse and after-ticket surveys, the continual service improvement (CSI) register, "
                       "and the Prometheus Alertmanager webhook. Times are RFC 3339 with an offset; answers "
                       "are in UTC. The forward schedule of change is also served as an iCalendar feed at "
                       "`/changes.ics?days=180&past=30` (days ahead up to 730, days back up to 365), public "
                       "unless app.yaml's `status_page` makes it private (then `?key=FEED_KEY`, or a token with "
                       "the scope `read`). "
                       "Every endpoint but this document wants `Authorization: Bearer TOKEN`, an API client's "
                       "token with a scope the operation lists. A bad request gets `{\"error\", \"problems\"}` "
                       "and changes nothing.",
    },
    "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
    "security": [{"bearerAuth": []}],
    "tags": [{"name": n} for n in ("openapi", "tickets", "services", "outages", "sla", "changes", "surveys", "csi",
                                   "alertmanager")],
    "paths": {
        f"{PREFIX}/openapi.json": {"get": _operation(
            "openapi_document", "This document", {"200": _json({"type": "object"}, "The OpenAPI 3.1 document")},
            public=True)},
        f"{PREFIX}/tickets": {"post": _operation(
            "tickets_create", "Open a ticket",
            {"201": {**_json(_ref("Ticket"), "Opened; its clocks started"),
                     "headers": {"Location": {"schema": {"type": "string"}}}},
             "200": _json(_ref("Ticket"), "A ticket with this external_id exists already: it, unchanged")},
            errors=_WRITE_ERRORS, body="TicketCreate")},
        f"{PREFIX}/tickets/{{ref}}": {"get": _operation(
            "tickets_get", "A ticket, its history and its clocks", {"200": _json(_ref("Ticket"), "The ticket")},
            errors=(("404", "NotFound"),), params=("TicketRef",))},
        f"{PREFIX}/tickets/{{ref}}/events": {"post": _operation(
            "tickets_event", "Add a step to a ticket's history",
            {"200": _json(_ref("Ticket"), "Recorded (or a repeated event_id: nothing changed, duplicate true); "
                                          "the clocks are measured again from the whole history")},
            errors=(*_WRITE_ERRORS, ("404", "NotFound"), ("409", "Conflict")), params=("TicketRef",),
            body="TicketEventCreate",
            description="An event may arrive late: the history is kept in time order and the clocks follow it. "
                        "`reopen` needs a ticket resolved or closed at that time, `resolve` one open at that time, "
                        "`close` one not closed already.")},
        f"{PREFIX}/services": {"get": _operation(
            "services_list", "The catalogue with each service's current status",
            {"200": _json(_ref("ServiceList"), "Every service")})},
        f"{PREFIX}/services/{{id}}/availability": {"get": _operation(
            "services_availability", "A service's availability over a period",
            {"200": _json(_ref("Availability"), "(agreed service time − downtime) ÷ agreed service time")},
            errors=(("400", "BadRequest"), ("404", "NotFound")), params=("ServiceId", "Period"))},
        f"{PREFIX}/outages": {"post": _operation(
            "outages_create", "Record an outage or maintenance window",
            {"201": _json(_ref("Outage"), "Recorded"),
             "200": _json(_ref("Outage"), "An outage with this id exists already: it, unchanged")},
            errors=_WRITE_ERRORS, body="OutageCreate")},
        f"{PREFIX}/outages/{{id}}/end": {"post": _operation(
            "outages_end", "End an outage recorded through the API",
            {"200": _json(_ref("Outage"), "Ended (or already ended at that instant: duplicate true)")},
            errors=(*_WRITE_ERRORS, ("404", "NotFound"), ("409", "Conflict")), params=("OutageId",),
            body="OutageEnd", body_required=False, description="Without a body it ends now.")},
        f"{PREFIX}/sla": {"get": _operation(
            "sla_attainment", "Attainment per agreement, metric and priority, availability and satisfaction",
            {"200": _json(_ref("Attainment"), "What `sla [SERVICE] [PERIOD] [by group]` shows")},
            errors=(("400", "BadRequest"),), params=("Service", "Period", "By"))},
        f"{PREFIX}/sla/breaches": {"get": _operation(
            "sla_breaches", "SLA breaches and the OLA or UC time under them",
            {"200": _json(_ref("Breaches"), "What `sla breaches [PERIOD]` shows")},
            errors=(("400", "BadRequest"),), params=("Period",))},
        f"{PREFIX}/sla/at-risk": {"get": _operation(
            "sla_at_risk", "Running clocks past their first warning",
            {"200": _json(_ref("AtRisk"), "What `sla at-risk` shows, every one")},
            errors=(("400", "BadRequest"),))},
        f"{PREFIX}/changes": {
            "get": _operation(
                "changes_list", "Requests for change, newest planned start first",
                {"200": _json(_ref("ChangeList"), "The changes that match")},
                errors=(("400", "BadRequest"),), params=("ChangeState", "Service", "From", "To", "Limit")),
            "post": _operation(
                "changes_create", "Submit a request for change on a person's behalf",
                {"201": {**_json(_ref("Change"), "Submitted: announced, and its approvers asked (in chat)"),
                         "headers": {"Location": {"schema": {"type": "string"}}}}},
                errors=_WRITE_ERRORS, body="ChangeCreate",
                description="The same checks as the chat form: approvals needed by type and risk, conflicts with "
                            "other changes on the same services, freezes and maintenance windows (a change they "
                            "block waits for a service manager's override in chat). Approvals are not offered "
                            "through the API: the CAB (or ECAB) approves or rejects in Slack or Teams, where the "
                            "change is announced. A standard change from a model, or one whose risk needs no "
                            "approval, is scheduled at once.")},
        f"{PREFIX}/changes/success-rate": {"get": _operation(
            "changes_success_rate", "The change success rate over a period",
            {"200": _json(_ref("SuccessRate"), "successful ÷ implemented changes whose work ended in the period")},
            errors=(("400", "BadRequest"),), params=("From", "To", "Service"))},
        f"{PREFIX}/changes/{{id}}": {"get": _operation(
            "changes_get", "A request for change", {"200": _json(_ref("Change"), "The change")},
            errors=(("404", "NotFound"),), params=("ChangeId",))},
        f"{PREFIX}/changes/{{id}}/start": {"post": _step_operation(
            "start", "Start the work of a scheduled change", "ChangeStep")},
        f"{PREFIX}/changes/{{id}}/complete": {"post": _step_operation(
            "complete", "Complete a change in progress", "ChangeComplete",
            "A successful normal or standard change closes; an emergency change, or one with issues, goes to "
            "review.")},
        f"{PREFIX}/changes/{{id}}/fail": {"post": _step_operation(
            "fail", "Record that a change in progress failed and was backed out", "ChangeFail",
            "The change goes to review.")},
        f"{PREFIX}/changes/{{id}}/cancel": {"post": _step_operation(
            "cancel", "Cancel a change awaiting approval or scheduled", "ChangeStep")},
        f"{PREFIX}/surveys": {
            "get": _operation(
                "surveys_list", "Pulse and after-ticket surveys, newest first",
                {"200": _json(_ref("SurveyList"), "The surveys that match, each with its headline score")},
                errors=(("400", "BadRequest"),), params=("SurveyState", "SurveyKind", "Service", "Limit")),
            "post": _operation(
                "surveys_create", "Send a pulse survey on a person's behalf",
                {"201": {**_json(_ref("Survey"), "Sent: posted in its channels, or sent to each person asked"),
                         "headers": {"Location": {"schema": {"type": "string"}}}}},
                errors=(*_WRITE_ERRORS, ("403", "Forbidden")), body="SurveyCreate",
                description="The same checks as `survey new` in chat, run as `owner`: service managers and the "
                            "owners of services run surveys (403 for anyone else). People answer in Slack or Teams; "
                            "answers are not taken through the API.")},
        f"{PREFIX}/surveys/{{id}}": {"get": _operation(
            "surveys_get", "A survey and its results", {"200": _json(_ref("Survey"), "The survey")},
            errors=(("404", "NotFound"),), params=("SurveyId",),
            description="Who answered an anonymous survey is never shown: its results (and comments) show only once "
                        "surveys.min_respondents people have answered, its comments carry no names, and who was "
                        "asked is given as a number only.")},
        f"{PREFIX}/surveys/{{id}}/close": {"post": _operation(
            "surveys_close", "Close an open survey now",
            {"200": _json(_ref("Survey"), "Closed: its results are kept and sent to its owner (and to its channels)")},
            errors=(*_WRITE_ERRORS, ("403", "Forbidden"), ("404", "NotFound"), ("409", "Conflict")),
            params=("SurveyId",), body="SurveyClose",
            description="Runs `survey close SRV-N` as `person`: its owner or a service manager (403 for anyone "
                        "else); 409 when it is not open.")},
        f"{PREFIX}/csi": {
            "get": _operation(
                "csi_list", "The continual service improvement register",
                {"200": _json(_ref("CsiList"), "The items that match")},
                errors=(("400", "BadRequest"),), params=("CsiState", "Service", "Limit")),
            "post": _operation(
                "csi_create", "Raise an improvement on a person's behalf",
                {"201": {**_json(_ref("CsiItem"), "Added to the register; its owner is told"),
                         "headers": {"Location": {"schema": {"type": "string"}}}}},
                errors=_WRITE_ERRORS, body="CsiCreate",
                description="The same checks as `csi add` in chat, run as `person`; every faulty field is named in "
                            "the 422 answer.")},
        f"{PREFIX}/csi/{{id}}/done": {"post": _operation(
            "csi_done", "Mark an improvement done",
            {"200": _json(_ref("CsiItem"), "Done: the item as it is now")},
            errors=(*_WRITE_ERRORS, ("403", "Forbidden"), ("404", "NotFound"), ("409", "Conflict")),
            params=("CsiId",), body="CsiDone",
            description="Runs `csi done CSI-N [note]` as `person`: its owner or a service manager (403 for anyone "
                        "else); 409 when it is done already.")},
        f"{PREFIX}/alertmanager": {"post": _operation(
            "alertmanager_webhook", "Prometheus Alertmanager webhook (payload version 4)",
            {"200": _json(_ref("AlertmanagerResult"), "Applied: firing alerts open outages of the service "
                                                      f"named by the '{SERVICE_LABEL}' label, resolved ones end them")},
            errors=(("400", "BadRequest"),), body="AlertmanagerWebhook",
            description="Point a webhook_config at this URL with `http_config.authorization.credentials` set to "
                        "the token. Each firing episode of an alert (fingerprint and startsAt) is one outage, "
                        "however often Alertmanager repeats it. A malformed payload is answered 400 with every "
                        "problem by its JSON path, so Alertmanager does not retry it.")},
    },
    "components": {
        "schemas": SCHEMAS,
        "parameters": PARAMETERS,
        "responses": RESPONSES,
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                           "description": "the value of SVCBOT_API_TOKEN"}},
    },
}


api_clients.describe_security(OPENAPI, _answer("Forbidden"))


# ================================================================================== checking against it

def resolve(node: dict) -> dict:
    """Follow a local $ref ("#/components/…") in OPENAPI."""
    while "$ref" in node:
        target: Any = OPENAPI
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_TYPE_WORDS = {"object": "an object", "array": "a list", "string": "a string", "integer": "a whole number",
               "number": "a number", "boolean": "true or false", "null": "null"}


def json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return _TYPE_WORDS[name]
    return type(value).__name__


def _show(value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _at(path: str, name: str) -> str:
    return name if path == "(body)" else f"{path}.{name}"


def _types_of(schema: dict) -> list[str]:
    types = schema.get("type", [])
    return [types] if isinstance(types, str) else list(types)


def _of_type(schema: dict, value: Any) -> bool:
    types = _types_of(schema)
    return not types or any(_TYPES[t](value) for t in types)


def check(schema: dict, value: Any, path: str = "(body)", *, closed: bool = False) -> list[str]:
    """Every way ``value`` departs from ``schema`` (the subset of JSON Schema this document uses), each as
    "path: what is wrong". ``closed`` treats every object with properties as if it had
    additionalProperties: false (the tests use it to find fields an answer has but the document lacks)."""
    schema = resolve(schema)
    if "anyOf" in schema:  # e.g. a nullable $ref: [{"$ref": …}, {"type": "null"}]
        options = [resolve(option) for option in schema["anyOf"]]
        found = [check(option, value, path, closed=closed) for option in options]
        if all(found):  # none fits: the faults of the first option of the value's type
            typed = [f for option, f in zip(options, found) if _of_type(option, value)]
            if typed:
                return typed[0]
            words = [_TYPE_WORDS[t] for option in options for t in _types_of(option)]
            return [f"{path}: expected {' or '.join(dict.fromkeys(words))}, got {json_type(value)}"]
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_TYPES[t](value) for t in types):
            return [f"{path}: expected {' or '.join(_TYPE_WORDS[t] for t in types)}, got {json_type(value)}"]
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(str(v) for v in schema["enum"] if v is not None)
        return [f"{path}: expected one of {allowed}, got {_show(value)}"]
    if value is None:
        return []
    problems: list[str] = []
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{path}: must not be empty" if schema["minLength"] == 1 else
                            f"{path}: shorter than {schema['minLength']} characters")
        if len(value) > schema.get("maxLength", len(value)):
            problems.append(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{path}: {_show(value)} does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and parse_rfc3339(value) is None:
            problems.append(f"{path}: expected an RFC 3339 date-time with an offset, like "
                            f"YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DDTHH:MM:SS+01:00, got {_show(value)}")
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{path}: less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{path}: more than {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", False if closed and props else True)
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{_at(path, name)}: required")
        for name, item in value.items():
            if name in props:
                problems += check(props[name], item, _at(path, name), closed=closed)
            elif extra is False:
                problems.append(f"{_at(path, name)}: unknown field; fields: {', '.join(props)}")
            elif isinstance(extra, dict):
                problems += check(extra, item, _at(path, name), closed=closed)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += check(schema["items"], item, f"{path}[{i}]", closed=closed)
    return problems


def operation(op_id: str) -> tuple[str, str, dict]:
    """(method, path, operation) of an operationId in OPENAPI."""
    for path, ops in OPENAPI["paths"].items():
        for method, op in ops.items():
            if op["operationId"] == op_id:
                return method, path, op
    raise KeyError(op_id)


# ================================================================================== errors and plumbing

class _Raced(Exception):
    """Another request stored the same idempotency key first."""


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def plain(value: Any) -> Any:
    """Dataclasses, dicts and lists with datetimes in them, as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return _iso(value)
    return value


async def _body(request: web.Request, schema: str, *, optional: bool = False) -> dict:
    raw = await request.read()
    if not raw.strip():
        if optional:
            return {}
        raise ApiError(400, "The request needs a JSON body", ["(body): empty"])
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "The request body is not JSON", [f"(body): {exc}"]) from None
    problems = check(_ref(schema), data)
    if problems:
        raise ApiError(422, "The request body is not valid", problems)
    return data


def _query(request: web.Request, op_id: str, ctx: Context | None = None) -> dict[str, Any]:
    """The query parameters an operation documents, checked against their schemas; 400 for anything else.
    A period comes back as an sla.Period (this month when not given), a service as its app.yaml entry."""
    _, _, op = operation(op_id)
    documented = {p["name"]: p for p in map(resolve, op.get("parameters", [])) if p["in"] == "query"}
    problems: list[str] = []
    values: dict[str, str] = {}
    seen: set[str] = set()
    for name in request.query.keys():
        if name in seen:
            continue
        seen.add(name)
        if name not in documented:
            problems.append(f"{name}: unknown parameter" + (f"; parameters: {', '.join(documented)}"
                                                             if documented else "; this endpoint takes none"))
            continue
        given = request.query.getall(name)
        if len(given) > 1:
            problems.append(f"{name}: given {len(given)} times")
            continue
        value: Any = given[0]
        if resolve(documented[name]["schema"]).get("type") == "integer":  # a query string is text
            if not re.fullmatch(r"-?\d{1,9}", value):
                problems.append(f"{name}: expected a whole number, got {_show(value)}")
                continue
            value = int(value)
        found = check(documented[name]["schema"], value, name)
        problems += found
        if not found:
            values[name] = value
    if "period" in documented:
        try:
            values["period"] = sla.parse_period(values.get("period"), ctx.now(), ctx.config.bot.timezone)
        except UserError as exc:
            problems.append(f"period: {exc.message}")
    if "service" in values:
        problems += _service_problems(ctx, values["service"], "service")
        values["service"] = ctx.config.service(values["service"])
    if problems:
        raise ApiError(400, "Bad query parameters", problems)
    return values


def _time_of(text: str | None, now: datetime) -> datetime:
    return now if text is None else parse_rfc3339(text)  # the schema has checked the format


def _not_future(field: str, moment: datetime, now: datetime) -> list[str]:
    return [f"{field}: {_iso(moment)} is in the future (it is {_iso(now)} here)"] if moment > now else []


def _period_view(period: sla.Period) -> dict:
    return {"name": period.name, "start": _iso(period.start), "end": _iso(period.end)}


def _service_problems(ctx: Context, key: str, field: str) -> list[str]:
    if ctx.config.service(key) is not None:
        return []
    return [f"{field}: there is no service '{key}'; services: {', '.join(s.id for s in ctx.config.services)}"]


def _service(ctx: Context, key: str, field: str, status: int):
    problems = _service_problems(ctx, key, field)
    if problems:
        raise ApiError(status, f"There is no service '{key}'", problems)
    return ctx.config.service(key)


def _group(ctx: Context, key: str, field: str, kind: str) -> list[str]:
    group = ctx.config.group(key)
    if group is not None and group.kind == kind:
        return []
    known = ", ".join(g.id for g in ctx.config.groups if g.kind == kind)
    what = "internal team" if kind == "internal" else "supplier"
    return [f"{field}: there is no {what} '{key}'; {what}s: {known}"]


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
                            f"got {_show(given[0])}")
        else:
            values[name] = int(given[0])
    if problems:
        raise ApiError(400, "Bad query parameters", problems)
    return values.get("days", ICS_DAYS), values.get("past", ICS_PAST)


# ================================================================================== views

def ticket_view(ctx: Context, session, ticket: Ticket) -> dict:
    """The ticket, its history and its clocks. A stored clock is exact as of its last event or sweep, and a
    running one has used more since, so each is measured again from the history, now (as chat's notices
    do); one whose agreement has gone from app.yaml is shown as last stored."""
    events = session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                             .order_by(TicketEvent.at, TicketEvent.id)).all()
    clocks = session.scalars(select(SlaClock).where(SlaClock.ticket_id == ticket.id)
                             .order_by(SlaClock.kind, SlaClock.agreement_id, SlaClock.metric)).all()
    notices: dict[int, list[ClockNotice]] = {}
    if clocks:
        for n in session.scalars(select(ClockNotice).where(ClockNotice.clock_id.in_([c.id for c in clocks]))
                                 .order_by(ClockNotice.level, ClockNotice.id)):
            notices.setdefault(n.clock_id, []).append(n)
    now = ctx.now()
    measured = breaches.measured_now(session, ctx, clocks, now)
    clock_views = []
    for c in clocks:
        m = measured.get(c.id)
        view = {"agreement": c.agreement_id, "kind": c.kind, "metric": c.metric, "priority": c.priority}
        if m is not None:
            view.update(target_seconds=m.target_seconds, elapsed_seconds=m.elapsed_seconds, state=m.state,
                        breached=m.breached, started_at=_iso(m.started_at), due_at=_iso(m.due_at),
                        stopped_at=_iso(m.stopped_at), computed_at=_iso(now))
        else:
            view.update(target_seconds=c.target_seconds, elapsed_seconds=c.elapsed_seconds, state=c.state,
                        breached=c.breached, started_at=_iso(c.started_at), due_at=_iso(c.due_at),
                        stopped_at=_iso(c.stopped_at), computed_at=_iso(c.computed_at))
        levels = sorted((level, at) for level, at in (m.threshold_at.items() if m else ()) if at is not None)
        view["levels"] = [{"level": float(level), "at": _iso(at)} for level, at in levels]
        view["notices"] = [{"level": n.level, "at": _iso(n.at), "acknowledged_by": n.acknowledged_by,
                            "acknowledged_at": _iso(n.acknowledged_at)} for n in notices.get(c.id, [])]
        clock_views.append(view)
    return {
        "id": tickets.number(ticket), "number": ticket.id, "kind": ticket.kind, "source": ticket.source,
        "external_id": ticket.external_id, "service": ticket.service_id, "title": ticket.title,
        "priority": ticket.priority, "state": ticket.state, "group": ticket.assignment_group,
        "supplier": ticket.supplier, "requester": None if ticket.opened_by == ACTOR.person_id else ticket.opened_by,
        "opened_at": _iso(ticket.opened_at), "responded_at": _iso(ticket.responded_at),
        "resolved_at": _iso(ticket.resolved_at), "closed_at": _iso(ticket.closed_at),
        "updated_at": _iso(ticket.updated_at),
        "events": [{"kind": e.kind, "value": e.value, "at": _iso(e.at), "recorded_at": _iso(e.recorded_at),
                    "by": e.person_id} for e in events],
        "clocks": clock_views,
    }


def outage_view(outage: Outage) -> dict:
    external = outage.fingerprint if outage.source == "api" and not outage.fingerprint.startswith(
        AUTO_FINGERPRINT) else None
    return {"id": f"OUT-{outage.id}", "number": outage.id, "external_id": external, "service": outage.service_id,
            "kind": outage.kind, "source": outage.source, "summary": outage.summary or "",
            "started_at": _iso(outage.started_at), "ended_at": _iso(outage.ended_at)}


def _find_ticket(session, ref: str) -> Ticket:
    m = tickets.NUMBER.match(ref)
    if m:
        ticket = session.get(Ticket, int(m[1])) if int(m[1]) <= ID_MAX else None
    elif ref.startswith("ext:") and len(ref) > 4:
        found = session.scalars(select(Ticket).where(Ticket.external_id == ref[4:])
                                .order_by(Ticket.source != "api", Ticket.id)).all()
        ticket = found[0] if found else None
        if len(found) > 1 and ticket.source != "api":  # from several imports, none through the API
            raise ApiError(409, f"Several tickets have the external id '{ref[4:]}'",
                           [f"ref: {', '.join(tickets.number(t) for t in found)}; say which by number"])
    else:
        raise ApiError(404, f"There is no ticket '{ref}'", ["ref: say INC-N, or ext:EXTERNAL_ID"])
    if ticket is None:
        raise ApiError(404, f"There is no ticket '{ref}'", [f"ref: no ticket '{ref}'"])
    return ticket


def _find_outage(session, key: str) -> Outage:
    m = OUTAGE_NUMBER.match(key)
    outage = (session.get(Outage, int(m[1])) if int(m[1]) <= ID_MAX else None) if m else session.scalar(
        select(Outage).where(Outage.source == "api", Outage.fingerprint == key))
    if outage is None:
        raise ApiError(404, f"There is no outage '{key}'", [f"id: no outage '{key}'; say OUT-N or the id it was "
                                                             "posted with"])
    return outage


def change_view(change: Change, services: list[str], approvals: list[str]) -> dict:
    return {
        "id": changes.number(change), "number": change.id, "source": change.source, "title": change.title,
        "type": change.kind, "model": change.model, "risk": change.risk, "impact": change.impact,
        "state": change.state, "outcome": change.outcome, "services": services,
        "planned_start": _iso(change.planned_start), "planned_end": _iso(change.planned_end),
        "actual_start": _iso(change.actual_start), "actual_end": _iso(change.actual_end),
        "requester": change.requester, "implementer": change.implementer,
        "approvals_needed": change.approvals_needed, "approvals": approvals, "revision": change.revision,
        "description": change.description or "", "implementation": change.implementation_plan or "",
        "backout": change.backout_plan or "", "test": change.test_plan or "",
        "created_at": _iso(change.created_at), "updated_at": _iso(change.updated_at),
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
    return {"id": surveys.number(survey), "number": survey.id, "kind": survey.kind, "question": survey.question,
            "scale": survey.scale, "anonymous": survey.anonymous, "owner": survey.owner, "service": survey.service_id,
            "ticket": f"INC-{survey.ticket_id}" if survey.ticket_id else None, "state": survey.state,
            "created_at": _iso(survey.created_at), "opens_at": _iso(survey.opens_at),
            "closes_at": _iso(survey.closes_at), "closed_at": _iso(survey.closed_at)}


def survey_view(ctx: Context, session, survey: Survey) -> dict:
    """A survey and its results. Nothing in it tells who answered an anonymous survey: its results and
    comments stay hidden below surveys.min_respondents, its comments carry no names and come in an order
    that says nothing (alphabetical), and who was asked is only counted."""
    results = surveys.results_of(session, survey)
    hide = surveys.hidden(ctx, survey, results)
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
    previous = surveys.previous_survey(session, survey)
    if previous is not None:
        before = surveys.results_of(session, previous)
        change = None if surveys.hidden(ctx, previous, before) else satisfaction.trend(results, before)
        if change is not None:
            trend = {"previous": surveys.number(previous), "change": change}
    comments: list = []
    if not survey.comments_purged:
        newest = (select(SurveyAnswer.comment, SurveyAnswer.person_id)
                  .where(SurveyAnswer.survey_id == survey.id, SurveyAnswer.comment.is_not(None))
                  .order_by(SurveyAnswer.answered_at.desc(), SurveyAnswer.id.desc()).limit(surveys.SHOWN_COMMENTS))
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
        hide = surveys.hidden(ctx, survey, results)
        out.append({**_survey_head(survey), "answers": results.answers, "hidden": hide,
                    "score_name": results.score_name, "score": None if hide else results.score})
    return out


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
            "service": item.service_id, "survey": surveys.number(item.survey_id) if item.survey_id else None,
            "ticket": f"INC-{item.ticket_id}" if item.ticket_id else None, "state": item.state,
            "created_by": item.created_by, "created_at": _iso(item.created_at), "done_at": _iso(item.done_at),
            "done_by": item.done_by, "note": item.note or ""}


# ================================================================================== the endpoints

class Api:
    def __init__(self, runtime):
        self.runtime = runtime
        self.clients = api_clients.Clients(runtime.ctx.config, os.environ.get("SVCBOT_API_TOKEN"))
        self.scopes = {(method.upper(), path): api_clients.scopes_of(method, op)
                       for path, ops in OPENAPI["paths"].items() for method, op in ops.items()}

    @property
    def ctx(self) -> Context:
        return self.runtime.ctx

    # ------------------------------------------------------------------ access

    def authorize(self, request: web.Request) -> None:
        """The client of the request's token, kept on the request; 401, 403 or 503 otherwise."""
        client = self.clients.authenticate(request, self.runtime.metrics)
        route = request.match_info.route.resource
        scopes = self.scopes.get((request.method, route.canonical)) if route is not None else None
        if scopes:
            try:
                api_clients.require_scope(client, scopes, request.method, route.canonical)
            except ApiError:
                self.runtime.metrics.requests_refused.labels(platform="api", reason="scope").inc()
                raise
        request[CLIENT] = client

    @staticmethod
    def _client(request: web.Request) -> api_clients.Client:
        return request[CLIENT]

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        if not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
            return await handler(request)
        try:
            if request.path != OPENAPI_PATH:
                self.authorize(request)
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except web.HTTPException as exc:  # no such route, method not allowed, body too large …
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            problems = {404: [f"path: no endpoint {request.path}; see {OPENAPI_PATH}"],
                        405: [f"method: {request.method} is not allowed here; allowed: {exc.headers.get('Allow')}"]}
            return web.json_response({"error": exc.reason, "problems": problems.get(exc.status, [exc.text or ""])},
                                     status=exc.status, headers=headers)
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("API request failed [ref %s]: %s %s", ref, request.method, request.path)
            return web.json_response({"error": f"Something went wrong. Reference: {ref}",
                                      "problems": [], "reference": ref}, status=500)

    # ------------------------------------------------------------------ openapi

    async def openapi_document(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    # ------------------------------------------------------------------ tickets

    async def tickets_create(self, request: web.Request) -> web.Response:
        body = await _body(request, "TicketCreate")
        ctx, now = self.ctx, self.ctx.now()
        opened_at = _time_of(body.get("opened_at"), now)
        problems = _service_problems(ctx, body["service"], "service") + _not_future("opened_at", opened_at, now)
        if "group" in body:
            problems += _group(ctx, body["group"], "group", "internal")
        if "requester" in body and ctx.config.person(body["requester"]) is None:
            problems.append(f"requester: there is no person '{body['requester']}' in app.yaml; people: "
                            f"{', '.join(p.id for p in ctx.config.people)}")
        if problems:
            raise ApiError(422, "The request body is not valid", problems)
        client = self._client(request)
        if "requester" in body:
            api_clients.on_behalf(client, body["requester"], "requester")
        service = ctx.config.service(body["service"])
        status, view = await asyncio.to_thread(self._create_ticket, client.actor(), service.id, body, opened_at)
        headers = {"Location": f"{PREFIX}/tickets/{view['id']}"} if status == 201 else None
        return web.json_response(view, status=status, headers=headers)

    def _existing_ticket(self, external_id: str | None) -> dict | None:
        if not external_id:
            return None
        with self.ctx.sessions() as s:
            ticket = s.scalar(select(Ticket).where(Ticket.source == "api", Ticket.external_id == external_id))
            return {**ticket_view(self.ctx, s, ticket), "duplicate": True} if ticket else None

    def _create_ticket(self, actor: Actor, service_id: str, body: dict, opened_at: datetime) -> tuple[int, dict]:
        external_id = body.get("external_id")
        existing = self._existing_ticket(external_id)
        if existing:
            return 200, existing
        ctx = self.ctx
        cmd = Command(actor, f"api: open a ticket on {service_id}" + (f" ({external_id})" if external_id else ""))
        try:
            with ctx.change(cmd) as work:
                ticket = tickets.open_ticket(
                    work, source="api", service_id=service_id, priority=body["priority"], title=body["title"],
                    at=opened_at, external_id=external_id, kind=body.get("kind", "incident"),
                    group=body.get("group"), state=body.get("state", "new"),
                    opened_by=body.get("requester", ACTOR.person_id))
                work.audit(f"{ticket.kind}.new", tickets.number(ticket), service=service_id,
                           priority=ticket.priority, external_id=external_id, opened_at=_iso(opened_at),
                           **({"requester": body["requester"]} if "requester" in body else {}))
                breaches.sync_clocks(work, ticket)
                surveys.after_ticket(work, ticket)
                view = {**ticket_view(ctx, work.session, ticket), "duplicate": False}
        except IntegrityError:
            existing = self._existing_ticket(external_id)  # the same external_id, posted twice at once
            if existing is None:
                raise
            return 200, existing
        return 201, view

    async def tickets_get(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]

        def read():
            with self.ctx.sessions() as s:
                return ticket_view(self.ctx, s, _find_ticket(s, ref))
        return web.json_response(await asyncio.to_thread(read))

    async def tickets_event(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        body = await _body(request, "TicketEventCreate")
        now = self.ctx.now()
        kind, value = body["kind"], body.get("value")
        at = _time_of(body.get("at"), now)
        problems = _not_future("at", at, now) + self._value_problems(kind, value)
        if problems:
            raise ApiError(422, "The request body is not valid", problems)
        event_id = body.get("event_id")
        view = await asyncio.to_thread(self._add_event, self._client(request).actor(), ref, kind, value, at,
                                       event_id)
        return web.json_response(view)

    def _value_problems(self, kind: str, value: str | None) -> list[str]:
        if kind == "state":
            ok = value in tickets.STATES
            return [] if ok else [f"value: a state event needs a state; states: {', '.join(tickets.STATES)}"]
        if kind == "priority":
            return [] if value in tickets.PRIORITIES else [
                f"value: a priority event needs a priority; priorities: {', '.join(tickets.PRIORITIES)}"]
        if kind == "assign":
            return _group(self.ctx, value, "value", "internal") if value is not None else []
        if kind == "supplier":
            return _group(self.ctx, value, "value", "supplier") if value is not None else []
        return [] if value is None else [f"value: a {kind} event takes no value"]

    def _add_event(self, actor: Actor, ref: str, kind: str, value: str | None, at: datetime,
                   event_id: str | None) -> dict:
        ctx = self.ctx
        cmd = Command(actor, f"api: {kind} {ref}", delivery_key=f"api:event:{event_id}" if event_id else None)
        try:
            with ctx.change(cmd) as work:
                ticket = _find_ticket(work.session, ref)
                if at < ticket.opened_at:
                    raise ApiError(422, "The event is older than the ticket",
                                   [f"at: {_iso(at)} is before {tickets.number(ticket)} was opened "
                                    f"({_iso(ticket.opened_at)})"])
                self._check_transition(work.session, ticket, kind, at)
                try:
                    tickets.record(work, ticket, kind, value, at)
                except UserError as exc:
                    raise ApiError(422, "The request body is not valid", [exc.message]) from None
                work.audit(f"{ticket.kind}.{kind}", tickets.number(ticket), value=value, at=_iso(at),
                           event_id=event_id)
                breaches.sync_clocks(work, ticket)
                surveys.after_ticket(work, ticket)  # resolved: its requester's survey, if its service has one
                return {**ticket_view(ctx, work.session, ticket), "duplicate": False}
        except AlreadyHandled:
            log.info("API event %s repeated; nothing changed", event_id)
            with ctx.sessions() as s:
                return {**ticket_view(ctx, s, _find_ticket(s, ref)), "duplicate": True}

    @staticmethod
    def _check_transition(session, ticket: Ticket, kind: str, at: datetime) -> None:
        """reopen, resolve and close must make sense for the ticket as it stood at `at`."""
        if kind not in ("reopen", "resolve", "close"):
            return
        before = [snap for when, snap in replay(breaches.events_of(session, ticket.id)) if when <= at]
        state = before[-1].state if before else "new"
        allowed = {"reopen": DONE_STATES, "resolve": OPEN_STATES, "close": (*OPEN_STATES, "resolved")}[kind]
        if state not in allowed:
            raise ApiError(409, f"{tickets.number(ticket)} cannot be {kind}{'d' if kind[-1] == 'e' else 'ed'} "
                                f"at {_iso(at)}",
                           [f"kind: {tickets.number(ticket)} was {state} at {_iso(at)}; {kind} needs it "
                            f"{' or '.join(allowed)}"])

    # ------------------------------------------------------------------ services and outages

    async def services_list(self, request: web.Request) -> web.Response:
        _query(request, "services_list")
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
                "status": {"state": row.state if row else "operational", "message": row.message if row else "",
                           "since": _iso(row.since) if row else None},
                "open_outages": [outage_view(o) for o in current if o.service_id == svc.id],
            })
        return {"services": out}

    async def services_availability(self, request: web.Request) -> web.Response:
        service = _service(self.ctx, request.match_info["id"], "id", status=404)
        period = _query(request, "services_availability", self.ctx)["period"]
        return web.json_response(await asyncio.to_thread(self._availability, service.id, period))

    def _availability(self, service_id: str, period: sla.Period) -> dict:
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
        return {"service": service_id, "period": _period_view(period), "agreed_seconds": agreed,
                "downtime_seconds": down, "availability": share, "targets": targets, "outages": listed}

    async def outages_create(self, request: web.Request) -> web.Response:
        body = await _body(request, "OutageCreate")
        ctx, now = self.ctx, self.ctx.now()
        started_at = parse_rfc3339(body["started_at"])
        ended_at = _time_of(body["ended_at"], now) if "ended_at" in body else None
        problems = _service_problems(ctx, body["service"], "service")
        if body.get("id") and OUTAGE_NUMBER.match(body["id"]):
            problems.append(f"id: '{body['id']}' looks like svcbot's own OUT-N numbers; choose another id")
        if ended_at is not None and ended_at < started_at:
            problems.append(f"ended_at: {_iso(ended_at)} is before started_at {_iso(started_at)}")
        if body["kind"] != "maintenance":
            problems += _not_future("started_at", started_at, now)
            if ended_at is not None:
                problems += _not_future("ended_at", ended_at, now)
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
                outage = outages.open_outage(work, service_id, body["kind"], "api", key or
                                             AUTO_FINGERPRINT + uuid.uuid4().hex, started_at, body.get("summary", ""))
                if outage is None:
                    raise _Raced(key)
                if ended_at is not None:
                    outages.close_outage(work, outage, ended_at)
                view = {**outage_view(outage), "duplicate": False}
        except (IntegrityError, _Raced):
            existing = self._existing_outage(key)  # the same id, posted twice at once
            if existing is None:
                raise
            return 200, existing
        return 201, view

    async def outages_end(self, request: web.Request) -> web.Response:
        key = request.match_info["id"]
        body = await _body(request, "OutageEnd", optional=True)
        now = self.ctx.now()
        ended_at = _time_of(body.get("ended_at"), now)
        problems = _not_future("ended_at", ended_at, now)
        if problems:
            raise ApiError(422, "The request body is not valid", problems)
        return web.json_response(await asyncio.to_thread(self._end_outage, self._client(request).actor(), key,
                                                         ended_at, "ended_at" in body))

    def _end_outage(self, actor: Actor, key: str, ended_at: datetime, given: bool) -> dict:
        cmd = Command(actor, f"api: end outage {key}")
        with self.ctx.change(cmd) as work:
            outage = _find_outage(work.session, key)
            name = f"OUT-{outage.id}"
            if outage.source != "api":
                raise ApiError(409, f"{name} came from {outage.source}; it ends there",
                               [f"id: {name} was recorded by {outage.source}, not through the API"])
            if ended_at < outage.started_at:
                raise ApiError(422, "The request body is not valid",
                               [f"ended_at: {_iso(ended_at)} is before {name} started ({_iso(outage.started_at)})"])
            if outage.ended_at is not None and outage.ended_at <= work.now:
                if given and outage.ended_at == ended_at:
                    return {**outage_view(outage), "duplicate": True}
                raise ApiError(409, f"{name} has ended already",
                               [f"id: {name} ended at {_iso(outage.ended_at)}"])
            outages.close_outage(work, outage, ended_at)
            return {**outage_view(outage), "duplicate": False}

    # ------------------------------------------------------------------ SLA reports

    async def sla_attainment(self, request: web.Request) -> web.Response:
        query = _query(request, "sla_attainment", self.ctx)
        service, period = query.get("service"), query["period"]
        by_group = query.get("by") == "group"
        rows = await asyncio.to_thread(sla.attainment_data, self.ctx, service.id if service else None, period,
                                       by_group)
        return web.json_response({
            "period": _period_view(period), "service": service.id if service else None,
            "by": "group" if by_group else None,
            "targets": [{**plain(r), "ok": r.ok} for r in rows if isinstance(r, sla.TargetAttainment)],
            "availability": [{**plain(r), "ok": r.ok} for r in rows if isinstance(r, sla.AvailabilityAttainment)],
            "satisfaction": [{**plain(r), "ok": r.ok} for r in rows if isinstance(r, sla.SatisfactionAttainment)]})

    async def sla_breaches(self, request: web.Request) -> web.Response:
        period = _query(request, "sla_breaches", self.ctx)["period"]
        rows = await asyncio.to_thread(sla.breaches_data, self.ctx, period)
        return web.json_response({"period": _period_view(period),
                                  "breaches": [{"ticket": f"INC-{r.ticket_id}", **plain(r)} for r in rows]})

    async def sla_at_risk(self, request: web.Request) -> web.Response:
        _query(request, "sla_at_risk")
        rows = await asyncio.to_thread(sla.at_risk_data, self.ctx)
        return web.json_response({"at_risk": [{"ticket": f"INC-{r.ticket_id}", **plain(r)} for r in rows]})

    # ------------------------------------------------------------------ changes

    def _acting(self, request: web.Request, key: str, field: str) -> Actor:
        """The person the body names, as the request's client acting on their behalf: 403 when the client
        may not act for them, 422 when app.yaml has no such person."""
        client = self._client(request)
        if not client.acts_for_people:
            api_clients.on_behalf(client, key, field)
        person = self.ctx.config.person(key)
        if person is None:
            people = ", ".join(p.id for p in self.ctx.config.people)
            raise ApiError(422, "The request body is not valid",
                           [f"{field}: there is no person '{key}' in app.yaml; people: {people}"])
        api_clients.on_behalf(client, person.id, field)
        return client.actor_for(person, self.ctx.roles_of(person.id))

    def _change(self, change_id: int) -> dict:
        with self.ctx.sessions() as s:
            return change_views(s, [_find_change(s, str(change_id))])[0]

    async def changes_create(self, request: web.Request) -> web.Response:
        body = await _body(request, "ChangeCreate")
        actor = self._acting(request, body["requester"], "requester")
        view = await asyncio.to_thread(self._create_change, actor, body)
        return web.json_response(view, status=201, headers={"Location": f"{PREFIX}/changes/{view['id']}"})

    def _create_change(self, actor: Actor, body: dict) -> dict:
        values = {k: v for k, v in body.items() if k in changes.FIELDS}
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
        query = _query(request, "changes_list", self.ctx)
        start, end = (parse_rfc3339(query[k]) if k in query else None for k in ("from", "to"))
        if start and end and end <= start:
            raise ApiError(400, "Bad query parameters", [f"to: {_iso(end)} is not after from {_iso(start)}"])

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
        query = _query(request, "changes_success_rate", self.ctx)
        now = self.ctx.now()
        end = parse_rfc3339(query["to"]) if "to" in query else now
        start = parse_rfc3339(query["from"]) if "from" in query else end - timedelta(days=change_calendar.RATE_DAYS)
        if end <= start:
            raise ApiError(400, "Bad query parameters", [f"to: {_iso(end)} is not after from {_iso(start)}"])
        service = query.get("service")

        def read():
            with self.ctx.sessions() as s:
                return change_calendar.success_rate(s, start, end, service.id if service else None)
        rate = await asyncio.to_thread(read)
        return web.json_response({"from": _iso(start), "to": _iso(end), "service": service.id if service else None,
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
        body = await _body(request, schema)
        actor = self._acting(request, body["by"], "by")
        note = " ".join(body.get("note", "").split())
        if verb == "fail" and not note:
            raise ApiError(422, "The request body is not valid", ["note: say what happened"])

        def run() -> tuple[str, Any]:
            with self.ctx.sessions() as s:
                change_id = _find_change(s, key).id
            cmd = Command(actor, f"change {verb} CHG-{change_id}", via="api")
            reply, outcome, _ = guarded(self.ctx, cmd, lambda: changes.move(
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
        """GET /changes.ics: streamed; the store is read (two queries) before the first byte is sent. Public
        unless status_page makes the calendar private."""
        refusal = self.clients.feed_refusal(request, self.ctx.config.status_page.calendar_private)
        if refusal is not None:
            return refusal.response()
        try:
            days, past = _ics_window(request)
        except ApiError as exc:
            return exc.response()
        now, cfg = self.ctx.now(), self.ctx.config

        def read():
            with self.ctx.sessions() as s:
                return change_calendar.ics_rows(s, now - timedelta(days=past), now + timedelta(days=days))
        rows = await asyncio.to_thread(read)
        # Calendar clients poll: when no event changed, say so instead of writing every event again.
        digest = hashlib.sha256(repr([(c.id, c.revision, c.updated_at, c.state, tuple(sv)) for c, sv in rows])
                                .encode()).hexdigest()[:32]
        etag = f'"{digest}"'
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers={"ETag": etag})
        response = web.StreamResponse(headers={"Content-Disposition": 'inline; filename="changes.ics"',
                                               "Cache-Control": "no-cache", "ETag": etag})
        response.content_type = "text/calendar"
        response.charset = "utf-8"
        await response.prepare(request)
        pieces = change_calendar.ics_chunks(cfg, rows)
        while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
            await response.write(piece)
        await response.write_eof()
        return response

    # ------------------------------------------------------------------ surveys

    def _survey(self, survey_id: int) -> dict:
        with self.ctx.sessions() as s:
            return survey_view(self.ctx, s, _find_survey(s, str(survey_id)))

    async def surveys_create(self, request: web.Request) -> web.Response:
        body = await _body(request, "SurveyCreate")
        actor = self._acting(request, body["owner"], "owner")
        view = await asyncio.to_thread(self._create_survey, actor, body)
        return web.json_response(view, status=201, headers={"Location": f"{PREFIX}/surveys/{view['id']}"})

    def _create_survey(self, actor: Actor, body: dict) -> dict:
        """The chat form's text values: lists as comma-separated names, true and false as yes and no, the
        closing time in UTC (check() has made sure it is an RFC 3339 date-time)."""
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
        query = _query(request, "surveys_list", self.ctx)

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
        body = await _body(request, "SurveyClose")
        actor = self._acting(request, body["person"], "person")

        def run() -> dict:
            with self.ctx.sessions() as s:
                survey_id = _find_survey(s, key).id
            cmd = Command(actor, f"survey close {surveys.number(survey_id)}", via="api")
            try:
                surveys.close_cmd(self.ctx, cmd, survey_id)
            except Refused as exc:
                raise ApiError(403, exc.message, [f"person: {exc.message}"]) from None
            except UserError as exc:
                raise ApiError(409, exc.message, [f"state: {exc.message}"]) from None
            return self._survey(survey_id)
        return web.json_response(await asyncio.to_thread(run))

    # ------------------------------------------------------------------ the CSI register

    async def csi_list(self, request: web.Request) -> web.Response:
        query = _query(request, "csi_list", self.ctx)
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
        body = await _body(request, "CsiCreate")
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
        body = await _body(request, "CsiDone")
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

    # ------------------------------------------------------------------ Alertmanager

    async def alertmanager_webhook(self, request: web.Request) -> web.Response:
        _query(request, "alertmanager_webhook")
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
        long = [f"alerts: fingerprint {_show(e.fingerprint)} is longer than {FINGERPRINT_MAX} characters"
                for e in events if len(e.fingerprint) > FINGERPRINT_MAX]
        if long:
            raise ApiError(400, "Not an Alertmanager webhook payload (version 4)", long)
        notes += [f"alerts: {e.fingerprint} names service '{e.service}', which is not in the catalogue"
                  for e in events if self.ctx.config.service(e.service) is None]
        counts = await asyncio.to_thread(outages.apply_alerts, self.ctx, events, self._client(request).actor())
        return web.json_response({**counts, "notes": notes})


def register(app: web.Application, runtime) -> None:
    """Serve the JSON API on ``app``: every operation of OPENAPI, at its path, with auth and errors in JSON."""
    api = Api(runtime)
    app.middlewares.append(api.middleware)
    for path, ops in OPENAPI["paths"].items():
        for method, op in ops.items():
            app.router.add_route(method.upper(), path, getattr(api, op["operationId"]))
    app.router.add_get(ICS_PATH, api.changes_ics)
    if api.clients.off:
        log.warning("Neither api_clients nor SVCBOT_API_TOKEN is set: the JSON API under %s answers 503", PREFIX)
    elif any(c.name == api_clients.LEGACY for c in api.clients.all):
        log.info("SVCBOT_API_TOKEN is the API client 'legacy' (every scope, acting for anyone); "
                 "see the README to move to named clients")
