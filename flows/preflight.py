"""The run's preflight from its parameters (varflow/runtime/preflight.py has the checks): the CLI runs it
before Prefect starts (exit 2 with its line); the flow runs the folder and space checks itself,
so a deployment's run fails with the same line before any call."""

from __future__ import annotations

from pathlib import Path

from varflow.flows.parameters import RunParameters
from varflow.flows.resources import data_home
from varflow.storage import Store

from varflow.generation.backends import FATAL_OUTCOMES, GenerationError, backend_class, make_backend
from varflow.images.locations import address
from varflow.processing.discovery import discover_images
from varflow.runtime.preflight import PreflightError, check_folders, check_free_space


def new_images(paths: list[Path], input_dir: Path, store: Store | None) -> int:
    """How many of ``paths`` no earlier run finished (what may need room tonight)."""
    done = store.finished_paths(input_dir) if store is not None else set()
    return sum(1 for p in paths if str(p) not in done)


def check_space(params: RunParameters, home: Path, images: int) -> None:
    """Room for ``images`` x count variations at the level the run starts at (auto: high, where an
    adaptive run may go back to)."""
    check_free_space(address(params.output_dir), home, images=images, count=params.count,
                     cache_bytes=params.cache_max_mb * 2**20, level=params.start_level or "high")


def check_key(params: RunParameters) -> str | None:
    """One free ``models.get`` with the run's key and model (a remote backend whose key is not in a
    Secret block: the flow checks that one). Raises PreflightError for a refused key or an
    unknown model; returns a warning for a transient failure (the run's calls retry those)."""
    if not backend_class(params.backend).remote or params.api_key_secret:
        return None
    backend = make_backend(params.backend, **({"model": params.model} if params.model else {}),
                           timeout_s=params.request_timeout_s)
    try:
        backend.check()
    except GenerationError as problem:
        if problem.outcome in FATAL_OUTCOMES:
            hint = {"auth": "set GEMINI_API_KEY (or --api-key-secret) to a key the API accepts",
                    "not_found": "pass a --model your key can use (`varflow models` lists them)"}.get(
                problem.outcome, "try again later")
            raise PreflightError(f"the {params.backend} API refused the check before any call "
                                 f"({problem.outcome}: {problem}); {hint}") from None
        return f"the {params.backend} API's check failed ({problem.outcome}: {problem}); going on, calls retry"
    finally:
        backend.close()
    return None


def preflight(params: RunParameters) -> str | None:
    """Every check before Prefect starts; raises PreflightError, returns a warning or None."""
    home = data_home(params)
    input_dir, output_dir = address(params.input_dir), address(params.output_dir)
    check_folders(input_dir, output_dir, home)
    paths = discover_images(input_dir, extensions=params.extensions, exclude=[output_dir, home],
                            follow_links=params.follow_links)
    try:  # read only: the run itself initializes (and repairs) the store
        new = new_images(paths, input_dir, Store(home) if (home / "tables").exists() else None)
    except Exception:  # noqa: BLE001 - a store the run will repair: the flow checks the space then
        return check_key(params)
    check_space(params, home, new)
    return check_key(params)
