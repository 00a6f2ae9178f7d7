"""What the knowledge library costs: ``svcbot kb sync`` of real runbooks, and search over 10,000 articles,
each against the bare work measured in the same run on the same store.

The data: the 108 runbooks of the Prometheus Operator project (../shared/data/runbooks-prometheus-operator,
Apache License 2.0, see SOURCE.md there), plus generated articles up to 10,000 (seeded; see ``generate``):
by default a library about many systems, each article in its own made-up vocabulary with some of the
runbooks' sentences in it; with ``--dense`` every article is made of the runbooks' sentences alone.

(a) ``handlers.knowledge.sync.sync_folder`` of the 108 runbooks into an empty store (fresh store each run),
    then a second sync of the unchanged folder. Floors: reading and hashing the 108 files (what any sync
    must do), and for the first sync also inserting 108 article rows with plain SQL in one transaction (the
    full-text index follows them, by trigger or generated column, as it does for svcbot).
(b) Search: ``handlers.knowledge.search.search`` (what ``kb search`` and ``GET /api/v1/kb/search`` run: the
    query built from the words, the ranked query of published articles and the snippet of the top 10), in a
    session of its own as a request has, and the whole ``kb search WORDS`` command (the reply too); against
    the raw engine query on the same index, on the driver's own connection: the OR-ed MATCH ranked by bm25
    with LIMIT 10 (SQLite), or websearch_to_tsquery ranked by ts_rank (PostgreSQL). p50 and p95 over phrases
    people type when something is wrong, each repeated.

Ratios are printed, never asserted. Run: `.venv/bin/python bench/kb_search.py [--articles N] [--repeat N]
[--dense] [--database-url postgresql+psycopg://…/db]` (PostgreSQL databases named after it are made afresh).

Found when profiling (cProfile, and the statements timed alone on the dense library): the first search
joined the articles to leave drafts out and built snippets in an outer query that ran the MATCH again, 3.2×
the raw query at p95 (169 ms against 53 ms). Now the index holds published articles only, so the engine
ranks and keeps the first ten by itself (FTS5's ORDER BY rank LIMIT) and snippets are made for those ten;
stop words ("on the node") no longer match nearly every article. Most of the rest is bm25 over every
article that matches any word, which the floor pays too. The first sync spent half its time flushing a
look-up of each new article's alerts and in the pure-Python YAML parser; both went (0.58 s → 0.25 s).
"""
from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bot.runtime import Runtime  # noqa: E402
from handlers.core.config_loading import load_config  # noqa: E402
from handlers.core.context import Command  # noqa: E402
from handlers.core.people import console_actor  # noqa: E402
from handlers.knowledge import search as library  # noqa: E402
from handlers.knowledge.sync import markdown_files, sync_folder  # noqa: E402
from handlers.router import dispatch  # noqa: E402
from storage.models import KbArticle  # noqa: E402

RUNBOOKS = ROOT.parent / "shared" / "data" / "runbooks-prometheus-operator" / "content" / "runbooks"
PHRASES = ["pod keeps restarting", "disk almost full on the node", "clock is wrong on a server",
           "certificate expires soon", "prometheus cannot send alerts to alertmanager", "etcd cluster lost its leader",
           "too many open files", "network card dropping packets", "api server errors", "memory overcommitted",
           "job failed to complete", "persistent volume filling up", "target down scrape failing",
           "config reload failed", "node not ready", "deployment replicas mismatch", "restarting",
           "quota exceeded in namespace", "slow disk fsync", "container throttled cpu"]


def store(url: str | None, name: str) -> str:
    """A fresh empty store: a file in a temporary folder, or a PostgreSQL database made afresh."""
    if url is None:
        return f"sqlite:///{tempfile.mkdtemp(prefix='kb-bench-')}/{name}.db"
    base = make_url(url)
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{base.database}_{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{base.database}_{name}"'))
    admin.dispose()
    return base.set(database=f"{base.database}_{name}").render_as_string(hide_password=False)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def ms(x: float) -> str:
    return f"{x * 1000:8.2f} ms"


def read_and_hash() -> dict[str, str]:
    return {rel: hashlib.sha256(t.encode()).hexdigest() for rel, t in markdown_files(RUNBOOKS).items()}


def bench_sync(config, url: str | None, runs: int) -> None:
    firsts, seconds, inserts = [], [], []
    for run in range(runs):
        rt = Runtime(config, store(url, f"sync{run}"))
        firsts.append(timed(lambda: sync_folder(rt.ctx, RUNBOOKS)))
        seconds += [timed(lambda: sync_folder(rt.ctx, RUNBOOKS)) for _ in range(3)]
        rt.engine.dispose()
        floor_rt = Runtime(config, store(url, f"floor{run}"))
        files = markdown_files(RUNBOOKS)
        now = datetime.now(timezone.utc)
        rows = [dict(kind="runbook", title=rel, body=body, symptom="", workaround="", cause="", fixed_by="",
                     services=[], tags=[], alerts=[], review_days=180, state="published", version=1, source=rel,
                     created_at=now, updated_at=now) for rel, body in files.items()]

        def raw_insert():
            read_and_hash()
            with floor_rt.engine.begin() as conn:
                conn.execute(insert(KbArticle.__table__), rows)
        inserts.append(timed(raw_insert))
        floor_rt.engine.dispose()
    reading = statistics.median(timed(read_and_hash) for _ in range(5))
    first, second, insert_floor = statistics.median(firsts), statistics.median(seconds), statistics.median(inserts)
    print(f"(a) kb sync of the {len(markdown_files(RUNBOOKS))} runbooks, median of {runs} fresh stores:")
    print(f"    first sync      {ms(first)}   floor (read + hash + plain INSERT of the rows) {ms(insert_floor)}"
          f"   ratio {first / insert_floor:5.1f}×   (target ≤ 2 s)")
    print(f"    second sync     {ms(second)}   floor (read + hash the files)                  {ms(reading)}"
          f"   ratio {second / reading:5.1f}×   (target ≤ 0.5 s)")


SYLLABLES = ["ka", "ro", "ven", "tal", "mi", "sor", "qu", "en", "dar", "lo", "pi", "nex", "ul", "tra", "bo", "zen",
             "ar", "fi", "gol", "ste", "ny", "vak", "om", "ri", "cle", "dus", "an", "hep", "ix", "mor"]


def generate(rt, total: int, dense: bool, seed: int = 7) -> int:
    """Articles up to ``total``; returns how many were added.

    mixed (the default): a library about many systems, as a real one of 10,000 articles is. Each article is
    written mostly in the words of its own made-up system (pseudo-words, drawn Zipf-like from 20,000) with
    one to three sentences of the runbooks' prose in it. dense: every article is 6 to 30 sentences of the
    runbooks alone, so the common words of the phrases (node, pod, alerts) are in nearly every article:
    the worst case for a ranked OR query, which must score every article that matches."""
    texts = list(markdown_files(RUNBOOKS).values())
    sentences = [s.strip() for t in texts for s in t.replace("\n", " ").split(". ") if len(s.strip()) > 20]
    words = [w for s in sentences for w in s.split() if w.isalpha() and len(w) > 3]
    rng = random.Random(seed)
    vocabulary = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(30_000)})[:20_000]
    rng.shuffle(vocabulary)
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]

    def made_up(n: int) -> str:
        return " ".join(rng.choices(vocabulary, weights, k=n))

    def article_text() -> tuple[str, str]:
        if dense:
            return " ".join(rng.sample(words, 5)).title(), ". ".join(rng.sample(sentences, rng.randint(6, 30)))
        parts = [made_up(rng.randint(8, 20)) for _ in range(rng.randint(5, 25))]
        for _ in range(rng.randint(1, 3)):
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(sentences))
        return made_up(rng.randint(3, 6)).title(), ". ".join(parts)

    with rt.ctx.sessions() as s:
        have = s.scalar(select(func.count()).select_from(KbArticle))
    now = datetime.now(timezone.utc)
    rows = []
    for _ in range(max(total - have, 0)):
        title, body = article_text()
        rows.append(dict(kind=rng.choice(["runbook", "how-to", "faq"]), title=title, body=body, symptom="",
                         workaround="", cause="", fixed_by="", services=[], tags=[made_up(1)], alerts=[],
                         review_days=180, state="published" if rng.random() > 0.1 else "draft", version=1,
                         created_at=now, updated_at=now))
    with rt.engine.begin() as conn:
        for i in range(0, len(rows), 1000):
            conn.execute(insert(KbArticle.__table__), rows[i:i + 1000])
    return len(rows)


def bench_search(config, url: str | None, total: int, repeat: int, dense: bool) -> None:
    rt = Runtime(config, store(url, "search"))
    sync_folder(rt.ctx, RUNBOOKS)
    added = generate(rt, total, dense)
    dialect = rt.engine.dialect.name
    raw_sql = library.SQLITE_RAW if dialect == "sqlite" else library.POSTGRES_RAW
    raw_sql = raw_sql.replace(":q", "?" if dialect == "sqlite" else "%(q)s").replace(
        ":limit", "?" if dialect == "sqlite" else "%(limit)s")
    prepared = {w: library.engine_query(dialect, library.terms(w)) for w in PHRASES}
    connection = rt.engine.raw_connection()
    cursor = connection.cursor()
    actor = console_actor(rt.ctx, None)

    def raw(words: str):
        args = (prepared[words], 10) if dialect == "sqlite" else {"q": prepared[words], "limit": 10}
        cursor.execute(raw_sql, args)
        return cursor.fetchall()

    def handler(words: str):
        with rt.ctx.sessions() as s:
            return library.search(s, words, 10)

    def command(words: str):
        return dispatch(rt.ctx, Command(actor, f"kb search {words}"))

    samples = {"raw": [], "search": [], "command": []}
    for words in PHRASES * 2:  # warm the caches of all three alike
        raw(words), handler(words), command(words)
    for _ in range(repeat):
        for words in PHRASES:  # interleaved, so that a noisy moment hits all three
            samples["raw"].append(timed(lambda: raw(words)))
            samples["search"].append(timed(lambda: handler(words)))
            samples["command"].append(timed(lambda: command(words)))
    connection.close()
    with rt.ctx.sessions() as s:
        count = s.scalar(select(func.count()).select_from(KbArticle))
        published = s.scalar(select(func.count()).select_from(KbArticle).where(KbArticle.state == "published"))
        matching = statistics.mean(len(library.search(s, w, 100_000)) for w in PHRASES)
    floor95 = p(samples["raw"], 95)
    print(f"(b) search over {count} articles ({published} published; 108 real + {added} generated, "
          f"{'dense' if dense else 'mixed'}), {dialect}, {len(PHRASES)} phrases × {repeat}; "
          f"a phrase matches {matching:.0f} published articles on average:")
    for name, label in (("raw", "raw engine query (floor)"), ("search", "search() in its own session"),
                        ("command", "kb search WORDS (the reply)")):
        print(f"    {label:30} p50 {ms(p(samples[name], 50))}   p95 {ms(p(samples[name], 95))}"
              f"   p95 ratio {p(samples[name], 95) / floor95:5.2f}×")
    print("    targets: search() p95 ≤ 2× the floor's p95, and ≤ 50 ms")
    rt.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=10, help="times each phrase is searched")
    parser.add_argument("--runs", type=int, default=3, help="fresh stores the first sync is measured on")
    parser.add_argument("--dense", action="store_true", help="generated articles of the runbooks' prose alone")
    parser.add_argument("--database-url", help="a PostgreSQL URL; its database name is the prefix of those made")
    args = parser.parse_args()
    config = load_config(ROOT / "app.yaml")
    bench_sync(config, args.database_url, args.runs)
    bench_search(config, args.database_url, args.articles, args.repeat, args.dense)


if __name__ == "__main__":
    main()
