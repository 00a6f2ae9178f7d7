"""One grammar everywhere: words in, a reply out, and one place where errors become messages."""
from __future__ import annotations

import logging
import re
import uuid

from handlers import help
from handlers.changes import approvals
from handlers.changes import commands as changes
from handlers.core.context import (AlreadyHandled, Command, Context, FormInvalid, Refused, Reply, UserError,
                                   error_reply, unknown_word)
from handlers.core.people import remembered_person
from handlers.home import shortcuts
from handlers.home import view as home
from handlers.knowledge import commands as knowledge
from handlers.problems import commands as problems
from handlers.reporting import digests, reports
from handlers.reviews import commands as reviews
from handlers.reviews import record as review_record
from handlers.services import catalogue_review, csi, impact, status
from handlers.shifts import handover, team
from handlers.sla import attainment, tickets
from handlers.suppliers import commands as suppliers
from handlers.surveys import asking
from handlers.surveys import commands as surveys
from handlers.surveys import record as survey_record

log = logging.getLogger("svcbot")

ROUTES = {
    "help": help.run,
    "status": status.show,
    "service": status.service_cmd,
    "subscribe": status.subscribe,
    "unsubscribe": status.unsubscribe,
    "incident": tickets.incident_cmd,
    "sla": attainment.sla_cmd,
    "change": changes.change_cmd,
    "survey": surveys.survey_cmd,
    "csi": csi.csi_cmd,
    "kb": knowledge.kb_cmd,
    "catalogue": catalogue_review.catalogue_cmd,
    "digest": digests.digest_cmd,
    "report": reports.report_cmd,
    "home": home.home_cmd,
    "handover": handover.handover_cmd,
    "team": team.team_cmd,
    "supplier": suppliers.supplier_cmd,
    "review": reviews.review_cmd,
    "problem": problems.problem_cmd,
    "impact": impact.impact_cmd,
}

# Forms (a Slack modal, an Adaptive Card with inputs) and the handlers of their answers.
FORMS = {
    "change_new": changes.submit_new,
    "change_reject": approvals.submit_reject,
    "survey_new": surveys.submit_new,
    survey_record.ANSWER_FORM: asking.submit_answer,
    "csi_add": csi.submit_add,
    shortcuts.INCIDENT_FORM: shortcuts.submit_incident,
    shortcuts.CHANGE_FORM: shortcuts.submit_change,
    "kb_new": knowledge.submit_new,
    "kb_edit": knowledge.submit_edit,
    reviews.FORM: reviews.submit_edit,
}

# Commands whose whole answer may be kept in memory (handlers.core.remembered), and under what key: the
# same for everyone who asks, and read only from what the store's version row follows.
REMEMBERED = {"status": status.OVERVIEW_KEY}


def remembered(text: str) -> bool:
    """Whether the command's answer may come from memory: ``from_memory`` may find it there."""
    return text.strip().lower() in REMEMBERED


def from_memory(ctx: Context, platform: str, user_id: str, text: str, version: int, address: str | None = None,
                tenant: str | None = None) -> tuple[Reply, str] | None:
    """A command's answer and the id of who asked, both kept in memory at this version of the store:
    nothing to read and nothing to write. None when either is not kept: run the command (``dispatch``)."""
    key = REMEMBERED.get(text.strip().lower())
    reply = ctx.remembered.get(key, version, ctx.now()) if key else None
    person_id = remembered_person(ctx, platform, user_id, version, address, tenant) if reply is not None else None
    return (reply, person_id) if person_id is not None else None


# Double quotes group words; apostrophes are ordinary letters, so "We're on it" needs no quoting.
WORD = re.compile(r'"([^"]*)"|(\S+)')


def split_words(text: str) -> list[str]:
    text = text.replace("“", '"').replace("”", '"')
    if text.count('"') % 2:
        raise UserError("A quote is not closed.", 'service set payments degraded "Card payments are slow"')
    return [m[1] if m[1] is not None else m[2] for m in WORD.finditer(text)]


def dispatch(ctx: Context, cmd: Command) -> tuple[Reply, str]:
    """Run a command; returns the reply and an outcome for metrics (ok, user_error, refused, duplicate, error)."""
    def run() -> Reply:
        words = split_words(cmd.text)
        if not words:
            return help.run(ctx, cmd, [])
        handler = ROUTES.get(words[0].lower())
        if handler is None:
            raise unknown_word("", words[0], words[1:], ROUTES, "help")
        return handler(ctx, cmd, words[1:])
    reply, outcome, _ = guarded(ctx, cmd, run)
    first = cmd.text.split(maxsplit=1)
    if outcome == "ok" and first and first[0].lower() == "incident":
        # A ticket resolved in chat gets its review now rather than at the next sweep (handlers/reviews).
        review_record.sweep_quietly(ctx)
    return reply, outcome


def submit_form(ctx: Context, cmd: Command, form: str, values: dict, context: dict) -> tuple[Reply, str, FormInvalid | None]:
    """Run a form's answers; the third item, when set, says which fields to show again with what message."""
    handler = FORMS.get(form)
    if handler is None:
        return error_reply("That form is not one svcbot knows; it may come from an older version."), "user_error", None
    return guarded(ctx, cmd, lambda: handler(ctx, cmd, values, context if isinstance(context, dict) else {}))


def guarded(ctx: Context, cmd: Command, run) -> tuple[Reply, str, FormInvalid | None]:
    """The one place where errors become messages."""
    try:
        return run(), "ok", None
    except Refused as exc:
        log.info("refused %s for %s: %s", cmd.text, cmd.actor.person_id, exc.message)
        return Reply(title="Not allowed", text=exc.message, tone="error"), "refused", None
    except UserError as exc:
        prefix = ctx.config.bot.slash_command + " " if cmd.actor.platform == "slack" else ""
        invalid = exc if isinstance(exc, FormInvalid) else None
        if invalid is not None and invalid.form is not None:
            # The same form again, with what was typed and a message beside each wrong field.
            return Reply(title=exc.message, form=invalid.form, tone="error"), "user_error", invalid
        return error_reply(exc.message, exc.example and prefix + exc.example), "user_error", invalid
    except AlreadyHandled:
        log.info("duplicate delivery %s ignored", cmd.delivery_key)
        return Reply(title="Already done", text="This request was handled before; nothing changed."), "duplicate", None
    except Exception:
        ref = uuid.uuid4().hex[:8]
        log.exception("command failed [ref %s]: %r by %s", ref, cmd.text, cmd.actor.person_id)
        return Reply(title="Something went wrong", text=f"Nothing was changed. Reference: {ref}",
                     tone="error"), "error", None
