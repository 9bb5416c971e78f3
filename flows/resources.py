"""The run's resources, chosen here and nowhere else: from the parameters to a ``RunResources``.

``resource_spec`` turns the run's parameters into a ``ResourceSpec`` (what to use, in small
picklable values); ``open_resources`` builds the objects once: the store, the generation cache
(with Prefect's result storage under the data directory), the backend (its key from the SDK's
environment or a Prefect Secret block), the shared rate limiter and the run's control. What a
backend needs (retries, pacing, a key, a timeout) follows from its registry capabilities.

Where the run's limits are shared (``shared_limits``): this process for the threads runner; the
data directory (``<home>/shared/<run_id>/``, varflow/runtime/runstate.py) for runner dask, or any Redis
(varflow/runtime/redisstate.py) named by the parameter. The flow's process opens the resources (and
starts their shared state afresh); a worker process rebuilds them from the pickled spec once
(``attach_resources``) and finds the same state from the run's id. Closing the flow's copy
removes the state.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from urllib.parse import urlsplit

from varflow.flows.parameters import RunParameters
from varflow.storage import Store
from varflow.storage.profiles import load_profile

from varflow.errors import ConfigurationError
from varflow.generation.backends import backend_class, make_backend
from varflow.generation.cache import GenerationCache
from varflow.runtime.ratelimit import Limiter, RateLimiter, state_path
from varflow.runtime.redisstate import (
    RedisRateLimiter,
    RedisState,
    check_redis_url,
    connect,
    is_redis_url,
    slot_lease_s,
)
from varflow.runtime.resources import CallPolicy, ResourceSpec, RunControl, RunResources, enforceable_cap
from varflow.runtime.runstate import FileState, MemoryState, shared_dir
from varflow.safety.redaction import remember_secret
from varflow.settings import Settings, default_home


def data_home(params: RunParameters) -> Path:
    return (Path(params.home).expanduser() if params.home else default_home()).resolve()


def run_settings(params: RunParameters, home: Path) -> Settings:
    """The run's core settings: its parameters', with the data directory's calibrated profile in force
    (``varflow calibrate --apply``, storage/profiles.py) where the run leaves the calibrated thresholds
    at their defaults. Read once, when the run starts; a damaged profile stops the run before any work."""
    return params.settings(load_profile(home))


def load_secret(name: str) -> str:
    """The value of the Prefect Secret block ``name`` (raises a clear ValueError if missing)."""
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()
    except ValueError as exc:
        raise ConfigurationError(f"no Prefect Secret block named {name!r} (create it with "
                         f"`Secret(value=...).save({name!r})` or in the UI's Blocks page): "
                         f"{type(exc).__name__}") from None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"the Prefect Secret block {name!r} holds no API key string")
    remember_secret(value.strip())  # redacted from every record and log line of this process
    return value.strip()


SHARED_IN_FILES = "file"  # --shared-limits: the run's shared state in the data directory
MAX_OPEN_SPECS = 8  # resources of this many specs stay built per process (a worker serves several runs)

_OPEN: dict[ResourceSpec, RunResources] = {}  # this process's built resources, by spec
_OPEN_LOCK = threading.Lock()


def shared_limits(params: RunParameters) -> str:
    """Where the run's stop, spend, call slots and RPM limit are shared: the parameter, else the
    data directory for a runner of many processes, else this process. Refuses, in one line, what
    is neither ``file`` nor a Redis URL, and a Redis URL holding a password."""
    value = params.shared_limits.strip()
    if not value:
        return SHARED_IN_FILES if params.runner == "dask" else ""
    if value == SHARED_IN_FILES:
        return value
    if is_redis_url(value):
        check_redis_url(value)
        return value
    kind = urlsplit(value).scheme or value
    raise ConfigurationError(f"shared limits: {kind!r} is not a place to share them: leave it empty (this process; "
                     f"the data directory with runner dask), or give {SHARED_IN_FILES!r} or redis://host:port/db")


def resource_spec(params: RunParameters, home: Path, run_id: str, execution: int = 1) -> ResourceSpec:
    """What the run uses. The model is an output-changing option; timeout and secret name are
    not. A backend that is not remote is never retried, paced or given a key."""
    options = (("model", params.model),) if params.model else ()
    common = dict(run_id=run_id, home=str(home), backend=params.backend, backend_options=options,
                  cache_max_bytes=params.cache_max_mb * 2**20, shared_limits=shared_limits(params), execution=execution)
    if not backend_class(params.backend).remote:
        policy = CallPolicy(retries=0, max_cost_usd=params.max_cost_usd, concurrency=params.generation_concurrency)
        return ResourceSpec(**common, policy=policy)
    policy = CallPolicy(retries=params.retries, backoff_s=params.retry_backoff_s, rpm=params.requests_per_minute,
                        rate_dir=str(home / "ratelimit"), max_cost_usd=params.max_cost_usd,
                        concurrency=params.generation_concurrency)
    return ResourceSpec(**common, timeout_s=params.request_timeout_s, api_key_secret=params.api_key_secret,
                        policy=policy)


def open_resources(spec: ResourceSpec) -> RunResources:
    """The flow's resources for ``spec``; raises ValueError (no key, no such secret, an uncappable
    spend, an unusable Redis) before any work. Their owner starts the run's shared state afresh
    (a retried flow run keeps its id) and removes it when closed."""
    return _resources(spec, owner=True)


def attach_resources(spec: ResourceSpec) -> RunResources:
    """How pickled resources are rebuilt in a worker process: once per spec per process (every
    task brings them), sharing the flow's state (the same directory or keys, from ``run_id``)."""
    return _resources(spec, owner=False)


def _resources(spec: ResourceSpec, *, owner: bool) -> RunResources:
    with _OPEN_LOCK:
        for done in [s for s, r in _OPEN.items() if r.closed]:
            del _OPEN[done]  # a finished run's: nothing will use it again
        res = _OPEN.get(spec)
        if res is None or (owner and not res.owner):
            res = _OPEN[spec] = _build(spec, owner)
            while len(_OPEN) > MAX_OPEN_SPECS:  # the oldest: a finished run's, in a long-lived worker
                _OPEN.pop(next(iter(_OPEN)))
        return res


def _build(spec: ResourceSpec, owner: bool) -> RunResources:
    home = Path(spec.home)
    options = dict(spec.backend_options)
    if spec.timeout_s is not None:
        options["timeout_s"] = spec.timeout_s
    if spec.api_key_secret:
        options["api_key"] = load_secret(spec.api_key_secret)
    backend = make_backend(spec.backend, **options)
    enforceable_cap(type(backend), backend.model, spec.policy.max_cost_usd)
    try:
        client = connect(spec.shared_limits) if is_redis_url(spec.shared_limits) else None
        control = run_control(spec, owner=owner, client=client)
    except Exception:
        backend.close()
        raise
    results_dir = home / "cache" / "prefect-results"
    return RunResources(
        spec, records=Store(home, execution=spec.execution), backend=backend,
        limiter=rate_limiter(spec, backend, client),
        cache=GenerationCache(home / "cache" / "variations", max_bytes=spec.cache_max_bytes, results_dir=results_dir),
        # Only the flow's process submits generate task runs (stage tasks); a worker needs no block.
        control=control, result_storage=result_storage(home, results_dir) if owner else None,
        rebuild=attach_resources, owner=owner,
    )


def run_control(spec: ResourceSpec, *, owner: bool, client=None) -> RunControl:
    """The run's control over the state ``spec.shared_limits`` names (``client``: its Redis)."""
    policy = spec.policy
    if not spec.shared_limits:
        state = MemoryState(policy.concurrency)
    elif spec.shared_limits == SHARED_IN_FILES:
        state = FileState(shared_dir(spec.home, spec.run_id), policy.concurrency)
    else:
        state = RedisState(client or connect(spec.shared_limits), spec.run_id, policy.concurrency,
                           lease_s=slot_lease_s(spec.timeout_s))
    if owner:
        state.reset()
    return RunControl(spec.run_id, policy.max_cost_usd, state=state)


def rate_limiter(spec: ResourceSpec, backend, client=None) -> Limiter | None:
    """The RPM limit (remote backends only): in Redis with a Redis ``client``, else in a file of
    the data directory; either way shared by every run of that backend and model using it."""
    if not (backend.remote and spec.policy.rate_dir):
        return None
    scope = f"{backend.name}/{backend.model}"
    if client is not None:
        return RedisRateLimiter(client, scope, spec.policy.rpm)
    return RateLimiter(state_path(spec.policy.rate_dir, scope), spec.policy.rpm)


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
