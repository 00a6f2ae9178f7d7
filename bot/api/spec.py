"""The OpenAPI 3.1 document of the JSON API (openapi.yaml beside this module) and the checking of requests
against it. The document is read once, when first needed; request bodies and query parameters are checked
by ``jsonschema`` (Draft 2020-12, the dialect of OpenAPI 3.1) with its ``$ref``s resolved through a
``referencing`` registry, and each fault is worded as "field: what is wrong", the way the API has always
answered. Both libraries are imported on first use, so that importing the server stays quick."""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from handlers.sla.alertmanager import parse_rfc3339

DOCUMENT_URI = "urn:svcbot:openapi"  # the document's name in the registry; its $refs are "#/components/…"
ROOT = "(body)"  # how a problem names the whole body

_TYPE_WORDS = {"object": "an object", "array": "a list", "string": "a string", "integer": "a whole number",
               "number": "a number", "boolean": "true or false", "null": "null"}
# Within one field, the order in which its faults are listed.
_KEYWORD_ORDER = {name: i for i, name in enumerate(
    ("anyOf", "type", "enum", "minLength", "maxLength", "pattern", "format", "minimum", "maximum"))}


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document, as served. Callers must not change it."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    return parsed(text, Path(__file__).with_name("__pycache__"))


def parsed(text: str, cache: Path) -> dict[str, Any]:
    """The document parsed. Parsing its YAML takes some 70 ms, at every start of the server, so what it
    gave is kept in ``cache`` as JSON (read in 2 ms), named by a hash of the text, as Python keeps
    bytecode. Where that cannot be written, the text is parsed each time."""
    kept = cache / f"openapi.{hashlib.sha256(text.encode()).hexdigest()[:20]}.json"
    try:
        return json.loads(kept.read_bytes())
    except (OSError, ValueError):
        pass
    doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    try:
        cache.mkdir(exist_ok=True)
        for old in cache.glob("openapi.*.json"):
            old.unlink(missing_ok=True)
        written = kept.with_suffix(f".{os.getpid()}.tmp")
        written.write_text(json.dumps(doc))
        os.replace(written, kept)  # whole or not at all, for another process reading it meanwhile
    except OSError:
        pass
    return doc


@functools.cache
def document_json() -> bytes:
    """The document as the JSON served at /api/v1/openapi.json, encoded once."""
    return json.dumps(document()).encode()


@functools.cache
def operations() -> dict[str, tuple[str, str, dict]]:
    """operationId: (method, path, operation)."""
    return {op["operationId"]: (method, path, op)
            for path, ops in document()["paths"].items() for method, op in ops.items()}


def operation(op_id: str) -> tuple[str, str, dict]:
    return operations()[op_id]


def lookup(ref: str) -> dict:
    """What a local $ref ("#/components/…") of the document points at."""
    return _registry(False).resolver(DOCUMENT_URI).lookup(ref).contents


def resolve(node: dict) -> dict:
    """The node, or what it refers to when it is a $ref (a parameter, a response, a schema)."""
    while "$ref" in node:
        node = lookup(node["$ref"])
    return node


@functools.cache
def query_parameters(op_id: str) -> dict[str, dict]:
    """The query parameters an operation documents, by name, each with the ref of its schema."""
    out = {}
    for param in operation(op_id)[2].get("parameters", []):
        ref = param.get("$ref")
        if ref is None:
            raise ValueError(f"{op_id}: parameters are declared in components.parameters and referred to")
        param = lookup(ref)
        if param["in"] == "query":
            out[param["name"]] = {**param, "schema_ref": f"{ref}/schema"}
    return out


# ------------------------------------------------------------------ validators

def _closed(doc: dict) -> dict:
    """The document with every object schema that lists properties closed to others (for the tests, which
    use it to find fields an answer has but the document does not describe)."""
    doc = copy.deepcopy(doc)

    def close(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)
    close(doc["components"]["schemas"])
    return doc


@functools.cache
def _registry(closed: bool):
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012
    doc = _closed(document()) if closed else document()
    return Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(doc))


@functools.cache
def _format_checker():
    from jsonschema import FormatChecker
    checker = FormatChecker(formats=())
    # Alertmanager's own parser: RFC 3339 with an offset, nanoseconds allowed.
    checker.checks("date-time")(lambda value: not isinstance(value, str) or parse_rfc3339(value) is not None)
    return checker


@functools.cache
def validator(ref: str, closed: bool = False):
    """A compiled Draft 2020-12 validator for the schema at a local $ref of the document; one per schema."""
    from jsonschema import Draft202012Validator
    if not ref.startswith("#/"):
        raise ValueError(f"not a local $ref of the document: {ref!r}")
    return Draft202012Validator({"$ref": DOCUMENT_URI + ref}, registry=_registry(closed),
                                format_checker=_format_checker())


def check(schema: dict, value: Any, path: str = ROOT, *, closed: bool = False) -> list[str]:
    """Every way ``value`` departs from ``schema`` (``{"$ref": "#/components/…"}``), each as "path: what is
    wrong", in the order of the value's fields. ``closed`` treats every object schema with properties as if it
    had additionalProperties: false."""
    found = validator(schema["$ref"], closed).iter_errors(value)
    return [text for _, text in sorted(_problems(list(found), path, value), key=lambda p: p[0])]


# ------------------------------------------------------------------ the problems, worded

def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number"
    for kind, word in ((float, "a number"), (str, "a string"), (list, "a list"), (dict, "an object")):
        if isinstance(value, kind):
            return word
    return type(value).__name__


def show(value: Any) -> str:
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _name(root: str, parts) -> str:
    out = root
    for part in parts:
        out = f"{out}[{part}]" if isinstance(part, int) else part if out == ROOT else f"{out}.{part}"
    return out


def _position(value: Any, parts) -> tuple:
    """Where a field is in the value: the index of each key and item on the way to it."""
    out = []
    for part in parts:
        if isinstance(value, dict) and part in value:
            out.append(list(value).index(part))
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            out.append(part)
        else:
            break
        value = value[part]
    return tuple(out)


def _types(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _problems(errors: list, root: str, whole: Any) -> list[tuple[tuple, str]]:
    """(sort key, text) for each fault. Within one field a wrong type is the only fault told, and a value
    outside its enum is told before anything else about it, as a reader fixes them in that order."""
    firsts: dict[tuple, int] = {}
    for error in errors:
        at = tuple(error.absolute_path)
        rank = 0 if error.validator == "type" else 1 if error.validator == "enum" else 2
        firsts[at] = min(firsts.get(at, 2), rank)
    out: list[tuple[tuple, str]] = []
    told_required: set[tuple] = set()
    for error in errors:
        at = tuple(error.absolute_path)
        rank = 0 if error.validator == "type" else 1 if error.validator == "enum" else 2
        if firsts[at] < 2 and rank != firsts[at]:
            continue
        name, value, keyword = _name(root, at), error.instance, error.validator
        order = (_position(whole, at), _KEYWORD_ORDER.get(keyword, len(_KEYWORD_ORDER)))
        if keyword == "required":
            if at not in told_required:
                told_required.add(at)
                out += [((_position(whole, at) + (-1,), 0), f"{_name(root, (*at, field))}: required")
                        for field in error.validator_value if field not in value]
        elif keyword == "additionalProperties" and error.validator_value is False:
            known = list(error.schema.get("properties", {}))
            out += [((_position(whole, (*at, field)), 0),
                     f"{_name(root, (*at, field))}: unknown field; fields: {', '.join(known)}")
                    for field in value if field not in known]
        elif keyword == "anyOf":
            out += _none_fits(error, root, whole, name, order)
        else:
            out.append((order, f"{name}: {_wording(error)}"))
    return out


def _none_fits(error, root: str, whole: Any, name: str, order: tuple) -> list[tuple[tuple, str]]:
    """anyOf (a nullable $ref): the faults of the first option of the value's type; else the types wanted."""
    by_option: dict[int, list] = {}
    for sub in error.context:
        by_option.setdefault(sub.relative_schema_path[0], []).append(sub)
    wanted: list[str] = []
    for index in range(len(error.validator_value)):
        faults = by_option.get(index, [])
        wrong_type = [f for f in faults if f.validator == "type" and not f.relative_path]
        if not wrong_type:
            return _problems(faults, root, whole)
        wanted += [_TYPE_WORDS[t] for f in wrong_type for t in _types(f.validator_value)]
    return [(order, f"{name}: expected {' or '.join(dict.fromkeys(wanted))}, got {json_type(error.instance)}")]


def _wording(error) -> str:
    keyword, wanted, value = error.validator, error.validator_value, error.instance
    if keyword == "type":
        return f"expected {' or '.join(_TYPE_WORDS[t] for t in _types(wanted))}, got {json_type(value)}"
    if keyword == "enum":
        return f"expected one of {', '.join(str(v) for v in wanted if v is not None)}, got {show(value)}"
    if keyword == "minLength":
        return "must not be empty" if wanted == 1 else f"shorter than {wanted} characters"
    if keyword == "maxLength":
        return f"longer than {wanted} characters"
    if keyword == "pattern":
        return f"{show(value)} does not match {wanted}"
    if keyword == "format" and wanted == "date-time":
        return ("expected an RFC 3339 date-time with an offset, like YYYY-MM-DDTHH:MM:SSZ or "
                f"YYYY-MM-DDTHH:MM:SS+01:00, got {show(value)}")
    if keyword == "minimum":
        return f"less than {wanted}"
    if keyword == "maximum":
        return f"more than {wanted}"
    return error.message
