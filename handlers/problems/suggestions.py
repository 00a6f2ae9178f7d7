"""Suggesting a problem: three or more incidents of one service, opened within seven days, not linked to a
problem, whose titles match each other, are told to the service's owner once.

"Match" is the store's own full-text engine, as the knowledge library's search uses it: the words of the
first incident's title (stop words left out, as ``knowledge.search.terms`` does) are the query, and another
incident matches when its title has at least two of them, stemmed as the engine stems (``restarting`` is
*restart*) — any two, as a pair of words is what two people describe the same failure with. SQLite: FTS5 with
the library's tokenizer over a temporary table of the few candidates; PostgreSQL: ``to_tsvector('english',
title)`` against ``plainto_tsquery`` pairs, on the candidates only, so no index of every ticket's title is
kept (and no import pays for one). A title of one word needs that word.

The incidents of a cluster told are rows of ``problem_suggestions`` (one per incident, its primary key), written
with the outbox row of the message: a second sweep, or another replica, fails to insert them and tells nobody.
An incident is suggested once; a later cluster needs three incidents not told before. The sweep runs every five
minutes and reads the tickets table through once (no index of ``opened_at``: every import and every ticket
would pay for one, to save a scan of tens of milliseconds), and takes the write lock only when some service has
enough incidents to look at.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from itertools import combinations

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from handlers.core.context import SYSTEM, Actor, Button, Context, Reply, Work
from handlers.knowledge.search import terms
from storage.models import ProblemIncident, ProblemSuggestion, Ticket

log = logging.getLogger("svcbot")

WINDOW = timedelta(days=7)
AT_LEAST = 3  # incidents of one cause before it is worth a problem
QUERY_TERMS = 8  # of a title's words, the first few make the query (28 pairs at most)
SHOWN = 10
SQLITE_TABLE = ("CREATE VIRTUAL TABLE IF NOT EXISTS temp.problem_titles USING fts5(title, "
                "tokenize='porter unicode61 remove_diacritics 2')")


def _candidates(session: Session, since) -> dict[str, list[tuple[int, str]]]:
    """Incidents opened since ``since``, neither linked nor suggested, by service with at least AT_LEAST."""
    free = (Ticket.kind == "incident", Ticket.opened_at >= since,
            Ticket.id.not_in(select(ProblemIncident.ticket_id)), Ticket.id.not_in(select(ProblemSuggestion.ticket_id)))
    busy = [r[0] for r in session.execute(select(Ticket.service_id).where(*free).group_by(Ticket.service_id)
                                          .having(func.count() >= AT_LEAST).order_by(Ticket.service_id))]
    out = {}
    for service_id in busy:
        out[service_id] = [(r.id, r.title) for r in session.execute(
            select(Ticket.id, Ticket.title).where(Ticket.service_id == service_id, *free)
            .order_by(Ticket.opened_at, Ticket.id))]
    return out


def _pairs(words: str) -> list[tuple[str, ...]]:
    parts = terms(words)[:QUERY_TERMS]
    return [(parts[0],)] if len(parts) == 1 else list(combinations(parts, 2))


def _matching(session: Session, candidates: list[tuple[int, str]], seed: str) -> set[int]:
    """The candidates whose title has two of the seed title's words, by the engine's own matching."""
    pairs = _pairs(seed)
    if not pairs:
        return set()
    ids = [i for i, _ in candidates]
    if session.bind.dialect.name == "postgresql":
        params: dict = {"ids": ids}
        ors = []
        for n, pair in enumerate(pairs):
            ands = []
            for k, word in enumerate(pair):
                params[f"w{n}_{k}"] = word
                ands.append(f"plainto_tsquery('english', :w{n}_{k})")
            ors.append("(" + " && ".join(ands) + ")")
        sql = (f"SELECT id FROM tickets WHERE id = ANY(:ids) AND "
               f"to_tsvector('english', title) @@ ({' || '.join(ors)})")
        return {r[0] for r in session.execute(text(sql), params)}
    query = " OR ".join("(" + " AND ".join(f'"{w}"' for w in pair) + ")" for pair in pairs)
    return {r[0] for r in session.execute(text("SELECT rowid FROM temp.problem_titles WHERE problem_titles MATCH :q"),
                                          {"q": query})}


def clusters(session: Session, candidates: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    """Groups of at least AT_LEAST candidates around the earliest not yet grouped, in the order they opened."""
    sqlite = session.bind.dialect.name != "postgresql"
    if sqlite:
        session.execute(text(SQLITE_TABLE))
        session.execute(text("DELETE FROM temp.problem_titles"))
        session.execute(text("INSERT INTO temp.problem_titles (rowid, title) VALUES (:id, :title)"),
                        [{"id": i, "title": t} for i, t in candidates])
    grouped: set[int] = set()
    found = []
    try:
        for seed_id, seed_title in candidates:
            if seed_id in grouped:
                continue
            matches = _matching(session, candidates, seed_title) - grouped
            if seed_id in matches and len(matches) >= AT_LEAST:
                found.append([(i, t) for i, t in candidates if i in matches])
                grouped |= matches
    finally:
        if sqlite:
            session.execute(text("DELETE FROM temp.problem_titles"))
    return found


def suggest(ctx: Context, actor: Actor = SYSTEM) -> int:
    """Tell each service owner of the clusters of similar incidents not told before; returns how many clusters."""
    told = 0
    with ctx.reader() as reading:  # most sweeps find nothing: they need not wait for the write lock
        if not _candidates(reading, ctx.now() - WINDOW):
            return 0
    with ctx.sessions.begin() as session:
        work = Work(ctx, session, actor)
        for service_id, candidates in _candidates(session, work.now - WINDOW).items():
            service = ctx.config.service(service_id)
            if service is None:
                continue
            for cluster in clusters(session, candidates):
                try:
                    with session.begin_nested():
                        _tell(work, service, cluster)
                        session.flush()
                    told += 1
                except IntegrityError:  # another sweep told it first
                    log.info("problem suggestion for INC-%s was made by another sweep", cluster[0][0])
    if told:
        ctx.on_outbox()
    return told


def _tell(work: Work, service, cluster: list[tuple[int, str]]) -> None:
    seed = cluster[0][0]
    for ticket_id, _ in cluster:
        work.session.add(ProblemSuggestion(ticket_id=ticket_id, cluster=seed, service_id=service.id, at=work.now))
    numbers = " ".join(f"INC-{i}" for i, _ in cluster)
    title = cluster[0][1].replace('"', "'")[:300]
    lines = "\n".join(f"*INC-{i}* {t}" for i, t in cluster[:SHOWN])
    more = f"\n… and {len(cluster) - SHOWN} more" if len(cluster) > SHOWN else ""
    work.message_person(service.owner, Reply(
        title=f"🔎 {len(cluster)} similar incidents on {service.name} in {WINDOW.days} days: one cause?",
        text=lines + more,
        footer=f"Open a problem, then: problem link PRB-N {numbers}",
        buttons=[Button("Open a problem", f'problem new title="{title}" services={service.id}', "primary")]),
        f"problem-suggestion:{seed}", f"service:{service.id}")
    work.audit("problem.suggested", f"service:{service.id}", incidents=[f"INC-{i}" for i, _ in cluster])
