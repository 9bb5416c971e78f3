"""Stage 2: one generation attempt, recorded in ``attempts`` whatever its outcome.

Each call of the backend is one row, written before the task returns or retries, so a paid call
is on record even if the process dies right after it. Retryable failures raise
``RetryableGenerationError`` for Prefect's task retries (the only retry layer); other failures
raise ``GenerationFailed``. Only successes return, so only successes are cached.

Caching: Prefect caches the task on the request's content key (``GenerationKey``, see
varflow/cache.py), never on paths or pixels; the image itself goes into the size-bounded
``VariationCache`` and the task returns where it is there. A cache hit makes no call.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.runtime import task_run as runtime_task_run

from storage import Store
from varflow.cache import VariationCache
from varflow.generators import GenerationError, GeneratorBackend, VariationRequest, make_backend
from varflow.records import AttemptRecord, utcnow

# Outcomes after which no further call can succeed in this run.
FATAL_OUTCOMES = frozenset({"auth", "not_found", "quota_day"})


@dataclass(frozen=True)
class BackendSpec:
    """Which backend to build, by name and options: small and hashable, unlike a client."""

    name: str = "local"
    options: tuple[tuple[str, object], ...] = ()

    def build(self) -> GeneratorBackend:
        return make_backend(self.name, **dict(self.options))


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


class GenerationFailed(Exception):
    """A failed attempt; carries its result. Raised (not returned) so it is never cached."""

    def __init__(self, result: GenerationResult, retry_after_s: float | None = None):
        super().__init__(result.error or result.outcome)
        self.result = result
        self.retry_after_s = retry_after_s

    def __reduce__(self):  # Prefect may persist a failed state: keep it picklable
        return (type(self), (self.result, self.retry_after_s))


class RetryableGenerationError(GenerationFailed):
    """A failure worth another try of the same request (rate limit, 5xx, timeout)."""


@dataclass
class GenerationKey(CachePolicy):
    """Prefect cache policy: the request's content key, computed by the caller."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        return inputs["context"].cache_key


_caches: dict[tuple[str, int], VariationCache] = {}


def variation_cache(root: str, max_bytes: int) -> VariationCache:
    with _backends_lock:
        cache = _caches.get((root, max_bytes))
        if cache is None:
            cache = _caches[(root, max_bytes)] = VariationCache(root, max_bytes=max_bytes)
        return cache


_backends: dict[BackendSpec, GeneratorBackend] = {}
_backends_lock = threading.Lock()


def backend_for(spec: BackendSpec) -> GeneratorBackend:
    """One backend (and so one HTTP client) per spec per process."""
    with _backends_lock:
        backend = _backends.get(spec)
        if backend is None:
            backend = _backends[spec] = spec.build()
        return backend


def _try_number() -> int:
    try:
        return max(1, int(runtime_task_run.run_count or 1))
    except Exception:
        return 1


@task(name="generate", cache_policy=GenerationKey(), persist_result=True)
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
    try_number = _try_number()
    started = utcnow()
    t0 = time.perf_counter()
    usage = None
    retry_after = None
    retryable = False
    try:
        out = gen.generate(request)
        usage = out.usage
        result = GenerationResult(
            ok=True, outcome="ok", output_path=out.output_path, prompt_sent=out.prompt_sent,
            model=out.model, latency_ms=(time.perf_counter() - t0) * 1000, width=out.width,
            height=out.height, detail=out.detail, tries=try_number,
        )
        status = None
    except GenerationError as exc:
        status, retry_after, retryable = exc.http_status, exc.retry_after_s, exc.retryable
        result = GenerationResult(
            ok=False, outcome=exc.outcome, output_path=None, prompt_sent=request.prompt,
            model=gen.model, latency_ms=(time.perf_counter() - t0) * 1000, error=str(exc), tries=try_number,
        )
    except Exception as exc:  # a backend bug must cost one attempt, not the image
        status = None
        result = GenerationResult(
            ok=False, outcome="error", output_path=None, prompt_sent=request.prompt, model=gen.model,
            latency_ms=(time.perf_counter() - t0) * 1000, error=f"{type(exc).__name__}: {exc}", tries=try_number,
        )
    Store(context.store_home).write_attempt(
        AttemptRecord(
            run_id=context.run_id, image_id=request.image_id, variation_id=context.variation_id,
            attempt=request.attempt, try_number=try_number, backend=gen.name, model=result.model,
            prompt=result.prompt_sent, outcome=result.outcome, error=result.error,
            latency_ms=result.latency_ms, quality_level=context.quality_level, started_at=started,
            http_status=status,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            output_tokens=getattr(usage, "output_tokens", None),
            total_tokens=getattr(usage, "total_tokens", None),
            cost_usd=0.0 if gen.name == "local" else None,
            retry_delay_s=retry_after,
        )
    )
    if not result.ok:
        raise (RetryableGenerationError if retryable else GenerationFailed)(result, retry_after)
    entry = cache.put(
        context.cache_key, result.output_path,
        {"image_id": request.image_id, "prompt": result.prompt_sent, "model": result.model},
    )
    Path(result.output_path).unlink(missing_ok=True)
    return replace(result, output_path=str(entry.path))


def retry_only_retryable(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry transient failures only, never auth or blocks."""
    try:
        state.result()
    except RetryableGenerationError:
        return True
    except Exception:
        return False
    return False
