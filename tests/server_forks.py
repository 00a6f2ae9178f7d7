"""Servers for the end-to-end tests, forked from a process that has already imported svcbot.

Each `svcbot run` a test starts would otherwise spend about a second of CPU importing the same libraries,
over two hundred times a pass. A launcher imports them once; each server is a fork of it that runs
``bot.cli.main(["run"])`` with the test's environment, working folder and log, exactly as ``python -m
bot.cli run`` would after its imports. The test signals the server's pid directly; the launcher, its
parent, reaps it and tells its exit status.

Run as ``python -m tests.server_forks``: one JSON request a line on standard input, one answer a line
on standard output.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _preload() -> None:
    # What a server imports at start and on its first requests (Slack, Teams, charts, the feed).
    import icalendar  # noqa: F401
    import jinja2  # noqa: F401
    import slack_bolt.adapter.aiohttp  # noqa: F401
    import slack_bolt.app.async_app  # noqa: F401

    import bot.cli  # noqa: F401
    import bot.server  # noqa: F401
    import bot.teams  # noqa: F401
    import handlers.reporting.charts  # noqa: F401


def _serve(env: dict, cwd: str, log: str, argv: list[str], stdin: str | None = None,
           stderr: str | None = None) -> None:
    """In the forked child: become `svcbot ARGV` with this environment; never returns."""
    code = 1
    try:
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        err = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if stderr else out
        os.dup2(os.open(stdin or os.devnull, os.O_RDONLY), 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.chdir(cwd)
        os.environ.update(env)  # then drop the rest: no moment without the clock's settings (libfaketime)
        for name in set(os.environ) - set(env):
            del os.environ[name]
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from bot import cli
        code = cli.main(argv) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - what a crashed server would print
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def launcher() -> None:
    _preload()
    exited: dict[int, int | None] = {}  # every server started: its exit code once it has exited

    def status(pid: int) -> int | None:
        if exited.get(pid) is None:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                exited[pid] = os.waitstatus_to_exitcode(wait_status)
        return exited.get(pid)

    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "start":
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _serve(request["env"], request["cwd"], request["log"], request["argv"], request.get("stdin"),
                       request.get("stderr"))
            exited.setdefault(pid, None)
            answer = {"pid": pid}
        else:  # "poll"
            answer = {"returncode": status(request["pid"])}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    # The tests are over: no server outlives them, even one a failed test left running.
    for pid in [pid for pid in exited if status(pid) is None]:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


class Launcher:
    """The test side: starts the launcher on first use and asks it for servers."""

    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _ask(self, request: dict) -> dict:
        with self._lock:
            if self._proc is None:
                env = {**os.environ, "PYTHONPATH": str(ROOT)}
                self._proc = subprocess.Popen([sys.executable, "-m", "tests.server_forks"], cwd=ROOT, env=env,
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            return json.loads(self._proc.stdout.readline())

    def start(self, argv: list[str], env: dict, cwd: Path, log: Path) -> "ForkedServer":
        answer = self._ask({"op": "start", "argv": argv, "env": env, "cwd": str(cwd), "log": str(log)})
        return ForkedServer(self, answer["pid"])

    def run(self, argv: list[str], env: dict, cwd: Path, stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """`svcbot ARGV` to its end, as `subprocess.run(..., capture_output=True, text=True)` would run it."""
        with tempfile.TemporaryDirectory(prefix="svcbot-cli-") as folder:
            out, err, given = (Path(folder) / name for name in ("stdout", "stderr", "stdin"))
            if stdin is not None:
                given.write_text(stdin)
            answer = self._ask({"op": "start", "argv": argv, "env": env, "cwd": str(cwd), "log": str(out),
                                "stderr": str(err), "stdin": str(given) if stdin is not None else None})
            command = ForkedServer(self, answer["pid"])
            try:
                code = command.wait(timeout)
            except subprocess.TimeoutExpired:
                command.kill()
                raise
            read = lambda path: path.read_text(errors="replace") if path.exists() else ""  # noqa: E731
            return subprocess.CompletedProcess(["svcbot", *argv], code, read(out), read(err))

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            self._proc.wait(10)


class ForkedServer:
    """What the tests use of subprocess.Popen, for a server forked by the launcher."""

    def __init__(self, launcher: Launcher, pid: int):
        self.launcher, self.pid, self.returncode = launcher, pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.launcher._ask({"op": "poll", "pid": self.pid})["returncode"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"svcbot run (pid {self.pid})", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


if __name__ == "__main__":
    launcher()
