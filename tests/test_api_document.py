"""The OpenAPI document as data (bot/api/openapi.yaml): a valid OpenAPI 3.1 document, shipped with the
package, in step with the code's own lists, and the schemas that requests are checked against with
jsonschema, each fault worded by the field it concerns."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

from bot.api import common, spec
from handlers.changes import record as change_record
from handlers.core.config import API_SCOPES, RISKS
from handlers.core.config_catalogue import SCALES, SERVICE_STATES
from handlers.sla import tickets
from handlers.sla.clocks import OPEN_STATES
from handlers.surveys import record as survey_record

ROOT = Path(__file__).resolve().parent.parent


def schema(name: str) -> dict:
    return spec.document()["components"]["schemas"][name]


def problems(name: str, value, **kw) -> list[str]:
    return spec.check({"$ref": f"#/components/schemas/{name}"}, value, **kw)


def test_the_document_is_a_valid_openapi_3_1_document():
    validate(spec.document())  # raises with the first fault


def test_the_document_ships_with_the_package_and_is_read_once():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "openapi.yaml" in package_data["bot.api"]
    assert spec.document() is spec.document()
    assert spec.document()["openapi"] == "3.1.0"


def test_the_parsed_document_is_kept_for_its_text_only(tmp_path):
    text = (ROOT / "bot" / "api" / "openapi.yaml").read_text(encoding="utf-8")
    first = spec.parsed(text, tmp_path / "cache")
    [kept] = (tmp_path / "cache").iterdir()
    assert spec.parsed(text, tmp_path / "cache") == first == yaml.safe_load(text)
    kept.write_text('{"openapi": "as kept"}')  # read from the cache, not parsed again
    assert spec.parsed(text, tmp_path / "cache") == {"openapi": "as kept"}
    changed = text.replace("title: svcbot", "title: svcbot changed", 1)
    assert spec.parsed(changed, tmp_path / "cache")["info"]["title"] == "svcbot changed API"
    assert [p.name for p in (tmp_path / "cache").iterdir()] != [kept.name]  # the stale one replaced
    assert len(list((tmp_path / "cache").iterdir())) == 1
    (tmp_path / "unwritable").write_text("a file, not a directory")
    assert spec.parsed(text, tmp_path / "unwritable") == first


def test_the_lists_and_defaults_in_the_document_are_the_code_s():
    assert schema("TicketCreate")["properties"]["priority"]["enum"] == list(tickets.PRIORITIES)
    assert schema("TicketCreate")["properties"]["state"]["enum"] == list(OPEN_STATES)
    assert schema("TicketEventCreate")["properties"]["kind"]["enum"] == list(tickets.EVENT_KINDS)
    assert schema("Ticket")["properties"]["state"]["enum"] == list(tickets.STATES)
    assert schema("Change")["properties"]["state"]["enum"] == list(change_record.STATES)
    assert schema("ChangeCreate")["properties"]["type"]["enum"] == list(change_record.KINDS)
    assert schema("Change")["properties"]["outcome"]["enum"] == [*change_record.OUTCOMES, None]
    assert schema("ChangeCreate")["properties"]["risk"]["enum"] == list(RISKS)
    assert schema("SurveyCreate")["properties"]["scale"]["enum"] == list(SCALES)
    assert schema("ServiceStatus")["properties"]["state"]["enum"] == list(SERVICE_STATES)
    assert str(survey_record.SHOWN_COMMENTS) in schema("SurveyResults")["properties"]["comments"]["description"]
    from bot.api.alertmanager import FINGERPRINT_MAX
    from bot.api.sla import AT_RISK_PAGE
    assert schema("AlertmanagerAlert")["properties"]["fingerprint"]["maxLength"] == FINGERPRINT_MAX
    parameters = spec.document()["components"]["parameters"]
    assert parameters["Limit"]["schema"]["default"] == common.CHANGES_SHOWN
    assert parameters["AtRiskLimit"]["schema"]["default"] == AT_RISK_PAGE
    assert all(scope in spec.document()["components"]["securitySchemes"]["bearerAuth"]["description"]
               for scope in API_SCOPES)


def test_every_operation_but_the_document_wants_a_scope_and_the_api_enforces_those():
    for method, path, op in spec.operations().values():
        scopes = common.scopes_of(op)
        if op["operationId"] == "openapi_document":
            assert scopes == () and op["security"] == []
            continue
        assert scopes and set(scopes) <= set(API_SCOPES), path
        assert "403" in op["responses"], path
        if method == "get" and "read" not in scopes:
            pytest.fail(f"GET {path} does not accept the scope 'read'")
    assert common.scopes_of(spec.operation("tickets_get")[2]) == ("tickets", "read")
    assert common.scopes_of(spec.operation("alertmanager_webhook")[2]) == ("alerts",)


def test_each_fault_is_worded_by_its_field():
    body = {"service": "", "priority": 2, "title": "x" * 1001, "external_id": "a/b", "opened_at": "yesterday",
            "colour": "red"}
    assert problems("TicketCreate", body) == [
        "service: must not be empty",
        "priority: expected a string, got a whole number",  # the wrong type only: not also "not one of"
        "title: longer than 1000 characters",
        'external_id: "a/b" does not match ^[^/]+$',
        "opened_at: expected an RFC 3339 date-time with an offset, like YYYY-MM-DDTHH:MM:SSZ or "
        'YYYY-MM-DDTHH:MM:SS+01:00, got "yesterday"',
        "colour: unknown field; fields: service, priority, title, external_id, kind, opened_at, group, state, "
        "requester",
    ]
    assert problems("TicketCreate", {"kind": "problem"}) == [
        "service: required", "priority: required", "title: required",
        'kind: expected one of incident, request, got "problem"']
    assert problems("TicketCreate", []) == ["(body): expected an object, got a list"]
    assert problems("SurveyCreate", {"owner": "priya", "channel": ["ok", "ops,shop", 3]}) == [
        'channel[1]: "ops,shop" does not match ^[^,\\s]+$', "channel[2]: expected a string, got a whole number"]
    assert problems("TicketEventCreate", {"kind": "respond", "at": "2025-06-02T09:00:00.123456789+02:00"}) == []
    assert spec.check({"$ref": "#/components/parameters/Limit/schema"}, 0, "limit") == ["limit: less than 1"]
    assert spec.check({"$ref": "#/components/parameters/Limit/schema"}, 1001, "limit") == ["limit: more than 1000"]


def test_a_nullable_reference_reports_the_faults_of_the_option_of_the_value_s_type():
    results = {"answers": "some", "invited": None, "response_rate": None, "score_name": "CSAT", "score": None,
               "csat": None, "nps": None, "yes": None, "distribution": {"1": 0}, "trend": None, "comments": []}
    found = spec.check({"$ref": "#/components/schemas/SurveyResults"}, results, "(answer)")
    assert found == ["(answer).answers: expected a whole number, got a string"]
    assert problems("SurveyResults", {**results, "answers": 1, "trend": 5}) == [
        "trend: expected an object or null, got a whole number"]


def test_closed_treats_every_described_object_as_closed_to_other_fields():
    outage = {"id": "OUT-1", "number": 1, "external_id": None, "service": "vpn", "kind": "unplanned",
              "source": "api", "summary": "", "started_at": "2025-06-02T09:00:00Z", "ended_at": None}
    assert problems("Outage", {**outage, "colour": "red"}) == []
    assert problems("Outage", {**outage, "colour": "red"}, closed=True)[0].startswith("colour: unknown field")


def test_each_schema_is_compiled_once():
    assert spec.validator("#/components/schemas/TicketCreate") is spec.validator("#/components/schemas/TicketCreate")
    before = spec.validator.cache_info().misses
    for _ in range(3):
        problems("TicketCreate", {"title": "x"})
    assert spec.validator.cache_info().misses <= before + 1
    with pytest.raises(ValueError, match="local"):
        spec.validator("https://example.org/schema")
