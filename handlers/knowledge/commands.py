"""``kb …``: the command word. Writing an article (typed, or through the form), editing, publishing and
retiring it, reading it and its history, searching the library and sharing a result in the channel."""
from __future__ import annotations

from handlers.core.config import KB_KINDS
from handlers.core.context import (Actor, Button, Choice, Command, Context, Form, FormInvalid, Input, Refused, Reply,
                                   Section, UserError, unknown_word)
from handlers.core.words import after_verb, pairs
from handlers.knowledge import reviews
from handlers.knowledge import search as library
from handlers.knowledge.articles import (FIELDS, NEW_EXAMPLE, STATE_ICON, create, find, history_reply, id_from,
                                         may_manage, meta_line, move, number, refuse_if_from_git,
                                         refuse_unless_manager, revise, safe, share_button, show_reply, validate,
                                         version_reply)
from storage.models import KbArticle

VERBS = ("search", "show", "new", "edit", "publish", "retire", "history", "share", "review")
EDIT_EXAMPLE = 'kb edit KB-12 title="Reset a VPN token" services=vpn'
SEARCH_EXAMPLE = "kb search pod keeps restarting"
SHOWN = 5  # search results in chat
SHARED_CHARS = 700  # of an article's text, when it is shared in a channel


def kb_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    verb = args[0].lower() if args else ""
    rest = args[1:]
    if verb == "search":
        return search_reply(ctx, cmd, " ".join(rest))
    if verb == "new":
        return _new(ctx, cmd)
    if verb == "review":
        return reviews.answer(ctx, cmd, rest)
    if verb == "edit":
        return _edit(ctx, cmd, rest)
    if verb in ("publish", "retire"):
        return set_state(ctx, cmd, id_from(rest, f"kb {verb} KB-12"), "published" if verb == "publish" else "retired")
    if verb in ("show", "history", "share"):
        article_id = id_from(rest, f"kb {verb} KB-12")
        with ctx.sessions() as s:
            article = find(s, article_id)
            if verb == "history":
                return history_reply(ctx, s, article, cmd.actor)
            if verb == "share":
                return share_reply(ctx, article, cmd.actor)
            if len(rest) > 1:
                if not rest[1].lstrip("v").isdigit():
                    raise UserError("Say which version, like 2.", f"kb show {number(article)} 2")
                return version_reply(ctx, s, article, int(rest[1].lstrip("v")), cmd.actor)
            return show_reply(ctx, article, cmd.actor)
    if not verb:
        raise UserError("Say what to do: kb search WORDS, kb show KB-N, kb new …", SEARCH_EXAMPLE)
    raise unknown_word("kb", args[0], rest, VERBS, SEARCH_EXAMPLE)


# ---- searching -----------------------------------------------------------------------------------------

def search_reply(ctx: Context, cmd: Command, words: str) -> Reply:
    if not library.terms(words):
        raise UserError("Say what you are looking for, in your own words.", SEARCH_EXAMPLE)
    with ctx.sessions() as s:
        hits = library.search(s, words, SHOWN)
        articles = {a.id: a for a in s.query(KbArticle).filter(KbArticle.id.in_([h.id for h in hits]))}
    if not hits:
        return Reply(title=f"Nothing in the library matches “{words}”",
                     footer="Try other words (what you see, the alert's name, the service), or kb new to write it down")
    sections = [Section(title=f"{number(h.id)} · {h.title}",
                        text=library.marked_snippet(safe(h.snippet)) + f"\n_{meta_line(ctx, articles[h.id])}_",
                        buttons=[Button("Show", f"kb show {number(h.id)}"), share_button(articles[h.id])])
                for h in hits]
    return Reply(title=f"Knowledge for “{words}”", sections=sections,
                 footer="Share in channel posts the article where everyone sees it")


def share_reply(ctx: Context, article: KbArticle, actor: Actor) -> Reply:
    """The article, posted for everyone in the conversation (the search result's *Share in channel*)."""
    if article.state != "published":
        raise UserError(f"{number(article)} is {article.state}; only published articles are shared.",
                        f"kb show {number(article)}")
    text = safe(article.body) if article.kind != "known-error" else \
        f"*Symptom:* {safe(article.symptom)}\n*Workaround:* {safe(article.workaround)}"
    if len(text) > SHARED_CHARS:
        text = text[:SHARED_CHARS - 1] + "…"
    return Reply(title=f"{STATE_ICON['published']} {number(article)} · {article.title}", text=text,
                 footer=f"{meta_line(ctx, article)} · shared by {actor.name} · kb show {number(article)}",
                 buttons=[Button("Show", f"kb show {number(article)}")], private=False)


# ---- writing -------------------------------------------------------------------------------------------

def _new(ctx: Context, cmd: Command) -> Reply:
    values = pairs(after_verb(cmd.text, "new"), NEW_EXAMPLE)
    if not values:
        if cmd.actor.platform in ("slack", "teams"):
            return Reply(title="New knowledge article", form=article_form(ctx, cmd.actor, {}))
        raise UserError("Give the article's fields as key=value pairs.", NEW_EXAMPLE)
    _known_fields(values, NEW_EXAMPLE)
    return new_article(ctx, cmd, values)[1]


def _known_fields(values: dict, example: str) -> None:
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise UserError(f"Unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
                        f"Fields: {', '.join(FIELDS)}.", example)


def submit_new(ctx: Context, cmd: Command, values: dict, context: dict) -> Reply:
    """The answers of the new-article form (a Slack modal, a Teams card)."""
    values = {k: v for k, v in values.items() if k in FIELDS}
    try:
        return new_article(ctx, cmd, values)[1]
    except FormInvalid as exc:
        exc.form = article_form(ctx, cmd.actor, values, exc.errors)
        raise


def new_article(ctx: Context, cmd: Command, values: dict) -> tuple[int, Reply]:
    """A draft from its fields; its owner is the writer unless another is named."""
    attrs, errors = validate(ctx, values)
    if errors:
        raise FormInvalid(errors, example=NEW_EXAMPLE)
    attrs["owner"] = attrs["owner"] or cmd.actor.person_id
    with ctx.change(cmd) as work:
        article = create(ctx, work, attrs, state="draft", via=cmd.via, author=cmd.actor.person_id)
        reply = show_reply(ctx, article, cmd.actor)
    reply.title, reply.tone = f"{number(article)} saved as a draft · {article.title}", "ok"
    reply.footer = f"kb publish {number(article)} makes it searchable"
    return article.id, reply


def article_form(ctx: Context, actor: Actor, values: dict, errors: dict | None = None,
                 article: KbArticle | None = None) -> Form:
    cfg, errors = ctx.config, errors or {}
    inputs = [
        Input("title", "Title", required=True, hint="what someone in trouble would look for"),
        Input("kind", "Kind", "choice", [Choice(k, k) for k in KB_KINDS], value="runbook", required=True),
        Input("services", "Services", "multi", [Choice(s.id, s.name) for s in cfg.services]),
        Input("owner", "Owner", "choice", [Choice(p.id, p.name) for p in cfg.people], value=actor.person_id),
        Input("body", "Text (Markdown)", "long", hint="a known error may leave it empty"),
        Input("symptom", "Symptom (known error)", "long"),
        Input("workaround", "Workaround (known error)", "long"),
        Input("cause", "Cause (known error)", "long"),
        Input("fix", "Fixed by (known error)", hint="the problem or change, like PRB-3 or CHG-12"),
        Input("alerts", "Prometheus alerts it answers", hint="alert names, separated by commas"),
        Input("tags", "Tags", hint="separated by commas"),
        Input("review", "Review every", hint="days; empty for the kind's default"),
    ]
    current = _values_of(article) if article else {}
    for i in inputs:
        value = values.get(i.id, current.get(i.id))
        if value not in (None, "", []):
            i.value = value if i.kind == "multi" or not isinstance(value, list) else ", ".join(value)
        i.error = errors.get(i.id, "")
    if article is not None:
        return Form(name="kb_edit", title=f"Edit {number(article)}", inputs=inputs, submit="Save a new version",
                    context={"article": article.id}, example=EDIT_EXAMPLE)
    return Form(name="kb_new", title="Knowledge article", inputs=inputs, submit="Save as a draft",
                example=NEW_EXAMPLE)


def _values_of(article: KbArticle) -> dict:
    return {"title": article.title, "kind": article.kind, "services": list(article.services),
            "owner": article.owner or "", "body": article.body, "symptom": article.symptom,
            "workaround": article.workaround, "cause": article.cause, "fix": article.fixed_by,
            "alerts": list(article.alerts), "tags": list(article.tags), "review": str(article.review_days)}


def _edit(ctx: Context, cmd: Command, rest: list[str]) -> Reply:
    article_id = id_from(rest, EDIT_EXAMPLE)
    values = pairs(after_verb(cmd.text, r"edit\s+KB-?\d+"), EDIT_EXAMPLE)
    _known_fields(values, EDIT_EXAMPLE)
    if not values:
        with ctx.sessions() as s:
            article = find(s, article_id)
            _may_edit(ctx, cmd.actor, article)
        if cmd.actor.platform in ("slack", "teams"):
            return Reply(title=f"Edit {number(article)}", form=article_form(ctx, cmd.actor, {}, article=article))
        raise UserError("Give the fields that change as key=value pairs.", EDIT_EXAMPLE)
    return edit(ctx, cmd, article_id, values)


def submit_edit(ctx: Context, cmd: Command, values: dict, context: dict) -> Reply:
    """The answers of the edit form: a new version with what differs from the current one."""
    if not isinstance(context.get("article"), int):
        raise UserError("That form names no article.", EDIT_EXAMPLE)
    values = {k: v for k, v in values.items() if k in FIELDS}
    try:
        return edit(ctx, cmd, context["article"], values)
    except FormInvalid as exc:
        with ctx.sessions() as s:
            exc.form = article_form(ctx, cmd.actor, values, exc.errors, find(s, context["article"]))
        raise


def _may_edit(ctx: Context, actor: Actor, article: KbArticle) -> None:
    refuse_if_from_git(article, "edit its file")
    if article.state == "retired":
        raise UserError(f"{number(article)} is retired; publish it again to change it.",
                        f"kb publish {number(article)}")
    if not (may_manage(ctx, actor.person_id, article)
            or (article.state == "draft" and article.created_by == actor.person_id)):
        raise Refused(f"Only {number(article)}'s owner, the owners and teams of its services or a service manager "
                      "can edit it.")


def edit(ctx: Context, cmd: Command, article_id: int, values: dict) -> Reply:
    with ctx.change(cmd) as work:
        article = find(work.session, article_id, lock=True)
        _may_edit(ctx, cmd.actor, article)
        attrs, errors = validate(ctx, values, article)
        if errors:
            raise FormInvalid(errors, example=EDIT_EXAMPLE)
        if attrs.get("owner", article.owner) is None:
            attrs["owner"] = article.owner
        changed = revise(work, article, attrs, cmd.via, cmd.actor.person_id)
        reply = show_reply(ctx, article, cmd.actor)
    if not changed:
        return Reply(title=f"{number(article)} is unchanged", text="Every field already says that.",
                     footer=f"kb show {number(article)}")
    reply.title, reply.tone = f"{number(article)} is now v{article.version} · {article.title}", "ok"
    reply.text = f"Changed: {', '.join(changed)}."
    return reply


def set_state(ctx: Context, cmd: Command, article_id: int, state: str) -> Reply:
    verb = "publish" if state == "published" else "retire"
    with ctx.change(cmd) as work:
        article = find(work.session, article_id, lock=True)
        refuse_if_from_git(article, "its file's front matter says whether it is a draft (draft: true), and "
                                    "deleting the file retires it")
        refuse_unless_manager(ctx, cmd.actor, article, verb)
        if article.state == state:
            raise UserError(f"{number(article)} is {state} already.", f"kb show {number(article)}")
        move(ctx, work, article, state, cmd.via)
        reply = show_reply(ctx, article, cmd.actor)
    reply.title, reply.tone = f"{number(article)} {state} · {article.title}", "ok"
    return reply
