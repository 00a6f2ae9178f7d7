"""What a survey costs when a whole company answers it, against raw SQL measured in the same run.

(a) Answers: N people (2,000 by default) unknown to app.yaml each click a rating on an anonymous channel
    survey, one after another, through the same entry the Slack front end uses (``Runtime.execute``: the
    person looked up without being registered, the keyed hash, the answer row, the audit record and the
    delivery key in one transaction). Baseline: the same number of one-row INSERTs into a plain table,
    each committed on its own, with sqlite3 on a file in the same directory.
(b) Results: ``survey results`` on that survey (and on one of 50,000 answers) against
    ``SELECT value, count(*) … GROUP BY value`` on the same file.
(c) Closing it: the results kept, every respondent hash cleared, the posts edited — one transaction.

Ratios are printed, never asserted. Run: `.venv/bin/python bench/survey_answers.py [--people N]`.
"""
from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.runtime import Runtime  # noqa: E402
from handlers.core.config_loading import parse_config  # noqa: E402
from storage.models import SurveyAnswer  # noqa: E402


def timed(fn, repeat: int = 5) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "svcbot.db"
        config = parse_config((ROOT / "app.yaml").read_text(), "app.yaml")
        rt = Runtime(config, f"sqlite:///{db}")
        ask = ('survey new question="How satisfied are you with the VPN?" scale=csat channel=it-announce '
               'closes="in 5 days"')
        assert asyncio.run(rt.execute("slack", "U0PRIYA01", ask)).outcome == "ok"

        async def answer_all():
            for i in range(args.people):
                result = await rt.execute("slack", f"U0BENCH{i:05d}", f"survey answer SRV-1 {1 + i % 5}",
                                          key=f"bench:{i}", via="button")
                assert result.outcome == "ok", result.reply

        started = time.perf_counter()
        asyncio.run(answer_all())
        svcbot_answers = time.perf_counter() - started

        raw = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("CREATE TABLE answers (id INTEGER PRIMARY KEY, survey_id INT, respondent TEXT UNIQUE, value INT)")
        started = time.perf_counter()
        for i in range(args.people):
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("INSERT INTO answers (survey_id, respondent, value) VALUES (1, ?, ?)", (f"U{i}", 1 + i % 5))
            raw.execute("COMMIT")
        raw_answers = time.perf_counter() - started
        print(f"(a) {args.people} answers one by one: svcbot {svcbot_answers:.2f} s "
              f"({1000 * svcbot_answers / args.people:.2f} ms each), raw INSERT+COMMIT {raw_answers:.2f} s; "
              f"ratio {svcbot_answers / raw_answers:.1f}×")

        results = timed(lambda: asyncio.run(rt.execute("slack", "U0PRIYA01", "survey results SRV-1")))
        grouped = timed(lambda: raw.execute("SELECT value, count(*) FROM answers GROUP BY value").fetchall())
        print(f"(b) results of {args.people} answers: svcbot {1000 * results:.1f} ms, raw GROUP BY "
              f"{1000 * grouped:.2f} ms; ratio {results / grouped:.0f}×")

        # A survey the size of a large company, inserted directly, for results at scale.
        assert asyncio.run(rt.execute("slack", "U0PRIYA01", ask.replace("VPN", "service desk"))).outcome == "ok"
        big = 50_000
        with rt.ctx.sessions.begin() as s:
            now = rt.ctx.now()
            s.add_all(SurveyAnswer(survey_id=2, respondent_key=f"k{i}", value=1 + i % 5, answered_at=now)
                      for i in range(big))
        raw.execute("BEGIN")
        raw.executemany("INSERT INTO answers (survey_id, respondent, value) VALUES (2, ?, ?)",
                        ((f"K{i}", 1 + i % 5) for i in range(big)))
        raw.execute("COMMIT")
        results = timed(lambda: asyncio.run(rt.execute("slack", "U0PRIYA01", "survey results SRV-2")))
        grouped = timed(lambda: raw.execute("SELECT value, count(*) FROM answers WHERE survey_id = 2 "
                                            "GROUP BY value").fetchall())
        print(f"    results of {big} answers: svcbot {1000 * results:.1f} ms, raw GROUP BY {1000 * grouped:.1f} ms; "
              f"ratio {results / grouped:.1f}×")

        started = time.perf_counter()
        assert asyncio.run(rt.execute("slack", "U0PRIYA01", "survey close SRV-2")).outcome == "ok"
        closing = time.perf_counter() - started
        started = time.perf_counter()
        raw.execute("BEGIN")
        raw.execute("UPDATE answers SET respondent = NULL WHERE survey_id = 2")
        raw.execute("COMMIT")
        raw_close = time.perf_counter() - started
        print(f"(c) closing the survey of {big} answers: svcbot {1000 * closing:.0f} ms, raw UPDATE "
              f"{1000 * raw_close:.0f} ms; ratio {closing / raw_close:.1f}×")
        rt.engine.dispose()


if __name__ == "__main__":
    main()
