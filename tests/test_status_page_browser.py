"""The status page in a real browser: the real server in a subprocess, its store set up through its own doors
(signed Slack slash commands and the JSON API), and Chromium headless, as Debian packages it, at a phone's
size. The page must show each service in the state that `status` answers through the same server, and its
script must bring a change made after the page loaded onto the page without a reload."""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import struct
import subprocess
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
import requests
import yaml
from matplotlib import image

from tests.conftest import demo_config, slack_headers, slash_command_body, wait_until
from tests.test_api_e2e import TOKEN, Client
from tests.test_status_page import Page, services_shown

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install "
                                                          "chromium); CI installs it")]

PHONE = (390, 844)  # CSS pixels of a common phone, portrait
# No network, no profile, no background traffic: the page is all that is loaded. Scrollbars overlay, as on a phone.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--window-size={PHONE[0]},{PHONE[1]}"]
TOM, ARJUN = "U0TOM0002", "U0ARJUN04"  # the owners of payments and wms
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def config_file(tmp_path):
    cfg = demo_config()
    cfg["changes"]["freezes"] = []  # the change below is planned on real dates, which a freeze could cover
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def server(start_server):
    return start_server(SVCBOT_API_TOKEN=TOKEN)


def ask(server, fake_slack, words: str, user: str) -> dict:
    """`/svc WORDS` as Slack sends it; the answer, whether in the response or later at the response URL."""
    hook = f"/hooks/commands/{uuid.uuid4().hex}"
    body = slash_command_body(words, user, fake_slack.url + hook)
    answer = requests.post(server.url + "/slack/events", data=body, headers=slack_headers(body), timeout=10).json()
    if "Working on it" in answer.get("text", ""):
        answer = fake_slack.wait_for("response_url", where=lambda c: c.path == hook)[0].params
    return answer


def status_answer(server, fake_slack) -> dict[str, str]:
    """Service id → state, from `status` in Slack."""
    blocks = ask(server, fake_slack, "status", TOM)["blocks"]
    lines = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    return {m["id"]: m["state"] for line in lines
            if (m := re.search(r"\(`(?P<id>[a-z0-9_-]+)`, tier \d\) — (?P<state>[a-z-]+)", line))}


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-{uuid.uuid4().hex[:8]}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          timeout=120, check=True)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def seed(server, fake_slack) -> None:
    for user, words in [(TOM, f"service set payments degraded Card payments are slow {SCRIPT}"),
                        (ARJUN, "service set wms maintenance Rolling restart of the pick workers")]:
        assert "now" in ask(server, fake_slack, words, user)["blocks"][0]["text"]["text"]
    api = Client(server.url)
    api.open(service="payments", priority="P1", title="Card payments fail for Amex")
    start = (datetime.now(timezone.utc) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    response = api.post("/api/v1/changes", {
        "requester": "priya", "title": "Patch the mail relays", "services": ["email"], "type": "normal",
        "risk": "low", "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(),
        "backout": "Reinstall the previous package"})
    assert response.status_code == 201, response.text


def test_the_page_renders_on_a_phone_and_shows_what_status_says(server, fake_slack, tmp_path):
    seed(server, fake_slack)
    said = status_answer(server, fake_slack)
    assert said["payments"] == "degraded" and said["wms"] == "maintenance"

    shot = tmp_path / "status.png"
    chromium(tmp_path, f"--screenshot={shot}", "--virtual-time-budget=5000", server.url + "/")
    print(f"\nscreenshot of the status page at {PHONE[0]}×{PHONE[1]}: {shot}")
    assert png_size(shot) == PHONE
    pixels = image.imread(str(shot))
    colours = {tuple(p) for p in (pixels[..., :3] * 255).astype(int).reshape(-1, 3)}
    assert len(colours) > 50, "the screenshot is (nearly) blank"

    dom = chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", server.url + "/").stdout.decode()
    page = Page(dom)
    assert {service: state for service, (state, _) in services_shown(page).items()} == said
    assert [r.cells[1] for r in page.rows("services-table") if r.id == "service-payments"][0].startswith(
        f"degraded Card payments are slow {SCRIPT}")  # shown as text, not run
    assert len(page.scripts) == 1
    assert "hidden" not in next(a for t, a in page.tags if a.get("id") == "refresh-note")  # the script ran
    [incident] = page.rows("incidents-table")
    assert "Card payments fail for Amex" in incident.cells[0] and "% used, due" in incident.cells[1]
    [change] = page.rows("changes-table")
    assert change.cells[0] == "CHG-1 Patch the mail relays Email and Calendar" and change.cells[2] == "scheduled"
    assert {r.cells[-1] for r in page.rows("attainment-table")} <= {"met", "missed", "no goal"}


class DevTools:
    """Just enough of Chromium's DevTools protocol to read a page while it lives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws, self.calls = ws, 0

    async def call(self, method: str, **params) -> dict:
        self.calls += 1
        await self.ws.send_json({"id": self.calls, "method": method, "params": params})
        while True:  # events arrive in between; the answer carries the call's id
            message = await self.ws.receive_json(timeout=30)
            if message.get("id") == self.calls:
                assert "error" not in message, message
                return message["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := await self.evaluate(expression):
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def browser_at(url: str, tmp_path: Path):
    """Chromium headless showing ``url``, driven over its DevTools socket (on a port it picks itself)."""
    profile = tmp_path / "chromium-devtools"
    process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), "Chromium's DevTools port")
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                [target] = [t for t in await response.json() if t["type"] == "page" and t["url"].startswith(url)]
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                devtools = DevTools(ws)
                # A window is never narrower than 500 pixels, even headless: the phone is emulated instead.
                await devtools.call("Emulation.setDeviceMetricsOverride", width=PHONE[0], height=PHONE[1],
                                    deviceScaleFactor=1, mobile=True)
                yield devtools
    finally:
        process.terminate()
        process.wait(20)


async def test_the_page_refreshes_itself_and_keeps_the_readers_place(server, fake_slack, tmp_path):
    await asyncio.to_thread(seed, server, fake_slack)
    state_of = "document.getElementById('service-payments').dataset.state"
    # ?refresh=1: the page's script fetches the page every second instead of every minute.
    async with browser_at(server.url + "/?refresh=1", tmp_path) as page:
        await page.wait_for("document.getElementById('refresh-note')?.hidden === false", "the page's script to start")
        # A phone's width, and nothing wider: the page itself never scrolls sideways.
        assert await page.evaluate("[innerWidth, document.documentElement.scrollWidth]") == [PHONE[0]] * 2
        assert await page.evaluate(state_of) == "degraded"
        await page.evaluate("scrollTo(0, 300); scrollY")
        assert await page.evaluate("scrollY") == 300
        fetched_before = await page.evaluate("performance.getEntriesByType('resource').length")

        answer = await asyncio.to_thread(ask, server, fake_slack, "service set payments operational Fixed", TOM)
        assert "operational" in json.dumps(answer)
        await page.wait_for(f"{state_of} === 'operational'", "the page to show the new state")
        said = await asyncio.to_thread(status_answer, server, fake_slack)
        shown = await page.evaluate("Object.fromEntries([...document.querySelectorAll('tr[data-state]')]"
                                    ".map(tr => [tr.id.replace('service-', ''), tr.dataset.state]))")
        assert shown == said and said["payments"] == "operational"
        # Refreshed in place: the same document (no reload), still where the reader had scrolled to, the new
        # headline announced to screen readers.
        assert await page.evaluate("performance.getEntriesByType('resource').length") > fetched_before
        assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert await page.evaluate("scrollY") == 300
        assert await page.evaluate("document.getElementById('announce').textContent") == \
            "Services operational; maintenance under way"
        assert await page.evaluate("document.getElementById('refresh-note').textContent") == \
            " · refreshes every second"
