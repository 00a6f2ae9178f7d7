"""Service credits on the real ServiceNow log (shared/data/servicenow-incident-log, read in place): the
incidents that ever waited on a vendor are imported into a service desk whose supplier holds a UC with
commercial terms; the month with the most UC clocks gives credits that the test works out by hand from the
stored clocks, and a time waited that it works out from the stored events."""
from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select

from handlers.sla import attainment
from handlers.suppliers import credits, scorecard
from tests.conftest import SHARED, config_from, demo_config

SNOW = SHARED / "data" / "servicenow-incident-log" / "incident_event_log.zip"


def desk_config() -> dict:
    """The demo plus the log's service desk, which waits on one supplier (the log names none on most waits:
    those count for the service's supplier), under a UC with commercial terms in Brazilian reais."""
    cfg = demo_config()
    cfg["calendars"]["servicedesk"] = {
        "timezone": "America/Sao_Paulo", "hours": {d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": [{"country": "BR"}]}
    cfg["groups"].append({"id": "deskvendor", "name": "Desk Vendor", "kind": "supplier", "location": "São Paulo",
                          "calendar": "always"})
    cfg["services"].append({"id": "servicedesk", "name": "Service Desk", "owner": "priya", "tier": 2, "channel": "ops",
                            "calendar": "servicedesk", "suppliers": ["deskvendor"]})
    cfg["agreements"] += [
        {"id": "SLA-DESK", "kind": "sla", "service": "servicedesk", "party": "All staff",
         "targets": [{"metric": "resolution", "within": "5 business days", "goal": 80}]},
        {"id": "UC-DESK", "kind": "uc", "service": "servicedesk", "party": "deskvendor", "underpins": "SLA-DESK",
         "calendar": "always",
         "targets": [{"metric": "response", "within": "4 hours", "goal": 90},
                     {"metric": "resolution", "within": "24 hours", "goal": 85}],
         "commercial": {"charge": "8000.00", "currency": "BRL", "cap": {"percent": 30},
                        "rules": [{"metric": "resolution", "per_breach": "120.00"},
                                  {"metric": "response", "percent_per_point": "1.5"}]}}]
    return cfg


def vendor_slice(path) -> int:
    """The rows of every incident of the log that ever waited on a vendor, as a CSV of its own. The file has
    one row a line, its number and state first and never quoted, so lines are picked as bytes (the csv
    module takes some seconds over the whole log)."""
    import zipfile
    with zipfile.ZipFile(SNOW) as z:
        lines = z.read("incident_event_log.csv").split(b"\n")
    assert lines[0].startswith(b"number,incident_state,")
    waited = {line.split(b",", 1)[0] for line in lines[1:] if line.split(b",", 2)[1:2] == [b"Awaiting Vendor"]}
    (path).write_bytes(b"\n".join([lines[0]] + [line for line in lines[1:] if line.split(b",", 1)[0] in waited]))
    return len(waited)


@pytest.mark.skipif(not SNOW.exists(), reason=f"{SNOW} is not there")
def test_a_month_of_the_real_log_gives_the_credits_its_stored_clocks_give_by_hand(database_url, tmp_path, clock):
    from bot.runtime import Runtime
    from handlers.imports.servicenow import import_servicenow
    from storage.models import SlaClock, Ticket, TicketEvent
    config = tmp_path / "desk.yaml"
    config.write_text(yaml.safe_dump(desk_config(), sort_keys=False))
    rt = Runtime(config_from(config), database_url)
    ctx = rt.ctx
    ctx.now = clock
    try:
        assert vendor_slice(tmp_path / "vendor.csv") > 200
        import_servicenow(ctx, tmp_path / "vendor.csv", "servicedesk")
        zone = ZoneInfo(ctx.config.bot.timezone)
        with ctx.sessions() as s:
            starts = s.scalars(select(SlaClock.started_at).where(SlaClock.agreement_id == "UC-DESK")).all()
        # The month in which the most UC clocks started.
        month = max(sorted({t.astimezone(zone).strftime("%Y-%m") for t in starts}),
                    key=lambda m: sum(t.astimezone(zone).strftime("%Y-%m") == m for t in starts))
        period = attainment.parse_period(month, ctx.now(), ctx.config.bot.timezone)
        with ctx.reader() as s:
            [got] = credits.month_statements(ctx, s, period, month, "deskvendor")
            card = scorecard.scorecard(ctx, s, "deskvendor", month)
            clocks = s.scalars(select(SlaClock).where(SlaClock.agreement_id == "UC-DESK",
                                                      SlaClock.started_at >= period.start,
                                                      SlaClock.started_at < period.end)).all()
            events = s.execute(select(TicketEvent.ticket_id, TicketEvent.at, TicketEvent.kind, TicketEvent.value)
                               .join(Ticket, Ticket.id == TicketEvent.ticket_id)
                               .where(Ticket.service_id == "servicedesk")
                               .order_by(TicketEvent.ticket_id, TicketEvent.at, TicketEvent.id)).all()
        # By hand, from the stored clocks: a clock counts once decided (met, or breached: stopped late or
        # running past due); money in Decimal, each rule rounded half up to the centavo, capped at 30 %.
        def counted(metric: str) -> tuple[int, int]:
            decided = [c for c in clocks if c.metric == metric and (
                c.state in ("met", "breached") or (c.state == "running" and c.due_at < ctx.now()))]
            late = [c for c in decided if c.breached or c.state == "running"]
            return len(decided), len(late)
        cent = Decimal("0.01")
        resolution, response = counted("resolution"), counted("response")
        assert resolution[0] and response[0], "the month has decided clocks of both metrics"
        per_breach = Decimal("120.00") * resolution[1]
        achieved = Decimal(100 * (response[0] - response[1])) / response[0]
        shortfall = max(Decimal(0), Decimal(90) - achieved)
        per_point = (Decimal("8000.00") * Decimal("1.5") / 100 * shortfall).quantize(cent, rounding="ROUND_HALF_UP")
        due = min(per_breach + per_point, Decimal("2400.00"))
        assert [line.amount for line in got.lines] == [per_breach, per_point]
        assert got.due == due and got.currency == "BRL"
        assert card.credits[0].due == due
        # The time waited on the supplier in the month, from the stored events by a plain walk: awaiting-vendor
        # with no supplier named, or this one.
        waited, state, supplier, since, last = 0.0, "new", None, None, None
        for ticket_id, at_, kind, value in [*events, (None, None, None, None)]:
            if ticket_id != last:
                if since is not None:
                    waited += max(0.0, (period.end - max(since, period.start)).total_seconds())
                state, supplier, since, last = "new", None, None, ticket_id
                if ticket_id is None:
                    break
            state = {"state": value, "resolve": "resolved", "close": "closed", "reopen": "in-progress"}.get(kind, state)
            supplier = value if kind == "supplier" else supplier
            on_it = state == "awaiting-vendor" and supplier in (None, "deskvendor")
            if on_it and since is None:
                since = at_
            elif not on_it and since is not None:
                waited += max(0.0, (min(at_, period.end) - max(since, period.start)).total_seconds())
                since = None
        assert card.waited_seconds == pytest.approx(waited) and waited > 0
    finally:
        rt.engine.dispose()
