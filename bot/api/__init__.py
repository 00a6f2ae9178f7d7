"""The JSON API for other systems, under /api/v1: tickets and their history, outages, the service catalogue
and its availability, the SLA reports, requests for change, pulse and after-ticket surveys, the CSI register,
knowledge search, the Prometheus Alertmanager webhook, and the OpenAPI document that describes all of them.
Beside it, as the status page is (``status_page`` in app.yaml), ``GET /changes.ics``: the forward schedule of
change as iCalendar.

- Every endpoint but the OpenAPI document wants the bearer token of an API client, with the scope the
  operation needs (bot/api_clients.py: tokens, on whose behalf; ``SVCBOT_API_TOKEN`` is the client
  ``legacy``). Without any client the API is off and says so (503); a missing or unknown token is 401, a token
  without the scope 403.
- Every write runs as the client (platform ``api``, person ``api``, the client's name in the audit) inside
  ``ctx.change(...)``, so the audit and outbox rows commit with the change or not at all. The Alertmanager
  webhook writes through ``handlers.sla.outages.apply_alerts``, which keeps its own transaction with the same
  actor. Changes, surveys and CSI items are the exception: they are requested, started, run, closed … by
  people, so those calls name the person (``requester``, ``by``, ``owner``, ``person``) and run as them
  (platform ``api``), through the same handlers and rights as chat, if the client may act on their behalf
  (403 otherwise). A ticket may name its ``requester`` (the same rule): resolved through the API, it arms
  their after-ticket survey as chat does.
- Who answered an anonymous survey is never told: its results and comments stay hidden below
  ``surveys.min_respondents`` answers, its comments carry no names, and who was asked is only counted.
- ``openapi.yaml`` in this package is the one description of the API: routes are registered from its paths,
  the scopes each operation wants are its ``security``, and request bodies and query parameters are checked
  against its schemas (``spec.py``, with jsonschema). Each resource has its module: ``tickets``, ``services``
  (and outages), ``sla``, ``changes`` (and ``/changes.ics``), ``surveys``, ``csi``, ``kb``, ``suppliers``,
  ``problems``, ``alertmanager``, ``reviews`` (post-incident reviews, read only);
  what they share is in ``common``.
- A bad request gets ``{"error": ..., "problems": [...]}`` and changes nothing: 400 (not JSON, a bad query
  parameter, a malformed Alertmanager payload), 403 (a token without the scope, a person the client may not
  act for, or a person who may not do it), 404 (an unknown
  ticket, outage, service, change, survey or CSI item in the path), 409 (the request conflicts with what is
  stored), 422 (JSON that does not fit the schema or names something unknown). Anything unexpected is logged
  with a reference and answered 500 with it.
"""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bot import api_clients
from bot.api.alertmanager import AlertmanagerRoutes
from bot.api.changes import ICS_PATH, ChangeRoutes, change_view, change_views
from bot.api.common import OPENAPI_PATH, PREFIX, plain
from bot.api.csi import CsiRoutes, csi_view
from bot.api.kb import KbRoutes
from bot.api.reviews import ReviewRoutes
from bot.api.problems import ProblemRoutes
from bot.api.services import ServiceRoutes, outage_view
from bot.api.sla import SlaRoutes
from bot.api.spec import check, document, json_type, operation, resolve
from bot.api.suppliers import SupplierRoutes
from bot.api.surveys import SurveyRoutes, survey_summaries, survey_view
from bot.api.tickets import TicketRoutes, ticket_view

__all__ = ["Api", "ICS_PATH", "OPENAPI_PATH", "PREFIX", "change_view", "change_views", "check", "csi_view",
           "document", "json_type", "operation", "outage_view", "plain", "register", "resolve", "survey_summaries",
           "survey_view", "ticket_view"]

log = logging.getLogger("svcbot.api")


class Api(TicketRoutes, ServiceRoutes, SlaRoutes, ChangeRoutes, SurveyRoutes, CsiRoutes, KbRoutes,
          SupplierRoutes, ProblemRoutes, AlertmanagerRoutes, ReviewRoutes):
    """Every route of the API; each operation is the method named by its operationId."""


def register(app: web.Application, runtime) -> None:
    """Serve the JSON API on ``app``: every operation of the document, at its path, with auth and errors in
    JSON."""
    api = Api(runtime)
    app.middlewares.append(api.middleware)
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            app.router.add_route(method.upper(), path, getattr(api, op["operationId"]))
    app.router.add_get(ICS_PATH, api.changes_ics)
    if api.clients.off:
        log.warning("Neither api_clients nor SVCBOT_API_TOKEN is set: the JSON API under %s answers 503", PREFIX)
    elif any(c.name == api_clients.LEGACY for c in api.clients.all):
        log.info("SVCBOT_API_TOKEN is the API client 'legacy' (every scope, acting for anyone); "
                 "see the README to move to named clients")


def __getattr__(name: str) -> Any:
    if name == "OPENAPI":  # the document, read from openapi.yaml when first asked for
        return document()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
