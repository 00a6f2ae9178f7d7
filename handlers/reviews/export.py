"""A review as data (what ``review show``, the API and the Markdown share) and as Markdown, rendered with the
Jinja2 template ``templates/review.md.j2``, for a team's wiki or git repository."""
from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path

from sqlalchemy.orm import Session

from handlers.core.context import Context
from handlers.reviews import timeline as tl
from handlers.reviews.record import PART_NAMES, PARTS, actions_of, number, today
from storage.models import IncidentReview, Ticket


def view(ctx: Context, session: Session, review: IncidentReview, now: datetime) -> dict:
    """Everything a review says, as plain values (times as datetimes, people as ids and names)."""
    ticket = session.get(Ticket, review.ticket_id)
    name = ctx.config.person_name
    day = today(ctx, now)
    parts = []
    for word, column in PARTS.items():
        by, at = getattr(review, f"{word}_by"), getattr(review, f"{word}_at")
        parts.append({"part": word, "title": PART_NAMES[word], "text": getattr(review, column),
                      "by": by, "by_name": name(by) if by else None, "at": at})
    impact = tl.impact(ctx, session, ticket, now)
    actions = [{"id": f"CSI-{i.id}", "title": i.title, "owner": i.owner, "owner_name": name(i.owner),
                "due": i.due, "state": i.state, "overdue": i.state == "open" and i.due is not None and i.due < day}
               for i in actions_of(session, [review.id])[review.id]]
    entries = [{"at": e.at, "kind": e.kind, "text": e.text, "by": e.by, "by_name": name(e.by) if e.by else None,
                "ref": e.ref} for e in tl.timeline(ctx, session, review, ticket, now)]
    service = ctx.config.service(review.service_id)
    return {
        "id": number(review), "number": review.id, "ticket": f"INC-{ticket.id}", "title": ticket.title,
        "service": review.service_id, "service_name": service.name if service else review.service_id,
        "priority": review.priority, "owner": review.owner, "owner_name": name(review.owner), "due": review.due,
        "overdue": review.state == "open" and review.due < day, "state": review.state,
        "opened_by": review.opened_by, "opened_at": review.opened_at, "done_by": review.done_by,
        "done_at": review.done_at, "ticket_opened_at": ticket.opened_at, "ticket_resolved_at": ticket.resolved_at,
        "parts": parts, "impact": {"open_seconds": impact.open_seconds, "business_seconds": impact.business_seconds,
                                   "outage_seconds": impact.outage_seconds,
                                   "outage_business_seconds": impact.outage_business_seconds,
                                   "breached": impact.breached, "lines": tl.impact_lines(impact)},
        "timeline": entries, "actions": actions,
    }


def _cell(text) -> str:
    """Text that stays inside one cell of a Markdown table."""
    return " ".join(str(text or "").split()).replace("|", "\\|")


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "—"


@cache
def _environment():
    """Made when a review is first exported: importing Jinja would slow every start of the server."""
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["cell"] = _cell
    env.filters["when"] = _when
    return env


def markdown(data: dict) -> str:
    return _environment().get_template("review.md.j2").render(r=data)
