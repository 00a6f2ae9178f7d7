"""The time tickets waited on a supplier, read from their histories with the same rule the UC clocks run by
(``clocks.replay`` and the UC's ``counts``): a ticket waits on a supplier while it is awaiting-vendor and the
supplier is the one named on it — or, with none named, one its service lists. Measured in clock time, since
a supplier may hold contracts on several calendars."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from handlers.core.config import AppConfig
from handlers.sla import breaches
from handlers.sla.clocks import VENDOR_STATE, replay
from storage.models import Ticket, TicketEvent


@dataclass(frozen=True)
class Wait:
    ticket_id: int
    service: str
    priority: str  # the ticket's priority now
    title: str
    start: datetime
    end: datetime | None  # None: still waiting


def waits(session: Session, config: AppConfig, supplier: str, before: datetime) -> list[Wait]:
    """Every stretch a ticket waited on the supplier that began before ``before``, oldest first."""
    services = [s.id for s in config.services if supplier in s.suppliers]
    named = select(TicketEvent.ticket_id).where(TicketEvent.kind == "supplier", TicketEvent.value == supplier)
    waited = select(TicketEvent.ticket_id).where(TicketEvent.kind == "state", TicketEvent.value == VENDOR_STATE,
                                                 TicketEvent.at < before)
    tickets = session.execute(select(Ticket.id, Ticket.service_id, Ticket.priority, Ticket.title)
                              .where(Ticket.id.in_(waited), or_(Ticket.service_id.in_(services),
                                                                Ticket.id.in_(named)))).all()
    histories = breaches.events_of_tickets(session, [t.id for t in tickets])
    out = []
    for ticket_id, service_id, priority, title in tickets:
        default = service_id in services
        start = None
        for at, snap in replay(histories.get(ticket_id, [])):
            on_it = snap.state == VENDOR_STATE and (snap.supplier == supplier or (snap.supplier is None and default))
            if on_it and start is None:
                start = at
            elif not on_it and start is not None:
                if at > start:
                    out.append(Wait(ticket_id, service_id, priority, title, start, at))
                start = None
        if start is not None and start < before:
            out.append(Wait(ticket_id, service_id, priority, title, start, None))
    return sorted((w for w in out if w.start < before), key=lambda w: (w.start, w.ticket_id))


def seconds_within(wait: Wait, start: datetime, end: datetime) -> float:
    """The part of a wait inside [start, end) (a wait still going on counts until ``end``)."""
    stop = min(wait.end or end, end)
    return max(0.0, (stop - max(wait.start, start)).total_seconds())


def waiting_at(all_waits: list[Wait], at: datetime) -> list[Wait]:
    """The waits going on at the instant ``at``, longest first."""
    return sorted((w for w in all_waits if w.start <= at and (w.end is None or w.end > at)),
                  key=lambda w: (w.start, w.ticket_id))
