"""Importing a ServiceNow incident export: each incident's history (read by ``servicenow_rows``) brought
into the store as a ticket with its events and clocks.

Tickets are ``source="servicenow"``, ``external_id`` = the incident number. Importing is additive and
idempotent: an event already in a ticket's history (same time, kind and value) is not added again, so the same
file a second time changes nothing, and a later export adds only what is new (and re-measures only those
tickets' clocks). Nothing is ever taken out of a history. So import every export of one instance with the same
zone: the same rows read in another zone are other instants, and would be added. A ticket imported before into
another service moves to the one given (and is measured again). Clocks are measured with
``announce_past=False``: history is never announced as news.

``limit`` counts incidents (the first N incident numbers in the file, with all their rows wherever they are),
never rows, so an incident is never cut in two by it; ``rows_read`` counts the rows of those incidents.

Incidents are written a few hundred at a time, each batch in one transaction with one audit record
(``import.servicenow``) when it changed anything: tickets and events are built in memory, the batch's
existing tickets and events are read with one query each (as plain rows: an unchanged ticket is never
loaded as an object), new tickets and all events are inserted with one executemany each, and the clocks of
every ticket that changed are measured once, from the whole history in hand, and written together
(``breaches.sync_clocks_of_histories``: the same measure ``sync_clocks`` takes from the store).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import DateTime, bindparam, select, type_coerce

from handlers.core.context import Actor, Command, Context, UserError, batches
from handlers.imports.csv_files import collector_paused
from handlers.imports.servicenow_rows import Event, Row, history, read_incidents
from handlers.problems import imported as problems
from handlers.sla import breaches, tickets
from handlers.sla.clocks import Event as ClockEvent
from storage.bulk import insert_rows
from storage.models import Ticket, TicketEvent

SOURCE = "servicenow"
BATCH = 250  # incidents per transaction


IMPORTER = Actor(person_id="servicenow-import", name="ServiceNow import", platform="import")


@dataclass
class ImportResult:
    tickets_created: int = 0
    tickets_updated: int = 0
    tickets_unchanged: int = 0
    events_added: int = 0
    rows_read: int = 0  # rows of the incidents taken (all of them when there is no limit), skipped ones too
    rows_skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)  # why rows were skipped → how many
    problem_links: int = 0  # incidents linked to the problem the export names (handlers/problems/imported.py)

    @property
    def tickets(self) -> int:
        return self.tickets_created + self.tickets_updated + self.tickets_unchanged

    def lines(self) -> list[str]:
        out = [f"tickets created: {self.tickets_created}", f"tickets updated: {self.tickets_updated}",
               f"tickets unchanged: {self.tickets_unchanged}", f"events added: {self.events_added}",
               f"rows read: {self.rows_read}", f"rows skipped: {self.rows_skipped}"]
        out += [f"  {reason}: {n}" for reason, n in sorted(self.skip_reasons.items())]
        out += [f"incidents linked to problems: {self.problem_links}"] if self.problem_links else []
        return out


def _refresh(ticket, events: list[Event]) -> None:
    """The ticket's current fields from its whole history (in order), as tickets.record would leave them."""
    ticket.state, ticket.responded_at, ticket.resolved_at, ticket.closed_at = "new", None, None, None
    ticket.assignment_group = ticket.supplier = None
    for at, kind, value in events:
        if kind == "open":
            ticket.priority = value or ticket.priority
        else:
            tickets._apply(ticket, kind, value, at)


def _new_ticket(number: str, service_id: str, rows: list[Row], events: list[Event]) -> dict:
    """A new ticket's row. Worked out on a plain object: the mapped class's attribute events cost more
    than the work itself when there are thousands."""
    ticket = SimpleNamespace(kind="incident", source=SOURCE, external_id=number, service_id=service_id,
                             title=f"{number} · {rows[0].title}" if rows[0].title else f"ServiceNow {number}",
                             priority=events[0][2], state="new", opened_at=rows[-1].opened, opened_by=None,
                             updated_at=rows[-1].opened, source_resolved_at=rows[-1].resolved)
    _refresh(ticket, events)
    return vars(ticket)


def _kept(events: list[Event]) -> list[Event]:
    """The events with their times as the store keeps them: naive UTC (the history's times are UTC)."""
    return [(at.replace(tzinfo=None), kind, value) for at, kind, value in events]


def _missing(stored: list[Event], events: list[Event]) -> list[Event]:
    """The events of the rebuilt history that the stored one (its times naive UTC, as kept) lacks."""
    kept = _kept(events)
    if stored == kept:
        return []  # the usual case on a second import: the same history, in the same order
    have = Counter(stored)
    missing = []
    for event, key in zip(events, kept):
        if have[key] > 0:
            have[key] -= 1
        else:
            missing.append(event)
    return missing


# What a batch reads, built once (each binds its batch's numbers or ticket ids): the tickets as plain rows,
# and their stored events in the store's order (by ticket, then by time, then as recorded); the times
# naive UTC as the store keeps them.
_EXISTING = (select(Ticket.external_id, Ticket.id, Ticket.service_id,
                    type_coerce(Ticket.source_resolved_at, DateTime()))
             .where(Ticket.source == SOURCE, Ticket.external_id.in_(bindparam("numbers", expanding=True))))
_STORED = (select(TicketEvent.ticket_id, type_coerce(TicketEvent.at, DateTime()), TicketEvent.kind, TicketEvent.value)
           .where(TicketEvent.ticket_id.in_(bindparam("ids", expanding=True)))
           .order_by(TicketEvent.ticket_id, TicketEvent.at, TicketEvent.id))


class _NaiveTimes(dict):
    """UTC times → as the store gives them back (naive), each distinct one worked out once, when first asked."""

    def __missing__(self, at: datetime) -> datetime:
        kept = self[at] = at.replace(tzinfo=None)
        return kept


def _all_same(session, existing: dict, built: dict[str, list[Event]], naive: _NaiveTimes) -> bool:
    """Whether every stored ticket's history is the rebuilt one, event for event: the usual second import.
    Compared as two lists of plain tuples, the rebuilt times naive as the store gives them back."""
    by_id = sorted((ticket_id, number) for number, (ticket_id, _, _) in existing.items())
    rebuilt = [(ticket_id, naive[at], kind, value) for ticket_id, number in by_id for at, kind, value in built[number]]
    read = session.connection().execute(_STORED, {"ids": [ticket_id for ticket_id, _ in by_id]}).all()
    return list(map(tuple, read)) == rebuilt


def import_servicenow(ctx: Context, path: str | Path, service_id: str, timezone: str | None = None,
                      limit: int | None = None, *, batch: int = BATCH, actor: Actor | None = None) -> ImportResult:
    """Import a ServiceNow incident export (the CSV, or a .zip holding it) into a service.

    ``limit`` counts incidents (the first N incident numbers of the file), never rows, so an incident is
    always imported whole. Raises UserError for an unknown service or zone and an unreadable file."""
    service = ctx.config.service(service_id)
    if service is None:
        known = ", ".join(s.id for s in ctx.config.services)
        raise UserError(f"There is no service '{service_id}'. Known: {known}.")
    zone_name = timezone or ctx.config.calendars[service.calendar].timezone
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"'{zone_name}' is not an IANA time zone (like Europe/London).") from None
    if limit is not None and limit < 0:
        raise UserError("The limit counts incidents; give a number of 0 or more.")
    path = Path(path)
    with collector_paused():
        incidents, skipped, rows_read, named = read_incidents(path, zone, limit)
        named = problems.Named(named)  # incident number → the problem it names
        result = ImportResult(rows_read=rows_read, rows_skipped=sum(skipped.values()), skip_reasons=dict(skipped))
        cmd = Command(actor=actor or IMPORTER, text=f"import servicenow {path.name} --service {service.id}")
        stored_times: dict = {}  # each instant in the store's form, worked out once for the whole file
        naive_times = _NaiveTimes()  # and as the store gives it back
        for numbers in batches(list(incidents), batch):
            _import_batch(ctx, cmd, service.id, path.name, numbers, incidents, result, stored_times, naive_times,
                          named)
    return result


def _import_batch(ctx: Context, cmd: Command, service_id: str, file_name: str, numbers: list[str],
                  incidents: dict[str, list[Row]], result: ImportResult, stored_times: dict,
                  naive_times: _NaiveTimes, named: dict[str, str]) -> None:
    built = {n: history(incidents[n]) for n in numbers}
    with ctx.change(cmd) as work:
        session = work.session
        # Read as plain rows: a ticket is loaded as an object only when it changes.
        existing = {number: (ticket_id, service, source_resolved) for number, ticket_id, service, source_resolved
                    in session.connection().execute(_EXISTING, {"numbers": numbers}).all()}
        known: dict[int, list[Event]] = {t[0]: [] for t in existing.values()}
        same = bool(known) and _all_same(session, existing, built, naive_times)
        if known and not same:
            for ticket_id, at, kind, value in session.connection().execute(_STORED, {"ids": list(known)}).all():
                known[ticket_id].append((at, kind, value))

        created: list[tuple[str, dict, list[Event]]] = []
        changed: list[tuple[int, list[Event], list[Event]]] = []  # id, the events it lacks, the whole history
        for number in numbers:
            events, rows = built[number], incidents[number]
            if number not in existing:
                created.append((number, _new_ticket(number, service_id, rows, events), events))
                continue
            (ticket_id, service, source_resolved), resolved = existing[number], rows[-1].resolved
            missing = [] if same else _missing(known[ticket_id], events)
            if not missing and service == service_id and source_resolved == (resolved and naive_times[resolved]):
                result.tickets_unchanged += 1
                continue
            # The whole history in the order the store will give it back: by time, then older rows first.
            merged = sorted([(at.replace(tzinfo=timezone.utc), 0, k, kind, value)
                             for k, (at, kind, value) in enumerate(_kept(events) if same else known[ticket_id])]
                            + [(at, 1, k, kind, value) for k, (at, kind, value) in enumerate(missing)])
            changed.append((ticket_id, missing, [(at, kind, value) for at, _, _, kind, value in merged]))
        if not created and not changed:
            linked = problems.link_imported(work, service_id, numbers, named)  # a store imported before problems
            if linked:
                work.audit("import.problems", f"{SOURCE}:{file_name}"[:128], service=service_id, linked=linked)
            result.problem_links += linked
            return

        if changed:
            loaded = {t.id: t for t in session.scalars(select(Ticket).where(Ticket.id.in_([c[0] for c in changed])))}
            for ticket_id, _, whole in changed:
                ticket = loaded[ticket_id]
                ticket.service_id, ticket.source_resolved_at = service_id, incidents[ticket.external_id][-1].resolved
                _refresh(ticket, whole)
            session.flush()
        ids: dict[str, int] = {}
        if created:
            insert_rows(session, Ticket.__table__, [fields for _, fields, _ in created], stored_times)
            ids = dict(session.execute(select(Ticket.external_id, Ticket.id).where(
                Ticket.source == SOURCE, Ticket.external_id.in_([number for number, _, _ in created]))).all())
        added = [(ids[number], events, events) for number, _, events in created] + changed
        rows_out = [dict(ticket_id=ticket_id, at=at, kind=kind, value=value, person_id=None, recorded_at=work.now)
                    for ticket_id, events, _ in added for at, kind, value in events]
        insert_rows(session, TicketEvent.__table__, rows_out, stored_times)
        # Every clock measured once, from the history in hand: the same order and events the store now holds.
        breaches.sync_clocks_of_histories(
            work, [(ticket_id, service_id, [ClockEvent(*e) for e in whole]) for ticket_id, _, whole in added],
            announce_past=False, stored_times=stored_times)
        linked = problems.link_imported(work, service_id, numbers, named)
        work.audit("import.servicenow", f"{SOURCE}:{file_name}"[:128], service=service_id,
                   created=len(created), updated=len(changed), events=len(rows_out),
                   first=numbers[0], last=numbers[-1], problems_linked=linked)
    result.tickets_created += len(created)
    result.tickets_updated += len(changed)
    result.problem_links += linked
    result.events_added += len(rows_out)
