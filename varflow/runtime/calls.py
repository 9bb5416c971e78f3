"""One generation attempt under the run's rules, recorded in ``attempts`` whatever its outcome.

Each call of the backend is one row, written before the attempt returns or raises, so a paid call
is on record even if the process dies right after it. A failure worth another try raises
``RetryableGenerationError`` when the run's retry policy allows another try (varflow/runtime/retry.py:
one policy for the chunk path's loop and Prefect's task retries; SDK retries stay off); other
failures raise ``GenerationFailed``. Only successes return, so only
successes are cached. docs/gemini.md has the decision table (outcome -> retried? how?).

Before every call, in this order:

1. the image cache is checked (varflow/generation/cache.py): a hit makes no call;
2. if the run has stopped (a fatal answer elsewhere, or the budget cap) the attempt is recorded
   ``cancelled`` with the reason;
3. the call waits for one of the run's call slots and for the cross-process rate limiter
   (varflow/runtime/ratelimit.py), which also holds everyone back for a 429's ``retryDelay``;
4. the call's estimated cost is reserved against the budget; if it would pass the cap the call
   is not made, the attempt is recorded ``cancelled`` and the run stops;
5. a write-ahead row (outcome ``in_flight``, the estimated cost) is made durable: a call that
   leaves is on record even if the process is killed before it answers. The call's final row
   replaces it (same part); a run that recovers a killed one marks what is left ``interrupted``.

An answer in ``PROMPT_CHANGE_OUTCOMES`` is retried with the backend's reworded prompt (the prompt
actually sent is recorded). No Prefect here: tasks/generate.py wraps ``run_attempt`` in a task.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from varflow.generation.backends import (
    FATAL_OUTCOMES,
    PROMPT_CHANGE_OUTCOMES,
    GenerationError,
    GeneratorBackend,
    TokenUsage,
    VariationRequest,
)
from varflow.kinds import CallOutcome
from varflow.runtime.records import AttemptRecord, utcnow
from varflow.runtime.resources import CallPolicy, RunControl, RunResources

CANCELLED = CallOutcome.CANCELLED  # no call was made: the run had stopped, or the budget refused it
IN_FLIGHT = CallOutcome.IN_FLIGHT  # the call was sent and has not ended (or its process died: see INTERRUPTED)
# a recovered run's in-flight call: maybe answered and billed, counted at its estimate
INTERRUPTED = CallOutcome.INTERRUPTED
DEFERRED = CallOutcome.DEFERRED  # no call was made yet: the request waits for a batch job (varflow/processing/batch.py)


@dataclass(frozen=True)
class AttemptContext:
    """What an attempt needs besides its request: small, picklable, no resources."""

    variation_id: str
    quality_level: str
    cache_key: str  # varflow.generation.cache.generation_key of the request
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
    from_cache: bool = False  # served from the image cache: no call was made

    @property
    def fatal(self) -> bool:
        return self.outcome in FATAL_OUTCOMES

    @property
    def cancelled(self) -> bool:
        return self.outcome == CANCELLED

    @property
    def deferred(self) -> bool:
        return self.outcome == DEFERRED


class GenerationFailed(Exception):
    """A failed attempt; carries its result. Raised (not returned) so it is never cached."""

    def __init__(self, result: GenerationResult, retry_after_s: float | None = None):
        super().__init__(result.error or result.outcome)
        self.result = result
        self.retry_after_s = retry_after_s

    def __reduce__(self):  # a failed state may be persisted: keep it picklable
        return (type(self), (self.result, self.retry_after_s))


class RetryableGenerationError(GenerationFailed):
    """A failure worth another try of the same request (rate limit, 5xx, timeout, no image)."""


def run_attempt(request: VariationRequest, ctx: AttemptContext, res: RunResources, *,
                try_number: int = 1) -> GenerationResult:
    """One try of one attempt, with the run's resources; a retry waits ``res.policy``'s delay."""
    entry = res.cache.before_call(ctx.cache_key, force=ctx.force)
    if entry is not None:
        return GenerationResult(
            ok=True, outcome=CallOutcome.OK, output_path=str(entry.path),
            prompt_sent=entry.meta.get("prompt", request.prompt), model=entry.meta.get("model", ""), latency_ms=0.0,
            tries=0, from_cache=True,
        )
    return _Try(request, ctx, res, try_number).run()


class _Try:
    """One call of the backend with everything around it (see the module docstring)."""

    def __init__(self, request: VariationRequest, ctx: AttemptContext, res: RunResources, try_number: int):
        self.request, self.ctx, self.res = request, ctx, res
        self.gen: GeneratorBackend = res.backend
        self.control: RunControl = res.control
        self.policy: CallPolicy = res.policy
        self.try_number = try_number

    def run(self) -> GenerationResult:
        if self.control.stopped:
            raise self.cancel(self.stopped_reason())
        changes = self.control.prompt_changes(self.ctx.variation_id)
        if changes:  # a retry after an answer without a usable image goes out reworded
            self.request = replace(self.request, prompt=self.gen.retry_prompt(self.request.prompt, changes))
        with self.control.call_slot():
            limiter = self.res.limiter
            if limiter is not None:
                limiter.acquire(should_stop=lambda: self.control.stopped)
                if self.control.stopped:
                    raise self.cancel(self.stopped_reason())
            estimate = self.gen.estimate_cost(self.gen.model)
            if estimate is None:
                estimate = 0.0  # unknown price: the run refuses a spend cap for such a model
            if not self.control.reserve(estimate):
                raise self.cancel(f"not started: {self.refuse_budget(estimate)}")
            started = utcnow()  # the call itself starts now (after any wait for the rate limit)
            self.record(replace(self.in_flight(), cost_usd=estimate), started=started)
            t0 = time.perf_counter()
            out, error = _call(self.gen, self.request)
            latency_ms = (time.perf_counter() - t0) * 1000
        return self.settle(out, error, started, latency_ms, estimate)

    def settle(self, out, error, started, latency_ms: float, estimate: float) -> GenerationResult:
        result, usage, status, retry_after, retryable = self.classify(out, error, latency_ms)
        # Cost: what came back with a usage block is billed (estimated from its tokens); HTTP
        # errors and transport failures are not.
        cost = (self.gen.estimate_cost(self.gen.model, _complete(usage)) or 0.0) \
            if result.ok or usage is not None else 0.0
        self.control.settle(estimate, cost)
        result = replace(result, cost_usd=round(cost, 6))
        retry_delay = None
        if not result.ok:
            retry_delay = self.plan_retry(result, retry_after, retryable)
            retryable = retry_delay is not None
        self.record(result, started=started, status=status, usage=usage, retry_delay=retry_delay)
        if not result.ok:
            raise (RetryableGenerationError if retryable else GenerationFailed)(result, retry_after)
        entry = self.res.cache.keep(
            self.ctx.cache_key, result.output_path,
            {"image_id": self.request.image_id, "prompt": result.prompt_sent, "model": result.model},
        )
        return replace(result, output_path=str(entry.path))

    def classify(self, out, error, latency_ms: float):
        """(result, usage, http status, retry-after, retryable) of a call's answer."""
        gen, request, tries = self.gen, self.request, self.try_number
        if error is None:
            return (GenerationResult(
                ok=True, outcome=CallOutcome.OK, output_path=out.output_path, prompt_sent=out.prompt_sent,
                model=out.model, latency_ms=latency_ms, width=out.width, height=out.height, detail=out.detail,
                tries=tries,
            ), out.usage, None, None, False)
        if isinstance(error, GenerationError):
            return (GenerationResult(
                ok=False, outcome=error.outcome, output_path=None, prompt_sent=gen.sent_prompt(request),
                model=gen.model, latency_ms=latency_ms, error=str(error), tries=tries,
            ), error.usage, error.http_status, error.retry_after_s, error.retryable)
        # a backend bug must cost one attempt, not the image
        return (GenerationResult(
            ok=False, outcome=CallOutcome.ERROR, output_path=None, prompt_sent=request.prompt, model=gen.model,
            latency_ms=latency_ms, error=f"{type(error).__name__}: {error}", tries=tries,
        ), None, None, None, False)

    def plan_retry(self, result: GenerationResult, retry_after: float | None, retryable: bool) -> float | None:
        """Stop the run on a fatal answer; return the retry's delay, or None when not retried."""
        control, policy, limiter = self.control, self.policy, self.res.limiter
        if result.fatal:
            control.stop(result.outcome, result.error or result.outcome)
        shared_pause = result.outcome == "rate_limited" and limiter is not None
        if retry_after and shared_pause:
            limiter.defer(retry_after)  # everyone holds back, in every process
        if not policy.allows(retryable=retryable, try_number=self.try_number, stopped=control.stopped):
            return None
        if result.outcome in PROMPT_CHANGE_OUTCOMES:
            control.count_prompt_change(self.ctx.variation_id)
        if retry_after and not shared_pause:  # e.g. a 503 with a delay: this attempt waits
            time.sleep(policy.server_wait(self.try_number, retry_after))
        return policy.recorded_delay(self.try_number, retry_after)

    def stopped_reason(self) -> str:
        return f"not started: the run stopped ({self.control.stop_outcome}): {self.control.stop_message}"

    def refuse_budget(self, estimate: float) -> str:
        control = self.control
        message = (f"budget cap reached: the run's estimated spend ${control.spent_usd + control.booked_usd:.4f}"
                   f" plus this call's ${estimate:.4f} would pass --max-cost ${self.policy.max_cost_usd:.4f}")
        control.stop("budget", message)
        return message

    def in_flight(self) -> GenerationResult:
        return GenerationResult(
            ok=False, outcome=IN_FLIGHT, output_path=None, prompt_sent=self.gen.sent_prompt(self.request),
            model=self.gen.model, latency_ms=0.0, tries=self.try_number,
            error="sent; no answer recorded yet (if the run was killed: maybe answered and billed)",
        )

    def cancel(self, reason: str) -> GenerationFailed:
        result = GenerationResult(
            ok=False, outcome=CANCELLED, output_path=None, prompt_sent=self.request.prompt,
            model=self.gen.model, latency_ms=0.0, error=reason, tries=self.try_number, cost_usd=0.0,
        )
        self.record(result)
        return GenerationFailed(result)

    def record(self, result: GenerationResult, *, started=None, status=None, usage=None, retry_delay=None) -> None:
        request = self.request
        self.res.records.write_attempt(AttemptRecord(
            run_id=self.res.run_id, image_id=request.image_id, variation_id=self.ctx.variation_id,
            attempt=request.attempt, try_number=self.try_number, backend=self.gen.name, model=result.model,
            prompt=result.prompt_sent, outcome=result.outcome, error=result.error,
            latency_ms=result.latency_ms, quality_level=self.ctx.quality_level, started_at=started or utcnow(),
            http_status=status,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            output_tokens=getattr(usage, "output_tokens", None),
            total_tokens=getattr(usage, "total_tokens", None),
            cost_usd=result.cost_usd, retry_delay_s=retry_delay,
        ))


def record_cache_hit(res: RunResources, request: VariationRequest, ctx: AttemptContext,
                     result: GenerationResult) -> None:
    """A result served from a cache made no call: one zero-cost row with ``cache_hit``."""
    res.records.write_attempt(AttemptRecord(
        run_id=res.run_id, image_id=request.image_id, variation_id=ctx.variation_id,
        attempt=request.attempt, try_number=0, backend=res.backend.name, model=result.model,
        prompt=result.prompt_sent, outcome=CallOutcome.OK, error=None, latency_ms=0.0,
        quality_level=ctx.quality_level, started_at=utcnow(), cost_usd=0.0, cache_hit=True,
    ))


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
