"""mypy, strict, on the packages pyproject.toml names ([tool.mypy]): the pure core, the schema and Harper's wire.

Run inside `make test` (it costs a few seconds in the foreground pytest, which finishes well before the node run
does); `make typecheck` runs the same for a quick look.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_typed_packages_pass_mypy_strict():
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"mypy found errors (run `make typecheck`):\n{done.stdout}{done.stderr}"
