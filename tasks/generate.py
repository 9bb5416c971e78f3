"""Stage 2: one generation attempt, recorded in ``attempts`` whatever its outcome.

Each call of the backend is one row, written before the task returns or retries, so a paid call
is on record even if the process dies right after it. Retryable failures raise
``RetryableGenerationError`` for Prefect's task retries (the only retry layer: the SDK's own
retries stay off); other failures raise ``GenerationFailed``. Only successes return, so only
successes are cached. docs/gemini.md has the decision table (outcome -> retried? how?).

Before every call the task, in this order:

1. gives up at once if the run has stopped (an ``auth`` / ``not_found`` / ``quota_day`` answer
   elsewhere, or the budget cap): the attempt is recorded as ``cancelled`` with the reason;
2. waits for the cross-process requests-per-minute limiter (varflow/ratelimit.py), which also
   holds everyone back for a 429's ``RetryInfo.retryDelay``;
3. reserves the call's estimated cost against ``--max-cost``; if it would pass the cap the call
   is not made, the attempt is recorded ``cancelled`` and the run stops.

A ``no_image`` / ``bad_image`` answer is retried with a reworded prompt
(``retry_prompt(prompt, n)``; the prompt actually sent is recorded).

Caching: Prefect caches the task on the request's content key (``GenerationKey``, see
varflow/cache.py), never on paths or pixels; the image itself goes into the size-bounded
``VariationCache`` and the task returns where it is there. A cache hit makes no call.

Secrets: the API key is resolved here (``backend_for``: the SDK's environment variables, or the
Prefect Secret block named by ``BackendSpec.api_key_secret``) and lives only inside the backend
object; it is never a task parameter, never in a record, and error texts are redacted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.runtime import task_run as runtime_task_run
from prefect.utilities.math import lower_clamp_multiple

from storage import Store
from varflow.cache import VariationCache
from varflow.generators import GenerationError, GeneratorBackend, TokenUsage, VariationRequest, make_backend
from varflow.ratelimit import RateLimiter, state_path
from varflow.records import AttemptRecord, utcnow

# Outcomes after which no further call can succeed in this run.
FATAL_OUTCOMES = frozenset({"auth", "not_found", "quota_day"})
# Outcomes whose retry rewords the prompt (varflow.generators.gemini.PROMPT_CHANGE_OUTCOMES).
PROMPT_CHANGE_OUTCOMES = frozenset({"no_image", "bad_image"})
CANCELLED = "cancelled"
# Environment the SDK reads: a change of any of them means another client.
_CLIENT_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_API_VERSION")


@dataclass(frozen=True)
class BackendSpec:
    """Which backend to build, by name and options: small and hashable, unlike a client.

    ``options`` change the output (they are part of the cache key); ``timeout_s`` and
    ``api_key_secret`` (the *name* of a Prefect Secret block, never the key) do not.
    """

    name: str = "local"
    options: tuple[tuple[str, object], ...] = ()
    timeout_s: float | None = None
    api_key_secret: str | None = None

    def build(self) -> GeneratorBackend:
        options = dict(self.options)
        if self.timeout_s is not None:
            options["timeout_s"] = self.timeout_s
        if self.api_key_secret:
            options["api_key"] = load_secret(self.api_key_secret)
        return make_backend(self.name, **options)


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


@dataclass(frozen=True)
class CallPolicy:
    """How calls are retried, paced and capped; small, no secrets, not part of any cache key.

    ``retries``: Prefect task retries of a retryable failure (0 for the local backend).
    ``backoff_s``: first retry delay; doubles per retry, Prefect adds up to ``jitter`` x it.
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

    def task_options(self) -> dict:
        """Options for ``generate_variation.with_options`` (one retry layer: Prefect's)."""
        if self.retries <= 0:
            return {"retries": 0}
        return {"retries": self.retries, "retry_delay_seconds": self.delays(),
                "retry_jitter_factor": self.jitter or None,
                "retry_condition_fn": retry_only_retryable}

    def min_delay(self, try_number: int) -> float:
        """The shortest wait Prefect can put between try ``try_number`` and the next."""
        delays = self.delays()
        if not delays:
            return 0.0
        base = delays[min(try_number - 1, len(delays) - 1)]
        if self.jitter:
            return base * max(0.0, lower_clamp_multiple(1 + self.jitter))
        return base


@dataclass(frozen=True)
class AttemptContext:
    run_id: str
    store_home: str
    variation_id: str
    quality_level: str
    cache_key: str  # varflow.cache.generation_key of the request
    cache_dir: str  # the VariationCache root
    cache_max_bytes: int
    force: bool = False  # regenerate even if the image is cached
    policy: CallPolicy = CallPolicy()


@dataclass(frozen=True)
class GenerationResult:
    ok: bool
    outcome: str
    output_path: str | None
    prompt_sent: str
    model: str
    latency_ms: float
    error: str | None = None
    width: int | None = None
    height: int | None = None
    detail: str = ""
    tries: int = 1
    cost_usd: float | None = None
    from_cache: bool = False  # served from the VariationCache: no call was made

    @property
    def fatal(self) -> bool:
        return self.outcome in FATAL_OUTCOMES

    @property
    def cancelled(self) -> bool:
        return self.outcome == CANCELLED


class GenerationFailed(Exception):
    """A failed attempt; carries its result. Raised (not returned) so it is never cached."""

    def __init__(self, result: GenerationResult, retry_after_s: float | None = None):
        super().__init__(result.error or result.outcome)
        self.result = result
        self.retry_after_s = retry_after_s

    def __reduce__(self):  # Prefect may persist a failed state: keep it picklable
        return (type(self), (self.result, self.retry_after_s))


class RetryableGenerationError(GenerationFailed):
    """A failure worth another try of the same request (rate limit, 5xx, timeout, no image)."""


class _ExpectedFailureLogFilter(logging.Filter):
    """Drops the traceback Prefect attaches to a failed generate task run when the failure is one
    docs/gemini.md expects (blocked, no image, rate limited, quota, ...): one line says what
    happened, and the attempt's row in ``attempts`` says the rest. A failure of unknown kind
    (outcome ``error``) keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, GenerationFailed) and exc.result.outcome != "error":
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_expected_failures() -> None:
    """Install the filter on Prefect's task-run logger (once per process)."""
    logger = logging.getLogger("prefect.task_runs")
    if not any(isinstance(f, _ExpectedFailureLogFilter) for f in logger.filters):
        logger.addFilter(_ExpectedFailureLogFilter())


def retry_only_retryable(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry transient failures only, never auth or blocks."""
    try:
        state.result()
    except RetryableGenerationError:
        return True
    except Exception:
        return False
    return False


@dataclass
class GenerationKey(CachePolicy):
    """Prefect cache policy: the request's content key, computed by the caller."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        return inputs["context"].cache_key


# ---------------------------------------------------------------------------------------------
# Per-process registries: caches, backends, limiters, and the run's control (stop + spend)
# ---------------------------------------------------------------------------------------------

_caches: dict[tuple[str, int], VariationCache] = {}
_backends: dict[tuple[BackendSpec, str], GeneratorBackend] = {}
_backends_lock = threading.Lock()
_limiters: dict[tuple[str, float | None], RateLimiter] = {}


_storage_blocks: dict[str, object] = {}  # (API url, slug) -> block


def storage_block(slug: str):
    """The saved result-storage block ``slug``, loaded once per process.

    Given as a slug, Prefect loads the block from the API for every task run (one HTTP round
    trip per generation call); given the loaded block, it does not.
    """
    from prefect.settings import get_current_settings

    key = f"{get_current_settings().api.url}|{slug}"  # another server: another block document
    with _backends_lock:
        block = _storage_blocks.get(key)
    if block is None:
        from prefect.blocks.core import Block

        block = Block.load(slug)
        with _backends_lock:
            block = _storage_blocks.setdefault(key, block)
    return block


def variation_cache(root: str, max_bytes: int) -> VariationCache:
    with _backends_lock:
        cache = _caches.get((root, max_bytes))
        if cache is None:
            cache = _caches[(root, max_bytes)] = VariationCache(root, max_bytes=max_bytes)
        return cache


def _client_env() -> str:
    """A digest of the SDK environment (the key included, so only its hash is kept)."""
    text = "\0".join(os.environ.get(k, "") for k in _CLIENT_ENV)
    return hashlib.sha256(text.encode()).hexdigest()


def backend_for(spec: BackendSpec) -> GeneratorBackend:
    """One backend (and so one HTTP client) per spec and SDK environment per process."""
    key = (spec, _client_env())
    with _backends_lock:
        backend = _backends.get(key)
        if backend is None:
            backend = _backends[key] = spec.build()
        return backend


def release_backend(spec: BackendSpec) -> None:
    """Close and forget the spec's backends (a run's end: the next run re-reads key and secret)."""
    with _backends_lock:
        gone = [k for k in _backends if k[0] == spec]
        backends = [_backends.pop(k) for k in gone]
    for b in backends:
        close = getattr(b, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - closing must not fail a finished run
                pass


def preflight(spec: BackendSpec) -> GenerationError | None:
    """A free check that the key and the model work (``models.get``), before any paid call.

    Returns the classified error when the backend answered with one, else None. Backends
    without such a check (local) pass.
    """
    check = getattr(backend_for(spec), "check_model", None)
    if check is None:
        return None
    try:
        check()
    except GenerationError as exc:
        return exc
    return None


def limiter_for(policy: CallPolicy, backend: GeneratorBackend) -> RateLimiter | None:
    """The shared limiter of this backend/model (None for the local backend or no rate_dir)."""
    if backend.name == "local" or not policy.rate_dir:
        return None
    path = str(state_path(policy.rate_dir, f"{backend.name}/{backend.model}"))
    key = (path, policy.rpm)
    with _backends_lock:
        lim = _limiters.get(key)
        if lim is None:
            lim = _limiters[key] = RateLimiter(path, policy.rpm)
        return lim


@dataclass
class RunControl:
    """One run's shared state in this process: why it stopped (if it did) and its spend.

    Thread-safe. ``reserve`` books a call's estimated cost before it starts; ``settle`` replaces
    the estimate by the cost of what came back. A call starts only if spent + booked + its
    estimate stays within ``max_cost_usd``.
    """

    run_id: str
    max_cost_usd: float | None = None
    spent_usd: float = 0.0
    booked_usd: float = 0.0
    calls: int = 0
    stop_outcome: str | None = None
    stop_message: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _prompt_changes: dict[str, int] = field(default_factory=dict, repr=False)
    _slots: threading.BoundedSemaphore | None = field(default=None, repr=False)

    def call_slot(self, concurrency: int | None):
        """A context manager holding one of the run's ``concurrency`` call slots (the task
        runner's pool is shared with the images in flight, so it alone does not bound calls)."""
        if not concurrency:
            return contextlib.nullcontext()
        with self._lock:
            if self._slots is None:
                self._slots = threading.BoundedSemaphore(concurrency)
            return self._slots

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


_controls: dict[str, RunControl] = {}


def run_control(run_id: str, max_cost_usd: float | None = None) -> RunControl:
    """The run's control in this process (created on first use)."""
    with _backends_lock:
        ctl = _controls.get(run_id)
        if ctl is None:
            ctl = _controls[run_id] = RunControl(run_id, max_cost_usd)
        return ctl


def release_run_control(run_id: str) -> None:
    with _backends_lock:
        _controls.pop(run_id, None)


def estimated_call_cost(backend: GeneratorBackend, usage: TokenUsage | None = None) -> float | None:
    """Estimated USD of one call (0 for the local backend, None for a model without a price)."""
    if backend.name == "local":
        return 0.0
    from varflow.generators.gemini import estimate_cost

    return estimate_cost(backend.model, usage)


def _try_number() -> int:
    try:
        return max(1, int(runtime_task_run.run_count or 1))
    except Exception:
        return 1


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------


@task(name="generate", cache_policy=GenerationKey(), persist_result=True,
      retry_condition_fn=retry_only_retryable)
def generate_variation(request: VariationRequest, backend: BackendSpec, context: AttemptContext) -> GenerationResult:
    cache = variation_cache(context.cache_dir, context.cache_max_bytes)
    if not context.force:
        # Prefect writes its cached result only after the task ends; the image is cached the
        # moment it exists, so a run killed in between still never pays for it twice.
        entry = cache.get(context.cache_key)
        if entry is not None:
            return GenerationResult(
                ok=True, outcome="ok", output_path=str(entry.path), prompt_sent=entry.meta.get("prompt", request.prompt),
                model=entry.meta.get("model", ""), latency_ms=0.0, tries=0, from_cache=True,
            )
    gen = backend_for(backend)
    policy = context.policy
    control = run_control(context.run_id, policy.max_cost_usd)
    try_number = _try_number()

    def record(result: GenerationResult, *, started=None, status=None, usage=None, retry_delay=None) -> None:
        Store(context.store_home).write_attempt(
            AttemptRecord(
                run_id=context.run_id, image_id=request.image_id, variation_id=context.variation_id,
                attempt=request.attempt, try_number=try_number, backend=gen.name, model=result.model,
                prompt=result.prompt_sent, outcome=result.outcome, error=result.error,
                latency_ms=result.latency_ms, quality_level=context.quality_level, started_at=started or utcnow(),
                http_status=status,
                prompt_tokens=getattr(usage, "prompt_tokens", None),
                output_tokens=getattr(usage, "output_tokens", None),
                total_tokens=getattr(usage, "total_tokens", None),
                cost_usd=result.cost_usd, retry_delay_s=retry_delay,
            )
        )

    def cancel(reason: str) -> GenerationFailed:
        result = GenerationResult(
            ok=False, outcome=CANCELLED, output_path=None, prompt_sent=request.prompt,
            model=gen.model, latency_ms=0.0, error=reason, tries=try_number, cost_usd=0.0,
        )
        record(result)
        return GenerationFailed(result)

    def stopped_reason() -> str:
        return f"not started: the run stopped ({control.stop_outcome}): {control.stop_message}"

    if control.stopped:
        raise cancel(stopped_reason())

    # A retry after an answer without a usable image goes out with a reworded prompt.
    changes = control.prompt_changes(context.variation_id)
    if changes:
        from varflow.generators.gemini import retry_prompt

        request = replace(request, prompt=retry_prompt(request.prompt, changes))

    with control.call_slot(policy.concurrency):
        limiter = limiter_for(policy, gen)
        if limiter is not None:
            limiter.acquire(should_stop=lambda: control.stopped)
            if control.stopped:
                raise cancel(stopped_reason())

        estimate = estimated_call_cost(gen)
        if estimate is None:
            estimate = 0.0  # unknown price: the flow refuses --max-cost for such a model
        if not control.reserve(estimate):
            message = (f"budget cap reached: the run's estimated spend ${control.spent_usd + control.booked_usd:.4f}"
                       f" plus this call's ${estimate:.4f} would pass --max-cost ${policy.max_cost_usd:.4f}")
            control.stop("budget", message)
            raise cancel(f"not started: {message}")

        started = utcnow()  # the call itself starts now (after any wait for the rate limit)
        t0 = time.perf_counter()
        out, error = _call(gen, request)
        latency_ms = (time.perf_counter() - t0) * 1000
    usage = None
    retry_after = None
    retryable = False
    status = None
    try:
        if error is not None:
            raise error
        usage = out.usage
        result = GenerationResult(
            ok=True, outcome="ok", output_path=out.output_path, prompt_sent=out.prompt_sent,
            model=out.model, latency_ms=latency_ms, width=out.width,
            height=out.height, detail=out.detail, tries=try_number,
        )
    except GenerationError as exc:
        status, retry_after, retryable, usage = exc.http_status, exc.retry_after_s, exc.retryable, exc.usage
        result = GenerationResult(
            ok=False, outcome=exc.outcome, output_path=None, prompt_sent=_sent_prompt(gen, request),
            model=gen.model, latency_ms=latency_ms, error=str(exc), tries=try_number,
        )
    except Exception as exc:  # a backend bug must cost one attempt, not the image
        result = GenerationResult(
            ok=False, outcome="error", output_path=None, prompt_sent=request.prompt, model=gen.model,
            latency_ms=latency_ms, error=f"{type(exc).__name__}: {exc}", tries=try_number,
        )

    # Cost: what came back with a usage block is billed (estimated from its tokens); HTTP errors
    # and transport failures are not.
    if result.ok or usage is not None:
        cost = estimated_call_cost(gen, _complete(usage)) or 0.0
    else:
        cost = 0.0
    control.settle(estimate, cost)
    result = replace(result, cost_usd=round(cost, 6))

    retry_delay = None
    if not result.ok:
        if result.fatal:
            control.stop(result.outcome, result.error or result.outcome)
        shared_pause = result.outcome == "rate_limited" and limiter is not None
        if retry_after and shared_pause:
            limiter.defer(retry_after)  # everyone holds back, in every process
        will_retry = retryable and try_number <= policy.retries and not control.stopped
        if will_retry:
            if result.outcome in PROMPT_CHANGE_OUTCOMES:
                control.count_prompt_change(context.variation_id)
            backoff = policy.delays()[min(try_number - 1, len(policy.delays()) - 1)]
            if retry_after and not shared_pause:  # e.g. a 503 with a delay: this attempt waits
                time.sleep(max(0.0, retry_after - policy.min_delay(try_number)))
            retry_delay = max(backoff, retry_after or 0.0)
        else:
            retryable = False
    record(result, started=started, status=status, usage=usage, retry_delay=retry_delay)
    if not result.ok:
        raise (RetryableGenerationError if retryable else GenerationFailed)(result, retry_after)
    entry = cache.put(
        context.cache_key, result.output_path,
        {"image_id": request.image_id, "prompt": result.prompt_sent, "model": result.model},
    )
    Path(result.output_path).unlink(missing_ok=True)
    return replace(result, output_path=str(entry.path))


def _call(gen: GeneratorBackend, request: VariationRequest):
    """(result, None) or (None, the exception): the call, without its handling."""
    try:
        return gen.generate(request), None
    except Exception as exc:  # noqa: BLE001 - classified by the caller
        return None, exc


def _complete(usage: TokenUsage | None) -> TokenUsage | None:
    """Usage with a missing output count read as 0 (a block has none), so cost uses tokens."""
    if usage is None or usage.output_tokens is not None:
        return usage
    return replace(usage, output_tokens=0)


def _sent_prompt(gen: GeneratorBackend, request: VariationRequest) -> str:
    """The text a failed call sent (the Gemini backend wraps the user's prompt in a template)."""
    if gen.name != "gemini":
        return request.prompt
    try:
        from varflow.generators import resolve_variation_type
        from varflow.generators.gemini import build_prompt

        return build_prompt(resolve_variation_type(request.variation_type, request.seed),
                            request.prompt, request.seed)
    except Exception:  # noqa: BLE001 - a record must not fail on its prompt text
        return request.prompt

