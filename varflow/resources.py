"""A run's resources, chosen in one place: built once by the flow and handed down as one object.

``ResourceSpec`` says which resources a run uses, in a few small, picklable values (paths,
names, numbers, the ``CallPolicy``; the *name* of a secret, never its value). ``RunResources``
holds the built objects: the record sink (the store), the generation cache, the backend
(holding the API key), the shared rate limiter, the run's control (``RunControl``: stop,
budget, call slots) and the orchestrator's result storage.

In one process a task receives the object itself. Pickled (a task run in another process), it
travels as its spec and is rebuilt there by the builder that made it, so a key is read where
it is used and never serialized; docs/architecture.md says what a multi-process runner must add.

No Prefect and no storage here: flows/resources.py builds these from the run's parameters.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from varflow.cache import GenerationCache
from varflow.generators import GeneratorBackend
from varflow.ratelimit import RateLimiter
from varflow.records import AttemptRecord, ImageRecord, VariationRecord


@dataclass(frozen=True)
class CallPolicy:
    """How calls are retried, paced and capped; small, no secrets, not part of any cache key.

    ``retries``: retries of a retryable failure (0 for a backend that is not remote).
    ``backoff_s``: first retry delay; doubles per retry, the orchestrator adds up to ``jitter`` x it.
    ``rpm``: requests per minute across every process sharing ``rate_dir`` (None: no limit;
    429 pauses are shared anyway when ``rate_dir`` is set).
    ``max_cost_usd``: the run's estimated-spend cap (None: no cap).
    ``concurrency``: most calls on the wire at once in this run (None: as many as threads).
    """

    retries: int = 0
    backoff_s: float = 2.0
    jitter: float = 0.5
    rpm: float | None = None
    rate_dir: str | None = None
    max_cost_usd: float | None = None
    concurrency: int | None = None

    def delays(self) -> list[float]:
        return [self.backoff_s * 2**r for r in range(min(self.retries, 50))]

    def backoff(self, try_number: int) -> float:
        """The retry delay after try ``try_number`` (before jitter)."""
        delays = self.delays()
        return delays[min(try_number - 1, len(delays) - 1)] if delays else 0.0


def enforceable_cap(backend: type[GeneratorBackend], model: str, max_cost_usd: float | None) -> None:
    """Refuse a spend cap that cannot be enforced: no price is known for the model."""
    if max_cost_usd is not None and backend.estimate_cost(model) is None:
        raise ValueError(f"--max-cost cannot be enforced: no price is known for model {model!r} "
                         f"(the {backend.name} backend has none for it)")


class RunControl:
    """One run's shared state in this process: why it stopped (if it did), its spend, its call slots.

    Thread-safe. ``reserve`` books a call's estimated cost before it starts; ``settle`` replaces
    the estimate by the cost of what came back. A call starts only if spent + booked + its
    estimate stays within ``max_cost_usd``. A plain class, not a dataclass: an orchestrator
    walking task parameters must not iterate its state while other threads change it.
    """

    def __init__(self, run_id: str, max_cost_usd: float | None = None, concurrency: int | None = None):
        self.run_id = run_id
        self.max_cost_usd = max_cost_usd
        self.spent_usd = 0.0
        self.booked_usd = 0.0
        self.calls = 0
        self.stop_outcome: str | None = None
        self.stop_message: str | None = None
        self._lock = threading.Lock()
        self._prompt_changes: dict[str, int] = {}
        self._slots = threading.BoundedSemaphore(concurrency) if concurrency else None

    def call_slot(self):
        """A context manager holding one of the run's call slots (the orchestrator's thread pool
        is shared with the images in flight, so it alone does not bound calls)."""
        return self._slots if self._slots is not None else contextlib.nullcontext()

    @property
    def stopped(self) -> bool:
        return self.stop_outcome is not None

    def stop(self, outcome: str, message: str) -> bool:
        """Record why the run stops; the first reason wins. True if this call set it."""
        with self._lock:
            if self.stop_outcome is not None:
                return False
            self.stop_outcome, self.stop_message = outcome, message
            return True

    def reserve(self, estimate: float) -> bool:
        with self._lock:
            if self.max_cost_usd is not None and \
                    self.spent_usd + self.booked_usd + estimate > self.max_cost_usd + 1e-12:
                return False
            self.booked_usd += estimate
            self.calls += 1
            return True

    def settle(self, estimate: float, actual: float) -> None:
        with self._lock:
            self.booked_usd = max(0.0, self.booked_usd - estimate)
            self.spent_usd += actual

    def prompt_changes(self, variation_id: str) -> int:
        with self._lock:
            return self._prompt_changes.get(variation_id, 0)

    def count_prompt_change(self, variation_id: str) -> None:
        with self._lock:
            self._prompt_changes[variation_id] = self._prompt_changes.get(variation_id, 0) + 1


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
