"""The run's resources, chosen here and nowhere else: from the parameters to a ``RunResources``.

``resource_spec`` turns the run's parameters into a ``ResourceSpec`` (what to use, in small
picklable values); ``open_resources`` builds the objects once: the store, the generation cache
(with Prefect's result storage under the data directory), the backend (its key from the SDK's
environment or a Prefect Secret block), the shared rate limiter and the run's control. What a
backend needs (retries, pacing, a key, a timeout) follows from its registry capabilities.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flows.parameters import RunParameters
from storage import Store
from varflow.cache import GenerationCache
from varflow.generators import backend_class, make_backend
from varflow.ratelimit import RateLimiter, state_path
from varflow.resources import CallPolicy, ResourceSpec, RunControl, RunResources, enforceable_cap
from varflow.settings import default_home


def data_home(params: RunParameters) -> Path:
    return (Path(params.home).expanduser() if params.home else default_home()).resolve()


def load_secret(name: str) -> str:
    """The value of the Prefect Secret block ``name`` (raises a clear ValueError if missing)."""
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()
    except ValueError as exc:
        raise ValueError(f"no Prefect Secret block named {name!r} (create it with "
                         f"`Secret(value=...).save({name!r})` or in the UI's Blocks page): "
                         f"{type(exc).__name__}") from None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"the Prefect Secret block {name!r} holds no API key string")
    return value.strip()


def resource_spec(params: RunParameters, home: Path, run_id: str) -> ResourceSpec:
    """What the run uses. The model is an output-changing option; timeout and secret name are
    not. A backend that is not remote is never retried, paced or given a key."""
    options = (("model", params.model),) if params.model else ()
    common = dict(run_id=run_id, home=str(home), backend=params.backend, backend_options=options,
                  cache_max_bytes=params.cache_max_mb * 2**20)
    if not backend_class(params.backend).remote:
        policy = CallPolicy(retries=0, max_cost_usd=params.max_cost_usd, concurrency=params.generation_concurrency)
        return ResourceSpec(**common, policy=policy)
    policy = CallPolicy(retries=params.retries, backoff_s=params.retry_backoff_s, rpm=params.requests_per_minute,
                        rate_dir=str(home / "ratelimit"), max_cost_usd=params.max_cost_usd,
                        concurrency=params.generation_concurrency)
    return ResourceSpec(**common, timeout_s=params.request_timeout_s, api_key_secret=params.api_key_secret,
                        policy=policy)


def open_resources(spec: ResourceSpec) -> RunResources:
    """Build the run's resources; raises ValueError (no key, no such secret, an uncappable
    spend) before any work."""
    home = Path(spec.home)
    options = dict(spec.backend_options)
    if spec.timeout_s is not None:
        options["timeout_s"] = spec.timeout_s
    if spec.api_key_secret:
        options["api_key"] = load_secret(spec.api_key_secret)
    backend = make_backend(spec.backend, **options)
    policy = spec.policy
    enforceable_cap(type(backend), backend.model, policy.max_cost_usd)
    limiter = None
    if backend.remote and policy.rate_dir:
        limiter = RateLimiter(state_path(policy.rate_dir, f"{backend.name}/{backend.model}"), policy.rpm)
    results_dir = home / "cache" / "prefect-results"
    return RunResources(
        spec, records=Store(home), backend=backend, limiter=limiter,
        cache=GenerationCache(home / "cache" / "variations", max_bytes=spec.cache_max_bytes, results_dir=results_dir),
        control=RunControl(spec.run_id, policy.max_cost_usd, policy.concurrency),
        result_storage=result_storage(home, results_dir), rebuild=open_resources,
    )


def result_storage(home: Path, results_dir: Path):
    """A saved LocalFileSystem block for generate's cached results, loaded once for the run.

    Prefect only accepts saved blocks for result storage; the name is derived from the data
    directory so two homes never share results. Given as a slug, Prefect would load the block
    from the API for every task run (one HTTP round trip per generation call); given the loaded
    block, it does not.
    """
    from prefect.blocks.core import Block
    from prefect.filesystems import LocalFileSystem

    name = "varflow-results-" + hashlib.sha256(str(home).encode()).hexdigest()[:12]
    LocalFileSystem(basepath=str(results_dir)).save(name, overwrite=True)
    return Block.load(f"local-file-system/{name}")
