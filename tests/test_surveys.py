"""Pulse and after-ticket surveys at the handler level (handlers/surveys/commands.py): commands typed by the people of
the demo app.yaml through the one router (or the runtime, as the front ends call it), on the real store with
the test clock. Every test checks what was stored — surveys, answers, audit records, outbox rows.

The people: priya is the service manager; tom owns payments (ticket survey: every ticket, 2 hours after
resolution), lucas owns email (half the tickets, after 30 minutes), sanne owns vpn and hr-portal, grace the
web shop, arjun wms and meera the data platform. surveys: min_respondents 5, retention 365 days, comments
180 days, reminders 24 hours before closing, low score 2. Time starts at T0, Monday 2 March 2026 09:00 UTC
(London is on GMT; Amsterdam is UTC+1)."""
from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from sqlalchemy import func, select

from handlers.core.config_loading import parse_config
from handlers.core.context import Command, Work
from handlers.core.people import console_actor, resolve_actor, sync_people
from handlers.router import dispatch
from handlers.sla.tickets import open_ticket
from handlers.surveys import asking, privacy
from handlers.surveys import commands as surveys
from handlers.surveys import record as survey_record
from storage.models import AuditRecord, Base, Identity, OutboxMessage, Person, Survey, SurveyAnswer, Ticket
from tests.conftest import T0, demo_config

UTC = timezone.utc
ANNOUNCE = [("slack", "C0ANNOUNCE"), ("teams", "19:announce000000000000000000000@thread.tacv2")]
QUESTION = "How satisfied are you with the VPN?"
PEOPLE = ["priya", "tom", "sanne", "arjun", "meera", "lucas", "grace"]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- helpers --------------------------------------------------------------------------------------------

def person(ctx, pid: str, platform: str = "slack"):
    """The actor behind a demo person's account, resolved as a front end would."""
    p = ctx.config.person(pid)
    return resolve_actor(ctx, platform, getattr(p, platform), p.name)


def run(ctx, who, text: str, platform: str = "slack", key: str | None = None):
    actor = person(ctx, who, platform) if isinstance(who, str) else who
    return dispatch(ctx, Command(actor=actor, text=text, delivery_key=key))


def ok(ctx, who, text: str, **kw):
    reply, outcome = run(ctx, who, text, **kw)
    assert outcome == "ok", all_text(reply)
    return reply


def refused(ctx, who, text: str, outcome: str = "user_error", **kw) -> str:
    reply, got = run(ctx, who, text, **kw)
    assert got == outcome, all_text(reply)
    return all_text(reply)


def all_text(reply) -> str:
    out = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(reply.to_dict() if hasattr(reply, "to_dict") else reply)
    return "\n".join(out)


def fields(reply) -> dict[str, str]:
    return {f.label: f.value for s in reply.sections for f in s.fields}


def section(reply, title: str):
    return next((s for s in reply.sections if s.title == title), None)


def new_text(**f) -> str:
    return "survey new " + " ".join(f'{k}="{v}"' for k, v in f.items())


def new_survey(ctx, who: str = "priya", **f) -> int:
    f = {"question": QUESTION, "scale": "csat", "channel": "it-announce", "closes": "in 5 days", **f}
    if "people" in f or "group" in f:
        f.pop("channel")
    f = {k: v for k, v in f.items() if v is not None}
    reply = ok(ctx, who, new_text(**f))
    return int(re.fullmatch(r"SRV-(\d+) sent", reply.title)[1])


def answer(ctx, who, sid: int, value, comment: str = "", platform: str = "slack"):
    return ok(ctx, who, f"survey answer SRV-{sid} {value}" + (f' "{comment}"' if comment else ""), platform=platform)


def respondent_key(ctx, sid: int, pid: str) -> str:
    with ctx.sessions() as s:
        return privacy.respondent_key(ctx, s, s.get(Survey, sid), pid)


def the_survey(ctx, sid: int) -> Survey:
    with ctx.sessions() as s:
        return s.get(Survey, sid)


def answers(ctx, sid: int) -> list[SurveyAnswer]:
    with ctx.sessions() as s:
        return s.scalars(select(SurveyAnswer).where(SurveyAnswer.survey_id == sid).order_by(SurveyAnswer.id)).all()


def outbox(ctx, prefix: str = "") -> list[OutboxMessage]:
    with ctx.sessions() as s:
        return s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith(prefix, autoescape=True))
                         .order_by(OutboxMessage.id)).all()


def keys(ctx, prefix: str = "") -> list[str]:
    return [r.dedupe_key for r in outbox(ctx, prefix)]


def audits(ctx, action: str | None = None) -> list[AuditRecord]:
    with ctx.sessions() as s:
        q = select(AuditRecord).order_by(AuditRecord.id)
        if action:
            q = q.where(AuditRecord.action == action)
        return s.scalars(q).all()


def count(ctx, model) -> int:
    with ctx.sessions() as s:
        return s.scalar(select(func.count()).select_from(model))


def dm_keys(ctx, prefix: str, pid: str) -> list[str]:
    """The demo people are on both platforms; their direct messages go to Slack only."""
    p = ctx.config.person(pid)
    return [f"{prefix}:slack:{p.slack}"]


def deliver(ctx, row_keys) -> None:
    """As if the deliverer had sent these rows: sent, with the platform's message id."""
    with ctx.sessions.begin() as s:
        for key in row_keys:
            row = s.scalar(select(OutboxMessage).where(OutboxMessage.dedupe_key == key))
            row.status, row.sent_at, row.attempts = "sent", ctx.now(), 1
            row.platform_channel = row.target
            row.platform_message_id = f"17724420{row.id:02d}.000100"


def everything(ctx) -> dict:
    """Every row of every table: what a refused command must leave as it was."""
    with ctx.sessions() as s:
        return {t.name: sorted(map(repr, s.execute(select(t)).all())) for t in Base.metadata.sorted_tables}


def rows_mentioning(ctx, needle: str) -> list[tuple[str, str]]:
    found = []
    with ctx.sessions() as s:
        for t in Base.metadata.sorted_tables:
            for row in s.execute(select(t)).all():
                if needle.lower() in repr(tuple(row)).lower():
                    found.append((t.name, repr(tuple(row))))
    return found


def reconfigure(ctx, mutate) -> None:
    cfg = demo_config()
    mutate(cfg)
    ctx.config = parse_config(yaml.safe_dump(cfg, sort_keys=False))
    sync_people(ctx)


def execute(runtime, platform: str, user_id: str, text: str, **kw):
    return asyncio.run(runtime.execute(platform, user_id, text, **kw))


def submit(runtime, platform: str, user_id: str, form: str, values: dict, context: dict):
    return asyncio.run(runtime.submit(platform, user_id, form, values, context))


# === making a survey =========================================================================================

def test_a_channel_survey_is_posted_on_every_platform_of_its_channel(ctx, clock):
    reply = ok(ctx, "priya", new_text(question=QUESTION, scale="csat", channel="it-announce", closes="in 5 days",
                                      service="vpn"))
    assert reply.title == "SRV-1 sent" and reply.tone == "ok"
    assert "#it-announce" in reply.text and QUESTION in reply.text
    assert "Sat 07 Mar 09:00 GMT" in reply.text  # priya is in London

    s = the_survey(ctx, 1)
    assert (s.kind, s.question, s.scale, s.anonymous, s.ask_comment) == ("pulse", QUESTION, "csat", True, True)
    assert (s.audience_kind, s.audience, s.owner, s.service_id, s.ticket_id) == \
        ("channel", ["it-announce"], "priya", "vpn", None)
    assert (s.state, s.created_at, s.opens_at, s.closes_at) == ("open", T0, T0, T0 + timedelta(days=5))
    assert s.reminded is False and s.results is None
    assert s.due_at == T0 + timedelta(days=4)  # the reminder, 24 hours before closing
    assert s.announcements == [f"survey:1:post:{p}:{a}" for p, a in ANNOUNCE]

    posts = outbox(ctx)
    assert [(r.dedupe_key, r.platform, r.target_kind, r.target, r.status, r.subject) for r in posts] == \
        [(f"survey:1:post:{p}:{a}", p, "channel", a, "pending", "SRV-1") for p, a in ANNOUNCE]
    msg = posts[0].message
    assert msg["title"] == f"📋 {QUESTION}" and msg["private"] is False
    assert "Anonymous" in msg["text"]
    (rating,) = msg["sections"]
    assert [b["run"] for b in rating["buttons"]] == [f"survey answer SRV-1 {v}" for v in range(1, 6)]
    assert [b["label"] for b in msg["buttons"]] == ["Answer with a comment"]
    assert msg["buttons"][0]["run"] == "survey comment SRV-1"
    assert "CSAT 1–5" in msg["footer"]

    (record,) = audits(ctx)
    assert (record.action, record.subject, record.platform, record.at) == ("survey.new", "SRV-1", "slack", T0)
    assert {k: record.detail[k] for k in ("question", "scale", "audience", "closes_at")} == \
        {"question": QUESTION, "scale": "csat", "audience": ["it-announce"],
         "closes_at": (T0 + timedelta(days=5)).isoformat()}


def test_a_named_survey_is_audited_with_its_maker(ctx):
    sid = new_survey(ctx, "tom", anonymous="no")
    (record,) = audits(ctx, "survey.new")
    assert (record.subject, record.person_id, record.platform) == (f"SRV-{sid}", "tom", "slack")


def test_an_anonymous_survey_is_audited_with_its_maker_too(ctx):
    # The survey is anonymous for those who answer it, not for the one who sends it: creating it is a
    # change of state like any other, and the audit says who made it (CONTRACT: who, what, when).
    sid = new_survey(ctx, "priya", anonymous="yes")
    (record,) = audits(ctx, "survey.new")
    assert (record.subject, record.person_id) == (f"SRV-{sid}", "priya")
    assert record.detail["anonymous"] is True


def test_several_channels_are_posted_where_each_exists(ctx):
    sid = new_survey(ctx, channel="it-announce,payments-eng")
    assert keys(ctx) == [f"survey:{sid}:post:{p}:{a}" for p, a in ANNOUNCE] + [f"survey:{sid}:post:slack:C0PAYENG01"]
    assert the_survey(ctx, sid).audience == ["it-announce", "payments-eng"]


def test_the_buttons_follow_the_scale(ctx):
    nps = new_survey(ctx, scale="nps", question="Would you recommend the service desk?", comment="no")
    yesno = new_survey(ctx, scale="yesno", question="Is the VPN fast enough?")
    (post, _) = outbox(ctx, f"survey:{nps}:post")
    assert [b["run"] for b in post.message["sections"][0]["buttons"]] == \
        [f"survey answer SRV-{nps} {v}" for v in range(0, 11)]
    assert post.message["buttons"] == []  # no comment box offered
    (post, _) = outbox(ctx, f"survey:{yesno}:post")
    assert [(b["label"], b["run"]) for b in post.message["sections"][0]["buttons"]] == \
        [("Yes", f"survey answer SRV-{yesno} 1"), ("No", f"survey answer SRV-{yesno} 0")]


def test_people_and_a_group_are_asked_by_direct_message_each_once(ctx):
    sid = new_survey(ctx, "tom", people="sanne,tom", group="payments-eng", anonymous="no")
    s = the_survey(ctx, sid)
    assert (s.audience_kind, s.audience, s.anonymous, s.owner) == ("people", ["sanne", "tom", "grace"], False, "tom")
    expected = [k for pid in ("sanne", "tom", "grace") for k in dm_keys(ctx, f"survey:{sid}:ask:{pid}", pid)]
    assert keys(ctx) == expected
    assert s.announcements == expected
    assert {r.target_kind for r in outbox(ctx)} == {"person"}
    assert "Named: the survey's owner sees who answered." in outbox(ctx)[0].message["text"]


def test_closing_times_in_the_askers_zone_or_relative(ctx, clock):
    # sanne is in Amsterdam (UTC+1 in March)
    a = new_survey(ctx, "sanne", closes="2026-03-04 17:30")
    assert the_survey(ctx, a).closes_at == utc(2026, 3, 4, 16, 30)
    b = new_survey(ctx, "priya", closes="in 12 hours")
    assert the_survey(ctx, b).closes_at == T0 + timedelta(hours=12)
    c = new_survey(ctx, "priya", closes="3d")
    assert the_survey(ctx, c).closes_at == T0 + timedelta(days=3)
    d = new_survey(ctx, "priya", closes=None)
    assert the_survey(ctx, d).closes_at == T0 + timedelta(days=5)
    e = new_survey(ctx, "priya", closes="tomorrow 12:00")
    assert the_survey(ctx, e).closes_at == utc(2026, 3, 3, 12, 0)
    # London is on BST from 29 March
    f = new_survey(ctx, "priya", closes="2026-03-30 09:00")
    assert the_survey(ctx, f).closes_at == utc(2026, 3, 30, 8, 0)
    # arjun is in Kolkata, UTC+5:30
    g = new_survey(ctx, "arjun", closes="2026-03-04 17:30")
    assert the_survey(ctx, g).closes_at == utc(2026, 3, 4, 12, 0)
    h = new_survey(ctx, "priya", closes="in 2 weeks")
    assert the_survey(ctx, h).closes_at == T0 + timedelta(weeks=2)


def test_the_service_may_be_named_by_its_name(ctx):
    sid = new_survey(ctx, service="Payments Gateway")
    assert the_survey(ctx, sid).service_id == "payments"


def test_a_survey_must_stay_open_more_than_five_minutes(ctx):
    before = everything(ctx)
    text = refused(ctx, "priya", new_text(question=QUESTION, channel="it-announce", closes="2026-03-02 09:05"))
    assert "closes: the closing time must be at least five minutes from now" in text
    text = refused(ctx, "priya", new_text(question=QUESTION, channel="it-announce", closes="2026-03-01 09:00"))
    assert "at least five minutes from now" in text
    assert everything(ctx) == before
    assert the_survey(ctx, new_survey(ctx, closes="2026-03-02 09:06")).closes_at == utc(2026, 3, 2, 9, 6)


@pytest.mark.parametrize("closes", ["in 9999999 days", "in 99999999999 hours"])
def test_an_impossible_relative_closing_time_is_a_field_error(ctx, closes):
    before = everything(ctx)
    reply, outcome = run(ctx, "priya", new_text(question=QUESTION, channel="it-announce", closes=closes))
    assert outcome == "user_error", all_text(reply)
    assert "closes: " in all_text(reply)
    assert everything(ctx) == before


def test_every_bad_field_is_named_and_nothing_is_written(ctx):
    before = everything(ctx)
    text = refused(ctx, "priya", 'survey new question="" scale=stars channel=nowhere anonymous=perhaps '
                                 'comment=maybe closes=soon service=toaster')
    for expected in ("question: ask a question", "scale: 'stars' is not a scale; scales: csat, nps, yesno",
                     "channel: unknown channel 'nowhere'", "anonymous: 'perhaps' is neither yes nor no",
                     "comment: 'maybe' is neither yes nor no", "closes: 'soon' is not a date and time",
                     "service: unknown service 'toaster'"):
        assert expected in text, text
    assert "survey new question=" in text  # and a right example
    assert everything(ctx) == before


@pytest.mark.parametrize("fields_, message", [
    ('question="Q?" channel=it-announce people=tom', "channel: post in channels or ask people and groups, not both"),
    ('question="Q?"', "channel: say who is asked: channel=…, people=… or group=…"),
    ('question="Q?" people=tom,nobody', "people: unknown person 'nobody'"),
    ('question="Q?" group=night-shift', "group: unknown group 'night-shift'"),
    ('question="Q?" group=cardlink', "group: group 'cardlink' has no members"),
    ('question="' + "x" * 501 + '" channel=it-announce', "question: keep the question under 500 characters"),
    ('question="Q?" channel=it-announce colour=red', "Unknown field: colour. Fields: question, scale, channel"),
    ('question="Q?" channel=it-announce colour=red size=xl', "Unknown fields: colour, size."),
    ('question=Q? channel=it-announce stray', "'stray' is not part of a key=value pair"),
])
def test_wrong_fields_are_refused_with_a_reason(ctx, fields_, message):
    before = everything(ctx)
    assert message in refused(ctx, "priya", "survey new " + fields_)
    assert everything(ctx) == before


def test_a_question_of_exactly_500_characters_is_fine(ctx):
    sid = new_survey(ctx, question="x" * 500)
    assert len(the_survey(ctx, sid).question) == 500


def test_only_service_managers_and_service_owners_run_surveys(ctx):
    stranger = resolve_actor(ctx, "slack", "U0STRANGER", "Sam Stranger")  # someone app.yaml does not know
    before = everything(ctx)
    text = refused(ctx, stranger, new_text(question=QUESTION, channel="it-announce"), outcome="refused")
    assert "Service managers and service owners run surveys." in text
    # the form is not offered either
    assert refused(ctx, stranger, "survey new", outcome="refused")
    assert everything(ctx) == before
    # a service owner who is not a service manager may
    assert the_survey(ctx, new_survey(ctx, "meera")).owner == "meera"


def test_the_role_check_follows_the_configuration(ctx):
    def strip_tom(cfg):
        for s in cfg["services"]:
            if s["owner"] == "tom":
                s["owner"] = "grace"
    reconfigure(ctx, strip_tom)
    assert "Service managers and service owners run surveys." in \
        refused(ctx, "tom", new_text(question=QUESTION, channel="it-announce"), outcome="refused")
    assert count(ctx, Survey) == 0


def test_survey_new_alone_opens_a_form_in_chat_and_asks_for_fields_in_the_console(ctx):
    reply = ok(ctx, "priya", "survey new")
    assert reply.form is not None and reply.form.name == "survey_new"
    assert [i.id for i in reply.form.inputs] == list(surveys.FIELDS)
    assert {c.value for c in reply.form.inputs[2].choices} == set(ctx.config.channels)
    text = refused(ctx, console_actor(ctx, "priya"), "survey new")
    assert "key=value pairs" in text
    assert count(ctx, Survey) == 0


def test_the_new_survey_form_makes_the_same_survey(runtime, ctx):
    out = submit(runtime, "slack", "U0PRIYA01", "survey_new",
                 {"question": "Is the wiki useful?", "scale": "yesno", "people": ["tom", "sanne"],
                  "anonymous": "yes", "comment": "no", "closes": "in 2 days"}, {})
    assert out.outcome == "ok", all_text(out.reply)
    s = the_survey(ctx, 1)
    assert (s.question, s.scale, s.audience_kind, s.audience, s.anonymous, s.ask_comment) == \
        ("Is the wiki useful?", "yesno", "people", ["tom", "sanne"], True, False)
    assert s.closes_at == T0 + timedelta(days=2)
    # wrong answers come back as the form, each beside its field
    out = submit(runtime, "slack", "U0PRIYA01", "survey_new", {"question": "", "channel": ["it-announce"]}, {})
    assert out.outcome == "user_error" and out.invalid is not None
    assert out.invalid.errors == {"question": "ask a question"}
    assert out.reply.form.name == "survey_new"
    assert {i.id: i.error for i in out.reply.form.inputs}["question"] == "ask a question"
    assert {i.id: i.value for i in out.reply.form.inputs}["channel"] == ["it-announce"]
    assert count(ctx, Survey) == 1


# === answering ===============================================================================================

def test_an_anonymous_answer_keeps_no_person_and_only_the_hour(ctx, clock):
    sid = new_survey(ctx)
    clock.advance(minutes=47, seconds=13)
    reply = answer(ctx, "tom", sid, 4)
    assert reply.title == "Thank you" and reply.tone == "ok"
    assert reply.anonymous is True and reply.footer == "Your answer is anonymous."
    assert "*4 (satisfied)*" in reply.text
    assert [(b.label, b.run) for b in reply.buttons] == [("Add a comment", f"survey comment SRV-{sid}")]

    (row,) = answers(ctx, sid)
    assert (row.value, row.person_id, row.comment) == (4, None, None)
    assert row.answered_at == utc(2026, 3, 2, 9, 0)  # 09:47:13, kept to the hour
    assert row.respondent_key == respondent_key(ctx, sid, "tom")
    assert "tom" not in row.respondent_key

    record = audits(ctx, "survey.answer")[-1]
    # Nobody, and no platform either: someone alone on Teams would be named by it.
    assert (record.subject, record.person_id, record.platform) == (f"SRV-{sid}", None, "anonymous")
    assert record.at == utc(2026, 3, 2, 9, 0)  # to the hour, like the answer
    assert record.detail == {"changed": False}  # no value, nobody
    assert outbox(ctx, f"survey:{sid}:post") and not [k for k in keys(ctx) if ":post:" not in k]  # no thank-you DM


def test_a_named_answer_keeps_the_person_the_time_and_the_audited_value(ctx, clock):
    sid = new_survey(ctx, anonymous="no")
    clock.advance(minutes=47)
    reply = answer(ctx, "tom", sid, 2)
    assert reply.anonymous is False and reply.footer == ""
    (row,) = answers(ctx, sid)
    assert (row.value, row.person_id, row.answered_at) == (2, "tom", T0 + timedelta(minutes=47))
    record = audits(ctx, "survey.answer")[-1]
    assert (record.person_id, record.detail) == ("tom", {"changed": False, "value": 2})


def test_changing_an_answer_keeps_one_answer_per_person(ctx, clock):
    sid = new_survey(ctx)
    answer(ctx, "tom", sid, 2)
    clock.advance(hours=2)
    reply = answer(ctx, "tom", sid, 5)
    assert reply.title == "Answer changed"
    (row,) = answers(ctx, sid)
    assert row.value == 5 and row.answered_at == utc(2026, 3, 2, 11, 0)
    assert [r.detail["changed"] for r in audits(ctx, "survey.answer")] == [False, True]
    # the same person on the other platform is still the same person
    reply = answer(ctx, "tom", sid, 3, platform="teams")
    assert reply.title == "Answer changed"
    assert [a.value for a in answers(ctx, sid)] == [3]
    results = ok(ctx, "priya", f"survey results SRV-{sid}")
    assert results.text.startswith("1 answer.")


def test_two_people_give_two_answers(ctx):
    sid = new_survey(ctx)
    answer(ctx, "tom", sid, 2)
    answer(ctx, "sanne", sid, 5)
    answer(ctx, "tom", sid, 4)
    rows = answers(ctx, sid)
    assert sorted(r.value for r in rows) == [4, 5]
    assert {r.respondent_key for r in rows} == {respondent_key(ctx, sid, "tom"), respondent_key(ctx, sid, "sanne")}
    assert len({r.respondent_key for r in rows}) == 2


def test_the_same_person_on_two_surveys_has_different_keys(ctx):
    a, b = new_survey(ctx), new_survey(ctx)
    answer(ctx, "tom", a, 4)
    answer(ctx, "tom", b, 4)
    (ra,), (rb,) = answers(ctx, a), answers(ctx, b)
    assert ra.respondent_key != rb.respondent_key


def test_a_retried_delivery_of_an_answer_changes_nothing_twice(ctx):
    sid = new_survey(ctx)
    ok(ctx, "tom", f"survey answer SRV-{sid} 4", key="Ev0001")
    reply, outcome = run(ctx, "tom", f"survey answer SRV-{sid} 4", key="Ev0001")
    assert outcome == "duplicate"
    assert len(answers(ctx, sid)) == 1 and len(audits(ctx, "survey.answer")) == 1


def test_people_audiences_take_answers_only_from_those_asked(ctx):
    sid = new_survey(ctx, group="platform-ops")  # arjun and meera
    before = everything(ctx)
    assert "was sent to a list of people, and you are not on it" in refused(ctx, "tom", f"survey answer SRV-{sid} 5")
    assert everything(ctx) == before
    answer(ctx, "meera", sid, 5)
    answer(ctx, "arjun", sid, 1)
    assert len(answers(ctx, sid)) == 2


@pytest.mark.parametrize("scale, bad, example", [("csat", "6", "5"), ("csat", "0", "5"), ("nps", "11", "10"),
                                                 ("yesno", "maybe", "0"), ("csat", "great", "5")])
def test_answers_off_the_scale_are_refused(ctx, scale, bad, example):
    sid = new_survey(ctx, scale=scale)
    before = everything(ctx)
    text = refused(ctx, "tom", f"survey answer SRV-{sid} {bad}")
    assert f"'{bad}' is not an answer on this survey's scale" in text
    assert f"/svc survey answer SRV-{sid} {example}" in text
    assert everything(ctx) == before


def test_yes_no_answers_in_words(ctx):
    sid = new_survey(ctx, scale="yesno", question="Is the VPN fast enough?")
    assert "*yes*" in answer(ctx, "tom", sid, "yes").text
    assert "*no*" in answer(ctx, "sanne", sid, "No").text
    assert sorted(a.value for a in answers(ctx, sid)) == [0, 1]


@pytest.mark.parametrize("text, message", [
    ("survey answer", "Say which survey and your answer."),
    ("survey answer SRV-1", "Say which survey and your answer."),
    ("survey answer 1 4", "Say which survey, like SRV-3."),
    ("survey answer SRV-99 4", "There is no SRV-99."),
    ("survey results", "Say which survey, like SRV-3."),
    ("survey results SRV-99", "There is no SRV-99."),
    ("survey close SRV-99", "There is no SRV-99."),
    ("survey frobnicate", "I don't know 'survey frobnicate'."),
])
def test_survey_commands_that_name_no_survey(ctx, text, message):
    new_survey(ctx)
    before = everything(ctx)
    assert message in refused(ctx, "priya", text)
    assert everything(ctx) == before


def test_srv_numbers_without_a_dash_or_in_lower_case(ctx):
    sid = new_survey(ctx)
    ok(ctx, "tom", f"survey answer SRV{sid} 4")
    ok(ctx, "sanne", f"survey answer srv{sid} 5")
    assert len(answers(ctx, sid)) == 2


def test_an_answer_may_carry_a_comment(ctx):
    sid = new_survey(ctx)
    reply = ok(ctx, "tom", f"survey answer SRV-{sid} 4 The new client is much faster")
    assert "with your comment" in reply.text
    assert reply.buttons == []  # a comment is there already
    (row,) = answers(ctx, sid)
    assert (row.value, row.comment) == (4, "The new client is much faster")
    # a later change of the value alone keeps the comment
    answer(ctx, "tom", sid, 3)
    (row,) = answers(ctx, sid)
    assert (row.value, row.comment) == (3, "The new client is much faster")


def test_long_comments_are_cut_at_2000_characters(ctx):
    sid = new_survey(ctx)
    ok(ctx, "tom", f"survey answer SRV-{sid} 4 " + "y" * 2500)
    assert answers(ctx, sid)[0].comment == "y" * 2000


def test_survey_comment_sets_the_comment_of_ones_answer(ctx, clock):
    sid = new_survey(ctx)
    before = everything(ctx)
    text = refused(ctx, "tom", f'survey comment SRV-{sid} "Quicker than last month"')
    assert "Choose an answer first" in text
    assert everything(ctx) == before
    answer(ctx, "tom", sid, 2)
    reply = ok(ctx, "tom", f'survey comment SRV-{sid} "Drops every hour"')
    assert reply.title == "Answer changed" and "*2 (dissatisfied)* with your comment" in reply.text
    (row,) = answers(ctx, sid)
    assert (row.value, row.comment, row.person_id) == (2, "Drops every hour", None)
    # a second comment replaces the first
    ok(ctx, "tom", f"survey comment SRV-{sid} Better since the fix")
    assert answers(ctx, sid)[0].comment == "Better since the fix"


def test_survey_comment_without_text_opens_the_answer_form_in_chat(ctx):
    sid = new_survey(ctx)
    reply = ok(ctx, "tom", f"survey comment SRV-{sid}")
    assert reply.form.name == survey_record.ANSWER_FORM and reply.form.context == {"survey": sid}
    assert {i.id: i.value for i in reply.form.inputs} == {"value": "", "comment": ""}
    assert [c.value for c in reply.form.inputs[0].choices] == ["1", "2", "3", "4", "5"]
    answer(ctx, "tom", sid, 3, "So-so")
    reply = ok(ctx, "tom", f"survey comment SRV-{sid}", platform="teams")
    assert {i.id: i.value for i in reply.form.inputs} == {"value": "3", "comment": "So-so"}
    # the console has no forms
    assert "Give your answer and your comment." in refused(ctx, console_actor(ctx, "tom"), f"survey comment SRV-{sid}")


def test_a_survey_without_a_comment_box_takes_no_survey_comment(ctx):
    sid = new_survey(ctx, comment="no")
    answer(ctx, "tom", sid, 4)
    before = everything(ctx)
    assert "takes no comments; just choose an answer" in refused(ctx, "tom", f"survey comment SRV-{sid} Fine")
    assert everything(ctx) == before
    assert answer(ctx, "sanne", sid, 4).buttons == []  # no "Add a comment" either


def test_a_survey_without_a_comment_box_keeps_no_comment_given_with_the_answer(ctx):
    sid = new_survey(ctx, comment="no")
    run(ctx, "tom", f"survey answer SRV-{sid} 4 Here is a comment anyway")
    assert all(a.comment is None for a in answers(ctx, sid))


def test_the_answer_form_records_value_and_comment(runtime, ctx):
    sid = new_survey(ctx)
    out = submit(runtime, "slack", "U0TOM0002", survey_record.ANSWER_FORM, {"value": "5", "comment": "  Great  "},
                 {"survey": sid})
    assert out.outcome == "ok" and out.reply.anonymous
    (row,) = answers(ctx, sid)
    assert (row.value, row.comment, row.person_id) == (5, "Great", None)
    out = submit(runtime, "slack", "U0TOM0002", survey_record.ANSWER_FORM, {"value": "", "comment": "x"}, {"survey": sid})
    assert out.outcome == "user_error" and out.invalid.errors == {"value": "choose an answer"}
    assert out.reply.form.name == survey_record.ANSWER_FORM
    out = submit(runtime, "slack", "U0TOM0002", survey_record.ANSWER_FORM, {"value": "4"}, {"survey": "SRV-1"})
    assert out.outcome == "user_error" and "does not say which survey" in all_text(out.reply)
    assert [(a.value, a.comment) for a in answers(ctx, sid)] == [(5, "Great")]


@pytest.mark.parametrize("platform, user_id", [("slack", "UNKNOWN123"), ("teams", "0f0e-UNKNOWN123-aad")])
def test_someone_svcbot_never_saw_answers_an_anonymous_channel_survey_without_a_trace(runtime, ctx, clock,
                                                                                     platform, user_id):
    sid = new_survey(ctx)
    people, identities = count(ctx, Person), count(ctx, Identity)
    clock.advance(minutes=20)
    out = execute(runtime, platform, user_id, f"survey answer SRV-{sid} 4", name="Unknown Person")
    assert out.outcome == "ok", all_text(out.reply)
    assert out.reply.anonymous
    out = execute(runtime, platform, user_id, f'survey comment SRV-{sid} "Works from home now"',
                  name="Unknown Person")
    assert out.outcome == "ok", all_text(out.reply)
    assert (count(ctx, Person), count(ctx, Identity)) == (people, identities)
    (row,) = answers(ctx, sid)
    assert (row.value, row.comment, row.person_id, row.answered_at) == (4, "Works from home now", None, T0)
    assert all(r.person_id is None for r in audits(ctx, "survey.answer"))
    assert rows_mentioning(ctx, "UNKNOWN123") == []
    assert rows_mentioning(ctx, "Unknown Person") == []
    # a second click from the same account changes the same answer
    execute(runtime, platform, user_id, f"survey answer SRV-{sid} 2")
    assert [a.value for a in answers(ctx, sid)] == [2]
    assert rows_mentioning(ctx, "UNKNOWN123") == []
    # the answer form too
    out = submit(runtime, platform, user_id, survey_record.ANSWER_FORM, {"value": "5", "comment": "Via the form"},
                 {"survey": sid})
    assert out.outcome == "ok", all_text(out.reply)
    assert [(a.value, a.comment) for a in answers(ctx, sid)] == [(5, "Via the form")]
    assert rows_mentioning(ctx, "UNKNOWN123") == [] and count(ctx, Person) == people


def test_someone_svcbot_never_saw_is_not_on_a_list_of_people(runtime, ctx):
    sid = new_survey(ctx, people="tom,sanne")
    before = everything(ctx)
    out = execute(runtime, "slack", "UNKNOWN123", f"survey answer SRV-{sid} 4")
    assert out.outcome == "user_error" and "you are not on it" in all_text(out.reply)
    assert everything(ctx) == before


def test_other_commands_still_register_a_newcomer(runtime, ctx):
    # the contrast: only answering goes unregistered
    execute(runtime, "slack", "UNKNOWN123", "status", name="Unknown Person")
    assert rows_mentioning(ctx, "UNKNOWN123")


def test_a_closed_survey_refuses_answers_politely_and_changes_nothing(ctx, clock):
    sid = new_survey(ctx)
    answer(ctx, "tom", sid, 4)
    clock.advance(hours=1)
    ok(ctx, "priya", f"survey close SRV-{sid}")
    before = everything(ctx)
    for text in (f"survey answer SRV-{sid} 1", f"survey comment SRV-{sid} Too late?"):
        message = refused(ctx, "tom", text)
        assert f"SRV-{sid} closed on Mon 02 Mar 10:00 GMT, so it takes no more answers. Thank you all the same." \
            in message
    assert "takes no more answers" in refused(ctx, "sanne", f"survey answer SRV-{sid} 5")
    assert everything(ctx) == before


# === results =================================================================================================

def answer_all(ctx, sid: int, values: dict[str, object]) -> None:
    for who, value in values.items():
        answer(ctx, who, sid, value)


def test_csat_results_with_response_rate_and_distribution(ctx):
    sid = new_survey(ctx, people=",".join(PEOPLE), anonymous="no", service="vpn")
    # 5, 5, 4 satisfied of 5 answers: CSAT 60 %; 5 of the 7 asked answered: 71 %
    answer_all(ctx, sid, {"tom": 5, "sanne": 5, "arjun": 4, "meera": 2, "lucas": 1})
    reply = ok(ctx, "priya", f"survey results SRV-{sid}")
    assert reply.title == f"SRV-{sid} results: {QUESTION}"
    assert fields(reply) == {"Answers": "5 answers of 7 asked (71 %)", "CSAT": "60 %"}
    assert section(reply, "Distribution").text == "\n".join([
        "```",
        "   5 (very satisfied)  ████░░░░░░ 2",
        "        4 (satisfied)  ██░░░░░░░░ 1",
        "          3 (neither)  ░░░░░░░░░░ 0",
        "     2 (dissatisfied)  ██░░░░░░░░ 1",
        "1 (very dissatisfied)  ██░░░░░░░░ 1",
        "```"])
    assert section(reply, "Comments") is None
    # 60 % is under 80 %: worth an improvement
    assert [(b.label, b.run) for b in reply.buttons] == [("Raise a CSI item", f"csi add survey=SRV-{sid} service=vpn")]
    assert reply.footer.startswith(f"SRV-{sid} · CSAT 1–5 · open until ")
    assert "anonymous" not in reply.footer


def test_nps_results_of_a_channel_survey(ctx):
    sid = new_survey(ctx, scale="nps", question="Would you recommend the service desk?")
    # promoters 10, 10, 9 (50 %), detractors 6 and 3 (33.3 %): +16.7
    answer_all(ctx, sid, {"tom": 10, "sanne": 10, "arjun": 9, "meera": 8, "lucas": 6, "grace": 3})
    reply = ok(ctx, "priya", f"survey results SRV-{sid}")
    assert fields(reply) == {"Answers": "6 answers", "NPS": "+17"}  # a channel's readers are not counted
    lines = section(reply, "Distribution").text.strip("`\n").splitlines()
    assert [line.split()[0] for line in lines] == [str(v) for v in range(10, -1, -1)]
    assert [int(line.split()[-1]) for line in lines] == [2, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0]
    assert reply.buttons == []  # positive and no comments
    assert reply.footer.endswith(" · anonymous")


def test_nps_below_zero_offers_an_improvement(ctx):
    sid = new_survey(ctx, scale="nps", question="Would you recommend the service desk?", anonymous="no")
    answer_all(ctx, sid, {"tom": 10, "sanne": 6, "arjun": 0})
    reply = ok(ctx, "priya", f"survey results SRV-{sid}")
    assert fields(reply)["NPS"] == "-33"
    assert [b.label for b in reply.buttons] == ["Raise a CSI item"]


def test_yes_no_results(ctx):
    sid = new_survey(ctx, scale="yesno", question="Is the VPN fast enough?", people="tom,sanne,arjun,meera",
                     anonymous="no")
    answer_all(ctx, sid, {"tom": "yes", "sanne": "yes", "arjun": "no"})
    reply = ok(ctx, "priya", f"survey results SRV-{sid}")
    assert fields(reply) == {"Answers": "3 answers of 4 asked (75 %)", "Yes": "67 %"}
    assert section(reply, "Distribution").text == "```\nyes  ███████░░░ 2\n no  ███░░░░░░░ 1\n```"
    assert reply.buttons == []


def test_anonymous_results_stay_hidden_below_the_minimum(ctx):
    sid = new_survey(ctx)
    answer_all(ctx, sid, {"tom": 1, "sanne": 1, "arjun": 2})
    ok(ctx, "meera", f"survey answer SRV-{sid} 5 Only meera would say this")
    reply = ok(ctx, "priya", f"survey results SRV-{sid}")
    assert reply.text == ("4 answers. The results of an anonymous survey show once 5 people have answered, so that "
                          "no answer can be traced to anyone.")
    assert reply.sections == [] and reply.buttons == []
    assert "Only meera would say this" not in all_text(reply)
    # exactly the minimum shows them
    answer(ctx, "lucas", sid, 4)
    reply = ok(ctx, "priya", f"survey results SRV-{sid}")
    assert fields(reply) == {"Answers": "5 answers", "CSAT": "40 %"}
    assert section(reply, "Comments").text == "> Only meera would say this"  # and no name


def test_hidden_results_still_count_the_people_asked(ctx):
    sid = new_survey(ctx, people=",".join(PEOPLE))
    answer_all(ctx, sid, {"tom": 4, "sanne": 4})
    reply = ok(ctx, "priya", f"survey results SRV-{sid}")
    assert reply.text.startswith("2 answers of 7 asked (29 %). The results of an anonymous survey show once 5 ")


def test_the_minimum_follows_the_configuration(ctx):
    reconfigure(ctx, lambda c: c["surveys"].update(min_respondents=2))
    sid = new_survey(ctx)
    answer(ctx, "tom", sid, 4)
    assert "show once 2 people have answered" in ok(ctx, "priya", f"survey results SRV-{sid}").text
    answer(ctx, "sanne", sid, 5)
    assert fields(ok(ctx, "priya", f"survey results SRV-{sid}"))["CSAT"] == "100 %"


def test_named_results_show_from_the_first_answer_with_names_beside_comments(ctx, clock):
    sid = new_survey(ctx, anonymous="no", service="vpn")
    ok(ctx, "tom", f"survey answer SRV-{sid} 5 Works well")
    clock.advance(hours=1)
    ok(ctx, "sanne", f"survey answer SRV-{sid} 4 Faster than before")
    reply = ok(ctx, "priya", f"survey results SRV-{sid}")
    assert fields(reply) == {"Answers": "2 answers", "CSAT": "100 %"}
    # newest first
    assert section(reply, "Comments").text == "> Faster than before — Sanne de Vries\n> Works well — Tom Hughes"
    # a good score with comments still offers an improvement
    assert [(b.label, b.run) for b in reply.buttons] == [("Raise a CSI item", f"csi add survey=SRV-{sid} service=vpn")]


def test_results_while_open_are_for_the_owner_and_service_managers(ctx, clock):
    sid = new_survey(ctx, "lucas", service="email", anonymous="no")
    answer(ctx, "tom", sid, 4)
    assert ok(ctx, "lucas", f"survey results SRV-{sid}").title.startswith(f"SRV-{sid} results")
    assert ok(ctx, "priya", f"survey results SRV-{sid}").title.startswith(f"SRV-{sid} results")
    text = refused(ctx, "tom", f"survey results SRV-{sid}", outcome="refused")
    assert "still open: its owner and the service managers see its results until it closes" in text
    clock.advance(hours=2)
    ok(ctx, "lucas", f"survey close SRV-{sid}")
    reply = ok(ctx, "tom", f"survey results SRV-{sid}")
    assert fields(reply)["CSAT"] == "100 %"
    assert reply.footer.startswith(f"SRV-{sid} · CSAT 1–5 · closed Mon 02 Mar 11:00 GMT")


def close_with(ctx, clock, values: dict, **f) -> int:
    sid = new_survey(ctx, **f)
    answer_all(ctx, sid, values)
    clock.advance(hours=1)
    ok(ctx, "priya", f"survey close SRV-{sid}")
    return sid


FIVE_40 = {"tom": 5, "sanne": 4, "arjun": 1, "meera": 1, "lucas": 2}   # CSAT 40 %
FIVE_60 = {"tom": 5, "sanne": 4, "arjun": 4, "meera": 1, "lucas": 2}   # CSAT 60 %


def test_the_trend_compares_with_the_last_closed_survey_of_the_same_question(ctx, clock):
    first = close_with(ctx, clock, FIVE_40)
    second = new_survey(ctx, question=QUESTION.upper())  # the same question, however typed
    answer_all(ctx, second, FIVE_60)
    reply = ok(ctx, "priya", f"survey results SRV-{second}")
    assert fields(reply)["Trend"] == f"▲ +20 points since SRV-{first} (40 %)"
    # and the other way round, against the newest earlier one
    clock.advance(hours=1)
    ok(ctx, "priya", f"survey close SRV-{second}")
    third = new_survey(ctx)
    answer_all(ctx, third, FIVE_40)
    assert fields(ok(ctx, "priya", f"survey results SRV-{third}"))["Trend"] == f"▼ -20 points since SRV-{second} (60 %)"
    fourth = new_survey(ctx)  # no trend from an open survey
    answer_all(ctx, fourth, FIVE_40)
    clock.advance(hours=1)
    ok(ctx, "priya", f"survey close SRV-{third}")
    assert fields(ok(ctx, "priya", f"survey results SRV-{fourth}"))["Trend"] == f"= +0 points since SRV-{third} (40 %)"


def test_no_trend_across_questions_or_scales_or_from_an_open_survey(ctx, clock):
    close_with(ctx, clock, FIVE_40)
    other_question = new_survey(ctx, question="How satisfied are you with email?")
    other_scale = new_survey(ctx, scale="nps")
    open_first = new_survey(ctx, question="Another question?")
    open_second = new_survey(ctx, question="Another question?")
    for sid in (other_question, other_scale, open_first, open_second):
        answer_all(ctx, sid, {"tom": 5, "sanne": 5, "arjun": 5, "meera": 5, "lucas": 5})
        assert "Trend" not in fields(ok(ctx, "priya", f"survey results SRV-{sid}"))


def test_no_trend_against_hidden_results(ctx, clock):
    close_with(ctx, clock, {"tom": 5, "sanne": 1})  # anonymous, two answers: hidden
    sid = new_survey(ctx)
    answer_all(ctx, sid, FIVE_60)
    assert "Trend" not in fields(ok(ctx, "priya", f"survey results SRV-{sid}"))


def test_nps_trend_has_no_points_unit(ctx, clock):
    q = "Would you recommend the service desk?"
    first = close_with(ctx, clock, {"tom": 10, "sanne": 0, "arjun": 0, "meera": 7, "lucas": 7}, scale="nps", question=q)
    sid = new_survey(ctx, scale="nps", question=q)
    answer_all(ctx, sid, {"tom": 10, "sanne": 10, "arjun": 0, "meera": 7, "lucas": 7})
    # before: 20 % promoters - 40 % detractors = -20; now: 40 % - 20 % = +20; a rise of 40
    reply = ok(ctx, "priya", f"survey results SRV-{sid}")
    assert fields(reply)["NPS"] == "+20"
    assert fields(reply)["Trend"] == f"▲ +40 since SRV-{first} (-20)"


def test_survey_list_shows_open_and_recently_closed_pulse_surveys(ctx, clock):
    assert ok(ctx, "tom", "survey list").title == "No pulse surveys yet"
    assert ok(ctx, "tom", "survey").title == "No pulse surveys yet"  # list is the default
    shown = close_with(ctx, clock, FIVE_60)
    hidden = close_with(ctx, clock, {"tom": "yes", "sanne": "no"}, question="Is the wiki useful?",
                        scale="yesno")
    open_ = new_survey(ctx, question="How is the new laptop?")
    answer_all(ctx, open_, {"tom": 4, "sanne": 3})
    reply = ok(ctx, "tom", "survey list")
    assert reply.title == "Pulse surveys"
    assert section(reply, "Open").text == \
        f"*SRV-{open_}* How is the new laptop? — 2 answers, closes Sat 07 Mar 11:00 GMT"
    assert section(reply, "Recently closed").text.splitlines() == [
        f"*SRV-{hidden}* Is the wiki useful? — 2 answers, results hidden",
        f"*SRV-{shown}* {QUESTION} — 5 answers, CSAT 60 %"]


# === closing =================================================================================================

def test_closing_keeps_the_results_forgets_who_answered_and_tells_everyone_once(ctx, clock):
    sid = new_survey(ctx, service="vpn")
    posts = the_survey(ctx, sid).announcements
    deliver(ctx, posts)
    answer_all(ctx, sid, {"tom": 5, "sanne": 4, "arjun": 1, "meera": 1})
    ok(ctx, "lucas", f"survey answer SRV-{sid} 2 Drops all the time")
    assert all(a.respondent_key for a in answers(ctx, sid))
    clock.advance(hours=3)
    before = everything(ctx)
    assert "Only SRV-1's owner or a service manager can close it." in \
        refused(ctx, "tom", f"survey close SRV-{sid}", outcome="refused")
    assert everything(ctx) == before

    reply = ok(ctx, "priya", f"survey close SRV-{sid}")
    assert reply.title == f"SRV-{sid} results: {QUESTION}"
    assert fields(reply) == {"Answers": "5 answers", "CSAT": "40 %"}
    s = the_survey(ctx, sid)
    assert (s.state, s.closed_at, s.due_at) == ("closed", T0 + timedelta(hours=3), None)
    assert s.results == {"scale": "csat", "answers": 5, "invited": None,
                         "distribution": {"1": 2, "2": 1, "3": 0, "4": 1, "5": 1}}
    assert [a.respondent_key for a in answers(ctx, sid)] == [None] * 5
    (record,) = audits(ctx, "survey.close")
    assert (record.subject, record.person_id, record.detail) == (f"SRV-{sid}", "priya", {"answers": 5})

    # the posts are edited to say it is closed
    edits = [r for r in outbox(ctx) if r.target_kind == "edit"]
    assert [(r.dedupe_key, r.anchor_key, r.platform, r.target) for r in edits] == \
        [(f"{k}:closed", k, p, a) for k, (p, a) in zip(posts, ANNOUNCE)]
    assert edits[0].message["title"] == f"SRV-{sid} closed: {QUESTION}"
    assert edits[0].message["sections"] == [] and edits[0].message["private"] is False
    # the results go into each post's thread, without the owner's buttons
    threads = outbox(ctx, f"survey:{sid}:post:")
    threads = [r for r in threads if r.dedupe_key.endswith(":results")]
    assert [(r.dedupe_key, r.anchor_key, r.target_kind) for r in threads] == \
        [(f"{k}:results", k, "channel") for k in posts]
    assert threads[0].message["private"] is False and threads[0].message["buttons"] == []
    assert "> Drops all the time" in all_text(threads[0].message)
    # and to the owner, by direct message, with the button
    owner = outbox(ctx, f"survey:{sid}:results:owner")
    assert [r.dedupe_key for r in owner] == dm_keys(ctx, f"survey:{sid}:results:owner", "priya")
    assert [b["label"] for b in owner[0].message["buttons"]] == ["Raise a CSI item"]

    # closing again changes nothing; nor does the sweep
    rows = keys(ctx)
    assert f"SRV-{sid} is closed already." in refused(ctx, "priya", f"survey close SRV-{sid}")
    clock.advance(days=6)
    assert asking.sweep(ctx) == 0
    assert keys(ctx) == rows


def test_closing_before_the_posts_went_out_sends_the_closed_post_instead(ctx, clock):
    sid = new_survey(ctx)
    clock.advance(hours=1)
    ok(ctx, "priya", f"survey close SRV-{sid}")
    posts = outbox(ctx, f"survey:{sid}:post")
    by_key = {r.dedupe_key: r for r in posts}
    for key in the_survey(ctx, sid).announcements:
        assert by_key[key].message["title"] == f"SRV-{sid} closed: {QUESTION}"
        assert f"{key}:closed" not in by_key
    assert not [r for r in posts if r.target_kind == "edit"]


def test_the_owner_of_a_people_survey_may_close_it_and_the_dms_are_edited(ctx, clock):
    sid = new_survey(ctx, "lucas", people="tom,sanne", anonymous="no")
    asked = the_survey(ctx, sid).announcements
    deliver(ctx, asked)
    answer(ctx, "tom", sid, 4)
    clock.advance(hours=1)
    reply = ok(ctx, "lucas", f"survey close SRV-{sid}")
    assert fields(reply)["Answers"] == "1 answer of 2 asked (50 %)"
    assert the_survey(ctx, sid).results["invited"] == 2
    assert [r.dedupe_key for r in outbox(ctx) if r.target_kind == "edit"] == [f"{k}:closed" for k in asked]
    assert keys(ctx, f"survey:{sid}:results") == dm_keys(ctx, f"survey:{sid}:results:owner", "lucas")
    assert not [k for k in keys(ctx) if k.endswith(":results") or k.endswith(":reminder")]  # no channel thread


def test_closing_never_shows_hidden_results_to_anyone(ctx, clock):
    sid = new_survey(ctx)
    deliver(ctx, the_survey(ctx, sid).announcements)
    ok(ctx, "tom", f"survey answer SRV-{sid} 1 Only tom says this")
    answer(ctx, "sanne", sid, 5)
    clock.advance(hours=1)
    reply = ok(ctx, "priya", f"survey close SRV-{sid}")
    assert reply.text.startswith("2 answers. The results of an anonymous survey show once 5 people have answered")
    told = [r for r in outbox(ctx) if r.dedupe_key.endswith(":results") or ":results:owner:" in r.dedupe_key]
    assert len(told) == 3  # two threads, the owner on one platform
    for row in told:
        assert row.message["text"].startswith("2 answers. The results of an anonymous survey show once 5 ")
        assert row.message["sections"] == [] and row.message["buttons"] == []
        assert "Only tom says this" not in all_text(row.message)
    # and they stay hidden once closed, for anyone
    assert "Only tom says this" not in all_text(ok(ctx, "meera", f"survey results SRV-{sid}"))
    assert "results hidden" in all_text(ok(ctx, "meera", "survey list"))


def test_the_sweep_closes_a_survey_when_it_is_due_once(ctx, clock):
    sid = new_survey(ctx, closes="in 12 hours")  # shorter than the reminder: no reminder
    assert the_survey(ctx, sid).due_at == T0 + timedelta(hours=12)
    answer_all(ctx, sid, {"tom": 4, "sanne": 5})
    clock.to(T0 + timedelta(hours=12) - timedelta(seconds=1))
    assert asking.sweep(ctx) == 0
    assert the_survey(ctx, sid).state == "open"
    clock.advance(seconds=1)
    assert asking.sweep(ctx) == 1
    s = the_survey(ctx, sid)
    assert (s.state, s.closed_at, s.results["answers"]) == ("closed", T0 + timedelta(hours=12), 2)
    assert [a.respondent_key for a in answers(ctx, sid)] == [None, None]
    (record,) = audits(ctx, "survey.close")
    assert (record.person_id, record.platform) == ("svcbot", "system")
    rows = keys(ctx)
    assert keys(ctx, f"survey:{sid}:results:owner") == dm_keys(ctx, f"survey:{sid}:results:owner", "priya")
    assert not [k for k in rows if "remind" in k]
    for _ in range(3):
        clock.advance(hours=1)
        assert asking.sweep(ctx) == 0
    assert keys(ctx) == rows


def test_a_late_sweep_closes_without_reminding(ctx, clock):
    sid = new_survey(ctx, people="tom,sanne", closes="in 3 days")
    clock.advance(days=4)
    assert asking.sweep(ctx) == 1
    assert the_survey(ctx, sid).state == "closed"
    assert not [k for k in keys(ctx) if "remind" in k]


# === reminders ===============================================================================================

def test_those_who_have_not_answered_are_reminded_once_a_day_before_closing(ctx, clock):
    sid = new_survey(ctx, people="sanne,tom,grace", closes="in 3 days")
    assert the_survey(ctx, sid).due_at == T0 + timedelta(days=2)
    answer(ctx, "tom", sid, 4)
    clock.to(T0 + timedelta(days=2) - timedelta(minutes=1))
    assert asking.sweep(ctx) == 0
    assert not keys(ctx, f"survey:{sid}:remind")
    clock.advance(minutes=1)
    assert asking.sweep(ctx) == 1
    reminders = outbox(ctx, f"survey:{sid}:remind")
    assert [r.dedupe_key for r in reminders] == \
        dm_keys(ctx, f"survey:{sid}:remind:sanne", "sanne") + dm_keys(ctx, f"survey:{sid}:remind:grace", "grace")
    assert reminders[0].target_kind == "person"
    assert reminders[0].message["title"] == f"⏰ Reminder: {QUESTION}"
    assert [b["run"] for b in reminders[0].message["sections"][0]["buttons"]] == \
        [f"survey answer SRV-{sid} {v}" for v in range(1, 6)]
    s = the_survey(ctx, sid)
    assert (s.reminded, s.due_at, s.state) == (True, T0 + timedelta(days=3), "open")
    # once only
    rows = keys(ctx)
    clock.advance(hours=12)
    assert asking.sweep(ctx) == 0
    answer(ctx, "sanne", sid, 5)
    clock.advance(hours=11)
    assert asking.sweep(ctx) == 0
    assert keys(ctx) == rows
    clock.advance(hours=1)
    assert asking.sweep(ctx) == 1
    assert the_survey(ctx, sid).state == "closed"
    assert len(keys(ctx, f"survey:{sid}:remind")) == 2


def test_a_reminder_waits_for_the_end_of_each_person_s_quiet_hours_and_goes_once(ctx, clock):
    # Sanne keeps quiet hours of her own, 22:00–06:30 in Europe/Amsterdam (CET, UTC+1 in March); Grace has
    # none of her own, so those of her team's calendar (payments-eng: london, 21:00–07:00, GMT) hold hers.
    cfg = demo_config()
    next(p for p in cfg["people"] if p["id"] == "sanne")["quiet_hours"] = "22:00-06:30"
    ctx.config = parse_config(yaml.safe_dump(cfg, sort_keys=False))
    clock.to(T0 + timedelta(hours=13, minutes=30))  # Mon 22:30 UTC
    sid = new_survey(ctx, people="sanne,grace,arjun", closes="in 2 days")
    clock.advance(days=1)  # the reminder, Tue 22:30 UTC: 23:30 for Sanne, 22:30 for Grace, 04:00 for Arjun
    assert asking.sweep(ctx) == 1
    release = {r.dedupe_key.split(":")[3]: r.next_attempt_at for r in outbox(ctx, f"survey:{sid}:remind")}
    wednesday = T0 + timedelta(days=2)
    assert release == {"sanne": wednesday.replace(hour=5, minute=30),  # 06:30 CET
                       "grace": wednesday.replace(hour=7),  # 07:00 GMT
                       "arjun": clock()}  # no quiet hours: at once
    rows = keys(ctx)
    for hour in (1, 6, 8):  # the night passes: nothing is written again, nothing dropped
        clock.to(wednesday.replace(hour=hour))
        asking.sweep(ctx)
    assert keys(ctx) == rows and len(keys(ctx, f"survey:{sid}:remind")) == 3  # one platform each
    assert {r.status for r in outbox(ctx, f"survey:{sid}:remind")} == {"pending"}


def test_a_named_survey_reminds_the_same_way(ctx, clock):
    sid = new_survey(ctx, people="sanne,tom", anonymous="no", closes="in 2 days")
    answer(ctx, "sanne", sid, 4)
    clock.advance(days=1)
    asking.sweep(ctx)
    assert keys(ctx, f"survey:{sid}:remind") == dm_keys(ctx, f"survey:{sid}:remind:tom", "tom")


def test_nobody_is_reminded_when_everyone_answered(ctx, clock):
    sid = new_survey(ctx, people="sanne,tom", closes="in 2 days")
    answer_all(ctx, sid, {"sanne": 4, "tom": 2})
    clock.advance(days=1)
    assert asking.sweep(ctx) == 1
    assert the_survey(ctx, sid).reminded and not keys(ctx, f"survey:{sid}:remind")


def test_a_channel_gets_one_line_in_the_thread(ctx, clock):
    sid = new_survey(ctx, closes="in 3 days")
    posts = the_survey(ctx, sid).announcements
    answer_all(ctx, sid, {"tom": 4, "sanne": 5})
    clock.advance(days=2)
    assert asking.sweep(ctx) == 1
    lines = [r for r in outbox(ctx) if r.dedupe_key.endswith(":reminder")]
    assert [(r.dedupe_key, r.anchor_key, r.target_kind) for r in lines] == \
        [(f"{k}:reminder", k, "channel") for k in posts]
    assert lines[0].message["title"] == f"⏰ SRV-{sid} closes Thu 05 Mar 09:00 GMT"
    assert lines[0].message["text"] == "2 answers so far; answer with the buttons above."
    assert lines[0].message["private"] is False
    assert not [k for k in keys(ctx) if ":remind:" in k]  # nobody by name
    clock.advance(hours=1)
    assert asking.sweep(ctx) == 0
    assert len([k for k in keys(ctx) if k.endswith(":reminder")]) == 2


def test_the_reminder_time_follows_the_configuration(ctx, clock):
    reconfigure(ctx, lambda c: c["surveys"].update(reminder_hours=2))
    sid = new_survey(ctx, people="tom", closes="in 12 hours")
    assert the_survey(ctx, sid).due_at == T0 + timedelta(hours=10)
    clock.advance(hours=10)
    asking.sweep(ctx)
    assert keys(ctx, f"survey:{sid}:remind") == dm_keys(ctx, f"survey:{sid}:remind:tom", "tom")


# === who sees names ==========================================================================================

def test_the_public_thread_of_a_named_survey_names_nobody(ctx, clock):
    sid = new_survey(ctx, anonymous="no")
    assert "Named: the survey's owner sees who answered." in outbox(ctx)[0].message["text"]
    ok(ctx, "tom", f"survey answer SRV-{sid} 2 My manager should not read this")
    clock.advance(hours=1)
    ok(ctx, "priya", f"survey close SRV-{sid}")
    public = [r for r in outbox(ctx) if r.dedupe_key.endswith(":results")]
    assert public and all(r.message["private"] is False for r in public)
    assert "Tom Hughes" not in all_text(public[0].message)


def test_once_closed_others_see_a_named_surveys_results_without_names(ctx, clock):
    sid = new_survey(ctx, people="tom,sanne", anonymous="no")
    ok(ctx, "tom", f"survey answer SRV-{sid} 2 My manager should not read this")
    clock.advance(hours=1)
    ok(ctx, "priya", f"survey close SRV-{sid}")
    assert "Tom Hughes" in all_text(ok(ctx, "priya", f"survey results SRV-{sid}"))  # the owner sees who
    reply = ok(ctx, "sanne", f"survey results SRV-{sid}")
    assert "My manager should not read this" in all_text(reply) and "Tom Hughes" not in all_text(reply)


# === after-ticket surveys ====================================================================================

def open_incident(ctx, who, service: str = "payments", title: str = "Card payments fail") -> int:
    reply = ok(ctx, who, f"incident new {service} P3 {title}")
    return int(re.match(r"INC-(\d+) opened", reply.title)[1])


def ticket_survey_of(ctx, tid: int) -> Survey | None:
    with ctx.sessions() as s:
        return s.scalar(select(Survey).where(Survey.ticket_id == tid))


def surveyed(ctx, clock, requester: str = "sanne", title: str = "Card payments fail") -> tuple[int, int]:
    """A payments ticket of the requester's, resolved by tom, and its survey sent two hours later."""
    tid = open_incident(ctx, requester, title=title)
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    clock.advance(hours=2)
    asking.sweep(ctx)
    survey = ticket_survey_of(ctx, tid)
    assert survey.state == "open"
    return tid, survey.id


def test_resolving_a_ticket_schedules_its_requesters_survey_after_the_delay(ctx, clock):
    tid = open_incident(ctx, "sanne")
    clock.advance(hours=1)
    resolved = clock()
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    s = ticket_survey_of(ctx, tid)
    assert (s.kind, s.scale, s.state, s.anonymous, s.ask_comment, s.reminded) == \
        ("ticket", "csat", "scheduled", False, True, True)
    assert (s.audience_kind, s.audience, s.owner, s.service_id) == ("people", ["sanne"], "tom", "payments")
    assert s.question == f"How satisfied are you with how INC-{tid} was handled?"
    assert (s.opens_at, s.due_at, s.closes_at) == \
        (resolved + timedelta(hours=2), resolved + timedelta(hours=2), resolved + timedelta(hours=2, days=7))
    (record,) = audits(ctx, "survey.scheduled")
    assert (record.subject, record.person_id, record.detail) == \
        (f"INC-{tid}", "tom", {"requester": "sanne", "opens_at": (resolved + timedelta(hours=2)).isoformat()})
    assert not keys(ctx, "survey:")
    # not open for answers yet
    assert f"SRV-{s.id} is not open for answers." in refused(ctx, "sanne", f"survey answer SRV-{s.id} 5")

    clock.advance(hours=2, seconds=-1)
    assert asking.sweep(ctx) == 0
    assert not keys(ctx, "survey:")
    clock.advance(seconds=1)
    assert asking.sweep(ctx) == 1
    s = ticket_survey_of(ctx, tid)
    assert (s.state, s.due_at) == ("open", s.closes_at)  # no reminder for a ticket survey
    sent = outbox(ctx, f"survey:{s.id}:ask")
    assert [r.dedupe_key for r in sent] == dm_keys(ctx, f"survey:{s.id}:ask:sanne", "sanne")
    assert sent[0].message["title"] == f"📋 How satisfied are you with how INC-{tid} was handled?"
    assert "Named" in sent[0].message["text"]
    (record,) = audits(ctx, "survey.sent")
    assert (record.subject, record.person_id, record.detail) == (f"SRV-{s.id}", "svcbot", {"ticket": f"INC-{tid}"})
    # a ticket survey is not a pulse survey
    assert ok(ctx, "priya", "survey list").title == "No pulse surveys yet"

    rows = keys(ctx)
    for _ in range(3):
        clock.advance(hours=6)
        assert asking.sweep(ctx) == 0
    assert keys(ctx) == rows


def test_a_ticket_survey_is_named_and_only_for_the_requester(ctx, clock):
    tid, sid = surveyed(ctx, clock)
    assert "you are not on it" in refused(ctx, "tom", f"survey answer SRV-{sid} 5")
    clock.advance(minutes=13)
    answer(ctx, "sanne", sid, 4)
    (row,) = answers(ctx, sid)
    assert (row.person_id, row.value, row.answered_at) == ("sanne", 4, clock())


def test_a_ticket_survey_closes_after_seven_days_without_a_reminder_or_results_dm(ctx, clock):
    tid, sid = surveyed(ctx, clock)
    deliver(ctx, the_survey(ctx, sid).announcements)
    answer(ctx, "sanne", sid, 5)
    clock.advance(days=7, seconds=-1)
    assert asking.sweep(ctx) == 0
    clock.advance(seconds=1)
    assert asking.sweep(ctx) == 1
    s = the_survey(ctx, sid)
    assert s.state == "closed" and s.results["answers"] == 1 and s.results["invited"] == 1
    assert [k for k in keys(ctx) if ":remind" in k or ":results" in k] == []
    assert [r.dedupe_key for r in outbox(ctx) if r.target_kind == "edit"] == \
        [f"{k}:closed" for k in dm_keys(ctx, f"survey:{sid}:ask:sanne", "sanne")]
    assert audits(ctx, "survey.close")[-1].detail == {"answers": 1}


def test_each_ticket_is_surveyed_once(ctx, clock):
    tid, sid = surveyed(ctx, clock)
    ok(ctx, "tom", f"incident reopen INC-{tid}")
    clock.advance(hours=1)
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    clock.advance(hours=3)
    asking.sweep(ctx)
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Survey)) == 1
    assert len(keys(ctx, f"survey:{sid}:ask")) == 1
    assert len(audits(ctx, "survey.scheduled")) == 1 and len(audits(ctx, "survey.sent")) == 1
    # closing the ticket changes nothing either
    ok(ctx, "tom", f"incident close INC-{tid}")
    assert the_survey(ctx, sid).state == "open"


def test_a_ticket_reopened_before_its_survey_went_out_is_asked_after_the_next_resolution(ctx, clock):
    tid = open_incident(ctx, "sanne")
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    clock.advance(hours=1)
    ok(ctx, "tom", f"incident reopen INC-{tid}")
    clock.advance(hours=1)
    assert asking.sweep(ctx) == 1
    s = ticket_survey_of(ctx, tid)
    assert (s.state, s.due_at) == ("cancelled", None)
    assert not keys(ctx, "survey:")
    clock.advance(hours=5)
    assert asking.sweep(ctx) == 0
    # resolved again: the survey is armed again from this resolution
    resolved = clock()
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    s = ticket_survey_of(ctx, tid)
    assert (s.state, s.opens_at, s.due_at, s.closes_at) == \
        ("scheduled", resolved + timedelta(hours=2), resolved + timedelta(hours=2), resolved + timedelta(hours=2, days=7))
    clock.advance(hours=2)
    assert asking.sweep(ctx) == 1
    assert ticket_survey_of(ctx, tid).state == "open"
    assert keys(ctx, f"survey:{s.id}:ask") == dm_keys(ctx, f"survey:{s.id}:ask:sanne", "sanne")
    assert count(ctx, Survey) == 1


def test_a_ticket_reopened_and_resolved_again_before_the_delay_waits_the_delay_again(ctx, clock):
    tid = open_incident(ctx, "sanne")
    ok(ctx, "tom", f"incident resolve INC-{tid}")          # 09:00
    clock.advance(hours=1)
    ok(ctx, "tom", f"incident reopen INC-{tid}")           # 10:00, no sweep in between
    clock.advance(minutes=30)
    ok(ctx, "tom", f"incident resolve INC-{tid}")          # 10:30: the survey is due at 12:30
    clock.advance(minutes=30)                               # 11:00: the first resolution's time is up
    asking.sweep(ctx)
    assert not keys(ctx, "survey:"), "asked 30 minutes after the resolution, not 2 hours"
    assert ticket_survey_of(ctx, tid).opens_at == T0 + timedelta(hours=3, minutes=30)


def test_a_ticket_closed_before_its_survey_went_out_still_gets_it(ctx, clock):
    tid = open_incident(ctx, "sanne")
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    ok(ctx, "tom", f"incident close INC-{tid}")
    clock.advance(hours=2)
    assert asking.sweep(ctx) == 1
    assert ticket_survey_of(ctx, tid).state == "open"


def test_the_question_may_be_reworded_per_service(ctx, clock):
    def reword(cfg):
        for s in cfg["services"]:
            if s["id"] == "payments":
                s["ticket_survey"]["question"] = "Was {ticket} fixed well?"
    reconfigure(ctx, reword)
    tid = open_incident(ctx, "sanne")
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    assert ticket_survey_of(ctx, tid).question == f"Was INC-{tid} fixed well?"


def test_half_the_tickets_are_sampled_and_each_always_the_same_way(ctx, clock):
    ctx.secret = b"a fixed key, so that the sample is the same on every run"
    tickets = [open_incident(ctx, "meera", "email", f"Mailbox full {i}") for i in range(40)]
    for tid in tickets:
        ok(ctx, "lucas", f"incident resolve INC-{tid}")
    sampled = {tid for tid in tickets if ticket_survey_of(ctx, tid) is not None}
    assert 12 <= len(sampled) <= 28, len(sampled)  # about half of 40
    for tid in sampled:
        s = ticket_survey_of(ctx, tid)
        assert s.opens_at == T0 + timedelta(minutes=30) and s.service_id == "email" and s.owner == "lucas"
    # reopened and resolved again, later and by someone else: the same tickets, and no others
    clock.advance(days=1)
    for tid in tickets:
        ok(ctx, "lucas", f"incident reopen INC-{tid}")
        ok(ctx, "sanne", f"incident resolve INC-{tid}")
    assert {tid for tid in tickets if ticket_survey_of(ctx, tid) is not None} == sampled
    assert count(ctx, Survey) == len(sampled)


def test_every_ticket_is_sampled_at_100_percent(ctx, clock):
    tickets = [open_incident(ctx, "sanne", title=f"Refund fails {i}") for i in range(6)]
    for tid in tickets:
        ok(ctx, "tom", f"incident resolve INC-{tid}")
    assert all(ticket_survey_of(ctx, tid) is not None for tid in tickets)


def test_a_service_without_ticket_survey_asks_nothing(ctx, clock):
    tid = open_incident(ctx, "tom", "webshop", "Checkout slow")
    ok(ctx, "grace", f"incident resolve INC-{tid}")
    clock.advance(days=1)
    asking.sweep(ctx)
    assert count(ctx, Survey) == 0 and not keys(ctx, "survey:") and not audits(ctx, "survey.scheduled")


def test_a_switched_off_ticket_survey_asks_nothing(ctx, clock):
    def off(cfg):
        for s in cfg["services"]:
            if s["id"] == "payments":
                s["ticket_survey"]["enabled"] = False
    reconfigure(ctx, off)
    tid = open_incident(ctx, "sanne")
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    assert count(ctx, Survey) == 0


def test_a_requester_svcbot_cannot_reach_gets_nothing(ctx, clock):
    reconfigure(ctx, lambda c: c["people"].append({"id": "olga", "name": "Olga Petrova", "timezone": "Europe/London"}))
    tid = open_incident(ctx, console_actor(ctx, "olga"))  # no Slack or Teams account
    with ctx.sessions() as s:
        assert s.get(Ticket, tid).opened_by == "olga"
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    assert count(ctx, Survey) == 0


@pytest.mark.parametrize("requester", ["api", "svcbot", None])
def test_tickets_without_a_person_behind_them_are_not_surveyed(ctx, clock, requester):
    with ctx.sessions.begin() as s:
        ticket = open_ticket(Work(ctx, s, console_actor(ctx, "tom")), source="chat", service_id="payments",
                             priority="P3", title="From the monitoring", at=ctx.now(), group="payments-eng",
                             opened_by=requester)
        tid = ticket.id
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    assert count(ctx, Survey) == 0


def test_a_low_score_goes_to_the_service_owner_with_a_way_to_act(ctx, clock):
    tid, sid = surveyed(ctx, clock)
    answer(ctx, "sanne", sid, 2)
    sent = outbox(ctx, f"survey:{sid}:low")
    assert [r.dedupe_key for r in sent] == dm_keys(ctx, f"survey:{sid}:low:0", "tom")
    m = sent[0].message
    assert m["title"] == f"Low satisfaction on INC-{tid}" and m["tone"] == "warning"
    assert m["text"] == f"Sanne de Vries rated INC-{tid} (Card payments fail) *2 (dissatisfied)*."
    assert [(b["label"], b["run"]) for b in m["buttons"]] == \
        [("Raise a CSI item", f"csi add service=payments survey=SRV-{sid} ticket=INC-{tid}")]
    assert sent[0].subject == f"SRV-{sid}"


def test_a_score_above_the_low_score_without_a_comment_stays_with_the_results(ctx, clock):
    tid, sid = surveyed(ctx, clock)
    answer(ctx, "sanne", sid, 3)
    assert not [k for k in keys(ctx) if ":low:" in k or ":comment:" in k]


def test_a_comment_goes_to_the_service_owner_whatever_the_score(ctx, clock):
    tid, sid = surveyed(ctx, clock)
    ok(ctx, "sanne", f'survey answer SRV-{sid} 5 "Fixed within the hour, thank you"')
    sent = outbox(ctx, f"survey:{sid}:comment")
    assert [r.dedupe_key for r in sent] == dm_keys(ctx, f"survey:{sid}:comment:0", "tom")
    m = sent[0].message
    assert m["title"] == f"A comment on INC-{tid}" and m["tone"] == "info"
    assert m["text"] == (f"Sanne de Vries rated INC-{tid} (Card payments fail) *5 (very satisfied)*.\n"
                         "> Fixed within the hour, thank you")
    assert not keys(ctx, f"survey:{sid}:low")


def test_the_low_score_follows_the_configuration(ctx, clock):
    reconfigure(ctx, lambda c: c["surveys"].update(low_score=3))
    tid, sid = surveyed(ctx, clock)
    answer(ctx, "sanne", sid, 3)
    assert keys(ctx, f"survey:{sid}:low") == dm_keys(ctx, f"survey:{sid}:low:0", "tom")


def test_pulse_surveys_pass_nothing_on(ctx):
    sid = new_survey(ctx, anonymous="no", service="payments")
    ok(ctx, "sanne", f"survey answer SRV-{sid} 1 Terrible")
    assert not [k for k in keys(ctx) if ":low:" in k or ":comment:" in k]


def test_a_requester_may_change_a_low_answer(ctx, clock):
    tid, sid = surveyed(ctx, clock)
    answer(ctx, "sanne", sid, 1)
    clock.advance(minutes=5)
    reply, outcome = run(ctx, "sanne", f"survey answer SRV-{sid} 2")
    assert outcome == "ok", all_text(reply)
    assert [a.value for a in answers(ctx, sid)] == [2]


def test_a_requester_may_change_a_commented_answer(ctx, clock):
    tid, sid = surveyed(ctx, clock)
    ok(ctx, "sanne", f'survey answer SRV-{sid} 4 "Quick fix"')
    reply, outcome = run(ctx, "sanne", f"survey answer SRV-{sid} 5")
    assert outcome == "ok", all_text(reply)
    assert [(a.value, a.comment) for a in answers(ctx, sid)] == [(5, "Quick fix")]


# === a service's satisfaction: status and sla ================================================================

def satisfaction_field(ctx, service: str = "payments") -> str:
    return fields(ok(ctx, "meera", f"status {service}"))["Satisfaction (30 days)"]


def satisfaction_lines(ctx, args: str = "payments") -> list[str]:
    reply = ok(ctx, "priya", f"sla {args}")
    return [line for s in reply.sections for line in s.text.splitlines() if "satisfaction" in line]


def test_status_shows_the_satisfaction_of_the_last_30_days(ctx, clock):
    assert satisfaction_field(ctx) == "—"
    _, a = surveyed(ctx, clock, "sanne")
    _, b = surveyed(ctx, clock, "grace", title="Refunds stuck")
    answer(ctx, "sanne", a, 5)
    first = clock()
    clock.advance(hours=1)
    answer(ctx, "grace", b, 2)
    assert satisfaction_field(ctx) == "CSAT 50 % of 2 answers"
    assert satisfaction_field(ctx, "vpn") == "—"
    clock.to(first + timedelta(days=30))
    assert satisfaction_field(ctx) == "CSAT 50 % of 2 answers"
    clock.advance(seconds=1)  # sanne's answer is over thirty days old; grace's came an hour later
    assert satisfaction_field(ctx) == "CSAT 0 % of 1 answer"
    clock.advance(hours=1)
    assert satisfaction_field(ctx) == "—"


def test_the_30_day_window_includes_its_first_instant(ctx, clock):
    _, sid = surveyed(ctx, clock)
    answer(ctx, "sanne", sid, 4)
    answered = clock()
    clock.to(answered + timedelta(days=30))
    assert satisfaction_field(ctx) == "CSAT 100 % of 1 answer"
    clock.advance(microseconds=1)
    assert satisfaction_field(ctx) == "—"


def test_anonymous_csat_pulses_about_the_service_count_once_their_results_may_show(ctx, clock):
    _, t = surveyed(ctx, clock)
    answer(ctx, "sanne", t, 2)
    sid = new_survey(ctx, service="payments", question="How satisfied are you with card payments?")
    answer_all(ctx, sid, {"tom": 5, "arjun": 5, "meera": 5, "lucas": 5})
    assert satisfaction_field(ctx) == "CSAT 0 % of 1 answer"  # four anonymous answers: hidden, not counted
    answer(ctx, "grace", sid, 4)
    # 5 anonymous satisfied + 1 named dissatisfied: 5 of 6 = 83 %
    assert satisfaction_field(ctx) == "CSAT 83 % of 6 answers"


def test_named_pulses_count_from_the_first_answer_and_other_scales_never(ctx, clock):
    named = new_survey(ctx, service="payments", anonymous="no")
    answer(ctx, "tom", named, 3)
    nps = new_survey(ctx, service="payments", scale="nps", anonymous="no")
    answer(ctx, "tom", nps, 10)
    yesno = new_survey(ctx, service="payments", scale="yesno", anonymous="no")
    answer(ctx, "tom", yesno, "yes")
    unrelated = new_survey(ctx, anonymous="no")  # about no service
    answer(ctx, "tom", unrelated, 5)
    assert satisfaction_field(ctx) == "CSAT 0 % of 1 answer"


def test_satisfaction_about_several_services_or_it_as_a_whole_adds_their_answers(ctx, clock):
    for service, value in (("payments", 5), ("vpn", 2), (None, 4)):  # None: a survey about no service
        answer(ctx, "tom", new_survey(ctx, service=service, anonymous="no"), value)
    with ctx.sessions() as s:
        def csat(about):
            results = asking.service_satisfaction(ctx, s, about, None, None)
            return results.answers, results.csat
        assert csat("payments") == (1, 100.0)
        assert csat(["payments", "vpn"]) == (2, 50.0)
        assert csat([None]) == (1, 100.0)
        assert csat(["payments", "vpn", None]) == (3, 200 / 3)
        assert csat(["hr-portal"]) == (0, None)


def test_sla_reports_satisfaction_against_the_agreements_target(ctx, clock):
    assert satisfaction_lines(ctx) == []  # nothing measured yet
    _, a = surveyed(ctx, clock, "sanne")
    _, b = surveyed(ctx, clock, "grace", title="Refunds stuck")
    answer(ctx, "sanne", a, 5)
    answer(ctx, "grace", b, 2)
    assert satisfaction_lines(ctx) == ["❌ satisfaction payments: CSAT 50.0 % (1/2 satisfied), goal 80 %"]
    ok(ctx, "grace", f"survey answer SRV-{b} 4")
    assert satisfaction_lines(ctx) == ["✅ satisfaction payments: CSAT 100.0 % (2/2 satisfied), goal 80 %"]
    reply = ok(ctx, "priya", "sla payments")
    (sec,) = [s for s in reply.sections if "satisfaction" in s.text]
    assert sec.title == "SLA SLA-PAY — Retail Operations"
    # every service's report carries it too; other periods do not see March's answers
    assert satisfaction_lines(ctx, "") == ["✅ satisfaction payments: CSAT 100.0 % (2/2 satisfied), goal 80 %"]
    assert satisfaction_lines(ctx, "payments last-month") == []


def test_sla_counts_exactly_80_percent_as_met(ctx, clock):
    sid = new_survey(ctx, service="payments", people=",".join(PEOPLE), anonymous="no")
    answer_all(ctx, sid, {"tom": 5, "sanne": 4, "arjun": 4, "meera": 5, "lucas": 3})
    assert satisfaction_lines(ctx) == ["✅ satisfaction payments: CSAT 80.0 % (4/5 satisfied), goal 80 %"]


def test_sla_shows_no_satisfaction_for_an_agreement_without_a_target(ctx, clock):
    ctx.secret = b"a fixed key, so that the sample is the same on every run"
    for i in range(12):
        tid = open_incident(ctx, "meera", "email", f"Mailbox full {i}")
        ok(ctx, "lucas", f"incident resolve INC-{tid}")
    clock.advance(hours=1)
    asking.sweep(ctx)
    with ctx.sessions() as s:
        sent = s.scalars(select(Survey.id).where(Survey.state == "open")).all()
    assert sent
    for sid in sent:
        answer(ctx, "meera", sid, 1)
    assert satisfaction_field(ctx, "email").startswith("CSAT 0 % of ")
    assert satisfaction_lines(ctx, "email") == []


# === the retention purge =====================================================================================

def closed_with_comments(ctx, clock) -> tuple[int, datetime]:
    sid = new_survey(ctx, people=",".join(PEOPLE))
    for who, value in {"tom": 5, "sanne": 4, "arjun": 2, "meera": 1, "lucas": 4}.items():
        answer(ctx, who, sid, value)
    ok(ctx, "arjun", f"survey comment SRV-{sid} Slow in Pune")
    ok(ctx, "meera", f"survey comment SRV-{sid} Drops on the train")
    clock.advance(hours=1)
    ok(ctx, "priya", f"survey close SRV-{sid}")
    return sid, clock()


def test_comments_go_after_comment_retention_days_and_answers_after_retention_days(ctx, clock):
    sid, closed = closed_with_comments(ctx, clock)
    kept = new_survey(ctx, closes="in 400 days", anonymous="no")  # still open then: never purged
    answer(ctx, "tom", kept, 4, "Still open")

    clock.to(closed + timedelta(days=180))
    assert asking.purge(ctx) == (0, 0)
    assert section(ok(ctx, "tom", f"survey results SRV-{sid}"), "Comments") is not None
    clock.advance(seconds=1)
    assert asking.purge(ctx) == (0, 2)
    assert [a.comment for a in answers(ctx, sid)] == [None] * 5
    s = the_survey(ctx, sid)
    assert (s.comments_purged, s.answers_purged) == (True, False)
    reply = ok(ctx, "tom", f"survey results SRV-{sid}")
    assert section(reply, "Comments") is None
    assert fields(reply) == {"Answers": "5 answers of 7 asked (71 %)", "CSAT": "60 %"}
    (record,) = audits(ctx, "survey.purge")
    assert (record.subject, record.person_id, record.detail) == ("surveys", "svcbot", {"answers": 0, "comments": 2})
    assert asking.purge(ctx) == (0, 0)
    assert len(audits(ctx, "survey.purge")) == 1

    clock.to(closed + timedelta(days=365))
    assert asking.purge(ctx) == (0, 0)
    assert len(answers(ctx, sid)) == 5
    clock.advance(seconds=1)
    assert asking.purge(ctx) == (5, 0)
    assert answers(ctx, sid) == []
    s = the_survey(ctx, sid)
    assert (s.comments_purged, s.answers_purged, s.state) == (True, True, "closed")
    # the results as they stood at closing remain
    reply = ok(ctx, "tom", f"survey results SRV-{sid}")
    assert fields(reply) == {"Answers": "5 answers of 7 asked (71 %)", "CSAT": "60 %"}
    assert section(reply, "Distribution").text.count("\n") == 6
    assert "5 answers, CSAT 60 %" in all_text(ok(ctx, "tom", "survey list"))
    assert audits(ctx, "survey.purge")[-1].detail == {"answers": 5, "comments": 0}
    # the open survey kept everything
    assert [(a.value, a.comment) for a in answers(ctx, kept)] == [(4, "Still open")]
    assert asking.purge(ctx) == (0, 0)


def test_without_comment_retention_comments_live_as_long_as_answers(ctx, clock):
    reconfigure(ctx, lambda c: c["surveys"].pop("comment_retention_days"))
    sid, closed = closed_with_comments(ctx, clock)
    clock.to(closed + timedelta(days=300))
    assert asking.purge(ctx) == (0, 0)
    assert sorted(filter(None, (a.comment for a in answers(ctx, sid)))) == ["Drops on the train", "Slow in Pune"]
    clock.to(closed + timedelta(days=365, seconds=1))
    assert asking.purge(ctx) == (5, 0)


def test_answers_of_ticket_surveys_are_purged_too(ctx, clock):
    tid, sid = surveyed(ctx, clock)
    answer(ctx, "sanne", sid, 4, "Quick")
    clock.advance(days=7)
    asking.sweep(ctx)
    closed = the_survey(ctx, sid).closed_at
    clock.to(closed + timedelta(days=366))
    assert asking.purge(ctx) == (1, 0)
    with ctx.sessions() as s:
        assert asking.named_answers(s, "sanne") == []


# === personal data ===========================================================================================

def test_named_answers_lists_what_a_person_said_by_name_only(ctx, clock):
    tid, ticket_sid = surveyed(ctx, clock)
    clock.advance(minutes=7)
    ok(ctx, "sanne", f'survey answer SRV-{ticket_sid} 4 "Quick fix"')
    at = clock()
    pulse = new_survey(ctx, anonymous="no", scale="yesno", question="Is the wiki useful?")
    answer(ctx, "sanne", pulse, "no")
    anonymous = new_survey(ctx)
    answer(ctx, "sanne", anonymous, 1, "Not for anyone to trace")
    answer(ctx, "tom", pulse, "yes")
    with ctx.sessions() as s:
        listed = asking.named_answers(s, "sanne")
    assert listed == [
        {"survey": f"SRV-{ticket_sid}", "question": f"How satisfied are you with how INC-{tid} was handled?",
         "scale": "csat", "answer": "4 (satisfied)", "comment": "Quick fix", "answered_at": at.isoformat(),
         "ticket": f"INC-{tid}"},
        {"survey": f"SRV-{pulse}", "question": "Is the wiki useful?", "scale": "yesno", "answer": "no",
         "comment": None, "answered_at": at.isoformat(), "ticket": None},
    ]
    assert "Not for anyone to trace" not in repr(listed)
    with ctx.sessions() as s:
        assert asking.named_answers(s, "nobody") == []


def test_erasing_a_persons_named_answers_leaves_others_and_the_anonymous_ones(ctx, clock):
    tid, ticket_sid = surveyed(ctx, clock)
    answer(ctx, "sanne", ticket_sid, 2, "Slow")
    pulse = new_survey(ctx, anonymous="no", people="sanne,tom")
    answer_all(ctx, pulse, {"sanne": 4, "tom": 5})
    anonymous = new_survey(ctx)
    answer(ctx, "sanne", anonymous, 1)
    # two more of sanne's tickets: one survey waiting, one sent; and one of grace's
    waiting_tid = open_incident(ctx, "sanne", title="Second problem")
    ok(ctx, "tom", f"incident resolve INC-{waiting_tid}")
    _, sent_sid = surveyed(ctx, clock, "sanne", title="Third problem")
    _, graces = surveyed(ctx, clock, "grace", title="Grace's problem")
    waiting_sid = ticket_survey_of(ctx, waiting_tid).id
    assert the_survey(ctx, waiting_sid).state == "open"  # the sweep of surveyed() sent it too
    late_tid = open_incident(ctx, "sanne", title="Fourth problem")
    ok(ctx, "tom", f"incident resolve INC-{late_tid}")
    late_sid = ticket_survey_of(ctx, late_tid).id
    assert the_survey(ctx, late_sid).state == "scheduled"

    with ctx.sessions.begin() as s:
        erased = asking.erase_named_answers(Work(ctx, s, console_actor(ctx, "priya")), "sanne")
    assert erased == 2
    with ctx.sessions() as s:
        assert asking.named_answers(s, "sanne") == []
    assert answers(ctx, ticket_sid) == []
    assert [(a.person_id, a.value) for a in answers(ctx, pulse)] == [("tom", 5)]
    assert [(a.person_id, a.value) for a in answers(ctx, anonymous)] == [(None, 1)]
    # surveys still waiting to ask her are not sent, nor answered
    for sid in (late_sid, sent_sid, waiting_sid):
        s = the_survey(ctx, sid)
        assert (s.state, s.due_at) == ("cancelled", None), sid
    assert the_survey(ctx, graces).state == "open"
    assert the_survey(ctx, pulse).state == "open"  # a pulse survey asks others too
    assert "not open for answers" in refused(ctx, "sanne", f"survey answer SRV-{sent_sid} 5")
    clock.advance(hours=3)
    asking.sweep(ctx)
    assert not keys(ctx, f"survey:{late_sid}:ask")


def test_a_survey_not_open_names_its_state_and_the_one_it_needs(ctx, clock):
    tid = open_incident(ctx, "sanne")
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    sid = ticket_survey_of(ctx, tid).id  # asked two hours after the resolution: scheduled until then
    before = everything(ctx)
    said = refused(ctx, "sanne", f"survey answer SRV-{sid} 5")
    assert f"SRV-{sid} is not open for answers. It is scheduled to open " in said
    assert "; an answer needs it open." in said
    assert f"SRV-{sid} is scheduled; it cannot be closed (only when open)." in \
        refused(ctx, "priya", f"survey close SRV-{sid}")
    assert everything(ctx) == before


def test_a_mistyped_survey_verb_gets_a_did_you_mean_with_the_command_put_right(ctx):
    sid = new_survey(ctx)
    reply, outcome = run(ctx, "priya", f"survey reslts SRV-{sid}")
    assert outcome == "user_error"
    assert reply.text == "I don't know 'survey reslts'. Did you mean `survey results`?"
    assert reply.footer == f"Try: /svc survey results SRV-{sid}"
