"""The status page in this process: the app as the server builds it, behind aiohttp's test server, on a store
set up through the real commands at times the test sets. The page is read back with an HTML parser, as its
structure is what screen readers and phones rely on; its words are compared with what `status` and `sla`
answer in chat."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot import status_page
from bot.api import plain
from bot.server import build_app
from handlers.core.context import Command
from handlers.sla import attainment, breaches, tickets
from tests.test_change_calendar import actor, run
from tests.test_handlers import overview as status_lines

SCRIPT = '<script>alert("x")</script>'


# ------------------------------------------------------------------------------------------- reading a page

@dataclass
class Row:
    id: str | None
    attrs: dict
    cells: list[str] = field(default_factory=list)  # each cell's text, whitespace collapsed


@dataclass
class Table:
    caption: str = ""
    rows: list[Row] = field(default_factory=list)  # body rows, the header row left out


class Page(HTMLParser):
    """What the tests look at in a status page: its landmarks, headings, tables, scripts and elements by id."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.headings: list[tuple[int, str]] = []
        self.tables: dict[str, Table] = {}  # by the id of the box that holds the table
        self.text_by_id: dict[str, str] = {}
        self.scripts: list[str] = []
        self._open: list[tuple[str, dict, list[str]]] = []  # elements whose text is being collected
        self._box: str | None = None
        self._row: Row | None = None
        self._in_head = False
        self.feed(html)
        self.close()

    VOID = {"meta", "link", "br", "img", "input", "use", "path", "circle", "rect"}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "div" and "table-wrap" in attrs.get("class", ""):
            self._box = attrs["id"]
            self.tables[self._box] = Table()
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and self._box and not self._in_head:
            self._row = Row(attrs.get("id"), attrs)
        if tag not in self.VOID:
            self._open.append((tag, attrs, []))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        for _, _, parts in self._open:
            parts.append(data)

    def handle_endtag(self, tag):
        if tag in self.VOID or not self._open:
            return
        while self._open:
            name, attrs, parts = self._open.pop()
            if name == tag:
                break
        text = " ".join("".join(parts).split())
        if attrs.get("id"):
            self.text_by_id[attrs["id"]] = text
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append((int(tag[1]), text))
        elif tag == "script":
            self.scripts.append("".join(parts))
        elif tag == "caption" and self._box:
            self.tables[self._box].caption = text
        elif tag in ("th", "td") and self._row is not None:
            self._row.cells.append(text)
        elif tag == "thead":
            self._in_head = False
        elif tag == "tr" and self._row is not None:
            self.tables[self._box].rows.append(self._row)
            self._row = None
        elif tag == "div" and self._box and attrs.get("id") == self._box:
            self._box = None

    def rows(self, box: str) -> list[Row]:
        return self.tables[box].rows if box in self.tables else []


def services_shown(page: Page) -> dict[str, tuple[str, str]]:
    """Service id → (state, the rest of its status cell) as the page shows them."""
    out = {}
    for row in page.rows("services-table"):
        state, _, rest = row.cells[1].partition(" ")
        assert row.attrs["data-state"] == state
        out[row.id.removeprefix("service-")] = (state, rest)
    return out


# ------------------------------------------------------------------------------------------- fixtures

@pytest.fixture
async def client(runtime, ctx):
    app = build_app(runtime)
    app.on_startup.clear()  # the routes only: no scheduler sweeping or delivering in this process
    app.on_cleanup.clear()
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.fixture
def seeded(ctx, clock):
    """Mon 2 Mar 2026 (London is on GMT): two services set, an open P1 past its response target, a P2
    answered and resolved in time, a request, and changes inside, beyond and out of the next 7 days."""
    run(ctx, "tom", f"service set payments degraded Card payments are slow {SCRIPT}")
    run(ctx, "arjun", "service set wms maintenance Rolling restart of the pick workers")
    run(ctx, "tom", "incident new payments P1 Card payments fail for <b>Amex</b>")  # INC-1 at 09:00
    run(ctx, "tom", "incident new payments P2 Refunds are slow")  # INC-2
    clock.advance(minutes=10)
    run(ctx, "tom", "incident ack INC-2")
    clock.advance(minutes=20)
    run(ctx, "tom", "incident resolve INC-2")
    for title, start in [("Patch the mail relays", "2026-03-03 22:00"), ("Replace the VPN gateway", "2026-03-12 22:00"),
                         ("Called off", "2026-03-04 22:00")]:
        run(ctx, "priya", f'change new title="{title}" services=email type=normal risk=low start="{start}" '
                          f'end="{start[:11]}23:00" backout="Undo it"')
    run(ctx, "priya", "change cancel CHG-3 Not needed")
    clock.advance(minutes=6)  # 09:36: INC-1 has used 36 of its 15 minutes to respond and of its 4 hours to resolve
    return ctx


# ------------------------------------------------------------------------------------------- tests

async def test_every_service_shows_the_state_and_message_status_gives(client, seeded):
    ctx = seeded
    response = await client.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    page = Page(await response.text())

    shown = services_shown(page)
    said = status_lines(run(ctx, "meera", "status"))
    assert list(shown) == [line["id"] for line in said]  # every service of app.yaml, in the same order
    for line in said:
        state, rest = shown[line["id"]]
        assert state == line["state"]
        assert rest.startswith(line["msg"] or "")
    assert shown["payments"] == ("degraded", f"Card payments are slow {SCRIPT} since Mon 02 Mar 2026 09:00 GMT")
    assert shown["vpn"] == ("operational", "")  # never set: operational, with no "since" to claim
    assert page.text_by_id["headline"] == run(ctx, "meera", "status").title == "Some services are affected"


async def test_open_incidents_show_their_clocks_measured_now(client, seeded):
    page = Page(await (await client.get("/")).text())
    [inc1] = page.rows("incidents-table")  # INC-2 is resolved
    assert inc1.id == "incident-INC-1"
    assert inc1.cells[0] == ("INC-1 · P1 Card payments fail for <b>Amex</b> "
                             "Payments Gateway · new · opened Mon 02 Mar 09:00 GMT")
    # Response: 15 minutes, 36 used; resolution: 4 hours, 36 minutes used. The OLA and UC never ran.
    assert inc1.cells[1] == ("SLA SLA-PAY response: late, 240 % used, was due Mon 02 Mar 09:15 GMT "
                             "SLA SLA-PAY resolution: 15 % used, due Mon 02 Mar 13:00 GMT")
    assert page.tables["incidents-table"].caption.startswith("1 open")


async def test_changes_of_the_next_seven_days_that_still_hold_their_window(client, seeded):
    page = Page(await (await client.get("/")).text())
    rows = page.rows("changes-table")
    assert [r.id for r in rows] == ["change-CHG-1"]  # CHG-2 is ten days out, CHG-3 was cancelled
    assert rows[0].cells == ["CHG-1 Patch the mail relays Email and Calendar",
                             "Tue 03 Mar 2026 22:00 – 23:00 GMT", "scheduled"]


async def test_attainment_of_this_month_says_met_or_missed_in_words(client, seeded):
    ctx = seeded
    page = Page(await (await client.get("/")).text())
    assert ("h2", "Attainment, March 2026") in [(f"h{level}", text) for level, text in page.headings]
    rows = page.rows("attainment-table")
    expected = attainment.attainment_data(ctx, None, attainment.parse_period("this-month", ctx.now(), "Europe/London"))
    assert len(rows) == len(expected) and expected
    assert [r.cells for r in rows[:3]] == [  # in `sla`'s order: agreement, metric, priority
        ["SLA-PAY resolution P2 SLA · Retail Operations", "100.0 % met (1 of 1)", "90 %", "met"],
        ["SLA-PAY response P1 SLA · Retail Operations", "0.0 % met (0 of 1)", "95 %", "missed"],
        ["SLA-PAY response P2 SLA · Retail Operations", "100.0 % met (1 of 1)", "95 %", "met"],
    ]
    assert [r.cells[-1] for r in rows] == ["met" if row.ok else "missed" for row in expected]


async def test_status_json_is_the_same_snapshot(client, seeded):
    ctx = seeded
    response = await client.get("/status.json")
    assert response.status == 200
    data = await response.json()
    assert data == plain(status_page.snapshot(ctx))
    assert [(s["id"], s["state"], s["message"]) for s in data["services"]][:2] == [
        ("payments", "degraded", f"Card payments are slow {SCRIPT}"), ("webshop", "operational", "")]
    [incident] = data["incidents"]
    assert [(c["metric"], c["state"], c["late"], c["used"], c["due_at"]) for c in incident["clocks"]] == [
        ("response", "running", True, 240.0, "2026-03-02T09:15:00Z"),
        ("resolution", "running", False, 15.0, "2026-03-02T13:00:00Z")]
    assert [c["id"] for c in data["changes"]] == ["CHG-1"]
    assert data["attainment_period"] == "March 2026" and data["generated_at"] == "2026-03-02T09:36:00Z"


async def test_what_people_typed_is_escaped(client, seeded):
    html = await (await client.get("/")).text()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html and SCRIPT not in html
    assert "&lt;b&gt;Amex&lt;/b&gt;" in html and "<b>Amex" not in html
    page = Page(html)
    assert len(page.scripts) == 1  # the page's own


async def test_the_page_is_accessible_in_structure_and_refreshes_without_reloading(client, seeded):
    response = await client.get("/")
    page = Page(await response.text())
    tags = [t for t, _ in page.tags]
    html_attrs = next(a for t, a in page.tags if t == "html")
    assert html_attrs["lang"] == "en"
    assert any(t == "meta" and a.get("name") == "viewport" and "width=device-width" in a["content"]
               for t, a in page.tags)
    assert not any(t == "meta" and a.get("http-equiv", "").lower() == "refresh" for t, a in page.tags)
    assert all(tags.count(landmark) == 1 for landmark in ("header", "main", "footer"))
    assert page.text_by_id.get("content") and next(a for t, a in page.tags if t == "main")["id"] == "content"
    # Headings in order: one h1, then h2s, none skipped.
    levels = [level for level, _ in page.headings]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:]))
    assert next(text for level, text in page.headings if level == 1) == "svcbot status"
    # Every table has a caption, every header cell a scope, and the four are there.
    assert set(page.tables) == {"services-table", "incidents-table", "changes-table", "attainment-table"}
    assert all(t.caption for t in page.tables.values())
    assert all(a.get("scope") in ("col", "row") for t, a in page.tags if t == "th")
    # Only the page's own script may run, by the nonce the header gives.
    nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"])[1]
    assert next(a for t, a in page.tags if t == "script")["nonce"] == nonce
    # The script fetches the page, replaces <main> and says when it was updated; without it nothing is missing.
    [script] = page.scripts
    assert 'fetch(location.href' in script and 'querySelector("main").replaceChildren' in script
    assert page.text_by_id["updated"] == "Updated 09:36 (Europe/London)"
    assert "hidden" in next(a for t, a in page.tags if a.get("id") == "refresh-note")


async def test_the_refresh_interval_may_be_shortened_within_bounds(client, ctx):
    async def interval(query: str) -> str:
        page = Page(await (await client.get("/" + query)).text())
        return next(a for t, a in page.tags if t == "body")["data-refresh"]

    assert [await interval(q) for q in ("", "?refresh=5", "?refresh=0", "?refresh=soon", "?refresh=99999")] == \
        ["60", "5", "1", "60", "3600"]


async def test_a_quiet_day_says_so_rather_than_showing_empty_tables(client, ctx, clock):
    page = Page(await (await client.get("/")).text())
    assert set(page.tables) == {"services-table", "attainment-table"}  # availability is measured from the 1st
    assert page.text_by_id["headline"] == "All services operational"
    html = await (await client.get("/")).text()
    assert "No open incidents." in html and "No change is planned in the next 7 days." in html
    clock.advance(days=1)
    run(ctx, "arjun", "service set wms maintenance")
    page = Page(await (await client.get("/")).text())
    assert page.text_by_id["headline"] == "Services operational; maintenance under way"
    assert services_shown(page)["wms"] == ("maintenance", "since Tue 03 Mar 2026 09:00 GMT")


def test_an_sla_clock_paused_from_the_start_is_shown_and_requests_are_not_incidents(ctx, clock):
    with ctx.change(Command(actor(ctx, "tom"), "open two tickets")) as work:
        for kind, title in [("incident", "Waiting for the shop's logs"), ("request", "A new card terminal")]:
            ticket = tickets.open_ticket(work, source="api", service_id="payments", priority="P2", title=title,
                                         at=work.now, kind=kind, group="payments-eng", state="awaiting-customer")
            breaches.sync_clocks(work, ticket)
    clock.advance(hours=1)
    [incident] = status_page.snapshot(ctx).incidents
    assert incident.title == "Waiting for the shop's logs"
    [row] = Page(status_page.render(status_page.snapshot(ctx))).rows("incidents-table")
    assert row.cells[1] == ("SLA SLA-PAY response: paused at 0 % used "
                            "SLA SLA-PAY resolution: paused at 0 % used")  # the OLA has not run: left out


def test_open_incidents_beyond_the_first_fifty_are_counted_not_listed(ctx, clock, monkeypatch):
    monkeypatch.setattr(status_page, "INCIDENTS_SHOWN", 2)
    for priority in ("P3", "P1", "P2"):
        run(ctx, "tom", f"incident new payments {priority} Something else")
        clock.advance(minutes=1)
    page = status_page.snapshot(ctx)
    assert [(i.id, i.priority) for i in page.incidents] == [("INC-2", "P1"), ("INC-3", "P2")]
    assert page.incidents_open == 3
    assert "The 2 most urgent of 3 open incidents are listed." in status_page.render(page)


def test_a_deadline_in_summer_time_is_shown_in_summer_time(ctx, clock):
    clock.to(clock() + timedelta(days=30))  # Wed 1 Apr, 09:00 UTC: London is on BST
    run(ctx, "tom", "incident new payments P1 After the clocks went forward")
    page = status_page.snapshot(ctx)
    assert page.incidents[0].clocks[0].due_at.hour == 9  # kept and served in UTC
    [row] = Page(status_page.render(page)).rows("incidents-table")
    assert "response: 0 % used, due Wed 01 Apr 10:15 BST" in row.cells[1]
