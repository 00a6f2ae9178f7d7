"""The fork of the sweeper (bot/sweeps.py): no connection to the store crosses it (a SQLite connection, or
SQLite's record of the file's locks, that two processes share corrupts the database), and the priority it
gives itself."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import text

from bot import sweeps


def store_files_open(runtime) -> list[str]:
    """The store's files this process holds open (SQLite's database, journal and shared memory)."""
    name = runtime.engine.url.database
    if runtime.engine.dialect.name != "sqlite":
        return []
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(name):
            found.append(target)
    return found


def test_no_connection_to_the_store_crosses_the_fork(runtime, monkeypatch):
    with runtime.engine.connect() as conn:  # the start-up's connections, back in the pool
        conn.execute(text("SELECT 1"))
    assert runtime.engine.pool.checkedin() >= 1
    at_fork = {}

    def fork() -> int:
        at_fork.update(pooled=runtime.engine.pool.checkedin() + runtime.engine.pool.checkedout(),
                       files=store_files_open(runtime))
        return 4_000_000  # as the server: a sweeper's pid

    monkeypatch.setattr(os, "fork", fork)
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        sweeper = sweeps.fork_sweeper(runtime)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert sweeper.pid == 4_000_000
    assert at_fork == {"pooled": 0, "files": []}
    with runtime.engine.connect() as conn:  # the server opens new ones when it next needs the store
        assert conn.execute(text("SELECT 1")).scalar() == 1


def priority_taken(niceness) -> tuple[int, int]:
    """The scheduling policy and niceness a child process has after lower_priority(niceness)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports and ends at once, whatever happens
        code = 1
        try:
            sweeps.lower_priority(niceness)
            os.write(write, f"{os.sched_getscheduler(0)} {os.nice(0)}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        got = pipe.read()
    assert os.waitpid(pid, 0)[1] == 0
    policy, niceness_now = got.split()
    return int(policy), int(niceness_now)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_an_idle_sweeper_takes_only_the_cpu_time_nothing_else_wants():
    own = os.nice(0)
    assert priority_taken("idle") == (os.SCHED_IDLE, own)
    assert priority_taken(3) == (os.sched_getscheduler(0), min(own + 3, 19))


def test_every_sweep_names_a_function_that_exists(runtime):
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from handlers.router import lazy
    scheduler = AsyncIOScheduler(timezone="UTC")
    sweeps.add_sweeps(scheduler, runtime)
    named = [job.args[0] for job in scheduler.get_jobs() if job.args and isinstance(job.args[0], lazy)]
    assert len(named) >= 10
    for job in named:
        assert callable(job.resolve()), job
