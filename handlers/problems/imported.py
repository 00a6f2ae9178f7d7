"""Problems from an import: a ServiceNow incident export's ``problem_id`` links its incidents to problems.

``import servicenow`` reads each row's ``problem_id`` with the rest of it (handlers/imports/servicenow_rows.py)
and links each batch of incidents in the batch's own transaction, counted in its audit record
(``link_imported``). An incident's problem is the value of its latest row that names one (the highest
``sys_mod_count``; nine incidents of the UCI log name more than one over their life); a problem is made for
each id not seen before (``source="servicenow"``, ``external_id`` the id, open, titled by the id: the export
carries no more of it), and each imported incident not yet of a problem is linked to it. Importing again changes nothing; an incident someone linked to another
problem in chat stays where they put it. History is not news: nothing is announced and a problem is not
reopened by an import. The export's ``rfc`` and ``caused_by`` name ServiceNow changes, which are not
imported, so they are not used.
"""
from __future__ import annotations


from sqlalchemy import insert, select

from handlers.core.context import Work
from storage.models import Problem, ProblemIncident, Ticket

SOURCE = "servicenow"


class Named(dict):
    """Incident number → problem id, and (once an import asks) the numbers already linked to a problem, read
    with one query for the whole file: a second import then asks the store nothing more."""

    linked: set[str] | None = None

    def already_linked(self, session) -> set[str]:
        if self.linked is None:
            numbers, self.linked = sorted(self), set()
            for i in range(0, len(numbers), 500):
                self.linked.update(session.scalars(
                    select(Ticket.external_id).join(ProblemIncident, ProblemIncident.ticket_id == Ticket.id)
                    .where(Ticket.source == SOURCE, Ticket.external_id.in_(numbers[i:i + 500]))))
        return self.linked


def link_imported(work: Work, service_id: str, numbers: list[str], named: dict[str, str]) -> int:
    """In the import's transaction: link the incidents ``numbers`` (imported) to the problems ``named`` gives
    them, making the problems not seen before; returns how many links were made. The import audits them."""
    wanted = {number: named[number] for number in numbers if number in named}
    session = work.session
    if wanted and isinstance(named, Named):
        linked = named.already_linked(session)
        wanted = {number: problem for number, problem in wanted.items() if number not in linked}
    if not wanted:
        return 0
    # The batch's incidents that name a problem and have none yet (one a person linked meanwhile is left alone).
    todo = dict(session.execute(
        select(Ticket.external_id, Ticket.id).outerjoin(ProblemIncident, ProblemIncident.ticket_id == Ticket.id)
        .where(Ticket.source == SOURCE, Ticket.external_id.in_(list(wanted)),
               ProblemIncident.ticket_id.is_(None))).all())
    if not todo:
        return 0
    names = sorted({wanted[n] for n in todo})
    problems = dict(session.execute(select(Problem.external_id, Problem.id).where(
        Problem.source == SOURCE, Problem.external_id.in_(names))).all())
    # Plain rows with one executemany each, as the import writes its own: the unit of work costs more than the work.
    made = [dict(source=SOURCE, external_id=name, title=f"ServiceNow {name}", services=[service_id], owner=None,
                 state="open", symptom="", workaround="", cause="", reopened=0, created_by=None, created_at=work.now,
                 updated_at=work.now) for name in names if name not in problems]
    if made:
        problems.update((r.external_id, r.id) for r in session.execute(
            insert(Problem).returning(Problem.external_id, Problem.id, sort_by_parameter_order=True), made))
    session.execute(insert(ProblemIncident), [
        dict(ticket_id=ticket_id, problem_id=problems[wanted[number]], person_id=None, via="import", at=work.now,
             workaround_told=False) for number, ticket_id in todo.items()])
    if isinstance(named, Named):
        named.already_linked(session).update(todo)
    return len(todo)
