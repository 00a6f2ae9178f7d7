"""Problems through their other doors: the JSON API (in this process, the app as the server builds it behind
aiohttp's test server) and the ServiceNow import, on small exports in the format of the shared UCI log (its
header and one of its rows as the pattern; CC BY 4.0, see ../shared/data/servicenow-incident-log/SOURCE.md)."""
from __future__ import annotations

import csv
import io
import zipfile

import pytest
import yaml
from sqlalchemy import select

from bot.api import spec
from bot.api_clients import hash_token
from handlers.imports.servicenow import import_servicenow
from handlers.problems.record import STATES
from storage.models import AuditRecord, Problem, ProblemIncident, Ticket
from tests.test_api_clients import LEGACY, READER, _client, bearer, clients_config
from tests.test_knowledge import ok
from tests.test_problems import NEW, VPN_DROPS, incident, problem_of

UCI_LOG = "../shared/data/servicenow-incident-log/incident_event_log.zip"
ROBOT = "svc_test_problems_robot_0123456789"


@pytest.fixture
def config_file(tmp_path):
    cfg = clients_config()
    cfg["api_clients"].append({"name": "linker", "token_hash": hash_token(ROBOT), "scopes": ["tickets"],
                               "on_behalf_of": ["priya"]})
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
async def http(runtime, ctx, monkeypatch):
    client = await _client(runtime, monkeypatch)
    yield client
    await client.close()


async def test_the_api_lists_shows_and_links_as_chat_does(http, ctx, clock):
    first, second, third = (incident(ctx, t) for t in VPN_DROPS)
    prb = problem_of(ctx)
    ok(ctx, "sanne", f"problem link {prb} {first} {second}")
    ok(ctx, "sanne", f'problem known-error {prb} workaround="Reconnect with the TCP profile"')

    answer = await http.get("/api/v1/problems", headers=bearer(READER))
    assert answer.status == 200
    [listed] = (await answer.json())["problems"]
    assert (listed["id"], listed["state"], listed["incidents"], listed["services"]) == (prb, "known-error", 2, ["vpn"])
    assert (await (await http.get("/api/v1/problems?state=resolved", headers=bearer(READER))).json()) == \
        {"problems": []}
    assert (await http.get("/api/v1/problems?state=closed", headers=bearer(READER))).status == 400

    answer = await http.post(f"/api/v1/problems/{prb}/incidents", json={"person": "priya", "incidents": [third]},
                             headers=bearer(ROBOT))
    assert answer.status == 200, await answer.text()
    view = await answer.json()
    assert [i["id"] for i in view["incident_list"]] == [first, second, third]
    assert view["article"].startswith("KB-") and view["impact"]["incidents"] == 3
    with ctx.sessions() as s:
        link = s.get(ProblemIncident, int(third[4:]))
        assert (link.person_id, link.via) == ("priya", "api")
        audit = s.scalars(select(AuditRecord).where(AuditRecord.action == "problem.link")
                          .order_by(AuditRecord.id.desc())).first()
        assert (audit.person_id, audit.client) == ("priya", "linker")

    refused = await http.post(f"/api/v1/problems/{prb}/incidents", json={"person": "tom", "incidents": [third]},
                              headers=bearer(LEGACY))
    assert refused.status == 403 and "owner" in (await refused.json())["error"]
    unknown = await http.post(f"/api/v1/problems/{prb}/incidents", json={"person": "priya",
                                                                         "incidents": ["INC-999"]},
                              headers=bearer(LEGACY))
    assert unknown.status == 422
    assert (await http.get("/api/v1/problems/PRB-999", headers=bearer(READER))).status == 404
    no_scope = await http.post(f"/api/v1/problems/{prb}/incidents", json={"person": "priya", "incidents": [third]},
                               headers=bearer(READER))
    assert no_scope.status == 403


def _export(tmp_path, quoted: bool):
    """Three incidents in the UCI log's own format (its header and one of its rows as the pattern): two of one
    problem, one that names another problem on a later row; with ``quoted``, a caller with a comma in it."""
    with zipfile.ZipFile(UCI_LOG) as archive:
        with archive.open(archive.namelist()[0]) as raw:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))
            header, pattern = next(reader), next(reader)
    col = {name: i for i, name in enumerate(header)}
    rows = []
    for number, problems in (("INC9000001", ["PRB0040001"]), ("INC9000002", ["?", "PRB0040001"]),
                             ("INC9000003", ["PRB0040001", "PRB0040002"])):
        for mod, problem in enumerate(problems):
            row = list(pattern)
            row[col["number"]], row[col["problem_id"]], row[col["sys_mod_count"]] = number, problem, str(mod)
            if quoted:
                row[col["caller_id"]] = "Caller, 2403"
            rows.append(row)
    path = tmp_path / ("quoted.csv" if quoted else "plain.csv")
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


@pytest.mark.parametrize("quoted", [False, True])
def test_an_import_links_incidents_to_the_problems_the_export_names_once(ctx, tmp_path, quoted):
    path = _export(tmp_path, quoted)
    result = import_servicenow(ctx, path, "payments")
    assert (result.tickets_created, result.problem_links) == (3, 3)
    with ctx.sessions() as s:
        linked = dict(s.execute(select(Ticket.external_id, Problem.external_id)
                                .join(ProblemIncident, ProblemIncident.ticket_id == Ticket.id)
                                .join(Problem, Problem.id == ProblemIncident.problem_id)).all())
        problems = s.scalars(select(Problem).order_by(Problem.id)).all()
    assert linked == {"INC9000001": "PRB0040001", "INC9000002": "PRB0040001", "INC9000003": "PRB0040002"}
    assert [(p.source, p.state, p.services) for p in problems] == [("servicenow", "open", ["payments"])] * 2
    again = import_servicenow(ctx, path, "payments")
    assert (again.tickets_unchanged, again.problem_links) == (3, 0)
    with ctx.sessions() as s:
        assert len(s.scalars(select(ProblemIncident)).all()) == 3 and len(s.scalars(select(Problem)).all()) == 2


def test_an_incident_a_person_linked_elsewhere_stays_there_when_imported_again(ctx, tmp_path):
    prb = problem_of(ctx, NEW.replace("vpn", "payments"), who="tom")
    import_servicenow(ctx, _export(tmp_path, False), "payments")
    with ctx.sessions() as s:
        chat_incident = s.scalar(select(Ticket.id).where(Ticket.external_id == "INC9000001"))
    ok(ctx, "tom", f"problem unlink PRB-2 INC-{chat_incident}")
    ok(ctx, "tom", f"problem link {prb} INC-{chat_incident}")
    assert import_servicenow(ctx, _export(tmp_path, False), "payments").problem_links == 0
    with ctx.sessions() as s:
        assert s.get(ProblemIncident, chat_incident).problem_id == int(prb[4:])  # where the person put it


def test_the_api_document_knows_the_states_the_code_knows():
    doc = spec.document()["components"]
    assert doc["parameters"]["ProblemState"]["schema"]["enum"] == list(STATES)
    assert doc["schemas"]["ProblemSummary"]["properties"]["state"]["enum"] == list(STATES)
