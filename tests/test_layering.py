"""The house rules the code's shape must keep, checked on its source.

Imports point one way (flows -> tasks -> core; the core never imports Prefect or storage), no
module imports itself through others, flows and tasks stay thin (short functions, no
process-wide registries), and only varflow/generation/backends/ names a backend.
"""

import ast
from pathlib import Path

import pytest

from varflow.generation.backends import BACKENDS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("varflow", "flows", "tasks", "storage", "deployments")
MAX_FUNCTION_LINES = 60


def sources(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path, ast.parse(path.read_text())


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(package: str) -> dict[str, set[str]]:
    out = {}
    for path, tree in sources(package):
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


SCORING_MODULES = {"varflow.quality.metrics", "varflow.quality.calibrated", "varflow.quality.acceptance", "varflow.quality.profiles",
                   "varflow.quality.adaptive", "varflow.duplicates.dedup", "varflow.duplicates.hashing", "varflow.duplicates.hashindex", "varflow.reports.inspect"}


def test_local_generator_never_imports_scoring():
    """The local generator makes variations a person would keep; it must not see any score (a
    generator that measures itself drifts towards pleasing the metric)."""
    offenders = {}
    package = ROOT / "varflow" / "generation" / "backends" / "local"
    files = sorted(package.rglob("*.py"))
    assert files, "varflow/generation/backends/local/ has no modules"
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


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports anywhere (functions included)."""
    modules = {module_name(p): tree for pkg in PACKAGES for p, tree in sources(pkg)}
    graph = {}
    for name, tree in modules.items():
        edges = set()
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert "varflow.quality.metrics" in graph["varflow.images.imageio"]  # the graph sees real edges
    assert find_cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("package", ["flows", "tasks"])
def test_no_function_in_flows_or_tasks_is_long(package):
    long = {f"{path.relative_to(ROOT)}:{node.name}": node.end_lineno - node.lineno + 1
            for path, tree in sources(package) for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES}
    assert long == {}


def test_only_the_generators_package_names_a_backend():
    names = set(BACKENDS)
    assert names  # the registry is read, not a copy of it
    offenders = sorted(
        f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}"
        for pkg in PACKAGES for path, tree in sources(pkg)
        if "varflow/generation/backends" not in path.as_posix()
        for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value in names
    )
    assert offenders == []


def is_container(value: ast.expr) -> bool:
    return isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)) or (
        isinstance(value, ast.Call) and getattr(value.func, "id", None) in ("dict", "list", "set", "OrderedDict"))


def test_tasks_hold_no_process_wide_registries():
    """Module-level containers in tasks/ are constants: upper-case and never written."""
    problems = []
    for path, tree in sources("tasks"):
        containers = {t.id for node in tree.body
                      if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None
                      and is_container(node.value)
                      for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                      if isinstance(t, ast.Name)}
        problems += [f"{path.name}: {name} is not a constant" for name in containers if not name.isupper()]
        for node in ast.walk(tree):
            stored = isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)
            mutated = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "pop", "setdefault", "update", "clear", "append", "add")
            target = node.value if stored else node.func.value if mutated else None
            if isinstance(target, ast.Name) and target.id in containers:
                problems.append(f"{path.name}:{node.lineno} writes the module-level {target.id}")
    assert problems == []
