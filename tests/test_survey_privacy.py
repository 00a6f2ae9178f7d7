"""Whoever holds the database file after an anonymous survey closes can link none of its answers to anyone.

The answers arrive the ways people give them — a Slack button, a Slack direct message, a Slack modal, a
Teams card — with no SVCBOT_SECRET_KEY, so that every key svcbot uses is in the store. After closing,
the test reads every column of every table (and, on SQLite, the raw bytes of the file) as an attacker
would: it looks for the answerers' ids and names beside the survey, for any keyed hash of their ids under
any key-like value in the store, for any stored time that falls on the minute an answer was given, and
at the order of the answer rows."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount
from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.engine import make_url

from bot.runtime import Runtime
from bot.slack import SlackFront
from bot.teams import SvcTeamsBot
from handlers.surveys import record
from storage.models import OutboxMessage, ProcessedDelivery, Setting, SurveyAnswer
from tests.conftest import T0, Clock, config_from
from tests.test_surveys import answers, new_survey, ok

ANNOUNCE_TEAMS = "19:announce000000000000000000000@thread.tacv2"
TAGS = ("survey", "slack", "teams", "delivery", "answer", "")


@pytest.fixture
def keyless(database_url, config_file, monkeypatch):
    """The runtime of the default set-up: no SVCBOT_SECRET_KEY, so its keys are kept in the store."""
    monkeypatch.delenv("SVCBOT_SECRET_KEY", raising=False)
    rt = Runtime(config_from(config_file), database_url)
    rt.ctx.now = Clock()
    yield rt
    rt.engine.dispose()


def slack_button(rt, user: str, text: str, ts: str) -> None:
    front = SlackFront(rt, "xoxb-test", "secret", "http://127.0.0.1:9/api/")

    async def ack(**_):
        return None

    body = {"user": {"id": user, "username": user.lower()},
            "response_url": f"https://hooks.slack.com/actions/T0SVC/{ts.replace('.', '')}/x1y2z3"}
    asyncio.run(front.on_button(ack, body, {"action_ts": ts, "value": text}))


def teams_card(rt, aad: str, address: str, text: str, activity_id: str) -> None:
    bot = SvcTeamsBot(rt, None, "")
    activity = Activity(type="invoke", id=activity_id, from_property=ChannelAccount(id=address, aad_object_id=aad),
                        conversation=ConversationAccount(id=ANNOUNCE_TEAMS), channel_data={"tenant": {"id": "t-1"}})
    assert asyncio.run(bot._execute(activity, text, via="card")).outcome == "ok"


def every_row(database_url: str) -> dict[str, list[dict]]:
    """Every row of every table, found by reflection rather than through the models."""
    engine = create_engine(database_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {t.name: [dict(r._mapping) for r in conn.execute(select(t))] for t in meta.sorted_tables}
    finally:
        engine.dispose()


def flat(value) -> str:
    return json.dumps(value, default=str, ensure_ascii=False) if not isinstance(value, str) else value


def identifiers(cfg, pid: str) -> set[str]:
    p = cfg.person(pid)
    return {x for x in (p.id, p.name, p.slack, p.teams, f"29:{p.id}") if x}


def keyed_hashes(keys: set[str], ids: set[str], survey_id: int) -> dict[str, str]:
    """The first 12 hex digits of HMAC-SHA256 of an id (alone, or after a tag, the survey's number and any
    key-like value of the store, joined as svcbot joins the parts of its hashes) under each key."""
    found = {}
    extras = [()] + [(str(survey_id),)] + [(str(survey_id), k) for k in keys]
    for key, x, tag, extra in itertools.product(keys, ids, TAGS, extras):
        parts = ((tag,) if tag else ()) + extra + (x,)
        digest = hmac.new(key.encode(), "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()
        found[digest[:12]] = f"HMAC({key[:8]}…, {parts})"
    return found


def minutes_in(text: str) -> set[str]:
    return {f"{d} {hm}" for d, hm in re.findall(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})", text)}


def test_nothing_in_the_store_links_a_closed_anonymous_surveys_answers_to_anyone(keyless, database_url):
    rt, clock = keyless, keyless.ctx.now
    ctx = rt.ctx
    sid = new_survey(ctx, question="How well does the new VPN client work?")
    moments = []

    def at(minutes: int, seconds: int) -> None:
        clock.to(T0 + timedelta(minutes=minutes, seconds=seconds))
        moments.append(clock.t)

    at(7, 13)
    slack_button(rt, "U0TOM0002", f"survey answer SRV-{sid} 4", "1772442433.118231")
    with ctx.sessions() as s:  # queued to Slack's response URL: the thanks, not the value
        (reply,) = s.scalars(select(OutboxMessage).where(OutboxMessage.target_kind == "response_url")).all()
        stored = s.scalars(select(ProcessedDelivery.key)).all()
        remembered_at = s.scalars(select(ProcessedDelivery.at)).all()
    assert reply.dedupe_key.startswith(f"reply:survey:{sid}:answer:") and "U0TOM" not in reply.dedupe_key
    assert "Your answer to SRV-1 is saved" in flat(reply.message) and "satisfied" not in flat(reply.message)
    assert [k for k in stored if k.startswith(f"survey:{sid}:answer:")] == [reply.dedupe_key[len("reply:"):]]
    assert [t.replace(tzinfo=None) for t in remembered_at] == [T0.replace(tzinfo=None)]  # the hour only
    at(21, 45)
    teams_card(rt, "7d1c2f4e-5a55-4c0b-9d2a-0c9e1b7a0003", "29:sanne", f"survey answer SRV-{sid} 2", "f:1772443305")
    at(33, 8)
    out = asyncio.run(rt.submit("slack", "U0MEERA05", record.ANSWER_FORM,
                                {"value": "5", "comment": "Fast from the office"}, {"survey": sid},
                                key="slack:view:V0MEERA77:1772444000.hash"))
    assert out.outcome == "ok"
    at(48, 2)
    out = asyncio.run(rt.execute("slack", "U0ARJUN04", f'survey answer SRV-{sid} 3 "Drops on hotel wifi"',
                                 key="slack:event:Ev0ARJUN48"))
    assert out.outcome == "ok"
    at(52, 31)
    slack_button(rt, "U0TOM0002", f"survey answer SRV-{sid} 1", "1772443951.402117")  # changes his answer
    answered_in_order = [a.value for a in answers(ctx, sid)]
    assert answered_in_order == [1, 2, 5, 3]  # the store keeps the order while the survey is open
    clock.to(T0 + timedelta(hours=3, minutes=17, seconds=5))
    ok(ctx, "priya", f"survey close SRV-{sid}")

    rows = every_row(database_url)
    dump = {t: [{c: flat(v) for c, v in r.items()} for r in rs] for t, rs in rows.items()}
    everything = "\n".join(v for rs in dump.values() for r in rs for v in r.values())
    answerers = {"tom": identifiers(ctx.config, "tom"), "sanne": identifiers(ctx.config, "sanne"),
                 "meera": identifiers(ctx.config, "meera"), "arjun": identifiers(ctx.config, "arjun")}

    # 1. No row about the survey names anyone who answered it.
    about = [(t, r) for t, rs in dump.items() for r in rs
             if any(f"SRV-{sid}" in v or f"survey:{sid}:" in v for v in r.values()) or r.get("survey_id") == str(sid)]
    for who, ids in answerers.items():
        for table, row in about:
            assert not any(x in v for x in ids for v in row.values()), (who, table, row)

    # 2. No keyed hash of an answerer's ids under any key-like value in the store.
    keys = {v for rs in dump.values() for r in rs for v in r.values() if re.fullmatch(r"[0-9a-fA-F]{32,128}", v)}
    keys |= {v for r in dump["settings"] for v in r.values()}
    raw = b""
    if make_url(database_url).get_backend_name() == "sqlite":
        path = Path(make_url(database_url).database)
        raw = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
        # what deleted rows may have left in the file's free pages counts as found in the store
        keys |= {m.decode() for m in re.findall(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])", raw)}
    for who, ids in answerers.items():
        for prefix, what in keyed_hashes(keys, ids, sid).items():
            assert prefix not in everything, (who, what)
            assert prefix.encode() not in raw, (who, what, "in the file's bytes")

    # 3. No stored time falls on a minute an answer was given: it could be matched with who was active then.
    answered = {m.strftime("%Y-%m-%d %H:%M") for m in moments}
    for table, rs in dump.items():
        for r in rs:
            assert not minutes_in(" ".join(r.values())) & answered, (table, r)

    # 4. The answers' rows are in the order of their values, not of who answered first.
    kept = answers(ctx, sid)
    assert [(a.value, a.comment) for a in kept] == sorted(((a.value, a.comment) for a in kept),
                                                          key=lambda x: (x[0], x[1] or ""))
    assert sorted(a.value for a in kept) == sorted(answered_in_order)
    assert {a.comment for a in kept} == {None, "Fast from the office", "Drops on hotel wifi"}


def test_with_a_secret_key_the_same_person_is_a_different_hash_on_every_survey_and_every_click(
        database_url, config_file, monkeypatch):
    monkeypatch.setenv("SVCBOT_SECRET_KEY", "a-key-kept-outside-the-store")
    rt = Runtime(config_from(config_file), database_url)
    try:
        rt.ctx.now = Clock()
        first, second = new_survey(rt.ctx), new_survey(rt.ctx)
        slack_button(rt, "U0TOM0002", f"survey answer SRV-{first} 4", "1772442433.118231")
        slack_button(rt, "U0TOM0002", f"survey answer SRV-{second} 4", "1772442433.118231")
        slack_button(rt, "U0TOM0002", f"survey answer SRV-{second} 5", "1772442499.000100")
        with rt.ctx.sessions() as s:
            keys = s.scalars(select(ProcessedDelivery.key).order_by(ProcessedDelivery.key)).all()
            answered = s.scalars(select(SurveyAnswer.respondent_key).order_by(SurveyAnswer.survey_id)).all()
            assert s.scalar(select(Setting).where(Setting.key == "secret_key")) is None  # no key in the store
        tails = [k.rsplit(":", 1)[1] for k in keys]
        assert [k.rsplit(":", 1)[0] for k in keys] == [f"survey:{first}:answer", f"survey:{second}:answer",
                                                     f"survey:{second}:answer"]
        assert len(set(tails)) == 3 and len(set(answered)) == 2
        # the second click was the same person changing an answer
        assert [a.value for a in answers(rt.ctx, second)] == [5]
        # a retried delivery of the same click is still recognised
        slack_button(rt, "U0TOM0002", f"survey answer SRV-{second} 1", "1772442499.000100")
        assert [a.value for a in answers(rt.ctx, second)] == [5]
    finally:
        rt.engine.dispose()
