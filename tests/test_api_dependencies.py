"""Dependencies in the JSON API and on the status page, in this process: the app as the server builds it,
behind aiohttp's test server, on the demo configuration with its dependencies (the web shop needs payments
fully and the warehouse partly). Outages recorded through the API tell the dependents as chat does."""
from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from bot.api import plain
from bot.api_clients import hash_token
from bot.server import build_app
from bot.status_page import snapshot
from storage.models import OutboxMessage
from tests.conftest import demo_config
from tests.test_api_e2e import fits
from tests.test_handlers import person, rows, run

LEGACY, MONITORING = "svc_test_legacy_0123456789abcdef", "svc_test_monitoring_0123456789abcdef"
SHOP = "C0SHOP0001"


@pytest.fixture
def config_file(tmp_path):
    cfg = demo_config(dependencies=True)
    cfg["api_clients"] = [{"name": "monitoring", "token_hash": hash_token(MONITORING), "scopes": ["alerts"]}]
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
async def http(runtime, ctx, monkeypatch):
    monkeypatch.setenv("SVCBOT_API_TOKEN", LEGACY)
    app = build_app(runtime)
    app.on_startup.clear()  # the routes only: no scheduler in this process
    app.on_cleanup.clear()
    client = TestClient(TestServer(app), headers={"Authorization": f"Bearer {LEGACY}"})
    await client.start_server()
    yield client
    await client.close()


def rfc(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def shop_titles(ctx) -> list[str]:
    return [r.message["title"] for r in rows(ctx, OutboxMessage, OutboxMessage.id)
            if r.target == SHOP and r.dedupe_key.startswith("affected:")]


async def test_an_outage_through_the_api_tells_the_dependents_once_and_its_end_again(http, ctx, clock):
    body = {"id": "pay-1", "service": "payments", "kind": "unplanned",
            "started_at": rfc(clock() - timedelta(minutes=4)), "summary": "Acquirer unreachable"}
    created = await http.post("/api/v1/outages", json=body)
    assert created.status == 201, await created.text()
    assert (await http.post("/api/v1/outages", json=body)).status == 200  # the same id again: a duplicate
    assert shop_titles(ctx) == ["🔴 Web Shop is affected: Payments Gateway is in a major outage"]

    found = await http.get("/api/v1/services/webshop/dependencies")
    assert found.status == 200
    data = await found.json()
    fits(data, "Dependencies")
    assert data["depends_on"] == [{"service": "payments", "impact": "full"}, {"service": "wms", "impact": "partial"}]
    assert data["affected_by"] == [{"service": "payments", "name": "Payments Gateway", "state": "major-outage",
                                    "impact": "full", "path": ["webshop", "payments"]}]
    assert data["dependents"] == []
    page = plain(snapshot(ctx))
    assert page["affected_by"] == {"webshop": data["affected_by"]}

    clock.advance(minutes=20)
    ended = await http.post("/api/v1/outages/pay-1/end", json={})
    assert ended.status == 200, await ended.text()
    assert shop_titles(ctx)[1:] == ["🟢 Web Shop: Payments Gateway is operational again"]
    assert (await (await http.get("/api/v1/services/webshop/dependencies")).json())["affected_by"] == []


async def test_an_outage_recorded_after_it_ended_tells_nobody(http, ctx, clock):
    body = {"service": "payments", "kind": "unplanned", "started_at": rfc(clock() - timedelta(hours=3)),
            "ended_at": rfc(clock() - timedelta(hours=2))}
    assert (await http.post("/api/v1/outages", json=body)).status == 201
    assert shop_titles(ctx) == []


async def test_the_catalogue_the_dependencies_and_the_impact_as_documented(http, ctx):
    catalogue = await (await http.get("/api/v1/services")).json()
    fits(catalogue, "ServiceList")
    assert {s["id"]: s["depends_on"] for s in catalogue["services"]}["hr-portal"] == [
        {"service": "email", "impact": "partial"}]

    payments = await (await http.get("/api/v1/services/payments/dependencies")).json()
    fits(payments, "Dependencies")
    assert payments["dependents"] == [{"service": "webshop", "name": "Web Shop", "impact": "full",
                                       "path": ["webshop", "payments"]}]
    wms = await (await http.get("/api/v1/services/Warehouse Management/dependencies")).json()
    assert [(d["service"], d["impact"]) for d in wms["dependents"]] == [("webshop", "partial")]

    assert run(ctx, person(ctx, "lucas"), "subscribe webshop")[1] == "ok"
    answer = await http.get("/api/v1/services/payments/impact")
    assert answer.status == 200
    impact = await answer.json()
    fits(impact, "Impact")
    assert impact["service"]["id"] == "payments" and [d["id"] for d in impact["dependents"]] == ["webshop"]
    assert [a["id"] for a in impact["agreements"]] == ["SLA-PAY", "OLA-PAY-OPS", "UC-CARDLINK", "SLA-SHOP"]
    shop = impact["agreements"][-1]["targets"]
    assert [(t["metric"], t["within"], t["share"], t["met"]) for t in shop] == [
        ("resolution", "2 hours", None, None), ("availability", None, 100.0, True)]
    assert (impact["channels"], impact["owners"], impact["subscribers"], impact["people"]) == (
        ["payments", "shop"], ["tom", "grace"], 1, 3)


async def test_unknown_services_and_tokens_without_read_are_refused(http):
    missing = await http.get("/api/v1/services/checkout/impact")
    assert missing.status == 404 and "There is no service 'checkout'" in (await missing.json())["error"]
    assert (await http.get("/api/v1/services/checkout/dependencies")).status == 404
    refused = await http.get("/api/v1/services/payments/impact", headers={"Authorization": f"Bearer {MONITORING}"})
    assert refused.status == 403 and "'read'" in (await refused.json())["error"]
    odd = await http.get("/api/v1/services/payments/dependencies?depth=2")
    assert odd.status == 400
