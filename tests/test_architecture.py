"""The house's rules, drawn from the code: the layers and the forbidden imports of pyproject's import-linter
contracts, no import circle, and no module a reader cannot hold in mind."""
from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent
LONGEST = 500  # lines


def test_the_import_contracts_hold(capsys):
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out


def test_no_module_is_longer_than_one_can_hold_in_mind():
    long = {str(p.relative_to(ROOT)): n for d in ("bot", "handlers", "storage") for p in (ROOT / d).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > LONGEST}
    assert long == {}
