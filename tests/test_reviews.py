"""Post-incident reviews (handlers/reviews/) at the handler level, on the real store with the test clock: the
sweep that opens a review when a P1 or P2 is resolved, the timeline and impact, writing, annotating, follow-ups
in the CSI register, finishing, rights, the Markdown export, the form as Teams submits it, the digest section
and the monthly report. tom owns payments; priya is the service manager; meera has no part in payments."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from handlers.core.context import Command
from handlers.core.people import resolve_actor
from handlers.reporting import digests
from handlers.reporting.report_figures import compute
from handlers.reviews import record
from handlers.router import dispatch
from handlers.sla import breaches
from storage.models import (AuditRecord, Change, ChangeService, CsiItem, IncidentReview, OutboxMessage,
                            ReviewAction, Ticket)
from tests.conftest import T0


def actor(ctx, pid: str, platform: str = "slack"):
    p = ctx.config.person(pid)
    return resolve_actor(ctx, platform, getattr(p, platform), p.name)


def text_of(reply) -> str:
    d = reply.to_dict()
    parts = [d["title"], d["text"], d["footer"]]
    for s in d["sections"]:
        parts += [s["title"], s["text"]] + [f"{f['label']}: {f['value']}" for f in s["fields"]]
    return "\n".join(parts)


def run(ctx, who: str, text: str, platform: str = "slack"):
    return dispatch(ctx, Command(actor=actor(ctx, who, platform), text=text))


def ok(ctx, who: str, text: str, platform: str = "slack"):
    reply, outcome = run(ctx, who, text, platform)
    assert outcome == "ok", text_of(reply)
    return reply


def fails(ctx, who: str, text: str, outcome: str = "user_error") -> str:
    reply, got = run(ctx, who, text)
    assert got == outcome, text_of(reply)
    return text_of(reply)


def incident(ctx, clock, priority: str = "P1", service: str = "payments", minutes: int = 90) -> int:
    """A ticket opened by priya, acknowledged, and resolved ``minutes`` later."""
    reply = ok(ctx, "priya", f"incident new {service} {priority} Card payments fail for Amex")
    number = int(re.match(r"INC-(\d+)", reply.title)[1])
    clock.advance(minutes=5)
    ok(ctx, "priya", f"incident ack INC-{number}")
    clock.advance(minutes=minutes - 5)
    ok(ctx, "priya", f"incident resolve INC-{number}")
    return number


def reviews(ctx) -> list[IncidentReview]:
    with ctx.sessions() as s:
        return list(s.scalars(select(IncidentReview).order_by(IncidentReview.id)))


def outbox(ctx, prefix: str) -> list[OutboxMessage]:
    with ctx.sessions() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.dedupe_key.startswith(prefix))))


def test_a_resolved_p1_opens_one_review_for_the_service_owner_and_asks_them(ctx, clock):
    inc = incident(ctx, clock)
    [review] = reviews(ctx)
    assert (review.ticket_id, review.owner, review.priority, review.state) == (inc, "tom", "P1", "open")
    assert review.due == (clock() + timedelta(days=5)).date()  # reviews.due_days P1 (the default)
    [ask] = outbox(ctx, f"review:{review.id}:ask")
    assert ask.target == ctx.config.person("tom").slack and "please review" in ask.message["title"]
    assert record.sweep(ctx) == 0 and record.sweep(ctx) == 0  # again and again: still one
    second = incident(ctx, clock, priority="P3", service="webshop")
    with ctx.sessions.begin() as s:  # a P2 resolved through the API: no command runs the sweep
        ticket = s.get(Ticket, second)
        ticket.source, ticket.priority = "api", "P2"
    with ThreadPoolExecutor(2) as pool:  # two replicas sweeping at once
        assert sorted(pool.map(lambda _: record.sweep(ctx), range(2))) == [0, 1]
    assert [r.ticket_id for r in reviews(ctx)] == [inc, second]
    assert [o.target for o in outbox(ctx, "review:")] == [ctx.config.person(p).slack for p in ("tom", "grace")]
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).where(AuditRecord.action == "review.open")) == 2
    assert "has its review already: REV-1" in fails(ctx, "priya", f"review new INC-{inc}")


def test_lower_priorities_imports_and_old_resolutions_are_not_reviewed_unasked(ctx, clock):
    incident(ctx, clock, priority="P3")
    old = incident(ctx, clock, priority="P2")
    with ctx.sessions.begin() as s:
        s.execute(IncidentReview.__table__.delete())
        ticket = s.get(Ticket, old)
        ticket.resolved_at = clock() - timedelta(days=8)  # longer ago than reviews.lookback_days
        imported = Ticket(source="servicenow", external_id="INC0000045", service_id="payments", title="old P1",
                          priority="P1", state="resolved", opened_at=clock() - timedelta(hours=3),
                          resolved_at=clock() - timedelta(hours=1), updated_at=clock())
        s.add(imported)
    assert record.sweep(ctx) == 0 and reviews(ctx) == []
    # By hand, any resolved ticket: the service's owner or a service manager.
    reply = ok(ctx, "tom", f"review new INC-{old} owner=grace due=\"in 3 days\"")
    assert "REV-" in reply.title
    [review] = reviews(ctx)
    assert (review.owner, review.due) == ("grace", (clock() + timedelta(days=3)).date())


def test_due_days_come_from_app_yaml_and_are_checked(ctx, clock):
    from handlers.core.config import ReviewPolicy
    ctx.config = ctx.config.model_copy(update={"reviews": ReviewPolicy(due_days={"P1": 2, "P2": 4})})
    incident(ctx, clock, priority="P2")
    assert reviews(ctx)[0].due == (clock() + timedelta(days=4)).date()
    with pytest.raises(ValueError, match="due_days gives no days for P2"):
        ReviewPolicy(due_days={"P1": 2})
    with pytest.raises(ValueError):
        ReviewPolicy(priorities=["P5"])


def test_the_timeline_holds_what_svcbot_knows_in_order_with_the_owner_s_notes(ctx, clock):
    with ctx.sessions.begin() as s:  # a change on payments the evening before
        change = Change(source="chat", title="Rotate the gateway's TLS certificates", kind="normal", risk="low",
                        impact="low", planned_start=T0 - timedelta(hours=12), planned_end=T0 - timedelta(hours=11),
                        actual_start=T0 - timedelta(hours=12), actual_end=T0 - timedelta(hours=11),
                        state="closed", outcome="successful", created_at=T0 - timedelta(days=2),
                        updated_at=T0 - timedelta(hours=11), implementer="arjun")
        s.add(change)
        s.flush()
        s.add(ChangeService(change_id=change.id, service_id="payments", planned_start=change.planned_start,
                            planned_end=change.planned_end))
        far = Change(source="chat", title="Long ago", kind="normal", risk="low", impact="low",
                     planned_start=T0 - timedelta(days=5), planned_end=T0 - timedelta(days=5, hours=-1),
                     state="closed", created_at=T0 - timedelta(days=6), updated_at=T0 - timedelta(days=5))
        s.add(far)
        s.flush()
        s.add(ChangeService(change_id=far.id, service_id="payments", planned_start=far.planned_start,
                            planned_end=far.planned_end))
    ok(ctx, "tom", "service set payments major-outage Card payments fail")
    reply = ok(ctx, "priya", "incident new payments P1 Card payments fail for Amex")
    inc = int(re.match(r"INC-(\d+)", reply.title)[1])
    clock.advance(minutes=20)  # past the 15-minute response target
    breaches.sweep(ctx)
    clock.advance(minutes=40)
    ok(ctx, "tom", "service set payments operational Fixed")
    ok(ctx, "priya", f"incident resolve INC-{inc}")
    ok(ctx, "tom", 'review note REV-1 "Rolled back the TLS change; errors fell at once" at="2026-03-02 09:40"')
    shown = text_of(ok(ctx, "tom", "review show REV-1"))
    lines = shown.split("Timeline (UTC)")[1].splitlines()
    order = [next((k for k in ("CHG-1 began", "CHG-1 ended", "operational → major-outage", "Outage began",
                               "Opened as P1", "Breached SLA SLA-PAY response", "Rolled back",
                               "major-outage → operational", "Outage ended", "Resolved") if k in line), None)
             for line in lines]
    assert [o for o in order if o] == [
        "CHG-1 began", "CHG-1 ended", "operational → major-outage", "Outage began", "Opened as P1",
        "Breached SLA SLA-PAY response", "Rolled back", "major-outage → operational", "Outage ended", "Resolved"]
    assert "Long ago" not in shown  # more than 72 hours before the ticket opened
    assert "(Arjun Mehta)" in shown and "(Tom Hughes)" in shown  # who did each step, where known
    assert "Open for 1 h" in shown and "Service down for 1 h" in shown
    assert "Breached: SLA SLA-PAY response: late by 45 min" in shown


def test_writing_annotating_follow_ups_and_done_with_authorship_and_rights(ctx, clock):
    incident(ctx, clock)
    assert "Only Tom Hughes (its owner)" in fails(ctx, "meera", 'review edit REV-1 what="x"', "refused")
    assert "colour: unknown field; fields: what, impact, factors" in fails(ctx, "tom", 'review edit REV-1 colour="red"')
    ok(ctx, "tom", 'review edit REV-1 what="Amex authorisations timed out after the TLS rotation"')
    clock.advance(hours=1)
    ok(ctx, "priya", 'review edit REV-1 factors="No canary for certificate changes"')
    reply = ok(ctx, "tom", 'review action REV-1 "Canary certificate changes on one node" owner=arjun due="in 2 weeks"')
    item_id = int(re.match(r"CSI-(\d+)", reply.title)[1])
    with ctx.sessions() as s:
        item = s.get(CsiItem, item_id)
        assert (item.owner, item.ticket_id, item.service_id, item.state) == ("arjun", 1, "payments", "open")
        assert item.due == (clock() + timedelta(days=14)).date()
        assert s.get(ReviewAction, (1, item_id)) is not None
    assert "owner: unknown person 'nobody'" in fails(ctx, "tom", 'review action REV-1 "X" owner=nobody')
    assert "Write the note after the review." in fails(ctx, "tom", "review note REV-1")
    assert "has not come yet" in fails(ctx, "tom", 'review note REV-1 "later" at="tomorrow 10:00"')
    shown = text_of(ok(ctx, "grace", "review show REV-1"))  # anyone may read it
    assert "— Tom Hughes," in shown.split("Contributing factors")[0] and "— Priya Nair," in shown
    assert "CSI-1" in shown and "Arjun Mehta" in shown
    assert "Only Tom Hughes" in fails(ctx, "meera", "review done REV-1", "refused")
    ok(ctx, "tom", "review done REV-1")
    assert "a finished review is not changed" in fails(ctx, "tom", 'review note REV-1 "late"')
    with ctx.sessions() as s:
        actions = [a for a, in s.execute(select(AuditRecord.action).where(AuditRecord.subject == "REV-1")
                                         .order_by(AuditRecord.id))]
    assert actions == ["review.open", "review.edit", "review.edit", "review.action", "review.done"]


def test_done_needs_what_happened_and_the_factors(ctx, clock):
    incident(ctx, clock)
    assert "needs what happened and contributing factors written" in fails(ctx, "tom", "review done REV-1")
    assert reviews(ctx)[0].state == "open"


def test_export_is_markdown_with_every_part_the_timeline_and_the_follow_ups(ctx, clock):
    inc = incident(ctx, clock)
    ok(ctx, "tom", 'review edit REV-1 what="Timeouts | retries" impact="Amex customers could not pay"')
    ok(ctx, "tom", 'review action REV-1 "Alert on Amex declines" due=2026-04-01')
    reply = ok(ctx, "priya", "review export REV-1")
    md = reply.text.strip("`\n")
    assert md.startswith(f"# REV-1 · INC-{inc} Card payments fail for Amex")
    assert "## What happened\n\nTimeouts | retries\n\n_Written by Tom Hughes," in md
    assert "## Contributing factors\n\n_Not written yet._" in md
    assert "| Time (UTC) | What | Who |" in md and "Opened as P1 | Priya Nair |" in md
    assert "| CSI-1 | Alert on Amex declines | Tom Hughes | 2026-04-01 | open |" in md


async def test_the_teams_card_form_writes_the_review_and_raises_two_follow_ups_for_the_register_and_digest(
        ctx, clock, runtime):
    from bot import render
    incident(ctx, clock)
    teams_id = ctx.config.person("tom").teams
    # `review edit REV-1` in Teams answers with a card form; its Save carries the form's name and the review.
    asked = await runtime.execute("teams", teams_id, "review edit REV-1", name="Tom Hughes")
    card = render.teams_card(asked.reply)
    [save] = card["actions"]
    assert save["type"] == "Action.Execute" and save["data"] == {"form": "review_edit", "context": {"review": 1}}
    assert {b["id"] for b in card["body"] if b["type"] == "Input.Text"} == {"what", "impact", "factors", "actions"}
    values = {"what": "Amex authorisations timed out", "impact": "", "factors": "No canary",
              "actions": "Canary certificate changes | arjun | in 3 days\nAlert on Amex declines | | 2026-03-04"}

    async def submit(inputs):  # what bot/teams.py does with an Action.Execute of a form card
        data = {**save["data"], **inputs}
        return await runtime.submit("teams", teams_id, data["form"], {k: v for k, v in data.items()
                                                                    if k not in ("form", "context")},
                                    data["context"], name="Tom Hughes")
    bad = await submit({**values, "actions": "Alert | nobody"})
    assert bad.outcome == "user_error" and "owner unknown person 'nobody'" in bad.invalid.errors["actions"]
    assert bad.reply.form.inputs[0].value == values["what"]  # shown again, as typed
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CsiItem)) == 0  # nothing half-written
    done = await submit(values)
    assert done.outcome == "ok", text_of(done.reply)
    assert "CSI-1" in done.reply.text and "CSI-2" in done.reply.text
    register = text_of(ok(ctx, "priya", "csi list"))
    assert "Canary certificate changes — Arjun Mehta" in register
    assert "Alert on Amex declines — Tom Hughes" in register
    [review] = reviews(ctx)
    assert (review.what_by, review.factors_by, review.impact_by) == ("tom", "tom", None)
    digest = ctx.config.digests[0].model_copy(update={"sections": ["reviews"]})

    def compose():
        with ctx.sessions() as s:
            return digests.compose(ctx, s, digest, clock(), clock() - timedelta(days=1))
    got = compose()  # at once: the review and both follow-ups fall due within two weeks
    body = text_of(got)
    assert "REV-1 of INC-1 P1 — Tom Hughes, due " in body
    assert "CSI-1 Canary certificate changes (REV-1) — Arjun Mehta, due " in body
    assert "CSI-2 Alert on Amex declines (REV-1) — Tom Hughes, due " in body
    assert got.data["sections"]["reviews"] == {"quiet": False, "reviews_due": 1, "reviews_overdue": 0,
                                               "actions_due": 2, "actions_overdue": 0}
    clock.advance(days=4)
    body = text_of(compose())
    assert "CSI-1 Canary certificate changes (REV-1) — Arjun Mehta, overdue since" in body
    assert "CSI-2 Alert on Amex declines (REV-1) — Tom Hughes, overdue since" in body
    assert "REV-1 of INC-1 P1 — Tom Hughes, due " in body
    clock.advance(days=2)  # the review itself is due five days after the resolution
    got = compose()
    assert "REV-1 of INC-1 P1 — Tom Hughes, overdue since" in text_of(got)
    assert got.data["sections"]["reviews"]["reviews_overdue"] == 1


def test_a_quiet_digest_says_no_reviews_are_due(ctx, clock):
    incident(ctx, clock)
    ok(ctx, "tom", 'review edit REV-1 what="x" factors="y"')
    ok(ctx, "tom", 'review action REV-1 "Later" due="in 3 weeks"')  # beyond the two weeks the section looks
    ok(ctx, "tom", "review done REV-1")
    digest = ctx.config.digests[0].model_copy(update={"sections": ["reviews"]})
    with ctx.sessions() as s:
        got = digests.compose(ctx, s, digest, clock(), clock() - timedelta(days=1))
    assert got.text == "No post-incident reviews or follow-ups due in the next two weeks."


def test_the_monthly_report_counts_reviews_done_on_time_and_follow_ups_open_by_age(ctx, clock):
    incident(ctx, clock)
    incident(ctx, clock, priority="P2")
    ok(ctx, "tom", 'review edit REV-1 what="x" factors="y"')
    ok(ctx, "tom", "review done REV-1")
    ok(ctx, "tom", 'review action REV-2 "Fix the retry budget"')
    clock.advance(days=12)  # REV-2 is due ten days after its resolution
    ok(ctx, "tom", 'review edit REV-2 what="x" factors="y"')
    ok(ctx, "tom", "review done REV-2")
    with ctx.sessions() as s:
        report = compute(ctx, s, "payments", "this-month")
    r = report.reviews
    assert (r.opened, r.done, r.done_on_time, r.open, r.overdue) == (2, 2, 1, 0, 0)
    assert r.actions_open_by_age == {"under 30 days": 1, "30–90 days": 0, "over 90 days": 0}
    from handlers.reporting.reports import report_reply
    assert "Done on time: 1 of 2" in text_of(report_reply(report))
    from bot import report_export
    assert "done on time 1 of 2" in report_export.html(report, [])


def test_gdpr_export_lists_review_authorship_and_erasure_keeps_it_as_governance(ctx, clock):
    from handlers import gdpr
    incident(ctx, clock)
    ok(ctx, "priya", 'review edit REV-1 factors="No canary"')
    ok(ctx, "tom", 'review note REV-1 "Rolled back" at="2026-03-02 09:40"')
    held = gdpr.export(ctx, "tom")["incident_reviews"]
    assert held["reviews"] == [{"review": "REV-1", "ticket": "INC-1", "owner": True, "opened": False, "done": False,
                                "wrote": []}]
    assert [(n["review"], n["text"]) for n in held["notes"]] == [("REV-1", "Rolled back")]
    assert gdpr.export(ctx, "priya")["incident_reviews"]["reviews"][0]["wrote"] == ["Contributing factors"]
    gdpr.erase(ctx, "priya")
    [review] = reviews(ctx)
    assert review.factors_by == "priya" and review.factors == "No canary"


def test_a_long_export_shows_its_first_part_in_chat_and_says_where_the_whole_file_is(ctx, clock):
    from storage.models import TicketEvent
    inc = incident(ctx, clock)
    with ctx.sessions.begin() as s:
        s.add_all(TicketEvent(ticket_id=inc, at=T0 + timedelta(seconds=n), kind="assign", value="payments-eng",
                              person_id="tom", recorded_at=clock()) for n in range(100))
    reply = ok(ctx, "tom", "review export REV-1")
    assert reply.title == "REV-1 as Markdown (the first part)" and len(reply.text) < 3000
    assert reply.text.endswith("\n…\n```") and "GET /api/v1/reviews/REV-1/markdown gives it all" in reply.footer
