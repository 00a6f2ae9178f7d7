"""The monthly service report (handlers/reporting/reports.py, charts.py, bot/report_export.py, `svcbot report`).

One month, October 2026, is seeded through the real commands of the demo app.yaml — tickets, outages,
changes, survey answers, improvement items and commentary, each at its own moment on the test clock, so
every clock and every row is what production would have — and every number of the report is compared with
a hand computation written out beside it.

What the hand computations rely on (app.yaml):
- The bot's zone is Europe/London: October 2026 runs from Wed 30 Sep 23:00 UTC (00:00 BST) to Sun 1 Nov
  00:00 UTC (00:00 GMT); London keeps BST (UTC+1) until Sun 25 Oct 01:00 UTC. That month is 31 days and
  one hour long: 745 h = 2 682 000 s.
- Payments runs on the "london" calendar: Mon–Thu 08:00–18:00, Fri 08:00–17:00, local time; no English
  bank holiday falls in late September or October 2026. The web shop runs on "always" (24x7).
- SLA-PAY: response P1 15 min (goal 95 %), resolution P1 4 h (90 %), response P2 1 business hour (95 %),
  resolution P2 8 business hours (90 %), resolution P3 3 business days (85 %), availability 99.9 %,
  satisfaction 80 %. OLA-PAY-OPS (platform-ops): resolution P1 2 h (95 %). UC-CARDLINK: response P1
  30 min (99 %), resolution P1 2 h (95 %). SLA-SHOP: resolution P1 2 h (95 %), availability 99.95 %.

The seeded history (all times UTC; BST = UTC+1 before 25 Oct):
- SRV-1, a named pulse survey about payments, answered on 15 Sep by tom 5, grace 4, meera 4, lucas 2.
- CSI-1 (payments, due 15 Oct), added 20 Sep, never done.
- INC-1 payments P3, opened by tom Tue 29 Sep 09:00, resolved Thu 1 Oct 12:00.
- INC-2 payments P2, opened by tom Thu 1 Oct 09:00, acknowledged 09:30, resolved 13:00.
- INC-3 payments P2, opened by meera Fri 2 Oct 14:00, acknowledged Mon 5 Oct 08:30, resolved 15:00.
- Payments down (major outage) Tue 6 Oct 08:00–09:00.
- INC-4 payments P1, opened by grace Tue 6 Oct 08:00, acknowledged 08:10, waiting on CardLink 08:30–11:30,
  resolved 13:00.
- CHG-1 payments normal, Tue 6 Oct 21:00–21:40 (22:00 BST, in the Tuesday window): successful.
- CSI-2 (payments, due 30 Nov) 6 Oct; CSI-3 (payments) 7 Oct, done 20 Oct; CSI-4 (payments, due 31 Oct)
  8 Oct, done 3 Nov; CSI-5 (webshop, due 30 Oct) 9 Oct; CSI-6 (no service, no due date) 10 Oct.
- INC-5 payments P1, opened by priya Wed 14 Oct 12:00, acknowledged 12:05, with platform-ops 12:30–14:00,
  waiting on CardLink 15:00–15:20, resolved 17:30.
- CHG-2 payments emergency, approved by arjun, Thu 15 Oct 21:00–22:00: completed with issues.
- Payments in maintenance Thu 15 Oct 21:00–23:00.
- CHG-3 email normal, Tue 20 Oct 18:00–18:30: failed.
- INC-6 webshop P1, opened by grace Wed 21 Oct 10:00, resolved 11:00.
- CHG-4 payments normal, Tue 27 Oct 22:00–22:30: successful. CHG-5 email normal, Wed 28 Oct 19:00–19:45:
  successful. CHG-6 payments normal, Tue 3 Nov 22:00–22:30 (November: not in October's figures).
- INC-7 payments P3, opened by tom Fri 30 Oct 16:00, resolved Mon 2 Nov 10:00.
- After-ticket surveys (payments asks every requester two hours after the resolution): INC-2's tom
  answers 5, INC-3's meera 2, INC-4's grace 4, INC-5's priya 3; INC-1's and INC-7's are not answered.
"""
from __future__ import annotations

import base64
import struct
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import func, select

from bot import cli, report_export
from handlers.changes.calendar import success_rate
from handlers.reporting import charts, report_figures, report_model, reports
from handlers.surveys import asking
from storage.models import AuditRecord, OutboxMessage, ReportComment, Survey
from tests.test_surveys import all_text, ok, run

UTC = timezone.utc
MONTH_SECONDS = 745 * 3600  # 31 days and the hour London gains when BST ends


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def counts(ctx) -> dict[str, int]:
    with ctx.sessions() as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                for m in (OutboxMessage, AuditRecord, ReportComment)}


# ---- the seeded month ----------------------------------------------------------------------------------

def seed_month(ctx, clock) -> None:
    """Everything, in time order (the clock only moves forward)."""
    clock.to(at(9, 15, 10))
    ok(ctx, "priya", 'survey new question="How satisfied are you with card payments?" scale=csat '
                     'people=tom,grace,meera,lucas anonymous=no service=payments closes="in 5 days"')
    clock.to(at(9, 15, 11))
    for who, value in (("tom", 5), ("grace", 4), ("meera", 4), ("lucas", 2)):
        ok(ctx, who, f"survey answer SRV-1 {value}")
    clock.to(at(9, 20, 10))
    ok(ctx, "priya", 'csi add title="Failover runbook for CardLink outages" owner=tom due=2026-10-15 '
                     'service=payments')  # CSI-1

    steps: list[tuple[datetime, str, str]] = [
        (at(9, 29, 9), "tom", "incident new payments P3 Refunds take a day to show"),  # INC-1
        (at(10, 1, 9), "tom", "incident new payments P2 Apple Pay declines in two stores"),  # INC-2
        (at(10, 1, 9, 30), "tom", "incident ack INC-2"),
        (at(10, 1, 12), "tom", "incident resolve INC-1"),
        (at(10, 1, 13), "tom", "incident resolve INC-2"),
        (at(10, 1, 15, 1), "tom", "answer INC-2 5"),
        (at(10, 2, 14), "meera", "incident new payments P2 Store 12 cannot take contactless"),  # INC-3
        (at(10, 5, 8, 30), "tom", "incident ack INC-3"),
        (at(10, 5, 10), "tom", 'change new title="Rotate the payments TLS keys" services=payments type=normal '
                               'risk=low start="2026-10-06 22:00" end="2026-10-06 23:00" '
                               'backout="Restore the previous keys"'),  # CHG-1
        (at(10, 5, 15), "tom", "incident resolve INC-3"),
        (at(10, 5, 17, 1), "meera", "answer INC-3 2"),
        (at(10, 6, 8), "tom", "service set payments major-outage Card payments fail"),
        (at(10, 6, 8), "grace", "incident new payments P1 No card payments at all"),  # INC-4
        (at(10, 6, 8, 10), "tom", "incident ack INC-4"),
        (at(10, 6, 8, 30), "tom", "incident vendor INC-4 cardlink"),
        (at(10, 6, 9), "tom", "service set payments operational"),
        (at(10, 6, 10), "priya", 'csi add title="Alert on CardLink latency" owner=grace due=2026-11-30 '
                                 'service=payments'),  # CSI-2
        (at(10, 6, 11, 30), "tom", "incident resume INC-4"),
        (at(10, 6, 13), "tom", "incident resolve INC-4"),
        (at(10, 6, 15, 1), "grace", "answer INC-4 4"),
        (at(10, 6, 21), "tom", "change start CHG-1"),
        (at(10, 6, 21, 40), "tom", "change complete CHG-1"),
        (at(10, 7, 10), "priya", 'csi add title="Weekend cover for P2 tickets" owner=tom due=2026-10-20 '
                                 'service=payments'),  # CSI-3
        (at(10, 8, 10), "priya", 'csi add title="Runbook for store terminals" owner=tom due=2026-10-31 '
                                 'service=payments'),  # CSI-4
        (at(10, 9, 10), "priya", 'csi add title="Load test the checkout" owner=grace due=2026-10-30 '
                                 'service=webshop'),  # CSI-5
        (at(10, 10, 10), "priya", 'csi add title="One status page for all services" owner=priya'),  # CSI-6
        (at(10, 14, 10), "tom", 'change new title="Patch the card terminal gateway" services=payments '
                                'type=emergency risk=medium start="2026-10-15 22:00" end="2026-10-15 23:00" '
                                'backout="Fail back to the old gateway"'),  # CHG-2
        (at(10, 14, 11), "arjun", "change approve CHG-2 Needed before the weekend"),
        (at(10, 14, 12), "priya", "incident new payments P1 Card payments time out"),  # INC-5
        (at(10, 14, 12, 5), "tom", "incident ack INC-5"),
        (at(10, 14, 12, 30), "tom", "incident assign INC-5 platform-ops"),
        (at(10, 14, 14), "tom", "incident assign INC-5 payments-eng"),
        (at(10, 14, 15), "tom", "incident vendor INC-5 cardlink"),
        (at(10, 14, 15, 20), "tom", "incident resume INC-5"),
        (at(10, 14, 17, 30), "tom", "incident resolve INC-5"),
        (at(10, 14, 19, 31), "priya", "answer INC-5 3"),
        (at(10, 15, 21), "tom", "service set payments maintenance Terminal gateway patch"),
        (at(10, 15, 21), "tom", "change start CHG-2"),
        (at(10, 15, 22), "tom", "change complete CHG-2 with-issues Two terminals needed a restart"),
        (at(10, 15, 23), "tom", "service set payments operational"),
        (at(10, 19, 10), "lucas", 'change new title="Renew the mail relay certificate" services=email '
                                  'type=normal risk=low start="2026-10-20 20:00" end="2026-10-20 21:00" '
                                  'backout="Reinstall the old certificate"'),  # CHG-3 (lucas: Amsterdam, CEST)
        (at(10, 20, 10), "tom", "csi done CSI-3 Rota agreed"),
        (at(10, 20, 18), "lucas", "change start CHG-3"),
        (at(10, 20, 18, 30), "lucas", "change fail CHG-3 The relay refused the new certificate"),
        (at(10, 21, 10), "grace", "incident new webshop P1 Checkout times out"),  # INC-6
        (at(10, 21, 11), "grace", "incident resolve INC-6"),
        (at(10, 26, 10), "tom", 'change new title="Raise the gateway connection pool" services=payments '
                                'type=normal risk=low start="2026-10-27 22:00" end="2026-10-27 23:00" '
                                'backout="Lower it again"'),  # CHG-4
        (at(10, 27, 10), "lucas", 'change new title="Tune the spam filter" services=email type=normal risk=low '
                                  'start="2026-10-28 20:00" end="2026-10-28 21:00" '
                                  'backout="Restore the old rules"'),  # CHG-5 (CET now)
        (at(10, 27, 22), "tom", "change start CHG-4"),
        (at(10, 27, 22, 30), "tom", "change complete CHG-4"),
        (at(10, 28, 19), "lucas", "change start CHG-5"),
        (at(10, 28, 19, 45), "lucas", "change complete CHG-5"),
        (at(10, 30, 10), "tom", 'change new title="Upgrade the fraud rules" services=payments type=normal '
                                'risk=low start="2026-11-03 22:00" end="2026-11-03 23:00" '
                                'backout="Restore the rules"'),  # CHG-6
        (at(10, 30, 16), "tom", "incident new payments P3 Receipts show the wrong VAT"),  # INC-7
        (at(11, 2, 10), "tom", "incident resolve INC-7"),
        (at(11, 3, 10), "tom", "csi done CSI-4 Runbook published"),
        (at(11, 3, 22), "tom", "change start CHG-6"),
        (at(11, 3, 22, 30), "tom", "change complete CHG-6"),
    ]
    for when, who, text in steps:
        clock.to(when)
        if text.startswith("answer "):  # the after-ticket survey opens two hours after the resolution
            _, ticket, value = text.split()
            asking.sweep(ctx)
            with ctx.sessions() as s:
                survey_id = s.scalar(select(Survey.id).where(Survey.ticket_id == int(ticket.split("-")[1])))
            text = f"survey answer SRV-{survey_id} {value}"
        ok(ctx, who, text)
    clock.to(at(11, 24, 9))  # the report is read weeks later


@pytest.fixture
def october(ctx, clock):
    seed_month(ctx, clock)
    return ctx


# ---- the numbers -------------------------------------------------------------------------------------------

def targets_of(report) -> list[tuple]:
    return [(t.agreement, t.metric, t.priority, t.met, t.counted, round(t.achieved, 3), t.goal, t.ok)
            for t in report.targets]


def test_the_payments_report_matches_the_hand_computation(october):
    r = report_figures.report_data(october, "payments", "2026-10")
    assert (r.scope, r.scope_name, r.month, r.month_name, r.complete) == (
        "payments", "Payments Gateway", "2026-10", "October 2026", True)
    assert (r.start, r.end) == (at(9, 30, 23), at(11, 1, 0))  # 00:00 BST and 00:00 GMT

    # Agreed against achieved. Ticket clocks that started in October: INC-2..INC-5 and INC-7 (INC-1 opened
    # in September). Decided clocks per target:
    # - OLA-PAY-OPS resolution P1: INC-5 was with platform-ops 12:30–14:00 = 1 h 30 of 2 h → met; INC-4 never
    #   went to platform-ops (unused, not counted) → 1 of 1 = 100 %, goal 95 → met.
    # - SLA-PAY resolution P1 (4 h clock): INC-4 08:00→13:00 = 5 h, INC-5 12:00→17:30 = 5 h 30 → 0 of 2 = 0 %.
    # - SLA-PAY resolution P2 (8 business hours): INC-2 10:00→14:00 BST = 4 h met; INC-3 Fri 15:00–17:00 BST
    #   (2 h) + Mon 08:00–16:00 (8 h) = 10 h breached → 1 of 2 = 50 %.
    # - SLA-PAY resolution P3 (3 business days): INC-7 opened Fri 30 Oct 16:00 GMT, due at the close of Tue
    #   3 Nov, resolved Mon 2 Nov → 1 of 1 = 100 %, goal 85 → met.
    # - SLA-PAY response P1 (15 min): INC-4 10 min, INC-5 5 min → 2 of 2 = 100 %.
    # - SLA-PAY response P2 (1 business hour): INC-2 30 min met; INC-3 Fri 15:00–17:00 + Mon 08:00–09:30 BST =
    #   3 h 30 breached → 1 of 2 = 50 %.
    # - UC-CARDLINK resolution P1 (2 h while waiting on CardLink): INC-4 08:30–11:30 = 3 h breached, INC-5
    #   15:00–15:20 = 20 min met → 1 of 2 = 50 %; response P1 (30 min): the same waits → 1 of 2 = 50 %.
    # - Availability: agreed time = the month's 2 682 000 s − 2 h maintenance (15 Oct 21:00–23:00) = 2 674 800 s;
    #   down 1 h (6 Oct 08:00–09:00) → (2 674 800 − 3 600) / 2 674 800 = 99.86541 %, goal 99.9 → missed.
    # - Satisfaction: October's answers 5, 2, 4, 3 → 2 of 4 are 4 or 5 = 50 %, goal 80 → missed.
    assert targets_of(r) == [
        ("OLA-PAY-OPS", "resolution", "P1", 1, 1, 100.0, 95, True),
        ("SLA-PAY", "resolution", "P1", 0, 2, 0.0, 90, False),
        ("SLA-PAY", "resolution", "P2", 1, 2, 50.0, 90, False),
        ("SLA-PAY", "resolution", "P3", 1, 1, 100.0, 85, True),
        ("SLA-PAY", "response", "P1", 2, 2, 100.0, 95, True),
        ("SLA-PAY", "response", "P2", 1, 2, 50.0, 95, False),
        ("UC-CARDLINK", "resolution", "P1", 1, 2, 50.0, 95, False),
        ("UC-CARDLINK", "response", "P1", 1, 2, 50.0, 99, False),
        ("SLA-PAY", "availability", None, None, None, 99.865, 99.9, False),
        ("SLA-PAY", "satisfaction", None, 2, 4, 50.0, 80, False),
    ]
    availability = r.targets[8]
    assert availability.achieved == pytest.approx(100 * (2_674_800 - 3_600) / 2_674_800)
    assert availability.downtime_seconds == 3600

    # Breaches, oldest first, each with its cause:
    # - INC-3 resolution, late 10 h − 8 h = 2 h; INC-3 response, late 3 h 30 − 1 h = 2 h 30. No OLA or UC clock
    #   ran on INC-3 (never with platform-ops, never waiting on a supplier).
    # - INC-4 resolution, late 5 h − 4 h = 1 h: UC-CARDLINK breached (its response clock used 3 h of 30 min, the
    #   largest share of the two that breached).
    # - INC-5 resolution, late 5 h 30 − 4 h = 1 h 30: nothing under it breached; OLA-PAY-OPS used 75 % of its
    #   target, more than UC-CARDLINK's 67 % (response, 20 of 30 min) and 17 % (resolution, 20 min of 2 h).
    assert [(b.ticket_id, b.metric, b.late_seconds, b.cause) for b in r.breaches] == [
        (3, "resolution", 7200, "no OLA or UC"),
        (3, "response", 9000, "no OLA or UC"),
        (4, "resolution", 3600, "UC-CARDLINK"),
        (5, "resolution", 5400, "OLA-PAY-OPS"),
    ]
    assert r.breaches[2].cause_detail == "UC UC-CARDLINK response: 3 h of 30 min — breached"
    assert r.breaches[3].cause_detail == "OLA OLA-PAY-OPS resolution: 1 h 30 min of 2 h"
    assert [(c.cause, c.label, c.breaches) for c in r.breach_causes] == [
        ("no OLA or UC", "no OLA or UC", 2),
        ("OLA-PAY-OPS", "OLA-PAY-OPS · Platform Operations", 1),
        ("UC-CARDLINK", "UC-CARDLINK · CardLink Acquiring Ltd", 1),
    ]

    assert [(a.service, a.agreed_seconds, a.downtime_seconds, a.goal, a.ok) for a in r.availability] == [
        ("payments", MONTH_SECONDS - 7200, 3600, 99.9, False)]

    # Tickets: opened in October INC-2, INC-3 (P2), INC-4, INC-5 (P1), INC-7 (P3) = 5; resolved in October
    # INC-1 (P3, opened in September), INC-2, INC-3, INC-4, INC-5 = 5. Clock and business (London) time:
    #   INC-1 Tue 29 Sep 09:00 → Thu 1 Oct 12:00 = 51 h = 183 600 s; Tue 10:00–18:00 BST 8 h + Wed 10 h +
    #         Thu 08:00–13:00 5 h = 23 h = 82 800 s
    #   INC-2 4 h = 14 400 s; 10:00–14:00 BST = 14 400 s
    #   INC-3 Fri 14:00 → Mon 15:00 = 73 h = 262 800 s; 2 h + 8 h = 36 000 s
    #   INC-4 5 h = 18 000 s; Tue 09:00–14:00 BST = 18 000 s
    #   INC-5 5 h 30 = 19 800 s; Wed 13:00–18:00 BST (closed at 18:00, resolved 18:30) = 18 000 s
    # Means: clock 498 600 / 5 = 99 720 s (1 d 3 h 42 min); business 169 200 / 5 = 33 840 s (9 h 24 min).
    t = r.tickets
    assert (t.opened, t.resolved, t.mttr_clock_seconds, t.mttr_business_seconds) == (5, 5, 99_720, 33_840)
    assert [(p.priority, p.opened, p.resolved, p.mttr_clock_seconds, p.mttr_business_seconds)
            for p in t.by_priority] == [
        ("P1", 2, 2, (18_000 + 19_800) / 2, (18_000 + 18_000) / 2),  # 18 900 s, 18 000 s
        ("P2", 2, 2, (14_400 + 262_800) / 2, (14_400 + 36_000) / 2),  # 138 600 s, 25 200 s
        ("P3", 1, 1, 183_600, 82_800),
    ]
    # Beside the means, the median and the 90th percentile (nearest rank: the ⌈0.9 × n⌉-th smallest).
    # Clock sorted: 14 400, 18 000, 19 800, 183 600, 262 800 → median 19 800 (the 3rd), p90 the 5th = 262 800.
    # Business sorted: 14 400, 18 000, 18 000, 36 000, 82 800 → median 18 000, p90 82 800.
    # P1 clock 18 000, 19 800 → median 18 900 (the two middle ones averaged), p90 the 2nd = 19 800; P2 clock
    # 14 400, 262 800 → 138 600 and 262 800, business 14 400, 36 000 → 25 200 and 36 000.
    assert (t.ttr_clock_median_seconds, t.ttr_clock_p90_seconds, t.ttr_business_median_seconds,
            t.ttr_business_p90_seconds) == (19_800, 262_800, 18_000, 82_800)
    assert [(p.ttr_clock_median_seconds, p.ttr_clock_p90_seconds, p.ttr_business_median_seconds,
             p.ttr_business_p90_seconds) for p in t.by_priority] == [
        (18_900, 19_800, 18_000, 18_000), (138_600, 262_800, 25_200, 36_000), (183_600, 183_600, 82_800, 82_800)]

    # Changes implemented in October on payments: CHG-1 successful, CHG-2 (emergency) with issues, CHG-4
    # successful; CHG-6 ended in November → 2 of 3 successful = 66.7 %, 1 of 3 emergency = 33.3 %.
    c = r.changes
    assert (c.implemented, c.successful, c.emergency) == (3, 2, 1)
    assert c.success_rate == pytest.approx(200 / 3) and c.emergency_share == pytest.approx(100 / 3)
    with october.sessions() as s:  # the same rate the change calendar and the API show
        assert success_rate(s, r.start, r.end, "payments").successful == 2

    # Satisfaction, May–October: September's pulse survey 5, 4, 4, 2 → 3 of 4 = 75 %; October 2 of 4 = 50 %.
    assert [(m.label, m.answers, m.satisfied, m.csat) for m in r.satisfaction_trend] == [
        ("May 2026", 0, 0, None), ("Jun 2026", 0, 0, None), ("Jul 2026", 0, 0, None), ("Aug 2026", 0, 0, None),
        ("Sep 2026", 4, 3, 75.0), ("Oct 2026", 4, 2, 50.0)]
    assert r.satisfaction_goal == 80

    # Attainment trend (SLA targets with a goal; SLA ticket clocks):
    # - May–Aug: only availability (no outage: 100 %) → 1 of 1 target, no clocks.
    # - Sep: INC-1's P3 resolution met, availability met, CSAT 75 % < 80 → 2 of 3; 1 of 1 clock.
    # - Oct: response P1 and resolution P3 met of the 7 SLA rows above → 2 of 7 = 28.6 %; clocks 0+1+1+2+1 = 5
    #   met of 2+2+1+2+2 = 9 decided = 55.6 %.
    assert [(m.label, m.targets_met, m.targets, m.clocks_met, m.clocks) for m in r.attainment_trend] == [
        ("May 2026", 1, 1, 0, 0), ("Jun 2026", 1, 1, 0, 0), ("Jul 2026", 1, 1, 0, 0), ("Aug 2026", 1, 1, 0, 0),
        ("Sep 2026", 2, 3, 1, 1), ("Oct 2026", 2, 7, 5, 9)]

    # CSI on payments: opened in October CSI-2, CSI-3, CSI-4 = 3; done in October CSI-3 = 1; open on 1 Nov
    # 00:00: CSI-1 (due 15 Oct), CSI-4 (due 31 Oct, done only on 3 Nov), CSI-2 (due 30 Nov) = 3, of which the
    # first two were overdue = 2.
    s = r.csi
    assert (s.opened, s.done, s.open, s.overdue) == (3, 1, 3, 2)
    assert [(i.item, i.owner, i.due, i.overdue) for i in s.items] == [
        ("CSI-1", "Tom Hughes", date(2026, 10, 15), True), ("CSI-4", "Tom Hughes", date(2026, 10, 31), True),
        ("CSI-2", "Grace Okafor", date(2026, 11, 30), False)]
    assert r.commentary is None


def test_the_report_of_all_services_adds_them_up(october):
    r = report_figures.report_data(october, None, "2026-10")
    assert (r.scope, r.scope_key, r.scope_name) == (None, "all", "All services")
    # Payments' ten rows, then the web shop: INC-6 resolved in 1 h of 2 h → 1 of 1; no outage → 100 %.
    rows = targets_of(r)
    assert ("SLA-SHOP", "resolution", "P1", 1, 1, 100.0, 95, True) in rows
    assert ("SLA-SHOP", "availability", None, None, None, 100.0, 99.95, True) in rows
    assert len(rows) == 12
    assert [(a.service, a.achieved) for a in r.availability] == [
        ("payments", pytest.approx(99.86541, abs=1e-5)), ("webshop", 100.0), ("wms", 100.0),
        ("data-platform", 100.0), ("email", 100.0), ("vpn", 100.0), ("hr-portal", 100.0)]
    assert len(r.breaches) == 4  # the web shop's one ticket met its target

    # INC-6 adds a P1 opened and resolved in October, 1 h in clock and in (24x7) business time:
    # clock (498 600 + 3 600) / 6 = 83 700 s; business (169 200 + 3 600) / 6 = 28 800 s;
    # P1 clock (18 000 + 19 800 + 3 600) / 3 = 13 800 s, business (18 000 + 18 000 + 3 600) / 3 = 13 200 s.
    t = r.tickets
    assert (t.opened, t.resolved, t.mttr_clock_seconds, t.mttr_business_seconds) == (6, 6, 83_700, 28_800)
    assert (t.by_priority[0].opened, t.by_priority[0].mttr_clock_seconds,
            t.by_priority[0].mttr_business_seconds) == (3, 13_800, 13_200)
    # Six durations now: clock 3 600, 14 400, 18 000, 19 800, 183 600, 262 800 → median (18 000 + 19 800) / 2
    # = 18 900, p90 the ⌈5.4⌉ = 6th = 262 800; business 3 600, 14 400, 18 000, 18 000, 36 000, 82 800 → 18 000
    # and 82 800.
    assert (t.ttr_clock_median_seconds, t.ttr_clock_p90_seconds, t.ttr_business_median_seconds,
            t.ttr_business_p90_seconds) == (18_900, 262_800, 18_000, 82_800)

    # The mail relay's CHG-3 failed and CHG-5 succeeded: 3 of 5 successful = 60 %; 1 of 5 emergency = 20 %.
    c = r.changes
    assert (c.implemented, c.successful, c.emergency, c.success_rate, c.emergency_share) == (5, 3, 1, 60.0, 20.0)

    # The trend adds the web shop's availability (met every month) and INC-6:
    # Sep 2+1 of 3+1; Oct 2+2 of 7+2 = 4 of 9 = 44.4 %, clocks 5+1 of 9+1 = 60 %.
    assert [(m.targets_met, m.targets, m.clocks_met, m.clocks) for m in r.attainment_trend] == [
        (2, 2, 0, 0), (2, 2, 0, 0), (2, 2, 0, 0), (2, 2, 0, 0), (3, 4, 1, 1), (4, 9, 6, 10)]
    assert r.attainment_trend[-1].targets_share == pytest.approx(400 / 9)
    assert [(m.answers, m.csat) for m in r.satisfaction_trend][-2:] == [(4, 75.0), (4, 50.0)]
    assert r.satisfaction_goal is None  # each service has its own

    # CSI: payments' three plus CSI-5 (web shop, due 30 Oct: overdue) and CSI-6 (no service, no due date):
    # opened 5, done 1, open at month end 5, overdue 3.
    s = r.csi
    assert (s.opened, s.done, s.open, s.overdue) == (5, 1, 5, 3)
    assert [i.item for i in s.items] == ["CSI-1", "CSI-5", "CSI-4", "CSI-2", "CSI-6"]


def test_a_month_still_running_is_reported_so_far(october, clock):
    clock.to(at(10, 14, 13))  # in the middle of INC-5, before its clocks are decided
    r = report_figures.report_data(october, "payments", "this-month")
    assert (r.month, r.complete) == ("2026-10", False)
    assert report_model.title_of(r) == "Service report: Payments Gateway, October 2026 (so far)"
    # The availability so far: agreed time Sep 30 23:00 → Oct 14 13:00 = 13 d 14 h = 1 173 600 s.
    assert (r.availability[0].agreed_seconds, r.availability[0].downtime_seconds) == (1_173_600, 3600)


def test_to_dict_is_plain_data(october):
    import json
    data = report_figures.report_data(october, "payments", "2026-10").to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["scope_key"] == "payments" and data["start"] == "2026-09-30T23:00:00+00:00"
    assert data["targets"][0]["ok"] is True and data["attainment_trend"][-1]["clocks_share"] == pytest.approx(500 / 9)


# ---- chat ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values, median, p90", [
    ([7.0], 7.0, 7.0),
    ([3.0, 1.0], 2.0, 3.0),  # median of an even count: the two middle values averaged
    ([5.0, 1.0, 4.0, 2.0, 3.0], 3.0, 5.0),  # ⌈4.5⌉ = 5th
    ([float(v) for v in range(10, 0, -1)], 5.5, 9.0),  # ⌈9⌉ = 9th: not the largest, and no float drift to 10th
    ([float(v) for v in range(1, 21)], 10.5, 18.0),  # ⌈18⌉ = 18th
    ([float(v) for v in range(1, 12)], 6.0, 10.0),  # ⌈9.9⌉ = 10th
])
def test_median_and_p90_by_nearest_rank_on_small_samples(values, median, p90):
    from handlers.reporting.spread import spread
    got = spread(values)
    assert (got.mean, got.median, got.p90) == (sum(values) / len(values), median, p90)


def test_nothing_resolved_has_no_spread():
    from handlers.reporting.spread import Spread, spread
    assert spread([]) == Spread(None, None, None)
    assert report_model.clock_ttr(report_model.PriorityTickets("P1", 3, 0, None, None)) == "—"


def test_report_in_chat_shows_last_month_privately_with_a_post_button_for_those_who_may(october):
    reply = ok(october, "priya", "report payments")  # now is 24 Nov: last month is October
    assert reply.private and reply.title == "Service report: Payments Gateway, October 2026"
    body = all_text(reply)
    for number in ("❌ SLA-PAY resolution P2: 50.0 % (1 of 2 met), agreed 90 %",
                   "❌ SLA-PAY availability of payments: 99.865 % (down 1 h), agreed 99.9 %",
                   "INC-5 P1 · SLA-PAY resolution · late by 1 h 30 min · cause: OLA-PAY-OPS",
                   "mean 1 d 3 h 42 min · median 5 h 30 min · p90 3 d 1 h",
                   "mean 9 h 24 min · median 5 h · p90 23 h", "66.7 % (2 of 3)", "33.3 % (1 of 3)",
                   "Sep 2026: 75.0 % (3 of 4 satisfied)", "Oct 2026: 50.0 % (2 of 4 satisfied)",
                   "*CSI-4* Runbook for store terminals — Tom Hughes, due 2026-10-31 ⚠️ overdue"):
        assert number in body, number
    assert [(b.label, b.run) for b in reply.buttons] == [("Post to #payments", "report post payments 2026-10")]
    assert reply.images == []  # the charts go with the post
    assert ok(october, "tom", "report payments 2026-10").buttons  # the service's owner
    assert ok(october, "grace", "report payments 2026-10").buttons == []  # on its team, not its owner
    # the order of the words does not matter, and "report" alone is every service, last month
    assert ok(october, "meera", "report 2026-10 Payments").title == reply.title
    everything = ok(october, "priya", "report")
    assert everything.title == "Service report: All services, October 2026"
    assert [b.run for b in everything.buttons] == ["report post all 2026-10"]
    assert ok(october, "tom", "report all").buttons == []  # only service managers post the overall report


BAD = [
    ("report nosuch", "There is no service 'nosuch'. Services: payments, webshop"),
    ("report payments 2026-13", "'2026-13' is not a month; give one as YYYY-MM"),
    ("report payments 1969-12", "'1969-12' is not a month"),
    ("report payments 2026-04", "April 2026 has not begun yet"),  # the clock is at 2 March 2026
    ("report payments webshop", "Give one service (or all) and one month."),
    ("report payments 2026-01 extra", "Give at most a service (or all) and a month."),
    ("report post nosuch", "There is no service 'nosuch'"),
    ("report post payments 2027-01", "January 2027 has not begun yet"),
    ("report comment", "Say the service (or all), the month and your comment."),
    ("report comment payments", "Say the service (or all), the month and your comment."),
    ("report comment payments 2026-02", "Write the comment after the month."),
    ("report comment nosuch 2026-02 Fine", "There is no service 'nosuch'"),
    ("report comment payments February All fine", "'February' is not a month"),
    ("report comment payments 2026-09 All fine", "September 2026 has not begun yet"),
    ("report comment payments 2026-02 " + "x" * 2001, "Keep the comment under 2000 characters (it has 2001)."),
]


@pytest.mark.parametrize("text, message", BAD)
def test_every_wrong_report_command_says_what_was_wrong_shows_a_right_example_and_changes_nothing(ctx, text,
                                                                                                 message):
    before = counts(ctx)
    reply, outcome = run(ctx, "priya", text)
    assert outcome == "user_error", reply
    assert message in reply.text
    assert reply.footer.startswith("Try: /svc report ")
    assert counts(ctx) == before
    _, example_outcome = run(ctx, "priya", reply.footer[len("Try: /svc "):])
    assert example_outcome == "ok"


@pytest.mark.parametrize("who, text, why", [
    ("meera", "report post payments last-month", "Only Tom Hughes (its owner) or a service manager can post "
                                                 "Payments Gateway's report."),
    ("grace", "report post payments last-month", "Only Tom Hughes (its owner)"),
    ("tom", "report post all last-month", "Only a service manager can post the report of all services."),
    ("tom", "report post webshop last-month", "Only Grace Okafor (its owner)"),
    ("meera", "report comment payments last-month Fine", "Only Tom Hughes (its owner) or a service manager can "
                                                          "comment on Payments Gateway's report."),
    ("tom", "report comment all last-month Fine", "Only a service manager can comment on the report of all"),
])
def test_only_service_managers_and_the_owner_post_and_comment(ctx, who, text, why):
    before = counts(ctx)
    reply, outcome = run(ctx, who, text)
    assert outcome == "refused" and why in reply.text
    assert counts(ctx) == before


def outbox_rows(ctx) -> list[OutboxMessage]:
    with ctx.sessions() as s:
        return s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.like("report:%"))
                         .order_by(OutboxMessage.id)).all()


def report_audits(ctx) -> list[tuple]:
    with ctx.sessions() as s:
        return s.execute(select(AuditRecord.person_id, AuditRecord.action, AuditRecord.subject, AuditRecord.detail)
                         .where(AuditRecord.action.like("report.%")).order_by(AuditRecord.id)).all()


def images_by_place(rows) -> dict[tuple[str, str], list[str]]:
    """The charts queued for each platform and conversation, whichever rows carry them (Slack gets them as
    files after the message, Teams inside the card)."""
    out: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        for image in row.message["images"]:
            assert base64.b64decode(image["png"]).startswith(b"\x89PNG")
            out.setdefault((row.platform, row.target), []).append(image["name"])
    return out


def test_posting_queues_the_report_with_its_three_charts_to_the_service_channel(october):
    reply = ok(october, "tom", "report post payments 2026-10")
    assert reply.title == "Posted to #payments"
    rows = outbox_rows(october)
    # the payments channel is on both platforms: one message on each, with the three charts
    messages = [r for r in rows if r.target_kind == "channel"]
    assert [(r.platform, r.target) for r in messages] == [
        ("slack", "C0PAYMENTS"), ("teams", "19:payments00000000000000000000000@thread.tacv2")]
    for row in messages:
        assert row.message["private"] is False
        assert row.message["title"] == "Service report: Payments Gateway, October 2026"
        assert row.subject == "report:payments:2026-10"
    charts = ["attainment-payments-2026-10.png", "breaches-payments-2026-10.png", "satisfaction-payments-2026-10.png"]
    assert images_by_place(rows) == {("slack", "C0PAYMENTS"): charts,
                                     ("teams", "19:payments00000000000000000000000@thread.tacv2"): charts}
    [(who, action, subject, detail)] = report_audits(october)
    assert (who, action, subject, detail["channel"], detail["platforms"]) == (
        "tom", "report.post", "report:payments:2026-10", "payments", ["slack", "teams"])


def test_the_report_of_all_services_goes_to_the_changes_channel(october):
    ok(october, "priya", "report post all 2026-10")
    places = images_by_place(outbox_rows(october))
    assert places.keys() == {("slack", "C0ANNOUNCE"), ("teams", "19:announce000000000000000000000@thread.tacv2")}
    assert all(len(names) == 3 for names in places.values())


def test_a_repeated_post_delivery_is_done_once(ctx):
    assert run(ctx, "priya", "report post payments 2026-02", key="slack-trigger-1")[1] == "ok"
    assert run(ctx, "priya", "report post payments 2026-02", key="slack-trigger-1")[1] == "duplicate"
    assert len([r for r in outbox_rows(ctx) if r.target_kind == "channel"]) == 2  # slack and teams, once
    assert len(report_audits(ctx)) == 1


def test_queue_report_works_inside_a_transaction_the_caller_holds(october):
    """What the scheduler does on the first of the month: one transaction, its own key."""
    from handlers.core.context import Actor, Work
    system = Actor(person_id="svcbot", name="svcbot", platform="system")
    with october.sessions.begin() as session:
        report, platforms = reports.queue_report(Work(october, session, system), "webshop", "2026-10", "shop",
                                                 "report:monthly:webshop:2026-10")
    assert (report.scope, report.tickets.opened, platforms) == ("webshop", 1, ["slack", "teams"])
    keys = [r.dedupe_key for r in outbox_rows(october) if r.target_kind == "channel"]
    assert keys == ["report:monthly:webshop:2026-10:slack:C0SHOP0001",
                    "report:monthly:webshop:2026-10:teams:19:shop000000000000000000000000000@thread.tacv2"]
    assert len(images_by_place(outbox_rows(october))) == 2


def test_the_newest_comment_is_the_one_shown(october, clock):
    reply = ok(october, "priya", "report comment payments 2026-10 First <b>draft</b>")
    assert reply.title == "Commentary saved for Payments Gateway, October 2026"
    clock.advance(minutes=5)
    reply = ok(october, "tom", 'report comment payments 2026-10 Both P1 breaches waited on <b>CardLink</b>; '
                               'CSI-4 follows up')
    assert reply.footer == "It replaces the one shown before."
    shown = report_figures.report_data(october, "payments", "2026-10").commentary
    assert (shown.text, shown.person_id, shown.person, shown.at) == (
        "Both P1 breaches waited on <b>CardLink</b>; CSI-4 follows up", "tom", "Tom Hughes", at(11, 24, 9, 5))
    assert report_figures.report_data(october, None, "2026-10").commentary is None  # "all" is its own report
    ok(october, "priya", "report comment all 2026-10 A hard month for payments")
    assert report_figures.report_data(october, None, "2026-10").commentary.text == "A hard month for payments"
    assert [(who, action, subject) for who, action, subject, _ in report_audits(october)] == [
        ("priya", "report.comment", "report:payments:2026-10"), ("tom", "report.comment", "report:payments:2026-10"),
        ("priya", "report.comment", "report:all:2026-10")]
    assert "Commentary — Tom Hughes" in all_text(ok(october, "meera", "report payments 2026-10"))


def test_a_comment_keeps_its_lines_and_spacing_as_typed(ctx):
    typed = 'report comment "Payments Gateway" 2026-02 Two issues:\n- CardLink  timeouts\n- "weekend" cover'
    reply = ok(ctx, "tom", typed)
    assert reply.text == 'Two issues:\n- CardLink  timeouts\n- "weekend" cover'
    with ctx.sessions() as s:
        assert s.scalars(select(ReportComment.text)).all() == [reply.text]


def test_the_help_topic(ctx):
    reply = ok(ctx, "priya", "help report")
    assert reply.sections[0].title == "The monthly service report"
    assert "/svc report post payments last-month" in reply.sections[0].text


# ---- charts, HTML, PDF ---------------------------------------------------------------------------------------

def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_the_three_charts_are_small_pngs_whose_alt_text_states_the_numbers(october):
    report = report_figures.report_data(october, "payments", "2026-10")
    images = charts.charts(report)
    assert [i.name for i in images] == [
        "attainment-payments-2026-10.png", "breaches-payments-2026-10.png", "satisfaction-payments-2026-10.png"]
    for image in images:
        data = base64.b64decode(image.png)
        assert png_size(data) == (800, 400)
        assert len(data) < 20_000, (image.name, len(data))  # Teams embeds them in the card
    attainment, by_cause, csat = (i.alt for i in images)
    assert "Oct 2026: 2 of 7 SLA targets met (28.6 %); clocks 55.6 % met (5 of 9)" in attainment
    assert "Sep 2026: 2 of 3 SLA targets met (66.7 %); clocks 100.0 % met (1 of 1)" in attainment
    assert by_cause == ("4 SLA breaches for Payments Gateway in October 2026, by cause: no OLA or UC 2, "
                        "OLA-PAY-OPS 1, UC-CARDLINK 1.")
    assert "Sep 2026: 75.0 % (3 of 4 satisfied); Oct 2026: 50.0 % (2 of 4 satisfied). Goal 80 %." in csat
    assert "May 2026: no answers" in csat
    # the same report draws the same bytes
    assert [i.png for i in charts.charts(report)] == [i.png for i in images]


def test_a_chart_with_nothing_to_show_says_so(ctx, clock):
    clock.to(at(11, 24, 9))
    images = charts.charts(report_figures.report_data(ctx, "hr-portal", "2026-10"))
    assert [png_size(base64.b64decode(i.png)) for i in images] == [(800, 400)] * 3
    assert images[1].alt == "No SLA breaches for HR Self-Service Portal in October 2026."
    assert "Oct 2026: nothing measured" in images[0].alt and "Oct 2026: no answers" in images[2].alt


@pytest.fixture
def commented(october, clock):
    ok(october, "tom", "report comment payments 2026-10 Both P1 breaches waited on <b>CardLink</b> & co")
    report = report_figures.report_data(october, "payments", "2026-10")
    return report, charts.charts(report)


NUMBERS = ["99.865 %", "66.7 %", "33.3 %", "1 d 3 h 42 min", "9 h 24 min", "5 h 15 min", "2 h 30 min",
           "3 d 1 h",  # the 90th percentile in clock time of P2 and of all: no mean or breach has it
           "75.0 %", "50.0 %", "28.6 %", "OLA-PAY-OPS", "UC-CARDLINK", "CSI-4"]


def test_the_html_is_one_accessible_self_contained_page_with_every_number(commented):
    report, images = commented
    page = report_export.html(report, images)
    assert page.startswith("<!DOCTYPE html>") and '<html lang="en">' in page
    assert "<title>Service report: Payments Gateway, October 2026</title>" in page
    for number in NUMBERS:
        assert number in page, number
    assert "1 of 2 met" in page and "2 of 4 answers satisfied" in page
    # the commentary is text, never markup
    assert "Both P1 breaches waited on &lt;b&gt;CardLink&lt;/b&gt; &amp; co" in page
    assert "<b>CardLink" not in page
    assert page.count("<caption>") >= 8 and 'scope="col"' in page and 'scope="row"' in page
    assert page.count('src="data:image/png;base64,') == 3
    for image in images:
        assert f'alt="{image.alt}"' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_the_pdf_holds_the_same_numbers_and_the_charts(commented):
    report, images = commented
    data = report_export.pdf(report, images)
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert report_export.pdf(report, images) == data  # invariant: the same report, the same bytes
    plain = report_export.pdf(report, images, compress=False)  # page text left readable in the file
    for number in NUMBERS + ["Both P1 breaches waited on"]:
        assert number.encode() in plain, number
    assert plain.count(b"/Subtype /Image") == 3


# ---- the command line ----------------------------------------------------------------------------------------

@pytest.fixture
def report_cli(october, database_url, config_file, monkeypatch):
    monkeypatch.setenv("SVCBOT_DATABASE_URL", database_url)
    return lambda *args: cli.main(["--config", str(config_file), "report", *args])


def test_svcbot_report_writes_the_html_and_the_pdf(report_cli, tmp_path, capsys):
    out = tmp_path / "review"
    assert report_cli("--service", "payments", "--month", "2026-10", "--output", str(out)) == 0
    html_path, pdf_path = out / "svcbot-report-payments-2026-10.html", out / "svcbot-report-payments-2026-10.pdf"
    assert capsys.readouterr().out.split() == [str(html_path), str(pdf_path)]
    assert "99.865 %" in html_path.read_text() and pdf_path.read_bytes().startswith(b"%PDF-")
    assert report_cli("--month", "2026-10", "--output", str(out)) == 0  # all services by default
    assert (out / "svcbot-report-all-2026-10.html").exists() and (out / "svcbot-report-all-2026-10.pdf").exists()


@pytest.mark.parametrize("args, message", [
    (["--month", "2026-13"], "svcbot: '2026-13' is not a month; give one as YYYY-MM"),
    (["--month", "2999-01"], "svcbot: January 2999 has not begun yet"),
    (["--service", "nosuch"], "svcbot: There is no service 'nosuch'. Services: payments"),
])
def test_svcbot_report_refuses_bad_words_and_writes_nothing(report_cli, tmp_path, capsys, args, message):
    assert report_cli(*args, "--output", str(tmp_path / "out")) == 2
    assert capsys.readouterr().err.startswith(message)
    assert not (tmp_path / "out").exists()


def test_svcbot_report_into_something_that_is_not_a_folder(report_cli, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert report_cli("--month", "2026-10", "--output", str(blocker)) == 2
    assert capsys.readouterr().err == f"svcbot: {blocker} is not a folder; nothing written\n"
    assert report_cli("--month", "2026-10", "--output", str(blocker / "below")) == 2
    assert "svcbot: cannot write the report into" in capsys.readouterr().err
