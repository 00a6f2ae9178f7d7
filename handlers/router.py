"""One grammar everywhere: words in, a reply out, and one place where errors become messages."""
from __future__ import annotations

import importlib
import logging
import re
import uuid
from typing import TYPE_CHECKING, Callable

from handlers.core.context import (AlreadyHandled, Command, Context, FormInvalid, Refused, Reply, UserError,
                                   error_reply, unknown_word)
from handlers.core.people import remembered_person
from handlers.core.remembered import STATUS_OVERVIEW

if TYPE_CHECKING:
    # The modules the routes below name, imported when a route is first used (a process that runs one command
    # need not import every capability). Named here too, so that the import contracts see the router's imports.
    from handlers import help
    from handlers.changes import approvals
    from handlers.changes import commands as changes
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


class lazy:
    """A handler named "module:function", imported when it is first called."""

    __slots__ = ("target", "_function")

    def __init__(self, target: str):
        self.target = target
        self._function: Callable | None = None

    def resolve(self) -> Callable:
        if self._function is None:
            module, _, name = self.target.partition(":")
            self._function = getattr(importlib.import_module(module), name)
        return self._function

    def __call__(self, *args):
        return self.resolve()(*args)

    def __repr__(self) -> str:
        return f"lazy({self.target!r})"


ROUTES = {
    "help": lazy("handlers.help:run"),
    "status": lazy("handlers.services.status:show"),
    "service": lazy("handlers.services.status:service_cmd"),
    "subscribe": lazy("handlers.services.status:subscribe"),
    "unsubscribe": lazy("handlers.services.status:unsubscribe"),
    "incident": lazy("handlers.sla.tickets:incident_cmd"),
    "sla": lazy("handlers.sla.attainment:sla_cmd"),
    "change": lazy("handlers.changes.commands:change_cmd"),
    "survey": lazy("handlers.surveys.commands:survey_cmd"),
    "csi": lazy("handlers.services.csi:csi_cmd"),
    "kb": lazy("handlers.knowledge.commands:kb_cmd"),
    "catalogue": lazy("handlers.services.catalogue_review:catalogue_cmd"),
    "digest": lazy("handlers.reporting.digests:digest_cmd"),
    "report": lazy("handlers.reporting.reports:report_cmd"),
    "home": lazy("handlers.home.view:home_cmd"),
    "handover": lazy("handlers.shifts.handover:handover_cmd"),
    "team": lazy("handlers.shifts.team:team_cmd"),
    "supplier": lazy("handlers.suppliers.commands:supplier_cmd"),
    "review": lazy("handlers.reviews.commands:review_cmd"),
    "problem": lazy("handlers.problems.commands:problem_cmd"),
    "impact": lazy("handlers.services.impact:impact_cmd"),
}

# Forms (a Slack modal, an Adaptive Card with inputs) and the handlers of their answers. A key is the name its
# module gives the form (survey_record.ANSWER_FORM, shortcuts.INCIDENT_FORM, …; tests/test_router_routes.py).
FORMS = {
    "change_new": lazy("handlers.changes.commands:submit_new"),
    "change_reject": lazy("handlers.changes.approvals:submit_reject"),
    "survey_new": lazy("handlers.surveys.commands:submit_new"),
    "survey_answer": lazy("handlers.surveys.asking:submit_answer"),
    "csi_add": lazy("handlers.services.csi:submit_add"),
    "incident_from_message": lazy("handlers.home.shortcuts:submit_incident"),
    "change_from_message": lazy("handlers.home.shortcuts:submit_change"),
    "kb_new": lazy("handlers.knowledge.commands:submit_new"),
    "kb_edit": lazy("handlers.knowledge.commands:submit_edit"),
    "review_edit": lazy("handlers.reviews.commands:submit_edit"),
}

open_reviews = lazy("handlers.reviews.record:sweep_quietly")

# Commands whose whole answer may be kept in memory (handlers.core.remembered), and under what key: the
# same for everyone who asks, and read only from what the store's version row follows.
REMEMBERED = {"status": STATUS_OVERVIEW}


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
            return ROUTES["help"](ctx, cmd, [])
        handler = ROUTES.get(words[0].lower())
        if handler is None:
            raise unknown_word("", words[0], words[1:], ROUTES, "help")
        return handler(ctx, cmd, words[1:])
    reply, outcome, _ = guarded(ctx, cmd, run)
    first = cmd.text.split(maxsplit=1)
    if outcome == "ok" and first and first[0].lower() == "incident":
        # A ticket resolved in chat gets its review now rather than at the next sweep (handlers/reviews).
        open_reviews(ctx)
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
