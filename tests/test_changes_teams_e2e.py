"""Change enablement through Teams: the request form as an Adaptive Card, approvals by card action, and
the announcement in the service's channel updated in place (the same activity id) at every step."""
from __future__ import annotations

import json

import pytest
import yaml

from storage.models import Change, ChangeVote
from tests.conftest import db_rows, wait_until
from tests.test_teams_e2e import (ADAPTIVE, PAYMENTS_CONV, SANNE, Member, card_text, channel_config,  # noqa: F401
                                  execute_invoke, installed_in_channel, personal_message, posted, sends,
                                  server_env)  # the emulator mode
from tests.when import at, next_weekday

pytestmark = pytest.mark.e2e

PRIYA = Member("7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0001", "29:1priyaNairKw8s0001", "Priya Nair")   # CAB, service manager
ARJUN = Member("7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0004", "29:1arjunMehtaLm2d0004", "Arjun Mehta")  # CAB


def press(server, fake_teams, member: Member, data: dict) -> dict:
    response = posted(server, execute_invoke(fake_teams, member, data))
    return response.json()


def votes(database_url):
    return [(v.person_id, v.via) for v in db_rows(database_url, ChangeVote) if v.withdrawn_at is None]


def test_a_high_risk_change_from_the_card_form_to_scheduled(start_server, fake_teams, database_url, channel_config,
                                                            config_file):
    # No freezes: app.yaml's own are demo data on fixed dates.
    channel_config["changes"]["freezes"] = []
    config_file.write_text(yaml.safe_dump(channel_config, sort_keys=False))
    # 23:30-00:30 on Thursday in Amsterdam, Sanne's zone, is inside payments' Thursday window in London.
    thursday = next_weekday("thu", "Europe/Amsterdam")
    server = start_server()
    posted(server, installed_in_channel(fake_teams))

    # "change new" in a 1:1 chat answers with the form as a card.
    posted(server, personal_message(fake_teams, SANNE, "change new"))
    form = json.loads(card_text(fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] ==
                                                    SANNE.personal)[0]))
    ids = {e.get("id") for e in form["body"]}
    assert {"title", "services", "risk", "start", "end", "backout"} <= ids
    [submit] = form["actions"]
    assert submit["type"] == "Action.Execute" and submit["data"]["form"] == "change_new"

    # Teams merges the inputs into the action's data. A bad answer shows the form again, messages beside fields.
    answers = {**submit["data"], "title": "Upgrade the payments database", "services": "payments",
               "type": "normal", "risk": "high", "start": at(thursday, "23:30"), "end": at(thursday, "23:00"),
               "implementer": "sanne", "backout": "Restore last night's snapshot"}
    again = press(server, fake_teams, SANNE, answers)
    assert again["type"] == ADAPTIVE
    body = again["value"]["body"]
    title_input = next(e for e in body if e.get("id") == "title")
    assert title_input["value"] == "Upgrade the payments database"  # what was typed is kept
    assert any(e.get("color") == "Attention" and "after the start" in e.get("text", "") for e in body)
    assert db_rows(database_url, Change) == []

    done = press(server, fake_teams, SANNE, {**answers, "end": at(thursday, "00:30", days=1)})
    assert done["type"] == ADAPTIVE and "CHG-1" in json.dumps(done["value"])
    [change] = db_rows(database_url, Change)
    assert (change.state, change.approvals_needed) == ("awaiting-approval", 2)

    # The announcement reaches the service's channel, where the bot was installed.
    announcement = fake_teams.wait_for("send", where=lambda c: c.params["_conversation"] == PAYMENTS_CONV
                                       and "CHG-1" in card_text(c) and not c.params.get("replyToId"))[0]
    activity_id = announcement.params["_id"]
    approve = next(a for a in json.loads(card_text(announcement))["actions"] if a["title"] == "Approve")

    # The requester's own approval is refused; approvers' card actions count, and the card is updated in place.
    refused = press(server, fake_teams, SANNE, approve["data"])
    assert "someone else" in refused["value"]
    assert votes(database_url) == []
    press(server, fake_teams, PRIYA, approve["data"])
    assert votes(database_url) == [("priya", "card")]
    first = fake_teams.wait_for("update", where=lambda c: "1 of 2" in card_text(c))[0]
    assert (first.params["_conversation"], first.params["_activity"]) == (PAYMENTS_CONV, activity_id)

    press(server, fake_teams, ARJUN, approve["data"])
    wait_until(lambda: db_rows(database_url, Change)[0].state == "scheduled", "the change scheduled")
    last = fake_teams.wait_for("update", where=lambda c: "scheduled" in card_text(c))[0]
    assert last.params["_activity"] == activity_id
    assert "Approve" not in json.dumps(json.loads(card_text(last))["actions"])
    # The history goes into the announcement's thread, not into new top-level posts.
    thread = [c for c in sends(fake_teams, PAYMENTS_CONV) if c.params.get("replyToId") == activity_id]
    assert any("Priya Nair approved" in card_text(c) for c in thread)
    assert len([c for c in sends(fake_teams, PAYMENTS_CONV) if not c.params.get("replyToId")]) == 1
