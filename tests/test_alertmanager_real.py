"""A real Prometheus Alertmanager (Debian's prometheus-alertmanager) sends its webhook to the real server:
a firing alert becomes an outage of the service its `service` label names, and its resolution ends it."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import pytest
import requests

from storage.models import Outage
from tests.conftest import db_rows, free_port, wait_until

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
TOKEN = "am-test-token"

pytestmark = [
    pytest.mark.e2e,
    # CI installs it (.ci/run); elsewhere the test says why it did not run.
    pytest.mark.skipif(ALERTMANAGER is None and not os.environ.get("CI"),
                       reason="prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)"),
]

CONFIG = """
route:
  receiver: svcbot
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: svcbot
    webhook_configs:
      - url: {url}/api/v1/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""


@pytest.fixture
def alertmanager(tmp_path):
    def start(svcbot_url: str) -> str:
        port = free_port()
        config = tmp_path / "alertmanager.yml"
        config.write_text(CONFIG.format(url=svcbot_url, token=TOKEN))
        log = open(tmp_path / "alertmanager.log", "wb")
        proc = subprocess.Popen([ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                stdout=log, stderr=subprocess.STDOUT)
        started.append((proc, log))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/-/ready", timeout=1).status_code == 200:
                    return url
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError("Alertmanager did not start:\n" + (tmp_path / "alertmanager.log").read_text())

    started: list = []
    yield start
    for proc, log in started:
        proc.terminate()
        proc.wait(10)
        log.close()


def alertmanager_now(am: str) -> datetime:
    """Alertmanager's own clock, from its Date header. A Go program, it keeps the machine's time when the
    suite runs under libfaketime (a year ahead, say), so what the test tells it is in its time."""
    return parsedate_to_datetime(requests.get(am + "/-/ready", timeout=5).headers["Date"])


def test_firing_and_resolved_alerts_record_one_outage(start_server, alertmanager, database_url):
    server = start_server(SVCBOT_API_TOKEN=TOKEN)
    am = alertmanager(server.url)
    started = alertmanager_now(am) - timedelta(minutes=3)
    # The last 7 days of Alertmanager's clock, however far ahead svcbot's runs.
    period = f"{7 + max(timedelta(0), datetime.now(timezone.utc) - alertmanager_now(am)).days}d"
    alert = {"labels": {"alertname": "CardPaymentsFailing", "service": "payments", "severity": "critical"},
             "annotations": {"summary": "Card authorisations failing at 40 %"},
             "startsAt": started.isoformat().replace("+00:00", "Z"), "generatorURL": "http://prometheus/graph"}
    assert requests.post(am + "/api/v2/alerts", json=[alert], timeout=5).status_code == 200

    [outage] = wait_until(lambda: db_rows(database_url, Outage), "the outage")
    assert (outage.service_id, outage.kind, outage.source) == ("payments", "unplanned", "alertmanager")
    assert outage.started_at == started and outage.ended_at is None
    assert outage.summary == "Card authorisations failing at 40 %"

    ended = started + timedelta(minutes=2)
    resolved = {**alert, "endsAt": ended.isoformat().replace("+00:00", "Z")}
    assert requests.post(am + "/api/v2/alerts", json=[resolved], timeout=5).status_code == 200
    wait_until(lambda: db_rows(database_url, Outage, Outage.ended_at.is_not(None)), "the resolution")
    [outage] = db_rows(database_url, Outage)
    assert outage.ended_at == ended

    availability = requests.get(server.url + "/api/v1/services/payments/availability", params={"period": period},
                                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()
    assert availability["downtime_seconds"] == 120
    assert 0 < availability["availability"] < 100  # a percentage
    assert "Traceback" not in server.log()
