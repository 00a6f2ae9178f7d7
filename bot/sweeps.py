"""The scheduler's sweeps (clocks, changes, surveys, digests, reports, handovers, …), the deliveries of what
they queue, and where both run.

By default (``delivery.sweeps_in: process``) they run in a process of their own, forked from ``svcbot run``
once its store is ready and before it serves: sweeping and delivering are CPU work in Python, and in the
server's own threads they would hold the interpreter lock that every request needs (bench/slash_command.py
measured what that costs under load). The server still delivers at once what its own commands queue; the
sweeper delivers the rest, with the same senders, and retries what failed. It runs at a lower priority
(by default on the CPU time nothing else wants), so that answers come first, and it counts its delivery
attempts into the server's /metrics over a pipe. Either process stops the other: the sweeper ends when
the server does (PR_SET_PDEATHSIG on Linux, else within a second), and the server stops, failing, when its
sweeper has died, so that its supervisor starts both again. ``sweeps_in: thread`` keeps everything in
the server's threads (one process; also where the platform cannot fork).
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
import time
from datetime import datetime, timezone

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.runtime import Runtime
from handlers.router import lazy

log = logging.getLogger("svcbot")

# Each sweep is imported when it first runs, off the event loop, and in the sweeper process only: the
# server that forks it answers requests and needs none of them.
clocks_sweep = lazy("handlers.sla.breaches:sweep")
surveys_sweep = lazy("handlers.surveys.asking:sweep")
surveys_purge = lazy("handlers.surveys.asking:purge")
burn_sweep = lazy("handlers.sla.outages:burn_sweep")
catalogue_sweep = lazy("handlers.services.catalogue_review:sweep")
homes_sweep = lazy("handlers.home.published:sweep")
changes_sweep = lazy("handlers.changes.messages:sweep")
digests_sweep = lazy("handlers.reporting.digests:sweep")
reports_sweep = lazy("handlers.reporting.reports:sweep")
kb_reviews_sweep = lazy("handlers.knowledge.reviews:sweep")
prune = lazy("handlers.core.retention:prune")
reviews_sweep = lazy("handlers.reviews.record:sweep")
handovers_sweep = lazy("handlers.shifts.handover:sweep")
problems_sweep = lazy("handlers.problems.suggestions:suggest")

HOMES_SWEEP_SECONDS = 15  # how often the Slack homes of those who opened them are looked at again

# Each is one job at a time; one missed while stopped runs once at start rather than being skipped.
ONCE = dict(max_instances=1, coalesce=True, misfire_grace_time=300)


def add_sweeps(scheduler: AsyncIOScheduler, runtime: Runtime) -> None:
    ctx = runtime.ctx
    now = datetime.now(timezone.utc)
    every = dict(seconds=ctx.config.delivery.sweep_seconds)
    # What a sweep queues is delivered at once (the context's on_outbox); this retries what could not be.
    scheduler.add_job(runtime.deliverer.sweep, "interval", **every, id="outbox", **ONCE)
    jobs = [
        ("clocks", clocks_sweep, every, None),
        ("changes", changes_sweep, every, None),
        ("surveys", surveys_sweep, every, None),
        # Digest and report slots are rows (handlers/reporting/schedule.py): a sweep at start posts one
        # missed while stopped.
        ("digests", digests_sweep, every, now),
        ("reports", reports_sweep, every, now),
        ("purge", surveys_purge, dict(hours=6), now),
        ("burn", burn_sweep, dict(minutes=1), None),
        # A P1 or P2 resolved through the API gets its review at the next sweep (handlers/reviews).
        ("incident-reviews", reviews_sweep, every, None),
        # Reviews and confirmations fall due by the day: a sweep a minute asks, reminds and tells in time.
        ("kb-reviews", kb_reviews_sweep, dict(minutes=1), None),
        ("catalogue", catalogue_sweep, dict(minutes=1), None),
        # Handovers at each shift's end, once across replicas, and to the service managers when not taken
        # over within the hour (handlers/shifts/handover.py); shift ends are whole minutes.
        ("handovers", handovers_sweep, dict(seconds=30), now),
        # Clusters of similar incidents suggested to their service owners as problems, once each.
        ("problem-suggestions", problems_sweep, dict(minutes=5), None),
        # Slack homes whose content changed are published again (handlers/home/published.py).
        ("homes", homes_sweep, dict(seconds=HOMES_SWEEP_SECONDS), None),
        # Delivered messages and delivery keys past app.yaml's retention (handlers/core/retention.py).
        ("prune", prune, dict(hours=6), now),
    ]
    for job_id, job, interval, first in jobs:
        extra = {"next_run_time": first} if first else {}
        scheduler.add_job(in_thread, "interval", **interval, args=[job, ctx], id=job_id, **ONCE, **extra)


async def in_thread(job, ctx) -> None:
    """Sweeps use the synchronous store: run them off the event loop."""
    await asyncio.to_thread(job, ctx)


def in_own_process(runtime: Runtime) -> bool:
    return runtime.ctx.config.delivery.sweeps_in == "process" and hasattr(os, "fork")


class Sweeper:
    """The server's handle on its sweeper process."""

    def __init__(self, pid: int, attempts: int):
        self.pid = pid
        self.exit_status: int | None = None
        self._attempts = attempts  # the pipe's end the sweeper's delivery attempts arrive at
        self._unread = b""

    def count_attempts(self, metrics) -> None:
        """Count the sweeper's delivery attempts in these metrics, as they arrive (on the event loop)."""
        asyncio.get_running_loop().add_reader(self._attempts, self._read, metrics)

    def _read(self, metrics) -> None:
        try:
            data = os.read(self._attempts, 65536)
        except BlockingIOError:
            return
        if not data:  # the sweeper has ended; _watch says so
            asyncio.get_running_loop().remove_reader(self._attempts)
            return
        *lines, self._unread = (self._unread + data).split(b"\n")
        for line in lines:
            platform, outcome = line.decode().split()
            metrics.count_attempt(platform, outcome)

    def alive(self) -> bool:
        if self.exit_status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_status = os.waitstatus_to_exitcode(status)
        return self.exit_status is None

    def stop(self, grace: float = 5.0) -> None:
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.alive():
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
                self.exit_status = os.waitstatus_to_exitcode(status)
                return
            time.sleep(0.05)


def fork_sweeper(runtime: Runtime) -> Sweeper:
    """Start the sweeper process. Called before the server's event loop and threads start, so that the
    child inherits no lock held by another thread; it never returns in the child."""
    server = os.getpid()
    # No connection to the store crosses the fork: SQLite's locks are the process's, and a connection, or
    # SQLite's own record of the file's locks, shared by two processes corrupts the database.
    runtime.close()
    attempts, counted = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(counted)
        os.set_blocking(attempts, False)
        log.info("sweeps run in process %d", pid)
        return Sweeper(pid, attempts)
    code = 1
    try:
        _end_with(server)
        os.close(attempts)
        os.set_blocking(counted, False)
        runtime.deliverer.metrics = AttemptsToServer(counted)
        lower_priority(runtime.ctx.config.delivery.sweeper_niceness)
        # Ended without waiting for a sweep in progress: its transaction is rolled back, and done again
        # by the next sweeper.
        asyncio.new_event_loop().run_until_complete(_sweep_until_told(runtime, server))
        code = 0
    except BaseException:  # noqa: BLE001 - the child must never return into the server's code
        log.exception("the sweeper process failed")
    finally:
        logging.shutdown()
        os._exit(code)


def lower_priority(niceness: int | str) -> None:
    """Answers first. "idle" (Linux's SCHED_IDLE): the sweeper gets the CPU time nothing else wants, and
    a request the server wakes for takes the CPU from it at once; a niceness only shrinks its share,
    and a sweeper at niceness 10 still took 0.7 of a core beside a server under load. Where there is no
    SCHED_IDLE, "idle" is the lowest niceness."""
    if niceness == "idle" and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(19 if niceness == "idle" else niceness)


def _end_with(server: int) -> None:
    """Have the kernel end this process at once when the server ends, however it ends (Linux): a sweep cut
    short is rolled back."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        pass  # elsewhere, _sweep_until_told notices within a second
    if os.getppid() != server:  # the server ended before the line above
        os._exit(0)


class AttemptsToServer:
    """The sweeper's delivery attempts, for the server's /metrics: a line each down the pipe (a write that
    small is never split). A count is dropped rather than a delivery held up when the pipe is full."""

    def __init__(self, fd: int):
        self.fd = fd

    def count_attempt(self, platform: str, outcome: str) -> None:
        try:
            os.write(self.fd, f"{platform} {outcome}\n".encode())
        except (BlockingIOError, BrokenPipeError):
            pass


async def _sweep_until_told(runtime: Runtime, server: int) -> None:
    runtime.deliverer.start()  # the context's on_outbox delivers here, at once
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    scheduler = AsyncIOScheduler(timezone="UTC")
    add_sweeps(scheduler, runtime)
    scheduler.start()
    runtime.deliverer.kick()
    while os.getppid() == server and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    scheduler.shutdown(wait=False)
