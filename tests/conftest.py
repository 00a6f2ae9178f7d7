"""Shared fixtures: a fresh store per test (SQLite, or PostgreSQL when SVCBOT_TEST_DATABASE_URL is set),
the demo configuration, and the real server started as a subprocess against loopback fakes."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from sqlalchemy import create_engine, func, select, text

from tests.fakes import FakeSlack, FakeTeamsConnector

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PAYLOADS = SHARED / "data" / "payloads"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def demo_config(**overrides) -> dict:
    cfg = yaml.safe_load((ROOT / "app.yaml").read_text())
    cfg["delivery"] = {"sweep_seconds": 0.2, "lease_seconds": 2, "give_up_hours": 24}
    cfg.update(overrides)
    return cfg


@pytest.fixture
def database_url(tmp_path):
    url = os.environ.get("SVCBOT_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path / 'svcbot.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # every test starts from an empty database
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(demo_config(), sort_keys=False))
    return path


@pytest.fixture
def runtime(database_url, config_file):
    from bot.runtime import Runtime
    rt = Runtime.from_file(str(config_file), database_url)
    yield rt
    rt.engine.dispose()


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # a Monday


class Clock:
    """Time as a test sets it: handlers read ctx.now(), so time moves only when the test moves it."""

    def __init__(self, start: datetime = T0):
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw) -> None:
        self.t += timedelta(**kw)

    def to(self, when: datetime) -> None:
        self.t = when


@pytest.fixture
def clock(runtime):
    c = Clock()
    runtime.ctx.now = c
    return c


@pytest.fixture
def ctx(runtime, clock):
    return runtime.ctx


def wait_until(predicate, what: str = "condition", timeout: float = 30.0):
    """The predicate's first truthy value, polled: for what a server under test does in its own time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def db_rows(database_url: str, model, *where) -> list:
    """Rows as another process (the server under test) left them, read over a connection of our own."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(model).where(*where)).all()
    finally:
        engine.dispose()


def db_count(database_url: str, model, *where) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def fake_slack():
    server = FakeSlack().start()
    yield server
    server.stop()


@pytest.fixture
def fake_teams():
    server = FakeTeamsConnector().start()
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """The real `svcbot run`, in a subprocess, as production runs it."""

    def __init__(self, env: dict, cwd: Path):
        self.env, self.cwd = env, cwd
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = cwd / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServerProcess":
        env = {**os.environ, **self.env, "PORT": str(self.port)}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run"], env=env, cwd=self.cwd,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("server did not become healthy:\n" + self.log())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """As a crash would: no chance to finish anything."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def stop(self) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def server_env(database_url, config_file, fake_slack):
    return {
        "SVCBOT_DATABASE_URL": database_url,
        "SVCBOT_CONFIG": str(config_file),
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.url + "/api/",
        "MICROSOFT_APP_ID": "",
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture
def start_server(server_env, tmp_path):
    started: list[ServerProcess] = []

    def start(**env) -> ServerProcess:
        server = ServerProcess({**server_env, **env}, tmp_path).start()
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop()


def slack_headers(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None,
                  content_type: str = "application/x-www-form-urlencoded") -> dict:
    """Sign a request body exactly as Slack does (v0 HMAC-SHA256 of 'v0:timestamp:body')."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}", "Content-Type": content_type}


def slash_command_body(text: str, user_id: str, response_url: str, command: str = "/svc",
                       trigger_id: str | None = None) -> str:
    """Slack's own slash command sample with this command's words, user and response URL."""
    from urllib.parse import parse_qsl
    sample = (PAYLOADS / "slack" / "bolt_python" / "slash_command.form.txt").read_text().strip()
    fields = dict(parse_qsl(sample, keep_blank_values=True))
    fields.update(command=command, text=text, user_id=user_id, user_name=user_id.lower(),
                  response_url=response_url, trigger_id=trigger_id or f"{time.time_ns()}.{user_id}.trigger")
    return urlencode(fields)


def load_payload(*parts: str) -> dict:
    return json.loads((PAYLOADS.joinpath(*parts)).read_text())
