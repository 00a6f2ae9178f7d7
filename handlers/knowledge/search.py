"""Searching the library with the store's own full-text engine, behind one function.

SQLite: the FTS5 table ``kb_search`` (porter stemming) of the published articles, ranked by bm25 with the
title and the alerts and tags weighing more than the body; PostgreSQL: the generated ``kb_articles.search``
tsvector (english stemming, title A, tags and alerts B, a known error's parts C, body D) under a GIN index
of the published ones, queried with ``websearch_to_tsquery`` and ranked by ``ts_rank``. Either way the
words are OR-ed: a person under pressure types more words than the article holds, and the engine's ranking
puts the articles with most of them first. Quoted words stay a phrase. Published articles only; a snippet
of the text (a known error's symptom when it has no body) around the match comes with each: the title is
shown beside it anyway.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

TERM = re.compile(r'"([^"]*)"|(\w+)')
MAX_TERMS = 32
OPEN, CLOSE = "\x02", "\x03"  # around a matched word in a snippet, until it is shown
SNIPPET_WORDS = 24
# PostgreSQL's english stop words, left out of SQLite's query too (FTS5 has no stop words): "on the node"
# would otherwise match, and rank, nearly every article. A quoted phrase keeps them.
STOP_WORDS = frozenset("""i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
she her hers herself it its itself they them their theirs themselves what which who whom this that these those am
is are was were be been being have has had having do does did doing a an the and but if or because as until while
of at by for with about against between into through during before after above below to from up down in out on
off over under again further then once here there when where why how all any both each few more most other some
such no nor not only own same so than too very s t can will just don should now""".split())

# The FTS5 table holds published articles only and ranks by bm25 with the weights migration 0009 set: the
# engine ranks and keeps the first few itself, and snippets are made for those only.
SQLITE_RAW = "SELECT rowid, rank FROM kb_search WHERE kb_search MATCH :q ORDER BY rank LIMIT :limit"
SQLITE = f"""SELECT a.id, a.title, a.kind, a.source, a.services, -top.rank AS score, top.snippet
FROM (SELECT rowid AS id, rank,
             coalesce(nullif(snippet(kb_search, 1, '{OPEN}', '{CLOSE}', '…', {SNIPPET_WORDS}), ''),
                      snippet(kb_search, 2, '{OPEN}', '{CLOSE}', '…', {SNIPPET_WORDS})) AS snippet
      FROM kb_search WHERE kb_search MATCH :q ORDER BY rank LIMIT :limit) AS top
JOIN kb_articles a ON a.id = top.id
ORDER BY top.rank, a.id"""

# ts_rank's weights of D (body), C (a known error's parts), B (tags, alerts) and A (title). Its default
# {0.1, 0.2, 0.4, 1.0} lets one title word outweigh all the others of an OR-ed query.
PG_WEIGHTS = "'{0.2, 0.4, 0.6, 1.0}'"
POSTGRES_RAW = f"""SELECT id, ts_rank({PG_WEIGHTS}, search, q) AS rank
FROM kb_articles, websearch_to_tsquery('english', :q) AS q
WHERE search @@ q AND state = 'published' ORDER BY rank DESC LIMIT :limit"""
POSTGRES = f"""WITH q AS (SELECT websearch_to_tsquery('english', :q) AS query),
top AS (SELECT a.id, ts_rank({PG_WEIGHTS}, a.search, q.query) AS score FROM kb_articles a, q
        WHERE a.search @@ q.query AND a.state = 'published' ORDER BY score DESC, a.id LIMIT :limit)
SELECT a.id, a.title, a.kind, a.source, a.services, top.score,
       ts_headline('english', concat_ws(' ', nullif(a.symptom, ''), nullif(a.workaround, ''), a.body), q.query,
                   'StartSel={OPEN}, StopSel={CLOSE}, MaxWords={SNIPPET_WORDS}, MinWords=8, MaxFragments=1, '
                   'FragmentDelimiter=…') AS snippet
FROM top JOIN kb_articles a ON a.id = top.id, q
ORDER BY top.score DESC, a.id"""


@dataclass
class Hit:
    id: int
    title: str
    kind: str
    source: str | None
    services: list[str]
    snippet: str  # the matched words between OPEN and CLOSE
    score: float


def terms(words: str) -> list[str]:
    """The words and "quoted phrases" of a query, as plain word runs; stop words go unless nothing else is left."""
    out = []
    for m in TERM.finditer(words.replace("“", '"').replace("”", '"')):
        found = re.findall(r"\w+", m[1]) if m[1] is not None else [m[2]]
        if found:
            out.append(" ".join(found))
    kept = [t for t in out if " " in t or t.lower() not in STOP_WORDS]
    return (kept or [t for t in out if t.lower() not in ("or", "and", "not")])[:MAX_TERMS]


def engine_query(dialect: str, parts: list[str]) -> str:
    """The query in the engine's own syntax: any of the words or phrases."""
    if dialect == "postgresql":
        return " or ".join(f'"{p}"' if " " in p else p for p in parts)
    return " OR ".join(f'"{p}"' for p in parts)


def search(session: Session, words: str, limit: int = 10) -> list[Hit]:
    """Published articles that match ``words``, the most relevant first."""
    parts = terms(words)
    if not parts:
        return []
    dialect = session.bind.dialect.name
    sql = POSTGRES if dialect == "postgresql" else SQLITE
    rows = session.execute(text(sql), {"q": engine_query(dialect, parts), "limit": limit}).all()
    return [Hit(r.id, r.title, r.kind, r.source, _services(r.services), r.snippet or "", round(float(r.score), 6))
            for r in rows]


def raw_query(session: Session, words: str, limit: int = 10) -> list:
    """The bare engine query on the same index, ids and ranks only: the floor the benchmark measures against."""
    dialect = session.bind.dialect.name
    sql = POSTGRES_RAW if dialect == "postgresql" else SQLITE_RAW
    return session.execute(text(sql), {"q": engine_query(dialect, terms(words)), "limit": limit}).all()


def _services(value) -> list[str]:
    if isinstance(value, str):  # SQLite hands JSON back as text through a plain query
        return json.loads(value)
    return list(value or [])


def plain_snippet(snippet: str) -> str:
    return snippet.replace(OPEN, "").replace(CLOSE, "")


def marked_snippet(snippet: str) -> str:
    """For chat: the matched words in bold; asterisks of the text itself go, so they cannot unbalance it."""
    return snippet.replace("*", "").replace(OPEN, "*").replace(CLOSE, "*")
