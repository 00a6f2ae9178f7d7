"""``review …``: open, list, show, write (typed, or the form: a Slack modal, a Teams card), annotate the
timeline, raise follow-up actions, finish and export a post-incident review."""
from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select

from handlers.core.context import (Button, Command, Context, Field, Form, FormInvalid, Input, Refused, Reply,
                                   Section, UserError, Work, unknown_word)
from handlers.core.words import PAIR, after_verb, pairs, parse_time
from handlers.reviews import export
from handlers.reviews.record import (NUMBER, PART_NAMES, PARTS, default_owner, due_for, find, number,
                                     open_review, overdue_reviews, refuse_unless_may_run, today)
from handlers.services import csi
from handlers.sla.clocks import DONE_STATES
from handlers.sla.tickets import find_ticket
from storage.models import IncidentReview, ReviewAction, ReviewNote, Ticket

VERBS = ("new", "list", "show", "edit", "note", "action", "done", "export")
NEW_EXAMPLE = "review new INC-12 owner=tom due=\"in 5 days\""
EDIT_EXAMPLE = 'review edit REV-3 what="Card authorisations timed out after the TLS change" factors="No canary"'
NOTE_EXAMPLE = 'review note REV-3 "Rolled back CHG-8; errors fell at once" at="today 10:40"'
ACTION_EXAMPLE = 'review action REV-3 "Canary the payment gateway\'s TLS changes" owner=tom due="in 2 weeks"'
PART_LIMIT = 4000  # characters of what happened, impact or factors; a Slack section holds 3000 of text
NOTE_LIMIT = 1000
SHOWN = 30  # reviews in a list; timeline entries in chat (the export has them all)
FORM = "review_edit"
ACTION_DUE = "in 30 days"  # a follow-up's due date when none is given
EXPORT_SHOWN = 2800  # characters of the Markdown shown in chat: a Slack section holds 3000


def review_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    verb = args[0].lower() if args else "list"
    rest = args[1:]
    if verb == "new":
        return new(ctx, cmd, rest)
    if verb == "list":
        return list_reply(ctx, cmd, rest)
    if verb not in VERBS:
        raise unknown_word("review", args[0], rest, VERBS, "review list")
    example = {"show": "review show REV-3", "edit": EDIT_EXAMPLE, "note": NOTE_EXAMPLE, "action": ACTION_EXAMPLE,
               "done": "review done REV-3", "export": "review export REV-3"}[verb]
    if not rest or not NUMBER.match(rest[0]):
        raise UserError("Say which review, like REV-3.", example)
    review_id = int(NUMBER.match(rest[0])[1])
    if verb in ("show", "export"):
        with ctx.reader() as s:
            review = find(s, rest[0], example)
            data = export.view(ctx, s, review, ctx.now())
        return show_reply(ctx, cmd, data) if verb == "show" else export_reply(data)
    typed = _after_id(cmd.text, verb)
    if verb == "edit":
        values = pairs(typed, EDIT_EXAMPLE)
        if not values and cmd.actor.platform in ("slack", "teams"):
            with ctx.reader() as s:
                review = find(s, rest[0], example)
                refuse_unless_may_run(ctx, cmd.actor, review, "write")
                _refuse_if_done(review)
                return Reply(title=f"{number(review)}: write the review", form=edit_form(ctx, review, {}))
        return edit(ctx, cmd, review_id, values)
    if verb == "note":
        return note(ctx, cmd, review_id, typed)
    if verb == "action":
        return action(ctx, cmd, review_id, typed)
    return done(ctx, cmd, review_id)


def _after_id(text: str, verb: str) -> str:
    """What was typed after ``review VERB REV-N``."""
    m = re.search(rf"\b{verb}\s+REV-?\d+", text, re.IGNORECASE)
    return text[m.end():] if m else after_verb(text, verb)


def _locked(work: Work, review_id: int, example: str) -> IncidentReview:
    """The review, locked for this transaction on PostgreSQL (SQLite's transactions take the write lock at once)."""
    return find(work.session, f"REV-{review_id}", example, lock=True)


def _refuse_if_done(review: IncidentReview) -> None:
    if review.state == "done":
        raise UserError(f"{number(review)} was done on {review.done_at:%Y-%m-%d}; a finished review is not "
                        "changed.", f"review show {number(review)}")


# ---- opening ------------------------------------------------------------------------------------------------

def new(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    if not args:
        raise UserError("Say which ticket to review.", NEW_EXAMPLE)
    values = pairs(re.sub(r"^\s*\S+", "", after_verb(cmd.text, "new"), count=1), NEW_EXAMPLE)
    unknown = sorted(set(values) - {"owner", "due"})
    if unknown:
        raise UserError(f"Unknown field{'s' * (len(unknown) > 1)}: {', '.join(unknown)}. Fields: owner, due.",
                        NEW_EXAMPLE)
    with ctx.change(cmd) as work:
        ticket = find_ticket(work, args[0], NEW_EXAMPLE)
        service = ctx.config.service(ticket.service_id)
        if not ("service_managers" in ctx.roles_of(cmd.actor.person_id)
                or (service is not None and service.owner == cmd.actor.person_id)):
            raise Refused(f"Only {ctx.config.person_name(service.owner) if service else 'the service owner'} (the "
                          f"service's owner) or a service manager can open a review of INC-{ticket.id}.")
        if ticket.state not in DONE_STATES:
            raise UserError(f"INC-{ticket.id} is {ticket.state}; a review follows its resolution.",
                            f"incident resolve INC-{ticket.id}")
        existing = work.session.scalar(select(IncidentReview.id).where(IncidentReview.ticket_id == ticket.id))
        if existing:
            raise UserError(f"INC-{ticket.id} has its review already: {number(existing)}.",
                            f"review show {number(existing)}")
        owner = values.get("owner") or default_owner(ctx, ticket)
        errors = {}
        if ctx.config.person(owner) is None:
            errors["owner"] = f"there is no person '{owner}'"
        due = due_for(ctx, ticket.priority, ticket.resolved_at or ticket.closed_at or work.now)
        if values.get("due"):
            try:
                due = csi.due_date(values["due"], work.now, cmd.actor.timezone)
            except (ValueError, OverflowError):
                errors["due"] = f"'{values['due']}' is not a date like YYYY-MM-DD or in 5 days"
        if errors:
            raise UserError("; ".join(f"{k}: {v}" for k, v in errors.items()), NEW_EXAMPLE)
        review = open_review(work, ticket, owner, due)
        n = number(review)
    return Reply(title=f"{n} opened for INC-{ticket.id}: {ticket.title}", tone="ok",
                 text=f"Owner {ctx.config.person_name(owner)}, due {due.isoformat()}.",
                 buttons=[Button("Fill in", f"review edit {n}", "primary"), Button("Show", f"review show {n}")])


# ---- reading ------------------------------------------------------------------------------------------------

def list_reply(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    word = args[0].lower() if args else "open"
    if word not in ("open", "mine", "overdue", "all") or len(args) > 1:
        raise UserError("Say `review list`, `review list mine`, `review list overdue` or `review list all`.",
                        "review list mine")
    day = today(ctx)
    with ctx.reader() as s:
        if word == "overdue":
            reviews = overdue_reviews(s, day)[:SHOWN]
        else:
            query = select(IncidentReview)
            if word != "all":
                query = query.where(IncidentReview.state == "open")
            if word == "mine":
                query = query.where(IncidentReview.owner == cmd.actor.person_id)
            order = (IncidentReview.due, IncidentReview.id) if word != "all" else (IncidentReview.id.desc(),)
            reviews = list(s.scalars(query.order_by(*order).limit(SHOWN)))
        titles = dict(s.execute(select(Ticket.id, Ticket.title)
                                .where(Ticket.id.in_([r.ticket_id for r in reviews]))).all()) if reviews else {}
    lines = [f"*{number(r)}* INC-{r.ticket_id} {r.priority} {titles.get(r.ticket_id, '')} — "
             f"{ctx.config.person_name(r.owner)}, " + (f"done {r.done_at:%Y-%m-%d}" if r.state == "done" else
                                                       f"due {r.due.isoformat()}" + (" ⚠️ overdue" * (r.due < day)))
             for r in reviews]
    label = {"open": "Open reviews", "mine": "Your open reviews", "overdue": "Overdue reviews",
             "all": "Reviews, newest first"}[word]
    if not lines:
        return Reply(title=f"{label}: none", footer="A review opens when a P1 or P2 is resolved, or with "
                                                    "review new INC-N")
    return Reply(title=label, text="\n".join(lines), footer="review show REV-N")


def _by(data_part: dict) -> str:
    return f"— {data_part['by_name']}, {data_part['at']:%Y-%m-%d %H:%M} UTC" if data_part["by"] else ""


def show_reply(ctx: Context, cmd: Command, data: dict) -> Reply:
    n = data["id"]
    fields = [Field("Ticket", f"{data['ticket']} {data['priority']}"), Field("Service", data["service_name"]),
              Field("Owner", data["owner_name"]),
              Field("Due", data["due"].isoformat() + (" ⚠️ overdue" if data["overdue"] else "")),
              Field("State", data["state"] + (f" ({data['done_at']:%Y-%m-%d})" if data["done_at"] else ""))]
    sections = [Section(text=data["title"], fields=fields),
                Section(title="Impact, as measured", text="\n".join(data["impact"]["lines"]))]
    for p in data["parts"]:
        sections.append(Section(title=p["title"], text=(p["text"] + "\n" + _by(p)) if p["text"] else "_not written_"))
    entries = data["timeline"]
    shown = entries if len(entries) <= SHOWN else entries[:10] + entries[-(SHOWN - 10):]
    lines = [f"{e['at']:%m-%d %H:%M} {'📝 ' if e['kind'] == 'note' else ''}{e['text']}"
             + (f" ({e['by_name']})" if e["by_name"] else "") for e in shown]
    if len(entries) > SHOWN:
        lines.insert(10, f"… {len(entries) - SHOWN} more: review export {n}")
    sections.append(Section(title=f"Timeline (UTC), {len(entries)} entries", text="\n".join(lines)))
    actions = [f"*{a['id']}* {a['title']} — {a['owner_name']}" + (f", due {a['due'].isoformat()}" if a["due"] else "")
               + f", {a['state']}" + (" ⚠️ overdue" if a["overdue"] else "") for a in data["actions"]]
    sections.append(Section(title="Follow-up actions", text="\n".join(actions) or "None yet."))
    buttons = []
    if data["state"] == "open":
        buttons = [Button("Fill in", f"review edit {n}", "primary"), Button("Done", f"review done {n}")]
    buttons.append(Button("Export", f"review export {n}"))
    return Reply(title=f"{n}: review of {data['ticket']}", sections=sections, buttons=buttons,
                 footer=f"review note {n} \"…\" at=HH:MM · review action {n} \"…\" owner=… due=…")


def export_reply(data: dict) -> Reply:
    text = export.markdown(data)
    api = f"GET /api/v1/reviews/{data['id']}/markdown"
    if len(text) <= EXPORT_SHOWN:
        return Reply(title=f"{data['id']} as Markdown", text=f"```\n{text}\n```",
                     footer=f"The API gives the same file: {api}")
    shown = text[:text.rfind("\n", 0, EXPORT_SHOWN)]
    return Reply(title=f"{data['id']} as Markdown (the first part)", text=f"```\n{shown}\n…\n```",
                 footer=f"The whole file is {len(text):,} characters, more than a chat message holds: {api} "
                        "gives it all")


# ---- writing ------------------------------------------------------------------------------------------------

def _parts(values: dict) -> tuple[dict, dict]:
    changes, errors = {}, {}
    for word in values:
        if word not in PARTS and word != "actions":
            errors[word] = f"unknown field; fields: {', '.join(PARTS)}"
    for word in PARTS:
        if word in values:
            text = (values[word] or "").strip()
            if len(text) > PART_LIMIT:
                errors[word] = f"keep it under {PART_LIMIT} characters (it has {len(text)})"
            changes[word] = text
    return changes, errors


def edit(ctx: Context, cmd: Command, review_id: int, values: dict, actions_text: str = "") -> Reply:
    """Write the parts given; each part that changes records who wrote it and when. ``actions_text`` (the
    form's) raises follow-ups, one a line, in the same transaction."""
    changes, errors = _parts(values)
    if not changes and not actions_text.strip() and not errors:
        raise UserError("Say what to write: what=, impact= or factors=.", EDIT_EXAMPLE)
    with ctx.change(cmd) as work:
        review = _locked(work, review_id, EDIT_EXAMPLE)
        refuse_unless_may_run(ctx, cmd.actor, review, "write")
        _refuse_if_done(review)
        actions = _action_lines(actions_text, errors)
        if errors:
            raise FormInvalid(errors, example=EDIT_EXAMPLE)
        written = []
        for word, text in changes.items():
            if getattr(review, PARTS[word]) != text:
                setattr(review, PARTS[word], text)
                setattr(review, f"{word}_by", cmd.actor.person_id)
                setattr(review, f"{word}_at", work.now)
                written.append(word)
        if written:
            work.audit("review.edit", number(review), parts=written, via=cmd.via)
        raised = []
        for line, fields in actions:
            try:
                raised.append(_raise_action(work, cmd, review, fields))
            except FormInvalid as exc:
                raise FormInvalid({"actions": f"“{line}”: " + "; ".join(f"{k} {v}" for k, v in exc.errors.items())},
                                  example=EDIT_EXAMPLE) from None
        n = number(review)
    said = [PART_NAMES[w].lower() for w in written] + [f"CSI-{i}" for i in raised]
    return Reply(title=f"{n} updated" if said else f"{n}: nothing changed", tone="ok" if said else "info",
                 text=("Wrote " + ", ".join(said) + ".") if said else "The parts were already as given.",
                 buttons=[Button("Show", f"review show {n}")])


def _action_lines(text: str, errors: dict) -> list[tuple[str, dict]]:
    """The form's follow-ups: one a line, ``title | owner | due`` (owner and due may be left out)."""
    out = []
    for line in (x.strip() for x in (text or "").splitlines()):
        if not line:
            continue
        bits = [b.strip() for b in line.split("|")]
        if len(bits) > 3 or not bits[0]:
            errors["actions"] = f"“{line}”: write title | owner | due, like Add a canary | tom | in 2 weeks"
            continue
        out.append((line, {"title": bits[0], "owner": bits[1] if len(bits) > 1 else "",
                           "due": bits[2] if len(bits) > 2 else ""}))
    return out


def _raise_action(work: Work, cmd: Command, review: IncidentReview, fields: dict) -> int:
    values = {"title": fields["title"], "owner": fields.get("owner") or review.owner,
              "due": fields.get("due") or ACTION_DUE, "service": review.service_id,
              "ticket": f"INC-{review.ticket_id}"}
    item = csi.add_in(work, cmd, values, review=number(review))
    work.session.add(ReviewAction(review_id=review.id, csi_item_id=item.id))
    work.audit("review.action", number(review), item=f"CSI-{item.id}")
    return item.id


def note(ctx: Context, cmd: Command, review_id: int, typed: str) -> Reply:
    at_text = None
    m = re.search(r'\bat=(?:"([^"]*)"|(\S+))', typed.replace("“", '"').replace("”", '"'))
    if m:
        at_text = m[1] if m[1] is not None else m[2]
        typed = typed[:m.start()] + typed[m.end():]
    text = typed.strip().replace("“", '"').replace("”", '"').strip('"').strip()
    if not text:
        raise UserError("Write the note after the review.", NOTE_EXAMPLE)
    if len(text) > NOTE_LIMIT:
        raise UserError(f"Keep a note under {NOTE_LIMIT} characters (it has {len(text)}).", NOTE_EXAMPLE)
    at = ctx.now()
    if at_text:
        at = _note_time(at_text, cmd.actor.timezone, at)
    with ctx.change(cmd) as work:
        review = _locked(work, review_id, NOTE_EXAMPLE)
        refuse_unless_may_run(ctx, cmd.actor, review, "annotate")
        _refuse_if_done(review)
        if at > work.now:
            raise UserError(f"{at:%Y-%m-%d %H:%M} UTC has not come yet; a note marks a moment of the incident.",
                            NOTE_EXAMPLE)
        row = ReviewNote(review_id=review.id, at=at, text=text, person_id=cmd.actor.person_id, written_at=work.now)
        work.session.add(row)
        work.session.flush()
        work.audit("review.note", number(review), note=row.id, at=at.isoformat())
        n = number(review)
    return Reply(title=f"Note added to {n}'s timeline at {at:%Y-%m-%d %H:%M} UTC", text=text, tone="ok",
                 buttons=[Button("Show", f"review show {n}")])


def _note_time(text: str, zone: str, now: datetime) -> datetime:
    """``HH:MM`` (today, in the person's zone) or any time ``parse_time`` reads."""
    if re.fullmatch(r"\d{1,2}:\d{2}", text.strip()):
        text = "today " + text.strip()
    try:
        return parse_time(text, zone, now)
    except ValueError as exc:
        raise UserError(f"at: {exc}", NOTE_EXAMPLE) from None


def action(ctx: Context, cmd: Command, review_id: int, typed: str) -> Reply:
    typed = typed.replace("“", '"').replace("”", '"')
    values = {m[1].lower(): m[2] if m[2] is not None else m[3] for m in PAIR.finditer(typed)}
    title = PAIR.sub(" ", typed).strip().strip('"').strip() or values.pop("title", "")
    unknown = sorted(set(values) - {"owner", "due", "title"})
    if unknown:
        raise UserError(f"Unknown field{'s' * (len(unknown) > 1)}: {', '.join(unknown)}. Fields: owner, due.",
                        ACTION_EXAMPLE)
    if not title:
        raise UserError("Say what will be done.", ACTION_EXAMPLE)
    with ctx.change(cmd) as work:
        review = _locked(work, review_id, ACTION_EXAMPLE)
        refuse_unless_may_run(ctx, cmd.actor, review, "raise follow-ups of")
        _refuse_if_done(review)
        try:
            item_id = _raise_action(work, cmd, review, {"title": title, "owner": values.get("owner"),
                                                        "due": values.get("due")})
        except FormInvalid as exc:
            raise UserError("; ".join(f"{k}: {v}" for k, v in exc.errors.items()), ACTION_EXAMPLE) from None
        n = number(review)
    return Reply(title=f"CSI-{item_id} raised as a follow-up of {n}", text=title, tone="ok",
                 footer="It is in the CSI register: csi list")


def done(ctx: Context, cmd: Command, review_id: int) -> Reply:
    with ctx.change(cmd) as work:
        review = _locked(work, review_id, "review done REV-3")
        refuse_unless_may_run(ctx, cmd.actor, review, "finish")
        _refuse_if_done(review)
        missing = [PART_NAMES[w].lower() for w, column in PARTS.items()
                   if w != "impact" and not getattr(review, column)]
        if missing:
            raise UserError(f"{number(review)} needs {' and '.join(missing)} written before it is done.",
                            f"review edit {number(review)}")
        review.state, review.done_at, review.done_by = "done", work.now, cmd.actor.person_id
        on_time = today(ctx, work.now) <= review.due
        work.audit("review.done", number(review), due=review.due.isoformat(), on_time=on_time)
        n = number(review)
    return Reply(title=f"{n} done" + ("" if on_time else " (after its due date)"), tone="ok",
                 buttons=[Button("Export", f"review export {n}")])


# ---- the form -----------------------------------------------------------------------------------------------

def edit_form(ctx: Context, review: IncidentReview, values: dict, errors: dict | None = None) -> Form:
    errors = errors or {}
    inputs = [
        Input("what", "What happened", "long", value=review.what_happened, hint="the story, in a few sentences"),
        Input("impact", "Impact", "long", value=review.impact,
              hint="who was affected and how; the measured impact is added by svcbot"),
        Input("factors", "Contributing factors", "long", value=review.factors),
        Input("actions", "Follow-up actions", "long",
              hint=f"one a line: title | owner | due (owner: the review's by default; due: {ACTION_DUE})"),
    ]
    for i in inputs:
        if i.id in values:
            i.value = values[i.id]
        i.error = errors.get(i.id, "")
    return Form(name=FORM, title=f"Review {number(review)}", inputs=inputs, submit="Save",
                context={"review": review.id}, example=EDIT_EXAMPLE)


def submit_edit(ctx: Context, cmd: Command, values: dict, context: dict) -> Reply:
    """The answers of the edit form: the parts as written, and the follow-ups listed."""
    if not isinstance(context.get("review"), int):
        raise UserError("That form names no review.", EDIT_EXAMPLE)
    values = {k: (v if isinstance(v, str) else "") for k, v in values.items() if k in (*PARTS, "actions")}
    parts = {k: v for k, v in values.items() if k in PARTS}
    try:
        return edit(ctx, cmd, context["review"], parts, values.get("actions", ""))
    except FormInvalid as exc:
        with ctx.sessions() as s:
            exc.form = edit_form(ctx, find(s, f"REV-{context['review']}", EDIT_EXAMPLE), values, exc.errors)
        raise

