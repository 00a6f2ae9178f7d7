"""One aiohttp server: Slack, Teams, health and metrics, with the scheduler that sweeps the outbox."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from bot import api, status_page, sweeps
from bot.outbox import Delivered, DeliveryError, Outgoing
from bot.runtime import Runtime
from bot.teams_trust import EMULATOR_VARIABLE, is_loopback, peer_host, teams_mode
from handlers.router import FORMS, ROUTES, lazy
from handlers.sla import breaches
from storage.db import read_only

if TYPE_CHECKING:
    from bot.teams import TeamsFront, TeamsSender

log = logging.getLogger("svcbot")

RUNTIME = web.AppKey("runtime", Runtime)
SWEEPER = web.AppKey("sweeper", sweeps.Sweeper)


def build_app(runtime: Runtime) -> web.Application:
    """The server. Its sweeps, and the deliveries of what they queue, run in its own threads unless a
    sweeper process, set as ``app[SWEEPER]`` before it starts, runs them (``serve``)."""
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
        runtime.deliverer.start()  # what this server's commands queue, it delivers at once
        sweeper = app.get(SWEEPER)
        if sweeper is None:
            sweeps.add_sweeps(scheduler, runtime)
        else:
            sweeper.count_attempts(runtime.metrics)
            scheduler.add_job(_watch, "interval", seconds=1, args=[sweeper], id="sweeper", **sweeps.ONCE)
        # The handlers a command or form needs, imported now rather than by the first person who asks.
        scheduler.add_job(sweeps.in_thread, "date", args=[_import_handlers, None], id="import-handlers")
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


async def _watch(sweeper: sweeps.Sweeper) -> None:
    if not sweeper.alive():
        log.error("the sweeper process ended (exit status %s): svcbot stops", sweeper.exit_status)
        os.kill(os.getpid(), signal.SIGTERM)


def serve(runtime: Runtime, port: int) -> None:
    # Clocks follow app.yaml: measured again, once, when its agreements or calendars changed. Before the
    # server listens and the sweeps start: measuring again counts levels already passed as announced,
    # which would silence the breach of a ticket opened in the meantime.
    breaches.recompute_if_changed(runtime.ctx)
    app = build_app(runtime)  # the sweeper delivers with the senders built here
    sweeper = sweeps.fork_sweeper(runtime) if sweeps.in_own_process(runtime) else None
    if sweeper is not None:
        app[SWEEPER] = sweeper
    log.info("svcbot listening on port %d", port)
    try:
        web.run_app(app, port=port, print=None, shutdown_timeout=5, handle_signals=True)
    finally:
        if sweeper is not None:
            sweeper.stop()
    if sweeper is not None and sweeper.exit_status not in (None, 0, -signal.SIGTERM):
        raise SystemExit(f"svcbot: the sweeper process ended (exit status {sweeper.exit_status})")
