"""How long svcbot takes to start, against `python -c pass` measured in the same run, and the memory an idle
server holds.

Each command runs ROUNDS times after one run that warms the disk cache, writes the bytecode cache and creates
the store (the median is printed, with its ratio to the floor): `svcbot console -c status` until it has
answered and exited, and `svcbot run` until /healthz answers. Then one `svcbot run` is left idle for
IDLE_SECONDS with the demo configuration (its sweeps run meanwhile, in their own process) and the peak
resident memory (VmHWM) of the server and of its sweeper is printed, and the two processes' proportional set
size (PSS: the pages the fork left shared counted once). PYTHONDONTWRITEBYTECODE is dropped for the commands
measured: a warm start reads its modules' bytecode as an installed package does (pip compiles it at install);
without it, every start compiles svcbot's own ~110 modules again, some 0.1 s.
Run: `.venv/bin/python bench/start.py [--rounds N] [--idle-seconds S]`; `python -X importtime -m bot.cli
console -c status 2>imports.txt` says where an import's time goes.

Where the time went (cProfile of `svcbot console -c status`, `python -X importtime`, and instructions counted
by `valgrind --tool=callgrind`, which the shared machine's load does not move; the seconds are estimates at
some 3.4 billion instructions a second, this machine's rate when quiet):
- Before: 3.42 billion instructions for `console -c status` (`python -c pass`: 0.09), 4.22 for `run` until
  it listens. The router imported every capability (~0.1 s, though one command runs); PyYAML's pure-Python
  parser read app.yaml (0.1 s); the cyclic garbage collector walked the start-up's objects over and over
  while they were made (11 % of the instructions); and with PYTHONDONTWRITEBYTECODE set, every start
  compiled svcbot's own modules again (~0.1 s).
- Done: routes are "module:function", imported on first use (a job imports them all once the server is
  up); libyaml parses app.yaml (13 ms; PyYAML's own parser reads a refused file again, for its messages); a
  holiday country is checked against holidays' lazy loaders; the sweeps nothing else at start needs
  (digests, reports, change messages, knowledge reviews, retention) are imported when they first run, in
  their thread; the collector rests during the start and then leaves its objects frozen (bot/cli.py).
  After: 2.75 billion for the console (-20 %), 3.82 for `run` until it listens (-9 %; its sweeps' threads
  start meanwhile and are counted).
- What remains of the console's 2.75 billion: reading bytecode (marshal) is a third of it, for ~860
  modules. SQLAlchemy core and ORM ~1.1 billion alone (asyncio included; its SQLite dialect compiles regexes
  when create_engine loads it); the 31 mapped models ~0.35; pydantic ~0.18, and the app.yaml models with
  APScheduler's cron trigger (the digests' crontab check) ~0.3; `holidays` ~0.5: 0.22 to import it and 0.28
  for all ~250 country modules, which any subdivision check imports because holidays.countries' package
  imports every country and the subdivisions are attributes of a country's class (the demo names two);
  prometheus_client, jinja2 and the reply's template ~0.1 each or less; building the runtime (engine,
  secret, people) and the command itself the rest.
- `svcbot run` adds aiohttp (~1 billion alone, part shared: its client's connector builds a default SSL
  context at import), the scheduler (APScheduler's pool executor imports multiprocessing), the API and status
  page with the handlers they call, and the app's routes and start-up.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402

SVCBOT = [sys.executable, "-m", "bot.cli"]
# What any start of `svcbot run` imports of the libraries it is built on, and nothing of svcbot's own: the
# part of a start no change to svcbot can take away (the console needs all but aiohttp and APScheduler).
STACK = ("import sqlalchemy.orm, aiohttp.web, pydantic, yaml, holidays, apscheduler.schedulers.asyncio, "
         "prometheus_client")


def timed(cmd: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def serve(env: dict) -> tuple[subprocess.Popen, float]:
    """A server started, and the time until its /healthz answered."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(SVCBOT + ["run", "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = started + 60
    while not healthy(f"http://127.0.0.1:{port}/healthz"):
        if proc.poll() is not None or time.perf_counter() > deadline:
            proc.kill()
            raise SystemExit(f"svcbot run did not answer /healthz (exit {proc.poll()})")
        time.sleep(0.005)
    return proc, time.perf_counter() - started


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(10)


def served(env: dict) -> float:
    proc, took = serve(env)
    stop(proc)
    return took


def proc_kb(path: str, field: str) -> float:
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} in {path}: memory is measured on Linux only")


def memory(pid: int) -> tuple[float, float, float]:
    """The server's peak RSS, its sweeper's (0 if it has none), and the two processes' proportional set
    size now (pages they share since the fork counted once), in MB."""
    sweepers = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    pss = sum(proc_kb(f"/proc/{p}/smaps_rollup", "Pss") for p in [pid, *sweepers])
    return (proc_kb(f"/proc/{pid}/status", "VmHWM") / 1024,
            sum(proc_kb(f"/proc/{p}/status", "VmHWM") for p in sweepers) / 1024, pss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--idle-seconds", type=float, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SVCBOT_DATABASE_URL": f"sqlite:///{Path(tmp) / 'start.db'}",
               "SVCBOT_CONFIG": str(ROOT / "app.yaml"), "SVCBOT_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "MICROSOFT_APP_ID", "PYTHONDONTWRITEBYTECODE"):
            env.pop(name, None)
        runs = {
            "python -c pass (floor)": lambda: timed([sys.executable, "-c", "pass"], env),
            "the libraries' imports alone": lambda: timed([sys.executable, "-c", STACK], env),
            "svcbot console -c status": lambda: timed(SVCBOT + ["console", "-c", "status"], env),
            "svcbot run until /healthz": lambda: served(env),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for name, run in runs.items():
            run()  # warm: the disk cache, the store's schema
        for _ in range(args.rounds):  # interleaved, so that a busy moment falls on every command alike
            for name, run in runs.items():
                times[name].append(run())
        proc, _ = serve(env)
        try:
            time.sleep(args.idle_seconds)
            rss, sweeper_rss, pss = memory(proc.pid)
        finally:
            stop(proc)

    floor = statistics.median(times["python -c pass (floor)"])
    print(f"start, median of {args.rounds} rounds")
    print(f"{'':28} {'median s':>9} {'min s':>7} {'× floor':>8}")
    for name, taken in times.items():
        median = statistics.median(taken)
        print(f"{name:28} {median:9.3f} {min(taken):7.3f} {median / floor:8.1f}")
    print(f"\nsvcbot run, idle {args.idle_seconds:g} s with the demo configuration: peak RSS {rss:.0f} MB, its "
          f"sweeper's {sweeper_rss:.0f} MB; both together now, shared pages counted once (PSS): {pss:.0f} MB")


if __name__ == "__main__":
    main()
