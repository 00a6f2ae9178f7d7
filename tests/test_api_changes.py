"""Requests for change through the JSON API and the public calendar feed, end to end: the real server in a
subprocess (on real time), plain HTTP with a bearer token, approvals given in chat through the same store,
and the store read back directly. The demo configuration without its freezes, so that the dates the tests
pick relative to today are never frozen; the services used have no maintenance windows."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import requests
import yaml
from icalendar import Calendar

from bot import api as api_module
from handlers.core.context import Actor, Command
from handlers.router import dispatch
from storage.models import AuditRecord, Change
from tests.conftest import db_count, db_rows, demo_config
from tests.test_api_e2e import TOKEN, Client, fits

pytestmark = pytest.mark.e2e

UTC = timezone.utc


@pytest.fixture
def config_file(tmp_path):
    cfg = demo_config()
    cfg["changes"]["freezes"] = []
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
def chat(ctx, clock):
    """Commands in chat, in this process, on the server's store and on real time, like the server."""
    clock.to(datetime.now(UTC))

    def run(pid: str, text: str):
        p = ctx.config.person(pid)
        clock.to(datetime.now(UTC))
        actor = Actor(person_id=pid, name=p.name, platform="console", roles=ctx.roles_of(pid), timezone=p.timezone)
        return dispatch(ctx, Command(actor, text))
    return run


def slot(days: float, hours: float = 1) -> tuple[str, str]:
    """A window starting ``days`` from now on a whole hour, in RFC 3339 UTC."""
    start = (datetime.now(UTC) + timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    return (start.isoformat().replace("+00:00", "Z"), (start + timedelta(hours=hours)).isoformat()
            .replace("+00:00", "Z"))


def rfc(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def submit(api, **fields) -> dict:
    start, end = slot(fields.pop("days", 2))
    body = {"requester": "priya", "title": "Patch the mail relays", "services": ["email"], "type": "normal",
            "risk": "low", "start": start, "end": end, "backout": "Reinstall the previous package", **fields}
    response = api.post("/api/v1/changes", body)
    assert response.status_code == 201, response.text
    return response.json()


# ------------------------------------------------------------------------------------------- create

def test_a_request_for_change_is_created_on_the_requesters_behalf(api, database_url):
    start, end = slot(3, 2)
    response = api.post("/api/v1/changes", {
        "requester": "priya", "title": "Replace the VPN gateway", "services": ["vpn", "Email and Calendar"],
        "type": "normal", "risk": "medium", "impact": "high", "start": start, "end": end, "implementer": "tom",
        "description": "End of support", "implementation": "Standby first", "backout": "Fail back",
        "test": "Connect from home"})
    assert response.status_code == 201, response.text
    change = response.json()
    fits(change, "Change")
    assert response.headers["Location"] == f"/api/v1/changes/{change['id']}"
    assert (change["id"], change["source"], change["type"], change["risk"], change["impact"]) == \
        (f"CHG-{change['number']}", "api", "normal", "medium", "high")
    assert (change["requester"], change["implementer"], change["services"]) == ("priya", "tom", ["email", "vpn"])
    assert (change["state"], change["approvals_needed"], change["approvals"], change["outcome"]) == \
        ("awaiting-approval", 1, [], None)
    assert (rfc(change["planned_start"]), rfc(change["planned_end"])) == (rfc(start), rfc(end))
    assert (change["implementation"], change["backout"], change["test"]) == ("Standby first", "Fail back",
                                                                             "Connect from home")
    # Audited as the requester, through the API.
    created = [a for a in db_rows(database_url, AuditRecord) if a.action == "change.created"]
    assert [(a.person_id, a.platform, a.detail["via"]) for a in created] == [("priya", "api", "api")]


def test_times_without_an_offset_are_utc_and_with_one_are_converted(api):
    day = (datetime.now(UTC) + timedelta(days=4)).date()
    naive = submit(api, start=f"{day}T20:00:00", end=f"{day}T21:00:00", services=["hr-portal"])
    assert (naive["planned_start"], naive["planned_end"]) == (f"{day}T20:00:00Z", f"{day}T21:00:00Z")
    offset = submit(api, start=f"{day}T20:00:00+05:30", end=f"{day}T21:00:00+05:30", services=["data-platform"])
    assert offset["planned_start"] == f"{day}T14:30:00Z"
    assert naive["state"] == offset["state"] == "scheduled"  # low risk: no approval needed


def test_an_invalid_request_for_change_names_every_faulty_field_and_stores_nothing(api, database_url):
    start, _ = slot(2)
    response = api.post("/api/v1/changes", {"requester": "priya", "services": ["nowhere"], "start": "soonish",
                                            "implementer": "nobody"})
    assert response.status_code == 422, response.text
    answer = response.json()
    fits(answer, "Error")
    fields = {p.split(":")[0] for p in answer["problems"]}
    assert {"title", "services", "risk", "start", "end", "implementer", "backout"} <= fields, answer
    assert any("unknown service nowhere" in p for p in answer["problems"])
    cases = [
        ({"title": "x"}, "requester: required"),
        ({"requester": "nobody", "title": "x"}, "requester: there is no person 'nobody' in app.yaml"),
        ({"requester": "priya", "risk": "extreme"}, "risk: expected one of low, medium, high"),
        ({"requester": "priya", "services": "email"}, "services: expected a list"),
        ({"requester": "priya", "colour": "red"}, "colour: unknown field"),
        ({"requester": "priya", "title": "x", "services": ["email"], "risk": "low", "start": start,
          "end": "2020-01-01T00:00:00Z", "backout": "b"}, "end: must be after the start"),
        ({"requester": "priya", "title": "x", "services": ["email"], "risk": "low", "backout": "b",
          "start": "2020-01-01T00:00:00Z", "end": "2020-01-01T01:00:00Z"}, "start: is in the past"),
        ({"requester": "priya", "model": "restart-wms-workers", "title": "x", "start": start},
         "title: comes from the standard model"),
    ]
    for body, expected in cases:
        response = api.post("/api/v1/changes", body)
        assert response.status_code == 422, (body, response.text)
        assert any(expected in p for p in response.json()["problems"]), (body, response.json())
    assert api.post("/api/v1/changes", data="{nope").status_code == 400
    assert db_count(database_url, Change) == 0 and db_count(database_url, AuditRecord) == 0


def test_every_change_endpoint_wants_the_token(api, database_url):
    anonymous = Client(api.url, token=None)
    start, end = slot(2)
    calls = [("GET", "/api/v1/changes"), ("GET", "/api/v1/changes/CHG-1"), ("GET", "/api/v1/changes/success-rate"),
             ("POST", "/api/v1/changes"), ("POST", "/api/v1/changes/CHG-1/start"),
             ("POST", "/api/v1/changes/CHG-1/cancel")]
    body = json.dumps({"requester": "priya", "title": "x", "services": ["email"], "risk": "low", "start": start,
                       "end": end, "backout": "b", "by": "priya"})
    for method, path in calls:
        for client in (anonymous, Client(api.url, token=TOKEN + "x")):
            response = requests.request(method, api.url + path, data=body, timeout=15,
                                        headers=client.headers({"Content-Type": "application/json"}))
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            fits(response.json(), "Error")
    assert db_count(database_url, Change) == 0


# ------------------------------------------------------------------------------------------- read

def test_list_newest_planned_first_with_filters_and_get_by_number(api, chat):
    early = submit(api, days=2, title="Early", services=["email"])
    late = submit(api, days=5, title="Late", services=["vpn"])
    waiting = submit(api, days=3, title="Waiting", services=["email", "hr-portal"], risk="medium")
    listed = api.get("/api/v1/changes")
    assert listed.status_code == 200, listed.text
    fits(listed.json(), "ChangeList")
    assert [c["title"] for c in listed.json()["changes"]] == ["Late", "Waiting", "Early"]

    def titles(**params) -> list[str]:
        response = api.get("/api/v1/changes", params=params)
        assert response.status_code == 200, response.text
        return [c["title"] for c in response.json()["changes"]]
    assert titles(state="awaiting-approval") == ["Waiting"]
    assert titles(state="scheduled") == ["Late", "Early"]
    assert titles(service="email") == ["Waiting", "Early"]
    assert titles(service="Email and Calendar", state="scheduled") == ["Early"]
    assert titles(**{"from": waiting["planned_start"]}) == ["Late", "Waiting"]
    assert titles(to=waiting["planned_end"]) == ["Waiting", "Early"]
    assert titles(limit="2") == ["Late", "Waiting"]

    for ref in (waiting["id"], str(waiting["number"]), waiting["id"].lower()):
        response = api.get(f"/api/v1/changes/{ref}")
        assert response.status_code == 200, (ref, response.text)
        assert response.json() == waiting
    # An approval given in chat shows, with the new revision.
    reply, outcome = chat("sanne", f"change approve {waiting['id']}")
    assert outcome == "ok", reply
    approved = api.get(f"/api/v1/changes/{waiting['id']}").json()
    assert (approved["state"], approved["approvals"]) == ("scheduled", ["sanne"])
    assert approved["revision"] > waiting["revision"]
    assert early["id"] != late["id"]

    for path, status, expected in [
        ("/api/v1/changes/CHG-999", 404, "no change 'CHG-999'"),
        ("/api/v1/changes/banana", 404, "say CHG-N or N"),
        ("/api/v1/changes?limit=0", 400, "limit: less than 1"),
        ("/api/v1/changes?limit=1001", 400, "limit: more than 1000"),
        ("/api/v1/changes?limit=many", 400, "limit: expected a whole number"),
        ("/api/v1/changes?state=sideways", 400, "state: expected one of new, awaiting-approval"),
        ("/api/v1/changes?service=nowhere", 400, "there is no service 'nowhere'"),
        ("/api/v1/changes?from=yesterday", 400, "from: expected an RFC 3339 date-time"),
        ("/api/v1/changes?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", 400, "to: "),
        ("/api/v1/changes?colour=red", 400, "colour: unknown parameter"),
    ]:
        response = api.get(path)
        assert response.status_code == status, (path, response.text)
        fits(response.json(), "Error")
        assert any(expected in p for p in response.json()["problems"]), (path, response.json())


# ------------------------------------------------------------------------------------------- its life

def test_a_change_is_started_and_completed_by_its_implementer(api, database_url):
    change = submit(api, implementer="tom", services=["vpn"])
    started = api.post(f"/api/v1/changes/{change['id']}/start", {"by": "tom", "note": "Going ahead"})
    assert started.status_code == 200, started.text
    fits(started.json(), "Change")
    assert started.json()["state"] == "in-progress" and started.json()["actual_start"]
    assert started.json()["revision"] > change["revision"]
    done = api.post(f"/api/v1/changes/{change['number']}/complete",
                    {"by": "tom", "outcome": "with-issues", "note": 'One "slow" node\nrestarted  twice'})
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["outcome"]) == ("review", "with-issues")
    steps = {a.action: a for a in db_rows(database_url, AuditRecord) if a.subject == change["id"]}
    assert (steps["change.start"].person_id, steps["change.start"].platform) == ("tom", "api")
    assert steps["change.start"].detail == {"via": "api", "note": "Going ahead", "outcome": None}
    # The note arrives whole, quotes and all; only its runs of white space are folded.
    assert steps["change.complete"].detail["note"] == 'One "slow" node restarted twice'


def test_a_step_the_person_may_not_take_is_refused_and_changes_nothing(api, database_url):
    change = submit(api, implementer="tom", services=["email"])
    before = api.get(f"/api/v1/changes/{change['id']}").json()
    refused = api.post(f"/api/v1/changes/{change['id']}/cancel", {"by": "meera", "note": "Not needed"})
    assert refused.status_code == 403, refused.text
    fits(refused.json(), "Error")
    assert "requester, its implementer or a service manager" in refused.json()["error"]
    assert api.get(f"/api/v1/changes/{change['id']}").json() == before
    cases = [
        ("complete", {"by": "tom"}, 409, "is scheduled: it cannot be completed"),
        ("fail", {"by": "tom"}, 422, "note: required"),
        ("fail", {"by": "tom", "note": "   "}, 422, "note: say what happened"),
        ("start", {"by": "nobody"}, 422, "by: there is no person 'nobody'"),
        ("start", {"by": "tom", "outcome": "with-issues"}, 422, "outcome: unknown field"),
        ("complete", {"by": "tom", "outcome": "failed"}, 422, "outcome: expected one of successful, with-issues"),
    ]
    for verb, body, status, expected in cases:
        response = api.post(f"/api/v1/changes/{change['id']}/{verb}", body)
        assert response.status_code == status, (verb, body, response.text)
        assert any(expected in p for p in response.json()["problems"]), (verb, body, response.json())
    assert api.post("/api/v1/changes/CHG-999/start", {"by": "tom"}).status_code == 404
    assert api.get(f"/api/v1/changes/{change['id']}").json() == before
    # Priya, a service manager, may; then it is no longer there to start.
    assert api.post(f"/api/v1/changes/{change['id']}/cancel", {"by": "priya"}).json()["state"] == "cancelled"
    again = api.post(f"/api/v1/changes/{change['id']}/start", {"by": "priya"})
    assert again.status_code == 409 and "is cancelled" in again.json()["error"]
    assert sorted(a.action for a in db_rows(database_url, AuditRecord) if a.subject == change["id"]
                  and a.action.startswith("change.") and a.action not in ("change.state",)) == \
        ["change.cancel", "change.created"]


def test_the_success_rate_over_a_period_and_for_a_service(api):
    for service, finish in (("email", {"outcome": "with-issues"}), ("vpn", {}), ("vpn", {})):
        change = submit(api, services=[service], days=1 + len(finish))
        assert api.post(f"/api/v1/changes/{change['id']}/start", {"by": "priya"}).status_code == 200
        assert api.post(f"/api/v1/changes/{change['id']}/complete", {"by": "priya", **finish}).status_code == 200
    failed = submit(api, services=["hr-portal"], days=4)
    api.post(f"/api/v1/changes/{failed['id']}/start", {"by": "priya"})
    assert api.post(f"/api/v1/changes/{failed['id']}/fail", {"by": "priya", "note": "Rolled back"}).status_code == 200
    rate = api.get("/api/v1/changes/success-rate")
    assert rate.status_code == 200, rate.text
    fits(rate.json(), "SuccessRate")
    assert {k: rate.json()[k] for k in ("successful", "implemented", "rate", "service")} == \
        {"successful": 2, "implemented": 4, "rate": 50.0, "service": None}
    vpn = api.get("/api/v1/changes/success-rate", params={"service": "vpn"}).json()
    assert (vpn["successful"], vpn["implemented"], vpn["rate"]) == (2, 2, 100.0)
    past = api.get("/api/v1/changes/success-rate", params={"from": "2020-01-01T00:00:00Z",
                                                           "to": "2020-02-01T00:00:00Z"}).json()
    assert (past["successful"], past["implemented"], past["rate"]) == (0, 0, None)
    bad = api.get("/api/v1/changes/success-rate", params={"from": "2020-02-01T00:00:00Z",
                                                          "to": "2020-01-01T00:00:00Z"})
    assert bad.status_code == 400 and "is not after from" in bad.json()["problems"][0]


# ------------------------------------------------------------------------------------------- the calendar feed

def test_the_calendar_feed_is_public_and_parses(api, server, chat):
    scheduled = submit(api, title="Mail relay patch", services=["email"], days=2)
    waiting = submit(api, title="Gateway swap", services=["vpn"], days=3, risk="high")
    response = requests.get(server.url + "/changes.ics", timeout=15)  # no token
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    cal = Calendar.from_ical(response.content)
    assert str(cal["PRODID"]) == "-//svcbot//change calendar//EN"
    found = {str(e["UID"]): e for e in cal.walk("VEVENT")}
    assert set(found) == {f"chg-{scheduled['number']}@svcbot", f"chg-{waiting['number']}@svcbot"}
    relay = found[f"chg-{scheduled['number']}@svcbot"]
    assert (str(relay["STATUS"]), str(relay["SUMMARY"])) == ("CONFIRMED", f"{scheduled['id']} Mail relay patch")
    assert relay.decoded("DTSTART") == rfc(scheduled["planned_start"])
    assert int(relay["SEQUENCE"]) == scheduled["revision"]
    assert str(found[f"chg-{waiting['number']}@svcbot"]["STATUS"]) == "TENTATIVE"
    # A client polling with the ETag it holds is told nothing changed, until something does.
    etag = response.headers["ETag"]
    unchanged = requests.get(server.url + "/changes.ics", headers={"If-None-Match": etag}, timeout=15)
    assert unchanged.status_code == 304 and not unchanged.content
    # After an approval in chat (a high-risk change needs two), the event's SEQUENCE has risen.
    assert chat("sanne", f"change approve {waiting['id']}")[1] == "ok"
    moved = requests.get(server.url + "/changes.ics", headers={"If-None-Match": etag}, timeout=15)
    assert moved.status_code == 200 and moved.headers["ETag"] != etag
    after = Calendar.from_ical(moved.content)
    gateway = next(e for e in after.walk("VEVENT") if str(e["UID"]) == f"chg-{waiting['number']}@svcbot")
    assert int(gateway["SEQUENCE"]) > waiting["revision"]
    # The window: days ahead and days back.
    near = Calendar.from_ical(requests.get(server.url + "/changes.ics", params={"days": "2", "past": "0"},
                                           timeout=15).content)
    assert [str(e["UID"]) for e in near.walk("VEVENT")] == [f"chg-{scheduled['number']}@svcbot"]
    for params, expected in [({"days": "731"}, "days: expected a whole number of days from 0 to 730"),
                             ({"past": "366"}, "past: expected a whole number of days from 0 to 365"),
                             ({"days": "soon"}, "days: expected"), ({"colour": "red"}, "colour: unknown parameter")]:
        bad = requests.get(server.url + "/changes.ics", params=params, timeout=15)
        assert bad.status_code == 400, (params, bad.text)
        assert any(expected in p for p in bad.json()["problems"]), (params, bad.json())


# ------------------------------------------------------------------------------------------- OpenAPI

def test_the_openapi_document_describes_the_change_endpoints(server):
    doc = requests.get(server.url + "/api/v1/openapi.json", timeout=5).json()
    operations = {(method, path): op for path, ops in doc["paths"].items() for method, op in ops.items()}
    expected = {("get", "/api/v1/changes"): "changes_list", ("post", "/api/v1/changes"): "changes_create",
                ("get", "/api/v1/changes/success-rate"): "changes_success_rate",
                ("get", "/api/v1/changes/{id}"): "changes_get"}
    expected.update({("post", f"/api/v1/changes/{{id}}/{verb}"): f"changes_{verb}"
                     for verb in ("start", "complete", "fail", "cancel")})
    for key, op_id in expected.items():
        assert key in operations and operations[key]["operationId"] == op_id, key
        assert operations[key]["tags"] == ["changes"]
        assert {"401", "503", "500"} <= set(operations[key]["responses"]), key
    assert not any("approve" in path or "reject" in path for path in doc["paths"])
    assert "Approvals are not offered through the API" in operations[("post", "/api/v1/changes")]["description"]
    assert "403" in operations[("post", "/api/v1/changes/{id}/start")]["responses"]
    assert "/changes.ics" in doc["info"]["description"]
    for name in ("ChangeCreate", "Change", "ChangeList", "ChangeStep", "ChangeComplete", "ChangeFail",
                 "SuccessRate"):
        assert name in doc["components"]["schemas"], name
    assert api_module.OPENAPI["components"]["schemas"]["ChangeCreate"]["required"] == ["requester"]
