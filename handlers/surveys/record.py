"""A survey as it is stored: its number, who may run and see it, and the words shared by its messages."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.core.context import Context, UserError
from storage.models import Survey

NUMBER = re.compile(r"^SRV-?(\d{1,9})$", re.IGNORECASE)


TICKET_SURVEY_OPEN = timedelta(days=7)


SHOWN_COMMENTS = 20


CSAT_BUTTONS = {1: "1 😠", 2: "2 🙁", 3: "3 😐", 4: "4 🙂", 5: "5 😀"}


# The commands that answer a survey: run without registering who gave them (see people.resolve_actor).
ANSWER_VERBS = ("answer", "comment")


ANSWER_FORM = "survey_answer"


def number(survey: Survey | int) -> str:
    return f"SRV-{survey if isinstance(survey, int) else survey.id}"


def is_answer(text: str, form: str | None = None) -> bool:
    words = text.split()
    return form == ANSWER_FORM or (len(words) >= 2 and words[0].lower() == "survey"
                                   and words[1].lower() in ANSWER_VERBS)


def id_from(rest: list[str], example: str) -> int:
    m = NUMBER.match(rest[0]) if rest else None
    if not m:
        raise UserError("Say which survey, like SRV-3.", example)
    return int(m[1])


def find(session: Session, survey_id: int, lock: bool = False) -> Survey:
    query = select(Survey).where(Survey.id == survey_id)
    if lock and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    survey = session.scalar(query)
    if survey is None:
        raise UserError(f"There is no {number(survey_id)}.", "survey list")
    return survey


def may_run_surveys(ctx: Context, person_id: str) -> bool:
    """Service managers, and the owners of services, run pulse surveys."""
    return person_id in ctx.config.roles.service_managers or any(s.owner == person_id for s in ctx.config.services)


def may_see(ctx: Context, person_id: str, survey: Survey) -> bool:
    return person_id == survey.owner or person_id in ctx.config.roles.service_managers


def audience_text(ctx: Context, survey: Survey) -> str:
    if survey.audience_kind == "channel":
        return ", ".join(f"#{c}" for c in survey.audience)
    names = [ctx.config.person_name(p) for p in survey.audience]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def when_text(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M %Z")


NEW_EXAMPLE = ('survey new question="How satisfied are you with the VPN?" scale=csat channel=it-announce '
               'closes="in 5 days"')
