"""``survey …``: the command word, and making a survey (typed or through the form)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

from handlers.core.config_catalogue import SCALES
from handlers.core.context import (Actor, Choice, Command, Context, Form, FormInvalid, Input, Refused, Reply, UserError,
                                   unknown_word)
from handlers.core.words import after_verb, pairs, parse_ahead, parse_time
from handlers.surveys import privacy, satisfaction
from handlers.surveys.asking import answer, close, comment, send
from handlers.surveys.record import (ANSWER_VERBS, NEW_EXAMPLE, audience_text, find, id_from, may_run_surveys, may_see,
                                     number, when_text)
from handlers.surveys.results import list_reply, results_cmd, results_reply
from storage.models import Survey

FIELDS = ("question", "scale", "channel", "people", "group", "anonymous", "comment", "closes", "service")
DEFAULT_OPEN = timedelta(days=5)


# ---- commands -----------------------------------------------------------------------------------------

def survey_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    verb = args[0].lower() if args else "list"
    rest = args[1:]
    if verb == "new":
        return _new(ctx, cmd)
    if verb == "list":
        return list_reply(ctx, cmd)
    if verb == "results":
        return results_cmd(ctx, cmd, id_from(rest, "survey results SRV-3"))
    if verb == "close":
        return close_cmd(ctx, cmd, id_from(rest, "survey close SRV-3"))
    if verb == "answer":
        if len(rest) < 2:
            raise UserError("Say which survey and your answer.", "survey answer SRV-3 4")
        return answer(ctx, cmd, id_from(rest, "survey answer SRV-3 4"), rest[1], " ".join(rest[2:]) or None)
    if verb == "comment":
        survey_id = id_from(rest, 'survey comment SRV-3 "The new VPN client is much faster"')
        return comment(ctx, cmd, survey_id, " ".join(rest[1:]))
    raise unknown_word("survey", args[0], rest, ("new", "list", "results", "close", *ANSWER_VERBS), "survey list")


# ---- making a survey --------------------------------------------------------------------------------------

def _new(ctx: Context, cmd: Command) -> Reply:
    values = pairs(after_verb(cmd.text, "new"), NEW_EXAMPLE)
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
        privacy.open_key(work.session, survey)
        send(work, survey)
        work.audit("survey.new", number(survey), question=survey.question, scale=survey.scale,
                   anonymous=survey.anonymous, audience=survey.audience, closes_at=survey.closes_at.isoformat())
        reply = Reply(title=f"{number(survey)} sent", tone="ok",
                      text=f"*{survey.question}* went to {audience_text(ctx, survey)}; it closes "
                           f"{when_text(survey.closes_at, cmd.actor.timezone)}.",
                      footer=f"survey results {number(survey)} shows how it goes")
    return survey.id, reply


# ---- closing ----------------------------------------------------------------------------------------------

def close_cmd(ctx: Context, cmd: Command, survey_id: int) -> Reply:
    with ctx.change(cmd) as work:
        survey = find(work.session, survey_id, lock=True)
        if not may_see(ctx, cmd.actor.person_id, survey):
            raise Refused(f"Only {number(survey)}'s owner or a service manager can close it.")
        if survey.state != "open":
            raise UserError(f"{number(survey)} is closed already." if survey.state == "closed" else
                            f"{number(survey)} is {survey.state}; it cannot be closed (only when open).", "survey list")
        close(work, survey)
        return results_reply(ctx, work.session, survey, cmd.actor.timezone)
