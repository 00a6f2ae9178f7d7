"""Tickets: open one, read one with its history and clocks, add a step to its history."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot import api_clients
from bot.api.common import (ACTOR, ID_MAX, PREFIX, ApiError, Routes, group_problems, iso, not_future, read_body,
                            service_problems, time_of)
from handlers.core.context import Actor, AlreadyHandled, Command, Context, UserError
from handlers.knowledge import reuse
from handlers.sla import breaches, tickets
from handlers.sla.clocks import DONE_STATES, OPEN_STATES, replay
from handlers.surveys import asking
from storage.models import ClockNotice, SlaClock, Ticket, TicketEvent

log = logging.getLogger("svcbot.api")


def ticket_view(ctx: Context, session, ticket: Ticket) -> dict:
    """The ticket, its history and its clocks. A stored clock is exact as of its last event or sweep, and a
    running one has used more since, so each is measured again from the history, now (as chat's notices
    do); one whose agreement has gone from app.yaml is shown as last stored."""
    events = session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id)
                             .order_by(TicketEvent.at, TicketEvent.id)).all()
    clocks = session.scalars(select(SlaClock).where(SlaClock.ticket_id == ticket.id)
                             .order_by(SlaClock.kind, SlaClock.agreement_id, SlaClock.metric)).all()
    notices: dict[int, list[ClockNotice]] = {}
    if clocks:
        for n in session.scalars(select(ClockNotice).where(ClockNotice.clock_id.in_([c.id for c in clocks]))
                                 .order_by(ClockNotice.level, ClockNotice.id)):
            notices.setdefault(n.clock_id, []).append(n)
    now = ctx.now()
    measured = breaches.measured_now(session, ctx, clocks, now)
    clock_views = []
    for c in clocks:
        m = measured.get(c.id)
        view = {"agreement": c.agreement_id, "kind": c.kind, "metric": c.metric, "priority": c.priority}
        if m is not None:
            view.update(target_seconds=m.target_seconds, elapsed_seconds=m.elapsed_seconds, state=m.state,
                        breached=m.breached, started_at=iso(m.started_at), due_at=iso(m.due_at),
                        stopped_at=iso(m.stopped_at), computed_at=iso(now))
        else:
            view.update(target_seconds=c.target_seconds, elapsed_seconds=c.elapsed_seconds, state=c.state,
                        breached=c.breached, started_at=iso(c.started_at), due_at=iso(c.due_at),
                        stopped_at=iso(c.stopped_at), computed_at=iso(c.computed_at))
        levels = sorted((level, at) for level, at in (m.threshold_at.items() if m else ()) if at is not None)
        view["levels"] = [{"level": float(level), "at": iso(at)} for level, at in levels]
        view["notices"] = [{"level": n.level, "at": iso(n.at), "acknowledged_by": n.acknowledged_by,
                            "acknowledged_at": iso(n.acknowledged_at)} for n in notices.get(c.id, [])]
        clock_views.append(view)
    return {
        "id": tickets.number(ticket), "number": ticket.id, "kind": ticket.kind, "source": ticket.source,
        "external_id": ticket.external_id, "service": ticket.service_id, "title": ticket.title,
        "priority": ticket.priority, "state": ticket.state, "group": ticket.assignment_group,
        "supplier": ticket.supplier, "requester": None if ticket.opened_by == ACTOR.person_id else ticket.opened_by,
        "opened_at": iso(ticket.opened_at), "responded_at": iso(ticket.responded_at),
        "resolved_at": iso(ticket.resolved_at), "source_resolved_at": iso(ticket.source_resolved_at),
        "closed_at": iso(ticket.closed_at), "updated_at": iso(ticket.updated_at),
        "events": [{"kind": e.kind, "value": e.value, "at": iso(e.at), "recorded_at": iso(e.recorded_at),
                    "by": e.person_id} for e in events],
        "clocks": clock_views,
    }


def _find_ticket(session, ref: str) -> Ticket:
    m = tickets.NUMBER.match(ref)
    if m:
        ticket = session.get(Ticket, int(m[1])) if int(m[1]) <= ID_MAX else None
    elif ref.startswith("ext:") and len(ref) > 4:
        found = session.scalars(select(Ticket).where(Ticket.external_id == ref[4:])
                                .order_by(Ticket.source != "api", Ticket.id)).all()
        ticket = found[0] if found else None
        if len(found) > 1 and ticket.source != "api":  # from several imports, none through the API
            raise ApiError(409, f"Several tickets have the external id '{ref[4:]}'",
                           [f"ref: {', '.join(tickets.number(t) for t in found)}; say which by number"])
    else:
        raise ApiError(404, f"There is no ticket '{ref}'", ["ref: say INC-N, or ext:EXTERNAL_ID"])
    if ticket is None:
        raise ApiError(404, f"There is no ticket '{ref}'", [f"ref: no ticket '{ref}'"])
    return ticket


def _suggested(session, ticket: Ticket) -> list[dict]:
    """The published articles for the new incident's service and title (none for a service request)."""
    if ticket.kind != "incident":
        return []
    return reuse.suggestion_views(reuse.suggest(session, ticket.service_id, ticket.title))


class TicketRoutes(Routes):
    """The operations tagged ``tickets`` in openapi.yaml, each the method of its operationId."""

    async def tickets_create(self, request: web.Request) -> web.Response:
        body = await read_body(request, "TicketCreate")
        ctx, now = self.ctx, self.ctx.now()
        opened_at = time_of(body.get("opened_at"), now)
        problems = service_problems(ctx, body["service"], "service") + not_future("opened_at", opened_at, now)
        if "group" in body:
            problems += group_problems(ctx, body["group"], "group", "internal")
        if "requester" in body and ctx.config.person(body["requester"]) is None:
            problems.append(f"requester: there is no person '{body['requester']}' in app.yaml; people: "
                            f"{', '.join(p.id for p in ctx.config.people)}")
        if problems:
            raise ApiError(422, "The request body is not valid", problems)
        client = self._client(request)
        if "requester" in body:
            api_clients.on_behalf(client, body["requester"], "requester")
        service = ctx.config.service(body["service"])
        status, view = await asyncio.to_thread(self._create_ticket, client.actor(), service.id, body, opened_at)
        headers = {"Location": f"{PREFIX}/tickets/{view['id']}"} if status == 201 else None
        return web.json_response(view, status=status, headers=headers)

    def _existing_ticket(self, external_id: str | None) -> dict | None:
        if not external_id:
            return None
        with self.ctx.sessions() as s:
            ticket = s.scalar(select(Ticket).where(Ticket.source == "api", Ticket.external_id == external_id))
            return {**ticket_view(self.ctx, s, ticket), "duplicate": True,
                    "suggested_articles": _suggested(s, ticket)} if ticket else None

    def _create_ticket(self, actor: Actor, service_id: str, body: dict, opened_at: datetime) -> tuple[int, dict]:
        external_id = body.get("external_id")
        existing = self._existing_ticket(external_id)
        if existing:
            return 200, existing
        ctx = self.ctx
        cmd = Command(actor, f"api: open a ticket on {service_id}" + (f" ({external_id})" if external_id else ""))
        try:
            with ctx.change(cmd) as work:
                ticket = tickets.open_ticket(
                    work, source="api", service_id=service_id, priority=body["priority"], title=body["title"],
                    at=opened_at, external_id=external_id, kind=body.get("kind", "incident"),
                    group=body.get("group"), state=body.get("state", "new"),
                    opened_by=body.get("requester", ACTOR.person_id))
                work.audit(f"{ticket.kind}.new", tickets.number(ticket), service=service_id,
                           priority=ticket.priority, external_id=external_id, opened_at=iso(opened_at),
                           **({"requester": body["requester"]} if "requester" in body else {}))
                breaches.sync_clocks(work, ticket)
                asking.after_ticket(work, ticket)
                view = {**ticket_view(ctx, work.session, ticket), "duplicate": False,
                        "suggested_articles": _suggested(work.session, ticket)}
        except IntegrityError:
            existing = self._existing_ticket(external_id)  # the same external_id, posted twice at once
            if existing is None:
                raise
            return 200, existing
        return 201, view

    async def tickets_get(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]

        def read():
            with self.ctx.sessions() as s:
                return ticket_view(self.ctx, s, _find_ticket(s, ref))
        return web.json_response(await asyncio.to_thread(read))

    async def tickets_event(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        body = await read_body(request, "TicketEventCreate")
        now = self.ctx.now()
        kind, value = body["kind"], body.get("value")
        at = time_of(body.get("at"), now)
        problems = not_future("at", at, now) + self._value_problems(kind, value)
        if problems:
            raise ApiError(422, "The request body is not valid", problems)
        event_id = body.get("event_id")
        view = await asyncio.to_thread(self._add_event, self._client(request).actor(), ref, kind, value, at,
                                       event_id)
        return web.json_response(view)

    def _value_problems(self, kind: str, value: str | None) -> list[str]:
        if kind == "state":
            ok = value in tickets.STATES
            return [] if ok else [f"value: a state event needs a state; states: {', '.join(tickets.STATES)}"]
        if kind == "priority":
            return [] if value in tickets.PRIORITIES else [
                f"value: a priority event needs a priority; priorities: {', '.join(tickets.PRIORITIES)}"]
        if kind == "assign":
            return group_problems(self.ctx, value, "value", "internal") if value is not None else []
        if kind == "supplier":
            return group_problems(self.ctx, value, "value", "supplier") if value is not None else []
        return [] if value is None else [f"value: a {kind} event takes no value"]

    def _add_event(self, actor: Actor, ref: str, kind: str, value: str | None, at: datetime,
                   event_id: str | None) -> dict:
        ctx = self.ctx
        cmd = Command(actor, f"api: {kind} {ref}", delivery_key=f"api:event:{event_id}" if event_id else None)
        try:
            with ctx.change(cmd) as work:
                ticket = _find_ticket(work.session, ref)
                if at < ticket.opened_at:
                    raise ApiError(422, "The event is older than the ticket",
                                   [f"at: {iso(at)} is before {tickets.number(ticket)} was opened "
                                    f"({iso(ticket.opened_at)})"])
                self._check_transition(work.session, ticket, kind, at)
                try:
                    tickets.record(work, ticket, kind, value, at)
                except UserError as exc:
                    raise ApiError(422, "The request body is not valid", [exc.message]) from None
                work.audit(f"{ticket.kind}.{kind}", tickets.number(ticket), value=value, at=iso(at),
                           event_id=event_id)
                breaches.sync_clocks(work, ticket)
                asking.after_ticket(work, ticket)  # resolved: its requester's survey, if its service has one
                return {**ticket_view(ctx, work.session, ticket), "duplicate": False}
        except AlreadyHandled:
            log.info("API event %s repeated; nothing changed", event_id)
            with ctx.sessions() as s:
                return {**ticket_view(ctx, s, _find_ticket(s, ref)), "duplicate": True}

    @staticmethod
    def _check_transition(session, ticket: Ticket, kind: str, at: datetime) -> None:
        """reopen, resolve and close must make sense for the ticket as it stood at `at`."""
        if kind not in ("reopen", "resolve", "close"):
            return
        before = [snap for when, snap in replay(breaches.events_of(session, ticket.id)) if when <= at]
        state = before[-1].state if before else "new"
        allowed = {"reopen": DONE_STATES, "resolve": OPEN_STATES, "close": (*OPEN_STATES, "resolved")}[kind]
        if state not in allowed:
            raise ApiError(409, f"{tickets.number(ticket)} cannot be {kind}{'d' if kind[-1] == 'e' else 'ed'} "
                                f"at {iso(at)}",
                           [f"kind: {tickets.number(ticket)} was {state} at {iso(at)}; {kind} needs it "
                            f"{' or '.join(allowed)}"])
