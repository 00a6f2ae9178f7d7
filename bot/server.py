"""One aiohttp server: Slack, Teams, health and metrics, with the scheduler that sweeps the outbox."""
from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from bot import api, status_page
from bot.outbox import Delivered, DeliveryError, Outgoing
from bot.runtime import Runtime
from bot.teams_trust import EMULATOR_VARIABLE, is_loopback, peer_host, teams_mode
from handlers.home import published as home
from handlers.router import FORMS, ROUTES, lazy
from handlers.services import catalogue_review
from handlers.sla import breaches, outages
from handlers.surveys import asking
from storage.db import read_only

if TYPE_CHECKING:
    from bot.teams import TeamsFront, TeamsSender

log = logging.getLogger("svcbot")

RUNTIME = web.AppKey("runtime", Runtime)

# Sweeps of capabilities nothing else at start imports: each is imported when it first runs, off the event loop.
changes_sweep = lazy("handlers.changes.messages:sweep")
digests_sweep = lazy("handlers.reporting.digests:sweep")
reports_sweep = lazy("handlers.reporting.reports:sweep")
kb_reviews_sweep = lazy("handlers.knowledge.reviews:sweep")
prune = lazy("handlers.core.retention:prune")
reviews_sweep = lazy("handlers.reviews.record:sweep")
handovers_sweep = lazy("handlers.shifts.handover:sweep")
problems_sweep = lazy("handlers.problems.suggestions:suggest")


def build_app(runtime: Runtime) -> web.Application:
    app = web.Application()
    app[RUNTIME] = runtime
    senders = {}

    token = os.environ.get("SLACK_BOT_TOKEN")
    secret = os.environ.get("SLACK_SIGNING_SECRET")
    app_token = os.environ.get("SLACK_APP_TOKEN")
    slack = None
    if token:
        from bot.slack import SlackFront, SlackSender
        if not secret and not app_token:
            raise SystemExit("SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET (HTTP) nor "
                             "SLACK_APP_TOKEN (Socket Mode) is: Slack requests could not be verified.")
        slack = SlackFront(runtime, token, secret if not app_token else None, os.environ.get("SLACK_API_URL"))
        senders["slack"] = SlackSender(slack.client)
        if not app_token:
            app.router.add_post("/slack/events", slack.handle)
    if slack is None or app_token:
        app.router.add_post("/slack/events", _slack_off)

    teams = LazyTeams(runtime)
    if teams.configured:  # a misconfigured adapter fails the start, not the first Teams request
        teams.front()
    senders["teams"] = teams  # when Teams is off, its messages fail at once, saying so
    app.router.add_post("/api/messages", teams.handle)

    app.router.add_get("/healthz", _healthz)
    status_page.register(app, runtime)
    app.router.add_get("/metrics", _metrics)
    api.register(app, runtime)
    runtime.deliverer.senders.update(senders)

    scheduler = AsyncIOScheduler(timezone="UTC")
    socket_mode = {}

    async def start(_app):
        # Clocks follow app.yaml: measured again, once, when its agreements or calendars changed. Before the
        # server listens: measuring again counts levels already passed as announced, which would silence
        # the breach of a ticket opened in the meantime.
        await asyncio.to_thread(breaches.recompute_if_changed, runtime.ctx)
        runtime.deliverer.start()
        delivery = runtime.ctx.config.delivery
        # One sweep at a time; a sweep missed while stopped is run once at start, not skipped.
        scheduler.add_job(runtime.deliverer.sweep, "interval", seconds=delivery.sweep_seconds, id="outbox",
                          max_instances=1, coalesce=True, misfire_grace_time=300)
        scheduler.add_job(_in_thread, "interval", seconds=delivery.sweep_seconds, args=[breaches.sweep, runtime.ctx],
                          id="clocks", max_instances=1, coalesce=True, misfire_grace_time=300)
        scheduler.add_job(_in_thread, "interval", seconds=delivery.sweep_seconds, args=[changes_sweep, runtime.ctx],
                          id="changes", max_instances=1, coalesce=True, misfire_grace_time=300)
        scheduler.add_job(_in_thread, "interval", seconds=delivery.sweep_seconds, args=[asking.sweep, runtime.ctx],
                          id="surveys", max_instances=1, coalesce=True, misfire_grace_time=300)
        # Digest and report slots are rows (handlers/reporting/schedule.py): a sweep at start posts one missed
        # while stopped.
        scheduler.add_job(_in_thread, "interval", seconds=delivery.sweep_seconds, args=[digests_sweep, runtime.ctx],
                          id="digests", max_instances=1, coalesce=True, misfire_grace_time=300,
                          next_run_time=datetime.now(timezone.utc))
        scheduler.add_job(_in_thread, "interval", seconds=delivery.sweep_seconds, args=[reports_sweep, runtime.ctx],
                          id="reports", max_instances=1, coalesce=True, misfire_grace_time=300,
                          next_run_time=datetime.now(timezone.utc))
        scheduler.add_job(_in_thread, "interval", hours=6, args=[asking.purge, runtime.ctx], id="purge",
                          max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
        scheduler.add_job(_in_thread, "interval", minutes=1, args=[outages.burn_sweep, runtime.ctx], id="burn",
                          max_instances=1, coalesce=True, misfire_grace_time=300)
        # A P1 or P2 resolved through the API gets its review at the next sweep (handlers/reviews).
        scheduler.add_job(_in_thread, "interval", seconds=delivery.sweep_seconds, args=[reviews_sweep, runtime.ctx],
                          id="incident-reviews", max_instances=1, coalesce=True, misfire_grace_time=300)
        # Reviews and confirmations fall due by the day: a sweep a minute asks, reminds and tells in time.
        scheduler.add_job(_in_thread, "interval", minutes=1, args=[kb_reviews_sweep, runtime.ctx], id="kb-reviews",
                          max_instances=1, coalesce=True, misfire_grace_time=300)
        scheduler.add_job(_in_thread, "interval", minutes=1, args=[catalogue_review.sweep, runtime.ctx],
                          id="catalogue", max_instances=1, coalesce=True, misfire_grace_time=300)
        # Handovers at each shift's end, once across replicas, and to the service managers when not taken over
        # within the hour (handlers/shifts/handover.py); shift ends are whole minutes.
        scheduler.add_job(_in_thread, "interval", seconds=30, args=[handovers_sweep, runtime.ctx], id="handovers",
                          max_instances=1, coalesce=True, misfire_grace_time=300,
                          next_run_time=datetime.now(timezone.utc))
        # Clusters of similar incidents suggested to their service owners as problems, once each.
        scheduler.add_job(_in_thread, "interval", minutes=5, args=[problems_sweep, runtime.ctx],
                          id="problem-suggestions", max_instances=1, coalesce=True, misfire_grace_time=300)
        # Slack homes whose content changed are published again (handlers/home/published.py).
        scheduler.add_job(_in_thread, "interval", seconds=home.SWEEP_SECONDS, args=[home.sweep, runtime.ctx],
                          id="homes", max_instances=1, coalesce=True, misfire_grace_time=300)
        # Delivered messages and delivery keys past app.yaml's retention (handlers/core/retention.py).
        scheduler.add_job(_in_thread, "interval", hours=6, args=[prune, runtime.ctx], id="prune",
                          max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
        # The handlers a command or form needs, imported now rather than by the first person who asks.
        scheduler.add_job(_in_thread, "date", args=[_import_handlers, None], id="import-handlers")
        scheduler.start()
        runtime.deliverer.kick()
        if slack and app_token:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
            socket_mode["handler"] = AsyncSocketModeHandler(slack.app, app_token)
            await socket_mode["handler"].connect_async()
            log.info("Slack connected over Socket Mode")
        if teams.mode == "emulator":
            log.warning("!" * 78)
            log.warning("%s=1: /api/messages accepts UNAUTHENTICATED activities from loopback only,", EMULATOR_VARIABLE)
            log.warning("for the Bot Framework Emulator and local trials; replies may go to loopback.")
            log.warning("!" * 78)
        elif teams.mode is None:
            given = [name for name in LazyTeams.SETTINGS if os.environ.get(name)]
            (log.warning if given else log.info)(
                "MICROSOFT_APP_ID is not set: Teams is off (/api/messages answers 503)%s",
                f"; {', '.join(given)} alone does nothing" if given else "")
        elif os.environ.get(EMULATOR_VARIABLE) == "1":
            log.warning("%s=1 is ignored: MICROSOFT_APP_ID is set, so every Teams activity needs its token",
                        EMULATOR_VARIABLE)
        if not token:
            log.info("SLACK_BOT_TOKEN is not set: Slack is off")

    async def stop(_app):
        scheduler.shutdown(wait=False)
        if "handler" in socket_mode:
            await socket_mode["handler"].close_async()
        runtime.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


class LazyTeams:
    """Teams' front and sender, built when first needed: bot.teams imports botbuilder, the largest single
    import of the start-up, and a server that never hears from Teams need not pay for it. Built at once
    when MICROSOFT_APP_ID is given, since the adapter checks its settings when built. With neither an app
    id nor the emulator mode, Teams is off: /api/messages answers 503 and Teams messages fail unsent."""

    platform = "teams"
    SETTINGS = ("MICROSOFT_APP_ID", "MICROSOFT_APP_PASSWORD", "MICROSOFT_APP_TYPE", "MICROSOFT_APP_TENANT_ID")

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.mode = teams_mode()  # credentials | emulator | None (off)
        self.configured = self.mode == "credentials"
        self._front: TeamsFront | None = None
        self._sender: TeamsSender | None = None

    def front(self) -> TeamsFront:
        # Called from build_app and the event loop, both on the main thread, never from workers: built once.
        if self._front is None:
            from bot.teams import TeamsFront, TeamsSender
            self._front = TeamsFront(self.runtime)
            self._sender = TeamsSender(self._front)
        return self._front

    async def handle(self, request: web.Request) -> web.Response:
        if self.mode is None:
            return web.json_response({"error": "Teams is not configured on this server (set MICROSOFT_APP_ID, "
                                               "MICROSOFT_APP_PASSWORD; or " + EMULATOR_VARIABLE + "=1 for "
                                               "the Bot Framework Emulator on this machine)"}, status=503)
        # A reverse proxy on this machine makes every caller look local: what came through one is refused.
        proxied = [name for name in FORWARDING_HEADERS if name in request.headers]
        if self.mode == "emulator" and (proxied or not is_loopback(peer_host(request.transport))):
            self.runtime.metrics.requests_refused.labels(platform="teams", reason="auth").inc()
            log.warning("refused an unauthenticated Teams activity from %s%s: the emulator mode takes this "
                        "machine only", peer_host(request.transport), f" via {', '.join(proxied)}" if proxied else "")
            return web.json_response({"error": "the Teams emulator mode accepts activities from this machine only"},
                                     status=403)
        return await self.front().handle(request)

    async def send(self, item: Outgoing) -> Delivered:
        if self.mode is None:
            raise DeliveryError("Teams is off on this server (no MICROSOFT_APP_ID): not sent", permanent=True)
        self.front()
        return await self._sender.send(item)

    async def find_sent(self, item: Outgoing) -> Delivered | None:
        if self.mode is None:
            return None
        self.front()
        return await self._sender.find_sent(item)


FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")


async def _slack_off(request: web.Request) -> web.Response:
    return web.json_response({"error": "Slack over HTTP is not configured on this server "
                                       "(set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET)"}, status=503)


def _database_answers(runtime: Runtime) -> None:
    # A read: it need not wait for a writer (on SQLite, the write lock) to answer.
    with read_only(runtime.engine).connect() as conn:
        conn.execute(text("SELECT 1"))


async def _healthz(request: web.Request) -> web.Response:
    try:
        await asyncio.to_thread(_database_answers, request.app[RUNTIME])
    except Exception as exc:
        return web.json_response({"status": "unhealthy", "database": str(exc)}, status=503)
    return web.json_response({"status": "ok"})


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[RUNTIME].metrics
    await asyncio.to_thread(metrics.refresh)
    return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _import_handlers(_ctx) -> None:
    for handler in [*ROUTES.values(), *FORMS.values()]:
        if isinstance(handler, lazy):
            handler.resolve()


async def _in_thread(job, ctx) -> None:
    """Scheduled sweeps use the synchronous store: run them off the event loop."""
    await asyncio.to_thread(job, ctx)


def serve(runtime: Runtime, port: int) -> None:
    app = build_app(runtime)
    log.info("svcbot listening on port %d", port)
    web.run_app(app, port=port, print=None, shutdown_timeout=5, handle_signals=True)
