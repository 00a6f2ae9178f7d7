"""Knowledge in the work itself: articles suggested when an incident opens, the runbook an alert names,
an article linked to the ticket it helped with, and how often articles are reused.

Suggestions are a search of the incident's title over the published articles of its service and those
for no service in particular (a runbook synced from git usually names none). An alert's runbook is the
published article that answers its ``alertname`` (``kb_article_alerts``), else the one whose git path
matches the alert's ``runbook_url`` (the Prometheus Operator's alerts point at
``runbooks.prometheus-operator.dev/runbooks/<group>/<alertname>``, lower-cased by Hugo, and a synced
article's ``source`` is ``<group>/<AlertName>.md``), else the URL itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers.core.context import Button, Section, UserError, Work
from handlers.knowledge import search as library
from handlers.knowledge.articles import find, number, safe
from storage.models import KbAlert, KbArticle, KbTicketLink, Ticket

SUGGESTED = 3
CANDIDATES = 20  # search hits looked at to find three of the right service
UNUSED_AFTER = timedelta(days=365)
URL_SEGMENTS = 3  # of a runbook_url's path matched against a synced article's path, longest first


@dataclass
class Suggestion:
    id: int
    title: str
    kind: str
    snippet: str

    @property
    def number(self) -> str:
        return number(self.id)


def suggest(session: Session, service_id: str, title: str, limit: int = SUGGESTED) -> list[Suggestion]:
    """Up to ``limit`` published articles for the service and the title, the most relevant first."""
    hits = library.search(session, title, CANDIDATES)
    fitting = [h for h in hits if not h.services or service_id in h.services][:limit]
    return [Suggestion(h.id, h.title, h.kind, library.plain_snippet(h.snippet)) for h in fitting]


def suggestions_section(suggestions: list[Suggestion], ticket_number: str) -> Section | None:
    """The suggestions as a reply's section, with a *This helped* button for each."""
    if not suggestions:
        return None
    lines = [f"*{s.number}* {safe(s.title)} ({s.kind})" for s in suggestions]
    return Section(title="From the knowledge library", text="\n".join(lines),
                   buttons=[Button(f"This helped: {s.number}", f"incident kb {ticket_number} {s.number}")
                            for s in suggestions])


def suggestion_views(suggestions: list[Suggestion]) -> list[dict]:
    return [{"id": s.number, "title": s.title, "kind": s.kind, "snippet": s.snippet} for s in suggestions]


# ---- an alert's runbook --------------------------------------------------------------------------------

def runbook_for(session: Session, alertname: str | None,
                runbook_url: str | None) -> tuple[KbArticle | None, str | None]:
    """The published article that answers the alert, and what the outage records of it: ``KB-N``, else the
    alert's runbook_url, else None."""
    if alertname:
        article = session.scalar(select(KbArticle).join(KbAlert, KbAlert.article_id == KbArticle.id)
                                 .where(KbAlert.alert == alertname, KbArticle.state == "published")
                                 .order_by(KbArticle.id).limit(1))
        if article is not None:
            return article, number(article)
    if runbook_url:
        article = _by_url(session, runbook_url)
        if article is not None:
            return article, number(article)
        return None, runbook_url[:500]
    return None, None


def _by_url(session: Session, url: str) -> KbArticle | None:
    path = urlsplit(url.strip()).path.strip("/")
    for ending in (".md", ".html", "/index"):
        path = path.removesuffix(ending)
    segments = [s for s in path.lower().split("/") if s]
    source = func.lower(KbArticle.source)
    for k in range(min(URL_SEGMENTS, len(segments)), 0, -1):
        tail = "/".join(segments[-k:]) + ".md"
        article = session.scalar(
            select(KbArticle).where(KbArticle.state == "published", KbArticle.source.is_not(None),
                                    (source == tail) | source.endswith("/" + tail, autoescape=True))
            .order_by(KbArticle.id).limit(1))
        if article is not None:
            return article
    return None


# ---- linking an article to a ticket --------------------------------------------------------------------

def link(work: Work, ticket: Ticket, article_id: int, via: str) -> tuple[KbArticle, bool]:
    """Link the article to the ticket, once: returns it and whether the link is new (audited then)."""
    article = find(work.session, article_id)
    if article.state != "published" and work.session.get(KbTicketLink, (ticket.id, article.id)) is None:
        raise UserError(f"{number(article)} is {article.state}; only a published article can be linked.",
                        f"kb show {number(article)}")
    if work.session.get(KbTicketLink, (ticket.id, article.id)) is not None:
        return article, False
    try:
        with work.session.begin_nested():
            work.session.add(KbTicketLink(ticket_id=ticket.id, article_id=article.id,
                                          person_id=work.actor.person_id if work.actor else None, via=via,
                                          at=work.now))
    except IntegrityError:  # the same click, twice at once
        return article, False
    work.audit("incident.kb", f"INC-{ticket.id}", article=number(article), via=via)
    return article, True


def linked_articles(session: Session, ticket_id: int) -> list[tuple[int, str]]:
    return [(r.id, r.title) for r in session.execute(
        select(KbArticle.id, KbArticle.title).join(KbTicketLink, KbTicketLink.article_id == KbArticle.id)
        .where(KbTicketLink.ticket_id == ticket_id).order_by(KbTicketLink.at, KbArticle.id))]


# ---- reuse ---------------------------------------------------------------------------------------------

@dataclass
class Reuse:
    linked: dict[int, int]  # article id → incidents linked in the period
    resolved_with_article: int  # incidents resolved in the period with an article linked
    resolved: int  # incidents resolved in the period
    unused: list[tuple[int, str]]  # published articles not linked to any incident for a year


def reuse(session: Session, start: datetime, end: datetime, now: datetime,
          services: list[str] | None = None) -> Reuse:
    """How the library was reused between start and end; ``services`` narrows it to their tickets."""
    linked_q = (select(KbTicketLink.article_id, func.count()).join(Ticket, Ticket.id == KbTicketLink.ticket_id)
                .where(KbTicketLink.at >= start, KbTicketLink.at < end).group_by(KbTicketLink.article_id))
    resolved_q = select(func.count()).select_from(Ticket).where(
        Ticket.resolved_at >= start, Ticket.resolved_at < end, Ticket.kind == "incident")
    if services is not None:
        linked_q = linked_q.where(Ticket.service_id.in_(services))
        resolved_q = resolved_q.where(Ticket.service_id.in_(services))
    with_article = resolved_q.where(Ticket.id.in_(select(KbTicketLink.ticket_id)))
    used = select(KbTicketLink.article_id).where(KbTicketLink.at >= now - UNUSED_AFTER)
    unused = session.execute(
        select(KbArticle.id, KbArticle.title).where(KbArticle.state == "published",
                                                    KbArticle.published_at < now - UNUSED_AFTER,
                                                    KbArticle.id.not_in(used)).order_by(KbArticle.id)).all()
    return Reuse(linked=dict(session.execute(linked_q).all()),
                 resolved_with_article=session.scalar(with_article) or 0,
                 resolved=session.scalar(resolved_q) or 0, unused=[(r.id, r.title) for r in unused])
