"""The generate task's Prefect options: one retry layer, the run's backoff, the content key."""

from __future__ import annotations

from varflow.tasks.generate import GenerationKey, retry_only_retryable, retry_options

from varflow.generation.cache import RESULT_FORMAT, result_key
from varflow.runtime.calls import AttemptContext
from varflow.runtime.resources import CallPolicy


def test_a_policy_without_retries_turns_prefect_retries_off():
    assert retry_options(CallPolicy(retries=0)) == {"retries": 0}


def test_retries_back_off_exponentially_with_the_policys_jitter_and_only_for_retryable_failures():
    """Prefect's retries wait what the chunk path's loop waits: the policy's delays, jittered by the
    policy (drawn per attempt), never shortened by Prefect's own jitter (off)."""
    import random

    policy = CallPolicy(retries=3, backoff_s=2.0, jitter=0.5)
    options = retry_options(policy, rng=random.Random(7))
    assert options == {"retries": 3, "retry_delay_seconds": policy.jittered_delays(rng=random.Random(7)),
                       "retry_jitter_factor": None, "retry_condition_fn": retry_only_retryable}
    for seed in range(50):
        delays = retry_options(policy, rng=random.Random(seed))["retry_delay_seconds"]
        assert all(base <= d <= 1.5 * base for d, base in zip(delays, [2.0, 4.0, 8.0], strict=True))
    assert retry_options(CallPolicy(retries=3, jitter=0))["retry_delay_seconds"] == [2.0, 4.0, 8.0]


def test_the_cache_key_is_the_requests_content_key_only():
    ctx = AttemptContext("v", "low", "f" * 64)
    assert GenerationKey().compute_key(None, {"context": ctx, "request": object(), "resources": object()},
                                       {}) == result_key("f" * 64) == f"r{RESULT_FORMAT}-" + "f" * 64
