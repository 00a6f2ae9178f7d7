"""A problem's known error: its workaround published as a ``known-error`` article of the knowledge library,
and announced on each open incident linked to the problem.

The article is made with the library's own functions (``knowledge.articles``: validated, versioned, audited)
and published at once; a later workaround is a new version of it. Each incident of the problem is linked to the
article (``knowledge.reuse.link``), so the library counts the article's incidents as it counts any reuse.
"""
from __future__ import annotations

from handlers.core.context import Button, Context, Reply, UserError, Work
from handlers.knowledge import articles, reuse
from handlers.problems.record import number, tickets_of
from storage.models import KbArticle, Problem, ProblemIncident, Ticket

VIA = "problem"


def publish(ctx: Context, work: Work, problem: Problem) -> KbArticle:
    """Create or revise the problem's known-error article from its fields, published; its incidents linked."""
    values = {"kind": "known-error", "title": problem.title, "services": problem.services,
              "owner": problem.owner or "", "symptom": problem.symptom or problem.title,
              "workaround": problem.workaround, "cause": problem.cause, "tags": ["problem", number(problem).lower()]}
    article = work.session.get(KbArticle, problem.article_id) if problem.article_id else None
    if article is not None and article.source:  # written in git: the library's rule is that git keeps it
        article = None
    attrs, errors = articles.validate(ctx, values, article)
    if errors:
        raise UserError("The known error cannot be published: " + "; ".join(f"{k}: {v}" for k, v in errors.items()),
                        f'problem known-error {number(problem)} workaround="Reconnect with the TCP profile"')
    author = work.actor.person_id
    if article is None:
        article = articles.create(ctx, work, attrs, state="published", via=VIA, author=author)
        problem.article_id = article.id
    else:
        articles.revise(work, article, attrs, VIA, author)
        if article.state != "published":
            articles.move(ctx, work, article, "published", VIA)
    for ticket in tickets_of(work.session, problem.id):
        reuse.link(work, ticket, article.id, VIA)
    return article


def mark_fixed(work: Work, problem: Problem, fix: str) -> None:
    """The article says what fixed it (``fixed_by``), as a new version."""
    article = work.session.get(KbArticle, problem.article_id) if problem.article_id else None
    if article is not None and not article.source:
        articles.revise(work, article, {"fixed_by": fix}, VIA, work.actor.person_id)


def announcement(problem: Problem, ticket: Ticket) -> Reply:
    kb = articles.number(problem.article_id) if problem.article_id else None
    return Reply(title=f"🩹 Known error for INC-{ticket.id}: {problem.title}",
                 text=f"*Workaround:* {articles.safe(problem.workaround)}",
                 footer=f"{number(problem)} · {kb}" if kb else number(problem),
                 buttons=[Button(f"Show {kb}", f"kb show {kb}")] if kb else [], private=False)


def on_link(ctx: Context, work: Work, problem: Problem, ticket: Ticket) -> bool:
    """Announce the workaround on a newly linked incident (once), and count it as the article's incident."""
    if problem.state != "known-error" or not problem.workaround:
        return False
    article = work.session.get(KbArticle, problem.article_id) if problem.article_id else None
    if article is not None and article.state == "published":
        reuse.link(work, ticket, article.id, VIA)
    return tell(ctx, work, problem, ticket)


def tell(ctx: Context, work: Work, problem: Problem, ticket: Ticket) -> bool:
    """Post the workaround to the incident's service channel and to whoever opened it, once per incident, and
    only while the incident is open: a resolved one needs no workaround."""
    held = work.session.get(ProblemIncident, ticket.id)
    if held is None or held.workaround_told or ticket.resolved_at is not None or ticket.closed_at is not None:
        return False
    held.workaround_told = True
    message = announcement(problem, ticket)
    key = f"problem:{problem.id}:workaround:{ticket.id}"
    service = ctx.config.service(ticket.service_id)
    if service is not None and service.channel:
        work.post_to_channel(service.channel, message, key, f"ticket:{ticket.id}")
    if ticket.opened_by and ctx.config.person(ticket.opened_by):
        work.message_person(ticket.opened_by, message, f"{key}:opener", f"ticket:{ticket.id}")
    work.audit("problem.workaround_told", number(problem), incident=f"INC-{ticket.id}")
    return True


def tell_open_incidents(ctx: Context, work: Work, problem: Problem) -> int:
    """When a problem becomes a known error, its incidents still open hear the workaround too."""
    return sum(tell(ctx, work, problem, t) for t in tickets_of(work.session, problem.id))
