"""Service dependencies: app.yaml's ``depends_on`` checked and walked, the dependents told once when a state
moves (through chat, the API's outages and Alertmanager alike), "affected by" in ``status``, ``impact SERVICE``
and a change's "Also carries". Handler tests on the demo configuration with its dependencies: the web shop
needs payments fully and the warehouse partly; the HR portal needs email partly."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import yaml
from sqlalchemy import select

from handlers.core.config_catalogue import Service
from handlers.core.config_loading import ConfigError, parse_config
from handlers.core.context import SYSTEM, Command
from handlers.core.dependencies import DependencyGraph, Reach
from handlers.router import dispatch
from handlers.sla import outages
from handlers.sla.alertmanager import AlertEvent
from storage.models import AuditRecord, Outage, OutboxMessage, ServiceStatus
from tests.conftest import demo_config
from tests.test_handlers import all_text, fields, person, rows, run

SHOP, SHOP_TEAMS = "C0SHOP0001", "19:shop000000000000000000000000000@thread.tacv2"


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(demo_config(dependencies=True), sort_keys=False))
    return path


def notices(ctx) -> list[OutboxMessage]:
    return [r for r in rows(ctx, OutboxMessage, OutboxMessage.id) if r.dedupe_key.startswith("affected:")]


def targets(found) -> list[tuple[str, str]]:
    return sorted((r.target_kind, r.target) for r in found)


# --- app.yaml ---------------------------------------------------------------------------------------

def with_dependencies(**depends_on) -> str:
    cfg = demo_config()
    for service in cfg["services"]:
        if service["id"] in depends_on:
            service["depends_on"] = depends_on[service["id"]]
    return yaml.safe_dump(cfg, sort_keys=False)


def problems_of(**depends_on) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(with_dependencies(**depends_on))
    return raised.value.problems


def test_the_shorthand_and_the_long_form_mean_the_same_and_full_is_the_default():
    cfg = parse_config(with_dependencies(webshop=["payments", {"service": "wms", "impact": "partial"}],
                                         email=[{"service": "vpn"}]))
    assert [(d.service, d.impact) for d in cfg.service("webshop").depends_on] == [("payments", "full"),
                                                                                  ("wms", "partial")]
    assert [(d.service, d.impact) for d in cfg.service("email").depends_on] == [("vpn", "full")]


def test_a_cycle_is_refused_and_named_as_its_path_in_the_file():
    # services: payments[0], webshop[1], wms[2], data-platform[3]
    found = problems_of(webshop=["payments"], payments=["data-platform"], **{"data-platform": ["wms", "webshop"]})
    assert found == [
        "services[0].depends_on[0]: a dependency cycle: payments → data-platform → webshop → payments"]


def test_every_cycle_is_named_not_only_the_first():
    found = problems_of(email=["vpn"], vpn=["email"], wms=["data-platform"], **{"data-platform": ["wms"]})
    assert sorted(found) == ["services[2].depends_on[0]: a dependency cycle: wms → data-platform → wms",
                             "services[4].depends_on[0]: a dependency cycle: email → vpn → email"]


def test_unknown_self_repeated_and_a_wrong_impact_are_named_by_their_path():
    assert problems_of(webshop=["payments", "checkout", "webshop", {"service": "payments", "impact": "partial"}]) == [
        "services[1].depends_on[1]: unknown service 'checkout'",
        "services[1].depends_on[2]: a service cannot depend on itself",
        "services[1].depends_on[3]: 'payments' is already services[1].depends_on[0]"]
    assert problems_of(webshop=[{"service": "payments", "impact": "some"}]) == [
        "services[1].depends_on[0].impact: Input should be 'full' or 'partial'"]


# --- the graph ----------------------------------------------------------------------------------------

def graph(**depends_on) -> DependencyGraph:
    ids = set(depends_on) | {d.split(":")[0] for ds in depends_on.values() for d in ds}
    return DependencyGraph([Service(id=i, name=i.title(), owner="o", tier=1, calendar="c", depends_on=[
        {"service": d.split(":")[0], "impact": d.split(":")[1] if ":" in d else "full"}
        for d in depends_on.get(i, [])]) for i in sorted(ids)])


def test_dependents_are_followed_transitively_fully_only_along_a_path_full_at_every_edge():
    g = graph(webshop=["payments"], mobile=["webshop:partial"], kiosk=["webshop", "payments:partial"],
              reports=["mobile"], payments=["ledger"])
    assert {r.service: (r.impact, r.path) for r in g.dependents("payments")} == {
        "webshop": ("full", ("webshop", "payments")),
        "kiosk": ("full", ("kiosk", "webshop", "payments")),  # its direct edge is partial, through webshop full
        "mobile": ("partial", ("mobile", "webshop", "payments")),
        "reports": ("partial", ("reports", "mobile", "webshop", "payments")),
    }
    assert [r.service for r in g.dependents("ledger")][:1] == ["payments"]
    assert {r.service for r in g.dependents("ledger")} == {"payments", "webshop", "kiosk", "mobile", "reports"}
    assert g.dependencies("reports") == [
        Reach("mobile", "full", ("reports", "mobile")),
        Reach("webshop", "partial", ("reports", "mobile", "webshop")),
        Reach("payments", "partial", ("reports", "mobile", "webshop", "payments")),
        Reach("ledger", "partial", ("reports", "mobile", "webshop", "payments", "ledger"))]
    assert g.dependents("reports") == [] and g.dependencies("ledger") == []


def test_what_a_change_also_carries_leaves_out_its_own_services_and_keeps_the_fuller_impact():
    g = graph(webshop=["payments:partial", "wms"], mobile=["webshop"])
    carried = {r.service: r.impact for r in g.carried(["payments", "wms"])}
    assert carried == {"webshop": "full", "mobile": "full"}
    assert {r.service for r in g.carried(["payments", "webshop"])} == {"mobile"}


# --- the dependents are told ------------------------------------------------------------------------

def test_payments_down_tells_the_web_shop_channel_and_subscribers_once_and_leaves_its_state(ctx, clock):
    assert run(ctx, person(ctx, "lucas"), "subscribe webshop")[1] == "ok"
    assert run(ctx, person(ctx, "sanne"), "subscribe payments")[1] == "ok"
    clock.advance(minutes=5)
    reply, outcome = run(ctx, person(ctx, "tom"), "service set payments major-outage Card payments are down")
    assert outcome == "ok"
    found = notices(ctx)
    assert targets(found) == sorted([("channel", SHOP), ("channel", SHOP_TEAMS), ("person", "U0LUCAS06")])
    assert {r.message["title"] for r in found} == {"🔴 Web Shop is affected: Payments Gateway is in a major outage"}
    assert all(r.message["text"] == "Card payments are down" and not r.message["private"] for r in found)
    assert len({r.dedupe_key for r in found}) == 3
    assert [(s.service_id, s.state) for s in rows(ctx, ServiceStatus)] == [("payments", "major-outage")]
    [told] = [a for a in rows(ctx, AuditRecord) if a.action == "service.dependents_told"]
    assert (told.person_id, told.subject) == ("tom", "service:payments")
    assert told.detail["dependents"] == ["webshop"] and told.detail["channels"] == ["shop"]

    # An update in the same state is announced, but moves nothing for the shop.
    assert run(ctx, person(ctx, "tom"), "service set payments major-outage Still down")[1] == "ok"
    # A worse or milder state is news; so is the recovery.
    assert run(ctx, person(ctx, "tom"), "service set payments degraded Recovering")[1] == "ok"
    assert run(ctx, person(ctx, "tom"), "service set payments operational")[1] == "ok"
    titles = [r.message["title"] for r in notices(ctx) if r.target == SHOP]
    assert titles == ["🔴 Web Shop is affected: Payments Gateway is in a major outage",
                      "🟡 Web Shop is affected: Payments Gateway is now degraded",
                      "🟢 Web Shop: Payments Gateway is operational again"]


def test_a_retried_command_tells_nobody_twice(ctx):
    tom = person(ctx, "tom")
    assert dispatch(ctx, Command(tom, "service set payments major-outage", delivery_key="evt-1"))[1] == "ok"
    before = rows(ctx, OutboxMessage, OutboxMessage.id)
    assert dispatch(ctx, Command(tom, "service set payments major-outage", delivery_key="evt-1"))[1] == "duplicate"
    assert [r.dedupe_key for r in rows(ctx, OutboxMessage, OutboxMessage.id)] == [r.dedupe_key for r in before]
    assert len([r for r in before if r.dedupe_key.startswith("affected:")]) == 2


def test_a_partial_dependency_is_told_it_is_partly_affected(ctx):
    assert run(ctx, person(ctx, "arjun"), "service set wms partial-outage Picking is down")[1] == "ok"
    assert {r.message["title"] for r in notices(ctx) if r.target == SHOP} == {
        "🟠 Web Shop is partly affected: Warehouse Management is in a partial outage"}


def test_a_service_nothing_depends_on_tells_nobody_more(ctx):
    assert run(ctx, person(ctx, "meera"), "service set data-platform major-outage")[1] == "ok"
    assert notices(ctx) == []
    assert not [a for a in rows(ctx, AuditRecord) if a.action == "service.dependents_told"]


def alert(status: str, start, end=None, fingerprint="5d3a8f1c2b9e0471") -> AlertEvent:
    return AlertEvent(fingerprint=fingerprint, status=status, service="payments", starts_at=start, ends_at=end,
                      summary="Payments: error rate above 5%", severity="page", labels={"alertname": "HighErrorRate"},
                      generator_url=None)


def test_an_alertmanager_alert_tells_the_dependents_once_and_its_resolution_tells_them_again(ctx, clock):
    start = clock() - timedelta(minutes=3)
    assert outages.apply_alerts(ctx, [alert("firing", start)], SYSTEM)["opened"] == 1
    assert outages.apply_alerts(ctx, [alert("firing", start)], SYSTEM)["repeated"] == 1  # resent: nothing new
    found = notices(ctx)
    assert targets(found) == sorted([("channel", SHOP), ("channel", SHOP_TEAMS)])
    assert found[0].message["title"] == "🔴 Web Shop is affected: Payments Gateway is in a major outage"
    assert found[0].message["text"] == "Payments: error rate above 5%"
    assert rows(ctx, ServiceStatus) == []  # an alert declares nothing, of payments or of the shop

    clock.advance(minutes=10)
    outages.apply_alerts(ctx, [alert("resolved", start, clock() - timedelta(minutes=1))], SYSTEM)
    outages.apply_alerts(ctx, [alert("resolved", start, clock() - timedelta(minutes=1))], SYSTEM)
    assert [r.message["title"] for r in notices(ctx) if r.target == SHOP] == [
        "🔴 Web Shop is affected: Payments Gateway is in a major outage",
        "🟢 Web Shop: Payments Gateway is operational again"]


def test_an_alert_ending_while_the_owner_still_declares_an_outage_is_no_recovery(ctx, clock):
    start = clock() - timedelta(minutes=3)
    outages.apply_alerts(ctx, [alert("firing", start)], SYSTEM)
    assert run(ctx, person(ctx, "tom"), "service set payments major-outage Card payments are down")[1] == "ok"
    clock.advance(minutes=10)
    outages.apply_alerts(ctx, [alert("resolved", start, clock())], SYSTEM)
    assert len([r for r in notices(ctx) if r.target == SHOP]) == 1  # told when the alert fired, only


# --- status, impact, changes ------------------------------------------------------------------------

def test_status_shows_what_a_service_depends_on_and_what_affects_it_now(ctx):
    assert "Affected by" not in fields(run(ctx, person(ctx, "grace"), "status webshop")[0])
    assert run(ctx, person(ctx, "tom"), "service set payments major-outage")[1] == "ok"
    assert run(ctx, person(ctx, "arjun"), "service set wms degraded")[1] == "ok"
    shown = fields(run(ctx, person(ctx, "grace"), "status webshop")[0])
    assert shown["Depends on"] == "Payments Gateway, Warehouse Management (partly)"
    assert shown["Affected by"] == "Payments Gateway (major outage), Warehouse Management (degraded, partly)"
    assert shown["Status"] == "🟢 operational"
    overview = run(ctx, person(ctx, "grace"), "status")[0]
    marked = {s.text.split("*")[1]: [f.value for f in s.fields] for s in overview.sections}
    assert marked["Web Shop"] == ["Payments Gateway (major outage), Warehouse Management (degraded, partly)"]
    assert marked["Payments Gateway"] == [] and marked["HR Self-Service Portal"] == []


def test_impact_names_the_dependents_their_agreements_with_attainment_and_who_would_hear(ctx, clock):
    assert run(ctx, person(ctx, "lucas"), "subscribe webshop")[1] == "ok"
    assert run(ctx, person(ctx, "tom"), "incident new webshop P1 Checkout fails")[1] == "ok"
    clock.advance(hours=3)
    assert run(ctx, person(ctx, "tom"), "incident resolve INC-1")[1] == "ok"  # late: 2 hours allowed
    reply, outcome = run(ctx, person(ctx, "meera"), "impact payments")
    assert outcome == "ok"
    assert reply.title == "If Payments Gateway fails: 1 service depends on it"
    assert reply.text == "1 fully, 0 partly · 4 agreements · 2 channels · 3 people"  # Tom, Grace, Lucas
    text = all_text(reply)
    assert "*Web Shop* (`webshop`, tier 1) — fully" in text
    shop = next(s for s in reply.sections if "SLA-SHOP" in s.title)
    assert shop.title == "SLA SLA-SHOP — E-commerce · Web Shop"
    assert "❌ resolution P1 within 2 hours, goal 95 %: 0.0 % met of 1" in shop.text
    assert "✅ availability, goal 99.95 %: 100.000 % available" in shop.text
    assert "UC UC-CARDLINK — cardlink · Payments Gateway" in [s.title for s in reply.sections]
    who = fields(reply)
    assert who["Channels"] == "#payments, #shop" and who["Owners"] == "Tom Hughes, Grace Okafor"
    assert who["Subscribers"] == "1"

    partly = run(ctx, person(ctx, "meera"), "impact wms")[0]
    assert partly.text.startswith("0 fully, 1 partly")
    alone = run(ctx, person(ctx, "meera"), "impact data-platform")[0]
    assert alone.title == "If Data Platform fails: nothing else depends on it"
    wrong, outcome = run(ctx, person(ctx, "meera"), "impact checkout")
    assert outcome == "user_error" and "There is no service 'checkout'" in wrong.text


def test_a_change_announcement_names_the_services_its_own_carry(ctx):
    reply, outcome = run(ctx, person(ctx, "priya"), 'change new title="Rotate the card keys" services=payments '
                         'risk=low start="tomorrow 22:00" end="tomorrow 23:00" backout="Restore the old keys"')
    assert outcome == "ok"
    assert fields(reply)["Also carries"] == "Web Shop"
    announced = [r for r in rows(ctx, OutboxMessage) if ":announce:" in r.dedupe_key and r.anchor_key is None]
    assert len(announced) == 4  # it-announce and payments, on Slack and Teams
    for r in announced:
        assert {"label": "Also carries", "value": "Web Shop"} in [f for s in r.message["sections"] for f in s["fields"]]


def test_without_dependencies_nobody_more_is_told_and_nothing_is_carried(runtime, ctx):
    ctx.config = parse_config(yaml.safe_dump(demo_config(), sort_keys=False))
    assert run(ctx, person(ctx, "tom"), "service set payments major-outage")[1] == "ok"
    assert notices(ctx) == []
    reply = run(ctx, person(ctx, "priya"), 'change new title="Rotate the card keys" services=payments risk=low '
                'start="tomorrow 22:00" end="tomorrow 23:00" backout="Restore the old keys"')[0]
    assert "Also carries" not in fields(reply)
    with ctx.sessions() as s:
        assert s.scalar(select(AuditRecord.id).where(AuditRecord.action == "service.dependents_told")) is None


def test_a_kept_status_stops_holding_when_a_planned_window_of_a_service_others_need_begins(runtime, clock):
    """`status` is kept in memory at the store's version; a maintenance window planned ahead begins with
    nothing written, so the kept answer holds only until then, and again only until it ends."""
    with runtime.ctx.sessions() as s, s.begin():
        s.add(Outage(service_id="payments", kind="maintenance", source="api", fingerprint="planned",
                     started_at=clock() + timedelta(hours=1), ended_at=clock() + timedelta(hours=2)))

    def shop_line():
        reply = asyncio.run(runtime.execute("slack", "U0TOM0002", "status")).reply
        return next(s for s in reply.sections if "*Web Shop*" in s.text), reply

    (before, kept) = shop_line()
    assert before.fields == [] and shop_line()[1] is kept  # asked again: the answer kept
    clock.advance(hours=1, minutes=1)
    during, _ = shop_line()
    assert [f.value for f in during.fields] == ["Payments Gateway (maintenance)"]
    clock.advance(hours=1)
    assert shop_line()[0].fields == []
