"""One grammar everywhere: words in, a reply out, and one place where errors become messages."""
from __future__ import annotations

import logging
import re
import uuid

from handlers import help, sla, status, tickets
from handlers.core import AlreadyHandled, Command, Context, Refused, Reply, UserError, error_reply

log = logging.getLogger("svcbot")

ROUTES = {
    "help": help.run,
    "status": status.show,
    "service": status.service_cmd,
    "subscribe": status.subscribe,
    "unsubscribe": status.unsubscribe,
    "incident": tickets.incident_cmd,
    "sla": sla.sla_cmd,
}


# Double quotes group words; apostrophes are ordinary letters, so "We're on it" needs no quoting.
WORD = re.compile(r'"([^"]*)"|(\S+)')


def split_words(text: str) -> list[str]:
    text = text.replace("“", '"').replace("”", '"')
    if text.count('"') % 2:
        raise UserError("A quote is not closed.", 'service set payments degraded "Card payments are slow"')
    return [m[1] if m[1] is not None else m[2] for m in WORD.finditer(text)]


def dispatch(ctx: Context, cmd: Command) -> tuple[Reply, str]:
    """Run a command; returns the reply and an outcome for metrics (ok, user_error, refused, duplicate, error)."""
    try:
        words = split_words(cmd.text)
        if not words:
            return help.run(ctx, cmd, []), "ok"
        handler = ROUTES.get(words[0].lower())
        if handler is None:
            raise UserError(f"I don't know '{words[0]}'.", "help")
        return handler(ctx, cmd, words[1:]), "ok"
    except Refused as exc:
        log.info("refused %s for %s: %s", cmd.text, cmd.actor.person_id, exc.message)
        return Reply(title="Not allowed", text=exc.message, tone="error"), "refused"
    except UserError as exc:
        prefix = ctx.config.bot.slash_command + " " if cmd.actor.platform == "slack" else ""
        return error_reply(exc.message, exc.example and prefix + exc.example), "user_error"
    except AlreadyHandled:
        log.info("duplicate delivery %s ignored", cmd.delivery_key)
        return Reply(title="Already done", text="This request was handled before; nothing changed."), "duplicate"
    except Exception:
        ref = uuid.uuid4().hex[:8]
        log.exception("command failed [ref %s]: %r by %s", ref, cmd.text, cmd.actor.person_id)
        return Reply(title="Something went wrong", text=f"Nothing was changed. Reference: {ref}", tone="error"), "error"
