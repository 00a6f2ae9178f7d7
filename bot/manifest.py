"""`svcbot manifest slack|teams`: a Slack app manifest, or a Teams app package, for this configuration."""
from __future__ import annotations

import json
import struct
import zipfile
import zlib

import yaml

from handlers.core.config import AppConfig

# What svcbot calls, and why: posting announcements and answers (chat:write), direct messages to
# subscribers (im:write), reading back its own posts to avoid duplicates after a lost answer
# (channels:history, groups:history, im:history), mentions and DMs as commands, and approvers'
# reactions on change announcements (reactions:read).
BOT_SCOPES = ["commands", "chat:write", "chat:write.public", "im:write", "im:history", "channels:history",
              "groups:history", "app_mentions:read", "reactions:read"]
# Teams: read channel and chat messages where the app is installed (resource-specific consent).
GRAPH_RSC_PERMISSIONS = ["ChannelMessage.Read.Group", "ChatMessage.Read.Chat"]
# app_home_opened: the Home tab is published when opened; message.channels and message.groups: INC-N, CHG-N
# and SRV-N written in a channel with `unfurl: true` are summarised (other channels' messages are ignored).
BOT_EVENTS = ["app_mention", "message.im", "reaction_added", "reaction_removed", "app_home_opened",
              "message.channels", "message.groups"]
# Shortcuts on a message and in the shortcuts menu (callback ids as bot/slack_home.py listens for them).
# Slack's app settings take a shortcut name of at most 24 characters.
SHORTCUTS = [
    {"name": "Open incident from this", "type": "message", "callback_id": "svc_incident_from_message",
     "description": "An incident prefilled from this message, its link kept"},
    {"name": "Request change from this", "type": "message", "callback_id": "svc_change_from_message",
     "description": "A request for change prefilled from this message, its link kept"},
    {"name": "New change", "type": "global", "callback_id": "svc_new_change",
     "description": "Request a change"},
]
# Teams: the same two as message actions of the app's messaging extension (bot/teams_actions.py).
MESSAGE_ACTIONS = [
    {"id": "incidentFromMessage", "type": "action", "title": "Open an incident from this",
     "description": "An incident prefilled from this message, its link kept", "context": ["message"],
     "fetchTask": True},
    {"id": "changeFromMessage", "type": "action", "title": "Request a change from this",
     "description": "A request for change prefilled from this message, its link kept", "context": ["message"],
     "fetchTask": True},
]


def slack_manifest(config: AppConfig, base_url: str | None, socket_mode: bool) -> str:
    events_url = f"{base_url.rstrip('/')}/slack/events" if base_url else None
    command = {"command": config.bot.slash_command, "description": "IT service status, changes, SLAs and surveys",
               "usage_hint": "help | status [service] | service set SERVICE STATE [message]",
               "should_escape": False}
    if events_url and not socket_mode:
        command["url"] = events_url
    events = {"bot_events": BOT_EVENTS}
    interactivity = {"is_enabled": True}
    if events_url and not socket_mode:
        events["request_url"] = events_url
        interactivity["request_url"] = events_url
    manifest = {
        "display_information": {"name": config.bot.name,
                                "description": "IT service operations where your team talks",
                                "background_color": "#1d3557"},
        "features": {"bot_user": {"display_name": config.bot.name, "always_online": True},
                     "app_home": {"home_tab_enabled": True, "messages_tab_enabled": True,
                                  "messages_tab_read_only_enabled": False},
                     "shortcuts": SHORTCUTS,
                     "slash_commands": [command]},
        "oauth_config": {"scopes": {"bot": BOT_SCOPES}},
        "settings": {"event_subscriptions": events, "interactivity": interactivity,
                     "org_deploy_enabled": False, "socket_mode_enabled": socket_mode,
                     "token_rotation_enabled": False},
    }
    return yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)


def teams_package(config: AppConfig, app_id: str, host: str, path: str) -> None:
    """Write a Teams app package (manifest.json and its two icons, zipped) for the bot ``app_id``."""
    manifest = {
        "$schema": "https://developer.microsoft.com/en-us/json-schemas/teams/v1.17/MicrosoftTeams.schema.json",
        "manifestVersion": "1.17",
        "version": "1.0.0",
        "id": app_id,
        "developer": {"name": config.bot.name, "websiteUrl": f"https://{host}/",
                      "privacyUrl": f"https://{host}/", "termsOfUseUrl": f"https://{host}/"},
        "name": {"short": config.bot.name[:30], "full": f"{config.bot.name}: IT service operations"},
        "description": {"short": "Service status, changes, SLAs and surveys where your team talks",
                        "full": "Service status and announcements, change approvals, SLA breach notices, "
                                "pulse surveys and digests for IT service management."},
        "icons": {"color": "color.png", "outline": "outline.png"},
        "accentColor": "#1D3557",
        "bots": [{"botId": app_id, "scopes": ["personal", "team", "groupChat"], "isNotificationOnly": False,
                  "supportsFiles": False,
                  "commandLists": [{"scopes": ["personal", "team", "groupChat"], "commands": [
                      {"title": "help", "description": "What the bot can do"},
                      {"title": "home", "description": "Your services, votes, changes, incidents and surveys"},
                      {"title": "status", "description": "Every service at a glance, or one: status SERVICE"},
                      {"title": "incident", "description": "Raise and follow incidents: incident new SERVICE P2 TITLE"},
                      {"title": "sla", "description": "Agreements against what was delivered: sla SERVICE"},
                      {"title": "kb", "description": "Runbooks and known errors: kb search WORDS"},
                      {"title": "subscribe", "description": "Follow a service: subscribe SERVICE"},
                      {"title": "change", "description": "Request, approve and follow changes: change new"},
                      {"title": "survey", "description": "Pulse surveys: survey new, survey results SRV-N"},
                      {"title": "csi", "description": "The improvement register: csi list, csi add"}]}]}],
        "composeExtensions": [{"botId": app_id, "commands": MESSAGE_ACTIONS}],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": [host],
        # Reading its own posts back through Microsoft Graph, where the app is installed, so that a post
        # whose answer was lost is not posted twice (bot/teams_graph.py).
        "webApplicationInfo": {"id": app_id, "resource": f"api://{host}/{app_id}"},
        "authorization": {"permissions": {"resourceSpecific": [
            {"name": name, "type": "Application"} for name in GRAPH_RSC_PERMISSIONS]}},
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", json.dumps(manifest, indent=2))
        package.writestr("color.png", _png(192, (0x1D, 0x35, 0x57, 0xFF)))
        package.writestr("outline.png", _png(32, (0xFF, 0xFF, 0xFF, 0xFF)))


def _png(size: int, rgba: tuple[int, int, int, int]) -> bytes:
    """A square icon of one colour: Teams requires both icons in the package."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgba) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
