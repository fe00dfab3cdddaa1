"""The layers point one way: dagster_project -> pipelines -> featurizer, recmodel. Checked on the
source (every import statement, also those inside functions), not on what one run imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "pipelines": {"dagster_project", "dagster"},
    "featurizer": {"dagster_project", "dagster", "pipelines", "recmodel"},
    "recmodel": {"dagster_project", "dagster", "pipelines", "featurizer"},
}


def _imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_library_never_imports_a_layer_above_or_beside_it(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
        if _imported_packages(path) & FORBIDDEN[package]
    }

    assert offenders == {}
