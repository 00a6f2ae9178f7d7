"""Who may talk to svcbot as Teams and where svcbot may post: the rules, without a server."""
from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
import yaml
from aiohttp.test_utils import make_mocked_request
from botbuilder.core import BotAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount
from botframework.connector.auth import AuthenticationConstants, ClaimsIdentity

from bot.outbox import Deliverer
from bot.server import LazyTeams
from bot.teams import TeamsSender, save_reference, token_vouches
from bot.teams_trust import is_loopback, service_url_refusal, teams_mode, vouched_service_url
from handlers.core.config import TEAMS_SERVICE_HOSTS
from handlers.core.config_loading import ConfigError, load_config
from storage.models import ConversationRef
from tests.conftest import demo_config
from tests.test_outbox import queue, row_by_key

CHANNEL = "19:ops@thread.tacv2"
TEAMS_URL = "https://smba.trafficmanager.net/emea/"


@pytest.mark.parametrize("env, mode", [
    ({}, None),
    ({"SVCBOT_TEAMS_EMULATOR": "0"}, None),
    ({"MICROSOFT_APP_PASSWORD": "secret"}, None),  # a password alone turns nothing on
    ({"SVCBOT_TEAMS_EMULATOR": "1"}, "emulator"),
    ({"MICROSOFT_APP_ID": "app", "SVCBOT_TEAMS_EMULATOR": "1"}, "credentials"),
])
def test_teams_is_on_only_with_an_app_id_or_the_emulator_mode_switched_on(env, mode):
    assert teams_mode(env) == mode


def test_an_emulator_flag_that_is_not_1_stops_the_start():
    with pytest.raises(SystemExit, match="SVCBOT_TEAMS_EMULATOR must be 1"):
        teams_mode({"SVCBOT_TEAMS_EMULATOR": "yes"})


def _request(peer: str, **headers):
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 40000) if name == "peername" else default
    return make_mocked_request("POST", "/api/messages", headers={"Content-Type": "application/json", **headers},
                               transport=transport)


async def test_api_messages_answers_503_when_teams_is_off(runtime, monkeypatch):
    monkeypatch.delenv("MICROSOFT_APP_ID", raising=False)
    monkeypatch.delenv("SVCBOT_TEAMS_EMULATOR", raising=False)
    teams = LazyTeams(runtime)
    response = await teams.handle(_request("127.0.0.1"))
    assert response.status == 503
    assert teams._front is None  # botbuilder was not even loaded for it


@pytest.mark.parametrize("peer, headers", [
    ("203.0.113.9", {}),
    ("10.1.2.3", {"X-Forwarded-For": "127.0.0.1"}),   # a header cannot make a caller local
    ("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}),  # through a reverse proxy on this machine
    ("::1", {"Forwarded": "for=203.0.113.9"}),
])
async def test_the_emulator_mode_refuses_what_does_not_come_straight_from_this_machine(runtime, monkeypatch,
                                                                                      peer, headers):
    monkeypatch.delenv("MICROSOFT_APP_ID", raising=False)
    monkeypatch.setenv("SVCBOT_TEAMS_EMULATOR", "1")
    teams = LazyTeams(runtime)
    response = await teams.handle(_request(peer, **headers))
    assert response.status == 403
    assert teams._front is None
    assert runtime.metrics.registry.get_sample_value(
        "svcbot_requests_refused_total", {"platform": "teams", "reason": "auth"}) == 1


async def test_with_teams_off_a_teams_message_fails_at_once_unsent(runtime, ctx, clock, monkeypatch):
    monkeypatch.delenv("MICROSOFT_APP_ID", raising=False)
    monkeypatch.delenv("SVCBOT_TEAMS_EMULATOR", raising=False)
    teams = LazyTeams(runtime)
    queue(runtime, "digest", platform="teams", target=CHANNEL)
    assert await Deliverer(ctx, {"teams": teams}, runtime.metrics).sweep() == 0
    row = row_by_key(ctx, "digest")
    assert (row.status, row.attempts, row.last_error) == \
        ("failed", 1, "Teams is off on this server (no MICROSOFT_APP_ID): not sent")
    assert teams._front is None


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True), ("localhost", True),
    ("10.0.0.1", False), ("169.254.169.254", False), ("::ffff:10.0.0.1", False), ("", False), (None, False),
])
def test_loopback_peers(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("url, allow_loopback, refused", [
    (TEAMS_URL, False, None),
    ("https://smba.trafficmanager.net/amer/", False, None),
    ("https://smba.infra.gcc.teams.microsoft.com/teams", False, None),
    ("https://europe.webchat.botframework.com/", False, None),
    ("http://smba.trafficmanager.net/emea/", False, "not https"),
    ("https://smba.trafficmanager.net.attacker.example/", False, "not a Bot Framework service host"),
    ("https://botframework.com.attacker.example/", False, "not a Bot Framework service host"),
    ("https://user:pw@smba.trafficmanager.net/", False, "carries credentials"),
    ("http://169.254.169.254/latest/", False, "not https"),
    ("https://169.254.169.254/", True, "not a Bot Framework service host"),
    ("http://127.0.0.1:3978/", False, "not https"),
    ("http://127.0.0.1:3978/", True, None),  # the Bot Framework Emulator, in the emulator mode
    ("http://[::1]:3978/", True, None),
    ("", True, "no serviceUrl"),
])
def test_posts_go_only_to_bot_framework_hosts(url, allow_loopback, refused):
    reason = service_url_refusal(url, TEAMS_SERVICE_HOSTS, allow_loopback)
    assert (reason is None) if refused is None else (refused in reason), reason


def test_configured_hosts_replace_the_default_list():
    assert service_url_refusal("https://connector.example.net/", ["connector.example.net"], False) is None
    assert service_url_refusal("https://a.bots.example.net/", ["*.bots.example.net"], False) is None
    assert "not a Bot Framework" in service_url_refusal(TEAMS_URL, ["connector.example.net"], False)


def _claims(service_url: str | None, auth_type: str = "Bearer") -> ClaimsIdentity:
    claims = {"aud": "app-id", "iss": "https://api.botframework.com"}
    if service_url:
        claims[AuthenticationConstants.SERVICE_URL_CLAIM] = service_url
    return ClaimsIdentity(claims, True, auth_type)


@pytest.mark.parametrize("identity, vouched", [
    (_claims(TEAMS_URL), True),
    (_claims(TEAMS_URL.rstrip("/")), True),
    (_claims("https://smba.trafficmanager.net/amer/"), False),  # a token for another serviceUrl
    (_claims(None), False),                                       # an emulator or skill token: no claim
    (ClaimsIdentity({}, True, AuthenticationConstants.ANONYMOUS_AUTH_TYPE), False),  # the emulator mode
    (ClaimsIdentity({"serviceurl": TEAMS_URL}, False), False),    # a token that did not validate
    (None, False),
])
def test_only_a_token_whose_serviceurl_claim_names_it_vouches_for_a_service_url(identity, vouched):
    turn = SimpleNamespace(activity=SimpleNamespace(service_url=TEAMS_URL),
                           turn_state={BotAdapter.BOT_IDENTITY_KEY: identity} if identity else {})
    assert token_vouches(turn) is vouched
    assert vouched_service_url(None, True, TEAMS_URL) is False


def _install(service_url: str) -> Activity:
    return Activity(type="conversationUpdate", id="1", channel_id="msteams", service_url=service_url,
                    conversation=ConversationAccount(id=CHANNEL, conversation_type="channel", tenant_id="t"),
                    recipient=ChannelAccount(id="28:bot", name="svcbot"), from_property=ChannelAccount(id="29:x"),
                    channel_data={"team": {"id": "19:team"}, "tenant": {"id": "t"}})


def _stored(runtime) -> tuple[str, str]:
    with runtime.ctx.sessions() as s:
        row = s.get(ConversationRef, CHANNEL)
        return row.service_url, row.reference["serviceUrl"]


def test_a_stored_service_url_is_replaced_only_by_an_activity_that_vouches_for_it(runtime):
    save_reference(runtime, _install(TEAMS_URL))  # the first one is stored: nothing to keep yet
    save_reference(runtime, _install("https://attacker.example/"))
    assert _stored(runtime) == (TEAMS_URL, TEAMS_URL)
    moved = "https://smba.trafficmanager.net/amer/"
    save_reference(runtime, _install(moved), vouched=True)  # Teams moved the tenant, and says so
    assert _stored(runtime) == (moved, moved)


@pytest.mark.parametrize("mode, url", [("credentials", "http://169.254.169.254/"),
                                       ("credentials", "http://127.0.0.1:3000/"),
                                       ("emulator", "https://attacker.example/")])
async def test_a_post_to_a_host_that_is_not_the_bot_framework_fails_for_good_without_sending(
        runtime, ctx, clock, caplog, mode, url):
    save_reference(runtime, _install(url))
    adapter = mock.Mock()  # any call on it would be an attempt to post
    sender = TeamsSender(SimpleNamespace(runtime=runtime, mode=mode, adapter=adapter, app_id="app-id"))
    queue(runtime, "digest", platform="teams", target=CHANNEL)
    assert await Deliverer(ctx, {"teams": sender}, runtime.metrics).sweep() == 0
    row = row_by_key(ctx, "digest")
    assert (row.status, row.attempts) == ("failed", 1)
    assert "not a Bot Framework service host" in row.last_error or "not https" in row.last_error
    assert adapter.mock_calls == []
    assert any("refused to post to Teams" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("hosts, problem", [
    (["connector.example.net", "https://smba.trafficmanager.net/emea/"], "'https://smba.trafficmanager.net/emea/' is not a host name"),
    (["Smba_Host"], "'Smba_Host' is not a host name"),
])
def test_check_config_refuses_a_service_host_that_is_not_a_host_name(tmp_path, hosts, problem):
    cfg = demo_config()
    cfg["teams"] = {"service_hosts": hosts}
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert [p.split(":", 1)[0] for p in refused.value.problems] == ["teams.service_hosts"]
    assert problem in refused.value.problems[0]
