"""Monthly reports through the real server: `report post` from a signed Slack command puts the report in the
service's channel and its three charts beside it through Slack's files upload API (a 429 on the way is
waited out, and the charts are shared once); from Teams the charts are images in the card; and the
scheduled monthly report comes at its slot, once, with libfaketime moving the server's clock to it."""
from __future__ import annotations

import base64
import json
import time

import pytest
import yaml

from storage.models import ScheduledRun
from tests.conftest import db_rows, demo_config
from tests.test_changes_slack_e2e import PAYMENTS, slash
from tests.test_changes_slack_e2e import TOM as TOM_SLACK
from tests.test_digests_e2e import first_sweep, needs_faketime, server_clock  # noqa: F401 - a fixture
from tests.test_teams_e2e import (PAYMENTS_CONV, TOM, card_of, channel_config,  # noqa: F401 - a fixture
                                  installed_in_channel, personal_message, posted, server_env)  # the emulator mode

pytestmark = pytest.mark.e2e

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def shared_files(fake_slack) -> list[dict]:
    return [m for m in fake_slack.posted if m.get("files")]


def test_report_post_shares_the_charts_in_slack_once(start_server, fake_slack):
    server = start_server()
    fake_slack.script("files.completeUploadExternal", 429)  # Slack asks to wait a second first
    response = slash(server, fake_slack, "report post payments 2026-10", TOM_SLACK)
    assert response.status_code == 200
    [post] = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == PAYMENTS)
    assert "Payments Gateway" in post.params["text"] and "October 2026" in post.params["text"]
    done = fake_slack.wait_for("files.completeUploadExternal", count=2, timeout=30)
    assert done[-1].params["channel_id"] == PAYMENTS
    files = json.loads(done[-1].params["files"])
    assert len(files) == 3 and all(f["title"].endswith(": Payments Gateway") for f in files)
    assert all(fake_slack.uploads[f["id"]].startswith(PNG_MAGIC) for f in files)
    asked = fake_slack.called("files.getUploadURLExternal")
    assert all(c.params["alt_txt"] for c in asked)
    time.sleep(1)
    assert len(shared_files(fake_slack)) == 1
    assert len(fake_slack.called("chat.postMessage")) == 1


def test_report_post_from_teams_shows_the_charts_in_the_card(start_server, fake_teams, channel_config):
    server = start_server()
    posted(server, installed_in_channel(fake_teams))
    posted(server, personal_message(fake_teams, TOM, "report post payments 2026-10"))
    [call] = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == PAYMENTS_CONV)
    card = card_of(call)
    images = [b for b in card["body"] if b.get("type") == "Image"]
    assert len(images) == 3 and all(i["altText"] for i in images)
    for image in images:
        head, data = image["url"].split(",", 1)
        assert head == "data:image/png;base64" and base64.b64decode(data).startswith(PNG_MAGIC)
    # Teams limits a bot's message to 40 KB, counted without base64 images: the card's text stays small.
    without_images = [b for b in card["body"] if b.get("type") != "Image"]
    assert len(json.dumps(without_images).encode("utf-16-le")) < 40_000


@needs_faketime
def test_the_monthly_report_comes_at_its_slot_once(server_clock, fake_slack, config_file, database_url):
    cfg = demo_config(reports=[{"name": "monthly", "channel": "payments", "cron": "0 9 2 * *",
                                "timezone": "Europe/London", "services": ["payments"]}])
    config_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    server_clock.set("2026-12-02 08:59:30")
    server_clock.start()
    first_sweep(database_url, "report:monthly")
    server_clock.set("2026-12-02 09:00:02")  # the slot has come
    [post] = fake_slack.wait_for("chat.postMessage", where=lambda c: c.params.get("channel") == PAYMENTS, timeout=90)
    assert "November 2026" in post.params["text"]
    fake_slack.wait_for("files.completeUploadExternal", timeout=60)
    time.sleep(2)
    assert len(fake_slack.called("chat.postMessage")) == 1 and len(shared_files(fake_slack)) == 1
    runs = [(r.slot_at.isoformat(), r.outcome) for r in db_rows(database_url, ScheduledRun) if r.outcome != "start"]
    assert runs == [("2026-12-02T09:00:00+00:00", "posted")]
