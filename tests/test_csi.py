"""The continual service improvement register (handlers/services/csi.py) at the handler level: csi add, csi list and
csi done typed (or submitted as forms) by the people of the demo app.yaml, on the real store with the test
clock. priya is the service manager; the others own services but have no role here. Time starts at T0,
Monday 2 March 2026 09:00 UTC."""
from __future__ import annotations

import asyncio
import re
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from handlers.core.context import Command
from handlers.core.people import console_actor, resolve_actor
from handlers.router import dispatch
from handlers.surveys import asking
from storage.models import AuditRecord, Base, CsiItem, OutboxMessage, Survey
from tests.conftest import T0

# --- helpers --------------------------------------------------------------------------------------------

def person(ctx, pid: str, platform: str = "slack"):
    p = ctx.config.person(pid)
    return resolve_actor(ctx, platform, getattr(p, platform), p.name)


def run(ctx, who, text: str, platform: str = "slack"):
    actor = person(ctx, who, platform) if isinstance(who, str) else who
    return dispatch(ctx, Command(actor=actor, text=text))


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


def ok(ctx, who, text: str, **kw):
    reply, outcome = run(ctx, who, text, **kw)
    assert outcome == "ok", all_text(reply)
    return reply


def refused(ctx, who, text: str, outcome: str = "user_error", **kw) -> str:
    reply, got = run(ctx, who, text, **kw)
    assert got == outcome, all_text(reply)
    return all_text(reply)


def add(ctx, who: str = "priya", **f) -> int:
    reply = ok(ctx, who, "csi add " + " ".join(f'{k}="{v}"' for k, v in f.items()))
    return int(re.fullmatch(r"CSI-(\d+) added to the register", reply.title)[1])


def item(ctx, iid: int) -> CsiItem:
    with ctx.sessions() as s:
        return s.get(CsiItem, iid)


def audits(ctx, action: str) -> list[AuditRecord]:
    with ctx.sessions() as s:
        return s.scalars(select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.id)).all()


def outbox(ctx, prefix: str) -> list[OutboxMessage]:
    with ctx.sessions() as s:
        return s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith(prefix, autoescape=True))
                         .order_by(OutboxMessage.id)).all()


def everything(ctx) -> dict:
    with ctx.sessions() as s:
        return {t.name: sorted(map(repr, s.execute(select(t)).all())) for t in Base.metadata.sorted_tables}


def items_count(ctx) -> int:
    with ctx.sessions() as s:
        return s.scalar(select(func.count()).select_from(CsiItem))


def dm_keys(ctx, prefix: str, pid: str) -> list[str]:
    """The demo people are on both platforms; their direct messages go to Slack only."""
    p = ctx.config.person(pid)
    return [f"{prefix}:slack:{p.slack}"]


def vpn_survey(ctx) -> int:
    reply = ok(ctx, "priya", 'survey new question="How is the VPN?" channel=it-announce service=vpn')
    return int(re.fullmatch(r"SRV-(\d+) sent", reply.title)[1])


def payments_ticket(ctx) -> int:
    reply = ok(ctx, "sanne", "incident new payments P2 Card payments fail")
    return int(re.match(r"INC-(\d+) opened", reply.title)[1])


def lines(reply, title: str) -> list[str]:
    return next(s for s in reply.sections if s.title == title).text.splitlines()


# === csi add ==================================================================================================

def test_an_item_with_every_field_is_recorded_audited_and_sent_to_its_owner(ctx):
    reply = ok(ctx, "priya", 'csi add title="Publish VPN set-up steps in the portal" owner=sanne due=2026-03-20 '
                             'service=vpn')
    assert reply.title == "CSI-1 added to the register" and reply.tone == "ok"
    assert reply.text == "Sanne de Vries · due 2026-03-20 · Remote Access VPN"
    row = item(ctx, 1)
    assert (row.title, row.owner, row.due, row.service_id, row.survey_id, row.ticket_id) == \
        ("Publish VPN set-up steps in the portal", "sanne", date(2026, 3, 20), "vpn", None, None)
    assert (row.state, row.created_by, row.created_at, row.note, row.done_at, row.done_by) == \
        ("open", "priya", T0, "", None, None)
    (record,) = audits(ctx, "csi.add")
    assert (record.subject, record.person_id, record.platform) == ("CSI-1", "priya", "slack")
    assert record.detail == {"title": "Publish VPN set-up steps in the portal", "owner": "sanne",
                             "due": "2026-03-20", "service": "vpn", "survey": None, "ticket": None}
    sent = outbox(ctx, "csi:1:owner")
    assert [r.dedupe_key for r in sent] == dm_keys(ctx, "csi:1:owner", "sanne")
    m = sent[0].message
    assert m["title"] == "CSI-1 is yours: Publish VPN set-up steps in the portal"
    assert [(b["label"], b["run"]) for b in m["buttons"]] == [("Mark done", "csi done CSI-1")]


@pytest.mark.parametrize("due, expected", [("in 2 weeks", date(2026, 3, 16)), ("in 10 days", date(2026, 3, 12)),
                                           ("3w", date(2026, 3, 23)), ("2026-03-20", date(2026, 3, 20))])
def test_a_due_date_is_a_date_or_a_time_from_now(ctx, due, expected):
    ok(ctx, "priya", f'csi add title="Publish VPN set-up steps in the portal" due="{due}"')
    assert item(ctx, 1).due == expected


def test_a_due_date_from_now_is_the_day_it_falls_on_where_the_person_is(ctx, clock):
    clock.to(datetime(2026, 3, 2, 20, 0, tzinfo=timezone.utc))  # 20:00 in London, 01:30 on the 3rd in Pune
    ok(ctx, "tom", 'csi add title="Retry card refunds automatically" due="in 1 week"')
    ok(ctx, "meera", 'csi add title="Alert on late nightly loads" due="in 1 week"')
    assert (item(ctx, 1).due, item(ctx, 2).due) == (date(2026, 3, 9), date(2026, 3, 10))


def test_the_owner_defaults_to_whoever_adds_it_and_is_not_told_of_their_own_item(ctx):
    iid = add(ctx, "tom", title="Retry card refunds automatically")
    row = item(ctx, iid)
    assert (row.owner, row.created_by, row.due, row.service_id) == ("tom", "tom", None, None)
    assert not outbox(ctx, "csi:")
    assert audits(ctx, "csi.add")[0].detail["due"] is None


def test_anyone_may_add_an_item(ctx):
    stranger = resolve_actor(ctx, "slack", "U0STRANGER", "Sam Stranger")
    reply = ok(ctx, stranger, 'csi add title="Explain the VPN client" owner=sanne')
    assert reply.title == "CSI-1 added to the register"
    assert item(ctx, 1).created_by == "slack-u0stranger"


def test_a_survey_or_a_ticket_names_the_service_when_none_is_given(ctx):
    sid, tid = vpn_survey(ctx), payments_ticket(ctx)
    a = add(ctx, title="Explain the VPN client", survey=f"SRV-{sid}")
    assert (item(ctx, a).survey_id, item(ctx, a).service_id) == (sid, "vpn")
    b = add(ctx, title="Page the payments team sooner", ticket=f"INC-{tid}")
    assert (item(ctx, b).ticket_id, item(ctx, b).service_id) == (tid, "payments")
    c = add(ctx, title="Both", survey=f"srv{sid}", ticket=f"inc-{tid}", service="email")
    assert (item(ctx, c).survey_id, item(ctx, c).ticket_id, item(ctx, c).service_id) == (sid, tid, "email")
    d = add(ctx, title="Survey first", survey=f"SRV-{sid}", ticket=f"INC-{tid}")
    assert item(ctx, d).service_id == "vpn"
    assert ok(ctx, "priya", "csi list").sections[0].text.count(f"SRV-{sid}") == 3
    assert audits(ctx, "csi.add")[-1].detail["survey"] == sid and audits(ctx, "csi.add")[-1].detail["ticket"] == tid


def test_a_survey_about_no_service_leaves_the_service_empty(ctx):
    reply = ok(ctx, "priya", 'survey new question="How is the canteen?" channel=it-announce')
    sid = int(re.fullmatch(r"SRV-(\d+) sent", reply.title)[1])
    iid = add(ctx, title="Ask the canteen", survey=f"SRV-{sid}")
    assert item(ctx, iid).service_id is None


def test_every_wrong_field_is_named_and_nothing_is_written(ctx):
    before = everything(ctx)
    text = refused(ctx, "priya", 'csi add title="  " owner=nobody due=next-week service=toaster survey=SRV-9 '
                                 'ticket=INC-9')
    for expected in ("title: say what will improve", "owner: unknown person 'nobody'",
                     "due: 'next-week' is not a date like YYYY-MM-DD or in 2 weeks",
                     "service: unknown service 'toaster'",
                     "survey: there is no SRV-9", "ticket: there is no INC-9"):
        assert expected in text, text
    assert "csi add title=" in text  # with an example
    assert everything(ctx) == before


@pytest.mark.parametrize("fields_, message", [
    ('title="' + "t" * 301 + '"', "title: keep it under 300 characters"),
    ('title="x" due=2026-02-30', "due: '2026-02-30' is not a date like YYYY-MM-DD or in 2 weeks"),
    ('title="x" survey=CHG-1', "survey: there is no CHG-1"),
    ('title="x" ticket=12', "ticket: there is no 12"),
    ('title="x" colour=red', "Unknown field: colour. Fields: title, owner, due, service, survey, ticket."),
    ('title="x" stray', "'stray' is not part of a key=value pair"),
])
def test_wrong_fields_are_refused(ctx, fields_, message):
    payments_ticket(ctx)
    before = everything(ctx)
    assert message in refused(ctx, "priya", "csi add " + fields_)
    assert everything(ctx) == before


def test_a_title_of_300_characters_is_fine(ctx):
    assert len(item(ctx, add(ctx, title="t" * 300)).title) == 300


def test_an_owner_unknown_to_app_yaml_cannot_own_an_item(ctx):
    stranger = resolve_actor(ctx, "slack", "U0STRANGER", "Sam Stranger")
    assert "owner: unknown person 'slack-u0stranger'" in refused(ctx, stranger, 'csi add title="Mine"')
    assert items_count(ctx) == 0


# === the form ================================================================================================

def test_csi_add_without_a_title_opens_the_form_in_chat_and_is_an_error_in_the_console(ctx):
    reply = ok(ctx, "tom", "csi add")
    form = reply.form
    assert form.name == "csi_add" and form.context == {}
    assert [i.id for i in form.inputs] == ["title", "owner", "due", "service"]
    assert {i.id: i.value for i in form.inputs}["owner"] == "tom"
    assert "title: say what will improve" in refused(ctx, console_actor(ctx, "tom"), "csi add")
    assert items_count(ctx) == 0


def test_the_raise_a_csi_item_button_of_a_low_after_ticket_score_fills_in_the_form(runtime, ctx, clock):
    tid = payments_ticket(ctx)
    ok(ctx, "tom", f"incident resolve INC-{tid}")
    clock.advance(hours=2)
    asking.sweep(ctx)
    with ctx.sessions() as s:
        sid = s.scalar(select(Survey.id).where(Survey.ticket_id == tid))
    ok(ctx, "sanne", f"survey answer SRV-{sid} 1")
    (dm,) = outbox(ctx, f"survey:{sid}:low")
    (button,) = dm.message["buttons"]
    # tom clicks it
    reply = ok(ctx, "tom", button["run"])
    form = reply.form
    assert form.name == "csi_add"
    assert form.context == {"survey": f"SRV-{sid}", "ticket": f"INC-{tid}"}
    assert {i.id: i.value for i in form.inputs} == {"title": "", "owner": "tom", "due": "", "service": "payments"}
    assert items_count(ctx) == 0

    out = asyncio.run(runtime.submit("slack", "U0TOM0002", "csi_add",
                                     {"title": "Watch card authorisations", "owner": "grace", "due": "2026-02-31",
                                      "service": "payments"}, form.context))
    assert out.outcome == "user_error"
    assert out.invalid.errors == {"due": "'2026-02-31' is not a date like YYYY-MM-DD or in 2 weeks"}
    again = out.reply.form
    assert again.context == form.context  # the links survive the second try
    assert {i.id: i.error for i in again.inputs}["due"] == "'2026-02-31' is not a date like YYYY-MM-DD or in 2 weeks"
    assert {i.id: i.value for i in again.inputs}["title"] == "Watch card authorisations"
    assert items_count(ctx) == 0

    out = asyncio.run(runtime.submit("slack", "U0TOM0002", "csi_add",
                                     {"title": "Watch card authorisations", "owner": "grace", "due": "2026-03-31",
                                      "service": "payments"}, again.context))
    assert out.outcome == "ok", all_text(out.reply)
    row = item(ctx, 1)
    assert (row.title, row.owner, row.due, row.service_id, row.survey_id, row.ticket_id, row.created_by) == \
        ("Watch card authorisations", "grace", date(2026, 3, 31), "payments", sid, tid, "tom")
    assert [r.dedupe_key for r in outbox(ctx, "csi:1:owner")] == dm_keys(ctx, "csi:1:owner", "grace")


def test_the_button_of_survey_results_fills_in_the_survey_and_service(ctx):
    sid = vpn_survey(ctx)
    for who in ("tom", "sanne", "arjun", "meera", "lucas"):
        ok(ctx, who, f"survey answer SRV-{sid} 1")
    results = ok(ctx, "priya", f"survey results SRV-{sid}")
    (button,) = results.buttons
    form = ok(ctx, "priya", button.run, platform="teams").form
    assert form.context == {"survey": f"SRV-{sid}"}
    assert {i.id: i.value for i in form.inputs}["service"] == "vpn"


# === csi list =================================================================================================

def test_the_list_shows_open_items_soonest_due_first_and_undated_last(ctx, clock):
    assert ok(ctx, "tom", "csi list").title == "No open improvements"
    late = add(ctx, title="Later", owner="tom", due="2026-06-01", service="payments")
    undated = add(ctx, title="Someday", owner="grace")
    soon = add(ctx, title="Soon", owner="sanne", due="2026-03-10", service="vpn")
    overdue = add(ctx, title="Overdue", owner="sanne", due="2026-03-01", service="vpn")
    today = add(ctx, title="Today", owner="lucas", due="2026-03-02", service="email")
    reply = ok(ctx, "meera", "csi")  # list is the default
    assert reply.title == "Continual service improvement"
    assert lines(reply, "Open") == [
        f"*CSI-{overdue}* Overdue — Sanne de Vries · due 2026-03-01 ⚠️ overdue · Remote Access VPN",
        f"*CSI-{today}* Today — Lucas Jansen · due 2026-03-02 · Email and Calendar",
        f"*CSI-{soon}* Soon — Sanne de Vries · due 2026-03-10 · Remote Access VPN",
        f"*CSI-{late}* Later — Tom Hughes · due 2026-06-01 · Payments Gateway",
        f"*CSI-{undated}* Someday — Grace Okafor",
    ]
    # a day later, today's is overdue too
    clock.advance(days=1)
    assert lines(ok(ctx, "meera", "csi list"), "Open")[1].endswith("due 2026-03-02 ⚠️ overdue · Email and Calendar")


def test_the_list_of_one_service(ctx):
    add(ctx, title="VPN item", service="vpn")
    add(ctx, title="Payments item", service="payments")
    reply = ok(ctx, "tom", "csi list vpn")
    assert reply.title == "Continual service improvement for Remote Access VPN"
    assert [line.split(" — ")[0] for line in lines(reply, "Open")] == ["*CSI-1* VPN item"]
    assert ok(ctx, "tom", "csi list email").title == "No open improvements for Email and Calendar"
    assert ok(ctx, "tom", 'csi list "Payments Gateway"').title == "Continual service improvement for Payments Gateway"
    assert "There is no service 'toaster'." in refused(ctx, "tom", "csi list toaster")


def test_finished_items_show_with_all(ctx, clock):
    a = add(ctx, title="Done one", owner="sanne", service="vpn")
    b = add(ctx, title="Open one", owner="sanne", service="vpn")
    clock.advance(days=2)
    ok(ctx, "sanne", f"csi done CSI-{a} Steps published")
    reply = ok(ctx, "tom", "csi list")
    assert [line.split(" — ")[0] for line in lines(reply, "Open")] == [f"*CSI-{b}* Open one"]
    assert not any(s.title == "Done" for s in reply.sections)
    reply = ok(ctx, "tom", "csi list all")
    assert lines(reply, "Done") == [f"*CSI-{a}* Done one — done 2026-03-04: Steps published"]
    assert lines(ok(ctx, "tom", "csi list vpn all"), "Done") == lines(reply, "Done")
    assert ok(ctx, "tom", "csi list payments all").title == "No open improvements for Payments Gateway"
    clock.advance(days=1)
    ok(ctx, "sanne", f"csi done CSI-{b}")
    reply = ok(ctx, "tom", "csi list all")
    assert not any(s.title == "Open" for s in reply.sections)
    assert lines(reply, "Done") == [f"*CSI-{b}* Open one — done 2026-03-05",  # newest first, no empty note
                                    f"*CSI-{a}* Done one — done 2026-03-04: Steps published"]


# === csi done =================================================================================================

def test_the_owner_finishes_an_item_with_a_note(ctx, clock):
    iid = add(ctx, title="Publish VPN steps", owner="sanne", service="vpn")
    clock.advance(days=3)
    reply = ok(ctx, "sanne", f"csi done CSI-{iid} Steps are in the portal")
    assert (reply.title, reply.text, reply.tone) == (f"CSI-{iid} done: Publish VPN steps", "Steps are in the portal", "ok")
    row = item(ctx, iid)
    assert (row.state, row.done_at, row.done_by, row.note) == \
        ("done", T0 + timedelta(days=3), "sanne", "Steps are in the portal")
    (record,) = audits(ctx, "csi.done")
    assert (record.subject, record.person_id, record.detail) == (f"CSI-{iid}", "sanne", {"note": "Steps are in the portal"})


def test_a_service_manager_may_finish_anyones_item(ctx):
    iid = add(ctx, "tom", title="Refund retries")
    ok(ctx, "priya", f"csi done CSI-{iid}")
    assert (item(ctx, iid).state, item(ctx, iid).done_by, item(ctx, iid).note) == ("done", "priya", "")


def test_nobody_else_may_finish_an_item(ctx):
    iid = add(ctx, title="Publish VPN steps", owner="sanne")
    creator = add(ctx, "tom", title="Tom's item for grace", owner="grace")
    before = everything(ctx)
    # not the owner of another service
    for who in ("tom", "lucas"):
        text = refused(ctx, who, f"csi done CSI-{iid} Done it", outcome="refused")
        assert f"Only Sanne de Vries (its owner) or a service manager can finish CSI-{iid}." in text
    # nor the one who added it
    assert "Only Grace Okafor (its owner)" in refused(ctx, "tom", f"csi done CSI-{creator}", outcome="refused")
    assert everything(ctx) == before


def test_an_item_is_finished_once(ctx, clock):
    iid = add(ctx, title="Once", owner="sanne")
    ok(ctx, "sanne", f"csi done CSI-{iid} First")
    clock.advance(days=1)
    before = everything(ctx)
    assert f"CSI-{iid} was done on 2026-03-02." in refused(ctx, "priya", f"csi done CSI-{iid} Again")
    assert everything(ctx) == before
    assert item(ctx, iid).note == "First"


@pytest.mark.parametrize("text, message", [
    ("csi done", "Say which item, like CSI-4."),
    ("csi done 4", "Say which item, like CSI-4."),
    ("csi done CSI-99", "There is no CSI-99."),
    ("csi frobnicate", "I don't know 'csi frobnicate'."),
])
def test_csi_commands_that_name_nothing_known(ctx, text, message):
    add(ctx, title="Something")
    before = everything(ctx)
    assert message in refused(ctx, "priya", text)
    assert everything(ctx) == before


def test_csi_numbers_without_a_dash_or_in_lower_case(ctx):
    iid = add(ctx, title="Something", owner="priya")
    ok(ctx, "priya", f"csi done csi{iid}")
    assert item(ctx, iid).state == "done"


def test_a_done_item_names_its_state_and_the_one_finishing_needs(ctx):
    iid = add(ctx, title="Once", owner="sanne")
    ok(ctx, "sanne", f"csi done CSI-{iid} First")
    assert "It is done; `csi done` needs an open item." in refused(ctx, "sanne", f"csi done CSI-{iid} Again")


def test_a_mistyped_csi_verb_gets_a_did_you_mean_with_the_command_put_right(ctx):
    iid = add(ctx, title="Something", owner="sanne")
    reply, outcome = run(ctx, "sanne", f'csi dne CSI-{iid} "Steps published"')
    assert outcome == "user_error"
    assert reply.text == "I don't know 'csi dne'. Did you mean `csi done`?"
    assert reply.footer == f'Try: /svc csi done CSI-{iid} "Steps published"'
    assert item(ctx, iid).state == "open"
