"""The router names its handlers as "module:function" and imports a capability when its word is first used:
every name must lead to a handler, and the import contracts must still see every module the router uses."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from handlers import router
from handlers.home import shortcuts
from handlers.surveys import asking
from handlers.surveys import record as survey_record

ROOT = Path(__file__).resolve().parent.parent


def _named(table: dict) -> dict[str, str]:
    return {key: handler.target for key, handler in table.items() if isinstance(handler, router.lazy)}


def test_every_route_and_form_leads_to_a_handler():
    for table in (router.ROUTES, router.FORMS):
        for key, handler in table.items():
            function = handler.resolve() if isinstance(handler, router.lazy) else handler
            assert callable(function), key
            if isinstance(handler, router.lazy):
                assert f"{function.__module__}:{function.__name__}" == handler.target, key


def test_form_names_are_the_ones_their_modules_give():
    assert router.FORMS[survey_record.ANSWER_FORM].resolve() is asking.submit_answer
    assert router.FORMS[shortcuts.INCIDENT_FORM].resolve() is shortcuts.submit_incident
    assert router.FORMS[shortcuts.CHANGE_FORM].resolve() is shortcuts.submit_change


def test_the_import_contracts_see_every_module_a_route_names():
    # import-linter reads the router's imports, TYPE_CHECKING ones included; a route to a module not imported
    # there would be an edge of the layers no contract checks.
    imported = set()
    for node in ast.walk(ast.parse((ROOT / "handlers" / "router.py").read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    named = {target.partition(":")[0] for table in (router.ROUTES, router.FORMS)
             for target in _named(table).values()}
    assert named - imported == set()


def test_importing_the_router_imports_no_capability():
    run = subprocess.run([sys.executable, "-c", "import sys, handlers.router; print(' '.join(sorted(m for m in "
                          "sys.modules if m.startswith('handlers.') and not m.startswith('handlers.core'))))"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    assert run.stdout.split() == ["handlers.router"]
