"""Problems and known errors (handlers/problems/) at the handler level, on the real store (SQLite, or PostgreSQL
with SVCBOT_TEST_DATABASE_URL) with the test clock, by the people of the demo app.yaml: sanne owns vpn (and
hr-portal), lucas owns email and is on sanne's team, tom owns payments, priya is the service manager. Incidents
are opened in chat; the change that fixes a problem is stored as the change commands leave a completed one."""
from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from handlers import gdpr
from handlers.problems import suggestions
from storage.models import Change, KbArticle, KbTicketLink, OutboxMessage, Problem, ProblemIncident
from tests.test_knowledge import audits, ok, run

VPN_DROPS = ("VPN drops every half hour", "VPN connection drops again after login", "The VPN drops my calls")
NEW = 'problem new title="VPN drops every 30 minutes" services=vpn'


def incident(ctx, title: str, service: str = "vpn", who: str = "lucas") -> str:
    return ok(ctx, who, f"incident new {service} P3 {title}").title.split(" ")[0]


def problem_of(ctx, text: str = NEW, who: str = "sanne") -> str:
    return re.match(r"(PRB-\d+) opened", ok(ctx, who, text).title)[1]


def stored(ctx, prb: str) -> Problem:
    with ctx.sessions() as s:
        return s.get(Problem, int(prb.split("-")[1]))


def outbox(ctx, prefix: str) -> list[OutboxMessage]:
    with ctx.sessions() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith(prefix))
                              .order_by(OutboxMessage.id)))


def completed_change(ctx, clock, state: str = "closed", outcome: str | None = "successful") -> str:
    """A change as `change complete` leaves it: carried out in the last hour."""
    with ctx.sessions.begin() as s:
        change = Change(source="chat", title="Move the VPN to TCP keep-alives", kind="normal", risk="low",
                        impact="low", planned_start=clock() - timedelta(hours=1), planned_end=clock(),
                        actual_start=clock() - timedelta(hours=1), actual_end=clock(), requester="sanne",
                        state=state, outcome=outcome, approvals_needed=0, prompts_sent=[], announcements=[],
                        revision=3, created_at=clock() - timedelta(days=1), updated_at=clock())
        s.add(change)
        s.flush()
        return f"CHG-{change.id}"


def test_three_similar_incidents_of_a_service_are_suggested_to_its_owner_once(ctx, clock):
    old = incident(ctx, "VPN drops during the stand-up")
    clock.advance(days=8)  # out of the seven days
    first, second, third = (incident(ctx, t) for t in VPN_DROPS)
    other = incident(ctx, "Printer on floor 3 jams")
    elsewhere = [incident(ctx, t, "email") for t in ("Mail drops attachments", "Mail drops again")]

    assert suggestions.suggest(ctx) == 1
    [message] = outbox(ctx, "problem-suggestion:")
    assert message.target == ctx.config.person("sanne").slack  # vpn's owner
    body = message.message["text"]
    assert all(t in body for t in (first, second, third)) and other not in body and old not in body
    assert not any(e in body for e in elsewhere)  # two of a kind on email is not yet a pattern
    [button] = message.message["buttons"]
    assert button["run"] == 'problem new title="VPN drops every half hour" services=vpn'

    assert suggestions.suggest(ctx) == 0  # told once
    fourth = incident(ctx, "VPN drops at noon")
    assert ok(ctx, "priya", "problem suggest").title == "No new clusters of similar incidents"
    assert len(outbox(ctx, "problem-suggestion:")) == 1
    assert audits(ctx, "service:vpn").count("problem.suggested") == 1
    assert fourth  # alone, a fourth is not a new cluster


def test_linked_incidents_become_a_known_error_announced_on_the_fourth_and_a_change_resolves_it(ctx, clock):
    incidents = [incident(ctx, t) for t in VPN_DROPS]
    prb = problem_of(ctx)
    assert stored(ctx, prb).owner == "sanne" and stored(ctx, prb).state == "open"
    clock.advance(hours=2)
    reply = ok(ctx, "sanne", f"problem link {prb} {' '.join(incidents)}")
    assert reply.title == f"{prb}: " + "; ".join(f"{i} linked" for i in incidents)
    ok(ctx, "sanne", f"incident resolve {incidents[0]}")

    reply = ok(ctx, "priya", f'problem known-error {prb} workaround="Reconnect with the TCP profile" '
                             f'cause="UDP sessions time out at the firewall"')
    problem = stored(ctx, prb)
    assert problem.state == "known-error" and problem.article_id
    kb = f"KB-{problem.article_id}"
    assert reply.title == f"{prb} is a known error; published as {kb}"
    with ctx.sessions() as s:
        article = s.get(KbArticle, problem.article_id)
        assert (article.kind, article.state, article.workaround) == ("known-error", "published",
                                                                     "Reconnect with the TCP profile")
        assert len(s.scalars(select(KbTicketLink).where(KbTicketLink.article_id == article.id)).all()) == 3
    # The two incidents still open hear the workaround; the resolved one does not need it.
    told = {m.dedupe_key.split(":")[3] for m in outbox(ctx, f"problem:{problem.id}:workaround:")}
    assert told == {i.split("-")[1] for i in incidents[1:]}

    fourth = incident(ctx, "VPN drops when I join a call")
    before = len(outbox(ctx, f"problem:{problem.id}:workaround:{fourth.split('-')[1]}"))
    reply = ok(ctx, "sanne", f"problem link {prb} {fourth}")
    assert "the workaround was announced on it" in reply.title
    announced = outbox(ctx, f"problem:{problem.id}:workaround:{fourth.split('-')[1]}")
    assert before == 0 and {m.target_kind for m in announced} == {"channel", "person"}
    channel = [m for m in announced if m.target_kind == "channel"]
    assert channel[0].target == ctx.config.channels["it-announce"].slack
    assert "Reconnect with the TCP profile" in channel[0].message["text"] and kb in channel[0].message["footer"]
    assert [m.target for m in announced if m.target_kind == "person"] == [ctx.config.person("lucas").slack]
    assert ok(ctx, "sanne", f"problem link {prb} {fourth}").title == f"{prb}: {fourth} was already linked"
    assert len(outbox(ctx, f"problem:{problem.id}:workaround:{fourth.split('-')[1]}")) == len(announced)
    kb_fields = {f.label: f.value for f in ok(ctx, "tom", f"kb show {kb}").sections[0].fields}
    assert kb_fields["Helped with"] == "4 incidents"

    shown = ok(ctx, "tom", f"problem show {prb}")
    fields = {f.label: f.value for f in shown.sections[0].fields}
    assert fields["Incidents"] == "4 (3 open)" and fields["Known error"] == kb

    failed = completed_change(ctx, clock, "closed", "failed")
    reply, outcome = run(ctx, "sanne", f"problem fix {prb} {failed}")
    assert outcome == "user_error" and "carried out" in reply.text and stored(ctx, prb).state == "known-error"
    change = completed_change(ctx, clock)
    reply = ok(ctx, "sanne", f"problem fix {prb} {change}")
    assert reply.title == f"{prb} resolved by {change}"
    problem = stored(ctx, prb)
    assert (problem.state, problem.fix_change_id, problem.resolved_at) == ("resolved", int(change[4:]), clock())
    with ctx.sessions() as s:
        assert s.get(KbArticle, problem.article_id).fixed_by == change
    assert audits(ctx, prb) == ["problem.new", *["problem.link"] * 3, "problem.known-error",
                                *["problem.workaround_told"] * 2, "problem.link", "problem.workaround_told",
                                "problem.resolved"]

    clock.advance(days=2)  # it comes back: a known error again, and the new incident hears the workaround
    fifth = incident(ctx, "VPN drops since this morning")
    reply = ok(ctx, "sanne", f"problem link {prb} {fifth}")
    assert "is known-error again" in reply.title and "the workaround was announced on it" in reply.title
    assert stored(ctx, prb).state == "known-error"


def test_an_incident_after_the_fix_reopens_the_problem_and_tells_its_owner_within_30_days_only(ctx, clock):
    before_fix = incident(ctx, "VPN drops on the train")
    prb = problem_of(ctx, NEW + " owner=lucas", who="priya")
    ok(ctx, "priya", f"problem link {prb} {before_fix}")
    change = completed_change(ctx, clock)
    ok(ctx, "lucas", f"problem fix {prb} {change}")  # its owner, though vpn is sanne's

    clock.advance(days=3)
    ok(ctx, "sanne", f"problem link {prb} {incident(ctx, 'VPN drops on the train again')}")  # a recurrence
    problem = stored(ctx, prb)
    assert (problem.state, problem.reopened, problem.fix_change_id) == ("open", 1, None)
    [dm] = [m for m in outbox(ctx, f"problem:{problem.id}:recurrence:")]
    assert dm.target == ctx.config.person("lucas").slack and change in dm.message["text"]
    assert audits(ctx, prb)[-2:] == ["problem.link", "problem.open"]

    ok(ctx, "lucas", f"problem fix {prb} {completed_change(ctx, clock)}")
    clock.advance(days=31)
    late = incident(ctx, "VPN drops once in a while")
    reply, outcome = run(ctx, "lucas", f"problem link {prb} {late}")
    assert outcome == "user_error" and "new problem" in reply.text
    assert stored(ctx, prb).state == "resolved"
    with ctx.sessions() as s:
        assert s.get(ProblemIncident, int(late[4:])) is None


def test_only_owners_and_service_managers_run_problems_and_bad_input_changes_nothing(ctx, clock):
    first, second = incident(ctx, "VPN drops"), incident(ctx, "VPN drops again")
    reply, outcome = run(ctx, "tom", NEW)
    assert outcome == "refused" and "Remote Access VPN" in reply.text
    prb = problem_of(ctx)
    for who, text in (("tom", f"problem link {prb} {first}"), ("lucas", f"problem link {prb} {first}"),
                      ("tom", f'problem known-error {prb} workaround="Reboot"'),
                      ("tom", f"problem fix {prb} CHG-1")):
        assert run(ctx, who, text)[1] == "refused", (who, text)  # lucas is on vpn's team, not its owner
    with ctx.sessions() as s:
        assert s.scalars(select(ProblemIncident)).all() == []

    for text, said in ((f"problem link {prb} {first} INC-999", "There is no ticket 'INC-999'"),
                       (f"problem link PRB-999 {first}", "There is no PRB-999"),
                       ('problem new title="x" services=nowhere', "unknown service 'nowhere'"),
                       ("problem new services=vpn", "title: say what goes wrong"),
                       ('problem new title="x" services=vpn colour=red', "Unknown field: colour"),
                       (f"problem known-error {prb}", "needs its workaround"),
                       (f"problem fix {prb} CHG-77", "There is no CHG-77"),
                       (f"problem fix {prb} PRB-2", "is not a change"),
                       ("problem list closed", "not a problem state"),
                       ("problem lnk", "Did you mean `problem link`?")):
        reply, outcome = run(ctx, "sanne", text)
        assert outcome == "user_error" and said in reply.text + reply.footer, (text, reply.text)
    with ctx.sessions() as s:
        assert s.scalars(select(ProblemIncident)).all() == []  # the good incident was not linked either
        assert len(s.scalars(select(Problem)).all()) == 1
    ok(ctx, "sanne", f"problem link {prb} {first} {second}")
    other = problem_of(ctx, 'problem new title="Slow VPN" services=vpn')
    reply, outcome = run(ctx, "sanne", f"problem link {other} {first}")
    assert outcome == "user_error" and f"already an incident of {prb}" in reply.text
    assert ok(ctx, "sanne", f"problem unlink {prb} {first}").title == f"{prb}: {first} unlinked"
    ok(ctx, "sanne", f"problem link {other} {first}")
    listed = ok(ctx, "tom", "problem list").text
    assert f"*{prb}* VPN drops every 30 minutes — Remote Access VPN · 1 incident · open" in listed
    assert ok(ctx, "tom", "problem list resolved").title == "No resolved problems"


def test_impact_sums_business_time_on_the_service_calendar_and_gdpr_lists_owned_problems(ctx, clock):
    # vpn runs on the Amsterdam calendar (08:30-12:30 and 13:30-17:30 local on working days); the test clock
    # starts on a Monday at 09:00 UTC, 10:00 in Amsterdam in March.
    first = incident(ctx, "VPN drops")
    clock.advance(hours=3)  # resolved at 13:00 local: 10:00-12:30 is 2.5 business hours
    ok(ctx, "sanne", f"incident resolve {first}")
    clock.advance(days=1)  # Tuesday 13:00 local
    second = incident(ctx, "VPN drops again")
    clock.advance(hours=30)  # Wednesday 19:00 local, still open: Tuesday 13:30-17:30 and all Wednesday, 4 + 8 h
    prb = problem_of(ctx)
    ok(ctx, "sanne", f"problem link {prb} {first} {second}")
    fields = {f.label: f.value for f in ok(ctx, "tom", f"problem show {prb}").sections[0].fields}
    assert fields["Impact"] == "14.5 h business time, 33.0 h on the clock"

    data = gdpr.export(ctx, "sanne")
    assert data["problems"] == [{"problem": prb, "title": "VPN drops every 30 minutes", "owner": True,
                                 "opened_it": True}]
    assert [link["ticket"] for link in data["incidents_linked_to_problems"]] == [first, second]
    gdpr.erase(ctx, "sanne")
    assert gdpr.export(ctx, "sanne")["problems"] == data["problems"]  # governance, kept
