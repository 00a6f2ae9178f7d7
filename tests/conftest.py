"""Shared fixtures: a fresh store per test (SQLite, or PostgreSQL when SVCBOT_TEST_DATABASE_URL is set),
the demo configuration, and the real server started as a subprocess against loopback fakes.

The schema is migrated once per test process into a template store, and each test gets a copy of it: a
file copy on SQLite, ``CREATE DATABASE … TEMPLATE`` on PostgreSQL. A test marked ``empty_store`` gets a
store with no schema at all (for what migrations and first starts do)."""
from __future__ import annotations

import atexit
import copy
import functools
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from tests.fakes import FakeSlack, FakeTeamsConnector
from tests.server_forks import Launcher

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PAYLOADS = SHARED / "data" / "payloads"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@functools.cache
def _app_yaml() -> dict:
    return yaml.load((ROOT / "app.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def demo_config(dependencies: bool = False, **overrides) -> dict:
    """The demo app.yaml, delivering fast. Its services' ``depends_on`` only with ``dependencies``: each
    dependency adds a notice to the announcements of what it depends on, and most tests count those."""
    cfg = copy.deepcopy(_app_yaml())
    # The sweeper is not niced: on a busy test machine a niced one would make every sweep's test wait.
    cfg["delivery"] = {"sweep_seconds": 0.2, "lease_seconds": 2, "give_up_hours": 24, "sweeper_niceness": 0}
    if not dependencies:
        for service in cfg["services"]:
            service.pop("depends_on", None)
    cfg.update(overrides)
    return cfg


@functools.cache
def _demo_config_text() -> str:
    return yaml.safe_dump(demo_config(), sort_keys=False)


@functools.cache
def _parsed_config(text: str):
    from handlers.core.config_loading import parse_config
    return parse_config(text)


def config_from(path: Path):
    """load_config, parsed once per distinct text: the models are frozen, so tests can share one. A
    configuration naming its own templates is loaded as usual (they are found beside the file)."""
    from handlers.core.config_loading import load_config
    cfg = _parsed_config(path.read_text())
    return load_config(path) if cfg.bot.templates else cfg


# ------------------------------------------------------------------------------------------------ the store

def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _postgres_admin(url):
    return create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def _template_store(tmp_path_factory):
    """The schema migrated once for this test process: a SQLite file, or a PostgreSQL template database."""
    from storage.db import make_engine, upgrade
    given = os.environ.get("SVCBOT_TEST_DATABASE_URL")
    if not given:
        path = tmp_path_factory.mktemp("template") / "svcbot.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
        with closing(sqlite3.connect(path)) as conn:  # one self-contained file to copy: no write-ahead log
            conn.execute("PRAGMA journal_mode=DELETE")
        yield path
        return
    url = make_url(given)
    template = f"{url.database}_{_worker()}_template"
    admin = _postgres_admin(url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{template}"'))
    engine = make_engine(url.set(database=template).render_as_string(hide_password=False))
    upgrade(engine)
    engine.dispose()
    yield template
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(request, tmp_path):
    empty = request.node.get_closest_marker("empty_store") is not None
    given = os.environ.get("SVCBOT_TEST_DATABASE_URL")
    if not given:
        path = tmp_path / "svcbot.db"
        if not empty:
            shutil.copyfile(request.getfixturevalue("_template_store"), path)
        return f"sqlite:///{path}"
    url = make_url(given)
    name = f"{url.database}_{_worker()}"
    template = "template0" if empty else request.getfixturevalue("_template_store")
    admin = _postgres_admin(url)
    with admin.connect() as conn:  # every test starts from its own copy; FORCE ends a previous test's sessions
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text(_demo_config_text())
    return path


@pytest.fixture
def runtime(database_url, config_file):
    from bot.runtime import Runtime
    rt = Runtime(config_from(config_file), database_url)
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


LAUNCHER = Launcher()
atexit.register(LAUNCHER.close)


def run_cli(env: dict, *args: str, stdin: str | None = None, cwd: Path = ROOT,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`svcbot ARGS` run to its end as an operator runs it, with exactly this environment, forked from the
    launcher that has imported svcbot already."""
    return LAUNCHER.run(list(args), env, cwd, stdin=stdin, timeout=timeout)


class ServerProcess:
    """The real `svcbot run`, in a process of its own, as production runs it: forked from a launcher that
    has done the imports already (tests/server_forks.py), or started afresh when it needs its own clock."""

    def __init__(self, env: dict, cwd: Path):
        self.env, self.cwd = env, cwd
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = cwd / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServerProcess":
        for attempt in range(3):
            self._launch()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    if "address already in use" in self.log() and attempt < 2:
                        break  # another process took the port between free_port() and the bind
                    raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                        if r.status == 200:
                            return self
                except OSError:
                    time.sleep(0.1)
            else:
                self.kill()
                raise AssertionError("server did not become healthy:\n" + self.log())
            self._log.close()
            self.port = free_port()
            self.log_path = self.cwd / f"server-{self.port}.log"
        raise AssertionError("no free port")

    def _launch(self) -> None:
        # A value of None takes the variable away (a server on a clock of its own must not inherit FAKETIME).
        env = {k: v for k, v in {**os.environ, **self.env, "PORT": str(self.port)}.items() if v is not None}
        self._log = open(self.log_path, "ab")
        if any(k == "LD_PRELOAD" or k.startswith("FAKETIME") for k in self.env):
            # A clock of its own (libfaketime) is set when a process starts: this one starts afresh.
            self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run"], env=env, cwd=self.cwd,
                                         stdout=self._log, stderr=subprocess.STDOUT)
        else:
            self.proc = LAUNCHER.start(["run"], env, self.cwd, self.log_path)

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
