"""Every Slack request sample in shared/data/payloads, signed and replayed against the real server: each
is accepted (never a 404 that would make Slack retry, never a 500) and none breaks the server."""
from __future__ import annotations

import json

import pytest
import requests

from tests.conftest import PAYLOADS, slack_headers

pytestmark = pytest.mark.e2e

SAMPLES = sorted((PAYLOADS / "slack" / "bolt_python").glob("*"))


def test_every_sample_is_accepted(start_server):
    server = start_server()
    assert SAMPLES, "no Slack samples found"
    for path in SAMPLES:
        if path.name.endswith(".parsed.json"):
            continue
        raw = path.read_text().strip()
        if path.suffix == ".json":
            content_type = "application/json"
            if json.loads(raw).get("type") in ("block_actions", "view_submission", "view_closed", "shortcut",
                                                "message_action", "block_suggestion"):
                continue  # interactivity arrives form-encoded; the .form.txt twins cover it
        else:
            content_type = "application/x-www-form-urlencoded"
        response = requests.post(server.url + "/slack/events", data=raw,
                                 headers=slack_headers(raw, content_type=content_type), timeout=10)
        assert response.status_code == 200, f"{path.name}: {response.status_code} {response.text}"
        if path.name == "url_verification.json":
            assert response.json() == {"challenge": json.loads(raw)["challenge"]}
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    assert "Traceback" not in server.log()
