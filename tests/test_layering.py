"""Imports point one way: flows -> tasks -> core. The core never imports Prefect or storage."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> dict[str, set[str]]:
    out = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("varflow", {"prefect", "duckdb", "pyarrow", "flows", "tasks", "storage"}),
        ("storage", {"prefect", "flows", "tasks"}),
        ("tasks", {"flows"}),
    ],
)
def test_imports_point_one_way(package, forbidden):
    offenders = {f: sorted(n & forbidden) for f, n in imported_modules(package).items() if n & forbidden}
    assert offenders == {}
