"""The dependency rule, checked: layers point inwards only (import-linter contracts in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports is not None, "import-linter is not installed (pip install -e '.[dev]')"
    result = subprocess.run([lint_imports, "--no-cache"], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_the_contracts_would_catch_a_domain_that_imports_a_driver(tmp_path: Path) -> None:
    """The checker is not vacuous: a copy of the tree with a bad import breaks a contract."""
    for layer in ("domain", "application", "adapters", "entrypoints"):
        shutil.copytree(REPO / layer, tmp_path / layer, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "domain" / "leak.py").write_text("import aiomysql\n")
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports is not None
    result = subprocess.run(
        [lint_imports, "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)},
    )
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
