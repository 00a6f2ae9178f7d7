"""A direct message goes to one platform per person: their `prefer`, else Slack, passing over a platform
this deployment is not connected to."""
from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from bot.runtime import connected_platforms
from handlers.core.config_loading import ConfigError, load_config
from handlers.core.context import Reply, Work
from handlers.core.people import resolve_actor
from tests.conftest import demo_config

GRACE_TEAMS = "7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0007"


def with_people(ctx, connected=("slack", "teams"), **prefer):
    """ctx with some demo people's `prefer` set and these platforms connected."""
    people = [p.model_copy(update={"prefer": prefer[p.id]}) if p.id in prefer else p for p in ctx.config.people]
    return replace(ctx, config=ctx.config.model_copy(update={"people": people}), connected=frozenset(connected))


def dm(ctx, person_id: str) -> list[str]:
    with ctx.sessions.begin() as s:
        return Work(ctx, s, None).message_person(person_id, Reply(title="hello"), f"dm:{person_id}")


@pytest.mark.parametrize("connected, prefer, expected", [
    (("slack", "teams"), None, "slack:U0GRACE07"),        # the default: Slack
    (("teams",), None, f"teams:{GRACE_TEAMS}"),           # Slack not connected: Teams
    (("slack", "teams"), "teams", f"teams:{GRACE_TEAMS}"),
    (("slack",), "teams", "slack:U0GRACE07"),             # preferred, but Teams is off here
    ((), "teams", f"teams:{GRACE_TEAMS}"),                # nothing connected (a CLI run): the preference
])
def test_someone_on_both_platforms_gets_one_direct_message(ctx, connected, prefer, expected):
    ctx = with_people(ctx, connected, **({"grace": prefer} if prefer else {}))
    assert dm(ctx, "grace") == [f"dm:grace:{expected}"]


def test_someone_known_on_one_platform_is_reached_there_whatever_is_preferred_first(ctx):
    newcomer = resolve_actor(ctx, "teams", "0f0e1d2c-aaaa-bbbb-cccc-000000000001", "New Bee")
    assert dm(with_people(ctx, ("slack", "teams")), newcomer.person_id) == \
        [f"dm:{newcomer.person_id}:teams:0f0e1d2c-aaaa-bbbb-cccc-000000000001"]


def test_prefer_must_name_a_platform_the_person_is_on(tmp_path):
    cfg = demo_config()
    cfg["people"][0]["prefer"] = "teams"  # fine: priya has a Teams id
    del cfg["people"][1]["teams"]
    cfg["people"][1]["prefer"] = "teams"
    cfg["people"][2]["prefer"] = "email"
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    problems = refused.value.problems
    assert any(p.startswith("people[1]") and "prefer: teams needs this person's teams id" in p for p in problems)
    assert any(p.startswith("people[2].prefer") for p in problems), problems
    assert not any(p.startswith("people[0]") for p in problems)


@pytest.mark.parametrize("env, connected", [
    ({}, set()),
    ({"SLACK_BOT_TOKEN": "xoxb-1"}, {"slack"}),
    ({"SLACK_BOT_TOKEN": "xoxb-1", "MICROSOFT_APP_ID": "app"}, {"slack", "teams"}),
    ({"SVCBOT_TEAMS_EMULATOR": "1"}, {"teams"}),
    ({"MICROSOFT_APP_PASSWORD": "secret"}, set()),
])
def test_the_connected_platforms_follow_the_environment(env, connected):
    assert connected_platforms(env) == connected
