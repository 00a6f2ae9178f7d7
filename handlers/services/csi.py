"""The continual service improvement register: csi add, csi list, csi done.

An item has an owner and a due date, and may name the service, the survey and the breached ticket
that prompted it. Anyone may raise one (a low score offers a button for it); its owner or a service
manager marks it done.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers.core.context import (Button, Choice, Command, Context, Form, FormInvalid, Input, Refused, Reply, Section,
                                   UserError, Work, unknown_word)
from handlers.core.words import after_verb, pairs, parse_ahead
from storage.models import CsiItem, Survey, Ticket

NUMBER = re.compile(r"^CSI-?(\d{1,9})$", re.IGNORECASE)
ADD_EXAMPLE = 'csi add title="Publish VPN set-up steps in the portal" owner=sanne due="in 2 weeks" service=vpn'
FIELDS = ("title", "owner", "due", "service", "survey", "ticket")
SHOWN = 30


def number(item: CsiItem) -> str:
    return f"CSI-{item.id}"


def csi_cmd(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    verb = args[0].lower() if args else "list"
    if verb == "add":
        return _add(ctx, cmd)
    if verb == "list":
        return list_reply(ctx, cmd, args[1:])
    if verb == "done":
        m = NUMBER.match(args[1]) if len(args) > 1 else None
        if not m:
            raise UserError("Say which item, like CSI-4.", "csi done CSI-4 Steps published")
        return done(ctx, cmd, int(m[1]), " ".join(args[2:]))
    raise unknown_word("csi", args[0], args[1:], ("add", "list", "done"), "csi list")


def _add(ctx: Context, cmd: Command) -> Reply:
    values = pairs(after_verb(cmd.text, "add"), ADD_EXAMPLE)
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise UserError(f"Unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}. "
                        f"Fields: {', '.join(FIELDS)}.", ADD_EXAMPLE)
    if not values.get("title") and cmd.actor.platform in ("slack", "teams"):
        # A button from a survey or a breach names what it is about; the form asks for the rest.
        return Reply(title="New improvement", form=add_form(ctx, cmd, values))
    return add(ctx, cmd, values)[1]


def submit_add(ctx: Context, cmd: Command, values: dict, context: dict) -> Reply:
    values = {**{k: v for k, v in context.items() if k in FIELDS and v},
              **{k: v for k, v in values.items() if k in FIELDS}}
    try:
        return add(ctx, cmd, values)[1]
    except FormInvalid as exc:
        exc.form = add_form(ctx, cmd, values, exc.errors)
        raise


def add_form(ctx: Context, cmd: Command, values: dict, errors: dict | None = None) -> Form:
    errors = errors or {}
    cfg = ctx.config
    inputs = [
        Input("title", "What will improve", required=True, hint="a short, concrete action"),
        Input("owner", "Owner", "choice", [Choice(p.id, p.name) for p in cfg.people],
              value=values.get("owner") or cmd.actor.person_id, required=True),
        Input("due", "Due", hint="YYYY-MM-DD, or in 2 weeks"),
        Input("service", "Service", "choice", [Choice(s.id, s.name) for s in cfg.services]),
    ]
    for i in inputs:
        if values.get(i.id):
            i.value = values[i.id]
        i.error = errors.get(i.id, "")
    links = {k: values[k] for k in ("survey", "ticket") if values.get(k)}
    return Form(name="csi_add", title="Improvement (CSI)", inputs=inputs, submit="Add to the register",
                context=links, example=ADD_EXAMPLE)


def _validate(ctx: Context, session: Session, cmd: Command, values: dict) -> tuple[dict, dict[str, str]]:
    cfg = ctx.config
    errors: dict[str, str] = {}
    out: dict = {"title": (values.get("title") or "").strip()}
    if not out["title"]:
        errors["title"] = "say what will improve"
    elif len(out["title"]) > 300:
        errors["title"] = "keep it under 300 characters"
    owner = (values.get("owner") or cmd.actor.person_id).strip()
    if cfg.person(owner) is None:
        errors["owner"] = f"unknown person '{owner}'"
    out["owner"] = owner
    out["due"] = None
    if values.get("due"):
        try:
            out["due"] = due_date(values["due"], ctx.now(), cmd.actor.timezone)
        except ValueError:
            errors["due"] = f"'{values['due']}' is not a date like YYYY-MM-DD or in 2 weeks"
        except OverflowError:
            errors["due"] = "that is too far ahead"
    out["service_id"] = None
    if values.get("service"):
        service = cfg.service(values["service"])
        if service is None:
            errors["service"] = f"unknown service '{values['service']}'"
        else:
            out["service_id"] = service.id
    for key, model, prefix in (("survey", Survey, "SRV"), ("ticket", Ticket, "INC")):
        out[f"{key}_id"] = None
        if values.get(key):
            m = re.fullmatch(rf"{prefix}-?(\d{{1,9}})", values[key].strip(), re.IGNORECASE)
            if not m or session.get(model, int(m[1])) is None:
                errors[key] = f"there is no {values[key]}"
            else:
                out[f"{key}_id"] = int(m[1])
    if out["survey_id"] and not out["service_id"]:
        out["service_id"] = session.get(Survey, out["survey_id"]).service_id
    if out["ticket_id"] and not out["service_id"]:
        out["service_id"] = session.get(Ticket, out["ticket_id"]).service_id
    return out, errors


def due_date(text: str, now: datetime, zone: str) -> date:
    """A due date: 'YYYY-MM-DD', or as far ahead as 'in 10 days' or 'in 2 weeks' (the day it falls on in ``zone``)."""
    ahead = parse_ahead(text)
    if ahead is not None:
        return (now + ahead).astimezone(ZoneInfo(zone)).date()
    return date.fromisoformat(text.strip())


def add(ctx: Context, cmd: Command, values: dict) -> tuple[int, Reply]:
    with ctx.change(cmd) as work:
        item = add_in(work, cmd, values)
        return item.id, Reply(title=f"{number(item)} added to the register", text=_line(ctx, item), tone="ok")


def add_in(work: Work, cmd: Command, values: dict, **audit) -> CsiItem:
    """An item added inside a transaction the caller holds (a review's follow-up action, say); ``audit`` adds
    to its audit record. Raises FormInvalid, naming each bad field, before anything is written."""
    ctx = work.ctx
    attrs, errors = _validate(ctx, work.session, cmd, values)
    if errors:
        raise FormInvalid(errors, example=ADD_EXAMPLE)
    item = CsiItem(**attrs, state="open", created_by=cmd.actor.person_id, created_at=work.now, note="")
    work.session.add(item)
    work.session.flush()
    work.audit("csi.add", number(item), title=item.title, owner=item.owner,
               due=item.due.isoformat() if item.due else None, service=item.service_id,
               survey=attrs["survey_id"], ticket=attrs["ticket_id"], **audit)
    if item.owner != cmd.actor.person_id:
        work.message_person(item.owner, Reply(
            title=f"{number(item)} is yours: {item.title}", text=_line(ctx, item),
            buttons=[Button("Mark done", f"csi done {number(item)}", "primary")]),
            f"csi:{item.id}:owner", number(item))
    return item


def _line(ctx: Context, item: CsiItem) -> str:
    bits = [ctx.config.person_name(item.owner)]
    if item.due:
        overdue = item.state == "open" and item.due < ctx.now().astimezone(ZoneInfo(ctx.config.bot.timezone)).date()
        bits.append(f"due {item.due.isoformat()}" + (" ⚠️ overdue" if overdue else ""))
    if item.service_id:
        bits.append(ctx.config.service_names([item.service_id]))
    if item.survey_id:
        bits.append(f"SRV-{item.survey_id}")
    if item.ticket_id:
        bits.append(f"INC-{item.ticket_id}")
    return " · ".join(bits)


def open_items(session: Session, service_id: str | None = None, limit: int = SHOWN) -> list[CsiItem]:
    """Open items, soonest due first (undated last): what digests and reports show."""
    query = select(CsiItem).where(CsiItem.state == "open")
    if service_id:
        query = query.where(CsiItem.service_id == service_id)
    return list(session.scalars(query.order_by(CsiItem.due.is_(None), CsiItem.due, CsiItem.id).limit(limit)))


def list_reply(ctx: Context, cmd: Command, args: list[str]) -> Reply:
    words = [a.lower() for a in args]
    show_done = "all" in words
    service_key = next((w for w in words if w != "all"), None)
    service = ctx.config.service(service_key) if service_key else None
    if service_key and service is None:
        raise UserError(f"There is no service '{service_key}'.", "csi list payments")
    with ctx.sessions() as s:
        items = open_items(s, service.id if service else None)
        finished = []
        if show_done:
            query = select(CsiItem).where(CsiItem.state == "done")
            if service:
                query = query.where(CsiItem.service_id == service.id)
            finished = list(s.scalars(query.order_by(CsiItem.done_at.desc()).limit(SHOWN)))
        sections = []
        if items:
            sections.append(Section(title="Open", text="\n".join(
                f"*{number(i)}* {i.title} — {_line(ctx, i)}" for i in items)))
        if finished:
            sections.append(Section(title="Done", text="\n".join(
                f"*{number(i)}* {i.title} — done {i.done_at.date().isoformat()}"
                + (f": {i.note}" if i.note else "") for i in finished)))
    where = f" for {service.name}" if service else ""
    if not sections:
        return Reply(title=f"No open improvements{where}", footer=f"Try: {ADD_EXAMPLE}")
    return Reply(title=f"Continual service improvement{where}", sections=sections,
                 footer="csi list all shows finished items too; csi done CSI-N [note] finishes one")


def done(ctx: Context, cmd: Command, item_id: int, note: str) -> Reply:
    with ctx.change(cmd) as work:
        item = work.session.get(CsiItem, item_id)
        if item is None:
            raise UserError(f"There is no CSI-{item_id}.", "csi list")
        if cmd.actor.person_id != item.owner and cmd.actor.person_id not in ctx.config.roles.service_managers:
            raise Refused(f"Only {ctx.config.person_name(item.owner)} (its owner) or a service manager can "
                          f"finish {number(item)}.")
        if item.state == "done":
            raise UserError(f"{number(item)} was done on {item.done_at.date().isoformat()}. It is done; "
                            "`csi done` needs an open item.", "csi list")
        item.state, item.done_at, item.done_by, item.note = "done", work.now, cmd.actor.person_id, note.strip()
        work.audit("csi.done", number(item), note=item.note)
        return Reply(title=f"{number(item)} done: {item.title}", text=item.note, tone="ok")
