"""What keeps an anonymous survey's answers from being traced to the people who gave them by whoever holds
the database.

While a survey is open svcbot must know whether someone has answered it already (one answer each, which
they may change until it closes), so it keeps a keyed hash of the survey and the person beside the answer.
Its key is SVCBOT_SECRET_KEY (without it, a random key kept in the store) together with a random key of
the survey, kept in the store only while the survey is open. When the survey closes:

- the hashes are cleared and the survey's key erased, so nothing made with it can be tested again;
- the dedupe keys of the deliveries that carried its answers, and the replies queued to them, are deleted;
- the answers are written again in the order of their values, so that their order says nothing of who
  answered first.

An anonymous answer's time is kept to the hour, in its audit record too, and the audit record names
neither the person nor the platform (someone alone on Teams would be named by it). A delivery that
answers a survey is remembered under a hash of the platform's key rather than the key itself (Slack's
names the clicker), and filed under the survey so that closing finds it.
"""
from __future__ import annotations

import logging
import re
import secrets
from dataclasses import replace
from datetime import datetime

from sqlalchemy import delete, event, select, update
from sqlalchemy.orm import Session

from handlers.core.context import Context, Reply, Work
from handlers.surveys.record import NUMBER
from storage.db import empty_write_ahead_log
from storage.models import AuditRecord, OutboxMessage, ProcessedDelivery, Setting, Survey, SurveyAnswer

log = logging.getLogger("svcbot")
BOLD = re.compile(r"\*[^*]+\*")


def coarse(at: datetime) -> datetime:
    """An anonymous answer's time: to the hour, so that it cannot be matched with who was active then."""
    return at.replace(minute=0, second=0, microsecond=0)


def _key_setting(survey_id: int) -> str:
    return f"survey:{survey_id}:key"


def open_key(session: Session, survey: Survey) -> None:
    """Give an anonymous survey its own random key, kept until it closes."""
    if survey.anonymous:
        session.add(Setting(key=_key_setting(survey.id), value=secrets.token_hex(32)))


def respondent_key(ctx: Context, session: Session, survey: Survey, person_id: str) -> str:
    """The keyed hash that stands for a person on one survey: different on every survey, and, once the
    survey's key is erased at closing, testable by nobody. (A survey opened before surveys had keys of
    their own keeps the hash it began with.)"""
    own = session.get(Setting, _key_setting(survey.id))
    if own is None:
        return ctx.pseudonym("survey", survey.id, person_id)
    return ctx.pseudonym("survey", survey.id, own.value, person_id)


def audit_answer(work: Work, survey: Survey, changed: bool, value: int) -> None:
    """The audit record of an answer: an anonymous one with nobody, no platform and the hour only."""
    if not survey.anonymous:
        work.audit("survey.answer", f"SRV-{survey.id}", changed=changed, value=value)
        return
    work.session.add(AuditRecord(at=coarse(work.now), person_id=None, platform="anonymous",
                                 action="survey.answer", subject=f"SRV-{survey.id}", detail={"changed": changed}))


def coarsen_delivery(work: Work, key: str | None) -> None:
    """The remembered delivery of an anonymous answer keeps the hour only, like the answer."""
    if key:
        work.session.execute(update(ProcessedDelivery).where(ProcessedDelivery.key == key)
                             .values(at=coarse(work.now)).execution_options(synchronize_session=False))


def storable(reply: Reply) -> Reply:
    """The thanks for an anonymous answer as it may be queued (the answer to a Slack button goes by its
    response URL): without the value, which is shown in bold where the answer is told at once."""
    if not reply.anonymous:
        return reply
    return replace(reply, text=BOLD.sub("saved", reply.text))


def answer_prefix(survey_id: int | None) -> str:
    return f"survey:{survey_id}:answer:" if survey_id is not None else "survey:answer:"


def delivery_key(ctx: Context, key: str | None, text: str, form: tuple | None = None) -> str | None:
    """The dedupe key kept for a delivery that answers a survey: a keyed hash of the platform's key (which
    may name the person, like Slack's clicker), filed under the survey so that closing deletes it."""
    if key is None:
        return None
    survey_id = None
    if form is not None:
        context = form[2] if len(form) > 2 and isinstance(form[2], dict) else {}
        survey_id = context.get("survey") if isinstance(context.get("survey"), int) else None
    else:
        words = text.split()
        m = NUMBER.match(words[2]) if len(words) > 2 else None
        survey_id = int(m[1]) if m else None
    return answer_prefix(survey_id) + ctx.pseudonym("delivery", survey_id, key)[:32]


def forget(work: Work, survey: Survey) -> None:
    """At closing: leave nothing that links the survey's answers to who gave them."""
    session = work.session
    session.execute(delete(Setting).where(Setting.key == _key_setting(survey.id)))
    prefix = answer_prefix(survey.id)
    session.execute(delete(ProcessedDelivery).where(ProcessedDelivery.key.startswith(prefix, autoescape=True))
                    .execution_options(synchronize_session=False))
    session.execute(delete(OutboxMessage).where(OutboxMessage.dedupe_key.startswith(f"reply:{prefix}",
                                                                                      autoescape=True))
                    .execution_options(synchronize_session=False))
    if not survey.anonymous:
        return
    kept = session.scalars(select(SurveyAnswer).where(SurveyAnswer.survey_id == survey.id)).all()
    rows = sorted(((a.value, a.comment, a.answered_at) for a in kept), key=lambda r: (r[0], r[1] or "", r[2]))
    session.execute(delete(SurveyAnswer).where(SurveyAnswer.survey_id == survey.id)
                    .execution_options(synchronize_session=False))
    for a in kept:
        session.expunge(a)
    session.add_all([SurveyAnswer(survey_id=survey.id, respondent_key=None, person_id=None, value=value,
                                  comment=comment, answered_at=at) for value, comment, at in rows])
    session.flush()
    _checkpoint_after_commit(session)


def _checkpoint_after_commit(session: Session) -> None:
    """SQLite keeps recent page versions in its write-ahead log: once the transaction is in, move them
    into the file (where deleted rows are overwritten, see storage.db) and empty the log."""
    bind = session.get_bind()
    if bind.dialect.name != "sqlite":
        return

    def checkpoint(_session) -> None:
        if not empty_write_ahead_log(bind):
            log.info("a reader was open when a survey closed: its write-ahead log is emptied later")

    event.listen(session, "after_commit", checkpoint, once=True)
