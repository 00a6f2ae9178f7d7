"""Post-incident reviews through the JSON API (bot/api/reviews.py), in this process: the server's routes on a
loopback test server, the store and clock of the handler tests. A review is opened and written in chat, read
here as a list, as one review in the shape the OpenAPI document gives, and as Markdown."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.server import build_app
from tests.test_api_e2e import fits
from tests.test_reviews import incident, ok

TOKEN = "svc_test_reviews_0123456789abcdef"


@pytest.fixture
async def http(runtime, ctx, monkeypatch):
    monkeypatch.setenv("SVCBOT_API_TOKEN", TOKEN)
    app = build_app(runtime)
    app.on_startup.clear()  # the routes only: no scheduler in this process
    app.on_cleanup.clear()
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_reviews_are_listed_shown_and_exported(http, ctx, clock):
    inc = incident(ctx, clock)
    incident(ctx, clock, priority="P2", service="webshop")
    ok(ctx, "tom", 'review edit REV-1 what="Amex authorisations timed out" factors="No canary"')
    ok(ctx, "tom", 'review note REV-1 "Rolled back" at="2026-03-02 09:40"')
    ok(ctx, "tom", 'review action REV-1 "Canary certificate changes" owner=arjun due=2026-03-20')

    listed = await http.get("/api/v1/reviews", headers=AUTH)
    assert listed.status == 200
    body = await listed.json()
    fits(body, "ReviewList")
    assert [(r["id"], r["ticket"], r["service"], r["owner"]) for r in body["reviews"]] == [
        ("REV-1", f"INC-{inc}", "payments", "tom"), ("REV-2", f"INC-{inc + 1}", "webshop", "grace")]
    only = await (await http.get("/api/v1/reviews?service=webshop&state=all", headers=AUTH)).json()
    assert [r["id"] for r in only["reviews"]] == ["REV-2"]
    mine = await (await http.get("/api/v1/reviews?owner=grace", headers=AUTH)).json()
    assert [r["id"] for r in mine["reviews"]] == ["REV-2"]

    one = await http.get("/api/v1/reviews/REV-1", headers=AUTH)
    assert one.status == 200
    review = await one.json()
    fits(review, "Review")
    assert review["parts"][0] == {"part": "what", "title": "What happened", "text": "Amex authorisations timed out",
                                  "by": "tom", "at": review["parts"][0]["at"]}
    assert review["actions"] == [{"id": "CSI-1", "title": "Canary certificate changes", "owner": "arjun",
                                  "due": "2026-03-20", "state": "open", "overdue": False}]
    kinds = [e["kind"] for e in review["timeline"]]
    assert kinds.index("note") > kinds.index("ticket") and review["timeline"][0]["text"] == "Opened as P1"
    assert review["impact"]["open_seconds"] == 90 * 60 and review["impact"]["breached"] == []  # acked in 5 min

    md = await http.get("/api/v1/reviews/1/markdown", headers=AUTH)
    assert md.status == 200 and md.content_type == "text/markdown"
    assert (await md.text()).startswith(f"# REV-1 · INC-{inc} ")


async def test_bad_requests_say_what_is_wrong(http, ctx, clock):
    assert (await http.get("/api/v1/reviews")).status == 401
    missing = await http.get("/api/v1/reviews/REV-9", headers=AUTH)
    assert missing.status == 404 and (await missing.json())["problems"] == ["id: no review 'REV-9'"]
    bad = await http.get("/api/v1/reviews?state=late", headers=AUTH)
    assert bad.status == 400 and "state" in (await bad.json())["problems"][0]
    assert (await http.get("/api/v1/reviews/99999999999/markdown", headers=AUTH)).status == 404
