"""The public status page: ``GET /`` for people and ``GET /status.json`` for scripts, the same data for both.

- The snapshot is read off the event loop through the functions that answer in chat, so the page says what
  they say: the services and their state as `status` gives them (a service nobody set is operational), the
  open incidents with their clocks measured now (as `sla at-risk` measures them), the changes that hold a
  window in the next days (as `change calendar`), and this month's attainment (as `sla`).
- Who may read it is ``status_page`` in app.yaml: ``public`` (no token, the default), ``hide_incident_titles``
  (no token; open incidents without their titles, which say more than a public page should), or ``private``
  (a feed key as ``?key=``, or an API client's token with the scope ``read``; bot/api_clients.py). Everything
  people typed is escaped: the template is rendered with autoescape on, and a Content-Security-Policy lets
  only the page's own inline script run.
- The HTML is complete without JavaScript. Its small script fetches the page again every minute and swaps
  the content of ``<main>``, keeping the scroll position and focus (never ``<meta http-equiv=refresh>``,
  which reloads the page under a reader's feet). ``?refresh=SECONDS`` shortens the interval, for tests
  and wall displays.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.api import plain
from bot.api_clients import Clients
from handlers.changes import calendar
from handlers.changes.record import window_text
from handlers.core.context import Context
from handlers.services import status
from handlers.sla import attainment as sla
from handlers.sla import breaches, dependents
from handlers.sla.clocks import OPEN_STATES
from storage.models import SlaClock, Ticket

if TYPE_CHECKING:
    from jinja2 import Environment

REFRESH_SECONDS = 60
REFRESH_RANGE = (1, 3600)
CHANGE_DAYS = 7
INCIDENTS_SHOWN = 50
# A ticket's clocks as its life goes: the customer's SLA first, then what underpins it; response, then resolution.
CLOCK_ORDER = {"sla": 0, "ola": 1, "uc": 2, "response": 0, "resolution": 1}

# Only the page's own script, by its nonce; styles inline; fetches to this server only.
CSP = ("default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'")


@dataclass(frozen=True)
class ClockNow:
    """One clock of an open incident, measured now."""

    kind: str  # sla | ola | uc
    agreement: str
    metric: str  # response | resolution
    state: str  # running | paused | met | breached
    late: bool  # more than its target used (a running clock past its due time)
    used: float  # % of the target used by now
    due_at: datetime | None  # while it runs: when it is (or was) due


@dataclass(frozen=True)
class OpenIncident:
    id: str  # INC-N
    priority: str
    service: str
    service_name: str
    title: str | None  # None where status_page hides incident titles
    state: str
    opened_at: datetime
    clocks: list[ClockNow]


@dataclass(frozen=True)
class UpcomingChange:
    id: str  # CHG-N
    title: str
    state: str
    start: datetime
    end: datetime
    window: str  # in the page's time zone
    services: list[str]  # names


@dataclass(frozen=True)
class AttainmentLine:
    """One row of `sla` for this month, in words and numbers."""

    agreement: str
    kind: str | None  # sla | ola | uc; None for an agreement no longer in app.yaml
    party: str | None
    measure: str  # "resolution P2", "availability Web Shop", "satisfaction Payments Gateway"
    share: float  # % met, available or satisfied
    result: str
    goal: float | None
    met: bool | None  # None: no goal to meet


@dataclass(frozen=True)
class StatusPage:
    name: str
    timezone: str
    generated_at: datetime
    headline: str
    tone: str  # ok | warning | error | info
    services: list[status.ServiceState]
    incidents: list[OpenIncident]
    incidents_open: int  # all of them; at most INCIDENTS_SHOWN are listed
    change_days: int
    changes: list[UpcomingChange]
    attainment_period: str
    attainment: list[AttainmentLine]
    # A service → what it depends on that is not operational now (service, name, state, impact, path).
    affected_by: dict[str, list[dict]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- the snapshot

def snapshot(ctx: Context) -> StatusPage:
    """Everything the page shows, as of now. Synchronous: the store is."""
    now, cfg = ctx.now(), ctx.config
    period = sla.parse_period("this-month", now, cfg.bot.timezone)
    with ctx.sessions() as s:  # one read for the whole page
        overview = status.overview(ctx, s)
        incidents, incidents_open = open_incidents(ctx, s, now)
        if cfg.status_page.mode == "hide_incident_titles":
            incidents = [dataclasses.replace(i, title=None) for i in incidents]
        changes = upcoming_changes(ctx, s, now)
        attainment = sla.attainment_data(ctx, None, period, session=s)
        affected = dependents.affected_services(ctx, s)
    return StatusPage(
        name=cfg.bot.name, timezone=cfg.bot.timezone, generated_at=now, headline=overview.title, tone=overview.tone,
        services=overview.services, incidents=incidents, incidents_open=incidents_open, change_days=CHANGE_DAYS,
        changes=changes, attainment_period=period.name,
        attainment=[attainment_line(ctx, row) for row in attainment],
        affected_by={sid: dependents.views(ctx, found) for sid, found in affected.items()})


def open_incidents(ctx: Context, s: Session, now: datetime) -> tuple[list[OpenIncident], int]:
    """The most urgent open incidents (by priority, oldest first), each with the clocks that have run."""
    is_open = (Ticket.kind == "incident", Ticket.state.in_(OPEN_STATES))
    total = s.scalar(select(func.count(Ticket.id)).where(*is_open))
    tickets = s.scalars(select(Ticket).where(*is_open).order_by(Ticket.priority, Ticket.opened_at, Ticket.id)
                        .limit(INCIDENTS_SHOWN)).all()
    clocks = s.scalars(select(SlaClock).where(SlaClock.ticket_id.in_([t.id for t in tickets]))).all()
    measured = breaches.measured_now(s, ctx, clocks, now)
    by_ticket: dict[int, list[ClockNow]] = {}
    for c in sorted(clocks, key=lambda c: (CLOCK_ORDER[c.kind], c.agreement_id, CLOCK_ORDER[c.metric])):
        m = measured.get(c.id)
        # Left out: no target at this priority, or an OLA or UC that has not run (not that party's turn).
        # An SLA clock paused since the ticket opened has not run either, but it is the customer's: shown.
        if m is None or m.state == "unused" or (c.kind != "sla" and not m.engaged):
            continue
        by_ticket.setdefault(c.ticket_id, []).append(
            ClockNow(c.kind, c.agreement_id, c.metric, m.state, m.breached, m.used, m.due_at))
    return [OpenIncident(f"INC-{t.id}", t.priority, t.service_id, ctx.config.service_names([t.service_id]),
                         t.title, t.state, t.opened_at, by_ticket.get(t.id, [])) for t in tickets], total


def upcoming_changes(ctx: Context, s: Session, now: datetime) -> list[UpcomingChange]:
    """Changes awaiting approval, scheduled or under way whose window overlaps the next CHANGE_DAYS days."""
    zone = ctx.config.bot.timezone
    return [UpcomingChange(f"CHG-{c.id}", c.title, c.state, c.planned_start, c.planned_end, window_text(c, zone),
                           [ctx.config.service_names([x]) for x in services])
            for c, services in calendar.holding_rows(s, now, now + timedelta(days=CHANGE_DAYS))]


def attainment_line(ctx: Context, row) -> AttainmentLine:
    if isinstance(row, sla.TargetAttainment):
        measure = f"{row.metric} {row.priority}"
        result = f"{row.share:.1f} % met ({row.met} of {row.measured})"
    elif isinstance(row, sla.SatisfactionAttainment):
        measure = f"satisfaction {ctx.config.service_names([row.service])}"
        result = f"CSAT {row.share:.1f} % ({row.satisfied} of {row.answers} satisfied)"
    else:
        measure = f"availability {ctx.config.service_names([row.service])}"
        result = f"{row.share:.3f} % available (down {breaches.human(row.downtime_seconds)})"
    return AttainmentLine(row.agreement, row.agreement_kind, row.party, measure, row.share, result, row.goal,
                          None if row.goal is None else row.ok)


# ------------------------------------------------------------------------------------------- rendering

def _local(moment: datetime, zone: str, fmt: str = "%a %d %b %H:%M %Z") -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime(fmt)


@lru_cache(maxsize=1)
def _env() -> Environment:
    # Its own environment: the chat templates make JSON and mrkdwn, this one HTML, so autoescape is on.
    # jinja2 is imported with the first page, not at start.
    from jinja2 import Environment, PackageLoader, StrictUndefined
    env = Environment(loader=PackageLoader("bot", "templates"), undefined=StrictUndefined, autoescape=True,
                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)  # built-in: never change
    env.filters.update(local=_local, human=breaches.human)
    return env


def render(page: StatusPage, refresh_seconds: int = REFRESH_SECONDS, nonce: str = "", feed_query: str = "") -> str:
    return _env().get_template("web/status.html.j2").render(page=page, refresh=refresh_seconds, nonce=nonce,
                                                            feed_query=feed_query)


def _refresh_of(request: web.Request) -> int:
    try:
        seconds = int(request.query.get("refresh", REFRESH_SECONDS))
    except ValueError:
        return REFRESH_SECONDS
    return min(max(seconds, REFRESH_RANGE[0]), REFRESH_RANGE[1])


def register(app: web.Application, runtime) -> None:
    """Serve the status page at ``/`` and its data at ``/status.json``, to whom status_page lets read them."""
    clients = Clients(runtime.ctx.config, os.environ.get("SVCBOT_API_TOKEN"))
    private = runtime.ctx.config.status_page.mode == "private"
    cache = "private, no-cache" if private else "no-cache"  # a shared cache must not serve it to others

    async def page(request: web.Request) -> web.Response:
        if refusal := clients.feed_refusal(request, private):
            return web.Response(status=401, text=f"{refusal.error}: {refusal.problems[0]}\n",
                                headers={**refusal.headers, "Cache-Control": "no-store"})
        nonce = secrets.token_urlsafe(16)
        # A private page opened with its feed key links to its data and calendar with the same key.
        feed_query = "?" + urlencode({"key": request.query["key"]}) if private and "key" in request.query else ""
        html = render(await asyncio.to_thread(snapshot, runtime.ctx), _refresh_of(request), nonce, feed_query)
        return web.Response(text=html, content_type="text/html", headers={
            "Content-Security-Policy": CSP.format(nonce=nonce), "Cache-Control": cache,
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    async def data(request: web.Request) -> web.Response:
        if refusal := clients.feed_refusal(request, private):
            return refusal.response()
        return web.json_response(plain(await asyncio.to_thread(snapshot, runtime.ctx)),
                                 headers={"Cache-Control": cache})

    app.router.add_get("/", page)
    app.router.add_get("/status.json", data)
