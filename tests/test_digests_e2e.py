"""Digests through the real server (`svcbot run` in a subprocess) whose clock the test sets with libfaketime,
posting to the fake Slack Web API on loopback: each slot once, in its own zone's morning, across a kill and
restart around the slot (marked late), and with two replicas on one database."""
from __future__ import annotations

import glob
import os
import shutil
import threading
import time

import pytest
import yaml

from storage.models import ScheduledRun
from tests.conftest import ServerProcess, db_rows, demo_config, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("digest_config")]

FAKETIME_LIB = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)
OPS = "C0OPS00001"

needs_faketime = pytest.mark.skipif(FAKETIME_LIB is None or shutil.which("faketime") is None,
                                    reason="libfaketime is not installed (Debian package faketime; CI installs it)")


class ServerClock:
    """The wall clock of the servers a test starts, moved by the test instead of waited for.

    libfaketime in each server reads it from a file (FAKETIME_TIMESTAMP_FILE) holding "@YYYY-MM-DD hh:mm:ss",
    UTC: a server started reads that time then, and a running one within two seconds of a change (it reads
    the file again every second; reading it at every call, FAKETIME_NO_CACHE, costs a server seconds of CPU);
    either way its clock runs on from there, so that its interval jobs (the sweeps) keep running. Monotonic
    time is the machine's (the event loop, timeouts). Only ever moved forward while a server runs: stop it
    first to start another one earlier.
    """

    def __init__(self, folder, base_env: dict):
        self.path = folder / "faketime.rc"
        self.base_env = base_env
        self.started: list[ServerProcess] = []

    def set(self, when: str) -> None:
        new = self.path.with_name(self.path.name + ".new")
        new.write_text(f"@{when}\n")
        os.replace(new, self.path)  # at once: a server reading half a line would exit

    def server(self) -> ServerProcess:
        """A server (not started yet) on this clock."""
        # A FAKETIME inherited from the tests' own environment (the suite run a year ahead) would take priority
        # over the clock file in the server, so the server goes without it.
        env = {**self.base_env, "LD_PRELOAD": FAKETIME_LIB, "FAKETIME_TIMESTAMP_FILE": str(self.path),
               "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1", "TZ": "UTC", "FAKETIME": None}
        process = ServerProcess(env, self.path.parent)
        self.started.append(process)
        return process

    def start(self) -> ServerProcess:
        return self.server().start()


@pytest.fixture
def server_clock(server_env, tmp_path):
    clock = ServerClock(tmp_path, server_env)
    yield clock
    for process in clock.started:
        if process.proc and process.proc.poll() is None:
            process.stop()


def first_sweep(database_url, job: str) -> None:
    """Wait until a server has swept the job once (its first sweep records where the job starts from)."""
    wait_until(lambda: db_rows(database_url, ScheduledRun, ScheduledRun.job == job, ScheduledRun.outcome == "start"),
               f"the first sweep of {job}", timeout=60)


@pytest.fixture
def digest_config(config_file):
    cfg = demo_config(digests=[
        {"name": "london", "channel": "ops", "cron": "0 9 * * *", "timezone": "Europe/London", "sections": ["status"]},
        {"name": "singapore", "channel": "ops", "cron": "0 9 * * *", "timezone": "Asia/Singapore",
         "sections": ["status"]},
    ])
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config_file


def digest_posts(fake_slack, name: str) -> list:
    return [c for c in fake_slack.called("chat.postMessage")
            if c.params.get("channel") == OPS and name.capitalize() in (c.params.get("text") or "")]


def slots(database_url, name: str) -> list[tuple[str, str]]:
    rows = db_rows(database_url, ScheduledRun, ScheduledRun.job == f"digest:{name}")
    return sorted((r.slot_at.strftime("%m-%d %H:%M"), r.outcome) for r in rows if r.outcome != "start")


@needs_faketime
def test_killed_before_the_slot_and_started_after_it_posts_once_marked_late(server_clock, fake_slack, database_url):
    # Its clock starts five minutes before the slot and runs on: still before it when the server is killed.
    server_clock.set("2026-11-25 08:55:00")
    began = time.monotonic()
    first = server_clock.start()
    first_sweep(database_url, "digest:london")  # it has recorded the digests
    assert time.monotonic() - began < 240, "the server took too long to start for this test"
    assert db_rows(database_url, ScheduledRun, ScheduledRun.outcome == "start"), first.log()
    first.kill()
    assert digest_posts(fake_slack, "london") == []

    server_clock.set("2026-11-25 09:02:00")
    second = server_clock.start()
    [post] = fake_slack.wait_for("chat.postMessage", where=lambda c: c in digest_posts(fake_slack, "london"),
                                 timeout=30)
    assert "London — Wed 25 Nov: a quiet day: ⏰ Late: due at 09:00 GMT, sent at 09:02" in post.params["text"]
    time.sleep(2)  # ten more sweeps
    second.stop()
    server_clock.set("2026-11-25 09:03:00")
    server_clock.start()  # and once more after it
    time.sleep(2)
    assert len(digest_posts(fake_slack, "london")) == 1
    assert slots(database_url, "london") == [("11-25 09:00", "late")]
    assert digest_posts(fake_slack, "singapore") == []  # 09:00 in London is 17:00 in Singapore


@needs_faketime
def test_each_zone_posts_in_its_own_morning(server_clock, fake_slack, database_url):
    # Each server is up and sweeping before the slot; then its clock is moved to just after it.
    server_clock.set("2026-11-25 00:59:30")  # 08:59:30 in Singapore, 00:59:30 in London
    server = server_clock.start()
    first_sweep(database_url, "digest:singapore")
    server_clock.set("2026-11-25 01:00:02")
    fake_slack.wait_for("chat.postMessage", where=lambda c: c in digest_posts(fake_slack, "singapore"), timeout=30)
    server.stop()
    server_clock.set("2026-11-25 08:59:30")  # 08:59:30 in London, 16:59:30 in Singapore
    server_clock.start()
    server_clock.set("2026-11-25 09:00:02")
    fake_slack.wait_for("chat.postMessage", where=lambda c: c in digest_posts(fake_slack, "london"), timeout=30)
    time.sleep(2)
    assert len(digest_posts(fake_slack, "singapore")) == 1 and len(digest_posts(fake_slack, "london")) == 1
    assert "Late" not in digest_posts(fake_slack, "london")[0].params["text"]
    assert slots(database_url, "singapore") == [("11-25 01:00", "posted")]
    assert slots(database_url, "london") == [("11-25 09:00", "posted")]


@needs_faketime
def test_two_replicas_post_the_slot_once(server_clock, fake_slack, database_url):
    server_clock.set("2026-11-25 08:59:30")
    replicas = [server_clock.server(), server_clock.server()]
    threads = [threading.Thread(target=r.start) for r in replicas]  # started together, to wait for both at once
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert all(r.proc and r.proc.poll() is None for r in replicas)
    first_sweep(database_url, "digest:london")
    server_clock.set("2026-11-25 09:00:02")  # one clock: both replicas pass the slot at the same moment
    fake_slack.wait_for("chat.postMessage", where=lambda c: c in digest_posts(fake_slack, "london"), timeout=30)
    time.sleep(3)  # many sweeps of both replicas later
    assert len(digest_posts(fake_slack, "london")) == 1
    assert slots(database_url, "london") == [("11-25 09:00", "posted")]
    logs = "".join(r.log() for r in replicas)
    assert "Traceback" not in logs, logs
