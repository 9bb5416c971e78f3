"""The house rules the code's shape must keep, checked on its source.

One import name: everything installs under ``varflow``; the repository's flows/, tasks/, storage/
and deployments/ are varflow.flows, varflow.tasks, varflow.storage and varflow.deployments.
Imports point one way, by rank (a package imports only its own rank or lower): the core's groups
first, then storage, tasks, flows. Only the named packages may import Prefect, DuckDB or pyarrow;
``import varflow`` and every core module load without them. No module imports itself through
others, no function is long (flows and tasks hold no process-wide registries either), and only
varflow/generation/backends/ names a backend.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

from varflow.generation.backends import BACKENDS

ROOT = Path(__file__).resolve().parents[1]
# Where each installed package's source lives in the repository (pyproject.toml/setup.py map them).
FOLDERS = {"varflow": ROOT / "varflow", "varflow.flows": ROOT / "flows", "varflow.tasks": ROOT / "tasks",
           "varflow.storage": ROOT / "storage", "varflow.deployments": ROOT / "deployments"}
PACKAGES = tuple(FOLDERS)
MAX_FUNCTION_LINES = 60

# Lowest first. A module may import modules of its own package's rank or lower. varflow's own
# top-level modules (BASE) are rank 0: the errors, the vocabularies and every number.
RANKS = {
    "varflow": 0,
    "varflow.safety": 0,       # escaping per sink, secrets redacted, file modes (its modules arrive by merge)
    "varflow.quality": 1,      # measurements of pixels in memory and verdicts over them (no files)
    "varflow.images": 2,       # reading, writing, thumbnailing image files (caches quality's greys)
    "varflow.duplicates": 3,   # perceptual hashes, their index, the near-duplicate decision
    "varflow.generation": 4,   # the backends and their registry, the never-pay-twice cache
    "varflow.runtime": 5,      # records, resources, shared run state, limits, locks, one attempt
    "varflow.processing": 6,   # which images, admission, chunks, one image's pipeline, batch runs
    "varflow.reports": 7,      # galleries, contact sheets, tables, the score/dedup commands' output
    "varflow.storage": 8,      # the only code that knows DuckDB and Parquet
    "varflow.tasks": 9,        # thin Prefect tasks over the core
    "varflow.flows": 10,       # the flows
    "varflow.deployments": 11,  # deployments of the flow (serve, schedules)
    "varflow.flows.cli": 12,   # the command line: the top, it may reach every package
    "varflow.api": 13,         # the Python API (docs/api.md): a facade over the CLI's own entries, so above it
}
BASE = {"__init__", "settings", "errors", "kinds"}
# Top-level modules that are not rank 0: the Python API is one module a user imports as ``varflow``'s
# names (``varflow.run``...), so it lives beside the package's __init__, which serves its names
# lazily (PEP 562) without importing it (test_the_api_is_served_lazily_by_name).
FACADE = {"api"}
# Which packages may import these (all others, the whole core included, never do).
GUARDED = {
    "prefect": {"varflow.tasks", "varflow.flows", "varflow.deployments"},
    "prefect_dask": {"varflow.flows"},
    "duckdb": {"varflow.storage"},
    "pyarrow": {"varflow.storage"},
    # buckets (varflow/images/locations.py): fsspec there, inside the functions that touch a bucket;
    # its S3 file system (s3fs, botocore) only through fsspec, when a run names s3://
    "fsspec": {"varflow.images"},
    "s3fs": set(),
    "botocore": set(),
}
CORE = [p for p, r in RANKS.items() if r <= RANKS["varflow.reports"]]


def sources(package: str):
    for path in sorted(FOLDERS[package].rglob("*.py")):
        yield path, ast.parse(path.read_text())


def module_name(path: Path) -> str:
    for package, folder in sorted(FOLDERS.items(), key=lambda kv: -len(kv[0])):
        if path.is_relative_to(folder):
            parts = (*package.split("."), *path.relative_to(folder).with_suffix("").parts)
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def all_sources():
    for path in sorted(FOLDERS["varflow"].rglob("*.py")):
        yield path, ast.parse(path.read_text())
    for package in PACKAGES[1:]:
        yield from sources(package)


def package_of(module: str) -> str:
    """The ranked package a module belongs to (the longest name in RANKS it starts with)."""
    return max((p for p in RANKS if module == p or module.startswith(p + ".")), key=len)


def imports_of(tree: ast.AST, modules: set[str]) -> set[str]:
    """Every name a module imports anywhere (functions included): project modules resolved."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names)
    return names


def test_every_core_module_has_a_room():
    """A new module goes into a group (varflow/<group>/), not back into a flat varflow/."""
    flat = sorted(p.name for p in (ROOT / "varflow").glob("*.py") if p.stem not in BASE | FACADE)
    groups = {f"varflow.{p.name}" for p in (ROOT / "varflow").iterdir() if (p / "__init__.py").exists()}
    assert flat == []
    assert groups - set(CORE) == set()  # every group has its rank (a new group is one line in RANKS)


def test_imports_point_one_way_by_rank():
    modules = {module_name(p): tree for p, tree in all_sources()}
    offenders = {}
    for name, tree in modules.items():
        rank = RANKS[package_of(name)]
        bad = sorted(t for t in imports_of(tree, set(modules)) if t.split(".")[0] == "varflow"
                     and RANKS[package_of(t)] > rank)
        if bad:
            offenders[name] = bad
    assert offenders == {}


def test_only_named_packages_import_prefect_duckdb_pyarrow():
    modules = {module_name(p): tree for p, tree in all_sources()}
    offenders = {}
    for name, tree in modules.items():
        bad = sorted(t for t in imports_of(tree, set(modules))
                     if t.split(".")[0] in GUARDED and package_of(name) not in GUARDED[t.split(".")[0]])
        if bad:
            offenders[name] = bad
    assert offenders == {}


def test_the_core_loads_without_prefect_duckdb_pyarrow():
    """Checked on the loaded modules too (what a user gets from ``import varflow``, and from every
    core module): transitive imports and ones the source check cannot see included. Nor does it
    load a bucket's client (s3fs, botocore) until a run names a bucket."""
    core = sorted(module_name(p) for p, _ in all_sources() if package_of(module_name(p)) in CORE)
    heavy = ("prefect", "duckdb", "pyarrow", "s3fs", "botocore", "aiobotocore")
    code = ("import json, sys, importlib\n"
            "import varflow\n"
            f"first = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})\n"
            f"for m in {core!r}: importlib.import_module(m)\n"
            f"after = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))\n"
            "print(json.dumps([first, after, varflow.__file__]))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, cwd=ROOT / "tests")
    assert out.returncode == 0, out.stderr
    first, after, where = json.loads(out.stdout)
    assert (first, after) == ([], [])
    assert Path(where).resolve() == (ROOT / "varflow" / "__init__.py").resolve()  # this checkout's code


def test_the_api_is_served_lazily_by_name():
    """``import varflow`` offers the API's names without loading the facade (nor Prefect nor
    DuckDB); the first use of a name loads it, and the names are the facade's own."""
    code = ("import json, sys\n"
            "import varflow\n"
            "before = 'varflow.api' in sys.modules\n"
            "names = sorted(varflow.API)\n"
            "run = varflow.run\n"
            "import varflow.api as api\n"
            "print(json.dumps([before, names, sorted(api.__all__), run is api.run,\n"
            "                  sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'duckdb'})]))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, cwd=ROOT / "tests")
    assert out.returncode == 0, out.stderr
    before, names, exported, same, heavy = json.loads(out.stdout)
    assert (before, same, heavy) == (False, True, [])
    assert names == exported


def test_one_import_name():
    """The old top-level names are gone: nothing imports flows, tasks, storage or deployments."""
    out = subprocess.run([sys.executable, "-P", "-c", "import importlib.util as u; "
                          "print([n for n in ('flows', 'tasks', 'storage', 'deployments') if u.find_spec(n)])"],
                         capture_output=True, text=True, cwd=ROOT / "tests")
    assert out.stdout.strip() == "[]", out.stderr
    offenders = sorted(f"{module_name(p)}: {t}" for p, tree in all_sources()
                       for t in imports_of(tree, set()) if t.split(".")[0] in ("flows", "tasks", "storage",
                                                                               "deployments"))
    assert offenders == []


SCORING_MODULES = {"varflow.quality", "varflow.duplicates", "varflow.reports.inspect"}


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
    modules = {module_name(p): tree for p, tree in all_sources()}
    return {name: {t for t in imports_of(tree, set(modules)) if t in modules and t != name}
            for name, tree in modules.items()}


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


def test_no_function_is_long():
    """Every package, the core included: a function over MAX_FUNCTION_LINES does more than one thing."""
    long = {f"{path.relative_to(ROOT)}:{node.name}": node.end_lineno - node.lineno + 1
            for path, tree in all_sources() for node in ast.walk(tree)
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
    for path, tree in sources("varflow.tasks"):
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
