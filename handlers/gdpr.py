"""Personal data on request: ``svcbot gdpr export USER`` and ``svcbot gdpr erase USER``.

The export lists what svcbot holds about a person. Erasure deletes what exists only for that person's sake:
named survey answers and their comments, subscriptions, and that they opened svcbot's home; surveys still
waiting to ask them are cancelled. Records of governance (change requests and votes, tickets, knowledge
articles they own or wrote and the versions they authored, their reviews of articles, the articles they linked
to tickets, their confirmations of catalogue entries, the handovers they took over and the ticket assignments
they made, their decisions on suppliers' service credits, the post-incident reviews they own, opened, finished
or wrote parts of and their notes on those reviews' timelines, the problems they own or opened and the
incidents they linked to one, the audit log) are kept, since they account for decisions and knowledge others
rely on; the export lists them. Anonymous answers cannot be found or erased by anyone: nothing links them to a
person. Skills and team memberships are app.yaml's: the export shows them, and they are erased by taking them
out of app.yaml.
"""
from __future__ import annotations

from sqlalchemy import delete, func, or_, select, update

from handlers.core.context import Actor, Command, Context, UserError
from handlers.problems.record import personal_data as problem_data
from handlers.reviews.record import held_about
from handlers.services.catalogue_review import confirmations_by
from handlers.shifts.handover import taken_by
from handlers.surveys import asking
from storage.models import (AuditRecord, Change, ChangeVote, CreditDecision, CsiItem, HomeView, Identity, KbArticle,
                            KbReview, KbTicketLink, KbVersion, Person, Subscription, Ticket, TicketEvent)

CLI = Actor(person_id="cli", name="command line", platform="cli")


def person_of(ctx: Context, user: str) -> str:
    """A person id from app.yaml or the store, or a Slack or Teams account id of someone known."""
    with ctx.sessions() as s:
        if ctx.config.person(user) or s.get(Person, user):
            return user
        person = s.scalar(select(Identity.person_id).where(Identity.external_id == user))
    if person is None:
        known = ctx.config.person_by_platform("slack", user) or ctx.config.person_by_platform("teams", user)
        person = known.id if known else None
    if person is None:
        raise UserError(f"svcbot knows no person or account '{user}'.")
    return person


def export(ctx: Context, user: str) -> dict:
    person_id = person_of(ctx, user)
    with ctx.sessions() as s:
        row = s.get(Person, person_id)
        identities = s.execute(select(Identity.platform, Identity.external_id)
                               .where(Identity.person_id == person_id)).all()
        subscriptions = s.scalars(select(Subscription.service_id).where(Subscription.person_id == person_id)).all()
        votes = s.execute(select(ChangeVote.change_id, ChangeVote.decision, ChangeVote.comment, ChangeVote.at)
                          .where(ChangeVote.person_id == person_id).order_by(ChangeVote.id)).all()
        changes = s.scalars(select(Change.id).where(or_(Change.requester == person_id,
                                                        Change.implementer == person_id))).all()
        csi = s.execute(select(CsiItem.id, CsiItem.title, CsiItem.state)
                        .where(or_(CsiItem.owner == person_id, CsiItem.created_by == person_id))).all()
        tickets = s.scalars(select(Ticket.id).where(Ticket.opened_by == person_id)).all()
        articles = s.execute(select(KbArticle.id, KbArticle.title, KbArticle.owner, KbArticle.created_by)
                             .where(or_(KbArticle.owner == person_id, KbArticle.created_by == person_id))
                             .order_by(KbArticle.id)).all()
        versions = s.execute(select(KbVersion.article_id, KbVersion.version, KbVersion.at)
                             .where(KbVersion.author == person_id).order_by(KbVersion.id)).all()
        reviews = s.execute(select(KbReview.article_id, KbReview.outcome, KbReview.note, KbReview.at)
                            .where(KbReview.person_id == person_id).order_by(KbReview.id)).all()
        homes = s.execute(select(HomeView.platform, HomeView.opened_at, HomeView.published_at)
                          .where(HomeView.person_id == person_id)).all()
        links = s.execute(select(KbTicketLink.ticket_id, KbTicketLink.article_id, KbTicketLink.at)
                          .where(KbTicketLink.person_id == person_id).order_by(KbTicketLink.at)).all()
        confirmations = confirmations_by(s, person_id)
        assigned = s.execute(select(TicketEvent.ticket_id, TicketEvent.value, TicketEvent.at)
                             .where(TicketEvent.person_id == person_id, TicketEvent.kind == "assign")
                             .order_by(TicketEvent.at, TicketEvent.id)).all()
        handovers = taken_by(s, person_id)
        credit_decisions = s.execute(select(CreditDecision.agreement_id, CreditDecision.month, CreditDecision.status,
                                            CreditDecision.note, CreditDecision.decided_at)
                                     .where(CreditDecision.decided_by == person_id).order_by(CreditDecision.id)).all()
        audit = s.scalar(select(func.count()).where(AuditRecord.person_id == person_id))
        return {
            "person": {"id": person_id, "name": row.name if row else ctx.config.person_name(person_id),
                       "timezone": row.timezone if row else None},
            "accounts": [{"platform": p, "id": i} for p, i in identities],
            "subscriptions": list(subscriptions),
            "survey_answers": asking.named_answers(s, person_id),
            "change_votes": [{"change": f"CHG-{c}", "decision": d, "comment": m, "at": a.isoformat()}
                             for c, d, m, a in votes],
            "changes_requested_or_implemented": [f"CHG-{c}" for c in changes],
            "csi_items": [{"item": f"CSI-{i}", "title": t, "state": st} for i, t, st in csi],
            "tickets_opened": [f"INC-{t}" for t in tickets],
            "knowledge_articles": [{"article": f"KB-{i}", "title": t, "owner": o == person_id,
                                    "wrote_it": c == person_id} for i, t, o, c in articles],
            "knowledge_versions_written": [{"article": f"KB-{a}", "version": v, "at": at.isoformat()}
                                           for a, v, at in versions],
            "knowledge_reviews": [{"article": f"KB-{a}", "outcome": o, "note": n, "at": at.isoformat()}
                                  for a, o, n, at in reviews],
            "home_opened": [{"platform": p, "opened_at": o.isoformat(), "published_at": pub and pub.isoformat()}
                            for p, o, pub in homes],
            "knowledge_linked_to_tickets": [{"ticket": f"INC-{t}", "article": f"KB-{a}", "at": at.isoformat()}
                                            for t, a, at in links],
            "catalogue_confirmations": confirmations,
            "skills": list(person.skills) if (person := ctx.config.person(person_id)) else [],
            "team_memberships": [g.id for g in ctx.config.groups if person_id in g.members],
            "ticket_assignments_made": [{"ticket": f"INC-{t}", "to": v, "at": at.isoformat()}
                                        for t, v, at in assigned],
            "handovers_taken": handovers,
            "supplier_credit_decisions": [{"agreement": a, "month": m, "status": st, "note": n, "at": at.isoformat()}
                                          for a, m, st, n, at in credit_decisions],
            "incident_reviews": held_about(s, person_id),
            **problem_data(s, person_id),
            "audit_records": audit,
        }


def erase(ctx: Context, user: str) -> dict:
    person_id = person_of(ctx, user)
    with ctx.change(Command(CLI, f"gdpr erase {person_id}")) as work:
        answers = asking.erase_named_answers(work, person_id)
        subscriptions = work.session.execute(Subscription.__table__.delete()
                                             .where(Subscription.person_id == person_id)).rowcount
        homes = work.session.execute(delete(HomeView).where(HomeView.person_id == person_id)).rowcount
        # The audit keeps that a survey was answered, no longer by whom.
        work.session.execute(update(AuditRecord).where(AuditRecord.person_id == person_id,
                                                       AuditRecord.action == "survey.answer")
                             .values(person_id=None, detail={}).execution_options(synchronize_session=False))
        work.audit("gdpr.erase", person_id, survey_answers=answers, subscriptions=subscriptions, home_views=homes)
    return {"person": person_id, "survey_answers": answers, "subscriptions": subscriptions, "home_views": homes}
