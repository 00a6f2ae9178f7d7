"""Pulse surveys and after-ticket surveys: asking, answering, results, reminders, and the retention purge.

A pulse survey goes to a channel (posted with rating buttons) or to people and groups (by direct
message). Each person answers once and may change the answer until the survey closes. An anonymous
answer is stored with a keyed hash of the survey and the person, never the person; the hash is only
there to keep one answer per person, and it is cleared when the survey closes. Anonymous results stay
hidden until ``surveys.min_respondents`` people have answered.

After-ticket surveys follow each service's ``ticket_survey`` settings: a resolved ticket's requester
is asked one CSAT question by direct message, once, after a delay; a sampled share of tickets only.
The answers are the service's satisfaction and count against a satisfaction target in its agreement.
"""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers import satisfaction, survey_privacy
from handlers.changes import pairs, parse_ahead, parse_time
from handlers.config import SCALES
from handlers.core import (Actor, Button, Choice, Command, Context, Field, Form, FormInvalid, Input, Refused,
                           Reply, Section, UserError, Work, sweep_due, unknown_word)
from handlers.satisfaction import Results
from storage.models import Identity, OutboxMessage, Survey, SurveyAnswer, Ticket


NUMBER = re.compile(r"^SRV-?(\d{1,9})$", re.IGNORECASE)
SYSTEM = Actor(person_id="svcbot", name="svcbot", platform="system")
NEW_EXAMPLE = ('survey new question="How satisfied are you with the VPN?" scale=csat channel=it-announce '
               'closes="in 5 days"')
FIELDS = ("question", "scale", "channel", "people", "group", "anonymous", "comment", "closes", "service")
DEFAULT_OPEN = timedelta(days=5)
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


# ---- commands -----------------------------------------------------------------------------------------

def survey_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    verb = args[0].lower() if args else "list"
    rest = args[1:]
    if verb == "new":
        return _new(ctx, cmd)
    if verb == "list":
        return list_reply(ctx, cmd)
    if verb == "results":
        return results_cmd(ctx, cmd, _id(rest, "survey results SRV-3"))
    if verb == "close":
        return close_cmd(ctx, cmd, _id(rest, "survey close SRV-3"))
    if verb == "answer":
        if len(rest) < 2:
            raise UserError("Say which survey and your answer.", "survey answer SRV-3 4")
        return answer(ctx, cmd, _id(rest, "survey answer SRV-3 4"), rest[1], " ".join(rest[2:]) or None)
    if verb == "comment":
        survey_id = _id(rest, 'survey comment SRV-3 "The new VPN client is much faster"')
        return comment(ctx, cmd, survey_id, " ".join(rest[1:]))
    raise unknown_word("survey", args[0], rest, ("new", "list", "results", "close", *ANSWER_VERBS), "survey list")


def _id(rest: list[str], example: str) -> int:
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


def _may_see(ctx: Context, person_id: str, survey: Survey) -> bool:
    return person_id == survey.owner or person_id in ctx.config.roles.service_managers


# ---- making a survey --------------------------------------------------------------------------------------

def _after_verb(text: str) -> str:
    m = re.search(r"\bnew\b", text, re.IGNORECASE)
    return text[m.end():] if m else ""


def _new(ctx: Context, cmd: Command) -> Reply:
    values = pairs(_after_verb(cmd.text), NEW_EXAMPLE)
    if not values:
        if cmd.actor.platform in ("slack", "teams"):
            if not may_run_surveys(ctx, cmd.actor.person_id):
                raise Refused("Service managers and service owners run surveys.")
            return Reply(title="New pulse survey", form=new_form(ctx, {}))
        raise UserError("Give the survey's question, scale, audience and closing time as key=value pairs.",
                        NEW_EXAMPLE)
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise UserError(f"Unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
                        f"Fields: {', '.join(FIELDS)}.", NEW_EXAMPLE)
    return create(ctx, cmd, values)[1]


def submit_new(ctx: Context, cmd: Command, values: dict, context: dict) -> Reply:
    """The answers of the new-survey form (a Slack modal, a Teams card)."""
    values = {k: ",".join(v) if isinstance(v, list) else v for k, v in values.items() if k in FIELDS}
    try:
        return create(ctx, cmd, values)[1]
    except FormInvalid as exc:
        exc.form = new_form(ctx, values, exc.errors)
        raise


def new_form(ctx: Context, values: dict, errors: dict | None = None) -> Form:
    cfg, errors = ctx.config, errors or {}
    yes_no = [Choice("yes", "yes"), Choice("no", "no")]
    inputs = [
        Input("question", "Question", required=True, hint="How satisfied are you with …?"),
        Input("scale", "Scale", "choice", [Choice(s, satisfaction.SCALE_NAMES[s]) for s in SCALES], value="csat",
              required=True),
        Input("channel", "Post in channels", "multi", [Choice(c, c) for c in cfg.channels],
              hint="or ask people or a group by direct message"),
        Input("people", "Ask people", "multi", [Choice(p.id, p.name) for p in cfg.people]),
        Input("group", "Ask a group", "choice", [Choice(g.id, g.name) for g in cfg.groups]),
        Input("anonymous", "Anonymous", "choice", yes_no, value="yes", required=True),
        Input("comment", "Offer a comment box", "choice", yes_no, value="yes"),
        Input("closes", "Closes", hint="YYYY-MM-DD HH:MM your time, or 'in 5 days'; default in 5 days"),
        Input("service", "About the service", "choice", [Choice(s.id, s.name) for s in cfg.services]),
    ]
    for i in inputs:
        value = values.get(i.id)
        if value not in (None, ""):
            i.value = value.split(",") if i.kind == "multi" and isinstance(value, str) else value
        i.error = errors.get(i.id, "")
    return Form(name="survey_new", title="Pulse survey", inputs=inputs, submit="Send the survey",
                example=NEW_EXAMPLE)


def _closing_time(text: str, actor: Actor, now: datetime) -> datetime:
    ahead = parse_ahead(text)
    return now + ahead if ahead is not None else parse_time(text, actor.timezone, now)


def _yes_no(text: str | None, default: bool) -> bool:
    if text in (None, ""):
        return default
    word = str(text).strip().lower()
    if word in ("yes", "y", "true", "on"):
        return True
    if word in ("no", "n", "false", "off"):
        return False
    raise ValueError(f"'{text}' is neither yes nor no")


def _validate(ctx: Context, actor: Actor, values: dict, now: datetime) -> tuple[dict, dict[str, str]]:
    """Every field's problem at once, or the survey's attributes."""
    cfg = ctx.config
    errors: dict[str, str] = {}
    out: dict = {}
    question = (values.get("question") or "").strip()
    if not question:
        errors["question"] = "ask a question"
    elif len(question) > 500:
        errors["question"] = "keep the question under 500 characters"
    out["question"] = question
    scale = (values.get("scale") or "csat").strip().lower()
    if scale not in SCALES:
        errors["scale"] = f"'{scale}' is not a scale; scales: {', '.join(SCALES)}"
    out["scale"] = scale
    for name, default in (("anonymous", True), ("comment", True)):
        try:
            out[name] = _yes_no(values.get(name), default)
        except ValueError as exc:
            errors[name] = str(exc)

    def listed(key: str) -> list[str]:
        return [w.strip() for w in re.split(r"[,\s]+", values.get(key) or "") if w.strip()]

    channels, people, group = listed("channel"), listed("people"), (values.get("group") or "").strip()
    for c in channels:
        if c not in cfg.channels:
            errors["channel"] = f"unknown channel '{c}'; channels: {', '.join(cfg.channels)}"
    for p in people:
        if cfg.person(p) is None:
            errors["people"] = f"unknown person '{p}'"
    if group and cfg.group(group) is None:
        errors["group"] = f"unknown group '{group}'"
    members = list(dict.fromkeys(people + (list(cfg.group(group).members) if cfg.group(group) else [])))
    if channels and (people or group):
        errors["channel"] = "post in channels or ask people and groups, not both"
    elif not channels and not people and not group:
        errors["channel"] = "say who is asked: channel=…, people=… or group=…"
    elif group and not members and "group" not in errors:
        errors["group"] = f"group '{group}' has no members"
    out["audience_kind"], out["audience"] = ("channel", channels) if channels else ("people", members)
    try:
        closes = _closing_time(values.get("closes") or "", actor, now) if values.get("closes") else now + DEFAULT_OPEN
        if closes <= now + timedelta(minutes=5):
            errors["closes"] = "the closing time must be at least five minutes from now"
        out["closes_at"] = closes
    except ValueError as exc:
        errors["closes"] = str(exc)
    except OverflowError:
        errors["closes"] = "that is too far ahead"
    service_key = (values.get("service") or "").strip()
    service = cfg.service(service_key) if service_key else None
    if service_key and service is None:
        errors["service"] = f"unknown service '{service_key}'"
    elif service and service.owner != actor.person_id and actor.person_id not in cfg.roles.service_managers:
        errors["service"] = f"only {service.name}'s owner or a service manager measures its satisfaction"
    out["service_id"] = service.id if service else None
    return out, errors


def create(ctx: Context, cmd: Command, values: dict) -> tuple[int, Reply]:
    """A pulse survey from its fields; it is sent at once."""
    if not may_run_surveys(ctx, cmd.actor.person_id):
        raise Refused("Service managers and service owners run surveys.")
    now = ctx.now()
    attrs, errors = _validate(ctx, cmd.actor, values, now)
    if errors:
        raise FormInvalid(errors, example=NEW_EXAMPLE)
    with ctx.change(cmd) as work:
        survey = Survey(kind="pulse", question=attrs["question"], scale=attrs["scale"], ask_comment=attrs["comment"],
                        anonymous=attrs["anonymous"], audience_kind=attrs["audience_kind"],
                        audience=attrs["audience"], owner=cmd.actor.person_id, service_id=attrs["service_id"],
                        state="open", created_at=work.now, opens_at=work.now, closes_at=attrs["closes_at"],
                        announcements=[])
        work.session.add(survey)
        work.session.flush()
        survey_privacy.open_key(work.session, survey)
        _send(work, survey)
        work.audit("survey.new", number(survey), question=survey.question, scale=survey.scale,
                   anonymous=survey.anonymous, audience=survey.audience, closes_at=survey.closes_at.isoformat())
        reply = Reply(title=f"{number(survey)} sent", tone="ok",
                      text=f"*{survey.question}* went to {_audience_text(ctx, survey)}; it closes "
                           f"{_when(survey.closes_at, cmd.actor.timezone)}.",
                      footer=f"survey results {number(survey)} shows how it goes")
    return survey.id, reply


def _audience_text(ctx: Context, survey: Survey) -> str:
    if survey.audience_kind == "channel":
        return ", ".join(f"#{c}" for c in survey.audience)
    names = [ctx.config.person_name(p) for p in survey.audience]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _when(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M %Z")


# ---- asking -----------------------------------------------------------------------------------------------

def question_message(ctx: Context, survey: Survey, closed: bool = False) -> Reply:
    """The survey as people see it: the question with a button per answer, or a closed note."""
    zone = ctx.config.bot.timezone
    privacy = ("Anonymous: svcbot keeps your answer without your name, and nobody can see who answered."
               if survey.anonymous else "Named: the survey's owner sees who answered.")
    if closed:
        return Reply(title=f"{number(survey)} closed: {survey.question}", tone="info", private=False,
                     text=f"Closed {_when(survey.closed_at or survey.closes_at, zone)}. Thank you to everyone "
                          "who answered.", footer=f"survey results {number(survey)}")
    buttons = [Button(_button_label(survey.scale, v), f"survey answer {number(survey)} {v}")
               for v in satisfaction.SCALE_VALUES[survey.scale]]
    extra = [Button("Answer with a comment", f"survey comment {number(survey)}")] if survey.ask_comment else []
    return Reply(title=f"📋 {survey.question}", private=False,
                 text=f"{privacy} You can change your answer until it closes, {_when(survey.closes_at, zone)}.",
                 sections=[Section(buttons=buttons)], buttons=extra,
                 footer=f"{number(survey)} · {satisfaction.SCALE_NAMES[survey.scale]}"
                        + (" · 1 very dissatisfied, 5 very satisfied" if survey.scale == "csat" else "")
                        + (" · 0 not at all likely, 10 extremely likely" if survey.scale == "nps" else ""))


def _button_label(scale: str, value: int) -> str:
    if scale == "csat":
        return CSAT_BUTTONS[value]
    return satisfaction.value_label(scale, value).capitalize() if scale == "yesno" else str(value)


def _send(work: Work, survey: Survey) -> None:
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
            survey_privacy.coarsen_delivery(work, cmd.delivery_key)
        _pass_on_low(work, survey, row)
    said = satisfaction.value_label(survey.scale, value)
    zone = cmd.actor.timezone
    buttons = ([Button("Add a comment", f"survey comment {number(survey)}")]
               if survey.ask_comment and not row.comment else [])
    return Reply(title="Thank you" if not changed else "Answer changed", tone="ok", buttons=buttons,
                 text=f"Your answer to {number(survey)} is *{said}*"
                      + (" with your comment" if comment_text else "")
                      + f". You can change it until {_when(survey.closes_at, zone)}.",
                 footer="Your answer is anonymous." if survey.anonymous else "", anonymous=survey.anonymous)


def _check_open(ctx: Context, survey: Survey, actor: Actor) -> None:
    if survey.state != "open":
        if survey.state == "closed":
            raise UserError(f"{number(survey)} closed on {_when(survey.closed_at, actor.timezone)}, so it takes no "
                            "more answers. Thank you all the same.")
        state = (f"scheduled to open {_when(survey.opens_at, actor.timezone)}" if survey.state == "scheduled"
                 else survey.state)
        raise UserError(f"{number(survey)} is not open for answers. It is {state}; an answer needs it open.",
                        "survey list")
    if survey.audience_kind == "people" and actor.person_id not in survey.audience:
        raise UserError(f"{number(survey)} was sent to a list of people, and you are not on it.")


def _store(work: Work, survey: Survey, actor: Actor, value: int, comment_text: str | None) -> tuple[SurveyAnswer, bool]:
    """Insert or change the one answer of this person; the audit of an anonymous answer names nobody."""
    key = survey_privacy.respondent_key(work.ctx, work.session, survey, actor.person_id)
    row = work.session.scalar(select(SurveyAnswer).where(SurveyAnswer.survey_id == survey.id,
                                                         SurveyAnswer.respondent_key == key))
    changed = row is not None
    at = survey_privacy.coarse(work.now) if survey.anonymous else work.now
    if row is None:
        row = SurveyAnswer(survey_id=survey.id, respondent_key=key, value=value, answered_at=at,
                           person_id=None if survey.anonymous else actor.person_id)
        work.session.add(row)
    row.value, row.answered_at = value, at
    if comment_text:
        row.comment = comment_text.strip()[:2000]
    work.session.flush()
    survey_privacy.audit_answer(work, survey, changed, value)
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
            SurveyAnswer.respondent_key == survey_privacy.respondent_key(ctx, s, survey, cmd.actor.person_id)))
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


# ---- results ----------------------------------------------------------------------------------------------

def results_of(session: Session, survey: Survey) -> Results:
    """As they stood at closing (they outlive the answers), or as they stand now."""
    if survey.results is not None:
        return Results.from_dict(survey.results)
    counts = session.execute(select(SurveyAnswer.value, func.count()).where(SurveyAnswer.survey_id == survey.id)
                             .group_by(SurveyAnswer.value)).all()
    invited = len(survey.audience) if survey.audience_kind == "people" else None
    return satisfaction.tally(survey.scale, dict(counts), invited)


def answers_text(n: int) -> str:
    return f"{n} answer{'' if n == 1 else 's'}"


def hidden(ctx: Context, survey: Survey, results: Results) -> bool:
    return survey.anonymous and results.answers < ctx.config.surveys.min_respondents


def previous_survey(session: Session, survey: Survey) -> Survey | None:
    """The last pulse survey before this one that asked the same question on the same scale."""
    return session.scalar(select(Survey).where(
        Survey.kind == "pulse", Survey.scale == survey.scale, Survey.id < survey.id, Survey.state == "closed",
        func.lower(Survey.question) == survey.question.lower()).order_by(Survey.id.desc()).limit(1))


def results_cmd(ctx: Context, cmd: Command, survey_id: int) -> Reply:
    with ctx.sessions() as s:
        survey = find(s, survey_id)
        if survey.state != "closed" and not _may_see(ctx, cmd.actor.person_id, survey):
            raise Refused(f"{number(survey)} is still open: its owner and the service managers see its results "
                          "until it closes.")
        return results_reply(ctx, s, survey, cmd.actor.timezone, with_names=_may_see(ctx, cmd.actor.person_id, survey))


def results_reply(ctx: Context, session: Session, survey: Survey, zone: str | None = None,
                  with_names: bool = True) -> Reply:
    """The results; ``with_names`` (for the owner and service managers) names a named survey's commenters."""
    zone = zone or ctx.config.bot.timezone
    results = results_of(session, survey)
    state = (f"closed {_when(survey.closed_at, zone)}" if survey.state == "closed"
             else f"open until {_when(survey.closes_at, zone)}" if survey.state == "open" else survey.state)
    title = f"{number(survey)} results: {survey.question}"
    count = answers_text(results.answers)
    if results.invited:
        count += f" of {results.invited} asked ({results.response_rate:.0f} %)"
    if hidden(ctx, survey, results):
        minimum = ctx.config.surveys.min_respondents
        return Reply(title=title, text=f"{count}. The results of an anonymous survey show once {minimum} people "
                                       "have answered, so that no answer can be traced to anyone.",
                     footer=f"{number(survey)} · {state}")
    fields = [Field("Answers", count), Field(results.score_name, results.score_text())]
    previous = previous_survey(session, survey)
    if previous is not None:
        before = results_of(session, previous)
        change = satisfaction.trend(results, before) if not hidden(ctx, previous, before) else None
        if change is not None:
            unit = "" if survey.scale == "nps" else " points"
            fields.append(Field("Trend", f"{'▲' if change > 0 else '▼' if change < 0 else '='} {change:+.0f}{unit} "
                                         f"since {number(previous)} ({before.score_text()})"))
    labels = {v: satisfaction.value_label(survey.scale, v) for v in results.distribution}
    width = max(map(len, labels.values()))
    lines = [f"{labels[v]:>{width}}  {satisfaction.bar(n, results.answers)} {n}"
             for v, n in sorted(results.distribution.items(), reverse=True)]
    sections = [Section(fields=fields), Section(title="Distribution", text="```\n" + "\n".join(lines) + "\n```")]
    comments = [] if survey.comments_purged else session.execute(
        select(SurveyAnswer.comment, SurveyAnswer.person_id).where(
            SurveyAnswer.survey_id == survey.id, SurveyAnswer.comment.is_not(None))
        .order_by(SurveyAnswer.answered_at.desc()).limit(SHOWN_COMMENTS)).all()
    if comments:
        sections.append(Section(title="Comments", text="\n".join(
            f"> {c}" + (f" — {ctx.config.person_name(p)}" if with_names and not survey.anonymous else "")
            for c, p in comments)))
    buttons = []
    if results.low or comments:
        run = f"csi add survey={number(survey)}" + (f" service={survey.service_id}" if survey.service_id else "")
        buttons.append(Button("Raise a CSI item", run))
    return Reply(title=title, sections=sections, buttons=buttons,
                 footer=f"{number(survey)} · {satisfaction.SCALE_NAMES[survey.scale]} · {state}"
                        + (" · anonymous" if survey.anonymous else ""))


def list_reply(ctx: Context, cmd: Command) -> Reply:
    zone = cmd.actor.timezone
    with ctx.sessions() as s:
        open_ = s.scalars(select(Survey).where(Survey.kind == "pulse", Survey.state == "open")
                          .order_by(Survey.closes_at)).all()
        closed = s.scalars(select(Survey).where(Survey.kind == "pulse", Survey.state == "closed")
                           .order_by(Survey.closed_at.desc()).limit(5)).all()
        counts = dict(s.execute(select(SurveyAnswer.survey_id, func.count())
                                .where(SurveyAnswer.survey_id.in_([x.id for x in open_] or [0]))
                                .group_by(SurveyAnswer.survey_id)).all())
        sections = []
        if open_:
            sections.append(Section(title="Open", text="\n".join(
                f"*{number(x)}* {x.question} — {answers_text(counts.get(x.id, 0))}, closes {_when(x.closes_at, zone)}"
                for x in open_)))
        if closed:
            lines = []
            for x in closed:
                r = results_of(s, x)
                score = "results hidden" if hidden(ctx, x, r) else f"{r.score_name} {r.score_text()}"
                lines.append(f"*{number(x)}* {x.question} — {answers_text(r.answers)}, {score}")
            sections.append(Section(title="Recently closed", text="\n".join(lines)))
    if not sections:
        return Reply(title="No pulse surveys yet", footer=f"Try: {NEW_EXAMPLE}")
    return Reply(title="Pulse surveys", sections=sections, footer="survey results SRV-N for one survey")


# ---- closing ----------------------------------------------------------------------------------------------

def close_cmd(ctx: Context, cmd: Command, survey_id: int) -> Reply:
    with ctx.change(cmd) as work:
        survey = find(work.session, survey_id, lock=True)
        if not _may_see(ctx, cmd.actor.person_id, survey):
            raise Refused(f"Only {number(survey)}'s owner or a service manager can close it.")
        if survey.state != "open":
            raise UserError(f"{number(survey)} is closed already." if survey.state == "closed" else
                            f"{number(survey)} is {survey.state}; it cannot be closed (only when open).", "survey list")
        close(work, survey)
        return results_reply(ctx, work.session, survey, cmd.actor.timezone)


def close(work: Work, survey: Survey) -> None:
    """Keep the results as they stand, forget who answered, edit the question, and post the results."""
    survey.state, survey.closed_at, survey.due_at = "closed", work.now, None
    survey.results = results_of(work.session, survey).to_dict()
    # One answer per person no longer needs enforcing: drop the keyed hashes.
    work.session.execute(update(SurveyAnswer).where(SurveyAnswer.survey_id == survey.id)
                         .values(respondent_key=None).execution_options(synchronize_session=False))
    survey_privacy.forget(work, survey)
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
    _send(work, survey)
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
        line = Reply(title=f"⏰ {number(survey)} closes {_when(survey.closes_at, zone)}", private=False,
                     text=f"{count} answer{'s' if count != 1 else ''} so far; answer with the buttons above.")
        for key in survey.announcements:
            work.reply_in_thread(key, line, f"{key}:reminder")
        return
    answered = set(work.session.scalars(select(SurveyAnswer.respondent_key)
                                        .where(SurveyAnswer.survey_id == survey.id)).all())
    message = question_message(work.ctx, survey)
    message.title = f"⏰ Reminder: {survey.question}"
    for pid in survey.audience:
        if survey_privacy.respondent_key(work.ctx, work.session, survey, pid) not in answered:
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
