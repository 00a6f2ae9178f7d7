"""Platform-neutral replies rendered for each surface with Jinja2 templates."""
from __future__ import annotations

import json
import re
from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined

from handlers.core import Reply

BOLD = re.compile(r"(?<![*\w])\*(?!\s)([^*\n]+?)\*(?![*\w])")


def _teams_md(text: str) -> str:
    # Slack-style *bold* → Adaptive Card **bold**; cards have no inline code, so backticks go.
    return BOLD.sub(r"**\1**", str(text)).replace("`", "")


def _plain(text: str) -> str:
    return BOLD.sub(r"\1", str(text))


@lru_cache(maxsize=1)
def _env() -> Environment:
    env = Environment(loader=PackageLoader("bot", "templates"), undefined=StrictUndefined,
                      autoescape=False, keep_trailing_newline=False)
    env.filters.update(teams_md=_teams_md, plain=_plain, format_label=lambda s: f"{s:<12}")
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}
    return env


def slack_message(reply: Reply) -> dict:
    """{"text": …, "blocks": […]} for chat.postMessage, chat.update, respond or ack."""
    return json.loads(_env().get_template("slack/message.json.j2").render(reply=reply))


def teams_card(reply: Reply) -> dict:
    """An Adaptive Card (1.4) body."""
    return json.loads(_env().get_template("teams/card.json.j2").render(reply=reply))


def text(reply: Reply) -> str:
    return _env().get_template("text/message.txt.j2").render(reply=reply)
