"""The review record: opening one (by hand or by the sweep), finding it, who may run it, and what is overdue."""
from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers.core.context import SYSTEM, Actor, Button, Context, Refused, Reply, UserError, Work
from storage.models import CsiItem, IncidentReview, ReviewAction, ReviewNote, Ticket

log = logging.getLogger("svcbot")

NUMBER = re.compile(r"^REV-?(\d{1,9})$", re.IGNORECASE)
# Tickets raised by people or systems through svcbot; an import's history (servicenow …) is never reviewed
# unasked.
LIVE_SOURCES = ("chat", "api")
PARTS = {"what": "what_happened", "impact": "impact", "factors": "factors"}  # word → column
PART_NAMES = {"what": "What happened", "impact": "Impact", "factors": "Contributing factors"}
BATCH = 100


def number(review: IncidentReview | int) -> str:
    return f"REV-{review if isinstance(review, int) else review.id}"


def today(ctx: Context, now: datetime | None = None) -> date:
    """Due dates are days of the bot's zone, as the CSI register's are."""
    return (now or ctx.now()).astimezone(ZoneInfo(ctx.config.bot.timezone)).date()


def due_for(ctx: Context, priority: str, resolved_at: datetime) -> date:
    return today(ctx, resolved_at) + timedelta(days=ctx.config.reviews.days_for(priority))


def find(session: Session, key: str, example: str, lock: bool = False) -> IncidentReview:
    m = NUMBER.match(key or "")
    review = session.get(IncidentReview, int(m[1]), with_for_update=lock or None) if m else None
    if review is None:
        raise UserError(f"There is no review '{key}'." if key else "Say which review, like REV-3.", example)
    return review


def may_run(ctx: Context, person_id: str, review: IncidentReview) -> bool:
    """The review's owner, the service's owner and the service managers write it."""
    service = ctx.config.service(review.service_id)
    return (person_id == review.owner or person_id in ctx.config.roles.service_managers
            or (service is not None and service.owner == person_id))


def refuse_unless_may_run(ctx: Context, actor: Actor, review: IncidentReview, what: str) -> None:
    if not may_run(ctx, actor.person_id, review):
        service = ctx.config.service(review.service_id)
        raise Refused(f"Only {ctx.config.person_name(review.owner)} (its owner), "
                      f"{ctx.config.person_name(service.owner) if service else 'the service owner'} (the service's "
                      f"owner) or a service manager can {what} {number(review)}.")


def default_owner(ctx: Context, ticket: Ticket) -> str:
    """The service's owner; else the first service manager."""
    service = ctx.config.service(ticket.service_id)
    if service is not None and service.owner:
        return service.owner
    managers = ctx.config.roles.service_managers
    return managers[0] if managers else "svcbot"


def open_review(work: Work, ticket: Ticket, owner: str, due: date) -> IncidentReview:
    """A new review of ``ticket``, audited, its owner asked by direct message. The ticket's unique review
    makes a second one fail (IntegrityError) inside the caller's transaction."""
    review = IncidentReview(ticket_id=ticket.id, service_id=ticket.service_id, priority=ticket.priority, owner=owner,
                            due=due, state="open", opened_by=work.actor.person_id, opened_at=work.now,
                            what_happened="", impact="", factors="")
    work.session.add(review)
    work.session.flush()
    work.audit("review.open", number(review), ticket=f"INC-{ticket.id}", owner=owner, due=due.isoformat(),
               priority=ticket.priority)
    if owner != work.actor.person_id:
        work.message_person(owner, ask_message(work.ctx, review, ticket), f"review:{review.id}:ask", number(review))
    return review


def ask_message(ctx: Context, review: IncidentReview, ticket: Ticket) -> Reply:
    n = number(review)
    service = ctx.config.service(ticket.service_id)
    return Reply(
        title=f"📝 {n}: please review INC-{ticket.id} ({ticket.priority}) by {review.due.isoformat()}",
        text=f"*{ticket.title}* on {service.name if service else ticket.service_id} was resolved. Its timeline is "
             "assembled from the ticket, the clocks, the outages and the changes before it; add what happened, "
             "the contributing factors and the follow-up actions.",
        buttons=[Button("Fill in", f"review edit {n}", "primary"), Button("Show", f"review show {n}")],
        footer=f"review note {n} \"…\" at=HH:MM annotates the timeline; review action {n} \"…\" owner=… due=… "
               "raises a follow-up")


def sweep(ctx: Context, batch: int = BATCH) -> int:
    """Open a review for each ticket of a reviewed priority resolved (through chat or the API) in the last
    ``lookback_days`` that has none; returns how many were opened. Each is its own savepoint: a review another
    sweep or replica opened first is passed over."""
    policy = ctx.config.reviews
    if not policy.priorities:
        return 0
    now = ctx.now()
    due = (Ticket.resolved_at >= now - timedelta(days=policy.lookback_days), Ticket.resolved_at <= now,
           Ticket.kind == "incident", Ticket.priority.in_(policy.priorities), Ticket.source.in_(LIVE_SOURCES),
           ~exists().where(IncidentReview.ticket_id == Ticket.id))
    # Looked for without the write lock first: nearly every sweep finds nothing to do.
    if not ctx.read(select(Ticket.id).where(*due).limit(1)):
        return 0
    opened = 0
    with ctx.sessions.begin() as session:
        query = select(Ticket).where(*due).order_by(Ticket.resolved_at, Ticket.id).limit(batch)
        if session.bind.dialect.name == "postgresql":
            query = query.with_for_update(of=Ticket, skip_locked=True)
        work = Work(ctx, session, SYSTEM)
        for ticket in session.scalars(query).all():
            ticket_id = ticket.id
            try:
                with session.begin_nested():  # the outbox row is flushed when the savepoint is released
                    open_review(work, ticket, default_owner(ctx, ticket), due_for(ctx, ticket.priority,
                                                                                  ticket.resolved_at))
            except IntegrityError:  # another sweep opened it first
                log.info("the review of INC-%s was opened by another sweep", ticket_id)
            else:
                opened += 1
    if opened:
        ctx.on_outbox()
    return opened


def sweep_quietly(ctx: Context) -> None:
    """The sweep right after a command: its failure must not turn the command's answer into one."""
    try:
        sweep(ctx)
    except Exception:
        log.exception("opening reviews after a command failed; the scheduled sweep tries again")


def actions_of(session: Session, review_ids: list[int]) -> dict[int, list[CsiItem]]:
    """Each review's follow-up actions (CSI items), in the order they were raised."""
    out: dict[int, list[CsiItem]] = {i: [] for i in review_ids}
    if not review_ids:
        return out
    rows = session.execute(select(ReviewAction.review_id, CsiItem).join(CsiItem, CsiItem.id == ReviewAction.csi_item_id)
                           .where(ReviewAction.review_id.in_(review_ids)).order_by(CsiItem.id)).all()
    for review_id, item in rows:
        out[review_id].append(item)
    return out


def overdue_reviews(session: Session, day: date, service_id: str | None = None) -> list[IncidentReview]:
    """Open reviews due before ``day`` (today: those overdue), the oldest due first."""
    query = select(IncidentReview).where(IncidentReview.state == "open", IncidentReview.due < day)
    if service_id:
        query = query.where(IncidentReview.service_id == service_id)
    return list(session.scalars(query.order_by(IncidentReview.due, IncidentReview.id)))


def overdue_actions(session: Session, day: date, service_id: str | None = None) -> list[tuple[int, CsiItem]]:
    """(review id, item) of the follow-up actions still open and due before ``day``, the oldest due first."""
    query = (select(ReviewAction.review_id, CsiItem).join(CsiItem, CsiItem.id == ReviewAction.csi_item_id)
             .where(CsiItem.state == "open", CsiItem.due < day))
    if service_id:
        query = query.join(IncidentReview, IncidentReview.id == ReviewAction.review_id) \
            .where(IncidentReview.service_id == service_id)
    return [(r, i) for r, i in session.execute(query.order_by(CsiItem.due, CsiItem.id)).all()]


def held_about(session: Session, person_id: str) -> dict:
    """What the reviews hold about a person (``svcbot gdpr export``): the reviews they own, opened or finished,
    the parts they wrote and their notes on timelines. All of it is governance, kept on erasure."""
    reviews = session.scalars(select(IncidentReview).where(
        (IncidentReview.owner == person_id) | (IncidentReview.opened_by == person_id)
        | (IncidentReview.done_by == person_id) | (IncidentReview.what_by == person_id)
        | (IncidentReview.impact_by == person_id) | (IncidentReview.factors_by == person_id))
        .order_by(IncidentReview.id)).all()
    notes = session.execute(select(ReviewNote.review_id, ReviewNote.at, ReviewNote.text, ReviewNote.written_at)
                            .where(ReviewNote.person_id == person_id).order_by(ReviewNote.id)).all()
    return {
        "reviews": [{"review": number(r), "ticket": f"INC-{r.ticket_id}", "owner": r.owner == person_id,
                     "opened": r.opened_by == person_id, "done": r.done_by == person_id,
                     "wrote": [PART_NAMES[w] for w in PARTS if getattr(r, f"{w}_by") == person_id]} for r in reviews],
        "notes": [{"review": number(i), "at": at.isoformat(), "text": text, "written_at": written.isoformat()}
                  for i, at, text, written in notes],
    }
