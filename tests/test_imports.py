"""Import hygiene: the numerical core and the package root stay free of nipype and pybids."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bids_regionx"
FORBIDDEN_IN_CORE = ("nipype", "bids", "nilearn")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_no_app_dependency(path):
    assert not _imported_modules(path) & set(FORBIDDEN_IN_CORE)


def test_package_never_imports_nilearn():
    offenders = [p for p in PACKAGE.rglob("*.py") if "nilearn" in _imported_modules(p)]
    assert offenders == []


@pytest.mark.parametrize("module", ["bids_regionx", "bids_regionx.core", "bids_regionx.estimator"])
def test_import_does_not_load_nipype_or_pybids(module):
    code = (
        f"import sys, {module}; "
        "bad = [m for m in ('nipype', 'bids', 'nilearn') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
