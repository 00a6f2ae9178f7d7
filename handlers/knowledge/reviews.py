"""Keeping the library true: when an article's review falls due its owner is asked by direct message,
*Still right* (verified, the next review scheduled), *Needs work* (flagged, a CSI item offered) or
*Retire*; reminded once, then the service managers are told. The buttons run ``kb review KB-N verified``,
``… needs-work`` and ``… retire``; each answer is a ``kb_reviews`` row and an audit record.

An article without an owner (a runbook synced from git names none) is asked of the owners of its
services, and without services of the service managers. The asking follows a ladder (``LADDER``) kept in
``kb_articles.review_stage``: 0 not asked, 1 asked, 2 reminded, 3 the service managers told (or flagged as
needing work). Messages wait for the end of the person's quiet hours. ``ladder_due`` is shared with the
catalogue's confirmations (handlers/services/catalogue_review.py).
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from handlers.core.context import SYSTEM, Button, Command, Context, Reply, Section, UserError, Work
from handlers.knowledge.articles import (find, id_from, move, number, refuse_if_from_git, refuse_unless_manager,
                                         safe, when)
from storage.models import AuditRecord, KbArticle, KbReview

OUTCOMES = {"verified": "still right", "needs-work": "needs work", "retire": "retired"}
REVIEW_EXAMPLE = "kb review KB-12 verified"
STEPS = ("ask", "remind", "escalate")
DONE = 3  # the last rung: nothing more is sent until it is answered
BATCH = 200
SHOWN = 10  # articles with their buttons in one message (Slack takes 50 blocks)


def ladder_due(due_column, stage_column, now: datetime, policy):
    """The rows whose next rung is due: asked at ``due``, reminded ``reminder_days`` later, the service
    managers told ``escalate_days`` later."""
    return or_(and_(stage_column == 0, due_column <= now),
               and_(stage_column == 1, due_column <= now - timedelta(days=policy.reminder_days)),
               and_(stage_column == 2, due_column <= now - timedelta(days=policy.escalate_days)))


def askers(ctx: Context, article: KbArticle) -> list[str]:
    """Who is asked to review: its owner, else its services' owners, else the service managers."""
    if article.owner:
        return [article.owner]
    owners = [svc.owner for sid in article.services if (svc := ctx.config.service(sid)) and svc.owner]
    return list(dict.fromkeys(owners)) or list(ctx.config.roles.service_managers)


def review_message(ctx: Context, article: KbArticle, step: str, zone: str = "UTC") -> Reply:
    n = number(article)
    lead = {"ask": "Its review is due", "remind": "A reminder: its review is overdue",
            "escalate": "Its review is overdue and its owner has not answered"}[step]
    text = (f"{lead} (due {when(article.next_review_at, zone)}, every {article.review_days} days). "
            f"Is it still right?")
    buttons = [] if step == "escalate" else [
        Button("Still right", f"kb review {n} verified", "primary"), Button("Needs work", f"kb review {n} needs-work"),
        Button("Retire", f"kb review {n} retire", "danger")]
    return Reply(title=f"📋 {n} · {safe(article.title)}", text=text, buttons=buttons,
                 footer=f"kb show {n} · owner {ctx.config.person_name(article.owner)}",
                 tone="warning" if step != "ask" else "info")


def sweep(ctx: Context, batch: int = BATCH) -> int:
    """Move every due review one rung up its ladder; returns the messages queued. A person with several
    articles on the same rung at once (a synced folder's runbooks, published together) gets one message
    listing them, not one each."""
    now, policy, sent = ctx.now(), ctx.config.knowledge, 0
    with ctx.sessions.begin() as session:
        query = (select(KbArticle).where(KbArticle.state == "published",
                                         ladder_due(KbArticle.next_review_at, KbArticle.review_stage, now, policy))
                 .order_by(KbArticle.next_review_at, KbArticle.id).limit(batch))
        if session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        work = Work(ctx, session, SYSTEM)
        asked: dict[tuple[str, str], list[KbArticle]] = defaultdict(list)
        for article in session.scalars(query).all():
            step = STEPS[article.review_stage]
            article.review_stage += 1
            people = list(ctx.config.roles.service_managers) if step == "escalate" else askers(ctx, article)
            for pid in people:
                asked[(pid, step)].append(article)
            work.audit(f"kb.review.{step}", number(article), to=people, due=article.next_review_at.isoformat())
        for (pid, step), articles in asked.items():
            person = ctx.config.person(pid)
            zone = (person.timezone if person else None) or "UTC"
            first = articles[0]
            if len(articles) == 1:
                message = review_message(ctx, first, step, zone)
                key = f"kb:review:{first.id}:{first.next_review_at:%Y%m%dT%H%M%S}:{step}:{pid}"
            else:
                message = many_message(ctx, articles, step, zone)
                key = f"kb:reviews:{now:%Y%m%dT%H%M%S}:{first.id}:{step}:{pid}"
            sent += len(work.message_person(pid, message, key, number(first), hold_in_quiet_hours=True))
    if sent:
        ctx.on_outbox()
    return sent


def many_message(ctx: Context, articles: list[KbArticle], step: str, zone: str) -> Reply:
    """Several due reviews in one message: each article with its own buttons, the first few of them."""
    sections = []
    for article in articles[:SHOWN]:
        one = review_message(ctx, article, step, zone)
        sections.append(Section(title=one.title, text=f"due {when(article.next_review_at, zone)}",
                                buttons=one.buttons))
    more = len(articles) - SHOWN
    lead = {"ask": "are due for review", "remind": "are overdue for review (a reminder)",
            "escalate": "are overdue for review and their owners have not answered"}[step]
    return Reply(title=f"📋 {len(articles)} knowledge articles {lead}", sections=sections,
                 text="Is each still right?" if step != "escalate" else "",
                 footer=(f"and {more} more; " if more > 0 else "") + "answer one with kb review KB-N verified",
                 tone="info" if step == "ask" else "warning")


def answer(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    """``kb review KB-N verified|needs-work|retire``: the owner's answer to a due review."""
    article_id = id_from(args, REVIEW_EXAMPLE)
    outcome = args[1].lower() if len(args) > 1 else ""
    if outcome not in OUTCOMES:
        raise UserError(f"Say how it is: {', '.join(OUTCOMES)}.", REVIEW_EXAMPLE)
    note = " ".join(args[2:])
    with ctx.change(cmd) as work:
        article = find(work.session, article_id, lock=True)
        refuse_unless_manager(ctx, cmd.actor, article, "review")
        if article.state != "published":
            raise UserError(f"{number(article)} is {article.state}; only a published article is reviewed.",
                            f"kb show {number(article)}")
        if outcome == "retire":
            refuse_if_from_git(article, "delete its file")
        work.session.add(KbReview(article_id=article.id, person_id=cmd.actor.person_id, outcome=outcome, note=note,
                                  at=work.now))
        work.audit("kb.review", number(article), outcome=outcome, via=cmd.via, due=_iso(article.next_review_at))
        if outcome == "verified":
            article.reviewed_at, article.review_stage = work.now, 0
            article.next_review_at = work.now + timedelta(days=article.review_days)
        elif outcome == "needs-work":
            article.review_stage = DONE  # flagged: stays overdue, and no one is chased for it any more
        else:
            move(ctx, work, article, "retired", cmd.via)
        next_review = article.next_review_at
    n = number(article)
    if outcome == "verified":
        return Reply(title=f"{n} verified · {article.title}", tone="ok",
                     text=f"Thank you. Next review {when(next_review, cmd.actor.timezone)}.")
    if outcome == "retire":
        return Reply(title=f"{n} retired · {article.title}", tone="ok", text="It is no longer found or suggested.")
    service = article.services[0] if article.services else None
    title = f"Rework {n}: {article.title}".replace('"', "'")[:200]
    csi = f'csi add title="{title}" owner={cmd.actor.person_id} due="in 2 weeks"' + \
        (f" service={service}" if service else "")
    return Reply(title=f"{n} flagged: needs work · {article.title}", tone="warning",
                 text="It stays on the overdue list until it is edited and verified again "
                      f"(`kb review {n} verified`).",
                 buttons=[Button("Open a CSI item", csi), Button("Edit", f"kb edit {n}")])


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def overdue(session: Session, now: datetime, services: list[str] | None = None) -> list[KbArticle]:
    """Published articles whose review is past due (those flagged as needing work too), oldest first."""
    rows = session.scalars(select(KbArticle).where(KbArticle.state == "published", KbArticle.next_review_at <= now)
                           .order_by(KbArticle.next_review_at, KbArticle.id)).all()
    if services is None:
        return list(rows)
    return [a for a in rows if set(a.services) & set(services)]


def flagged(session: Session, article_id: int) -> bool:
    last = session.scalar(select(KbReview.outcome).where(KbReview.article_id == article_id)
                          .order_by(KbReview.at.desc(), KbReview.id.desc()).limit(1))
    return last == "needs-work"


def reviewed_on_time(session: Session, start: datetime, end: datetime, grace_days: int) -> tuple[int, int]:
    """(reviews answered in the period before their reminder was due, all reviews answered in the period):
    from the audit of each answer, which keeps when it was due."""
    rows = session.execute(select(AuditRecord.at, AuditRecord.detail).where(
        AuditRecord.action == "kb.review", AuditRecord.at >= start, AuditRecord.at < end)).all()
    answered = [(at, d.get("due")) for at, d in rows]
    grace = timedelta(days=grace_days)
    on_time = sum(1 for at, due in answered if due is None or at <= datetime.fromisoformat(due) + grace)
    return on_time, len(answered)
