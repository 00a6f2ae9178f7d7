"""The catalogue kept true: every ``catalogue.review_days`` each service's owner confirms its catalogue entry
(description, owner, team, tier, suppliers, calendar) by a direct message with *Confirm* / *Needs change*
(``catalogue confirm SERVICE``, ``catalogue change SERVICE``); reminded once, then the service managers are
told, on the same ladder as an article's review (handlers/knowledge/reviews.py).

A service's first confirmation falls due one interval after svcbot first sees it in app.yaml (a row of
``catalogue_reviews``); each answer is a ``catalogue_confirmations`` row and an audit record. *Needs
change* leaves the entry overdue, and no one is chased for it any more, until it is confirmed: the entry
itself is configuration, changed in app.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers.core.catalogue import find_service, may_set_status
from handlers.core.config_catalogue import Service
from handlers.core.context import (SYSTEM, Button, Command, Context, Field, Refused, Reply, Section, UserError, Work,
                                   unknown_word)
from handlers.knowledge.reviews import DONE, STEPS, ladder_due
from storage.models import CatalogueConfirmation, CatalogueReview

CONFIRM_EXAMPLE = "catalogue confirm payments"
OUTCOMES = {"confirm": "confirmed", "change": "needs-change", "needs-change": "needs-change"}
BATCH = 200


@dataclass
class Overdue:
    service_id: str
    due_at: datetime
    needs_change: bool  # its owner said it needs change and has not confirmed it since


def entry_fields(ctx: Context, svc: Service) -> list[Field]:
    cfg = ctx.config
    team = cfg.group(svc.team) if svc.team else None
    return [Field("Description", svc.description or "—"), Field("Owner", cfg.person_name(svc.owner)),
            Field("Team", team.name if team else "—"), Field("Tier", str(svc.tier)),
            Field("Suppliers", ", ".join(g.name if (g := cfg.group(x)) else x for x in svc.suppliers) or "—"),
            Field("Calendar", svc.calendar)]


def confirm_message(ctx: Context, svc: Service, step: str) -> Reply:
    lead = {"ask": "Is your service's catalogue entry still right?",
            "remind": "A reminder: your service's catalogue entry is waiting for your confirmation.",
            "escalate": f"The catalogue entry of {svc.name} is overdue for confirmation and its owner "
                        f"({ctx.config.person_name(svc.owner)}) has not answered."}[step]
    buttons = [] if step == "escalate" else [Button("Confirm", f"catalogue confirm {svc.id}", "primary"),
                                             Button("Needs change", f"catalogue change {svc.id}")]
    return Reply(title=f"📇 {svc.name}: catalogue entry", text=lead,
                 sections=[Section(fields=entry_fields(ctx, svc))],
                 buttons=buttons, footer=f"status {svc.id}", tone="info" if step == "ask" else "warning")


def sweep(ctx: Context, batch: int = BATCH) -> int:
    """Start the cycle of services seen for the first time, and move every due one a rung up its ladder."""
    now, policy, sent = ctx.now(), ctx.config.catalogue, 0
    with ctx.sessions.begin() as session:
        known = set(session.scalars(select(CatalogueReview.service_id)))
        for svc in ctx.config.services:
            if svc.id not in known:
                try:
                    with session.begin_nested():
                        session.add(CatalogueReview(service_id=svc.id, due_at=now + timedelta(days=policy.review_days),
                                                    stage=0))
                except IntegrityError:  # another replica saw it first
                    pass
        query = (select(CatalogueReview).where(ladder_due(CatalogueReview.due_at, CatalogueReview.stage, now, policy),
                                               CatalogueReview.service_id.in_([s.id for s in ctx.config.services]))
                 .order_by(CatalogueReview.due_at).limit(batch))
        if session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        work = Work(ctx, session, SYSTEM)
        for review in session.scalars(query).all():
            svc = ctx.config.service(review.service_id)
            step = STEPS[review.stage]
            review.stage += 1
            people = list(ctx.config.roles.service_managers) if step == "escalate" else [svc.owner]
            message = confirm_message(ctx, svc, step)
            for pid in people:
                sent += len(work.message_person(pid, message, f"catalogue:{svc.id}:{review.due_at:%Y%m%dT%H%M%S}:"
                                                f"{step}:{pid}", f"service:{svc.id}", hold_in_quiet_hours=True))
            work.audit(f"catalogue.{step}", f"service:{svc.id}", to=people, due=review.due_at.isoformat())
    if sent:
        ctx.on_outbox()
    return sent


def catalogue_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    verb = args[0].lower() if args else ""
    if verb not in OUTCOMES:
        raise unknown_word("catalogue", verb, args[1:], ("confirm", "change"), CONFIRM_EXAMPLE) if verb else \
            UserError("Say confirm or change, and the service.", CONFIRM_EXAMPLE)
    svc = find_service(ctx, args[1] if len(args) > 1 else "", CONFIRM_EXAMPLE)
    if not may_set_status(ctx, cmd.actor.person_id, svc):
        raise Refused(f"Only {svc.name}'s owner, its team or a service manager can confirm its catalogue entry.")
    outcome = OUTCOMES[verb]
    policy = ctx.config.catalogue
    with ctx.change(cmd) as work:
        review = work.session.get(CatalogueReview, svc.id)
        if review is None:
            review = CatalogueReview(service_id=svc.id, due_at=work.now, stage=0)
            work.session.add(review)
        work.session.add(CatalogueConfirmation(service_id=svc.id, person_id=cmd.actor.person_id, outcome=outcome,
                                               at=work.now))
        work.audit(f"catalogue.{outcome}", f"service:{svc.id}", via=cmd.via, due=review.due_at.isoformat())
        if outcome == "confirmed":
            review.confirmed_at, review.confirmed_by, review.stage = work.now, cmd.actor.person_id, 0
            review.due_at = work.now + timedelta(days=policy.review_days)
        else:
            review.stage = DONE
            review.due_at = min(review.due_at, work.now)
        due = review.due_at
    if outcome == "confirmed":
        return Reply(title=f"{svc.name}: catalogue entry confirmed", tone="ok",
                     text=f"Thank you. It is asked again in {policy.review_days} days ({due:%Y-%m-%d}).")
    return Reply(title=f"{svc.name}: catalogue entry needs change", tone="warning",
                 text="The catalogue is kept in app.yaml: change the entry there, then confirm it "
                      f"(`catalogue confirm {svc.id}`). Until then it shows as overdue.",
                 buttons=[Button("Confirm", f"catalogue confirm {svc.id}")])


def overdue(session: Session, now: datetime, services: list[str]) -> list[Overdue]:
    """Catalogue entries of these services whose confirmation is past due, the longest overdue first (a
    service gone from app.yaml has no entry to confirm: callers pass the catalogue's)."""
    query = (select(CatalogueReview).where(CatalogueReview.due_at <= now, CatalogueReview.service_id.in_(services))
             .order_by(CatalogueReview.due_at))
    return [Overdue(r.service_id, r.due_at, _last_outcome(session, r.service_id) == "needs-change")
            for r in session.scalars(query).all()]


def _last_outcome(session: Session, service_id: str) -> str | None:
    return session.scalar(select(CatalogueConfirmation.outcome).where(CatalogueConfirmation.service_id == service_id)
                          .order_by(CatalogueConfirmation.at.desc(), CatalogueConfirmation.id.desc()).limit(1))


def confirmations_by(session: Session, person_id: str) -> list[dict]:
    """A person's answers, for their GDPR export."""
    rows = session.scalars(select(CatalogueConfirmation).where(CatalogueConfirmation.person_id == person_id)
                           .order_by(CatalogueConfirmation.at, CatalogueConfirmation.id))
    return [{"service": r.service_id, "outcome": r.outcome, "at": r.at.isoformat()} for r in rows]
