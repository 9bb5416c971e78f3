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


SCORING_MODULES = {"varflow.metrics", "varflow.calibrated", "varflow.acceptance", "varflow.profiles",
                   "varflow.adaptive", "varflow.dedup", "varflow.hashing", "varflow.hashindex", "varflow.inspect"}


def test_local_generator_never_imports_scoring():
    """The local generator makes variations a person would keep; it must not see any score (a
    generator that measures itself drifts towards pleasing the metric)."""
    offenders = {}
    package = ROOT / "varflow" / "generators" / "local"
    files = sorted(package.rglob("*.py"))
    assert files, "varflow/generators/local/ has no modules"
    for path in files:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        bad = sorted(n for n in names if any(n == m or n.startswith(m + ".") for m in SCORING_MODULES))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}
