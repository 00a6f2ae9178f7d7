"""``svcbot kb sync DIR``: the library brought in line with a folder of Markdown files kept in git.

Each ``*.md`` file is one article, its source the path relative to the folder — except Hugo's ``_index.md``
section pages, hidden folders, and the repository's own papers at the top of the folder (README, LICENSE,
CONTRIBUTING, CHANGELOG, SECURITY, CODE_OF_CONDUCT, SOURCE: what the repository is, not what to do). Its YAML
front matter may give title, kind, services, owner, review, alerts, tags and ``draft: true``; other keys
(Hugo's weight …) are ignored. Without a title the first heading, then the file name, is the title; a runbook
without ``alerts`` answers the alert its file is named after (``KubePodCrashLooping.md``); without tags, the
folder it is in is its tag. New files become published articles, changed files new versions, deleted files
retired articles, and a file that comes back is published again. A file whose text is as last synced is not
read further: a second sync changes nothing. A file with a fault is named in the answer and left as it was in
the library. All of it is one transaction.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sqlalchemy import select

from handlers.core.context import Actor, Command, Context
from handlers.knowledge.articles import ALERT_NAME, create, move, number, revise, validate
from storage.models import KbArticle

FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
HEADING = re.compile(r"^#[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
SKIPPED = ("_index.md",)
REPOSITORY_PAPERS = {"readme", "license", "contributing", "changelog", "security", "code_of_conduct", "source"}
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when PyYAML was built with it
GIT = Actor(person_id="git", name="git", platform="cli")


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.created) + len(self.updated) + len(self.retired) + len(self.republished)


def markdown_files(folder: Path) -> dict[str, str]:
    """Relative POSIX path → text of every article file in the folder."""
    files = {}
    for path in sorted(folder.rglob("*.md")):
        rel = path.relative_to(folder)
        if path.name in SKIPPED or any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if len(rel.parts) == 1 and path.stem.lower() in REPOSITORY_PAPERS:
            continue
        files[rel.as_posix()] = path.read_text(encoding="utf-8", errors="replace")
    return files


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse(rel: str, text: str) -> tuple[dict, str, list[str]]:
    """The article fields a file gives, the state it asks for, and what is wrong with it."""
    m = FRONT_MATTER.match(text)
    front: dict = {}
    if m:
        try:
            front = yaml.load(m[1], Loader=SAFE_LOADER) or {}
        except yaml.YAMLError as exc:
            return {}, "", [f"{rel}: the front matter is not YAML ({str(exc).splitlines()[0]})"]
        if not isinstance(front, dict):
            return {}, "", [f"{rel}: the front matter is not a mapping of keys to values"]
    body = text[m.end():] if m else text
    stem = Path(rel).stem
    heading = HEADING.search(body)
    values = {"title": front.get("title") or (heading[1] if heading else stem), "body": body.strip(),
              "kind": front.get("kind") or "runbook"}
    for key in ("services", "owner", "review", "alerts", "tags", "symptom", "workaround", "cause", "fix"):
        if front.get(key) not in (None, ""):
            values[key] = front[key]
    if "alerts" not in values and values["kind"] == "runbook" and ALERT_NAME.match(stem):
        values["alerts"] = [stem]
    if "tags" not in values and "/" in rel:
        values["tags"] = [Path(rel).parent.name]
    return {k: str(v) if isinstance(v, (int, float)) and k in ("title", "owner") else v for k, v in values.items()}, \
        "draft" if front.get("draft") is True else "published", []


def sync_folder(ctx: Context, folder: Path, actor: Actor = GIT) -> SyncResult:
    files = markdown_files(folder)
    result = SyncResult()
    with ctx.change(Command(actor, f"kb sync {folder}", via="git")) as work:
        known = {a.source: a for a in work.session.scalars(select(KbArticle).where(KbArticle.source.is_not(None)))}
        for rel, text in files.items():
            article, digest = known.get(rel), fingerprint(text)
            if article is not None and article.source_hash == digest and article.state != "retired":
                result.unchanged += 1
                continue
            values, state, problems = parse(rel, text)
            attrs, errors = validate(ctx, values, from_chat=False) if not problems else ({}, {})
            problems += [f"{rel}: {name}: {problem}" for name, problem in errors.items()]
            if problems:
                result.problems += problems
                continue
            if article is None:
                article = create(ctx, work, attrs, state=state, via="git", author=None, source=rel,
                                 source_hash=digest)
                result.created.append(number(article))
                continue
            if article.source_hash != digest:
                article.source_hash = digest
                if "review_days" not in attrs:
                    attrs["review_days"] = ctx.config.knowledge.review_days_for(attrs["kind"])
                if revise(work, article, attrs, "git", None):
                    result.updated.append(number(article))
            if article.state != state:
                (result.republished if article.state == "retired" else result.updated).append(number(article))
                move(ctx, work, article, state, "git")
        for rel, article in known.items():
            if rel not in files and article.state != "retired":
                move(ctx, work, article, "retired", "git")
                result.retired.append(number(article))
        if result.changed or result.problems:
            work.audit("kb.sync", str(folder), created=len(result.created), updated=len(result.updated),
                       retired=len(result.retired), republished=len(result.republished),
                       problems=result.problems[:50])
    return result
