"""Suppliers (handlers/suppliers): the scorecard, service credits, claiming and waiving them, the cost of a
service line, the scorecard in the API and as a review pack, and the commercial terms of app.yaml.

The history is built through the real commands of the demo app.yaml, in the month two months before today
(in the bot's zone, Europe/London), on the test clock. What the hand computations rely on (app.yaml):
UC-CARDLINK (payments, supplier cardlink, calendar "always"): response P1 30 min (goal 99 %), resolution P1
2 h (goal 95 %); its terms: a charge of EUR 12,500.00 a month, EUR 500.00 per breached resolution P1 clock,
2 % of the charge per point of response P1 attainment below goal, capped at 20 % of the charge.

- INC-1 payments P1: opened day 10 10:00 UTC, waits on cardlink 10:10–12:40 (2 h 30), resolved 13:00 — both
  UC clocks breach (the supplier moved it on after 2 h 30 > 30 min; 2 h 30 of waiting > 2 h).
- INC-2 payments P1: opened day 12 09:00, waits 09:05–09:20 (15 min), resolved 10:00 — both met.
- INC-3 payments P3: waits day 20 10:00–14:00 (4 h); P3 has no UC target, but the waiting counts.
- INC-4 payments P1: opened day 27 09:00, waits on cardlink from 09:30 and is still waiting when the month
  ends — both UC clocks run past due: breached.
"""
from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select

from bot import supplier_export
from handlers.core.config_catalogue import Agreement
from handlers.core.config_loading import ConfigError, parse_config
from handlers.core.context import UserError
from handlers.reporting import report_figures, supplier_charts
from handlers.sla import attainment
from handlers.suppliers import cost, credits, scorecard
from storage.models import AuditRecord, CreditDecision
from tests.conftest import demo_config
from tests.test_surveys import all_text, ok, refused

UTC = timezone.utc
LONDON = ZoneInfo("Europe/London")


def month_two_back() -> tuple[int, int]:
    today = datetime.now(LONDON).date()
    index = today.year * 12 + today.month - 1 - 2
    return index // 12, index % 12 + 1


YEAR, MONTH = month_two_back()
KEY = f"{YEAR:04d}-{MONTH:02d}"
START = datetime(YEAR, MONTH, 1, tzinfo=LONDON).astimezone(UTC)
END = datetime(YEAR + (MONTH == 12), MONTH % 12 + 1, 1, tzinfo=LONDON).astimezone(UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(YEAR, MONTH, day, hour, minute, tzinfo=UTC)


def seed(ctx, clock) -> None:
    steps = [
        (at(10, 10), "tom", "incident new payments P1 Card payments time out"),  # INC-1
        (at(10, 10, 10), "tom", "incident vendor INC-1 cardlink"),
        (at(10, 12, 40), "tom", "incident resume INC-1"),
        (at(10, 13), "tom", "incident resolve INC-1"),
        (at(12, 9), "tom", "incident new payments P1 Refunds fail"),  # INC-2
        (at(12, 9, 5), "tom", "incident vendor INC-2 cardlink"),
        (at(12, 9, 20), "tom", "incident resume INC-2"),
        (at(12, 10), "tom", "incident resolve INC-2"),
        (at(20, 9), "tom", "incident new payments P3 Settlement report late"),  # INC-3
        (at(20, 10), "tom", "incident vendor INC-3 cardlink"),
        (at(20, 14), "tom", "incident resume INC-3"),
        (at(27, 9), "tom", "incident new payments P1 Amex declined"),  # INC-4
        (at(27, 9, 30), "tom", "incident vendor INC-4 cardlink"),
    ]
    for when, who, words in steps:
        clock.to(when)
        ok(ctx, who, words)
    clock.to(END + timedelta(days=3, hours=5))  # a few days into the next month


@pytest.fixture
def seeded(ctx, clock):
    seed(ctx, clock)
    return ctx


@pytest.fixture
def after(ctx, clock):
    """No history: only the clock a few days past the month."""
    clock.to(END + timedelta(days=3, hours=5))
    return ctx


@functools.cache
def demo() -> SimpleNamespace:
    """What ``credits.statement`` reads of a context (the configuration), without a store."""
    return SimpleNamespace(config=parse_config(yaml.safe_dump(demo_config(), sort_keys=False)))


def card_of(ctx, month: str = KEY) -> scorecard.Scorecard:
    with ctx.reader() as s:
        return scorecard.scorecard(ctx, s, "cardlink", month)


# ---- the scorecard -------------------------------------------------------------------------------------------

def test_the_scorecard_shows_targets_breaches_waiting_and_the_trend(seeded, clock):
    card = card_of(seeded)
    assert (card.supplier, card.location, card.contracts, card.complete) == ("cardlink", "Dublin", ["UC-CARDLINK"],
                                                                             True)
    got = {(t.metric, t.priority): (t.met, t.measured, t.ok) for t in card.targets}
    assert got == {("response", "P1"): (1, 3, False), ("resolution", "P1"): (1, 3, False)}
    assert sorted((b.ticket_id, b.metric, b.running) for b in card.breaches) == [
        (1, "resolution", False), (1, "response", False), (4, "resolution", True), (4, "response", True)]
    still_waiting_in_month = (END - at(27, 9, 30)).total_seconds()
    assert card.waited_seconds == 2.5 * 3600 + 15 * 60 + 4 * 3600 + still_waiting_in_month
    assert card.waited_tickets == 4
    assert [(w.ticket_id, w.since, w.waited_seconds) for w in card.still_waiting] == [
        (4, at(27, 9, 30), still_waiting_in_month)]
    assert [m.month for m in card.trend][-1] == KEY and len(card.trend) == 6
    last = card.trend[-1]
    assert (last.clocks_met, last.clocks, last.breaches, last.waited_seconds) == (2, 6, 4, card.waited_seconds)
    assert all(m.clocks == 0 and m.waited_seconds == 0 for m in card.trend[:-1])
    # This month so far: INC-4 still waits, now measured up to now.
    now_card = card_of(seeded, "this-month")
    assert not now_card.complete
    assert [(w.ticket_id, w.waited_seconds) for w in now_card.still_waiting] == [
        (4, (clock() - at(27, 9, 30)).total_seconds())]


def answer(ctx, who: str, ticket: int, value: int) -> None:
    """Answer the ticket's after-ticket survey (payments asks two hours after the resolution)."""
    from handlers.surveys import asking
    from storage.models import Survey
    asking.sweep(ctx)
    with ctx.sessions() as s:
        survey_id = s.scalar(select(Survey.id).where(Survey.ticket_id == ticket))
    ok(ctx, who, f"survey answer SRV-{survey_id} {value}")


def test_the_satisfaction_of_tickets_it_touched_is_their_after_ticket_answers(seeded, clock):
    clock.to(END + timedelta(days=3, hours=6))
    ok(seeded, "tom", "incident new payments P1 One more")  # INC-5: waits on cardlink
    ok(seeded, "tom", "incident vendor INC-5 cardlink")
    ok(seeded, "tom", "incident new payments P1 Not theirs")  # INC-6: never waits on cardlink
    clock.advance(minutes=20)
    ok(seeded, "tom", "incident resolve INC-5")
    ok(seeded, "tom", "incident resolve INC-6")
    clock.advance(hours=3)
    answer(seeded, "tom", 5, 2)
    answer(seeded, "tom", 6, 5)
    card = card_of(seeded, "this-month")
    assert (card.answers, card.satisfied, card.csat) == (1, 0, 0.0)
    assert card_of(seeded).answers == 0  # none was given in the month before


def test_supplier_in_chat_and_the_list(seeded):
    text = all_text(ok(seeded, "meera", f"supplier cardlink {KEY}"))
    assert "Supplier scorecard: CardLink Acquiring Ltd · Dublin" in text
    assert "INC-4 P1 payments · UC-CARDLINK resolution" in text and "(still running)" in text
    assert "EUR 2,500.00" in text and "rounded half up" in text
    listed = all_text(ok(seeded, "meera", f"supplier list {KEY}"))
    assert "*cardlink* CardLink Acquiring Ltd (Dublin)" in listed and "4 breaches" in listed
    assert "1 waiting now" in listed and "cloudhost" in listed
    for words, message in [("supplier nosuch", "There is no supplier 'nosuch'. Suppliers: cardlink, cloudhost"),
                           ("supplier cardlink 2999-01", "has not begun yet"),
                           ("supplier cardlink last-month extra", "Use `supplier SUPPLIER [MONTH]`")]:
        assert message in refused(seeded, "meera", words)


# ---- credits -------------------------------------------------------------------------------------------------

def test_the_month_s_credits_follow_the_terms_and_the_cap(seeded):
    card = card_of(seeded)
    [s] = card.credits
    per_breach, per_point = s.lines
    assert (per_breach.target, per_breach.amount) == ("resolution P1", Decimal("1000.00"))  # 2 breaches × 500
    # response P1: 1 of 3 met = 33.33… %, 65.66… points below 99 %: 12,500 × 2 % × 65.66… = 16,416.666…
    expected = (Decimal(12500) * Decimal(2) / 100 * (Decimal(99) - Decimal(100) / 3)).quantize(Decimal("0.01"))
    assert per_point.amount == expected == Decimal("16416.67")
    assert (s.before_cap, s.cap, s.due, s.capped) == (expected + 1000, Decimal("2500.00"), Decimal("2500.00"), True)
    assert credits.summary(s) == "EUR 2,500.00, 2 breaches of resolution P1, response P1 below goal (capped)"
    assert [m.credits_due for m in card.trend][-1] == Decimal("2500.00")


def terms(**commercial) -> Agreement:
    return Agreement(id="UC-X", kind="uc", service="payments", party="cardlink", underpins="SLA-PAY",
                     targets=[{"metric": "response", "priority": "P1", "within": "30 min", "goal": 95},
                              {"metric": "resolution", "within": "2 hours", "goal": 90}],
                     commercial=commercial)


def rows(*counts) -> list:
    return [attainment.TargetAttainment("UC-X", "uc", "cardlink", metric, priority, None, measured, met,
                                        100 * met / measured, None) for metric, priority, met, measured in counts]


@pytest.mark.parametrize("charge, currency, percent, met, measured, due", [
    ("1000.00", "EUR", "1.5", 187, 200, "22.50"),  # 93.5 %: 1.5 points × 1.5 % × 1,000
    ("12.50", "EUR", "1", 94, 100, "0.13"),  # 0.125 rounds half up, not to even
    ("1010", "JPY", "5", 94, 100, "51"),  # 50.5 yen: no minor unit
    ("1001", "JPY", "5", 94, 100, "50"),  # 50.05 yen
    ("100.000", "BHD", "1", 2, 3, "28.333"),  # three decimals; 28.333… points × 1 % × 100
    ("500.00", "EUR", "3", 96, 100, "0.00"),  # above goal: nothing
])
def test_percent_per_point_is_decimal_and_rounded_half_up_to_the_minor_unit(charge, currency, percent, met,
                                                                           measured, due):
    agreement = terms(charge=charge, currency=currency,
                      rules=[{"metric": "response", "priority": "P1", "percent_per_point": percent}])
    s = credits.statement(demo(), agreement, KEY, rows(("response", "P1", met, measured)))
    assert s.due == Decimal(due) and str(s.due) == due


def test_per_breach_counts_every_priority_when_the_rule_names_none_and_the_cap_bounds_it():
    ctx = demo()
    agreement = terms(charge="2000.00", currency="GBP", rules=[{"metric": "resolution", "per_breach": "150.00"}],
                      cap={"amount": "400.00"})
    s = credits.statement(ctx, agreement, KEY, rows(("resolution", "P1", 3, 4), ("resolution", "P3", 5, 7),
                                                    ("response", "P1", 0, 9)))
    assert s.lines[0].working == "3 breaches (of 11 decided) × GBP 150.00"
    assert (s.before_cap, s.due, s.capped) == (Decimal("450.00"), Decimal("400.00"), True)
    none = credits.statement(ctx, agreement, KEY, [])
    assert (none.due, none.lines[0].working) == (Decimal("0.00"), "0 breaches (of 0 decided) × GBP 150.00")


# ---- claiming and waiving ------------------------------------------------------------------------------------

def audits(ctx) -> list[tuple]:
    with ctx.sessions() as s:
        return s.execute(select(AuditRecord.person_id, AuditRecord.action, AuditRecord.detail)
                         .where(AuditRecord.action.like("supplier.%")).order_by(AuditRecord.id)).all()


def decisions(ctx) -> list[tuple]:
    with ctx.sessions() as s:
        return s.execute(select(CreditDecision.agreement_id, CreditDecision.month, CreditDecision.status,
                                CreditDecision.amount, CreditDecision.note, CreditDecision.decided_by)).all()


def test_only_a_service_manager_claims_and_the_same_claim_again_changes_nothing(seeded):
    words = f'supplier claim cardlink {KEY} note="Credit note CN-2291 requested"'
    assert "Only a service manager can claim" in refused(seeded, "tom", words, outcome="refused")
    assert decisions(seeded) == [] and audits(seeded) == []
    reply = ok(seeded, "priya", words)
    assert "UC-CARDLINK: EUR 2,500.00 claimed — Credit note CN-2291 requested" in all_text(reply)
    assert decisions(seeded) == [("UC-CARDLINK", KEY, "claimed", "2500.00", "Credit note CN-2291 requested", "priya")]
    [(who, action, detail)] = audits(seeded)
    assert (who, action, detail["amount"], detail["replaces"]) == ("priya", "supplier.credits.claim", "2500.00", None)
    assert "Already claimed" in all_text(ok(seeded, "priya", words))
    assert len(audits(seeded)) == 1
    # Waived instead: the decision is replaced, and the audit keeps both.
    ok(seeded, "priya", f"supplier waive cardlink {KEY} Goodwill after the joint review")
    assert decisions(seeded)[0][2:5] == ("waived", "2500.00", "Goodwill after the joint review")
    assert audits(seeded)[-1][2]["replaces"]["status"] == "claimed"
    card = card_of(seeded)
    assert card.credits[0].decision.status == "waived" and card.credits[0].decision.by_name == "Priya Nair"
    assert "Waived by Priya Nair" in all_text(ok(seeded, "meera", f"supplier cardlink {KEY}"))


@pytest.mark.parametrize("words, message", [
    ("supplier claim cardlink", "Say the supplier, the month and a note"),
    (f"supplier claim cardlink {KEY}", "Say why in a note"),
    ("supplier claim cardlink this-month note=x", "is not over yet"),
    (f"supplier claim cloudhost {KEY} note=x", "has no contract with commercial terms"),
    (f"supplier waive nosuch {KEY} note=x", "There is no supplier 'nosuch'"),
])
def test_every_wrong_claim_says_why_and_changes_nothing(after, words, message):
    assert message in refused(after, "priya", words)
    assert decisions(after) == [] and audits(after) == []


def test_the_gdpr_export_lists_the_decisions_a_person_made(after):
    from handlers import gdpr
    ok(after, "priya", f"supplier claim cardlink {KEY} note=CN-1")  # nothing due: EUR 0.00 claimed
    [decision] = gdpr.export(after, "priya")["supplier_credit_decisions"]
    assert (decision["agreement"], decision["month"], decision["status"]) == ("UC-CARDLINK", KEY, "claimed")
    assert gdpr.export(after, "tom")["supplier_credit_decisions"] == []


# ---- the monthly report, the API and the pack -----------------------------------------------------------------

def test_the_monthly_report_shows_credits_due_and_the_economics(seeded):
    import holidays
    report = report_figures.report_data(seeded, "payments", KEY)
    [s] = report.credits
    assert s.due == Decimal("2500.00")
    text = all_text(ok(seeded, "priya", f"report payments {KEY}"))
    month_name = datetime(YEAR, MONTH, 1).strftime("%B %Y")
    assert f"credits due from CardLink Acquiring Ltd for {month_name} under UC-CARDLINK: EUR 2,500.00" in text
    [e] = report.economics
    # The london calendar: Mon–Thu 08:00–18:00, Fri 08:00–17:00; English bank holidays and its closures closed.
    bank = set(holidays.country_holidays("GB", subdiv="ENG", years=YEAR))
    bank |= {c["date"] for c in demo_config()["calendars"]["london"]["closures"]}
    days = [START.astimezone(LONDON).date() + timedelta(days=n) for n in range((END - START).days + 1)]
    hours = sum({0: 10, 1: 10, 2: 10, 3: 10, 4: 9}.get(d.weekday(), 0) for d in days
                if d.month == MONTH and d not in bank)
    total = Decimal("57200.00")  # 38,000 + 2,500 + 4,200 + 12,500
    assert (e.total, e.resolved, e.agreed_hours) == (total, 2, Decimal(hours))
    assert e.per_ticket == Decimal("28600.00") and e.per_hour == (total / hours).quantize(Decimal("0.01"))
    assert (e.clocks_met, e.clocks) == tuple(  # SLA-PAY's ticket clocks of the month, as attainment counts them
        sum(x) for x in zip(*[(r.met, r.measured) for r in attainment.attainment_data(
            seeded, "payments", attainment.parse_period(KEY, seeded.now(), "Europe/London"))
            if isinstance(r, attainment.TargetAttainment) and r.agreement == "SLA-PAY"]))
    assert "Service delivery economics" in text and "EUR 28,600.00 per ticket" in text
    assert json.loads(json.dumps(report.to_dict()))["credits"][0]["due"] == "2500.00"
    from bot import report_export
    page = report_export.html(report, [])
    assert "Service delivery economics" in page and "EUR 28,600.00" in page and "EUR 2,500.00" in page
    plain = report_export.pdf(report, [], compress=False)
    assert b"Service delivery economics" in plain and b"EUR 2,500.00" in plain


def test_the_review_pack_is_html_or_pdf_with_the_numbers_and_two_charts(seeded, tmp_path, monkeypatch, config_file,
                                                                      database_url, capsys):
    from bot import cli
    card = card_of(seeded)
    images = supplier_charts.charts(card)
    assert [i.name for i in images] == [f"uc-clocks-cardlink-{KEY}.png", f"waiting-cardlink-{KEY}.png"]
    page = supplier_export.html(card, images)
    assert "EUR 2,500.00" in page and "INC-4 P1 · payments: Amex declined" in page and "<script" not in page
    assert page.count("data:image/png;base64,") == 2
    plain = supplier_export.pdf(card, images, compress=False)
    assert plain.startswith(b"%PDF-") and plain.count(b"/Subtype /Image") == 2
    monkeypatch.setenv("SVCBOT_DATABASE_URL", database_url)
    out = tmp_path / "cardlink.html"
    assert cli.main(["--config", str(config_file), "supplier-pack", "cardlink", "--month", KEY, "--out", str(out)]) == 0
    assert "Supplier scorecard: CardLink Acquiring Ltd" in out.read_text()
    assert cli.main(["--config", str(config_file), "supplier-pack", "nosuch"]) == 2
    assert "There is no supplier 'nosuch'" in capsys.readouterr().err


async def test_the_api_serves_the_scorecard_as_data(seeded, runtime, monkeypatch):
    from aiohttp.test_utils import TestClient, TestServer

    from bot.server import build_app
    monkeypatch.setenv("SVCBOT_API_TOKEN", "svc_test_suppliers_0123456789")
    app = build_app(runtime)
    app.on_startup.clear()
    app.on_cleanup.clear()
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        auth = {"Authorization": "Bearer svc_test_suppliers_0123456789"}
        response = await client.get(f"/api/v1/suppliers/cardlink/scorecard?month={KEY}", headers=auth)
        data = await response.json()
        assert response.status == 200, data
        assert data["credits"][0]["due"] == "2500.00" and data["credits"][0]["capped"] is True
        assert [(t["metric"], t["met"], t["measured"]) for t in data["targets"]] == [("resolution", 1, 3),
                                                                                    ("response", 1, 3)]
        from bot import api as api_module
        assert api_module.check({"$ref": "#/components/schemas/SupplierScorecard"}, data, "(answer)") == []
        listed = await (await client.get(f"/api/v1/suppliers?month={KEY}", headers=auth)).json()
        assert api_module.check({"$ref": "#/components/schemas/SupplierList"}, listed, "(answer)") == []
        missing = await client.get("/api/v1/suppliers/nosuch/scorecard", headers=auth)
        assert missing.status == 404
        bad = await client.get("/api/v1/suppliers/cardlink/scorecard?month=2999-01", headers=auth)
        assert bad.status == 400 and "has not begun yet" in (await bad.json())["problems"][0]
    finally:
        await client.close()


# ---- app.yaml ------------------------------------------------------------------------------------------------

def problems_of(mutate) -> list[str]:
    cfg = demo_config()
    mutate(cfg)
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump(cfg, sort_keys=False))
    return caught.value.problems


def uc(cfg) -> dict:
    return next(a for a in cfg["agreements"] if a["id"] == "UC-CARDLINK")


@pytest.mark.parametrize("mutate, problem", [
    (lambda c: uc(c)["commercial"].update(currency="EUROS"),
     "agreements[2].commercial.currency: 'EUROS' is not an ISO 4217 currency code"),
    (lambda c: uc(c)["commercial"].update(charge="12500.005"),
     "agreements[2].commercial: 12500.005 has more decimal places than EUR's 2"),
    (lambda c: uc(c)["commercial"].update(charge="lots"),
     "agreements[2].commercial.charge: 'lots' is not an amount like 1250.00"),
    (lambda c: uc(c)["commercial"]["rules"].append({"metric": "resolution", "priority": "P2", "per_breach": 10}),
     "agreements[2].commercial.rules[2]: UC-CARDLINK has no resolution P2 target"),
    (lambda c: uc(c)["commercial"]["rules"].append({"metric": "resolution", "per_breach": 10,
                                                    "percent_per_point": 1}),
     "agreements[2].commercial.rules[2]: give either percent_per_point"),
    (lambda c: uc(c)["commercial"].update(cap={"percent": 120}),
     "agreements[2].commercial.cap.percent: Input should be less than or equal to 100"),
    (lambda c: c["agreements"][0].update(commercial={"charge": 1, "currency": "EUR"}),
     "agreements[0].commercial: commercial terms belong to an underpinning contract (kind: uc), not to an SLA"),
    (lambda c: c["services"][0]["cost"].update(people=-5),
     "services[0].cost: people: not below zero"),
    (lambda c: c["services"][0]["cost"].update(travel=5), "services[0].cost.travel: unknown key"),
])
def test_commercial_terms_and_costs_in_app_yaml_are_checked_by_their_path(mutate, problem):
    found = problems_of(mutate)
    assert any(p.startswith(problem) for p in found), found


def test_money_in_app_yaml_is_read_as_the_digits_written():
    cfg = parse_config(yaml.safe_dump(demo_config(), sort_keys=False))
    terms_ = next(a for a in cfg.agreements if a.id == "UC-CARDLINK").commercial
    assert terms_.charge == Decimal("12500.0") and isinstance(terms_.rules[0].per_breach, Decimal)
    assert cfg.service("payments").cost.total == Decimal("57200.0")
    with pytest.raises(UserError):
        scorecard.find_supplier(type("C", (), {"config": cfg})(), "payments-eng")  # an internal team
    assert cost.ServiceEconomics.__dataclass_fields__.keys() >= {"per_ticket", "per_hour", "agreed_hours"}
