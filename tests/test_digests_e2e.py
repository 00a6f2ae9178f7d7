"""Digests through the real server (`svcbot run` in a subprocess) started at a chosen time of day with
libfaketime, posting to the fake Slack Web API on loopback: each slot once, in its own zone's morning,
across a kill and restart around the slot (marked late), and with two replicas on one database."""
from __future__ import annotations

import glob
import shutil
import threading
import time

import pytest
import yaml

from storage.models import ScheduledRun
from tests.conftest import ServerProcess, db_rows, demo_config

pytestmark = pytest.mark.e2e

FAKETIME_LIB = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)
OPS = "C0OPS00001"

needs_faketime = pytest.mark.skipif(FAKETIME_LIB is None or shutil.which("faketime") is None,
                                    reason="libfaketime is not installed (Debian package faketime; CI installs it)")


@pytest.fixture
def digest_config(tmp_path):
    cfg = demo_config(digests=[
        {"name": "london", "channel": "ops", "cron": "0 9 * * *", "timezone": "Europe/London", "sections": ["status"]},
        {"name": "singapore", "channel": "ops", "cron": "0 9 * * *", "timezone": "Asia/Singapore",
         "sections": ["status"]},
    ])
    path = tmp_path / "digests.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def at_time(server_env, digest_config, tmp_path):
    """Start the real server whose clock reads ``when`` (UTC) at its start and runs on from there."""
    started: list[ServerProcess] = []

    def server(when: str) -> ServerProcess:
        env = {**server_env, "SVCBOT_CONFIG": str(digest_config), "LD_PRELOAD": FAKETIME_LIB,
               "FAKETIME": f"@{when}", "FAKETIME_DONT_FAKE_MONOTONIC": "1", "TZ": "UTC"}
        process = ServerProcess(env, tmp_path)
        started.append(process)
        return process

    yield server
    for process in started:
        if process.proc and process.proc.poll() is None:
            process.stop()


def digest_posts(fake_slack, name: str) -> list:
    return [c for c in fake_slack.called("chat.postMessage")
            if c.params.get("channel") == OPS and name.capitalize() in (c.params.get("text") or "")]


def slots(database_url, name: str) -> list[tuple[str, str]]:
    rows = db_rows(database_url, ScheduledRun, ScheduledRun.job == f"digest:{name}")
    return sorted((r.slot_at.strftime("%m-%d %H:%M"), r.outcome) for r in rows if r.outcome != "start")


@needs_faketime
def test_killed_before_the_slot_and_started_after_it_posts_once_marked_late(at_time, fake_slack, database_url):
    began = time.monotonic()  # its clock starts with the process, at 08:59:40
    first = at_time("2026-11-25 08:59:40").start()
    assert time.monotonic() - began < 15, "the server took too long to start for this test"
    # Let it run until 08:59:58 on its clock (it has recorded the digests by then), then kill it.
    time.sleep(max(0.0, 18 - (time.monotonic() - began)))
    assert db_rows(database_url, ScheduledRun, ScheduledRun.outcome == "start"), first.log()
    first.kill()
    assert digest_posts(fake_slack, "london") == []

    second = at_time("2026-11-25 09:02:00").start()
    [post] = fake_slack.wait_for("chat.postMessage", where=lambda c: c in digest_posts(fake_slack, "london"))
    assert "London — Wed 25 Nov: a quiet day: ⏰ Late: due at 09:00 GMT, sent at 09:02" in post.params["text"]
    time.sleep(2)  # ten more sweeps
    second.stop()
    at_time("2026-11-25 09:03:00").start()  # and once more after it
    time.sleep(2)
    assert len(digest_posts(fake_slack, "london")) == 1
    assert slots(database_url, "london") == [("11-25 09:00", "late")]
    assert digest_posts(fake_slack, "singapore") == []  # 09:00 in London is 17:00 in Singapore


@needs_faketime
def test_each_zone_posts_in_its_own_morning(at_time, fake_slack, database_url):
    # Started twenty seconds before each slot: a server is up and sweeping well before then.
    server = at_time("2026-11-25 00:59:40").start()  # 08:59:40 in Singapore, 00:59:40 in London
    fake_slack.wait_for("chat.postMessage", where=lambda c: c in digest_posts(fake_slack, "singapore"), timeout=40)
    server.stop()
    at_time("2026-11-25 08:59:40").start()  # 08:59:40 in London, 16:59:40 in Singapore
    fake_slack.wait_for("chat.postMessage", where=lambda c: c in digest_posts(fake_slack, "london"), timeout=40)
    time.sleep(2)
    assert len(digest_posts(fake_slack, "singapore")) == 1 and len(digest_posts(fake_slack, "london")) == 1
    assert "Late" not in digest_posts(fake_slack, "london")[0].params["text"]
    assert slots(database_url, "singapore") == [("11-25 01:00", "posted")]
    assert slots(database_url, "london") == [("11-25 09:00", "posted")]


@needs_faketime
def test_two_replicas_post_the_slot_once(at_time, fake_slack, database_url):
    replicas = [at_time("2026-11-25 08:59:40"), at_time("2026-11-25 08:59:40")]
    # Started together, so that both clocks reach 09:00 within a sweep of each other.
    threads = [threading.Thread(target=r.start) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert all(r.proc and r.proc.poll() is None for r in replicas)
    fake_slack.wait_for("chat.postMessage", where=lambda c: c in digest_posts(fake_slack, "london"), timeout=40)
    time.sleep(3)  # many sweeps of both replicas later
    assert len(digest_posts(fake_slack, "london")) == 1
    assert slots(database_url, "london") == [("11-25 09:00", "posted")]
    logs = "".join(r.log() for r in replicas)
    assert "Traceback" not in logs, logs
