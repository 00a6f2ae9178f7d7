"""The house's rules, drawn from the code: the layers and the forbidden imports of pyproject's import-linter
contracts, no import circle, and no module a reader cannot hold in mind."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LONGEST = 500  # lines


def test_the_import_contracts_hold():
    # In a process of its own: import-linter configures logging, which would leave this worker's later
    # tests without their log capture.
    run = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                          "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))",
                          str(ROOT / "pyproject.toml")], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def test_no_module_is_longer_than_one_can_hold_in_mind():
    long = {str(p.relative_to(ROOT)): n for d in ("bot", "handlers", "storage") for p in (ROOT / d).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > LONGEST}
    assert long == {}
