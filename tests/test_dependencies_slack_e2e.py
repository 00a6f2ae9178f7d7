"""Payments goes down in Slack and the web shop's channel hears that it is affected, once: the real server, a
signed slash command, the fake Slack Web API, on the demo configuration with its dependencies."""
from __future__ import annotations

import time

import pytest
import yaml

from storage.models import ServiceStatus
from tests.conftest import db_rows, demo_config
from tests.test_slack_e2e import PAYMENTS_CHANNEL, TOM, posts_to, slash

pytestmark = pytest.mark.e2e

SHOP_CHANNEL = "C0SHOP0001"


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(demo_config(dependencies=True), sort_keys=False))
    return path


def test_payments_down_in_slack_tells_the_web_shop_channel_once(start_server, fake_slack, database_url):
    server = start_server()
    assert slash(server, fake_slack, "service set payments major-outage Card payments are down", TOM).ok
    [told] = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params["channel"] == SHOP_CHANNEL)
    assert told.params["text"].startswith("🔴 Web Shop is affected: Payments Gateway is in a major outage")
    # An update in the same state is announced to payments' channel and tells the shop nothing more.
    assert slash(server, fake_slack, "service set payments major-outage Still down", TOM).ok
    fake_slack.wait_for("chat.postMessage", count=2, where=lambda c: c.params["channel"] == PAYMENTS_CHANNEL)
    time.sleep(1)
    assert len(posts_to(fake_slack, SHOP_CHANNEL)) == 1
    assert [(s.service_id, s.state) for s in db_rows(database_url, ServiceStatus)] == [("payments", "major-outage")]
