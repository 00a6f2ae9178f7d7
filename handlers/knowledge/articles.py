"""An article as it is stored: its kinds, states, number, fields and rights; writing a version, moving
it between states, and showing it and its history."""
from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from handlers.core.catalogue import may_set_status
from handlers.core.config import KB_KINDS
from handlers.core.context import Actor, Button, Context, Field, Refused, Reply, Section, UserError, Work
from handlers.core.words import parse_ahead
from storage.models import KbAlert, KbArticle, KbReview, KbTicketLink, KbVersion

STATES = ("draft", "published", "retired")
STATE_ICON = {"draft": "📝", "published": "📗", "retired": "🗄️"}
NUMBER = re.compile(r"^KB-?(\d{1,9})$", re.IGNORECASE)
# Fields a person gives (chat, form, front matter) and the columns they fill.
FIELDS = ("title", "kind", "body", "services", "owner", "review", "tags", "alerts", "symptom", "workaround", "cause",
          "fix")
LISTS = ("services", "tags", "alerts")
KNOWN_ERROR_PARTS = ("symptom", "workaround", "cause")
ALERT_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]{0,199}$")
CHAT_TEXT_MAX = 3000
FIX = re.compile(r"^(PRB|CHG)-?(\d{1,9})$", re.IGNORECASE)
# What a version records of an article besides its title and body.
VERSIONED = ("kind", "services", "owner", "review_days", "tags", "alerts", "symptom", "workaround", "cause",
             "fixed_by")
NEW_EXAMPLE = ('kb new kind=known-error title="VPN drops every 30 minutes" services=vpn '
               'symptom="Connection resets on the half hour" workaround="Reconnect with the TCP profile"')
MARKDOWN_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]*)[^)]*\)")
HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")


def number(article: KbArticle | int) -> str:
    return f"KB-{article if isinstance(article, int) else article.id}"


def id_from(rest: list[str], example: str) -> int:
    m = NUMBER.match(rest[0]) if rest else None
    if not m:
        raise UserError("Say which article, like KB-12.", example)
    return int(m[1])


def find(session: Session, article_id: int, lock: bool = False) -> KbArticle:
    query = select(KbArticle).where(KbArticle.id == article_id)
    if lock and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    article = session.scalar(query)
    if article is None:
        raise UserError(f"There is no KB-{article_id}.", "kb search WORDS")
    return article


def may_manage(ctx: Context, person_id: str, article: KbArticle) -> bool:
    """Its owner, a service manager, or the owner or team of one of its services."""
    if person_id == article.owner or "service_managers" in ctx.roles_of(person_id):
        return True
    return any(may_set_status(ctx, person_id, svc) for sid in article.services if (svc := ctx.config.service(sid)))


def refuse_unless_manager(ctx: Context, actor: Actor, article: KbArticle, what: str) -> None:
    if not may_manage(ctx, actor.person_id, article):
        raise Refused(f"Only {number(article)}'s owner, the owners and teams of its services or a service manager "
                      f"can {what} it.")


def refuse_if_from_git(article: KbArticle, how: str) -> None:
    """An article from git is written there: ``how`` says what to do in the folder instead."""
    if article.source:
        raise UserError(f"{number(article)} comes from git ({article.source}): {how}, and `svcbot kb sync` "
                        "brings the change in.", f"kb show {number(article)}")


def listed(value) -> list[str]:
    """A list field from a form (a list), a front matter (a list or a string) or a key=value pair (commas)."""
    if value in (None, ""):
        return []
    items = value if isinstance(value, list) else re.split(r"[,\s]+", str(value))
    return list(dict.fromkeys(str(i).strip() for i in items if str(i).strip()))


def review_days(value) -> int:
    """A review interval: a number of days, or '90 days', 'in 12 weeks'."""
    if isinstance(value, int) and not isinstance(value, bool):
        days = value
    else:
        text = str(value).strip()
        ahead = parse_ahead(text) if not text.isdigit() else timedelta(days=int(text))
        if ahead is None or ahead.days * 86400 != ahead.total_seconds():
            raise ValueError(f"'{value}' is not a number of days or weeks")
        days = ahead.days
    if not 1 <= days <= 3650:
        raise ValueError("a review interval runs from 1 day to 10 years")
    return days


def validate(ctx: Context, values: dict, article: KbArticle | None = None,
             from_chat: bool = True) -> tuple[dict, dict[str, str]]:
    """Every field's problem at once, or the article's attributes. Without ``article`` it is a new one: what
    is not given takes its default; with it, only what is given changes. Text written in chat must fit the
    forms it is edited in again (a Slack modal's field takes 3,000 characters); git has no such limit."""
    cfg, errors, out = ctx.config, {}, {}
    given = {k: v for k, v in values.items() if k in FIELDS}
    if article is None or "kind" in given:
        kind = str(given.get("kind") or "runbook").strip().lower()
        if kind not in KB_KINDS:
            errors["kind"] = f"'{kind}' is not a kind; kinds: {', '.join(KB_KINDS)}"
        out["kind"] = kind
    if article is None or "title" in given:
        title = " ".join(str(given.get("title") or "").split())
        if not title:
            errors["title"] = "give the article a title"
        elif len(title) > 300:
            errors["title"] = "keep the title under 300 characters"
        out["title"] = title
    for name in ("body", *KNOWN_ERROR_PARTS):
        if article is None or name in given:
            out[name] = str(given.get(name) or "").replace("\\n", "\n").strip()
            if from_chat and len(out[name]) > CHAT_TEXT_MAX:
                errors[name] = f"keep it under {CHAT_TEXT_MAX:,} characters (a form's limit); a longer article " \
                               "belongs in git (svcbot kb sync)"
    for name in LISTS:
        if article is None or name in given:
            out[name] = listed(given.get(name))
    for sid in out.get("services", []):
        if cfg.service(sid) is None:
            errors["services"] = f"unknown service '{sid}'; services: {', '.join(s.id for s in cfg.services)}"
    out["services"] = [cfg.service(s).id if cfg.service(s) else s for s in out.get("services", [])] \
        if "services" in out else None
    if out["services"] is None:
        del out["services"]
    for alert in out.get("alerts", []):
        if not ALERT_NAME.match(alert):
            errors["alerts"] = f"'{alert}' is not a Prometheus alert name"
    if "owner" in given or article is None:
        owner = str(given.get("owner") or "").strip() or None
        if owner and cfg.person(owner) is None:
            errors["owner"] = f"unknown person '{owner}'"
        out["owner"] = owner
    if "fix" in given:
        fix = str(given["fix"] or "").strip()
        m = FIX.match(fix)
        if fix and not m:
            errors["fix"] = f"'{fix}' is not a problem or change, like PRB-3 or CHG-12"
        out["fixed_by"] = f"{m[1].upper()}-{m[2]}" if m else ""
    if "review" in given and given["review"] not in (None, ""):
        try:
            out["review_days"] = review_days(given["review"])
        except ValueError as exc:
            errors["review"] = str(exc)
    kind = out.get("kind") or (article.kind if article else "runbook")
    merged = {n: out.get(n, getattr(article, n, "") if article else "") for n in ("body", *KNOWN_ERROR_PARTS)}
    if kind == "known-error":
        for part in ("symptom", "workaround"):
            if not merged[part]:
                errors[part] = f"a known error needs its {part}"
    elif not merged["body"] and "kind" not in errors:
        errors["body"] = "write the article's text"
    return out, errors


def snapshot(article: KbArticle) -> dict:
    return {name: getattr(article, name) for name in VERSIONED}


def write_version(work: Work, article: KbArticle, via: str, changed: list[str], author: str | None) -> None:
    """The article's content as it now is, as a new version; and its alerts' index."""
    work.session.add(KbVersion(article_id=article.id, version=article.version, title=article.title,
                               body=article.body, fields=snapshot(article), author=author, via=via, at=work.now,
                               changed=changed))
    if article.version > 1:  # a new article has no alerts to replace
        work.session.execute(delete(KbAlert).where(KbAlert.article_id == article.id))
    for alert in article.alerts:
        work.session.add(KbAlert(article_id=article.id, alert=alert))


def apply(article: KbArticle, attrs: dict) -> list[str]:
    """Set the attributes that differ; returns their names."""
    changed = [k for k, v in attrs.items() if getattr(article, k) != v]
    for name in changed:
        setattr(article, name, attrs[name])
    return changed


def move(ctx: Context, work: Work, article: KbArticle, state: str, via: str) -> None:
    """Into ``state``, audited; publishing (again) starts the review interval."""
    before = article.state
    article.state, article.updated_at = state, work.now
    if state == "published":
        article.published_at = article.reviewed_at = work.now
        article.next_review_at = work.now + timedelta(days=article.review_days)
        article.retired_at, article.review_stage = None, 0
    else:
        article.next_review_at = None
        if state == "retired":
            article.retired_at = work.now
    work.audit(f"kb.{state}", number(article),
               via=via, before=before, after=state, version=article.version)


# ---- showing ------------------------------------------------------------------------------------------

def safe(text: str) -> str:
    """An article's text as chat shows it: a Markdown link shows where it goes, as text, and HTML tags go,
    so that no text can hide a link or mark-up (mentions are escaped by each platform's renderer)."""
    text = MARKDOWN_LINK.sub(lambda m: f"{m[1]} ({m[2]})" if m[1] and m[1] != m[2] else m[2], text)
    # What is left of a link cut short (a snippet's end) must not become one either.
    return HTML_TAG.sub("", text).replace("](", "] (")


def meta_line(ctx: Context, article: KbArticle) -> str:
    bits = [article.kind]
    if article.services:
        bits.append(ctx.config.service_names(article.services))
    if article.source:
        bits.append(f"from git: {article.source}")
    return " · ".join(bits)


def when(moment, zone: str) -> str:
    return f"{moment.astimezone(ZoneInfo(zone)):%d %b %Y %H:%M}" if moment else "—"


def show_reply(ctx: Context, article: KbArticle, actor: Actor, limit: int = 2800) -> Reply:
    cfg = ctx.config
    fields = [Field("State", f"{STATE_ICON[article.state]} {article.state}"), Field("Kind", article.kind),
              Field("Owner", cfg.person_name(article.owner)),
              Field("Services", cfg.service_names(article.services) or "—"),
              Field("Version", f"v{article.version}, {when(article.updated_at, actor.timezone)}")]
    if article.state == "published":
        fields.append(Field("Next review", when(article.next_review_at, actor.timezone)))
    fields += _reuse_fields(ctx, article)
    if article.alerts:
        fields.append(Field("Alerts", ", ".join(article.alerts)))
    if article.tags:
        fields.append(Field("Tags", ", ".join(article.tags)))
    if article.source:
        fields.append(Field("Source", f"git: {article.source} (edited there)"))
    sections = [Section(fields=fields)]
    if article.kind == "known-error":
        parts = [Field(label, safe(getattr(article, name))) for label, name in
                 (("Symptom", "symptom"), ("Workaround", "workaround"), ("Cause", "cause")) if getattr(article, name)]
        if article.fixed_by:
            parts.append(Field("Fixed by", article.fixed_by))
        sections.append(Section(title="Known error", fields=parts))
    body = safe(article.body)
    if body:
        sections.append(Section(text=body if len(body) <= limit else body[:limit - 1] + "…"))
    reply = Reply(title=f"{number(article)} · {article.title}", sections=sections,
                  footer=f"kb history {number(article)} lists its versions")
    buttons = []
    if article.state == "published":
        buttons.append(share_button(article))
    if may_manage(ctx, actor.person_id, article) and not article.source:
        if article.state != "published":
            buttons.append(Button("Publish", f"kb publish {number(article)}", "primary"))
        if article.state != "retired":
            buttons.append(Button("Retire", f"kb retire {number(article)}", "danger"))
    reply.buttons = buttons
    return reply


def _reuse_fields(ctx: Context, article: KbArticle) -> list[Field]:
    """How often it helped with an incident, and whether its last review said it needs work."""
    [(uses,)] = ctx.read(select(func.count()).select_from(KbTicketLink)
                         .where(KbTicketLink.article_id == article.id))
    last = ctx.read(select(KbReview.outcome).where(KbReview.article_id == article.id)
                    .order_by(KbReview.at.desc(), KbReview.id.desc()).limit(1))
    fields = [Field("Helped with", f"{uses} incident{'s' * (uses != 1)}")] if uses else []
    if last and last[0][0] == "needs-work" and article.state == "published":
        fields.append(Field("Review", "⚠️ needs work (kb review " + number(article) + " verified once it is right)"))
    return fields


def share_button(article: KbArticle) -> Button:
    return Button("Share in channel", f"kb share {number(article)}")


def history_reply(ctx: Context, session: Session, article: KbArticle, actor: Actor) -> Reply:
    versions = session.scalars(select(KbVersion).where(KbVersion.article_id == article.id)
                               .order_by(KbVersion.version.desc()).limit(30)).all()
    lines = [f"*v{v.version}* {when(v.at, actor.timezone)} · "
             f"{'git' if v.via == 'git' else ctx.config.person_name(v.author)}"
             f"{' · ' + ', '.join(v.changed) if v.changed and v.version > 1 else ' · first version'}"
             for v in versions]
    return Reply(title=f"{number(article)} · {article.title}: history", text="\n".join(lines) or "No versions.",
                 footer=f"kb show {number(article)} N shows version N")


def version_reply(ctx: Context, session: Session, article: KbArticle, version: int, actor: Actor) -> Reply:
    row = session.scalar(select(KbVersion).where(KbVersion.article_id == article.id, KbVersion.version == version))
    if row is None:
        raise UserError(f"{number(article)} has no version {version}; it is at v{article.version}.",
                        f"kb history {number(article)}")
    body = safe(row.body)
    return Reply(title=f"{number(article)} v{row.version} · {row.title}",
                 text=body[:2800] + ("…" if len(body) > 2800 else ""),
                 footer=f"written {when(row.at, actor.timezone)} by "
                        f"{'git' if row.via == 'git' else ctx.config.person_name(row.author)}")


def create(ctx: Context, work: Work, attrs: dict, *, state: str, via: str, author: str | None,
           source: str | None = None, source_hash: str | None = None) -> KbArticle:
    """A new article at version 1, as a draft or published at once (from git), audited."""
    kind = attrs["kind"]
    article = KbArticle(**{"fixed_by": "", "review_days": ctx.config.knowledge.review_days_for(kind), **attrs},
                        state="draft", version=1, source=source, source_hash=source_hash, created_by=author,
                        created_at=work.now, updated_at=work.now)
    work.session.add(article)
    work.session.flush()
    write_version(work, article, via, [], author)
    work.audit("kb.created", number(article), via=via, kind=kind, title=article.title, services=article.services,
               owner=article.owner, source=source)
    if state != "draft":
        move(ctx, work, article, state, via)
    return article


def revise(work: Work, article: KbArticle, attrs: dict, via: str, author: str | None) -> list[str]:
    """A new version with what changed; nothing when nothing did."""
    changed = apply(article, attrs)
    if changed:
        article.version += 1
        article.updated_at = work.now
        write_version(work, article, via, changed, author)
        work.audit("kb.edited", number(article), via=via, version=article.version, changed=changed)
    return changed
