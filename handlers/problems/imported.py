"""Problems from an import: a ServiceNow incident export's ``problem_id`` links its incidents to problems.

Run once after the incidents are in (``import servicenow`` calls it at its end): the file is read again for
three columns only, each incident's problem is the value of its latest row that names one (the highest
``sys_mod_count``; nine incidents of the UCI log name more than one over their life), a problem is made for
each id not seen before (``source="servicenow"``, ``external_id`` the id, open, titled by the id: the export
carries no more of it), and each imported incident not yet of a problem is linked to it. Importing again
changes nothing; an incident someone linked to another problem in chat stays where they put it. History is
not news: nothing is announced and a problem is not reopened by an import. The export's ``rfc`` and
``caused_by`` name ServiceNow changes, which are not imported, so they are not used.
"""
from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from sqlalchemy import select

from handlers.core.context import Actor, Command, Context, batches
from storage.models import Problem, ProblemIncident, Ticket

SOURCE = "servicenow"
MISSING = ("", "?")
CHUNK = 500  # ids per IN (...) query


def problem_ids(path: Path) -> dict[str, str]:
    """Incident number → the problem id its latest row names; empty when the export has no ``problem_id``.

    Lines without a quote are split on commas (a third of the csv module's time on the UCI log, which has
    none); a file with quotes anywhere is read again with the csv module, which knows quoted commas and
    line breaks."""
    with _text(path) as text:
        header = next(text, "")
        lines = _plain_lines(text)
        found = _latest(header.rstrip("\r\n").split(","), lines)
    if found is None:
        with _text(path) as text:
            reader = csv.reader(text)
            found = _latest(next(reader, []), reader) or {}
    return {number: problem for number, (_, problem) in found.items()}


class _Quoted(Exception):
    pass


def _plain_lines(text):
    for line in text:
        if '"' in line:
            raise _Quoted
        yield line.rstrip("\r\n").split(",")


def _latest(header: list[str], rows) -> dict[str, tuple[int, str]] | None:
    col = {name.strip().strip('"'): i for i, name in enumerate(header)}
    if not {"number", "problem_id"} <= set(col):
        return {}
    number_at, problem_at, mod_at = col["number"], col["problem_id"], col.get("sys_mod_count")
    width = max(number_at, problem_at, mod_at or 0)
    found: dict[str, tuple[int, str]] = {}
    try:
        for values in rows:
            if len(values) <= width or values[problem_at].strip() in MISSING:
                continue
            number, problem = values[number_at].strip(), " ".join(values[problem_at].split())
            mod = int(values[mod_at]) if mod_at is not None and values[mod_at].strip().isdigit() else 0
            if number not in MISSING and (number not in found or mod >= found[number][0]):
                found[number] = (mod, problem)
    except _Quoted:
        return None
    return found


def _text(path: Path):
    if path.suffix.lower() != ".zip":
        return open(path, newline="", encoding="utf-8-sig")
    archive = zipfile.ZipFile(path)
    member = next(m for m in archive.namelist() if m.lower().endswith(".csv"))
    return io.TextIOWrapper(archive.open(member), encoding="utf-8-sig", newline="")


def link_servicenow(ctx: Context, path: str | Path, service_id: str, actor: Actor) -> int:
    """Link the imported incidents of the export to their problems; returns how many links were made."""
    wanted = problem_ids(Path(path))
    if not wanted:
        return 0
    cmd = Command(actor=actor, text=f"import servicenow {Path(path).name}: problems")
    with ctx.change(cmd) as work:
        session = work.session
        tickets: dict[str, int] = {}
        for numbers in batches(sorted(wanted), CHUNK):
            tickets.update(session.execute(select(Ticket.external_id, Ticket.id).where(
                Ticket.source == SOURCE, Ticket.external_id.in_(numbers))).all())
        held: set[int] = set()
        for ids in batches(sorted(tickets.values()), CHUNK):
            held.update(session.scalars(select(ProblemIncident.ticket_id).where(ProblemIncident.ticket_id.in_(ids))))
        todo = {number: ticket_id for number, ticket_id in tickets.items() if ticket_id not in held}
        if not todo:
            return 0
        names = sorted({wanted[n] for n in todo})
        problems: dict[str, int] = {}
        for chunk in batches(names, CHUNK):
            problems.update(session.execute(select(Problem.external_id, Problem.id).where(
                Problem.source == SOURCE, Problem.external_id.in_(chunk))).all())
        made = [name for name in names if name not in problems]
        for name in made:
            problem = Problem(source=SOURCE, external_id=name, title=f"ServiceNow {name}", services=[service_id],
                              owner=None, state="open", symptom="", workaround="", cause="", reopened=0,
                              created_by=None, created_at=work.now, updated_at=work.now)
            session.add(problem)
            session.flush()
            problems[name] = problem.id
        session.add_all(ProblemIncident(ticket_id=ticket_id, problem_id=problems[wanted[number]], person_id=None,
                                        via="import", at=work.now, workaround_told=False)
                        for number, ticket_id in todo.items())
        work.audit("import.problems", f"{SOURCE}:{Path(path).name}"[:128], service=service_id,
                   problems_created=len(made), incidents_linked=len(todo))
    return len(todo)
