"""Asking and answering: the question message, answers and comments, low scores passed on, closing,
after-ticket surveys, the reminder sweep, the retention purge, and a person's named answers.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers.core.context import (SYSTEM, Actor, Button, Choice, Command, Context, Form, FormInvalid, Input, Reply,
                                   Section, UserError, Work, sweep_due)
from handlers.surveys import privacy, satisfaction
from handlers.surveys.record import ANSWER_FORM, CSAT_BUTTONS, TICKET_SURVEY_OPEN, find, number, when_text
from handlers.surveys.results import results_of, results_reply
from handlers.surveys.satisfaction import Results
from storage.models import Identity, OutboxMessage, Survey, SurveyAnswer, Ticket


def question_message(ctx: Context, survey: Survey, closed: bool = False) -> Reply:
    """The survey as people see it: the question with a button per answer, or a closed note."""
    zone = ctx.config.bot.timezone
    privacy = ("Anonymous: svcbot keeps your answer without your name, and nobody can see who answered."
               if survey.anonymous else "Named: the survey's owner sees who answered.")
    if closed:
        return Reply(title=f"{number(survey)} closed: {survey.question}", tone="info", private=False,
                     text=f"Closed {when_text(survey.closed_at or survey.closes_at, zone)}. Thank you to everyone "
                          "who answered.", footer=f"survey results {number(survey)}")
    buttons = [Button(_button_label(survey.scale, v), f"survey answer {number(survey)} {v}")
               for v in satisfaction.SCALE_VALUES[survey.scale]]
    extra = [Button("Answer with a comment", f"survey comment {number(survey)}")] if survey.ask_comment else []
    return Reply(title=f"📋 {survey.question}", private=False,
                 text=f"{privacy} You can change your answer until it closes, {when_text(survey.closes_at, zone)}.",
                 sections=[Section(buttons=buttons)], buttons=extra,
                 footer=f"{number(survey)} · {satisfaction.SCALE_NAMES[survey.scale]}"
                        + (" · 1 very dissatisfied, 5 very satisfied" if survey.scale == "csat" else "")
                        + (" · 0 not at all likely, 10 extremely likely" if survey.scale == "nps" else ""))


def _button_label(scale: str, value: int) -> str:
    if scale == "csat":
        return CSAT_BUTTONS[value]
    return satisfaction.value_label(scale, value).capitalize() if scale == "yesno" else str(value)


def send(work: Work, survey: Survey) -> None:
    """Post the question in its channels, or send it to each person asked."""
    message = question_message(work.ctx, survey)
    keys: list[str] = []
    if survey.audience_kind == "channel":
        for name in survey.audience:
            target = work.ctx.config.channels[name]
            for platform in ("slack", "teams"):
                address = getattr(target, platform)
                if address:
                    keys.append(f"survey:{survey.id}:post:{platform}:{address}")
                    work.send(platform, "channel", address, message, keys[-1], number(survey))
    else:
        for pid in survey.audience:
            keys += work.message_person(pid, message, f"survey:{survey.id}:ask:{pid}", number(survey))
    survey.announcements = keys
    survey.due_at = _next_due(work.ctx, survey)


def _next_due(ctx: Context, survey: Survey) -> datetime | None:
    if survey.state == "scheduled":
        return survey.opens_at
    if survey.state != "open":
        return None
    remind_at = survey.closes_at - timedelta(hours=ctx.config.surveys.reminder_hours)
    if not survey.reminded and remind_at > survey.opens_at:
        return remind_at
    return survey.closes_at


# ---- answering --------------------------------------------------------------------------------------------

def answer(ctx: Context, cmd: Command, survey_id: int, text: str, comment_text: str | None = None) -> Reply:
    """Record (or change) the asker's answer. Anonymous answers keep no trace of who gave them."""
    for attempt in (1, 2):
        try:
            return _answer(ctx, cmd, survey_id, text, comment_text)
        except IntegrityError as exc:
            # The same person's two first answers arrived together: the other one won; change it.
            if attempt == 2 or "survey_answers" not in str(exc.orig):
                raise
    raise AssertionError("unreachable")


def _answer(ctx: Context, cmd: Command, survey_id: int, text: str, comment_text: str | None) -> Reply:
    with ctx.change(cmd) as work:
        survey = find(work.session, survey_id)
        _check_open(ctx, survey, cmd.actor)
        try:
            value = satisfaction.parse_value(survey.scale, text)
        except ValueError as exc:
            raise UserError(str(exc) + ".", f"survey answer {number(survey)} "
                            f"{satisfaction.SCALE_VALUES[survey.scale][-1]}") from None
        if comment_text and not survey.ask_comment:
            raise UserError(f"{number(survey)} takes no comments; give only your answer.",
                            f"survey answer {number(survey)} {value}")
        row, changed = _store(work, survey, cmd.actor, value, comment_text)
        if survey.anonymous:
            privacy.coarsen_delivery(work, cmd.delivery_key)
        _pass_on_low(work, survey, row)
    said = satisfaction.value_label(survey.scale, value)
    zone = cmd.actor.timezone
    buttons = ([Button("Add a comment", f"survey comment {number(survey)}")]
               if survey.ask_comment and not row.comment else [])
    return Reply(title="Thank you" if not changed else "Answer changed", tone="ok", buttons=buttons,
                 text=f"Your answer to {number(survey)} is *{said}*"
                      + (" with your comment" if comment_text else "")
                      + f". You can change it until {when_text(survey.closes_at, zone)}.",
                 footer="Your answer is anonymous." if survey.anonymous else "", anonymous=survey.anonymous)


def _check_open(ctx: Context, survey: Survey, actor: Actor) -> None:
    if survey.state != "open":
        if survey.state == "closed":
            raise UserError(f"{number(survey)} closed on {when_text(survey.closed_at, actor.timezone)}, so it takes no "
                            "more answers. Thank you all the same.")
        state = (f"scheduled to open {when_text(survey.opens_at, actor.timezone)}" if survey.state == "scheduled"
                 else survey.state)
        raise UserError(f"{number(survey)} is not open for answers. It is {state}; an answer needs it open.",
                        "survey list")
    if survey.audience_kind == "people" and actor.person_id not in survey.audience:
        raise UserError(f"{number(survey)} was sent to a list of people, and you are not on it.")


def _store(work: Work, survey: Survey, actor: Actor, value: int, comment_text: str | None) -> tuple[SurveyAnswer, bool]:
    """Insert or change the one answer of this person; the audit of an anonymous answer names nobody."""
    key = privacy.respondent_key(work.ctx, work.session, survey, actor.person_id)
    row = work.session.scalar(select(SurveyAnswer).where(SurveyAnswer.survey_id == survey.id,
                                                         SurveyAnswer.respondent_key == key))
    changed = row is not None
    at = privacy.coarse(work.now) if survey.anonymous else work.now
    if row is None:
        row = SurveyAnswer(survey_id=survey.id, respondent_key=key, value=value, answered_at=at,
                           person_id=None if survey.anonymous else actor.person_id)
        work.session.add(row)
    row.value, row.answered_at = value, at
    if comment_text:
        row.comment = comment_text.strip()[:2000]
    work.session.flush()
    privacy.audit_answer(work, survey, changed, value)
    return row, changed


def comment(ctx: Context, cmd: Command, survey_id: int, text: str) -> Reply:
    """With text: the comment for one's answer. Without: the answer form (a Slack modal, a Teams card)."""
    with ctx.sessions() as s:
        survey = find(s, survey_id)
        _check_open(ctx, survey, cmd.actor)
        if not survey.ask_comment:
            raise UserError(f"{number(survey)} takes no comments; just choose an answer.")
        current = s.scalar(select(SurveyAnswer).where(
            SurveyAnswer.survey_id == survey.id,
            SurveyAnswer.respondent_key == privacy.respondent_key(ctx, s, survey, cmd.actor.person_id)))
        if not text:
            if cmd.actor.platform not in ("slack", "teams"):
                raise UserError("Give your answer and your comment.",
                                f'survey answer {number(survey)} 4 "Quicker than last month"')
            return Reply(title=survey.question, form=answer_form(survey, current.value if current else None,
                                                                 current.comment if current else ""))
        if current is None:
            raise UserError("Choose an answer first; your comment goes with it.",
                            f'survey answer {number(survey)} 4 "{text}"')
        value = current.value
    return answer(ctx, cmd, survey_id, str(value), text)


def answer_form(survey: Survey, value: int | None, comment_text: str | None, errors: dict | None = None) -> Form:
    errors = errors or {}
    choices = [Choice(str(v), satisfaction.value_label(survey.scale, v)) for v in satisfaction.SCALE_VALUES[survey.scale]]
    inputs = [Input("value", "Your answer", "choice", choices, value="" if value is None else str(value), required=True,
                    error=errors.get("value", "")),
              Input("comment", "Comment (optional)", "long", value=comment_text or "",
                    hint="what went well, what should change", error=errors.get("comment", ""))]
    return Form(name=ANSWER_FORM, title=f"{number(survey)} · your answer"[:24], inputs=inputs, submit="Send",
                context={"survey": survey.id},
                example=f'survey answer {number(survey)} 4 "Quicker than last month"')


def submit_answer(ctx: Context, cmd: Command, values: dict, context: dict) -> Reply:
    survey_id = context.get("survey")
    if not isinstance(survey_id, int):
        raise UserError("That form does not say which survey it answers.")
    value, text = str(values.get("value") or ""), str(values.get("comment") or "").strip()
    if not value:
        with ctx.sessions() as s:
            raise FormInvalid({"value": "choose an answer"}, answer_form(find(s, survey_id), None, text,
                                                                      {"value": "choose an answer"}))
    return answer(ctx, cmd, survey_id, value, text or None)


def _pass_on_low(work: Work, survey: Survey, row: SurveyAnswer) -> None:
    """A low after-ticket score or a comment goes to the service owner, with a way to act on it."""
    if survey.kind != "ticket" or survey.owner is None:
        return
    policy = work.ctx.config.surveys
    low = row.value <= policy.low_score
    if not low and not row.comment:
        return
    ticket = work.session.get(Ticket, survey.ticket_id)
    who = work.ctx.config.person_name(row.person_id)
    text = f"{who} rated INC-{survey.ticket_id} ({ticket.title if ticket else ''}) " \
           f"*{satisfaction.value_label(survey.scale, row.value)}*."
    if row.comment:
        text += f"\n> {row.comment}"
    message = Reply(title=f"{'Low satisfaction' if low else 'A comment'} on INC-{survey.ticket_id}", text=text,
                    tone="warning" if low else "info",
                    buttons=[Button("Raise a CSI item", f"csi add service={survey.service_id} survey={number(survey)} "
                                                        f"ticket=INC-{survey.ticket_id}")])
    # A changed answer is news as well: each one passed on gets a key of its own.
    key = f"survey:{survey.id}:{'comment' if row.comment else 'low'}"
    earlier = work.session.scalar(select(func.count()).where(OutboxMessage.dedupe_key.startswith(key + ":")))
    work.message_person(survey.owner, message, f"{key}:{earlier}", number(survey))


def close(work: Work, survey: Survey) -> None:
    """Keep the results as they stand, forget who answered, edit the question, and post the results."""
    survey.state, survey.closed_at, survey.due_at = "closed", work.now, None
    survey.results = results_of(work.session, survey).to_dict()
    # One answer per person no longer needs enforcing: drop the keyed hashes.
    work.session.execute(update(SurveyAnswer).where(SurveyAnswer.survey_id == survey.id)
                         .values(respondent_key=None).execution_options(synchronize_session=False))
    privacy.forget(work, survey)
    closed = question_message(work.ctx, survey, closed=True)
    for key in survey.announcements:
        work.edit(key, closed, f"{key}:closed")
    work.audit("survey.close", number(survey), answers=survey.results["answers"])
    if survey.kind != "pulse":
        return
    if survey.owner:
        work.message_person(survey.owner, results_reply(work.ctx, work.session, survey),
                            f"survey:{survey.id}:results:owner", number(survey))
    if survey.audience_kind == "channel":
        public = replace(results_reply(work.ctx, work.session, survey, with_names=False), buttons=[], private=False)
        for key in survey.announcements:
            work.reply_in_thread(key, public, f"{key}:results")


# ---- after-ticket surveys ---------------------------------------------------------------------------------

def after_ticket(work: Work, ticket: Ticket) -> None:
    """A ticket was resolved: arm its requester's survey, if its service asks for one and the ticket is in
    the sample. A reopened ticket's survey waits for the next resolution; each ticket is surveyed once."""
    if ticket.state != "resolved":
        return
    service = work.ctx.config.service(ticket.service_id)
    settings = service.ticket_survey if service else None
    requester = ticket.opened_by
    if settings is None or not settings.enabled or not requester or requester in ("api", "svcbot"):
        return
    if not work.session.scalar(select(func.count()).select_from(Identity).where(Identity.person_id == requester)):
        return  # nobody to send it to
    # A steady sample: the same ticket is always in it or out of it.
    if int(work.ctx.pseudonym("sample", ticket.id), 16) % 10000 >= settings.sample_percent * 100:
        return
    opens = work.now + timedelta(minutes=settings.delay.minutes)
    survey = work.session.scalar(select(Survey).where(Survey.ticket_id == ticket.id))
    if survey is not None:
        if survey.state in ("scheduled", "cancelled"):  # reopened before it went out: the delay starts again
            survey.state, survey.opens_at, survey.closes_at = "scheduled", opens, opens + TICKET_SURVEY_OPEN
            survey.due_at = opens
        return
    work.session.add(Survey(
        kind="ticket", question=settings.question.replace("{ticket}", f"INC-{ticket.id}"), scale="csat",
        ask_comment=True, anonymous=False, audience_kind="people", audience=[requester], owner=service.owner,
        service_id=service.id, ticket_id=ticket.id, state="scheduled", created_at=work.now, opens_at=opens,
        closes_at=opens + TICKET_SURVEY_OPEN, reminded=True, due_at=opens, announcements=[]))
    work.audit("survey.scheduled", f"INC-{ticket.id}", requester=requester, opens_at=opens.isoformat())


def _open_ticket_survey(work: Work, survey: Survey) -> None:
    ticket = work.session.get(Ticket, survey.ticket_id)
    if ticket is None or ticket.state not in ("resolved", "closed"):
        survey.state, survey.due_at = "cancelled", None  # reopened: asked after the next resolution
        return
    survey.state = "open"
    send(work, survey)
    work.audit("survey.sent", number(survey), ticket=f"INC-{ticket.id}")


# ---- the sweep --------------------------------------------------------------------------------------------

def sweep(ctx: Context, batch: int = 200) -> int:
    """Open after-ticket surveys whose delay is over, remind, and close what is due; each once."""
    return sweep_due(ctx, Survey, SYSTEM, _due, batch)


def _due(work: Work, survey: Survey, now: datetime) -> int:
    if survey.state == "scheduled":
        _open_ticket_survey(work, survey)
    elif survey.state == "open" and now >= survey.closes_at:
        close(work, survey)
    elif survey.state == "open" and not survey.reminded:
        _remind(work, survey)
    if survey.state in ("scheduled", "open"):
        survey.due_at = _next_due(work.ctx, survey)
    return 1


def _remind(work: Work, survey: Survey) -> None:
    """Those asked by direct message who have not answered get one reminder; a channel gets a thread line."""
    survey.reminded = True
    zone = work.ctx.config.bot.timezone
    if survey.audience_kind == "channel":
        count = work.session.scalar(select(func.count()).where(SurveyAnswer.survey_id == survey.id))
        line = Reply(title=f"⏰ {number(survey)} closes {when_text(survey.closes_at, zone)}", private=False,
                     text=f"{count} answer{'s' if count != 1 else ''} so far; answer with the buttons above.")
        for key in survey.announcements:
            work.reply_in_thread(key, line, f"{key}:reminder")
        return
    answered = set(work.session.scalars(select(SurveyAnswer.respondent_key)
                                        .where(SurveyAnswer.survey_id == survey.id)).all())
    message = question_message(work.ctx, survey)
    message.title = f"⏰ Reminder: {survey.question}"
    for pid in survey.audience:
        if privacy.respondent_key(work.ctx, work.session, survey, pid) not in answered:
            work.message_person(pid, message, f"survey:{survey.id}:remind:{pid}", number(survey),
                                hold_in_quiet_hours=True)


def purge(ctx: Context) -> tuple[int, int]:
    """Delete answers, and comments sooner if so configured, past their retention after closing.
    Returns (answers deleted, comments cleared). The results kept at closing remain."""
    policy = ctx.config.surveys
    now = ctx.now()
    with ctx.sessions.begin() as s:
        answers_before = now - timedelta(days=policy.retention_days)
        comments_before = now - timedelta(days=policy.comment_retention_days or policy.retention_days)
        expired = select(Survey.id).where(Survey.state == "closed", Survey.closed_at < answers_before)
        deleted = s.execute(SurveyAnswer.__table__.delete().where(SurveyAnswer.survey_id.in_(expired))).rowcount
        s.execute(update(Survey).where(Survey.id.in_(expired)).values(answers_purged=True, comments_purged=True)
                  .execution_options(synchronize_session=False))
        stale = select(Survey.id).where(Survey.state == "closed", Survey.closed_at < comments_before)
        cleared = s.execute(update(SurveyAnswer).where(SurveyAnswer.survey_id.in_(stale),
                                                       SurveyAnswer.comment.is_not(None))
                            .values(comment=None).execution_options(synchronize_session=False)).rowcount
        s.execute(update(Survey).where(Survey.id.in_(stale)).values(comments_purged=True)
                  .execution_options(synchronize_session=False))
        if deleted or cleared:
            Work(ctx, s, SYSTEM).audit("survey.purge", "surveys", answers=deleted, comments=cleared)
    return deleted, cleared


# ---- satisfaction of a service --------------------------------------------------------------------------

def service_satisfaction(ctx: Context, session: Session, services: str | None | list[str | None],
                         start: datetime | None, end: datetime | None) -> Results:
    """CSAT of the answers about a service (or several; None: IT as a whole) in a period: its after-ticket
    surveys and its CSAT pulse surveys. An anonymous survey's answers count only when at least the minimum
    of them fall in the period, so that a period's edge never singles out a few."""
    ids = services if isinstance(services, list) else [services]
    about = Survey.service_id.in_([i for i in ids if i is not None])
    if None in ids:
        about = about | Survey.service_id.is_(None)
    minimum = ctx.config.surveys.min_respondents
    in_period = [SurveyAnswer.answered_at >= start] if start is not None else []
    in_period += [SurveyAnswer.answered_at < end] if end is not None else []
    sizes = (select(SurveyAnswer.survey_id, func.count().label("n")).where(*in_period)
             .group_by(SurveyAnswer.survey_id).subquery())
    query = (select(SurveyAnswer.value, func.count()).join(Survey, Survey.id == SurveyAnswer.survey_id)
             .join(sizes, sizes.c.survey_id == Survey.id)
             .where(about, Survey.scale == "csat", *in_period,
                    (Survey.anonymous.is_(False)) | (sizes.c.n >= minimum)))
    return satisfaction.tally("csat", dict(session.execute(query.group_by(SurveyAnswer.value)).all()))


# ---- personal data ----------------------------------------------------------------------------------------

def named_answers(session: Session, person_id: str) -> list[dict]:
    rows = session.execute(select(SurveyAnswer, Survey).join(Survey, Survey.id == SurveyAnswer.survey_id)
                           .where(SurveyAnswer.person_id == person_id).order_by(SurveyAnswer.id)).all()
    return [{"survey": number(survey), "question": survey.question, "scale": survey.scale,
             "answer": satisfaction.value_label(survey.scale, a.value), "comment": a.comment,
             "answered_at": a.answered_at.isoformat(), "ticket": f"INC-{survey.ticket_id}" if survey.ticket_id else None}
            for a, survey in rows]


def erase_named_answers(work: Work, person_id: str) -> int:
    """Delete a person's named answers. Results kept at closing stay: they name nobody."""
    deleted = work.session.execute(SurveyAnswer.__table__.delete()
                                   .where(SurveyAnswer.person_id == person_id)).rowcount
    waiting = work.session.scalars(select(Survey).where(Survey.kind == "ticket",
                                                        Survey.state.in_(("scheduled", "open")))).all()
    for survey in waiting:  # not asked again either
        if survey.audience == [person_id]:
            survey.state, survey.due_at = "cancelled", None
    return deleted
