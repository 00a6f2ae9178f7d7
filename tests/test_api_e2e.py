"""The JSON API end to end: the real server in a subprocess with SVCBOT_API_TOKEN set, plain HTTP requests
with a bearer token, and the store read back directly to see what changed (and that bad requests changed
nothing). The SLA cases are SLA-CASES.md's table, each sent as a ticket opened in 2025 and its events with
their own timestamps; the expected instants are the table's, written out in UTC."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import requests
import yaml
from sqlalchemy import create_engine, select, text

from bot import api as api_module
from storage.models import (AuditRecord, ClockNotice, Outage, OutboxMessage, ProcessedDelivery, SlaClock, Ticket,
                            TicketEvent)
from tests.conftest import db_count, db_rows, demo_config
from tests.test_alertmanager import FIRING, RESOLVED
from tests.test_slack_e2e import blocks_text, slash

pytestmark = pytest.mark.e2e

TOKEN = "test-api-token-6f1d2c9a"
TOM = "U0TOM0002"


# ------------------------------------------------------------------------------------------- configuration

def nine_to_five(zone: str, **extra) -> dict:
    return {"timezone": zone, "hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
            **extra}


def service(service_id: str, calendar: str, **extra) -> dict:
    return {"id": service_id, "name": f"Case {service_id}", "owner": "priya", "tier": 3, "calendar": calendar,
            **extra}


def sla(agreement_id: str, service_id: str, *targets: dict, pause=(), **extra) -> dict:
    return {"id": agreement_id, "kind": "sla", "service": service_id, "party": "Case customers",
            "pause_states": list(pause), "targets": list(targets), **extra}


def resolution(priority: str, within: str, **extra) -> dict:
    return {"metric": "resolution", "priority": priority, "within": within, "goal": 90, **extra}


def api_config() -> dict:
    """The demo configuration plus a calendar, a service and an agreement for each case."""
    cfg = demo_config()
    cfg["calendars"].update({
        "ldn-9to5": nine_to_five("Europe/London"),
        "ldn-9to5-eng": nine_to_five("Europe/London", holidays=[{"country": "GB", "subdivision": "ENG"}]),
        "ber-9to5": nine_to_five("Europe/Berlin"),
        "ber-24x7": {"timezone": "Europe/Berlin", "24x7": True},
        "utc-lunch": {"timezone": "UTC", "hours": {day: ["09:00-12:00", "13:00-17:00"]
                                                   for day in ("mon", "tue", "wed", "thu", "fri")}},
    })
    cfg["services"] += [
        service("c1", "ldn-9to5"), service("c2", "ber-24x7"), service("c3", "ber-9to5"),
        service("c4", "ldn-9to5-eng"), service("c5", "always"), service("c6", "ldn-9to5"),
        service("c7", "ldn-9to5"), service("c8", "ldn-9to5"), service("c9", "always"),
        service("c10", "utc-lunch"), service("c11", "always"), service("reopen", "always"),
        service("days", "ldn-9to5"),
        service("ou", "always", team="payments-eng", suppliers=["cardlink", "cloudhost"]),
        service("rt", "always"),
    ]
    cfg["agreements"] += [
        sla("SLA-C1", "c1", resolution("P2", "8 business hours")),
        sla("SLA-C2", "c2", resolution("P1", "4 hours")),
        sla("SLA-C3", "c3", resolution("P2", "8 business hours")),
        sla("SLA-C4", "c4", resolution("P2", "8 business hours")),
        sla("SLA-C5", "c5", resolution("P2", "2 hours"), pause=["awaiting-customer"]),
        sla("SLA-C6", "c6", resolution("P2", "4 business hours"), pause=["awaiting-customer"]),
        sla("SLA-C7", "c7", resolution("P3", "3 business hours"), resolution("P2", "2 business hours")),
        sla("SLA-C8", "c8", resolution("P2", "8 business hours", warn_at=[50, 75])),
        sla("SLA-C9", "c9", resolution("P2", "1 hours")),
        sla("SLA-C10", "c10", resolution("P2", "1 business hours")),
        sla("SLA-C11", "c11", resolution("P2", "2 hours"), pause=["awaiting-customer"]),
        sla("SLA-REOPEN", "reopen", resolution("P2", "4 hours")),
        sla("SLA-DAYS", "days", resolution("P3", "2 business days")),
        sla("SLA-OU", "ou", resolution("P2", "8 hours")),
        {"id": "OLA-OU", "kind": "ola", "service": "ou", "party": "payments-eng", "underpins": "SLA-OU",
         "calendar": "always", "targets": [resolution("P2", "2 hours")]},
        {"id": "UC-OU", "kind": "uc", "service": "ou", "party": "cardlink", "underpins": "SLA-OU",
         "calendar": "always", "targets": [resolution("P2", "1 hours")]},
        # A 12-second target, so that warnings and the breach happen while the test watches.
        sla("SLA-RT", "rt", resolution("P2", "0.2 min", warn_at=[50, 75])),
    ]
    return cfg


# ------------------------------------------------------------------------------------------- helpers

class Client:
    def __init__(self, url: str, token: str | None = TOKEN):
        self.url, self.token = url, token

    def headers(self, extra: dict | None = None) -> dict:
        out = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**out, **(extra or {})}

    def get(self, path: str, params=None, headers=None) -> requests.Response:
        return requests.get(self.url + path, params=params, headers=headers or self.headers(), timeout=15)

    def post(self, path: str, body=None, *, data=None, headers=None) -> requests.Response:
        if data is None and body is not None:
            data = json.dumps(body)
        return requests.post(self.url + path, data=data, headers=headers or self.headers(
            {"Content-Type": "application/json"}), timeout=15)

    def open(self, **fields) -> dict:
        response = self.post("/api/v1/tickets", fields)
        assert response.status_code == 201, response.text
        return response.json()

    def event(self, ref: str, kind: str, value: str | None = None, at: str | None = None, **more) -> dict:
        body = {"kind": kind, **({"value": value} if value is not None else {}), **({"at": at} if at else {}),
                **more}
        response = self.post(f"/api/v1/tickets/{ref}/events", body)
        assert response.status_code == 200, response.text
        return response.json()

    def ticket(self, ref: str) -> dict:
        response = self.get(f"/api/v1/tickets/{ref}")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def api_config_file(config_file):
    config_file.write_text(yaml.safe_dump(api_config(), sort_keys=False))
    return config_file


@pytest.fixture
def server(start_server, api_config_file):
    return start_server(SVCBOT_API_TOKEN=TOKEN)


@pytest.fixture
def api(server):
    return Client(server.url)


def instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def clock_of(view: dict, agreement: str, metric: str = "resolution") -> dict:
    [found] = [c for c in view["clocks"] if c["agreement"] == agreement and c["metric"] == metric]
    return found


def fits(data, schema: str) -> None:
    """The answer has exactly the shape the OpenAPI document gives it (no undocumented fields either)."""
    problems = api_module.check({"$ref": f"#/components/schemas/{schema}"}, data, "(answer)", closed=True)
    assert problems == [], problems


def snapshot(database_url) -> dict:
    """Everything a request can change. (Clock notices and the outbox are written by the sweep as time
    passes, not by requests; of the clocks, what a request decides is kept.)"""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            out = {}
            for model in (Ticket, TicketEvent, Outage, AuditRecord, ProcessedDelivery):
                table = model.__table__
                out[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key))]
            out["sla_clocks"] = [tuple(r) for r in conn.execute(
                select(SlaClock.id, SlaClock.ticket_id, SlaClock.agreement_id, SlaClock.metric, SlaClock.priority,
                       SlaClock.target_seconds, SlaClock.state, SlaClock.due_at, SlaClock.stopped_at)
                .order_by(SlaClock.id))]
            return out
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------------- access

def test_without_a_token_configured_the_api_is_off_and_says_so(start_server, api_config_file, database_url):
    server = start_server(SVCBOT_API_TOKEN="")
    client = Client(server.url, token="anything")
    for response in (client.get("/api/v1/services"),
                     client.post("/api/v1/tickets", {"service": "c1", "priority": "P2", "title": "x"})):
        assert response.status_code == 503
        body = response.json()
        assert "SVCBOT_API_TOKEN is not set" in body["error"] and body["problems"]
    assert db_count(database_url, Ticket) == 0
    # The document stays readable: it says how to use the API once it is on.
    assert requests.get(server.url + "/api/v1/openapi.json", timeout=5).status_code == 200


def test_a_bearer_token_is_required_and_compared_exactly(server, api, database_url):
    body = {"service": "c1", "priority": "P2", "title": "Who am I", "external_id": "auth-1"}
    refusals = {
        "none": {},
        "wrong": {"Authorization": f"Bearer {TOKEN}x"},
        "prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
        "basic": {"Authorization": f"Basic {TOKEN}"},
        "bare": {"Authorization": TOKEN},
    }
    for how, headers in refusals.items():
        response = api.post("/api/v1/tickets", body, headers={"Content-Type": "application/json", **headers})
        assert response.status_code == 401, how
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), how
        answer = response.json()
        assert answer["error"] and answer["problems"] and "Authorization" in answer["problems"][0], how
        fits(answer, "Error")
    assert db_count(database_url, Ticket) == 0
    assert api.get("/api/v1/services", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    assert api.post("/api/v1/tickets", body).status_code == 201
    metrics = requests.get(server.url + "/metrics", timeout=5).text
    assert 'svcbot_requests_refused_total{platform="api",reason="token"} 5.0' in metrics


# ------------------------------------------------------------------------------------------- tickets

def test_create_then_the_same_external_id_again_changes_nothing(api, database_url):
    created = api.post("/api/v1/tickets", {"service": "c1", "priority": "P2", "title": "Printer on fire",
                                           "external_id": "SN-0001", "kind": "request",
                                           "opened_at": "2025-01-10T16:00:00Z", "group": "payments-eng"})
    assert created.status_code == 201, created.text
    first = created.json()
    fits(first, "Ticket")
    assert created.headers["Location"] == f"/api/v1/tickets/{first['id']}"
    assert (first["kind"], first["source"], first["external_id"], first["service"], first["priority"],
            first["state"], first["group"], first["duplicate"]) == \
        ("request", "api", "SN-0001", "c1", "P2", "new", "payments-eng", False)
    assert instant(first["opened_at"]) == instant("2025-01-10T16:00:00Z")
    assert [(e["kind"], e["value"], e["by"]) for e in first["events"]] == [("open", "P2", "api"),
                                                                            ("assign", "payments-eng", "api")]
    before = snapshot(database_url)

    again = api.post("/api/v1/tickets", {"service": "c1", "priority": "P1", "title": "Printer on fire!!",
                                         "external_id": "SN-0001"})
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert {k: v for k, v in again.json().items() if k not in ("duplicate", "clocks")} == \
        {k: v for k, v in first.items() if k not in ("duplicate", "clocks")}
    assert snapshot(database_url) == before
    assert api.ticket("ext:SN-0001")["id"] == api.ticket(first["id"])["id"] == first["id"]
    assert [(a.action, a.person_id, a.platform) for a in db_rows(database_url, AuditRecord)] == \
        [("request.new", "api", "api")]


def test_events_carry_their_own_times_and_may_arrive_out_of_order(api, database_url):
    ticket = api.open(service="c5", priority="P2", title="Late news", external_id="ooo-1",
                      opened_at="2025-06-02T08:00:00Z")
    # The resolution is heard of first; the response and a pause arrive afterwards, one with an offset.
    api.event("ext:ooo-1", "resolve", at="2025-06-02T12:00:00Z")
    api.event("ext:ooo-1", "respond", at="2025-06-02T08:30:00Z")
    api.event("ext:ooo-1", "state", "awaiting-customer", at="2025-06-02T09:00:00Z")
    view = api.event("ext:ooo-1", "state", "in-progress", at="2025-06-02T12:00:00+02:00")  # 10:00 UTC
    fits(view, "Ticket")
    assert view["id"] == ticket["id"]
    assert [(e["kind"], e["value"], instant(e["at"])) for e in view["events"]] == [
        ("open", "P2", instant("2025-06-02T08:00:00Z")),
        ("respond", None, instant("2025-06-02T08:30:00Z")),
        ("state", "awaiting-customer", instant("2025-06-02T09:00:00Z")),
        ("state", "in-progress", instant("2025-06-02T10:00:00Z")),
        ("resolve", None, instant("2025-06-02T12:00:00Z")),
    ]
    assert view["state"] == "resolved"  # the latest event stands, whatever order they came in
    assert instant(view["responded_at"]) == instant("2025-06-02T08:30:00Z")  # not when it was heard of
    assert instant(view["resolved_at"]) == instant("2025-06-02T12:00:00Z")
    clock = clock_of(view, "SLA-C5")
    assert (clock["elapsed_seconds"], clock["state"]) == (3 * 3600, "breached")  # 4 h less the paused hour
    recorded = [e.recorded_at for e in sorted(db_rows(database_url, TicketEvent), key=lambda e: e.id)]
    assert recorded == sorted(recorded)  # stored as heard, read back by time


def test_out_of_order_pause_is_taken_out_of_the_resolution_time(api):
    api.open(service="c5", priority="P2", title="Late pause", external_id="ooo-2",
             opened_at="2025-06-02T08:00:00Z")
    api.event("ext:ooo-2", "resolve", at="2025-06-02T11:00:00Z")
    assert clock_of(api.ticket("ext:ooo-2"), "SLA-C5")["state"] == "breached"  # 3 h against 2 h
    # Then the customer pause that happened before, 09:00-10:05, is reported.
    api.event("ext:ooo-2", "state", "in-progress", at="2025-06-02T10:05:00Z")
    view = api.event("ext:ooo-2", "state", "awaiting-customer", at="2025-06-02T09:00:00Z")
    assert [(e["kind"], e["value"]) for e in view["events"]] == [
        ("open", "P2"), ("state", "awaiting-customer"), ("state", "in-progress"), ("resolve", None)]
    clock = clock_of(view, "SLA-C5")
    assert clock["elapsed_seconds"] == 3 * 3600 - 65 * 60
    assert (clock["state"], clock["breached"]) == ("met", False)
    assert instant(clock["stopped_at"]) == instant("2025-06-02T11:00:00Z")
    assert view["state"] == "resolved"


def test_a_repeated_event_id_changes_nothing(api, database_url):
    api.open(service="c5", priority="P2", title="Twice", external_id="dup-1", opened_at="2025-06-02T08:00:00Z")
    first = api.event("ext:dup-1", "respond", at="2025-06-02T08:10:00Z", event_id="evt-42")
    assert first["duplicate"] is False
    before = snapshot(database_url)
    for body in ({"kind": "respond", "at": "2025-06-02T08:10:00Z", "event_id": "evt-42"},
                 {"kind": "resolve", "at": "2025-06-02T09:00:00Z", "event_id": "evt-42"}):
        again = api.post("/api/v1/tickets/ext:dup-1/events", body)
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True
        assert again.json()["events"] == first["events"]
    assert snapshot(database_url) == before
    assert db_count(database_url, ProcessedDelivery, ProcessedDelivery.key == "api:event:evt-42") == 1


def test_the_same_create_and_the_same_event_sent_at_once_are_stored_once(api, database_url):
    body = {"service": "c5", "priority": "P2", "title": "Race", "external_id": "race-1",
            "opened_at": "2025-06-02T08:00:00Z"}
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda _: api.post("/api/v1/tickets", body), range(8)))
    assert sorted(r.status_code for r in created) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in created}) == 1
    assert db_count(database_url, Ticket) == 1
    event = {"kind": "respond", "at": "2025-06-02T08:05:00Z", "event_id": "race-evt"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: api.post("/api/v1/tickets/ext:race-1/events", event), range(8)))
    assert [r.status_code for r in answers] == [200] * 8
    assert sorted(r.json()["duplicate"] for r in answers) == [False] + [True] * 7
    assert db_count(database_url, TicketEvent, TicketEvent.kind == "respond") == 1
    assert db_count(database_url, AuditRecord) == 2  # the opening and the response, once each


def test_an_unexpected_failure_answers_500_with_a_reference_and_no_trace(server, api, database_url):
    engine = create_engine(database_url)
    with engine.begin() as conn:  # the store breaks under the running server
        conn.execute(text("DROP TABLE outages"))
    engine.dispose()
    response = api.post("/api/v1/outages", {"service": "webshop", "kind": "unplanned",
                                            "started_at": "2025-06-02T10:00:00Z"})
    assert response.status_code == 500
    answer = response.json()
    fits(answer, "Error")
    assert answer["reference"] in answer["error"] and "Traceback" not in response.text
    assert "sqlalchemy" not in response.text.lower() and "outages" not in response.text
    log = server.log()
    assert f"[ref {answer['reference']}]" in log and "Traceback" in log


# ------------------------------------------------------------------------------------------- SLA-CASES.md

# Each case: the service (its calendar and agreement are in api_config), the ticket as opened, its events
# in the order they are sent, and the resolution clock's answer. Times are as the source system sends them.
CASES = {
    "1 Mon-Fri 09-17 London, Fri 16:00 + 8 business hours = Mon 16:00": dict(
        service="c1", priority="P2", opened_at="2025-01-10T16:00:00Z", events=[],
        due="2025-01-13T16:00:00Z"),
    "2 24x7 Berlin, Sat 23:00 CET + 4 h across the spring change = 04:00 CEST": dict(
        service="c2", priority="P1", opened_at="2025-03-29T23:00:00+01:00", events=[],
        due="2025-03-30T02:00:00Z"),
    "3 Mon-Fri 09-17 Berlin, Fri 16:00 CET + 8 business hours = Mon 16:00 CEST": dict(
        service="c3", priority="P2", opened_at="2025-03-28T16:00:00+01:00", events=[],
        due="2025-03-31T14:00:00Z"),
    "4 England holidays, Thu before Easter 16:00 + 8 business hours = Tue 16:00": dict(
        service="c4", priority="P2", opened_at="2025-04-17T16:00:00+01:00", events=[],
        due="2025-04-22T15:00:00Z"),
    "5 24x7, 08:00 + 2 h paused 09:00-10:05 = 11:05": dict(
        service="c5", priority="P2", opened_at="2025-06-02T08:00:00Z",
        events=[("state", "awaiting-customer", "2025-06-02T09:00:00Z"),
                ("state", "in-progress", "2025-06-02T10:05:00Z")],
        due="2025-06-02T11:05:00Z"),
    "6 Mon-Fri 09-17, Fri 16:00 + 4 business hours paused Fri 16:30 to Mon 10:00 = Mon 13:30": dict(
        service="c6", priority="P2", opened_at="2025-01-10T16:00:00Z",
        events=[("state", "awaiting-customer", "2025-01-10T16:30:00Z"),
                ("state", "in-progress", "2025-01-13T10:00:00Z")],
        due="2025-01-13T13:30:00Z"),
    "7 Mon-Fri 09-17, 10:00 Medium (3 h) raised to High (2 h) at 11:00 = 12:00": dict(
        service="c7", priority="P3", opened_at="2025-01-13T10:00:00Z",
        events=[("priority", "P2", "2025-01-13T11:00:00Z")],
        due="2025-01-13T12:00:00Z"),
    "10 Mon-Fri 09-12 and 13-17, 11:30 + 1 business hour = 13:30": dict(
        service="c10", priority="P2", opened_at="2025-01-13T11:30:00Z", events=[],
        due="2025-01-13T13:30:00Z"),
    "11 created awaiting the customer: the clock starts when it leaves that state (09:30) + 2 h": dict(
        service="c11", priority="P2", opened_at="2025-06-02T08:00:00Z", state="awaiting-customer",
        events=[("state", "in-progress", "2025-06-02T09:30:00Z")],
        due="2025-06-02T11:30:00Z"),
    "units: Fri 16:00 + 2 business days, by end of day = the close of Monday": dict(
        service="days", priority="P3", opened_at="2025-01-10T16:00:00Z", events=[],
        due="2025-01-13T17:00:00Z"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sla_cases_due_times(api, database_url, case):
    spec = CASES[case]
    ticket = api.open(service=spec["service"], priority=spec["priority"], title=case, opened_at=spec["opened_at"],
                      **({"state": spec["state"]} if "state" in spec else {}))
    for kind, value, at in spec["events"]:
        api.event(ticket["id"], kind, value, at=at)
    view = api.ticket(ticket["id"])
    fits(view, "Ticket")
    agreement = f"SLA-{spec['service'].upper()}"
    clock = clock_of(view, agreement)
    assert clock["state"] == "running"
    assert instant(clock["due_at"]) == instant(spec["due"]), clock
    # The stored clock, which the sweep and the reports read, says the same.
    [stored] = db_rows(database_url, SlaClock, SlaClock.ticket_id == ticket["number"], SlaClock.agreement_id == agreement)
    assert stored.due_at == instant(spec["due"])


def test_case_7_before_the_priority_change_it_was_due_at_13_00(api):
    ticket = api.open(service="c7", priority="P3", title="Medium", opened_at="2025-01-13T10:00:00Z")
    assert instant(clock_of(api.ticket(ticket["id"]), "SLA-C7")["due_at"]) == instant("2025-01-13T13:00:00Z")
    clock = clock_of(api.event(ticket["id"], "priority", "P2", at="2025-01-13T11:00:00Z"), "SLA-C7")
    assert (clock["priority"], clock["target_seconds"]) == ("P2", 2 * 3600)
    assert instant(clock["due_at"]) == instant("2025-01-13T12:00:00Z")


def test_case_11_a_ticket_created_paused_does_not_run(api):
    ticket = api.open(service="c11", priority="P2", title="Waiting from the start",
                      opened_at="2025-06-02T08:00:00Z", state="awaiting-customer")
    clock = clock_of(ticket, "SLA-C11")
    assert (clock["state"], clock["elapsed_seconds"], clock["due_at"]) == ("paused", 0, None)
    assert ticket["state"] == "awaiting-customer"


def test_case_8_warnings_at_4_and_6_hours_and_the_breach_at_8_announced_once(api):
    """Opened Fri 13:00: 4 business hours is Fri 17:00, 6 is Mon 11:00, 8 is Mon 13:00. The whole
    history is in the past, so the sweep finds all three passed together and announces one notice, the
    highest, once; the real-time test below sees each level announced on its own."""
    ticket = api.open(service="c8", priority="P2", title="Case 8", opened_at="2025-01-10T13:00:00Z")
    clock = clock_of(ticket, "SLA-C8")
    assert [(level["level"], instant(level["at"])) for level in clock["levels"]] == [
        (50.0, instant("2025-01-10T17:00:00Z")), (75.0, instant("2025-01-13T11:00:00Z")),
        (100.0, instant("2025-01-13T13:00:00Z"))]
    assert instant(clock["due_at"]) == instant("2025-01-13T13:00:00Z")
    notices = wait_for_notices(api, ticket["id"], "SLA-C8", lambda n: any(x["level"] == 100 for x in n))
    time.sleep(1)  # several more sweeps
    assert [n["level"] for n in clock_of(api.ticket(ticket["id"]), "SLA-C8")["notices"]] == [100.0]
    assert [n["level"] for n in notices] == [100.0]


def test_case_8_in_real_time_each_warning_and_the_breach_are_announced_once(api, database_url):
    ticket = api.open(service="rt", priority="P2", title="Twelve seconds")  # opened now
    clock = clock_of(ticket, "SLA-RT")
    assert clock["target_seconds"] == 12
    levels = {level["level"]: instant(level["at"]) for level in clock["levels"]}
    assert sorted(levels) == [50.0, 75.0, 100.0]
    notices = wait_for_notices(api, ticket["id"], "SLA-RT", lambda n: any(x["level"] == 100 for x in n),
                               timeout=60)
    assert [n["level"] for n in notices] == [50.0, 75.0, 100.0]
    for notice in notices:  # none before its time
        assert instant(notice["at"]) >= levels[notice["level"]]
    time.sleep(1)
    assert [n["level"] for n in clock_of(api.ticket(ticket["id"]), "SLA-RT")["notices"]] == [50.0, 75.0, 100.0]
    assert db_count(database_url, ClockNotice) == 3


def wait_for_notices(api, ref, agreement, done, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        notices = clock_of(api.ticket(ref), agreement)["notices"]
        if done(notices) or time.monotonic() > deadline:
            return notices
        time.sleep(0.2)


def test_a_priority_round_trip_does_not_announce_the_breach_again(api, database_url):
    ticket = api.open(service="c7", priority="P2", title="Flapping", opened_at="2025-01-13T10:00:00Z")
    notices = wait_for_notices(api, ticket["id"], "SLA-C7", lambda n: any(x["level"] == 100 for x in n))
    assert [n["level"] for n in notices] == [100.0]
    announced = db_count(database_url, ClockNotice)
    sent = db_count(database_url, OutboxMessage, OutboxMessage.dedupe_key.like("clock:%"))
    assert (announced, sent) == (1, 1)  # the owner, on the one platform of their direct messages

    api.event(ticket["id"], "priority", "P1", at="2025-01-13T11:00:00Z")  # SLA-C7 has no P1 target
    view = api.event(ticket["id"], "priority", "P2", at="2025-01-13T11:30:00Z")
    assert clock_of(view, "SLA-C7")["breached"] is True  # measured again: still late
    time.sleep(1.5)  # several sweeps
    assert [n["level"] for n in clock_of(api.ticket(ticket["id"]), "SLA-C7")["notices"]] == [100.0]
    assert db_count(database_url, OutboxMessage, OutboxMessage.dedupe_key.like("clock:%")) == sent
    [clock] = db_rows(database_url, SlaClock, SlaClock.ticket_id == ticket["number"])
    assert clock.notified_level == 100 and clock.next_check_at is None


@pytest.mark.parametrize("resolved_at, state, breached", [
    ("2025-06-02T08:59:59.820Z", "met", False),  # 3599.82 s of 3600 s: 99.995 % used
    ("2025-06-02T09:00:00.180Z", "breached", True),  # 3600.18 s: 100.005 %
])
def test_case_9_resolved_at_99_995_percent_is_met(api, resolved_at, state, breached):
    ticket = api.open(service="c9", priority="P2", title="Close call", opened_at="2025-06-02T08:00:00Z")
    clock = clock_of(api.event(ticket["id"], "resolve", at=resolved_at), "SLA-C9")
    assert (clock["state"], clock["breached"]) == (state, breached)
    assert clock["elapsed_seconds"] == pytest.approx((instant(resolved_at) - instant("2025-06-02T08:00:00Z"))
                                                     .total_seconds(), abs=1e-6)


def test_reopen_resumes_the_clock_without_the_time_spent_resolved(api):
    """SLA-CASES: resolved 13:00 against a 16:00 due time, reopened 15:00. The policy implemented: resume,
    excluding the two hours spent resolved, so it is due 18:00."""
    ticket = api.open(service="reopen", priority="P2", title="Came back", opened_at="2025-06-02T12:00:00Z")
    assert instant(clock_of(ticket, "SLA-REOPEN")["due_at"]) == instant("2025-06-02T16:00:00Z")
    resolved = clock_of(api.event(ticket["id"], "resolve", at="2025-06-02T13:00:00Z"), "SLA-REOPEN")
    assert (resolved["state"], resolved["due_at"], instant(resolved["stopped_at"])) == \
        ("met", None, instant("2025-06-02T13:00:00Z"))
    view = api.event(ticket["id"], "reopen", at="2025-06-02T15:00:00Z")
    clock = clock_of(view, "SLA-REOPEN")
    assert (view["state"], clock["state"], clock["stopped_at"]) == ("in-progress", "running", None)
    assert instant(clock["due_at"]) == instant("2025-06-02T18:00:00Z")


def test_ola_runs_only_while_assigned_and_uc_only_while_awaiting_that_supplier(api):
    ticket = api.open(service="ou", priority="P2", title="Handed around", opened_at="2025-06-02T08:00:00Z")
    ref = ticket["id"]
    assert clock_of(ticket, "OLA-OU")["state"] == "paused"  # unassigned: not the team's time
    api.event(ref, "assign", "payments-eng", at="2025-06-02T09:00:00Z")
    api.event(ref, "assign", "platform-ops", at="2025-06-02T09:30:00Z")
    api.event(ref, "supplier", "cardlink", at="2025-06-02T10:00:00Z")
    api.event(ref, "state", "awaiting-vendor", at="2025-06-02T10:00:00Z")
    api.event(ref, "state", "in-progress", at="2025-06-02T10:20:00Z")
    api.event(ref, "supplier", "cloudhost", at="2025-06-02T10:40:00Z")
    view = api.event(ref, "state", "awaiting-vendor", at="2025-06-02T10:40:00Z")
    ola, uc, sla_clock = clock_of(view, "OLA-OU"), clock_of(view, "UC-OU"), clock_of(view, "SLA-OU")
    assert (ola["state"], ola["elapsed_seconds"], ola["due_at"]) == ("paused", 30 * 60, None)
    # Waiting on cloudhost is not cardlink's time: only 10:00-10:20 counted.
    assert (uc["state"], uc["elapsed_seconds"], uc["due_at"]) == ("paused", 20 * 60, None)
    assert instant(sla_clock["due_at"]) == instant("2025-06-02T16:00:00Z")

    api.event(ref, "state", "in-progress", at="2025-06-02T11:00:00Z")
    view = api.event(ref, "assign", "payments-eng", at="2025-06-02T11:30:00Z")
    ola = clock_of(view, "OLA-OU")
    assert ola["state"] == "running"
    assert instant(ola["due_at"]) == instant("2025-06-02T13:00:00Z")  # 11:30 + the 90 min left
    api.event(ref, "supplier", "cardlink", at="2025-06-02T11:40:00Z")
    view = api.event(ref, "state", "awaiting-vendor", at="2025-06-02T11:40:00Z")
    assert clock_of(view, "UC-OU")["state"] == "running"
    assert instant(clock_of(view, "UC-OU")["due_at"]) == instant("2025-06-02T12:20:00Z")  # 11:40 + 40 min
    assert clock_of(view, "OLA-OU")["state"] == "running"  # still the team's ticket while it waits

    view = api.event(ref, "resolve", at="2025-06-02T12:00:00Z")
    assert [(c["kind"], c["agreement"], c["state"], c["elapsed_seconds"]) for c in view["clocks"]] == [
        ("ola", "OLA-OU", "met", 30 * 60 + 30 * 60),
        ("sla", "SLA-OU", "met", 4 * 3600),
        ("uc", "UC-OU", "met", 20 * 60 + 20 * 60),
    ]


# ------------------------------------------------------------------------------------------- SLA reports

def test_sla_reports_say_what_chat_says(server, api, fake_slack):
    late = api.open(service="ou", priority="P2", title="Late", group="payments-eng",
                    opened_at="2025-06-03T08:00:00Z")
    api.event(late["id"], "resolve", at="2025-06-03T17:00:00Z")  # 9 h against 8: late by 1 h
    on_time = api.open(service="ou", priority="P2", title="On time", opened_at="2025-06-04T08:00:00Z")
    api.event(on_time["id"], "resolve", at="2025-06-04T09:00:00Z")
    running = api.open(service="ou", priority="P2", title="Still open", opened_at="2025-06-05T08:00:00Z")

    attainment = api.get("/api/v1/sla", params={"service": "ou", "period": "2025-06"}).json()
    fits(attainment, "Attainment")
    assert attainment["period"]["name"] == "June 2025"
    got = {(t["agreement"], t["metric"], t["priority"]): (t["measured"], t["met"], t["share"], t["ok"])
           for t in attainment["targets"]}
    # The running clock is past due, so it counts as breached; UC-OU never ran and is not counted.
    assert got == {("SLA-OU", "resolution", "P2"): (3, 1, 100 / 3, False),
                   ("OLA-OU", "resolution", "P2"): (1, 0, 0.0, False)}
    by_group = api.get("/api/v1/sla", params={"service": "ou", "period": "2025-06", "by": "group"}).json()
    assert sorted((t["agreement"], t["group"] or "-", t["measured"]) for t in by_group["targets"]) == [
        ("OLA-OU", "payments-eng", 1), ("SLA-OU", "-", 2), ("SLA-OU", "payments-eng", 1)]  # "-": unassigned

    found = api.get("/api/v1/sla/breaches", params={"period": "2025-06"}).json()
    fits(found, "Breaches")
    [breach] = [b for b in found["breaches"] if b["ticket"] == late["id"]]
    assert (breach["agreement"], breach["metric"], breach["late_seconds"]) == ("SLA-OU", "resolution", 3600)
    # The team had it all along; the supplier never did, so its UC is not named.
    assert [(u["agreement"], u["elapsed_seconds"], u["breached"]) for u in breach["used_by"]] == [
        ("OLA-OU", 9 * 3600, True)]

    at_risk = api.get("/api/v1/sla/at-risk").json()
    fits(at_risk, "AtRisk")
    assert [(r["ticket"], r["agreement"], r["late"]) for r in at_risk["at_risk"]] == [
        (running["id"], "SLA-OU", True)]
    assert instant(at_risk["at_risk"][0]["due_at"]) == instant("2025-06-05T16:00:00Z")
    assert (at_risk["more"], at_risk["next_cursor"]) == (False, None)  # one page holds them all

    # The chat commands show the same numbers.
    chat = blocks_text(slash(server, fake_slack, "sla ou 2025-06", TOM).json())
    for t in attainment["targets"]:
        assert f"{t['metric']} {t['priority']}: {t['share']:.1f} % met ({t['met']}/{t['measured']})" in chat
    blocks = slash(server, fake_slack, "sla breaches 2025-06", TOM).json()["blocks"]
    [section] = [b for b in blocks if b["type"] == "section" and b["text"]["text"].startswith(f"*{late['id']} ")]
    assert section["text"]["text"] == f"*{late['id']} P2 · SLA-OU resolution · late by 1 h*\nLate"
    assert section["fields"][-1]["text"] == "*Time used by*\nOLA OLA-OU resolution: 9 h of 2 h — breached"
    chat = blocks_text(slash(server, fake_slack, "sla at-risk", TOM).json())
    assert f"{running['id']} P2 ou · SLA SLA-OU resolution" in chat and "late since 2025-06-05 16:00" in chat


# ------------------------------------------------------------------------------------------- outages

def test_availability_from_outages_posted_through_the_api(api, database_url):
    """SLA-CASES: a 30-day month with 120 min of approved maintenance and 30 min of unplanned downtime
    is 99.930 %. June 2025 has 30 days; the bot's time zone (Europe/London) bounds it."""
    maintenance = api.post("/api/v1/outages", {"service": "webshop", "kind": "maintenance", "id": "chg-77",
                                               "started_at": "2025-06-08T01:00:00Z",
                                               "ended_at": "2025-06-08T03:00:00Z", "summary": "DB upgrade"})
    assert maintenance.status_code == 201, maintenance.text
    fits(maintenance.json(), "Outage")
    down = api.post("/api/v1/outages", {"service": "webshop", "kind": "unplanned", "id": "inc-5",
                                        "started_at": "2025-06-10T12:00:00+02:00"})
    assert down.status_code == 201
    assert [o["id"] for s in api.get("/api/v1/services").json()["services"] if s["id"] == "webshop"
            for o in s["open_outages"]] == [down.json()["id"]]
    ended = api.post("/api/v1/outages/inc-5/end", {"ended_at": "2025-06-10T10:30:00Z"})
    assert ended.status_code == 200, ended.text
    assert (ended.json()["id"], instant(ended.json()["ended_at"])) == (down.json()["id"],
                                                                       instant("2025-06-10T10:30:00Z"))
    before = snapshot(database_url)
    again = api.post("/api/v1/outages", {"service": "webshop", "kind": "unplanned", "id": "inc-5",
                                         "started_at": "2025-06-10T12:00:00+02:00"})
    assert (again.status_code, again.json()["duplicate"], again.json()["ended_at"]) == \
        (200, True, ended.json()["ended_at"])
    assert api.post("/api/v1/outages/inc-5/end", {"ended_at": "2025-06-10T10:30:00Z"}).json()["duplicate"] is True
    assert snapshot(database_url) == before

    vpn = api.post("/api/v1/outages", {"service": "vpn", "kind": "partial", "started_at": "2025-06-20T09:00:00Z"})
    assert (vpn.status_code, vpn.json()["external_id"], vpn.json()["ended_at"]) == (201, None, None)
    asked_at = datetime.now(timezone.utc)
    ended_now = api.post(f"/api/v1/outages/{vpn.json()['id']}/end", data=b"", headers=api.headers())  # no body
    assert ended_now.status_code == 200
    assert asked_at <= instant(ended_now.json()["ended_at"]) <= datetime.now(timezone.utc)  # it ended now

    result = api.get("/api/v1/services/webshop/availability", params={"period": "2025-06"}).json()
    fits(result, "Availability")
    assert (instant(result["period"]["start"]), instant(result["period"]["end"])) == \
        (instant("2025-05-31T23:00:00Z"), instant("2025-06-30T23:00:00Z"))
    assert result["agreed_seconds"] == 30 * 86400 - 120 * 60
    assert result["downtime_seconds"] == 30 * 60
    assert f"{result['availability']:.3f}" == "99.930"
    [target] = result["targets"]
    assert (target["agreement"], target["goal"], target["met"]) == ("SLA-SHOP", 99.95, False)
    assert [o["external_id"] for o in result["outages"]] == ["chg-77", "inc-5"]
    assert [(a.action, a.platform) for a in db_rows(database_url, AuditRecord)] == \
        [("outage.open", "api"), ("outage.close", "api")] * 3


def test_alertmanager_firing_then_resolved_is_one_outage_with_both_ends(api, database_url):
    headers = api.headers({"Content-Type": "application/json", "User-Agent": "Alertmanager/0.27.0"})
    fired = api.post("/api/v1/alertmanager", data=FIRING, headers=headers)
    assert fired.status_code == 200, fired.text
    fits(fired.json(), "AlertmanagerResult")
    assert {k: v for k, v in fired.json().items() if k not in ("notes", "runbooks")} == \
        {"opened": 1, "closed": 0, "repeated": 0, "unknown_service": 1}
    assert any("checkout" in note for note in fired.json()["notes"])
    [outage] = db_rows(database_url, Outage)
    assert (outage.service_id, outage.source, outage.kind, outage.summary, outage.ended_at) == \
        ("payments", "alertmanager", "unplanned", "Payments: error rate above 5%", None)
    # No article answers it: the outage names the runbook by the alert's runbook_url.
    assert fired.json()["runbooks"] == [{"fingerprint": "5d3a8f1c2b9e0471", "alert": "HighErrorRate",
                                         "service": "payments", "outage": f"OUT-{outage.id}", "title": None,
                                         "runbook": "https://runbooks.example.internal/high-error-rate"}]
    payments = next(s for s in api.get("/api/v1/services").json()["services"] if s["id"] == "payments")
    assert [o["id"] for o in payments["open_outages"]] == [f"OUT-{outage.id}"]

    before = snapshot(database_url)
    repeat = api.post("/api/v1/alertmanager", data=FIRING, headers=headers).json()
    assert (repeat["opened"], repeat["repeated"]) == (0, 1)
    assert snapshot(database_url) == before

    resolved = api.post("/api/v1/alertmanager", data=RESOLVED, headers=headers).json()
    assert {k: v for k, v in resolved.items() if k not in ("notes", "runbooks")} == \
        {"opened": 0, "closed": 1, "repeated": 0, "unknown_service": 1}
    [outage] = db_rows(database_url, Outage)
    assert (instant(outage.started_at.isoformat()), instant(outage.ended_at.isoformat())) == \
        (instant("2025-03-29T23:00:00.123456Z"), instant("2025-03-29T23:41:30.987654Z"))
    assert [(a.action, a.person_id, a.platform) for a in db_rows(database_url, AuditRecord)] == \
        [("outage.open", "api", "api"), ("outage.close", "api", "api")]

    result = api.get("/api/v1/services/payments/availability", params={"period": "2025-03"}).json()
    fits(result, "Availability")
    # March 2025 in Europe/London: 31 days less the hour the clocks skip on the 30th.
    assert result["agreed_seconds"] == 31 * 86400 - 3600
    assert result["downtime_seconds"] == pytest.approx(41 * 60 + 30.864198, abs=1e-6)
    assert result["availability"] == pytest.approx(100 * (2674800 - 2490.864198) / 2674800, abs=1e-9)
    assert [(o["source"], o["ended_at"] is not None) for o in result["outages"]] == [("alertmanager", True)]
    assert api.get("/api/v1/services/payments/availability", params={"period": "2025-04"}).json()[
        "downtime_seconds"] == 0


def test_a_malformed_webhook_is_refused_with_every_problem_and_changes_nothing(api, database_url):
    payload = json.loads(FIRING)
    payload["version"] = "3"
    payload["alerts"][0]["startsAt"] = "yesterday"
    del payload["alerts"][1]["labels"]
    response = api.post("/api/v1/alertmanager", payload)
    assert response.status_code == 400
    answer = response.json()
    fits(answer, "Error")
    assert answer["problems"] == ['version: expected "4", got "3"',
                                  answer["problems"][1], answer["problems"][2]]
    assert answer["problems"][1].startswith("alerts[0].startsAt:")
    assert answer["problems"][2].startswith("alerts[1].labels:")
    assert api.post("/api/v1/alertmanager", data="{not json").status_code == 400
    assert db_rows(database_url, Outage) == [] and db_rows(database_url, AuditRecord) == []


# ------------------------------------------------------------------------------------------- bad input

def test_every_bad_input_says_what_was_wrong_and_changes_nothing(api, database_url):
    ticket = api.open(service="c5", priority="P2", title="Target", external_id="bad-1",
                      opened_at="2025-06-02T08:00:00Z")
    ref = ticket["id"]
    assert api.post("/api/v1/outages", {"service": "webshop", "kind": "unplanned", "id": "o-1",
                                        "started_at": "2025-06-01T10:00:00Z",
                                        "ended_at": "2025-06-01T11:00:00Z"}).status_code == 201
    before = snapshot(database_url)
    T, E = "/api/v1/tickets", f"/api/v1/tickets/{ref}/events"
    cases = [
        ("POST", T, "{not json", 400, "(body):"),
        ("POST", T, "", 400, "(body): empty"),
        ("POST", T, [], 422, "(body): expected an object, got a list"),
        ("POST", T, {}, 422, "title: required"),
        ("POST", T, {"service": "nowhere", "priority": "P9", "title": "x", "colour": "red",
                     "opened_at": "yesterday"}, 422, 'priority: expected one of P1, P2, P3, P4, got "P9"'),
        ("POST", T, {"service": "nowhere", "priority": "P2", "title": "x"}, 422, "there is no service 'nowhere'"),
        ("POST", T, {"service": "c5", "priority": "P2", "title": "x", "opened_at": "2999-01-01T00:00:00Z"}, 422,
         "opened_at: 2999-01-01T00:00:00Z is in the future"),
        ("POST", T, {"service": "c5", "priority": "P2", "title": "x", "group": "cardlink"}, 422,
         "there is no internal team 'cardlink'"),
        ("POST", T, {"service": "c5", "priority": "P2", "title": "x", "state": "resolved"}, 422, "state:"),
        ("POST", T, {"service": "c5", "priority": "P2", "title": "", "external_id": "a/b"}, 422, "external_id:"),
        ("POST", T, {"service": "c5", "priority": 2, "title": "x"}, 422, "priority: expected a string"),
        ("GET", "/api/v1/tickets/INC-999", None, 404, "no ticket 'INC-999'"),
        ("GET", "/api/v1/tickets/ext:nope", None, 404, "no ticket 'ext:nope'"),
        ("GET", "/api/v1/tickets/banana", None, 404, "INC-N"),
        ("POST", "/api/v1/tickets/INC-999/events", {"kind": "respond"}, 404, "no ticket"),
        ("POST", E, {"kind": "explode"}, 422, "kind: expected one of state, priority"),
        ("POST", E, {"kind": "state", "value": "sideways"}, 422, "value: a state event needs a state"),
        ("POST", E, {"kind": "priority"}, 422, "value: a priority event needs a priority"),
        ("POST", E, {"kind": "assign", "value": "cardlink"}, 422, "there is no internal team 'cardlink'"),
        ("POST", E, {"kind": "supplier", "value": "payments-eng"}, 422, "there is no supplier 'payments-eng'"),
        ("POST", E, {"kind": "resolve", "value": "done"}, 422, "value: a resolve event takes no value"),
        ("POST", E, {"kind": "respond", "at": "2025-06-01T08:00:00Z"}, 422, "before INC-"),
        ("POST", E, {"kind": "respond", "at": "2999-06-01T08:00:00Z"}, 422, "in the future"),
        ("POST", E, {"kind": "respond", "at": "2025-06-02 09:00"}, 422, "at: expected an RFC 3339 date-time"),
        ("POST", E, {"kind": "reopen", "at": "2025-06-02T09:00:00Z"}, 409, "was new at 2025-06-02T09:00:00Z"),
        ("POST", E, {"kind": "respond", "event_id": ""}, 422, "event_id: must not be empty"),
        ("POST", "/api/v1/outages", {"service": "nowhere", "kind": "sideways", "started_at": "soon"}, 422,
         "kind: expected one of unplanned, maintenance, partial"),
        ("POST", "/api/v1/outages", {"service": "webshop", "kind": "unplanned", "started_at": "2025-06-02T10:00:00Z",
                                     "ended_at": "2025-06-02T09:00:00Z"}, 422, "is before started_at"),
        ("POST", "/api/v1/outages", {"service": "webshop", "kind": "unplanned",
                                     "started_at": "2999-06-02T10:00:00Z"}, 422, "in the future"),
        ("POST", "/api/v1/outages", {"service": "webshop", "kind": "unplanned", "id": "OUT-7",
                                     "started_at": "2025-06-02T10:00:00Z"}, 422, "looks like svcbot's own"),
        ("POST", "/api/v1/outages/nope/end", {}, 404, "no outage 'nope'"),
        ("POST", "/api/v1/outages/o-1/end", {"ended_at": "2025-06-01T12:00:00Z"}, 409, "ended at"),
        ("POST", "/api/v1/outages/o-1/end", {"until": "later"}, 422, "until: unknown field"),
        ("GET", "/api/v1/services/nowhere/availability", None, 404, "there is no service 'nowhere'"),
        ("GET", "/api/v1/services/webshop/availability?period=2025-13", None, 400, "period: '2025-13' is not a month"),
        ("GET", "/api/v1/sla?service=nowhere&period=sometime&by=team&colour=red", None, 400,
         "colour: unknown parameter"),
        ("GET", "/api/v1/sla/breaches?period=fortnight", None, 400, "period: 'fortnight' is not a period"),
        ("GET", "/api/v1/sla/at-risk?soon=1", None, 400, "soon: unknown parameter"),
        ("GET", "/api/v1/sla/at-risk?cursor=page-2", None, 400, "cursor: not a next_cursor this endpoint gave"),
        ("GET", "/api/v1/sla/at-risk?limit=0", None, 400, "limit:"),
        ("GET", "/api/v1/services?period=all&period=all", None, 400, "period: unknown parameter"),
        ("POST", "/api/v1/alertmanager", {"version": "4"}, 400, "alerts: expected a list, got nothing"),
        ("DELETE", T, None, 405, "DELETE is not allowed"),
        ("GET", "/api/v1/nothing-here", None, 404, "no endpoint /api/v1/nothing-here"),
    ]
    for method, path, body, status, expected in cases:
        data = body if isinstance(body, str) or body is None else json.dumps(body)
        response = requests.request(method, api.url + path, data=data, timeout=15,
                                    headers=api.headers({"Content-Type": "application/json"}))
        where = f"{method} {path} {body!r}"
        assert response.status_code == status, f"{where}: {response.status_code} {response.text}"
        assert "Traceback" not in response.text, where
        answer = response.json()
        fits(answer, "Error")
        assert answer["error"] and answer["problems"], where
        assert any(expected in p for p in answer["problems"]), f"{where}: {answer}"
    assert snapshot(database_url) == before

    # Several faults at once are all listed.
    many = api.post(T, {"service": "nowhere", "priority": "P9", "colour": "red", "opened_at": "yesterday"}).json()
    assert len(many["problems"]) == 4, many
    many = api.get("/api/v1/sla", params={"service": "nowhere", "period": "sometime", "by": "team"}).json()
    assert [p.split(":")[0] for p in many["problems"]] == ["by", "period", "service"], many


# ------------------------------------------------------------------------------------------- OpenAPI

def walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}/{i}")


def test_openapi_document_is_served_without_a_token_and_is_well_formed(server):
    response = requests.get(server.url + "/api/v1/openapi.json", timeout=5)
    assert response.status_code == 200
    doc = response.json()
    assert doc == json.loads(json.dumps(api_module.OPENAPI))
    assert doc["openapi"].startswith("3.1.") and doc["info"]["title"] and doc["info"]["version"]
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "api_clients" in scheme["description"] and "SVCBOT_API_TOKEN" in scheme["description"]
    assert doc["security"] == [{"bearerAuth": []}]
    for where, node in walk(doc):  # every reference resolves within the document
        if "$ref" in node:
            target = doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                assert part in target, f"{where}: {node['$ref']}"
                target = target[part]
    operation_ids = []
    for path, operations in doc["paths"].items():
        assert path.startswith("/api/v1/")
        for method, op in operations.items():
            assert method in ("get", "post", "put", "patch", "delete")
            operation_ids.append(op["operationId"])
            assert all(status.isdigit() and "description" in (doc["components"]["responses"].get(
                answer.get("$ref", "").rsplit("/", 1)[-1]) or answer) for status, answer in op["responses"].items())
            declared = {api_module.resolve(p)["name"] for p in op.get("parameters", [])
                        if api_module.resolve(p)["in"] == "path"}
            assert declared == set(part[1:-1] for part in path.split("/") if part.startswith("{")), path
            if op.get("security") != []:
                assert {"401", "403", "503"} <= set(op["responses"]), path
                assert all(list(need) == ["bearerAuth"] and len(need["bearerAuth"]) == 1 for need in op["security"])
            if "requestBody" in op:
                schema = api_module.resolve(op["requestBody"]["content"]["application/json"]["schema"])
                assert schema["type"] == "object", path
    assert len(operation_ids) == len(set(operation_ids))


def test_every_path_served_is_documented_and_every_documented_path_is_served(runtime, server, api):
    from bot.server import build_app
    app = build_app(runtime)
    served = {(route.method.lower(), route.resource.canonical) for route in app.router.routes()
              if route.resource is not None and route.resource.canonical.startswith("/api/v1")}
    documented = {(method, path) for path, operations in api_module.OPENAPI["paths"].items()
                  for method in operations}
    assert served == documented
    # Through the real server: each documented GET without path parameters answers.
    for method, path in sorted(documented):
        if method == "get" and "{" not in path:
            assert api.get(path).status_code == 200, path
    # And each documented operation is routed (a router miss would say "no endpoint").
    for method, path in sorted(documented):
        concrete = path.replace("{ref}", "INC-1").replace("{id}", "x")
        response = requests.request(method.upper(), api.url + concrete, headers=api.headers(), timeout=15)
        assert response.status_code not in (405,), (method, path)
        assert "no endpoint" not in response.text, (method, path)
