"""The fork of the sweeper (bot/sweeps.py): no connection to the store crosses it. A SQLite connection, or
SQLite's record of the file's locks, that two processes share corrupts the database."""
from __future__ import annotations

import os
import signal
from pathlib import Path

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
