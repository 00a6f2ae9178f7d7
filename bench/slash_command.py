"""How much svcbot adds to a slash command round trip, against a bare slack-bolt app measured in the same run.

Both servers run as subprocesses on loopback with the same signing secret. Each gets the same signed
`/svc status` requests (after a warm-up) twice: one at a time (the median and 95th percentile of a
round trip), then from CONCURRENCY clients at once, as when a whole team uses it (the median and 99th
percentile and the throughput). Each server is measured ROUNDS times in turn, and each round's ratios
are to the floor's same round: on a shared machine one busy moment moves one round, not the result.
With --open-tickets N, svcbot is measured a third time on a store of N open tickets (built with
bench/import_and_sweep.py's ``populate``, placed around this run's time) of which --due clocks are due:
its breach sweep (200 clocks a call, every 2 s as the demo app.yaml says) runs during the load, which
begins once the sweep has committed its first batch; the clocks still due as the load begins and ends
are printed beside it.
Run: `.venv/bin/python bench/slash_command.py [--requests N] [--concurrent-requests N] [--concurrency C]
[--rounds R] [--open-tickets 100000 [--due N] [--also-threads]]`.

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
- Then, of the time the server held the interpreter (--gil, 3,000 requests), the event loop had three
  quarters and the worker threads a quarter: 18% the two reads, 10% the handler and its reply. On the
  loop, ThreadPoolExecutor.submit alone took 11% (the hop, and the waits for the lock that a worker
  thread holding it imposes on every socket call of the loop), rendering the response 6%, Bolt 20%
  and parsing the body 11%. The server spent about 1.2 ms of CPU a request (from /proc), the bare app
  0.37 ms.
- So `status` is now answered from memory (handlers.core.remembered): the overview and the person behind
  the account are kept with the number of the store's version row (storage.models_answers), which the
  store's own triggers move on in the same transaction as any write to service_status, people or
  identities. A request reads that row once and uses what was kept only at the same number. On SQLite it
  reads it on the event loop, from a connection of its own that never waits (busy timeout 0; when it
  would have to wait, or on PostgreSQL, where a query would hold up the loop, the command runs in its
  thread as before, with one read of the version instead of the person's). When both are kept, the
  listener acks at once: no thread, no task, no other query; the response is rendered once for each
  kept reply. Profiled in a loop, that path first spent more in prometheus' label look-ups (a lock and a
  tuple each) and in parsing the store's URL than in the read itself; both are now done once.
- After: about 0.5 ms of CPU a request against the bare app's 0.37-0.45 ms in the same minutes. What is
  left above the floor, of the server's time: encoding a larger answer as JSON (the bare app acks one
  line, `status` lists every service; 3.5%), the answer from memory itself (the version read and the
  metrics, 3.6%), the JSON API's aiohttp middleware that every request passes (1-2%), and the
  scheduler's sweeps in their threads (3-5%). The rest is Bolt's own work, the same in both: parsing and
  checking the signature, a WebClient built for each request, the arguments built for each listener
  call, and the 10 ms poll for the ack. The scheduler's sweeps (six jobs every 2 s in worker threads,
  with nothing to do) cost about a seventh of the throughput: the same server with sweep_seconds 600
  gave 592 and 551 req/s against 506 and 415. Between two runs of three rounds the p99 ratio was 0.96
  and 1.85, the throughput ratio 0.84 both times.
- With a store of 100,000 open tickets whose breach sweep runs, the p99 before was about 2 s (8-20 ×
  the floor): commands shared the six threads of the default pool with the sweeps and the deliveries of
  the notices they write. `status` from memory needs none. Now the sweep (breaches.sweep, in a worker
  thread: 36% of the time the interpreter was held) and the deliveries of its notices (the outbox, 15%)
  hold the interpreter half the time during the load; the event loop, which answers every request, gets
  the other half, and each of its socket calls waits for the lock to come back. That is where the rest
  of the time goes: one interpreter shared by the requests and a CPU-bound sweep. A shorter switch
  interval (sys.setswitchinterval 0.5 ms) was tried and made no difference that the noise of the shared
  machine did not hide.
- So the sweeps run in a process of their own (bot/sweeps.py, delivery.sweeps_in: process), niced. With
  only the sweeps moved, the 100,000-ticket round gave p99 2.7×, throughput 0.46× (threads: 4.0×, 0.30×):
  the deliveries of the sweep's notices, still in the server, were the larger part. With the sweeper
  delivering what its sweeps queue: p99 1.3-1.9×, throughput 0.57-0.67× over two runs; `status` with
  nothing to sweep 1.2×, 0.82-0.86×. Niceness 0 and 19 instead of 10 gave, one run each, 1.71× and 1.62×,
  0.53× and 0.52×: within the noise. The same store with no clock due gave 1.0×, 0.91×.
- Why niceness did not help: the CPU time of each process, read from /proc every 0.1 s during the load,
  showed the sweeper at niceness 10 taking 0.7 of a core while the server got 0.5 and the clients 0.5
  (the floor's server and clients took 0.7 each, both cores never full). A server and its clients take
  turns; while one waits for the other the sweeper runs, and a niceness only divides the time between
  tasks that all want it, so the server, woken, still waits for the sweeper's slice. Under SCHED_IDLE
  (`sweeper_niceness: idle`, now the default) a woken server takes the CPU at once: p99 1.04×,
  throughput 0.78× where the run before gave 1.57×, 0.60×; with the cheaper sweep below, two runs of
  three rounds gave 1.18× and 1.00×, 0.82× both times (by round 0.89-1.25×, 0.66-0.83×; threads 2.96-3.22×,
  0.48-0.56×). The sweep waits meanwhile, as it mostly did at niceness 10: in the second or so a
  round's load lasts it commits no batch.
- The breach sweep itself now reads a batch's tickets and histories in two statements instead of two a
  clock, and writes each notice's messages in one flush with its clock (three before): 2,000 notices
  took 5.7 s of CPU instead of 7.8 s. What is left of it is the ORM's flushes (a savepoint per clock,
  so that one clock's failure loses no other's notice), about half.
- The fake Slack Web API runs in a process of its own, or the notices it receives would slow this
  bench's own clients (the floor gets none), and at niceness 19: it stands for Slack's servers, which
  are not on this machine.
- Each store a round served is checked with PRAGMA integrity_check afterwards: the first sweeper, forked
  with the server's SQLite connections open, corrupted it under this load.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # import_and_sweep's store of open tickets

from tests.conftest import SIGNING_SECRET, free_port, slack_headers, slash_command_body  # noqa: E402

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


FAKE_SLACK = """
import os
import time
os.nice(19)
from tests.fakes import FakeSlack
print(FakeSlack().start().url, flush=True)
while True:
    time.sleep(3600)
"""


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
    try:
        wait_healthy(url, proc)
    except BaseException:
        proc.kill()
        raise
    return proc, url


def ticket_store(tmp: Path, tickets: int, due: int) -> tuple[Path, Path]:
    """A store of ``tickets`` open tickets, ``due`` of whose clocks are due now, and the configuration to
    serve it with: bench/import_and_sweep.py's service desk and its ``populate``, the clocks placed around
    this run's own time (the server's clock), and the demo's sweep interval (every 2 s, 200 clocks a call)."""
    import yaml

    import import_and_sweep
    from bot.runtime import Runtime
    from handlers.core.config_loading import parse_config
    from handlers.sla import breaches
    import_and_sweep.NOW = datetime.now(timezone.utc).replace(microsecond=0)
    config = import_and_sweep.desk_config()
    config["delivery"] = yaml.safe_load((ROOT / "app.yaml").read_text())["delivery"]
    text = yaml.safe_dump(config, sort_keys=False)
    (tmp / "desk.yaml").write_text(text)
    db = tmp / "tickets.db"
    rt = Runtime(parse_config(text, "desk.yaml"), f"sqlite:///{db}")  # the schema, by the migrations
    # The agreements recorded as measured, as the server will read them: it starts without measuring
    # every clock again.
    breaches.recompute_if_changed(rt.ctx)
    rt.engine.dispose()
    import_and_sweep.populate(db, tickets, due)
    return db, tmp / "desk.yaml"


def clocks_due(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        return conn.execute("SELECT count(*) FROM sla_clocks WHERE next_check_at <= ?", (now,)).fetchone()[0]


@dataclass
class Server:
    name: str
    cmd: list[str]
    env: dict
    template: Path | None = None  # a store copied afresh for each round
    alone: list[list[float]] = field(default_factory=list)  # each round's one-at-a-time times
    together: list[tuple[list[float], float]] = field(default_factory=list)  # each round's times and wall time
    swept: list[tuple[int, int]] = field(default_factory=list)  # clocks due as each round's load began, ended


def run_round(server: Server, common: dict, tmp: Path, hooks: str, args) -> None:
    env = dict(server.env)
    db = None
    if "SVCBOT_DATABASE_URL" in env:
        db = tmp / f"round-{len(server.together)}-{server.name.split()[0]}.db"
        if server.template is not None:
            shutil.copyfile(server.template, db)
        env["SVCBOT_DATABASE_URL"] = f"sqlite:///{db}"
    proc, url = start(server.cmd, {**common, **env}, ROOT)
    try:
        server.alone.append(measure(url, hooks, args.requests))
        if server.template is not None:  # the load begins once the sweep has committed its first batch
            first = clocks_due(db)
            deadline = time.monotonic() + 120
            while clocks_due(db) >= first and time.monotonic() < deadline:
                time.sleep(0.05)
            due = clocks_due(db)
        server.together.append(measure_concurrent(url, hooks, args.concurrent_requests, args.concurrency))
        if server.template is not None:
            server.swept.append((due, clocks_due(db)))
    finally:
        proc.terminate()
        proc.wait(10)
    if db is not None:  # a figure from a store the run damaged would be worth nothing
        with closing(sqlite3.connect(db)) as conn:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise SystemExit(f"{server.name}: the store failed its integrity check: {verdict}")


def figures(times: list[float], wall: float) -> tuple[float, float, float]:
    """The median and 99th percentile of a round trip, and the throughput."""
    times = sorted(times)
    return statistics.median(times), times[max(0, int(len(times) * 0.99) - 1)], len(times) / wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300, help="one at a time")
    parser.add_argument("--concurrent-requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50, help="clients at once")
    parser.add_argument("--rounds", type=int, default=3,
                        help="each server measured this many times, in turn; ratios are to the floor's same round")
    parser.add_argument("--open-tickets", type=int, default=0,
                        help="also svcbot on a store of this many open tickets whose breach sweep runs meanwhile")
    parser.add_argument("--also-threads", action="store_true",
                        help="with --open-tickets, also svcbot with its sweeps in its own threads")
    parser.add_argument("--due", type=int, default=2000,
                        help="of those tickets, clocks due now: enough for the sweep to run through the load")
    args = parser.parse_args()
    # Slack's Web API faked in a process of its own: the notices a sweep sends must not take the load
    # generator's interpreter.
    fake = subprocess.Popen([sys.executable, "-c", FAKE_SLACK], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    fake_url = fake.stdout.readline().strip()
    common = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake_url + "/api/",
              "SLACK_BOT_TOKEN": "xoxb-bench", "PYTHONPATH": str(ROOT), "SVCBOT_LOG_LEVEL": "WARNING"}
    svcbot = [sys.executable, "-m", "bot.cli", "run"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "bare.py").write_text(BARE_BOLT_APP)
        servers = [Server("bare slack-bolt app", [sys.executable, str(tmp / "bare.py")], {}),
                   Server("svcbot /svc status", svcbot,
                          {"SVCBOT_DATABASE_URL": "", "SVCBOT_CONFIG": str(ROOT / "app.yaml")})]
        if args.open_tickets:
            db, config = ticket_store(tmp, args.open_tickets, args.due)
            servers.append(Server(f"svcbot, {args.open_tickets // 1000}k open", svcbot,
                                  {"SVCBOT_DATABASE_URL": "", "SVCBOT_CONFIG": str(config)}, template=db))
            if args.also_threads:  # the same, its sweeps in the server's own threads (delivery.sweeps_in)
                threads = config.with_name("desk-threads.yaml")
                threads.write_text(config.read_text().replace("delivery:\n", "delivery:\n  sweeps_in: thread\n", 1))
                servers.append(Server(f"svcbot, {args.open_tickets // 1000}k open, sweeps in threads", svcbot,
                                      {"SVCBOT_DATABASE_URL": "", "SVCBOT_CONFIG": str(threads)}, template=db))
        for _ in range(args.rounds):
            for server in servers:
                run_round(server, common, tmp, fake_url + "/hooks/x", args)
    fake.terminate()
    report(servers, args)


def report(servers: list[Server], args) -> None:
    bare = servers[0]
    print(f"one at a time, {args.requests} requests each, {args.rounds} round(s): medians of the rounds")
    print(f"{'':36} {'median ms':>10} {'p95 ms':>8} {'× floor':>8}")
    for server in servers:
        medians, p95s, ratios = [], [], []
        for times, floor in zip(server.alone, bare.alone):
            times = sorted(times)
            medians.append(statistics.median(times))
            p95s.append(times[int(len(times) * 0.95) - 1])
            ratios.append(medians[-1] / statistics.median(floor))
        print(f"{server.name:36} {statistics.median(medians) * 1000:10.2f} {statistics.median(p95s) * 1000:8.2f} "
              f"{statistics.median(ratios):8.2f}")

    print(f"\n{args.concurrency} clients at once, {args.concurrent_requests} requests each; "
          f"each round against the floor's same round")
    print(f"{'':36} {'round':>5} {'median ms':>10} {'p99 ms':>8} {'req/s':>8} {'p99 × floor':>12} "
          f"{'req/s × floor':>14}")
    summary = []
    for server in servers:
        p99_ratios, rate_ratios = [], []
        for i, (run, floor) in enumerate(zip(server.together, bare.together)):
            median, p99, rate = figures(*run)
            _, floor_p99, floor_rate = figures(*floor)
            p99_ratios.append(p99 / floor_p99)
            rate_ratios.append(rate / floor_rate)
            swept = ""
            if server.swept:
                swept = f"  (clocks due: {server.swept[i][0]} as the load began, {server.swept[i][1]} as it ended)"
            print(f"{server.name:36} {i + 1:5} {median * 1000:10.2f} {p99 * 1000:8.2f} {rate:8.0f} "
                  f"{p99_ratios[-1]:12.2f} {rate_ratios[-1]:14.2f}{swept}")
        summary.append((server.name, statistics.median(p99_ratios), statistics.median(rate_ratios)))
    print(f"\n{'median of the rounds':36} {'p99 × floor':>12} {'req/s × floor':>14}   "
          "(asked: p99 ≤ 1.5×, req/s ≥ 0.67×)")
    for name, p99_ratio, rate_ratio in summary[1:]:
        print(f"{name:36} {p99_ratio:12.2f} {rate_ratio:14.2f}")


if __name__ == "__main__":
    main()
