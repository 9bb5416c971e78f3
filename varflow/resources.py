"""A run's resources, chosen in one place: built once by the flow and handed down as one object.

``ResourceSpec`` says which resources a run uses, in a few small, picklable values (paths,
names, numbers; the *name* of a secret, never its value). ``RunResources`` holds the built
objects: the record sink (the store), the generation cache, the backend (holding the API key),
the shared rate limiter, the run's control (stop, budget, call slots) and the orchestrator's
result storage. In one process a task receives the object itself. Pickled (a task run in
another process), it travels as its spec and is rebuilt there by the builder that made it, so
a key is read where it is used and never serialized; docs/architecture.md says what a
multi-process runner must add.

No Prefect and no storage here: flows/resources.py builds these from the run's parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from varflow.cache import GenerationCache
from varflow.calls import CallPolicy, RunControl
from varflow.generators import GeneratorBackend
from varflow.ratelimit import RateLimiter
from varflow.records import AttemptRecord, ImageRecord, VariationRecord


class RecordSink(Protocol):
    """Where records go (storage.Store is one); each write is atomic and may come from any thread."""

    def write_attempt(self, attempt: AttemptRecord) -> None: ...

    def write_image_result(self, image: ImageRecord, variations: list[VariationRecord] = (), *,
                           key: str | None = None) -> None: ...


@dataclass(frozen=True)
class ResourceSpec:
    """Which resources a run uses: small, hashable, picklable, and free of secrets.

    ``backend_options`` change the output (they are part of the cache key); ``timeout_s`` and
    ``api_key_secret`` (the *name* of a secret, never the key) do not.
    """

    run_id: str
    home: str
    backend: str
    backend_options: tuple[tuple[str, object], ...] = ()
    timeout_s: float | None = None
    api_key_secret: str | None = None
    policy: CallPolicy = CallPolicy()
    cache_max_bytes: int = 2 * 2**30


class RunResources:
    """The objects a run's tasks share; see the module docstring. A plain class: an orchestrator
    walking task parameters treats it as one opaque value."""

    def __init__(self, spec: ResourceSpec, *, records: RecordSink, cache: GenerationCache,
                 backend: GeneratorBackend, control: RunControl, limiter: RateLimiter | None = None,
                 result_storage: Any = None, rebuild: Callable[[ResourceSpec], "RunResources"] | None = None):
        self.spec = spec
        self.records = records
        self.cache = cache
        self.backend = backend
        self.control = control
        self.limiter = limiter
        self.result_storage = result_storage  # the orchestrator's store of cached task results (opaque here)
        self.rebuild = rebuild  # how another process rebuilds these from ``spec`` (pickling)

    def __repr__(self) -> str:
        return f"RunResources({self.spec!r})"

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def policy(self) -> CallPolicy:
        return self.spec.policy

    def __reduce__(self):
        if self.rebuild is None:
            raise TypeError("these RunResources have no builder to rebuild them in another process")
        return (self.rebuild, (self.spec,))

    def close(self) -> None:
        """Release what the run holds open (the backend's connections)."""
        try:
            self.backend.close()
        except Exception:  # noqa: BLE001 - closing must not fail a finished run
            pass
