"""Importing changes from other tools. Today: Rabobank's change records (BPI Challenge 2014).

Rabobank Group ICT's HP Service Manager extract ``Detail Change.csv`` (in ``detail_change.zip``; the CSV or the
.zip holding it) has one row per *affected configuration item* of a change: ``;``-separated, times
``d-m-yyyy H:MM`` with no zone, and Excel's ``#N/B`` or ``#MULTIVALUE`` (and empty) where a value is missing.
The 30,275 rows of the published file are 18,000 changes. Every row of one ``Change ID`` becomes one svcbot
change (``source="rabobank"``, ``external_id`` = the Change ID) and one ``ChangeService`` row per affected
service, with the change's window copied:

| svcbot field | from the export |
| --- | --- |
| ``external_id`` | ``Change ID`` (``C00000003``) |
| ``title`` | ``{Change Type} on {CI Name (aff)}`` (``Release Type 11 on HMD000002``); several CIs: ``… and N other CIs`` |
| ``description`` | ``Change Type``, ``Originated from``, ``Risk Assessment``, CAB, emergency, ``# Related Incidents``, each CI with type / subtype / WBS |
| services | ``Service Component WBS (aff)`` lowercased (``wbs000195``), or its app.yaml service from ``--service-map`` (CSV ``wbs,service``) |
| ``kind`` | ``emergency`` if ``Emergency Change`` = ``Y``; ``standard`` if ``Change Type`` starts ``Standard Change``/``Standard Activity``; else ``normal`` |
| ``model`` | none (the export names no standard change model) |
| ``risk``, ``impact`` | ``Risk Assessment``: Minor Change → ``low``, Business Change → ``medium``, Major Business Change → ``high`` |
| ``approvals_needed`` | 1 when ``CAB-approval needed`` is ``Y``, else 0; an emergency change at least 1 |
| ``planned_start``, ``planned_end`` | ``Planned Start``/``End``; if missing or end ≤ start, ``Scheduled Downtime Start``/``End``; then ``Actual Start``/``End`` |
| ``actual_start``, ``actual_end`` | ``Actual Start``, ``Actual End`` |
| ``state``, ``outcome`` | see below |
| ``created_at`` | ``Change record Open Time`` |
| ``closed_at`` | ``Change record Close Time`` (a change with actual times but no close time: its actual end) |
| ``updated_at`` | the close time, else the open time |
| ``requester``, ``implementer``, plans | none: the export names nobody and holds no plans |
| ``revision``, ``prompts_sent``, ``due_at`` | 0, ``[]``, none: history is never prompted nor announced |

State and outcome:

- ``Actual Start`` and ``Actual End`` both given → ``closed``, outcome ``successful``; ``with-issues`` when
  ``# Related Incidents`` is above 0. The export has no failure flag, so an incident recorded against the change
  is the only sign of trouble it carries; no imported change is ``failed``.
- a close time but neither actual time → ``cancelled`` (closed without having been carried out), no outcome.
  A close time and only one of the two actual times (five changes of the real file) → ``closed`` with no outcome:
  the work happened, how it went is not recorded.
- no close time → ``scheduled`` while the planned start is still ahead (of the import's now), else
  ``in-progress`` when it has an actual start without an end, else ``scheduled``. (The real file closes every
  change.)

Times are local wall times of ``--timezone`` (default ``Europe/Amsterdam``), stored in UTC with zoneinfo's
``fold=0``: an hour repeated when summer time ends (``27-10-2013 2:00``) is read as its first occurrence
(00:00 UTC), an hour skipped when it starts (``31-3-2013 2:30``) with the offset before the change (01:30 UTC).

Rows are read one at a time and some are skipped, each counted with its reason: a row without a usable window
(``no planned window``: 1,880 rows of the real file, nearly all with ``Planned Start`` equal to ``Planned End``
and no other window), without a ``Change ID`` or an open time, with an unknown ``Risk Assessment``, an
unreadable time or the wrong number of columns. A change none of whose rows are usable is not imported. A few
changes have rows from two records (reopened and closed again, with other dates); the change's own fields come
from the row closed last (a row not closed counts as the latest; between equals, the first in the file),
its CIs and services from all its usable rows.

A file without the columns this needs is refused, naming the missing ones, before anything is written.
Importing is idempotent: changes are matched on (``source``, ``external_id``), and one whose mapped fields
and services are all as the file says is left alone, so the same file a second time changes nothing. A
change that differs gets the file's values (and its ``revision`` bumped); what svcbot added to it (votes,
override, requester, implementer, plans, announcements) is kept.

The whole file is read and compared first (the existing changes and their services with one query each), then
written a couple of thousand changes per transaction with bulk inserts and updates; one audit record
(``import.rabobank``) with the run's counts goes with the last batch, and none when nothing changed.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, insert, select, update

from handlers.core.config import AppConfig
from handlers.core.context import Actor, Command, Context, UserError, batches
from handlers.imports.csv_files import Skip, csv_member, day_first_time
from storage.models import Change, ChangeService

SOURCE = "rabobank"
BATCH = 2000  # changes per transaction
DEFAULT_TIMEZONE = "Europe/Amsterdam"
CI_NAME, CI_TYPE, CI_SUBTYPE, WBS = "CI Name (aff)", "CI Type (aff)", "CI Subtype (aff)", "Service Component WBS (aff)"
CHANGE_ID, CHANGE_TYPE, RISK, EMERGENCY, CAB = ("Change ID", "Change Type", "Risk Assessment", "Emergency Change",
                                                "CAB-approval needed")
PLANNED = ("Planned Start", "Planned End")
DOWNTIME = ("Scheduled Downtime Start", "Scheduled Downtime End")
ACTUAL = ("Actual Start", "Actual End")
OPENED, CLOSED = "Change record Open Time", "Change record Close Time"
ORIGIN, INCIDENTS = "Originated from", "# Related Incidents"
TIME_COLUMNS = PLANNED + DOWNTIME + ACTUAL + (OPENED, CLOSED)
REQUIRED = (CI_NAME, CI_TYPE, CI_SUBTYPE, WBS, CHANGE_ID, CHANGE_TYPE, RISK, EMERGENCY, CAB) + TIME_COLUMNS + (
    ORIGIN, INCIDENTS)
MISSING = ("", "#N/B", "#MULTIVALUE")  # Dutch Excel's #N/A, and a field that had several values
RISKS = {"Minor Change": "low", "Business Change": "medium", "Major Business Change": "high"}
STANDARD_TYPES = ("Standard Change", "Standard Activity")
TIMESTAMP = re.compile(r"^\s*(\d{1,2})-(\d{1,2})-(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")
CIS_LISTED = 50  # in a description; the rest are counted
# The fields an import sets and compares; anything else on a change is svcbot's own and is kept.
FIELDS = ("title", "description", "kind", "model", "risk", "impact", "planned_start", "planned_end",
          "actual_start", "actual_end", "state", "outcome", "approvals_needed", "created_at", "updated_at",
          "closed_at")
IMPORTER = Actor(person_id="rabobank-import", name="Rabobank change import", platform="import")


@dataclass
class ImportResult:
    changes_created: int = 0
    changes_updated: int = 0
    changes_unchanged: int = 0
    changes_skipped: int = 0  # change ids none of whose rows could be used
    rows_read: int = 0
    rows_skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)  # why rows were skipped → how many rows

    @property
    def changes(self) -> int:
        return self.changes_created + self.changes_updated + self.changes_unchanged

    def lines(self) -> list[str]:
        out = [f"changes created: {self.changes_created}", f"changes updated: {self.changes_updated}",
               f"changes unchanged: {self.changes_unchanged}", f"changes skipped: {self.changes_skipped}",
               f"rows read: {self.rows_read}", f"rows skipped: {self.rows_skipped}"]
        out += [f"  {reason}: {n}" for reason, n in sorted(self.skip_reasons.items())]
        return out


@dataclass(frozen=True, slots=True)
class Row:
    """One usable export row: one CI of one change, its values parsed (times in UTC)."""

    change_id: str
    ci: tuple[str | None, str | None, str | None, str | None]  # name, type, subtype, WBS code (as written)
    change_type: str | None
    risk_text: str
    emergency: bool
    cab: bool
    start: datetime
    end: datetime
    actual_start: datetime | None
    actual_end: datetime | None
    opened: datetime
    closed: datetime | None
    origin: str | None
    incidents: int


# ------------------------------------------------------------------------------------------- reading

def _text(path: Path) -> str:
    """The CSV's text: the file itself, or the one .csv member of a .zip (UTF-8, else Latin-1)."""
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                raw = archive.read(csv_member(archive, path))
        else:
            raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except zipfile.BadZipFile as exc:
        raise UserError(f"Cannot read {path}: {exc}.") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # the export's own code page; every byte is a character


def read_rows(path: str | Path, zone: ZoneInfo) -> tuple[dict[str, list[Row]], Counter, int, int]:
    """The usable rows by Change ID (ids in the order they first appear), the skipped rows' reasons, how many
    rows were read, and how many change ids had no usable row. Raises UserError for a file it cannot use."""
    path = Path(path)
    reader = csv.reader(io.StringIO(_text(path), newline=""), delimiter=";")
    changes: dict[str, list[Row]] = {}
    seen: set[str] = set()
    skipped: Counter = Counter()
    rows_read = 0
    times: dict[str, datetime] = {}
    try:
        header = next(reader, None)
        if header is None:
            raise UserError(f"{path} is empty.")
        col = {name.strip(): i for i, name in enumerate(header) if name.strip()}
        missing = [c for c in REQUIRED if c not in col]
        if missing:
            raise UserError(f"{path} is not a Rabobank change export (Detail Change.csv): "
                            f"no column {', '.join(repr(c) for c in missing)}.")
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # a blank line is no row
            rows_read += 1
            try:
                if len(values) != len(header):
                    raise Skip("wrong number of columns")
                change_id = _value(values[col[CHANGE_ID]])
                if change_id is None:
                    raise Skip("no Change ID")
                if len(change_id) > 128:
                    raise Skip("Change ID longer than 128 characters")
                seen.add(change_id)
                row = _row(change_id, values, col, zone, times)
            except Skip as exc:
                skipped[str(exc)] += 1
                continue
            changes.setdefault(change_id, []).append(row)
    except csv.Error as exc:
        raise UserError(f"{path} is not readable CSV: {exc}.") from None
    return changes, skipped, rows_read, len(seen - changes.keys())


def _row(change_id: str, values: list[str], col: dict[str, int], zone: ZoneInfo, times: dict) -> Row:
    def value(name: str) -> str | None:
        return _value(values[col[name]])

    t = {name: _time(values[col[name]], zone, times, name) for name in TIME_COLUMNS}
    if t[OPENED] is None:
        raise Skip(f"no {OPENED}")
    risk_text = value(RISK)
    if risk_text not in RISKS:
        raise Skip(f"unknown {RISK} '{risk_text}'" if risk_text else f"no {RISK}")
    for start_col, end_col in (PLANNED, DOWNTIME, ACTUAL):
        start, end = t[start_col], t[end_col]
        if start is not None and end is not None and end > start:
            break
    else:
        raise Skip("no planned window")
    return Row(change_id=change_id, ci=(value(CI_NAME), value(CI_TYPE), value(CI_SUBTYPE), value(WBS)),
               change_type=value(CHANGE_TYPE), risk_text=risk_text, emergency=value(EMERGENCY) == "Y",
               cab=value(CAB) == "Y", start=start, end=end, actual_start=t[ACTUAL[0]], actual_end=t[ACTUAL[1]],
               opened=t[OPENED], closed=t[CLOSED], origin=value(ORIGIN), incidents=_int(value(INCIDENTS)))


def _value(text: str) -> str | None:
    text = text.strip()
    return None if text in MISSING else text


def _int(text: str | None) -> int:
    try:
        return int(text) if text else 0
    except ValueError:
        return 0


def _time(text: str, zone: ZoneInfo, cache: dict, column: str) -> datetime | None:
    """A day-first local wall time (``27-10-2013 2:00``) in UTC; None when missing."""
    return day_first_time(text, TIMESTAMP, MISSING, zone, cache, column)


def read_service_map(path: str | Path, config: AppConfig) -> dict[str, str]:
    """``wbs,service`` rows: a lowercased WBS code → the id of an app.yaml service (given by id or name)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"Cannot read the service map {path}: {exc.strerror or exc}.") from None
    except UnicodeDecodeError:
        raise UserError(f"The service map {path} is not UTF-8 text.") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = [(f or "").strip().lower() for f in reader.fieldnames or []]
    if "wbs" not in fields or "service" not in fields:
        raise UserError(f"The service map {path} needs the columns wbs and service (it has: "
                        f"{', '.join(f for f in fields if f) or 'none'}).")
    reader.fieldnames = fields
    out: dict[str, str] = {}
    problems = []
    for line, entry in enumerate(reader, start=2):
        wbs, name = (entry.get("wbs") or "").strip().lower(), (entry.get("service") or "").strip()
        if not wbs and not name:
            continue
        service = config.service(name) if name else None
        if not wbs:
            problems.append(f"line {line}: no wbs")
        elif service is None:
            problems.append(f"line {line}: no service '{name}' in the configuration")
        elif out.get(wbs, service.id) != service.id:
            problems.append(f"line {line}: {wbs} is mapped to {out[wbs]} already")
        else:
            out[wbs] = service.id
    if problems:
        raise UserError(f"The service map {path} is not usable: {'; '.join(problems)}.")
    return out


# ------------------------------------------------------------------------------------------- mapping

def mapped(rows: list[Row], services: dict[str, str], now: datetime) -> tuple[dict, list[str]]:
    """A change's fields (``FIELDS``) and its services, from its usable rows in file order."""
    top = rows[0]
    for row in rows[1:]:  # the row closed last; not closed is later than any close; the first among equals
        if _closing(row) > _closing(top):
            top = row
    cis = list(dict.fromkeys(row.ci for row in rows))
    service_ids = sorted({services.get(wbs.lower(), wbs.lower()[:64]) for *_, wbs in cis if wbs})
    kind = "emergency" if top.emergency else (
        "standard" if top.change_type and top.change_type.startswith(STANDARD_TYPES) else "normal")
    risk = RISKS[top.risk_text]
    state, outcome, closed_at = _state(top, now)
    fields = dict(
        title=_title(top.change_type, cis), description=_description(top, cis), kind=kind, model=None,
        risk=risk, impact=risk, planned_start=top.start, planned_end=top.end, actual_start=top.actual_start,
        actual_end=top.actual_end, state=state, outcome=outcome,
        approvals_needed=max(int(top.cab), 1 if kind == "emergency" else 0), created_at=top.opened,
        updated_at=top.closed or top.opened, closed_at=closed_at)
    return fields, service_ids


def _closing(row: Row) -> tuple[bool, datetime]:
    return (row.closed is None, row.closed or row.opened)


def _state(row: Row, now: datetime) -> tuple[str, str | None, datetime | None]:
    """(state, outcome, closed_at) by the rules in the module's docstring."""
    if row.actual_start and row.actual_end:
        return "closed", "with-issues" if row.incidents > 0 else "successful", row.closed or row.actual_end
    if row.closed:
        return ("closed" if row.actual_start or row.actual_end else "cancelled"), None, row.closed
    if row.start > now:
        return "scheduled", None, None
    return ("in-progress" if row.actual_start else "scheduled"), None, None


def _title(change_type: str | None, cis: list[tuple]) -> str:
    names = list(dict.fromkeys(name for name, *_ in cis if name))
    what = change_type or "Change"
    if not names:
        return what[:300]
    others = len(names) - 1
    more = f" and {others} other CI{'s' if others > 1 else ''}" if others else ""
    return f"{what} on {names[0]}{more}"[:300]


def _description(top: Row, cis: list[tuple]) -> str:
    lines = [f"Rabobank change {top.change_id} ({top.change_type or 'no change type'}), "
             f"originated from {top.origin or 'an unrecorded source'}.",
             f"Risk assessment: {top.risk_text}; CAB approval needed: {'yes' if top.cab else 'no'}; "
             f"emergency change: {'yes' if top.emergency else 'no'}."]
    if top.incidents:
        lines.append(f"Related incidents: {top.incidents}.")
    if len(cis) == 1:
        lines.append(f"Affected CI: {_ci(cis[0])}.")
    else:
        lines.append(f"Affected CIs ({len(cis)}):")
        lines += [f"- {_ci(ci)}" for ci in cis[:CIS_LISTED]]
        if len(cis) > CIS_LISTED:
            lines.append(f"- … and {len(cis) - CIS_LISTED} more")
    return "\n".join(lines)


def _ci(ci: tuple) -> str:
    name, type_, subtype, wbs = ci
    kind = " / ".join(v for v in (type_, subtype) if v)
    text = (name or "unnamed CI") + (f" ({kind})" if kind else "")
    return text + (f", service component {wbs}" if wbs else ", no service component")


# ------------------------------------------------------------------------------------------- writing

def import_rabobank_changes(ctx: Context, path: str | Path, service_map: str | Path | None = None,
                            timezone: str | None = None, *, batch: int = BATCH,
                            actor: Actor | None = None) -> ImportResult:
    """Import Rabobank's ``Detail Change.csv`` (the CSV, or a .zip holding it).

    Raises UserError, before writing anything, for an unknown zone, an unusable service map and a file that
    cannot be read or lacks the columns this needs."""
    zone_name = timezone or DEFAULT_TIMEZONE
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"'{zone_name}' is not an IANA time zone (like Europe/Amsterdam).") from None
    services = read_service_map(service_map, ctx.config) if service_map else {}
    path = Path(path)
    changes, skipped, rows_read, ids_skipped = read_rows(path, zone)
    result = ImportResult(rows_read=rows_read, rows_skipped=sum(skipped.values()), skip_reasons=dict(skipped),
                          changes_skipped=ids_skipped)
    now = ctx.now()
    wanted = {cid: mapped(rows, services, now) for cid, rows in changes.items()}

    with ctx.sessions() as session:  # what is there already: one query for the changes, one for their services
        existing = {r.external_id: r for r in session.execute(
            select(Change.id, Change.external_id, Change.revision, *(getattr(Change, f) for f in FIELDS))
            .where(Change.source == SOURCE))}
        have_services: dict[int, set] = {}
        for change_id, service_id, start, end in session.execute(
                select(ChangeService.change_id, ChangeService.service_id, ChangeService.planned_start,
                       ChangeService.planned_end)
                .join(Change, Change.id == ChangeService.change_id).where(Change.source == SOURCE)):
            have_services.setdefault(change_id, set()).add((service_id, start, end))

    creates: list[str] = []
    updates: list[str] = []
    for cid, (fields, service_ids) in wanted.items():
        old = existing.get(cid)
        if old is None:
            creates.append(cid)
            continue
        window = {(s, fields["planned_start"], fields["planned_end"]) for s in service_ids}
        if all(getattr(old, f) == fields[f] for f in FIELDS) and have_services.get(old.id, set()) == window:
            result.changes_unchanged += 1
        else:
            updates.append(cid)
    result.changes_created, result.changes_updated = len(creates), len(updates)

    work_items = [(cid, None) for cid in creates] + [(cid, existing[cid]) for cid in updates]
    cmd = Command(actor=actor or IMPORTER, text=f"import rabobank-changes {path.name}")
    chunks = list(batches(work_items, batch))
    for i, chunk in enumerate(chunks):
        with ctx.change(cmd) as work:
            _write(work.session, chunk, wanted)
            if i == len(chunks) - 1:
                work.audit("import.rabobank", f"{SOURCE}:{path.name}"[:128], zone=zone_name,
                           created=result.changes_created, updated=result.changes_updated,
                           unchanged=result.changes_unchanged, changes_skipped=result.changes_skipped,
                           rows=result.rows_read, rows_skipped=result.rows_skipped, skip_reasons=dict(skipped),
                           service_map=Path(service_map).name if service_map else None)
    return result


def _write(session, chunk: list[tuple[str, object]], wanted: dict[str, tuple[dict, list[str]]]) -> None:
    """Insert the new changes and update the changed ones of one batch, with their services, in bulk."""
    new = [cid for cid, old in chunk if old is None]
    ids: dict[str, int] = {}
    if new:
        rows = [dict(source=SOURCE, external_id=cid, requester=None, implementer=None, implementation_plan="",
                     backout_plan="", test_plan="", prompts_sent=[], announcements=[], revision=0, due_at=None,
                     **wanted[cid][0]) for cid in new]
        returned = session.execute(insert(Change).returning(Change.id, Change.external_id,
                                                            sort_by_parameter_order=True), rows)
        ids.update((external_id, change_id) for change_id, external_id in returned)
    changed = [(cid, old) for cid, old in chunk if old is not None]
    if changed:
        session.execute(update(Change), [dict(id=old.id, revision=old.revision + 1, **wanted[cid][0])
                                         for cid, old in changed])
        session.execute(delete(ChangeService).where(ChangeService.change_id.in_([old.id for _, old in changed]))
                        .execution_options(synchronize_session=False))
        ids.update((cid, old.id) for cid, old in changed)
    links = [dict(change_id=ids[cid], service_id=sid, planned_start=wanted[cid][0]["planned_start"],
                  planned_end=wanted[cid][0]["planned_end"]) for cid, _ in chunk for sid in wanted[cid][1]]
    if links:
        session.execute(insert(ChangeService), links)
