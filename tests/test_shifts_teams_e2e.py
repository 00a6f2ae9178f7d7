"""A handover passes from London to Pune and is taken over in Teams: the handover card reaches the Pune
team's channel through the real server's outbox, and its Take over button, pressed as an Adaptive Card
action through /api/messages, reassigns the ticket once; a second press is told who took it over."""
from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest
import yaml

from bot.runtime import Runtime
from handlers.core.config_loading import parse_config
from handlers.shifts import handover
from storage.db import utcnow
from storage.models import Handover, Ticket
from tests.conftest import db_rows, wait_until
from tests.test_changes_teams_e2e import ARJUN, press
from tests.test_shifts import shifts_config, ticket
from tests.test_teams_e2e import (MEERA, PAYMENTS_CONV, card_text, installed_in_channel, posted,  # noqa: F401
                                  server_env)  # the emulator mode

pytestmark = pytest.mark.e2e


def test_a_handover_from_london_is_taken_over_by_pune_in_teams(start_server, fake_teams, database_url, config_file,
                                                               tmp_path):
    end = utcnow().replace(second=0, microsecond=0)  # London's shift ended this minute
    cfg = shifts_config(end)
    cfg["channels"]["platform-ops"]["teams"] = PAYMENTS_CONV  # Pune's channel: where the bot is installed
    # The server runs without the handover, so that it posts nothing before the bot is installed in the
    # channel; this test's own svcbot (a second replica, on the same store) is the one that posts it.
    served = copy.deepcopy(cfg)
    next(g for g in served["groups"] if g["id"] == "payments-eng").pop("handover_to")
    config_file.write_text(yaml.safe_dump(served, sort_keys=False))
    server = start_server()
    posted(server, installed_in_channel(fake_teams))

    replica = Runtime(parse_config(yaml.safe_dump(cfg, sort_keys=False)), database_url)
    try:
        ctx = replica.ctx
        # Real time, but within the minute after the shift's end, as a sweep every 30 seconds would be.
        ctx.now = lambda: min(utcnow(), end + timedelta(seconds=50))
        p1 = ticket(ctx, "P1", end - timedelta(hours=1))
        assert handover.sweep(ctx) == 1
    finally:
        replica.engine.dispose()

    card = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == PAYMENTS_CONV
                               and "Handover HND-1" in card_text(c))[0]
    content = json.loads(card_text(card))
    assert f"INC-{p1} P1" in json.dumps(content) and "Payments Engineering (London)" in json.dumps(content)
    take_over = next(a for a in content["actions"] if a["title"] == "Take over")

    taken = press(server, fake_teams, ARJUN, take_over["data"])
    assert "HND-1 taken over: 1 ticket reassigned" in json.dumps(taken)
    [row] = db_rows(database_url, Handover)
    assert (row.taken_by, row.taken_tickets) == ("arjun", [p1])
    assert db_rows(database_url, Ticket)[0].assignment_group == "platform-ops"

    again = press(server, fake_teams, MEERA, take_over["data"])
    assert "already taken over by Arjun Mehta" in json.dumps(again)
    # The card in Pune's channel is updated in place: who took it over, and no button any more.
    update = fake_teams.wait_for("update", where=lambda c: "Taken over by Arjun Mehta" in card_text(c))[0]
    assert update.params["_activity"] == card.params["_id"]
    assert "Take over" not in json.dumps(json.loads(card_text(update)).get("actions", []))
    wait_until(lambda: db_rows(database_url, Handover)[0].taken_at is not None, "the take-over stored")
