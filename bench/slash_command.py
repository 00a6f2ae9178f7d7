"""How much svcbot adds to a slash command round trip, against a bare slack-bolt app measured in the same run.

Both servers run as subprocesses on loopback with the same signing secret. Each gets the same signed
`/svc status` requests (after a warm-up) twice: one at a time (the median and 95th percentile of a
round trip), then from CONCURRENCY clients at once, as when a whole team uses it (the median and 99th
percentile and the throughput). svcbot's ratio to the baseline is printed beside each figure.
Run: `.venv/bin/python bench/slash_command.py [--requests N] [--concurrent-requests N] [--concurrency C]`.

What profiling the server under this load showed (py-spy record --threads, with --gil for the time each
thread held the interpreter; cProfile of Runtime._run in a loop):
- The work of a command runs in a thread (asyncio.to_thread). 81% of those threads' samples waited in
  SQLite's BEGIN IMMEDIATE: every transaction, reads included, took the one write lock, and each command
  took it twice (looking up who asked, then reading the service states). Fifty requests queued one by one,
  behind each other and every sweep, sleeping in SQLite's busy handler. Reads now begin deferred on a
  read-only connection (WAL: each reads a snapshot of what is committed; storage.db.read_only,
  Context.read and Context.reader); a person already known is looked up without writing.
- Then the interpreter lock was the limit. Of a read, building the SQLAlchemy statement and an ORM session
  cost more than the query (about 500 µs against 150 µs for a statement built once, read as plain columns
  on a connection); the event loop spent a sixth of its time rendering the reply through its Jinja
  template, now kept per reply content (bot.render).
- `status` stores no delivery key: only a command that changes something writes one (Context.change), and
  a read-only answer is not cached: it is one read of one row per service; a version row to check would be
  a read as well.
- What is left per request: two reads (who asked, the states) in one thread hop, and that hop
  (ThreadPoolExecutor.submit took a sixth of the event loop's time holding the interpreter lock). The
  bare app's own work (parsing, signature, ack) is the same in both.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import SIGNING_SECRET, free_port, slack_headers, slash_command_body  # noqa: E402
from tests.fakes import FakeSlack  # noqa: E402

BARE_BOLT_APP = '''
import os
from aiohttp import web
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_sdk.web.async_client import AsyncWebClient

app = AsyncApp(client=AsyncWebClient(token="xoxb-bench", base_url=os.environ["SLACK_API_URL"]),
               signing_secret=os.environ["SLACK_SIGNING_SECRET"])

@app.command("/svc")
async def status(ack, command):
    await ack(text="All services operational", response_type="ephemeral")

async def handle(request):
    return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))

web_app = web.Application()
web_app.router.add_post("/slack/events", handle)
web_app.router.add_get("/healthz", lambda r: web.json_response({"status": "ok"}))
web.run_app(web_app, port=int(os.environ["PORT"]), print=None)
'''


def wait_healthy(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def measure(url: str, hooks: str, n: int) -> list[float]:
    session = requests.Session()
    times = []
    for i in range(n + 20):
        body = slash_command_body("status", "U0TOM0002", hooks, trigger_id=f"bench.{i}.{time.time_ns()}")
        headers = slack_headers(body)
        started = time.perf_counter()
        response = session.post(url + "/slack/events", data=body, headers=headers, timeout=10)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        if i >= 20:  # the first requests warm caches and connections
            times.append(elapsed)
    return times


async def _concurrent(url: str, hooks: str, n: int, concurrency: int) -> tuple[list[float], float]:
    """N requests from CONCURRENCY clients at once: each round trip's time, and the whole run's wall time."""
    bodies = []
    for i in range(n):
        body = slash_command_body("status", "U0TOM0002", hooks, trigger_id=f"bench.c{i}.{time.time_ns()}")
        bodies.append(body)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    times: list[float] = []

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            started = time.perf_counter()
            # Signed when sent: Slack's signatures are good for five minutes.
            async with session.post(url + "/slack/events", data=body, headers=slack_headers(body)) as response:
                await response.read()
                response.raise_for_status()
            times.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        return times, time.perf_counter() - began


def measure_concurrent(url: str, hooks: str, n: int, concurrency: int) -> tuple[list[float], float]:
    asyncio.run(_concurrent(url, hooks, concurrency * 2, concurrency))  # warm-up: connections, caches
    return asyncio.run(_concurrent(url, hooks, n, concurrency))


def start(cmd: list[str], env: dict, cwd: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(cmd, env={**os.environ, **env, "PORT": str(port)}, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300, help="one at a time")
    parser.add_argument("--concurrent-requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50, help="clients at once")
    args = parser.parse_args()
    fake = FakeSlack().start()
    common = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake.url + "/api/",
              "SLACK_BOT_TOKEN": "xoxb-bench", "PYTHONPATH": str(ROOT)}
    results, concurrent = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "bare.py").write_text(BARE_BOLT_APP)
        runs = [
            ("bare slack-bolt app", [sys.executable, str(tmp / "bare.py")], {}),
            ("svcbot /svc status", [sys.executable, "-m", "bot.cli", "run"],
             {"SVCBOT_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}", "SVCBOT_CONFIG": str(ROOT / "app.yaml"),
              "SVCBOT_LOG_LEVEL": "WARNING"}),
        ]
        for name, cmd, env in runs:
            proc, url = start(cmd, {**common, **env}, ROOT)
            try:
                results[name] = measure(url, fake.url + "/hooks/x", args.requests)
                concurrent[name] = measure_concurrent(url, fake.url + "/hooks/x", args.concurrent_requests,
                                                      args.concurrency)
            finally:
                proc.terminate()
                proc.wait(10)
    fake.stop()
    bare = "bare slack-bolt app"
    baseline = statistics.median(results[bare])
    print(f"one at a time, {args.requests} requests each")
    print(f"{'':24} {'median ms':>10} {'p95 ms':>8} {'× baseline':>11}")
    for name, times in results.items():
        times.sort()
        median, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
        print(f"{name:24} {median * 1000:10.2f} {p95 * 1000:8.2f} {median / baseline:11.2f}")

    def figures(times: list[float], wall: float) -> tuple[float, float, float]:
        times = sorted(times)
        return statistics.median(times), times[max(0, int(len(times) * 0.99) - 1)], len(times) / wall

    print(f"\n{args.concurrency} clients at once, {args.concurrent_requests} requests each")
    print(f"{'':24} {'median ms':>10} {'p99 ms':>8} {'req/s':>8} {'p99 × floor':>12} {'req/s × floor':>14}")
    _, floor_p99, floor_rate = figures(*concurrent[bare])
    for name, (times, wall) in concurrent.items():
        median, p99, rate = figures(times, wall)
        print(f"{name:24} {median * 1000:10.2f} {p99 * 1000:8.2f} {rate:8.0f} {p99 / floor_p99:12.2f} "
              f"{rate / floor_rate:14.2f}")


if __name__ == "__main__":
    main()
