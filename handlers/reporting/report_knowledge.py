"""The monthly report's knowledge section: how the library was reused in the month (incidents linked to
an article, incidents resolved with one, the most reused articles, articles no incident used for a year),
how many reviews were answered on time, the articles overdue for review per service, and the catalogue
entries awaiting their owner's confirmation. Reviews overdue and catalogue entries unconfirmed are as of
the month's end, or now for the month under way."""
from __future__ import annotations

from collections import defaultdict
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.core.context import Context
from handlers.knowledge import reuse, reviews
from handlers.reporting.report_model import ArticleUse, KnowledgeStats, StaleLine
from handlers.services import catalogue_review
from handlers.sla import attainment
from storage.models import KbArticle

TOP = 10
NO_SERVICE = "No service"


def knowledge(ctx: Context, session: Session, scope: str | None, period: attainment.Period) -> KnowledgeStats:
    now = ctx.now()
    as_of = min(period.end, now)
    services = [scope] if scope else None
    used = reuse.reuse(session, period.start, period.end, as_of, services)
    titles = dict(session.execute(select(KbArticle.id, KbArticle.title)
                                  .where(KbArticle.id.in_(list(used.linked)))).all()) if used.linked else {}
    top = sorted(used.linked.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
    overdue = reviews.overdue(session, as_of, services)
    stale: dict[str, list] = defaultdict(list)
    for article in overdue:
        for sid in (article.services or [None]):
            if scope is None or sid == scope:
                svc = ctx.config.service(sid) if sid else None
                stale[svc.name if svc else (sid or NO_SERVICE)].append(article.next_review_at)
    zone = ZoneInfo(ctx.config.bot.timezone)  # the oldest due date, as a day of the bot's zone
    lines = sorted((StaleLine(name, len(dues), min(dues).astimezone(zone).date())
                    for name, dues in stale.items()), key=lambda s: (-s.articles, s.service))
    on_time, answered = reviews.reviewed_on_time(session, period.start, period.end,
                                                 ctx.config.knowledge.reminder_days)
    catalogue = services or [s.id for s in ctx.config.services]
    unconfirmed = [ctx.config.service(o.service_id).name for o in catalogue_review.overdue(session, as_of, catalogue)]
    unused = [i for i, _ in used.unused]
    if scope:
        unused = [i for i in unused if scope in (session.get(KbArticle, i).services or [])]
    return KnowledgeStats(
        linked=sum(used.linked.values()), resolved=used.resolved, resolved_with_article=used.resolved_with_article,
        top=[ArticleUse(f"KB-{i}", titles.get(i, ""), n) for i, n in top], unused=len(unused),
        reviews_answered=answered, reviews_on_time=on_time, stale=lines, catalogue_overdue=unconfirmed)
