"""svcbot manifest slack|teams: what a newcomer uploads to connect a real workspace."""
from __future__ import annotations

import json
import struct
import zipfile

import yaml

from handlers.router import ROUTES
from tests.conftest import ROOT, run_cli


def svcbot(*args, cwd=ROOT):
    return run_cli({"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, "--config", str(ROOT / "app.yaml"), *args,
                   cwd=cwd, timeout=60)


def test_slack_manifest_points_every_request_at_slack_events():
    out = svcbot("manifest", "slack", "--url", "https://svc.example.com/")
    assert out.returncode == 0, out.stderr
    manifest = yaml.safe_load(out.stdout)
    url = "https://svc.example.com/slack/events"
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == "/svc" and command["url"] == url
    assert manifest["settings"]["event_subscriptions"]["request_url"] == url
    assert manifest["settings"]["interactivity"]["request_url"] == url
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert {"commands", "chat:write", "im:write"} <= set(manifest["oauth_config"]["scopes"]["bot"])


def test_slack_manifest_for_socket_mode_has_no_urls():
    manifest = yaml.safe_load(svcbot("manifest", "slack", "--socket-mode").stdout)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "url" not in manifest["features"]["slash_commands"][0]
    assert "request_url" not in manifest["settings"]["event_subscriptions"]


def test_manifest_without_url_is_refused():
    out = svcbot("manifest", "slack")
    assert out.returncode == 2 and "--url" in out.stderr


def test_teams_package_holds_manifest_and_icons(tmp_path):
    path = tmp_path / "pkg.zip"
    out = svcbot("manifest", "teams", "--app-id", "0b6a1c2d-1111-2222-3333-444455556666",
                 "--url", "https://svc.example.com", "--output", str(path))
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(path) as package:
        manifest = json.loads(package.read("manifest.json"))
        sizes = {name: struct.unpack(">II", package.read(name)[16:24]) for name in ("color.png", "outline.png")}
    assert manifest["id"] == manifest["bots"][0]["botId"] == "0b6a1c2d-1111-2222-3333-444455556666"
    assert set(manifest["bots"][0]["scopes"]) == {"personal", "team", "groupChat"}
    assert manifest["validDomains"] == ["svc.example.com"]
    # Reading its own posts back through Graph (a lost answer is then not posted twice).
    assert manifest["webApplicationInfo"]["id"] == "0b6a1c2d-1111-2222-3333-444455556666"
    assert {(p["name"], p["type"]) for p in manifest["authorization"]["permissions"]["resourceSpecific"]} == {
        ("ChannelMessage.Read.Group", "Application"), ("ChatMessage.Read.Chat", "Application")}
    assert sizes == {"color.png": (192, 192), "outline.png": (32, 32)}
    # Teams lists at most ten commands a scope; each one listed is a command svcbot knows.
    [listed] = manifest["bots"][0]["commandLists"]
    assert 0 < len(listed["commands"]) <= 10
    assert {c["title"] for c in listed["commands"]} <= set(ROUTES)
