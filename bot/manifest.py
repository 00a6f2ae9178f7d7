"""`svcbot manifest slack`: a Slack app manifest that matches this configuration."""
from __future__ import annotations

import yaml

from handlers.config import AppConfig

# What svcbot calls, and why: posting announcements and answers (chat:write), direct messages to
# subscribers (im:write), reading back its own posts to avoid duplicates after a lost answer
# (channels:history, groups:history, im:history), mentions and DMs as commands.
BOT_SCOPES = ["commands", "chat:write", "chat:write.public", "im:write", "im:history", "channels:history",
              "groups:history", "app_mentions:read"]
BOT_EVENTS = ["app_mention", "message.im"]


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
                     "app_home": {"messages_tab_enabled": True, "messages_tab_read_only_enabled": False},
                     "slash_commands": [command]},
        "oauth_config": {"scopes": {"bot": BOT_SCOPES}},
        "settings": {"event_subscriptions": events, "interactivity": interactivity,
                     "org_deploy_enabled": False, "socket_mode_enabled": socket_mode,
                     "token_rotation_enabled": False},
    }
    return yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)
