"""varflow: folders of images in, scored and de-duplicated variations out.

This package's core (its subpackages but flows, tasks, storage and deployments) imports neither
Prefect nor DuckDB nor pyarrow (tests/test_layering.py checks it): flows and tasks compose it,
storage records what it produced. ``import varflow`` loads only the errors below; the Python API
(``varflow.run``, ``score``, ``find_duplicates``, ``open_store``: varflow/api.py, docs/api.md) loads
on first use, and Prefect and DuckDB with the call that needs them.
"""

from importlib import import_module as _import_module

from varflow.errors import BackendError, ConfigurationError, InputError, StoreError, VarflowError

__version__ = "0.1.0"
# The API's names, served by varflow/api.py (PEP 562): the facade sits above the CLI in
# tests/test_layering.py's ranks, so this rank-0 module names it by string, never by an import.
API = ("Assessment", "Lens", "RunSummary", "find_duplicates", "open_store", "run", "score")
__all__ = ["BackendError", "ConfigurationError", "InputError", "StoreError", "VarflowError", "__version__", *API]


def __getattr__(name: str):
    if name in API:
        return getattr(_import_module(f"{__name__}.api"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API))
