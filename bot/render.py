"""Platform-neutral replies rendered for each surface with Jinja2 templates."""
from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from handlers.core.context import Form, Reply

if TYPE_CHECKING:
    from jinja2 import Environment

log = logging.getLogger("svcbot")

BOLD = re.compile(r"(?<![*\w])\*(?!\s)([^*\n]+?)\*(?![*\w])")


def _teams_md(text: str) -> str:
    # Slack-style *bold* → Adaptive Card **bold**; cards have no inline code, so backticks go.
    return BOLD.sub(r"**\1**", str(text)).replace("`", "")


def _plain(text: str) -> str:
    return BOLD.sub(r"\1", str(text))


def _mrkdwn(text: str, limit: int) -> str:
    """Escape what Slack would read as a mention or link, then cut to Slack's limit for that field."""
    escaped = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if len(escaped) <= limit:
        return escaped
    cut = escaped[:limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:  # do not leave half an entity behind
        cut = cut[:amp]
    return cut + "…"


_override: Path | None = None  # a deployment's own templates (app.yaml bot.templates)


def use_templates(folder: str | None) -> None:
    """Templates in ``folder`` replace the built-in ones of the same path."""
    global _override
    _override = Path(folder) if folder else None
    _env.cache_clear()
    _rendered.cache_clear()


@lru_cache(maxsize=2)
def _env(own: bool = True) -> Environment:
    # jinja2 is imported with the first reply rendered, not by every process that imports this module.
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined
    builtin = PackageLoader("bot", "templates")
    loader = ChoiceLoader([FileSystemLoader(_override), builtin]) if own and _override else builtin
    # auto_reload off: templates do not change while svcbot runs (use_templates starts afresh), and
    # checking each file's time before every render cost a stat call per message.
    env = Environment(loader=loader, undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
                      auto_reload=False)
    env.filters.update(teams_md=_teams_md, plain=_plain, mrkdwn=_mrkdwn, format_label=lambda s: f"{s:<12}")
    env.policies["truncate.leeway"] = 0  # Slack refuses a header of 151 characters
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}
    return env


class _SameReply:
    """A reply compared by its repr, which spells out every field: replies that say the same render the
    same. Only for replies of plain fields (no template data, no pictures), whose repr says it all."""

    __slots__ = ("reply", "said")

    def __init__(self, reply: Reply):
        self.reply, self.said = reply, repr(reply)

    def __hash__(self) -> int:
        return hash(self.said)

    def __eq__(self, other) -> bool:
        return isinstance(other, _SameReply) and self.said == other.said


def _render(platform: str, reply: Reply, suffix: str):
    """The reply through its platform's template; a JSON template's output comes back parsed (a new
    object each time: callers add to it). The same reply asked again (`status` while nothing changed)
    is rendered once: rendering cost more than answering it."""
    if reply.template or reply.data or reply.images:
        out = _template_output(platform, reply, suffix)
    else:
        out = _rendered(platform, _SameReply(reply), suffix)
    return json.loads(out) if suffix == "json" else out


@lru_cache(maxsize=256)
def _rendered(platform: str, same: _SameReply, suffix: str) -> str:
    return _template_output(platform, same.reply, suffix)


def _template_output(platform: str, reply: Reply, suffix: str) -> str:
    """A deployment's template that fails (a variable it expects is missing, JSON it makes is broken)
    must not lose the message: the built-in one is used."""
    name = f"{platform}/{reply.template or 'message'}.{suffix}.j2"

    def through(env: Environment) -> str:
        out = env.get_template(name).render(reply=reply, data=reply.data)
        if suffix == "json":
            json.loads(out)  # broken JSON is a failed template too
        return out
    try:
        return through(_env())
    except Exception:
        if not _override:
            raise
        log.exception("template %s from %s failed; using the built-in one", name, _override)
        return through(_env(own=False))


# Slack refuses a whole message (invalid_blocks) when one block is over its limit.
SLACK_MAX_BLOCKS = 50
SLACK_MAX_FIELDS = 10  # per section
SLACK_MAX_ELEMENTS = 25  # per actions block


def _split_blocks(blocks: list[dict], title: str) -> list[dict]:
    """A section with more than ten fields goes on in further sections, and an actions block with more
    than 25 buttons in further actions blocks, in the same order."""
    out = []
    for block in blocks:
        kind, key, limit = block.get("type"), None, 0
        if kind == "section" and len(block.get("fields") or ()) > SLACK_MAX_FIELDS:
            key, limit = "fields", SLACK_MAX_FIELDS
        elif kind == "actions" and len(block.get("elements") or ()) > SLACK_MAX_ELEMENTS:
            key, limit = "elements", SLACK_MAX_ELEMENTS
        if key is None:
            out.append(block)
            continue
        items = block[key]
        log.info("Slack message %r: %d %s in one %s block, split over %d blocks", title, len(items), key, kind,
                 -(-len(items) // limit))
        out.append({**block, key: items[:limit]})  # the first keeps the section's text
        out += [{"type": kind, key: items[i:i + limit]} for i in range(limit, len(items), limit)]
    return out


def slack_message(reply: Reply) -> dict:
    """{"text": …, "blocks": […]} for chat.postMessage, chat.update, respond or ack."""
    message = _render("slack", reply, "json")
    blocks = message["blocks"] = _split_blocks(message["blocks"], reply.title)
    if len(blocks) > SLACK_MAX_BLOCKS:  # keep the head and say what was left out
        left_out = len(blocks) - SLACK_MAX_BLOCKS + 1
        log.warning("Slack message %r has %d blocks, over Slack's %d: the last %d are left out", reply.title,
                    len(blocks), SLACK_MAX_BLOCKS, left_out)
        message["blocks"] = blocks[:SLACK_MAX_BLOCKS - 1] + [{"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"… and {left_out} more blocks not shown"}]}]
    return message


def slack_home(reply: Reply) -> dict:
    """The App Home tab's view for views.publish. Its buttons are told apart from a message's (svc_home:
    instead of svc_run:): a press on the home has no message to answer in, so the home itself answers."""
    blocks = slack_message(reply)["blocks"]
    for block in blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            element["action_id"] = element["action_id"].replace("svc_run:", "svc_home:", 1)
    return {"type": "home", "blocks": blocks[:100]}  # Slack's limit for a home view


def slack_modal(form: Form) -> dict:
    """A modal view for views.open; its answers come back as a view_submission."""
    metadata = json.dumps({"form": form.name, "context": form.context})
    return json.loads(_env().get_template("slack/modal.json.j2").render(form=form, metadata=metadata))


def slack_notice(reply: Reply) -> dict:
    """A modal that only shows a reply: what a form's answer becomes when it may not be sent on by
    direct message (an anonymous answer)."""
    blocks = slack_message(replace(reply, buttons=[]))["blocks"]
    return {"type": "modal", "title": {"type": "plain_text", "text": "Thank you"},
            "close": {"type": "plain_text", "text": "Close"}, "blocks": blocks}


def form_values(view: dict) -> dict:
    """The answers of a submitted modal, by field: a string, or a list for a multiple choice."""
    values = {}
    for block_id, actions in (view.get("state") or {}).get("values", {}).items():
        element = next(iter(actions.values()), {}) if actions else {}
        if "selected_options" in element:
            values[block_id] = [o["value"] for o in element["selected_options"] or []]
        elif "selected_option" in element:
            values[block_id] = (element["selected_option"] or {}).get("value", "")
        else:
            values[block_id] = element.get("value") or ""
    return values


def teams_card(reply: Reply) -> dict:
    """An Adaptive Card (1.4) body."""
    return _render("teams", reply, "json")


def plain(reply: Reply) -> str:
    """The reply's one line, without markup: for a notification or a Teams message answer."""
    return _plain(reply.plain())


def text(reply: Reply) -> str:
    return _render("text", reply, "txt")
