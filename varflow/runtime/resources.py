"""A run's resources, chosen in one place: built once by the flow and handed down as one object.

``ResourceSpec`` says which resources a run uses, in a few small, picklable values (paths,
names, numbers, the ``CallPolicy``; the *name* of a secret, never its value). ``RunResources``
holds the built objects: the record sink (the store), the generation cache, the backend
(holding the API key), the shared rate limiter, the run's control (``RunControl``: stop,
budget, call slots) and the orchestrator's result storage.

In one process a task receives the object itself. Pickled (a task run in another process), it
travels as its spec and is rebuilt there once per process by the builder that made it, so a key
is read where it is used and never serialized. What must be one for the whole run (stop, spend,
call slots, the RPM limit) is shared through the state the spec names (``shared_limits``,
varflow/runtime/runstate.py); docs/architecture.md has the whole picture.

No Prefect and no storage here: flows/resources.py builds these from the run's parameters.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from varflow.errors import ConfigurationError
from varflow.generation.backends import GeneratorBackend
from varflow.generation.cache import GenerationCache
from varflow.runtime.ratelimit import Limiter
from varflow.runtime.records import AttemptRecord, ImageRecord, VariationRecord
from varflow.runtime.retry import RetryPolicy
from varflow.runtime.runstate import MemoryState, RunState


@dataclass(frozen=True)
class CallPolicy(RetryPolicy):
    """How calls are retried, paced and capped; small, no secrets, not part of any cache key.

    The retry rules are ``RetryPolicy``'s (varflow/runtime/retry.py: ``retries``, ``backoff_s``,
    ``jitter``), shared by the chunk path and Prefect's task retries.
    ``rpm``: requests per minute across every process sharing ``rate_dir`` (or the Redis of
    ``ResourceSpec.shared_limits``) (None: no limit; 429 pauses are shared anyway when
    ``rate_dir`` is set).
    ``max_cost_usd``: the run's estimated-spend cap (None: no cap).
    ``concurrency``: most calls on the wire at once in this run (None: as many as threads).
    """

    rpm: float | None = None
    rate_dir: str | None = None
    max_cost_usd: float | None = None
    concurrency: int | None = None


def enforceable_cap(backend: type[GeneratorBackend], model: str, max_cost_usd: float | None) -> None:
    """Refuse a spend cap that cannot be enforced: no price is known for the model."""
    if max_cost_usd is not None and backend.estimate_cost(model) is None:
        raise ConfigurationError(f"--max-cost cannot be enforced: no price is known for model {model!r} "
                         f"(the {backend.name} backend has none for it)")


class RunControl:
    """One run's control: why it stopped (if it did), its spend, its calls, its call slots.

    Thread-safe; its numbers live in a ``RunState`` (varflow/runtime/runstate.py): this process's memory
    by default, or a file or Redis state shared by every process of the run. ``reserve`` books a
    call's estimated cost before it starts; ``settle`` replaces the estimate by the cost of what
    came back. A call starts only if spent + booked + its estimate stays within ``max_cost_usd``.
    Prompt changes stay in this process (a retry runs where its attempt ran). A plain class, not
    a dataclass: an orchestrator walking task parameters must not iterate its state while other
    threads change it.
    """

    def __init__(self, run_id: str, max_cost_usd: float | None = None, concurrency: int | None = None, *,
                 state: RunState | None = None):
        """``concurrency`` sizes the default in-process state; a given ``state`` has its own slots."""
        self.run_id = run_id
        self.max_cost_usd = max_cost_usd
        self.state: RunState = state if state is not None else MemoryState(concurrency)
        self._lock = threading.Lock()
        self._prompt_changes: dict[str, int] = {}
        self._stop_seen: tuple[str | None, str | None] | None = None  # a stop never ends: kept once seen

    def __repr__(self) -> str:
        return f"RunControl({self.run_id!r}, {self.state!r})"

    @contextlib.contextmanager
    def call_slot(self, timeout: float | None = None):
        """Hold one of the run's call slots (the orchestrator's thread pool is shared with the
        images in flight, so it alone does not bound calls). Raises TimeoutError if ``timeout``
        seconds pass without one."""
        if not self.state.slots:
            yield
            return
        token = self.state.take_slot(timeout)
        if token is None:
            raise TimeoutError(f"no call slot of run {self.run_id} came free within {timeout} s")
        try:
            yield
        finally:
            self.state.give_slot(token)

    def _stop_reason(self) -> tuple[str | None, str | None]:
        if self._stop_seen is None:
            ledger = self.state.ledger()
            if ledger.stop_outcome is None:
                return None, None
            self._stop_seen = (ledger.stop_outcome, ledger.stop_message)
        return self._stop_seen

    @property
    def stopped(self) -> bool:
        return self._stop_reason()[0] is not None

    @property
    def stop_outcome(self) -> str | None:
        return self._stop_reason()[0]

    @property
    def stop_message(self) -> str | None:
        return self._stop_reason()[1]

    @property
    def spent_usd(self) -> float:
        return self.state.ledger().spent

    @property
    def booked_usd(self) -> float:
        return self.state.ledger().booked

    @property
    def calls(self) -> int:
        return self.state.ledger().calls

    def stop(self, outcome: str, message: str) -> bool:
        """Record why the run stops; the first reason wins (in every process). True if this call set it."""
        return self.state.stop(outcome, message)

    def reserve(self, estimate: float) -> bool:
        return self.state.reserve(estimate, self.max_cost_usd)

    def settle(self, estimate: float, actual: float) -> None:
        self.state.settle(estimate, actual)

    def prompt_changes(self, variation_id: str) -> int:
        with self._lock:
            return self._prompt_changes.get(variation_id, 0)

    def count_prompt_change(self, variation_id: str) -> None:
        with self._lock:
            self._prompt_changes[variation_id] = self._prompt_changes.get(variation_id, 0) + 1

    def close(self, *, discard: bool = False) -> None:
        """Let go of the state; ``discard``: also remove it (the flow's process, at the run's end)."""
        self.state.close(discard)


class RecordSink(Protocol):
    """Where records go (varflow.storage.Store is one); each write is atomic and may come from any thread."""

    def write_attempt(self, attempt: AttemptRecord) -> None: ...

    def write_image_result(self, image: ImageRecord, variations: list[VariationRecord] = (), *,
                           key: str | None = None) -> None: ...


@dataclass(frozen=True)
class ResourceSpec:
    """Which resources a run uses: small, hashable, picklable, and free of secrets.

    ``backend_options`` change the output (they are part of the cache key); ``timeout_s`` and
    ``api_key_secret`` (the *name* of a secret, never the key) do not. ``shared_limits`` says
    where the run's stop, spend, call slots (and the RPM limit) are shared: ``""`` this process,
    ``"file"`` the data directory, ``redis://host:port/db`` a Redis (flows/resources.py).
    """

    run_id: str
    home: str
    backend: str
    backend_options: tuple[tuple[str, object], ...] = ()
    timeout_s: float | None = None
    api_key_secret: str | None = None
    policy: CallPolicy = CallPolicy()
    cache_max_bytes: int = 2 * 2**30
    shared_limits: str = ""
    execution: int = 1  # which execution of the run (Prefect's run_count: a retried flow run runs again)


class RunResources:
    """The objects a run's tasks share; see the module docstring. A plain class: an orchestrator
    walking task parameters treats it as one opaque value."""

    def __init__(self, spec: ResourceSpec, *, records: RecordSink, cache: GenerationCache,
                 backend: GeneratorBackend, control: RunControl, limiter: Limiter | None = None,
                 result_storage: Any = None, rebuild: Callable[[ResourceSpec], RunResources] | None = None,
                 owner: bool = True):
        self.spec = spec
        self.records = records
        self.cache = cache
        self.backend = backend
        self.control = control
        self.limiter = limiter
        self.result_storage = result_storage  # the orchestrator's store of cached task results (opaque here)
        self.rebuild = rebuild  # how another process rebuilds these from ``spec`` (pickling)
        self.owner = owner  # the flow's own (False: rebuilt in a worker): closing it removes the shared state
        self.closed = False

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
        """Release what the run holds open (the backend's connections, the shared state's); the
        owner (the flow's process, at the run's end) also removes the run's shared state."""
        if self.closed:
            return
        self.closed = True
        for close in (self.backend.close, lambda: self.control.close(discard=self.owner)):
            try:
                close()
            except Exception:  # noqa: BLE001 - closing must not fail a finished run
                pass
