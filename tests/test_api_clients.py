"""Named API clients and who may read the status feeds, in this process: the app as the server builds it,
behind aiohttp's test server, on a configuration with three clients beside SVCBOT_API_TOKEN (the client
``legacy``); the audit log is read back to see who acted, through which client."""
from __future__ import annotations

import re
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot import api as api_module
from bot.api_clients import hash_token
from bot.server import build_app
from handlers.core.config import StatusPagePolicy
from storage.models import AuditRecord, CsiItem, Outage, Ticket
from tests.conftest import demo_config
from tests.test_alertmanager import FIRING

LEGACY, MONITORING, ITSM, ROBOT, READER, FEED = (f"svc_test_{n}_0123456789abcdef" for n in
                                                ("legacy", "monitoring", "itsm", "robot", "reader", "feed"))


def clients_config() -> dict:
    cfg = demo_config()
    cfg["api_clients"] = [
        {"name": "monitoring", "token_hash": hash_token(MONITORING), "scopes": ["alerts"]},
        {"name": "itsm", "token_hash": hash_token(ITSM), "scopes": ["tickets", "csi", "read"],
         "on_behalf_of": ["priya", "meera"]},
        {"name": "robot", "token_hash": hash_token(ROBOT), "scopes": ["csi"]},  # acts as itself
        {"name": "reader", "token_hash": hash_token(READER), "scopes": ["read"]},
    ]
    cfg["status_page"] = {"mode": "public", "feed_keys": [{"name": "outlook", "key_hash": hash_token(FEED)}]}
    return cfg


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(clients_config(), sort_keys=False))
    return path


async def _client(runtime, monkeypatch, **status_page):
    monkeypatch.setenv("SVCBOT_API_TOKEN", LEGACY)
    if status_page:
        policy = StatusPagePolicy(**status_page, feed_keys=runtime.ctx.config.status_page.feed_keys)
        runtime.ctx.config = runtime.ctx.config.model_copy(update={"status_page": policy})
    app = build_app(runtime)
    app.on_startup.clear()  # the routes only: no scheduler in this process
    app.on_cleanup.clear()
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def http(runtime, ctx, monkeypatch):
    client = await _client(runtime, monkeypatch)
    yield client
    await client.close()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def audit(ctx) -> list[tuple]:
    with ctx.sessions() as s:
        return [(a.action, a.person_id, a.platform, a.client)
                for a in s.scalars(select(AuditRecord).order_by(AuditRecord.id))]


def count(ctx, model) -> int:
    with ctx.sessions() as s:
        return len(s.scalars(select(model)).all())


# ------------------------------------------------------------------------------------------- the API

async def test_a_token_without_the_scope_is_refused_naming_it_and_an_unknown_token_is_401(http, ctx):
    ticket = {"service": "payments", "priority": "P2", "title": "Card declines"}
    refused = await http.post("/api/v1/tickets", json=ticket, headers=bearer(MONITORING))
    assert refused.status == 403
    answer = await refused.json()
    assert "'tickets'" in answer["error"] and "client 'monitoring'" in answer["error"]
    assert "POST /api/v1/tickets needs the scope 'tickets'" in answer["problems"][0]
    reading = await http.get("/api/v1/services", headers=bearer(MONITORING))
    assert reading.status == 403 and "'read'" in (await reading.json())["error"]
    assert (await http.get("/api/v1/services", headers=bearer(READER))).status == 200
    # Reading tickets takes 'read' or 'tickets'; writing them only 'tickets'.
    assert (await http.post("/api/v1/tickets", json=ticket, headers=bearer(READER))).status == 403
    unknown = await http.post("/api/v1/tickets", json=ticket, headers=bearer(ITSM + "x"))
    assert unknown.status == 401 and unknown.headers["WWW-Authenticate"].startswith("Bearer")
    assert count(ctx, Ticket) == 0 and audit(ctx) == []
    metrics = await (await http.get("/metrics")).text()
    assert 'svcbot_requests_refused_total{platform="api",reason="scope"} 3.0' in metrics


async def test_the_alertmanager_receiver_acts_as_its_own_client_and_no_more(http, ctx):
    answer = await http.post("/api/v1/alertmanager", data=FIRING, headers=bearer(MONITORING))
    assert answer.status == 200, await answer.text()
    assert count(ctx, Outage) == 1  # payments; checkout is not in the catalogue
    assert {row for row in audit(ctx)} == {("outage.open", "api", "api", "monitoring")}
    # The same token cannot cancel a change, even naming a service manager.
    cancel = await http.post("/api/v1/changes/CHG-1/cancel", json={"by": "priya"}, headers=bearer(MONITORING))
    assert cancel.status == 403 and "'changes'" in (await cancel.json())["error"]


async def test_a_client_acts_only_for_the_people_it_lists_and_the_audit_names_both(http, ctx):
    item = {"person": "priya", "title": "Shorten the P1 response target"}
    created = await http.post("/api/v1/csi", json=item, headers=bearer(ITSM))
    assert created.status == 201, await created.text()
    assert audit(ctx) == [("csi.add", "priya", "api", "itsm")]
    # Tom is a person of app.yaml, but not one the client may act for.
    tom = await http.post("/api/v1/csi", json={**item, "person": "tom"}, headers=bearer(ITSM))
    assert tom.status == 403
    answer = await tom.json()
    assert "may not act on behalf of 'tom'" in answer["error"]
    assert answer["problems"] == ["person: client 'itsm' acts only for meera, priya"]
    # A client without on_behalf_of acts as itself: it may name nobody.
    robot = await http.post("/api/v1/csi", json=item, headers=bearer(ROBOT))
    assert robot.status == 403
    answer = await robot.json()
    assert "acts as itself" in answer["error"] and "on_behalf_of: [priya]" in answer["problems"][0]
    done = await http.post("/api/v1/csi/CSI-1/done", json={"person": "priya"}, headers=bearer(ROBOT))
    assert done.status == 403
    assert count(ctx, CsiItem) == 1 and len(audit(ctx)) == 1
    # A ticket's requester is named on their behalf too.
    ticket = {"service": "payments", "priority": "P3", "title": "Refund stuck", "requester": "tom"}
    assert (await http.post("/api/v1/tickets", json=ticket, headers=bearer(ITSM))).status == 403
    ticket["requester"] = "meera"
    assert (await http.post("/api/v1/tickets", json=ticket, headers=bearer(ITSM))).status == 201
    assert audit(ctx)[-1] == ("incident.new", "api", "api", "itsm")


async def test_svcbot_api_token_is_the_legacy_client_with_todays_rights(http, ctx):
    item = {"person": "tom", "title": "Automate the refund report"}
    created = await http.post("/api/v1/csi", json=item, headers=bearer(LEGACY))
    assert created.status == 201, await created.text()
    assert (await http.get("/api/v1/sla/breaches", headers=bearer(LEGACY))).status == 200
    assert (await http.post("/api/v1/alertmanager", data=FIRING, headers=bearer(LEGACY))).status == 200
    assert audit(ctx)[0] == ("csi.add", "tom", "api", "legacy")
    assert {row[3] for row in audit(ctx)} == {"legacy"}


async def test_ids_beyond_the_store_are_404_not_500(http, ctx):
    huge = "9" * 23
    for method, path, body in [("GET", f"/api/v1/tickets/INC-{huge}", None),
                               ("POST", f"/api/v1/tickets/INC-{huge}/events", {"kind": "respond"}),
                               ("POST", f"/api/v1/tickets/INC-{2**31}/events", {"kind": "respond"}),
                               ("POST", f"/api/v1/outages/OUT-{huge}/end", None),
                               ("GET", f"/api/v1/changes/CHG-{huge}", None),
                               ("GET", f"/api/v1/surveys/SRV-{huge}", None)]:
        answer = await http.request(method, path, json=body, headers=bearer(LEGACY))
        assert answer.status == 404, (path, await answer.text())
        assert "There is no" in (await answer.json())["error"], path


def test_the_openapi_document_lists_the_scopes_of_each_operation():
    ops = {op["operationId"]: op for ops in api_module.OPENAPI["paths"].values() for op in ops.values()}
    assert ops["alertmanager_webhook"]["security"] == [{"bearerAuth": ["alerts"]}]
    assert ops["tickets_create"]["security"] == [{"bearerAuth": ["tickets"]}]
    assert ops["tickets_get"]["security"] == [{"bearerAuth": ["tickets"]}, {"bearerAuth": ["read"]}]
    assert ops["sla_breaches"]["security"] == [{"bearerAuth": ["read"]}]
    assert ops["openapi_document"]["security"] == []
    for op_id, op in ops.items():
        if op["security"]:
            assert "403" in op["responses"], op_id


# ------------------------------------------------------------------------------------------- the status feeds

async def test_hide_incident_titles_keeps_the_page_public_without_the_titles(runtime, ctx, monkeypatch):
    from tests.test_change_calendar import run
    run(ctx, "tom", "incident new payments P1 Card payments fail for Amex")
    http = await _client(runtime, monkeypatch, mode="hide_incident_titles")
    try:
        data = await (await http.get("/status.json")).json()
        assert [(i["id"], i["title"]) for i in data["incidents"]] == [("INC-1", None)]
        page = await (await http.get("/")).text()
        assert "INC-1" in page and "Amex" not in page
        assert (await http.get("/changes.ics")).status == 200
    finally:
        await http.close()


async def test_a_private_page_wants_a_feed_key_or_a_read_token(runtime, ctx, monkeypatch):
    http = await _client(runtime, monkeypatch, mode="private")
    try:
        for path in ("/", "/status.json", "/changes.ics"):
            refused = await http.get(path)
            assert refused.status == 401, path
            assert "private" in await refused.text(), path
            assert (await http.get(path, params={"key": FEED + "x"})).status == 401, path
            assert (await http.get(path, headers=bearer(MONITORING))).status == 401, path  # no 'read' scope
            assert (await http.get(path, params={"key": FEED})).status == 200, path
            assert (await http.get(path, headers=bearer(READER))).status == 200, path
        opened = await http.get("/", params={"key": FEED})
        assert opened.headers["Cache-Control"].startswith("private")
        links = re.findall(r'href="((?:status\.json|changes\.ics)[^"]*)"', await opened.text())
        assert links == [f"status.json?key={FEED}", f"changes.ics?key={FEED}"]  # the key opens them too
        assert opened.headers["Referrer-Policy"] == "no-referrer"
        assert (await http.get("/changes.ics", params={"key": FEED, "days": "7"})).status == 200
    finally:
        await http.close()


async def test_a_calendar_client_polling_a_private_feed_is_told_when_nothing_changed(runtime, ctx, clock,
                                                                                      monkeypatch):
    from tests.test_change_calendar import new, run
    now = clock()
    cid = new(ctx, "email", now + timedelta(days=1), now + timedelta(days=1, hours=1))
    http = await _client(runtime, monkeypatch, mode="private")
    key = {"key": FEED}
    try:
        first = await http.get("/changes.ics", params=key)
        assert first.status == 200 and f"chg-{cid}@svcbot" in await first.text()
        etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
        assert parsedate_to_datetime(modified) == now.replace(microsecond=0)
        assert (await http.get("/changes.ics", headers={"If-None-Match": etag})).status == 401  # the key first
        for asked in ({"If-None-Match": etag}, {"If-None-Match": f"W/{etag}"}, {"If-None-Match": f'"other", {etag}'},
                      {"If-None-Match": "*"}, {"If-Modified-Since": modified}):
            unchanged = await http.get("/changes.ics", params=key, headers=asked)
            assert unchanged.status == 304 and await unchanged.read() == b"", asked
            assert (unchanged.headers["ETag"], unchanged.headers["Last-Modified"]) == (etag, modified), asked
            assert unchanged.headers["Cache-Control"] == "no-cache"
        earlier = format_datetime(now - timedelta(seconds=1), usegmt=True)
        for asked in ({"If-None-Match": '"other"'}, {"If-None-Match": '"other"', "If-Modified-Since": modified},
                      {"If-Modified-Since": earlier}):
            assert (await http.get("/changes.ics", params=key, headers=asked)).status == 200, asked
        ahead = await http.get("/changes.ics", params={**key, "days": "7"}, headers={"If-None-Match": etag})
        assert ahead.status == 200 and ahead.headers["ETag"] != etag  # another window, another feed

        # Changed within the same second: a new ETag, and a Last-Modified a second later, so that
        # If-Modified-Since tells them apart too (sent once that second is not in the future).
        run(ctx, "priya", f"change cancel CHG-{cid}")
        moved = await http.get("/changes.ics", params=key, headers={"If-Modified-Since": modified})
        assert moved.status == 200 and moved.headers["ETag"] != etag and "Last-Modified" not in moved.headers
        assert "STATUS:CANCELLED" in await moved.text()
        clock.advance(seconds=2)
        again = await http.get("/changes.ics", params=key, headers={"If-None-Match": moved.headers["ETag"]})
        later = parsedate_to_datetime(again.headers["Last-Modified"])
        assert again.status == 304 and later == now.replace(microsecond=0) + timedelta(seconds=1)
        assert (await http.get("/changes.ics", params=key, headers={"If-Modified-Since": modified})).status == 200
    finally:
        await http.close()


# ------------------------------------------------------------------------------------------- making a token

def test_api_client_new_prints_a_fresh_token_once_and_the_entry_with_its_hash(config_file, capsys):
    from bot.api_clients import Clients
    from bot.cli import main
    from handlers.core.config_loading import parse_config
    args = ["--config", str(config_file), "api-client", "new", "servicenow", "--scopes", "changes,read",
            "--on-behalf-of", "priya,meera"]
    assert main(args) == 0
    first = capsys.readouterr().out
    token = first.split("\n")[1].strip()
    entry = yaml.safe_load(first.split("app.yaml:\n", 1)[1])
    assert token not in first.split("\n", 2)[2]  # only its hash is in the lines for app.yaml
    cfg = clients_config()
    cfg["api_clients"] += entry
    clients = Clients(parse_config(yaml.safe_dump(cfg)), None)
    found = clients.identify(token)
    assert (found.name, found.scopes, found.on_behalf_of) == ("servicenow", {"changes", "read"}, {"priya", "meera"})
    assert main(args) == 0
    assert capsys.readouterr().out.split("\n")[1].strip() != token  # a fresh one every time
    assert main(["--config", str(config_file), "api-client", "new", "itsm", "--scopes", "admin"]) == 2
    refused = capsys.readouterr().err
    assert "unknown scope 'admin'" in refused and "'itsm' is taken" in refused
