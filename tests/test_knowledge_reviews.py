"""Keeping knowledge true (handlers/knowledge/reviews.py, handlers/services/catalogue_review.py): a due
review asks the article's owner by direct message, reminds once, then tells the service managers; the
answers (*Still right*, *Needs work*, *Retire*) are the buttons' ordinary words. The same ladder asks each
service owner to confirm their catalogue entry. Handler level, with the test clock."""
from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from bot import render
from handlers import gdpr
from handlers.core.context import Reply
from handlers.core import quiet_hours
from handlers.knowledge import reviews
from handlers.services import catalogue_review
from storage.models import KbArticle, KbReview, OutboxMessage
from tests.test_knowledge import KNOWN_ERROR, RELAY, audits, new, ok, run


def dms(ctx, pid: str, after_id: int = 0) -> list[OutboxMessage]:
    """Direct messages queued for a person (on the one platform they prefer)."""
    p = ctx.config.person(pid)
    with ctx.sessions() as s:
        return s.scalars(select(OutboxMessage).where(
            OutboxMessage.target_kind == "person", OutboxMessage.target.in_([p.slack, p.teams]),
            OutboxMessage.id > after_id).order_by(OutboxMessage.id)).all()


def last_id(ctx) -> int:
    with ctx.sessions() as s:
        return s.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1)) or 0


def buttons(row: OutboxMessage) -> dict[str, str]:
    return {b["label"]: b["run"] for b in row.message["buttons"]}


def published(ctx, pid: str, text: str) -> int:
    kb = new(ctx, pid, text)
    ok(ctx, pid, f"kb publish KB-{kb}")
    return kb


def test_a_due_review_asks_the_owner_reminds_once_then_tells_the_service_manager(ctx, clock):
    kb = published(ctx, "sanne", KNOWN_ERROR)
    with ctx.sessions() as s:
        due = s.get(KbArticle, kb).next_review_at
    clock.to(due - timedelta(minutes=1))
    assert reviews.sweep(ctx) == 0
    clock.to(due)
    assert reviews.sweep(ctx) == 1 and reviews.sweep(ctx) == 0
    [asked] = dms(ctx, "sanne")
    assert set(buttons(asked)) == {"Still right", "Needs work", "Retire"}
    for rendered in (render.slack_message(Reply.from_dict(asked.message)),
                     render.teams_card(Reply.from_dict(asked.message))):  # each platform shows the three buttons
        assert all(run in json.dumps(rendered) for run in buttons(asked).values())
    policy = ctx.config.knowledge
    clock.to(due + timedelta(days=policy.reminder_days))
    mark = last_id(ctx)
    assert reviews.sweep(ctx) == 1 and reviews.sweep(ctx) == 0
    assert len(dms(ctx, "sanne", mark)) == 1 and dms(ctx, "priya", mark) == []
    clock.to(due + timedelta(days=policy.escalate_days))
    mark = last_id(ctx)
    assert reviews.sweep(ctx) == 1
    [told] = dms(ctx, "priya", mark)
    assert "has not answered" in told.message["text"] and told.message["buttons"] == []
    clock.advance(days=30)
    assert reviews.sweep(ctx) == 0  # nothing more until it is answered
    with ctx.sessions() as s:
        assert [a.id for a in reviews.overdue(s, clock())] == [kb]

    reply, outcome = run(ctx, "tom", buttons(asked)["Still right"])
    assert outcome == "refused"
    ok(ctx, "sanne", buttons(asked)["Still right"])
    with ctx.sessions() as s:
        article = s.get(KbArticle, kb)
        assert (article.reviewed_at, article.review_stage) == (clock(), 0)
        assert article.next_review_at == clock() + timedelta(days=article.review_days)
        assert [(r.person_id, r.outcome) for r in s.scalars(select(KbReview))] == [("sanne", "verified")]
        assert reviews.overdue(s, clock()) == []
        on_time, answered = reviews.reviewed_on_time(s, due, clock() + timedelta(seconds=1), policy.reminder_days)
    assert (on_time, answered) == (0, 1)  # answered after the service managers were told
    assert audits(ctx, f"KB-{kb}")[-4:] == ["kb.review.ask", "kb.review.remind", "kb.review.escalate", "kb.review"]
    clock.to(article.next_review_at)
    assert reviews.sweep(ctx) == 1  # the next review is asked in its turn


def test_needs_work_flags_it_and_offers_a_csi_item_and_retire_takes_it_out(ctx, clock):
    vpn = published(ctx, "sanne", KNOWN_ERROR)
    relay = published(ctx, "lucas", RELAY)
    clock.advance(days=400)
    reviews.sweep(ctx)
    needs_work = buttons(dms(ctx, "sanne")[-1])["Needs work"]
    reply = ok(ctx, "sanne", needs_work)
    assert "flagged" in reply.title
    shown = ok(ctx, "sanne", f"kb show KB-{vpn}").sections[0].fields
    assert "needs work" in {f.label: f.value for f in shown}["Review"]
    csi = next(b.run for b in reply.buttons if b.label == "Open a CSI item")
    assert ok(ctx, "sanne", csi).title.startswith("CSI-")
    with ctx.sessions() as s:
        assert reviews.flagged(s, vpn) and [a.id for a in reviews.overdue(s, clock())] == [vpn, relay]
    clock.advance(days=30)
    mark = last_id(ctx)
    reviews.sweep(ctx)  # the relay's owner is reminded, and then the service managers told; the flagged one rests
    reviews.sweep(ctx)
    told = [m.message["title"] for m in dms(ctx, "priya", mark)]
    assert told and all(f"KB-{relay} ·" in t for t in told)

    ok(ctx, "lucas", buttons(dms(ctx, "lucas")[0])["Retire"])
    with ctx.sessions() as s:
        assert s.get(KbArticle, relay).state == "retired"
    reply, outcome = run(ctx, "lucas", f"kb review KB-{relay} verified")
    assert outcome != "ok" and "retired" in reply.text
    exported = gdpr.export(ctx, "sanne")
    assert [r["outcome"] for r in exported["knowledge_reviews"]] == ["needs-work"]


def test_every_service_owner_confirms_their_catalogue_entry_in_their_own_morning(ctx, clock):
    policy = ctx.config.catalogue
    assert catalogue_review.sweep(ctx) == 0  # first seen: due one interval later
    due = clock() + timedelta(days=policy.review_days)
    # 23:00 in Pune, where meera (data-platform's owner) keeps quiet hours from 22:00.
    night = due.replace(hour=17, minute=30, second=0, microsecond=0)
    clock.to(night if night >= due else night + timedelta(days=1))
    asked = catalogue_review.sweep(ctx)
    assert asked == len(ctx.config.services)
    [meera] = dms(ctx, "meera")
    assert meera.next_attempt_at == quiet_hours.release_at(ctx.config, "meera", clock()) > clock()
    [tom] = dms(ctx, "tom")
    assert {f["label"] for f in tom.message["sections"][0]["fields"]} == {
        "Description", "Owner", "Team", "Tier", "Suppliers", "Calendar"}
    assert "unconfirmed since" in _catalogue_field(ok(ctx, "tom", "status payments"))

    reply, outcome = run(ctx, "arjun", buttons(tom)["Confirm"])
    assert outcome == "refused"
    ok(ctx, "tom", buttons(tom)["Confirm"])
    assert _catalogue_field(ok(ctx, "tom", "status payments")) is None
    ok(ctx, "grace", buttons(dms(ctx, "grace")[0])["Needs change"])
    assert "needs change" in _catalogue_field(ok(ctx, "grace", "status webshop"))
    clock.advance(days=policy.escalate_days)
    mark = last_id(ctx)
    catalogue_review.sweep(ctx)  # the others are reminded, then the service managers told
    catalogue_review.sweep(ctx)
    told = [m.message["title"] for m in dms(ctx, "priya", mark)]
    assert told and not any("Payments" in t or "Webshop" in t for t in told)  # answered ones are not chased
    with ctx.sessions() as s:
        overdue = {o.service_id: o.needs_change for o in catalogue_review.overdue(s, clock(), ["payments", "webshop"])}
    assert overdue["webshop"] is True and "payments" not in overdue
    assert gdpr.export(ctx, "tom")["catalogue_confirmations"][0]["outcome"] == "confirmed"


def _catalogue_field(reply) -> str | None:
    return next((f.value for f in reply.sections[0].fields if f.label == "Catalogue entry"), None)


def test_overdue_reviews_and_confirmations_show_in_the_knowledge_digest_section(ctx, clock):
    from handlers.reporting import digests
    digest = ctx.config.digests[0].model_copy(update={"sections": ["knowledge"]})
    with ctx.sessions() as s:
        assert digests.compose(ctx, s, digest, clock(), clock()).title.startswith("☀️")  # nothing overdue
    kb = published(ctx, "sanne", KNOWN_ERROR)
    catalogue_review.sweep(ctx)
    clock.advance(days=120)
    ok(ctx, "tom", "catalogue confirm payments")
    with ctx.sessions() as s:
        posted = digests.compose(ctx, s, digest, clock(), clock())
    [section] = posted.sections
    assert section.text.splitlines()[0].startswith(f"KB-{kb} VPN drops every 30 minutes — Sanne")
    assert "Catalogue entry of Email" in section.text and "Catalogue entry of Payments" not in section.text
    assert posted.data["sections"]["knowledge"] == {"quiet": False, "articles_overdue": 1,
                                                   "catalogue_overdue": len(ctx.config.services) - 1}


def test_the_runbooks_of_a_synced_folder_fall_due_together_and_are_asked_in_one_message(ctx, clock, tmp_path):
    from tests.test_knowledge_work import synced
    synced(ctx, tmp_path)  # four real runbooks without an owner or services: the service manager reviews them
    clock.advance(days=ctx.config.knowledge.review_days_for("runbook"))
    assert reviews.sweep(ctx) == 1
    [asked] = dms(ctx, "priya")
    assert asked.message["title"] == "📋 4 knowledge articles are due for review"
    assert all(len(s["buttons"]) == 3 for s in asked.message["sections"]) and len(asked.message["sections"]) == 4
    assert json.dumps(render.slack_message(Reply.from_dict(asked.message)))
    kb = asked.message["sections"][0]["title"].split(" ")[1]
    ok(ctx, "priya", f"kb review {kb} verified")
    with ctx.sessions() as s:
        assert len(reviews.overdue(s, clock())) == 3
