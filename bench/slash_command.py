"""How much svcbot adds to a slash command round trip, against a bare slack-bolt app measured in the same run.

Both servers run as subprocesses on loopback with the same signing secret; each gets the same number
of signed `/svc status` requests (after a warm-up) and the median and 95th percentile are printed,
with svcbot's ratio to the baseline. Run: `.venv/bin/python bench/slash_command.py [--requests N]`.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def start(cmd: list[str], env: dict, cwd: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(cmd, env={**os.environ, **env, "PORT": str(port)}, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    fake = FakeSlack().start()
    common = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake.url + "/api/",
              "SLACK_BOT_TOKEN": "xoxb-bench", "PYTHONPATH": str(ROOT)}
    results = {}
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
            finally:
                proc.terminate()
                proc.wait(10)
    fake.stop()
    baseline = statistics.median(results["bare slack-bolt app"])
    print(f"{'':24} {'median ms':>10} {'p95 ms':>8} {'× baseline':>11}   ({args.requests} requests each)")
    for name, times in results.items():
        times.sort()
        median, p95 = statistics.median(times), times[int(len(times) * 0.95) - 1]
        print(f"{name:24} {median * 1000:10.2f} {p95 * 1000:8.2f} {median / baseline:11.2f}")


if __name__ == "__main__":
    main()
