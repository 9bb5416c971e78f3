"""One generation attempt without Prefect: what is retried, how, what is recorded and paid.

Each ``run_attempt`` call is one try, as Prefect's retries make them; the test plays the
orchestrator, passing the try number.
"""

from __future__ import annotations

import time

import pytest
from test_pipeline import Sink, TintBackend, resources

from varflow.generation.backends import GenerationError, TokenUsage, VariationRequest, backend_class
from varflow.runtime.calls import AttemptContext, GenerationFailed, RetryableGenerationError, run_attempt
from varflow.runtime.ratelimit import RateLimiter
from varflow.runtime.resources import CallPolicy, enforceable_cap


class Scripted(TintBackend):
    """Raises the scripted errors in turn, then writes a tint; rewords a retried prompt."""

    remote = True

    def __init__(self, errors):
        super().__init__()
        self.errors = list(errors)

    @classmethod
    def estimate_cost(cls, model, usage=None):
        return 0.04 if usage is None else (usage.prompt_tokens + usage.output_tokens) / 1000

    def retry_prompt(self, prompt, n):
        return f"{prompt} (again {n})"

    def generate(self, request):
        if self.errors:
            self.calls.append(request)
            error = self.errors.pop(0)
            raise error
        return super().generate(request)


def request(source, tmp_path) -> VariationRequest:
    return VariationRequest("img", str(source), "style_change", "snow", 1, 0, str(tmp_path / "a.png"))


def tries(req, res, ctx, n):
    """Up to ``n`` tries as the orchestrator makes them; the exceptions of the failed ones."""
    seen = []
    for t in range(1, n + 1):
        try:
            return run_attempt(req, ctx, res, try_number=t), seen
        except GenerationFailed as exc:
            seen.append(exc)
            if not isinstance(exc, RetryableGenerationError):
                break
    return None, seen


@pytest.fixture
def source(tmp_path):
    from conftest import load_photo
    from PIL import Image

    path = tmp_path / "src.png"
    Image.fromarray(load_photo("coffee.png")).resize((60, 40)).save(path)
    return path


CTX = AttemptContext("v1", "low", "k" * 64)


def test_transient_failures_are_retried_until_the_policy_says_no(tmp_path, source):
    errors = [GenerationError("503", outcome="server_error", retryable=True, http_status=503)] * 3
    res = resources(tmp_path, Scripted(errors), policy=CallPolicy(retries=2, backoff_s=0.5))
    result, seen = tries(request(source, tmp_path), res, CTX, 5)
    assert result is None
    assert [type(e) for e in seen] == [RetryableGenerationError, RetryableGenerationError, GenerationFailed]
    rows = res.records.attempts
    assert [(r.try_number, r.outcome, r.retry_delay_s, r.http_status) for r in rows] == [
        (1, "server_error", 0.5, 503), (2, "server_error", 1.0, 503), (3, "server_error", None, 503)]


def test_no_image_is_retried_with_the_backends_reworded_prompt(tmp_path, source):
    backend = Scripted([GenerationError("text", outcome="no_image", retryable=True,
                                        usage=TokenUsage(10, None, 10))])
    res = resources(tmp_path, backend, policy=CallPolicy(retries=2, backoff_s=0))
    result, seen = tries(request(source, tmp_path), res, CTX, 3)
    assert result.ok and result.tries == 2 and len(seen) == 1
    assert [r.prompt for r in res.records.attempts] == ["snow", "snow (again 1)"]
    # an answer with a usage block is billed (its missing output count read as 0); the image too
    assert [r.cost_usd for r in res.records.attempts] == [0.01, 0.04]
    assert res.cache.before_call(CTX.cache_key) is not None  # kept the moment it exists


def test_a_429_pauses_every_caller_of_the_shared_limiter(tmp_path, source):
    backend = Scripted([GenerationError("429", outcome="rate_limited", retryable=True, http_status=429,
                                        retry_after_s=3.0)])
    res = resources(tmp_path, backend, policy=CallPolicy(retries=1, backoff_s=0.1))
    res.limiter = RateLimiter(tmp_path / "rate.json")
    with pytest.raises(RetryableGenerationError):
        run_attempt(request(source, tmp_path), CTX, res)
    assert res.limiter.paused_until() > time.time() + 2.5  # the whole run waits, not just this try
    assert res.records.attempts[0].retry_delay_s == 3.0  # max(backoff, retryDelay)


def test_a_server_delay_without_a_limiter_is_waited_here(tmp_path, source):
    backend = Scripted([GenerationError("503", outcome="server_error", retryable=True, retry_after_s=0.3)])
    res = resources(tmp_path, backend, policy=CallPolicy(retries=1, backoff_s=0.1))
    t0 = time.perf_counter()
    with pytest.raises(RetryableGenerationError):
        run_attempt(request(source, tmp_path), CTX, res)
    assert 0.18 < time.perf_counter() - t0 < 1.0  # 0.3 s asked, 0.1 s (the backoff) either retry loop waits anyway


def test_fatal_and_unknown_failures_are_not_retried(tmp_path, source):
    res = resources(tmp_path, Scripted([GenerationError("key", outcome="auth", http_status=403)]),
                    policy=CallPolicy(retries=3))
    with pytest.raises(GenerationFailed) as info:
        run_attempt(request(source, tmp_path), CTX, res)
    assert not isinstance(info.value, RetryableGenerationError) and info.value.result.fatal
    assert res.control.stop_outcome == "auth"
    res = resources(tmp_path, Scripted([ZeroDivisionError("bug")]), policy=CallPolicy(retries=3), run_id="r2")
    with pytest.raises(GenerationFailed) as info:
        run_attempt(request(source, tmp_path), CTX, res)
    assert not isinstance(info.value, RetryableGenerationError)
    assert info.value.result.outcome == "error" and "ZeroDivisionError" in info.value.result.error
    assert not res.control.stopped


def test_a_spend_cap_needs_a_price():
    enforceable_cap(backend_class("gemini"), "gemini-2.5-flash-image", 5.0)
    enforceable_cap(backend_class("gemini"), "some-new-model", None)  # no cap: nothing to enforce
    with pytest.raises(ValueError, match="no price is known for model 'some-new-model'"):
        enforceable_cap(backend_class("gemini"), "some-new-model", 5.0)


def test_the_sink_receives_every_row(tmp_path, source):
    sink = Sink()
    res = resources(tmp_path, TintBackend(), sink=sink)
    result = run_attempt(request(source, tmp_path), CTX, res)
    assert result.ok and result.output_path.startswith(str(tmp_path / "home" / "cache"))
    assert [(r.backend, r.model, r.variation_id, r.quality_level) for r in sink.attempts] == [
        ("tint", "tint-1", "v1", "low")]
