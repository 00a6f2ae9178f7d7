"""Pulse surveys, after-ticket surveys, the CSI register and satisfaction attainment through the JSON API, end
to end: the real server in a subprocess (on real time), plain HTTP with a bearer token, and the store read back
directly. People answer surveys in chat; here they answer through the survey handler in this process, on the
server's store, as the chat command would. The demo configuration, plus two people who own no service."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
import requests
import yaml

from bot import api as api_module
from handlers.core.context import Actor, Command
from handlers.surveys import asking
from handlers.surveys import commands as surveys
from storage.models import AuditRecord, CsiItem, OutboxMessage, Survey
from tests.conftest import db_count, db_rows, demo_config
from tests.test_api_e2e import TOKEN, Client, fits

pytestmark = pytest.mark.e2e

UTC = timezone.utc
# Two people who neither manage services nor own one: they may answer surveys and raise CSI items, not run surveys.
EXTRA_PEOPLE = [
    {"id": "kim", "name": "Kim Larsen", "slack": "U0KIM00008", "timezone": "Europe/London"},
    {"id": "noor", "name": "Noor Haddad", "slack": "U0NOOR0009", "timezone": "Europe/Amsterdam"},
]
# Everyone but priya (a service manager, who runs the surveys below and answers none of them).
RESPONDENTS = ["tom", "sanne", "arjun", "meera", "lucas", "grace", "kim", "noor"]


@pytest.fixture
def config_file(tmp_path):
    cfg = demo_config()
    cfg["people"] += EXTRA_PEOPLE
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def server(start_server):
    return start_server(SVCBOT_API_TOKEN=TOKEN)


@pytest.fixture
def api(server):
    return Client(server.url)


@pytest.fixture
def answer(ctx, clock):
    """A person answers a survey, as `survey answer SRV-N VALUE` in chat does; on real time, like the server."""
    def run(pid: str, survey: dict, value, comment: str | None = None, at: datetime | None = None):
        p = ctx.config.person(pid)
        clock.to(at or datetime.now(UTC))
        actor = Actor(person_id=pid, name=p.name, platform="slack", roles=ctx.roles_of(pid), timezone=p.timezone)
        cmd = Command(actor, f"survey answer {survey['id']} {value}")
        return asking.answer(ctx, cmd, survey["number"], str(value), comment)
    return run


def in_days(days: float, offset: str = "+00:00") -> str:
    """A whole minute ``days`` from now, in RFC 3339 with the given offset."""
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    delta = timedelta(hours=hours, minutes=minutes) * (1 if offset[0] == "+" else -1)
    moment = (datetime.now(UTC) + timedelta(days=days)).replace(second=0, microsecond=0)
    return (moment + delta).replace(tzinfo=None).isoformat() + offset


def rfc(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def create(api, **fields) -> dict:
    body = {"owner": "priya", "question": "How satisfied are you with the service desk?", "scale": "csat",
            "people": RESPONDENTS, **fields}
    response = api.post("/api/v1/surveys", {k: v for k, v in body.items() if v is not None})
    assert response.status_code == 201, response.text
    fits(response.json(), "Survey")
    return response.json()


def view(api, survey: dict) -> dict:
    response = api.get(f"/api/v1/surveys/{survey['id']}")
    assert response.status_code == 200, response.text
    fits(response.json(), "Survey")
    return response.json()


def strings(node) -> list[str]:
    """Every key and string value in a JSON answer."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [k, *strings(v)]]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def names_nobody(answer, people=RESPONDENTS) -> None:
    found = [(s, p) for s in strings(answer) for p in people if re.search(rf"\b{p}\b", s, re.IGNORECASE)]
    assert found == [], found


# ------------------------------------------------------------------------------------------- create

def test_a_pulse_survey_is_posted_in_its_channels_on_the_owners_behalf(api, database_url):
    closes = in_days(3, "+02:00")
    response = api.post("/api/v1/surveys", {
        "owner": "tom", "question": "How satisfied are you with card payments?", "scale": "csat",
        "channel": ["payments", "it-announce"], "closes": closes, "service": "Payments Gateway"})
    assert response.status_code == 201, response.text
    survey = response.json()
    fits(survey, "Survey")
    assert response.headers["Location"] == f"/api/v1/surveys/{survey['id']}"
    assert survey["id"] == f"SRV-{survey['number']}"
    assert (survey["kind"], survey["scale"], survey["anonymous"], survey["comment"], survey["state"]) == \
        ("pulse", "csat", True, True, "open")
    assert (survey["audience_kind"], survey["audience"], survey["asked"]) == \
        ("channel", ["payments", "it-announce"], None)
    assert (survey["owner"], survey["service"], survey["ticket"], survey["closed_at"]) == \
        ("tom", "payments", None, None)
    assert rfc(survey["closes_at"]) == rfc(closes)
    # Anonymous and unanswered: nothing to show yet, and it says so.
    assert (survey["answers"], survey["hidden"], survey["results"]) == (0, True, None)
    # The question was queued for each channel on each platform it has, with the survey.
    posts = db_rows(database_url, OutboxMessage, OutboxMessage.subject == survey["id"])
    assert sorted((m.platform, m.target_kind, m.target) for m in posts) == sorted([
        ("slack", "channel", "C0PAYMENTS"), ("teams", "channel", "19:payments00000000000000000000000@thread.tacv2"),
        ("slack", "channel", "C0ANNOUNCE"), ("teams", "channel", "19:announce000000000000000000000@thread.tacv2")])
    assert all(m.dedupe_key.startswith(f"survey:{survey['number']}:post:") for m in posts)
    [row] = db_rows(database_url, Survey)
    assert (row.owner, row.kind, row.audience) == ("tom", "pulse", ["payments", "it-announce"])
    # Audited through the API (as whom: see the next test).
    created = [a for a in db_rows(database_url, AuditRecord) if a.action == "survey.new"]
    assert [(a.platform, a.subject) for a in created] == [("api", survey["id"])]
    for ref in (survey["id"], str(survey["number"]), survey["id"].lower()):
        again = api.get(f"/api/v1/surveys/{ref}")
        assert again.status_code == 200 and again.json() == survey, ref


def test_a_named_survey_is_audited_as_its_owner(api, database_url):
    survey = create(api, owner="tom", anonymous=False)
    assert [(a.person_id, a.platform) for a in db_rows(database_url, AuditRecord)
            if a.action == "survey.new" and a.subject == survey["id"]] == [("tom", "api")]


def test_an_anonymous_survey_is_audited_as_its_owner_too(api, database_url):
    survey = create(api, owner="tom", anonymous=True)
    [record] = [a for a in db_rows(database_url, AuditRecord) if a.action == "survey.new"
                and a.subject == survey["id"]]
    assert (record.person_id, record.detail.get("anonymous")) == ("tom", True)


def test_a_survey_of_people_asks_each_by_direct_message_and_hides_who_for_an_anonymous_one(api, database_url):
    named = create(api, people=["tom", "sanne"], group="platform-ops", anonymous=False, comment=False, scale="nps")
    assert (named["audience_kind"], named["audience"], named["asked"], named["anonymous"], named["comment"]) == \
        ("people", ["tom", "sanne", "arjun", "meera"], 4, False, False)
    asked = db_rows(database_url, OutboxMessage, OutboxMessage.subject == named["id"])
    assert all(m.target_kind == "person" for m in asked)
    assert {m.target for m in asked if m.platform == "slack"} == {"U0TOM0002", "U0SANNE03", "U0ARJUN04", "U0MEERA05"}
    anonymous = create(api, people=["kim"], group="workplace-it", closes=in_days(1))
    assert (anonymous["audience"], anonymous["asked"]) == (None, 3)  # how many, not who
    assert {m.target for m in db_rows(database_url, OutboxMessage, OutboxMessage.subject == anonymous["id"])
            if m.platform == "slack"} == {"U0KIM00008", "U0SANNE03", "U0LUCAS06"}
    names_nobody(anonymous, ["kim", "sanne", "lucas"])


def test_every_invalid_survey_is_422_with_its_fields_named_and_nothing_is_written(api, database_url):
    good = {"owner": "priya", "question": "Q?", "channel": ["ops"]}
    cases = [
        ({}, "owner: required"),
        ({**good, "owner": "nobody"}, "owner: there is no person 'nobody' in app.yaml"),
        ({"owner": "priya"}, "question: ask a question"),
        ({"owner": "priya"}, "channel: say who is asked"),
        ({**good, "scale": "stars"}, "scale: expected one of csat, nps, yesno"),
        ({**good, "channel": "ops"}, "channel: expected a list"),
        ({**good, "channel": ["ops,shop"]}, "channel[0]: \"ops,shop\" does not match"),
        ({**good, "channel": ["nowhere"]}, "channel: unknown channel 'nowhere'"),
        ({"owner": "priya", "question": "Q?", "people": ["nobody"]}, "people: unknown person 'nobody'"),
        ({"owner": "priya", "question": "Q?", "group": "nogroup"}, "group: unknown group 'nogroup'"),
        ({**good, "people": ["tom"]}, "channel: post in channels or ask people and groups, not both"),
        ({**good, "closes": "in 5 days"}, "closes: expected an RFC 3339 date-time"),
        ({**good, "closes": "2020-01-01T00:00:00Z"}, "closes: the closing time must be at least five minutes"),
        ({**good, "closes": in_days(0.001)}, "closes: the closing time must be at least five minutes"),
        ({**good, "service": "nowhere"}, "service: unknown service 'nowhere'"),
        ({**good, "anonymous": "yes"}, "anonymous: expected true or false"),
        ({**good, "comment": 1}, "comment: expected true or false"),
        ({**good, "question": "x" * 501}, "question: longer than 500 characters"),
        ({**good, "question": "   "}, "question: ask a question"),
        ({**good, "colour": "red"}, "colour: unknown field"),
    ]
    for body, expected in cases:
        response = api.post("/api/v1/surveys", body)
        assert response.status_code == 422, (body, response.text)
        fits(response.json(), "Error")
        assert any(expected in p for p in response.json()["problems"]), (body, response.json())
    # Every faulty field at once.
    response = api.post("/api/v1/surveys", {"owner": "priya", "scale": "nps", "channel": ["nowhere"],
                                            "service": "nowhere", "closes": "2020-01-01T00:00:00Z"})
    assert {p.split(":")[0] for p in response.json()["problems"]} == {"question", "channel", "service", "closes"}
    assert api.post("/api/v1/surveys", data="{nope").status_code == 400
    assert api.post("/api/v1/surveys", data="").status_code == 400
    assert db_count(database_url, Survey) == 0
    assert db_count(database_url, OutboxMessage) == 0 and db_count(database_url, AuditRecord) == 0


def test_only_service_managers_and_service_owners_run_surveys(api, database_url):
    for who in ("kim", "noor"):
        refused = api.post("/api/v1/surveys", {"owner": who, "question": "Q?", "channel": ["ops"]})
        assert refused.status_code == 403, refused.text
        fits(refused.json(), "Error")
        assert "Service managers and service owners run surveys" in refused.json()["error"]
        assert refused.json()["problems"][0].startswith("owner: ")
    assert db_count(database_url, Survey) == 0 and db_count(database_url, OutboxMessage) == 0
    # An owner of any service (meera owns the data platform) and a service manager may.
    assert create(api, owner="meera", question="Are the dashboards quick enough?", scale="yesno")["owner"] == "meera"
    assert create(api, owner="priya")["owner"] == "priya"


# ------------------------------------------------------------------------------------------- results

def test_anonymous_results_stay_hidden_below_the_minimum_and_never_say_who_answered(api, answer):
    survey = create(api, question="How do you rate the new laptops?", channel=["it-announce"], people=None)
    words = ["Battery lasts all day", "Docking is flaky", "Fan is loud", "Keyboard is great", "Screen too dim"]
    # Four answers, with comments: fewer than surveys.min_respondents (5).
    for pid, value, comment in zip(RESPONDENTS, (5, 4, 2, 4), words):
        answer(pid, survey, value, comment)
    shown = view(api, survey)
    assert (shown["answers"], shown["hidden"], shown["results"]) == (4, True, None)
    assert not any(w in json.dumps(shown) for w in words)  # the comments are hidden with the results
    listed = api.get("/api/v1/surveys").json()
    fits(listed, "SurveyList")
    [summary] = listed["surveys"]
    assert (summary["answers"], summary["hidden"], summary["score"], summary["score_name"]) == (4, True, None, "CSAT")
    # A person changing their answer is still one answer.
    answer("tom", survey, 4)
    assert view(api, survey)["answers"] == 4
    # The fifth: the results show, and still nothing in them says who answered.
    answer(RESPONDENTS[4], survey, 1, words[4])
    shown = view(api, survey)
    assert (shown["answers"], shown["hidden"]) == (5, False)
    results = shown["results"]
    assert results["distribution"] == {"1": 1, "2": 1, "3": 0, "4": 3, "5": 0}
    assert (results["answers"], results["invited"], results["response_rate"]) == (5, None, None)
    assert (results["score_name"], results["score"], results["csat"], results["nps"], results["yes"]) == \
        ("CSAT", 60.0, 60.0, None, None)  # 3 of 5 answered 4 or 5
    # Plain strings, alphabetical (they were given in that order, and would read newest first otherwise).
    assert results["comments"] == sorted(words)
    names_nobody(shown)
    names_nobody(api.get("/api/v1/surveys").json())
    assert api.get("/api/v1/surveys", params={"state": "open"}).json()["surveys"][0]["score"] == 60.0


def test_an_anonymous_survey_of_people_never_tells_who_was_asked_or_who_answered(api, answer):
    survey = create(api, question="Is the office wifi good enough?", scale="yesno", people=RESPONDENTS)
    assert (survey["audience"], survey["asked"]) == (None, len(RESPONDENTS))
    for i, pid in enumerate(RESPONDENTS[:6]):
        answer(pid, survey, "yes" if i % 3 else "no", f"Remark number {i}")
    for shown in (view(api, survey), api.get("/api/v1/surveys").json()):
        names_nobody(shown)
    shown = view(api, survey)
    assert shown["results"]["distribution"] == {"0": 2, "1": 4}
    assert shown["results"]["yes"] == pytest.approx(100 * 4 / 6)
    assert shown["results"]["response_rate"] == pytest.approx(100 * 6 / 8)
    assert all(isinstance(c, str) for c in shown["results"]["comments"])
    closed = api.post(f"/api/v1/surveys/{survey['id']}/close", {"person": "priya"})
    assert closed.status_code == 200, closed.text
    names_nobody(closed.json())
    assert closed.json()["results"]["distribution"] == {"0": 2, "1": 4}


def test_a_named_survey_shows_its_results_with_csat_arithmetic_and_the_trend(api, answer):
    question = "How satisfied are you with the service desk?"
    first = create(api, question=question, anonymous=False)
    values = {"tom": 5, "sanne": 4, "arjun": 4, "meera": 3, "lucas": 1}
    for pid, value in values.items():
        answer(pid, first, value, "Quick and kind" if pid == "tom" else None)
    shown = view(api, first)
    assert (shown["hidden"], shown["answers"], shown["audience"], shown["asked"]) == (False, 5, RESPONDENTS, 8)
    r = shown["results"]
    # By hand: 4 or 5 from tom, sanne and arjun: 3 of 5 = 60 %; 5 of the 8 asked answered.
    assert r["distribution"] == {"1": 1, "2": 0, "3": 1, "4": 2, "5": 1}
    assert (r["score_name"], r["score"], r["csat"], r["nps"], r["yes"]) == ("CSAT", 60.0, 60.0, None, None)
    assert (r["invited"], r["response_rate"]) == (8, 100 * 5 / 8)
    assert r["comments"] == [{"person": "tom", "comment": "Quick and kind"}]
    assert r["trend"] is None
    assert api.post(f"/api/v1/surveys/{first['id']}/close", {"person": "priya"}).status_code == 200
    # The same question again: 5, 5, 4 and 2 is 3 of 4 = 75 %, 15 points up.
    second = create(api, question=question.upper(), anonymous=False)
    for pid, value in (("tom", 5), ("sanne", 5), ("grace", 4), ("kim", 2)):
        answer(pid, second, value)
    r = view(api, second)["results"]
    assert (r["csat"], r["response_rate"]) == (75.0, 50.0)
    assert r["trend"] == {"previous": first["id"], "change": pytest.approx(15.0)}


def test_nps_arithmetic(api, answer):
    survey = create(api, question="Would you recommend the new VPN client?", scale="nps", anonymous=False)
    for pid, value in zip(RESPONDENTS, (10, 9, 9, 8, 7, 6, 3)):
        answer(pid, survey, value)
    r = view(api, survey)["results"]
    # Promoters (9–10): 3 of 7; detractors (0–6): 2 of 7; passives (7–8) count only in the total.
    assert r["distribution"] == {str(v): n for v, n in
                                 {0: 0, 1: 0, 2: 0, 3: 1, 4: 0, 5: 0, 6: 1, 7: 1, 8: 1, 9: 2, 10: 1}.items()}
    assert (r["score_name"], r["csat"], r["yes"]) == ("NPS", None, None)
    assert r["nps"] == r["score"] == pytest.approx(100 * 3 / 7 - 100 * 2 / 7)


# ------------------------------------------------------------------------------------------- close

def test_a_survey_is_closed_by_its_owner_once(api, database_url, answer):
    survey = create(api, owner="tom", question="How was the payments release?", anonymous=False,
                    people=["grace", "kim"], service="payments")
    answer("grace", survey, 4)
    cases = [
        ({"person": "sanne"}, 403, "Only SRV-"),  # she owns other services, not this survey
        ({"person": "kim"}, 403, "owner or a service manager"),
        ({"person": "nobody"}, 422, "person: there is no person 'nobody'"),
        ({}, 422, "person: required"),
        ({"person": "tom", "note": "x"}, 422, "note: unknown field"),
    ]
    for body, status, expected in cases:
        response = api.post(f"/api/v1/surveys/{survey['id']}/close", body)
        assert response.status_code == status, (body, response.text)
        fits(response.json(), "Error")
        assert any(expected in p for p in response.json()["problems"]), (body, response.json())
    assert view(api, survey)["state"] == "open"
    missing = api.post("/api/v1/surveys/SRV-999/close", {"person": "tom"})
    assert missing.status_code == 404 and "no survey 'SRV-999'" in missing.json()["problems"][0]
    closed = api.post(f"/api/v1/surveys/{survey['id']}/close", {"person": "tom"})
    assert closed.status_code == 200, closed.text
    fits(closed.json(), "Survey")
    assert closed.json()["state"] == "closed" and closed.json()["closed_at"]
    assert closed.json()["results"]["csat"] == 100.0
    # Its owner was sent the results.
    assert any(m.dedupe_key.startswith(f"survey:{survey['number']}:results:owner")
               for m in db_rows(database_url, OutboxMessage))
    again = api.post(f"/api/v1/surveys/{survey['id']}/close", {"person": "tom"})
    assert again.status_code == 409, again.text
    fits(again.json(), "Error")
    assert "is closed already" in again.json()["error"]
    assert [a.person_id for a in db_rows(database_url, AuditRecord) if a.action == "survey.close"] == ["tom"]
    # A service manager may close anyone's survey.
    other = create(api, owner="meera", question="Dashboards?", scale="yesno")
    assert api.post(f"/api/v1/surveys/{other['number']}/close", {"person": "priya"}).status_code == 200


def test_the_survey_list_filters_and_its_bad_parameters(api):
    a = create(api, question="First?", service="vpn", scale="yesno")
    b = create(api, question="Second?", owner="tom", service="payments")
    c = create(api, question="Third?")
    api.post(f"/api/v1/surveys/{a['id']}/close", {"person": "priya"})

    def ids(**params) -> list[str]:
        response = api.get("/api/v1/surveys", params=params)
        assert response.status_code == 200, response.text
        fits(response.json(), "SurveyList")
        return [s["id"] for s in response.json()["surveys"]]
    assert ids() == [c["id"], b["id"], a["id"]]
    assert ids(state="open") == [c["id"], b["id"]]
    assert ids(state="closed") == [a["id"]]
    assert ids(service="Payments Gateway") == [b["id"]]
    assert ids(kind="pulse", limit="1") == [c["id"]]
    assert ids(kind="ticket") == ids(state="scheduled") == []
    for path, status, expected in [
        ("/api/v1/surveys?state=sideways", 400, "state: expected one of scheduled, open, closed, cancelled"),
        ("/api/v1/surveys?kind=poll", 400, "kind: expected one of pulse, ticket"),
        ("/api/v1/surveys?service=nowhere", 400, "there is no service 'nowhere'"),
        ("/api/v1/surveys?limit=0", 400, "limit: less than 1"),
        ("/api/v1/surveys?colour=red", 400, "colour: unknown parameter"),
        ("/api/v1/surveys/SRV-999", 404, "no survey 'SRV-999'"),
        ("/api/v1/surveys/banana", 404, "say SRV-N or N"),
    ]:
        response = api.get(path)
        assert response.status_code == status, (path, response.text)
        fits(response.json(), "Error")
        assert any(expected in p for p in response.json()["problems"]), (path, response.json())


# ------------------------------------------------------------------------------------------- after tickets

def test_a_ticket_resolved_through_the_api_schedules_its_requesters_survey_once(api, database_url):
    ticket = api.open(service="payments", priority="P3", title="Refund stuck", requester="grace")
    fits(ticket, "Ticket")
    assert ticket["requester"] == "grace"
    assert db_count(database_url, Survey) == 0  # open: nothing yet
    resolved = api.event(ticket["id"], "resolve")
    assert resolved["state"] == "resolved"
    [row] = db_rows(database_url, Survey)
    assert (row.kind, row.state, row.ticket_id, row.audience, row.service_id, row.anonymous, row.owner) == \
        ("ticket", "scheduled", ticket["number"], ["grace"], "payments", False, "tom")
    # Reopened and resolved again: still the one survey.
    api.event(ticket["id"], "reopen")
    api.event(ticket["id"], "resolve")
    api.event(ticket["id"], "close")
    assert db_count(database_url, Survey, Survey.kind == "ticket") == 1
    [listed] = api.get("/api/v1/surveys", params={"kind": "ticket"}).json()["surveys"]
    assert (listed["ticket"], listed["state"], listed["service"]) == (ticket["id"], "scheduled", "payments")
    shown = api.get(f"/api/v1/surveys/{listed['id']}").json()
    fits(shown, "Survey")
    assert (shown["audience"], shown["ticket"], shown["hidden"], shown["results"]["answers"]) == \
        (["grace"], ticket["id"], False, 0)
    assert "INC-" in shown["question"]


def test_no_survey_without_a_ticket_survey_or_without_a_requester(api, database_url):
    webshop = api.open(service="webshop", priority="P3", title="Basket empties", requester="grace")
    api.event(webshop["id"], "resolve")
    anonymous = api.open(service="payments", priority="P3", title="Opened by a monitor")
    assert anonymous["requester"] is None
    api.event(anonymous["id"], "resolve")
    assert db_count(database_url, Survey) == 0
    # An unknown requester is refused, with nothing written.
    before = db_count(database_url, AuditRecord)
    bad = api.post("/api/v1/tickets", {"service": "payments", "priority": "P3", "title": "x", "requester": "nobody"})
    assert bad.status_code == 422, bad.text
    assert "requester: there is no person 'nobody' in app.yaml" in bad.json()["problems"][0]
    assert api.post("/api/v1/tickets", {"service": "payments", "priority": "P3", "title": "x",
                                        "requester": ""}).status_code == 422
    assert db_count(database_url, AuditRecord) == before


# ------------------------------------------------------------------------------------------- CSI

def test_csi_items_are_raised_listed_and_done(api, database_url):
    survey = create(api, owner="tom", question="Payments OK?", service="payments")
    ticket = api.open(service="vpn", priority="P3", title="Tunnel drops")
    due = in_days(14)[:10]
    raised = api.post("/api/v1/csi", {"person": "kim", "title": "Publish refund steps", "owner": "tom",
                                      "due": due, "survey": survey["id"]})
    assert raised.status_code == 201, raised.text
    item = raised.json()
    fits(item, "CsiItem")
    assert raised.headers["Location"] == f"/api/v1/csi/{item['id']}"
    assert (item["id"], item["title"], item["owner"], item["due"], item["overdue"], item["state"]) == \
        (f"CSI-{item['number']}", "Publish refund steps", "tom", due, False, "open")
    # The service comes from the survey; the owner is told.
    assert (item["service"], item["survey"], item["ticket"], item["created_by"]) == \
        ("payments", survey["id"], None, "kim")
    assert [m.target for m in db_rows(database_url, OutboxMessage, OutboxMessage.subject == item["id"])
            if m.platform == "slack"] == ["U0TOM0002"]
    late = api.post("/api/v1/csi", {"person": "sanne", "title": "Keep tunnels up", "due": "2020-01-31",
                                    "ticket": ticket["id"]}).json()
    assert (late["owner"], late["service"], late["ticket"], late["overdue"]) == ("sanne", "vpn", ticket["id"], True)

    def ids(**params) -> list[str]:
        response = api.get("/api/v1/csi", params=params)
        assert response.status_code == 200, response.text
        fits(response.json(), "CsiList")
        return [i["id"] for i in response.json()["items"]]
    assert ids() == [late["id"], item["id"]]  # soonest due first
    assert ids(service="payments") == [item["id"]]
    assert ids(state="done") == []

    refused = api.post(f"/api/v1/csi/{item['id']}/done", {"person": "kim", "note": "Done it"})
    assert refused.status_code == 403, refused.text
    assert "(its owner) or a service manager" in refused.json()["error"]
    done = api.post(f"/api/v1/csi/{item['number']}/done", {"person": "tom", "note": "Steps  in the\nportal"})
    assert done.status_code == 200, done.text
    fits(done.json(), "CsiItem")
    assert (done.json()["state"], done.json()["done_by"], done.json()["note"]) == ("done", "tom", "Steps in the portal")
    assert done.json()["done_at"]
    again = api.post(f"/api/v1/csi/{item['id']}/done", {"person": "tom"})
    assert again.status_code == 409 and "was done on" in again.json()["error"]
    assert api.post("/api/v1/csi/CSI-999/done", {"person": "tom"}).status_code == 404
    assert api.post("/api/v1/csi/banana/done", {"person": "tom"}).status_code == 404
    assert ids() == [late["id"]]
    assert ids(state="done") == [item["id"]]
    assert ids(state="all") == [late["id"], item["id"]]
    assert ids(state="all", limit="1") == [late["id"]]
    # A service manager may finish anyone's.
    assert api.post(f"/api/v1/csi/{late['id']}/done", {"person": "priya"}).json()["state"] == "done"
    assert [(a.action, a.person_id, a.platform) for a in db_rows(database_url, AuditRecord)
            if a.action.startswith("csi.")] == [("csi.add", "kim", "api"), ("csi.add", "sanne", "api"),
                                                 ("csi.done", "tom", "api"), ("csi.done", "priya", "api")]


def test_every_invalid_csi_item_is_422_and_nothing_is_written(api, database_url):
    good = {"person": "kim", "title": "Something better"}
    cases = [
        ({"title": "x"}, "person: required"),
        ({"person": "kim"}, "title: required"),
        ({**good, "person": "nobody"}, "person: there is no person 'nobody'"),
        ({**good, "title": "  "}, "title: say what will improve"),
        ({**good, "owner": "nobody"}, "owner: unknown person 'nobody'"),
        ({**good, "due": "2026-02-30"}, "due: '2026-02-30' is not a date"),
        ({**good, "due": "tomorrow"}, "due: \"tomorrow\" does not match"),
        ({**good, "service": "nowhere"}, "service: unknown service 'nowhere'"),
        ({**good, "survey": "SRV-999"}, "survey: there is no SRV-999"),
        ({**good, "ticket": "INC-999"}, "ticket: there is no INC-999"),
        ({**good, "ticket": "banana"}, "ticket: there is no banana"),
        ({**good, "colour": "red"}, "colour: unknown field"),
    ]
    for body, expected in cases:
        response = api.post("/api/v1/csi", body)
        assert response.status_code == 422, (body, response.text)
        fits(response.json(), "Error")
        assert any(expected in p for p in response.json()["problems"]), (body, response.json())
    assert api.post("/api/v1/csi", data="{nope").status_code == 400
    for path, expected in [("/api/v1/csi?state=closed", "state: expected one of open, done, all"),
                           ("/api/v1/csi?service=nowhere", "there is no service 'nowhere'")]:
        response = api.get(path)
        assert response.status_code == 400 and any(expected in p for p in response.json()["problems"]), path
    assert db_count(database_url, CsiItem) == 0
    assert db_count(database_url, OutboxMessage) == 0 and db_count(database_url, AuditRecord) == 0


# ------------------------------------------------------------------------------------------- SLA

def test_sla_attainment_carries_the_satisfaction_of_services_with_a_target(api, answer):
    named = create(api, owner="tom", question="How was paying today?", anonymous=False, service="payments")
    for pid, value in zip(RESPONDENTS, (4, 5, 5, 3, 2)):
        answer(pid, named, value)
    # An anonymous survey's answers count only once its results show: two are not enough.
    hidden = create(api, owner="tom", question="Checkout speed?", service="payments")
    for pid in RESPONDENTS[:2]:
        answer(pid, hidden, 1)
    # Answers about a service without a satisfaction target show nowhere here.
    other = create(api, owner="grace", question="Shop?", anonymous=False, service="webshop")
    answer("kim", other, 1)
    response = api.get("/api/v1/sla", params={"service": "payments", "period": "30d"})
    assert response.status_code == 200, response.text
    fits(response.json(), "Attainment")
    # By hand: 4 or 5 from three of the five: 60 %, under the 80 % goal.
    assert response.json()["satisfaction"] == [{
        "agreement": "SLA-PAY", "agreement_kind": "sla", "party": "Retail Operations", "service": "payments",
        "answers": 5, "satisfied": 3, "share": 60.0, "goal": 80.0, "ok": False}]
    everything = api.get("/api/v1/sla", params={"period": "30d"}).json()
    assert [s["service"] for s in everything["satisfaction"]] == ["payments"]
    assert api.get("/api/v1/sla", params={"service": "webshop", "period": "30d"}).json()["satisfaction"] == []
    # Three more answers to the anonymous survey make five: now its answers count too.
    for pid in RESPONDENTS[2:5]:
        answer(pid, hidden, 5)
    [row] = api.get("/api/v1/sla", params={"service": "payments", "period": "30d"}).json()["satisfaction"]
    assert (row["answers"], row["satisfied"], row["share"]) == (10, 6, 60.0)


def test_a_period_never_isolates_fewer_anonymous_answers_than_the_minimum(api, ctx, clock, answer):
    """Five people answer an anonymous survey about payments: four on 31 May 2025, one on 1 June. The survey's
    results may show, but June's satisfaction would be the one June answer, and tell what that person said."""
    clock.to(datetime(2025, 5, 29, 9, 0, tzinfo=UTC))
    tom = ctx.config.person("tom")
    cmd = Command(Actor("tom", tom.name, "console", ctx.roles_of("tom"), tom.timezone), "survey new")
    survey_id, _ = surveys.create(ctx, cmd, {"question": "Payments?", "scale": "csat", "channel": "payments",
                                             "closes": "in 1000 days", "service": "payments"})
    survey = {"id": f"SRV-{survey_id}", "number": survey_id}
    for pid in RESPONDENTS[:4]:
        answer(pid, survey, 5, at=datetime(2025, 5, 31, 12, 0, tzinfo=UTC))
    answer(RESPONDENTS[4], survey, 1, at=datetime(2025, 6, 1, 12, 0, tzinfo=UTC))
    assert view(api, survey)["hidden"] is False  # five answers: the survey's results show
    june = api.get("/api/v1/sla", params={"service": "payments", "period": "2025-06"}).json()
    assert june["satisfaction"] == [], june["satisfaction"]  # one anonymous answer alone: not shown


# ------------------------------------------------------------------------------------------- access and OpenAPI

def test_every_survey_and_csi_endpoint_wants_the_token(api, database_url):
    anonymous = Client(api.url, token=None)
    calls = [("GET", "/api/v1/surveys"), ("POST", "/api/v1/surveys"), ("GET", "/api/v1/surveys/SRV-1"),
             ("POST", "/api/v1/surveys/SRV-1/close"), ("GET", "/api/v1/csi"), ("POST", "/api/v1/csi"),
             ("POST", "/api/v1/csi/CSI-1/done")]
    body = json.dumps({"owner": "priya", "question": "Q?", "channel": ["ops"], "person": "priya", "title": "T"})
    for method, path in calls:
        for client in (anonymous, Client(api.url, token=TOKEN + "x")):
            response = requests.request(method, api.url + path, data=body, timeout=15,
                                        headers=client.headers({"Content-Type": "application/json"}))
            assert response.status_code == 401, (method, path, response.text)
            fits(response.json(), "Error")
    assert db_count(database_url, Survey) == 0 and db_count(database_url, CsiItem) == 0


def test_the_openapi_document_describes_the_survey_and_csi_endpoints(server):
    doc = requests.get(server.url + "/api/v1/openapi.json", timeout=5).json()
    operations = {(method, path): op for path, ops in doc["paths"].items() for method, op in ops.items()}
    expected = {("get", "/api/v1/surveys"): "surveys_list", ("post", "/api/v1/surveys"): "surveys_create",
                ("get", "/api/v1/surveys/{id}"): "surveys_get", ("post", "/api/v1/surveys/{id}/close"): "surveys_close",
                ("get", "/api/v1/csi"): "csi_list", ("post", "/api/v1/csi"): "csi_create",
                ("post", "/api/v1/csi/{id}/done"): "csi_done"}
    for key, op_id in expected.items():
        assert key in operations and operations[key]["operationId"] == op_id, key
        assert operations[key]["tags"] == [op_id.split("_")[0]]
        assert {"401", "503", "500"} <= set(operations[key]["responses"]), key
    assert {"surveys", "csi"} <= {t["name"] for t in doc["tags"]}
    assert "403" in operations[("post", "/api/v1/surveys")]["responses"]
    assert {"403", "404", "409"} <= set(operations[("post", "/api/v1/surveys/{id}/close")]["responses"])
    assert {"403", "404", "409"} <= set(operations[("post", "/api/v1/csi/{id}/done")]["responses"])
    schemas = doc["components"]["schemas"]
    for name in ("SurveyCreate", "Survey", "SurveyResults", "SurveyTrend", "SurveySummary", "SurveyList",
                 "SurveyClose", "CsiCreate", "CsiDone", "CsiItem", "CsiList", "SatisfactionAttainment"):
        assert name in schemas, name
    assert "satisfaction" in schemas["Attainment"]["required"]
    assert "requester" in schemas["TicketCreate"]["properties"] and "requester" in schemas["Ticket"]["required"]
    # A nullable reference is checked against what it refers to.
    survey = {"id": "SRV-1", "number": 1, "kind": "pulse", "question": "Q", "scale": "csat", "anonymous": True,
              "comment": True, "audience_kind": "channel", "audience": ["ops"], "asked": None, "owner": "priya",
              "service": None, "ticket": None, "state": "open", "created_at": "2026-01-01T00:00:00Z",
              "opens_at": "2026-01-01T00:00:00Z", "closes_at": "2026-01-02T00:00:00Z", "closed_at": None,
              "answers": 0, "hidden": True, "results": None}
    assert api_module.check({"$ref": "#/components/schemas/Survey"}, survey, closed=True) == []
    assert api_module.check({"$ref": "#/components/schemas/Survey"}, {**survey, "results": {"answers": 0}}) != []
    assert api_module.check({"$ref": "#/components/schemas/Survey"}, {**survey, "results": 3}) == [
        "results: expected an object or null, got a whole number"]
