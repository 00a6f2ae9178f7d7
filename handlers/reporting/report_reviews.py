"""The monthly report's post-incident reviews: opened and done in the month, how many were done by their due
day, those open and overdue at the month's end (or now, for the month under way), and their follow-up actions
still open then, by age."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from handlers.core.context import Context
from handlers.reporting.report_model import ReviewStats
from handlers.reviews.record import today
from handlers.sla import attainment
from storage.models import CsiItem, IncidentReview, ReviewAction

AGES = (("under 30 days", 30), ("30–90 days", 90), ("over 90 days", None))


def review_stats(ctx: Context, session: Session, scope: str | None, period: attainment.Period) -> ReviewStats:
    as_of = min(period.end, ctx.now())
    day = today(ctx, as_of)
    in_scope = [IncidentReview.service_id == scope] if scope else []
    opened = session.scalar(select(func.count()).select_from(IncidentReview)
                            .where(period.holds(IncidentReview.opened_at), *in_scope))
    done = session.execute(select(IncidentReview.done_at, IncidentReview.due)
                           .where(period.holds(IncidentReview.done_at), *in_scope)).all()
    still_open = session.execute(
        select(IncidentReview.due).where(IncidentReview.opened_at <= as_of, *in_scope,
                                         or_(IncidentReview.done_at.is_(None), IncidentReview.done_at > as_of))).all()
    created = session.scalars(
        select(CsiItem.created_at).join(ReviewAction, ReviewAction.csi_item_id == CsiItem.id)
        .join(IncidentReview, IncidentReview.id == ReviewAction.review_id)
        .where(CsiItem.created_at <= as_of, or_(CsiItem.done_at.is_(None), CsiItem.done_at > as_of), *in_scope)).all()
    ages = {label: 0 for label, _ in AGES}
    for at in created:
        age = as_of - at
        ages[next(label for label, days in AGES if days is None or age < timedelta(days=days))] += 1
    return ReviewStats(opened=opened, done=len(done), done_on_time=sum(today(ctx, at) <= due for at, due in done),
                       open=len(still_open), overdue=sum(due < day for due, in still_open),
                       actions_open_by_age=ages)
