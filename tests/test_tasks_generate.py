"""The generate task's Prefect options: one retry layer, the run's backoff, the content key."""

from __future__ import annotations

import pytest
from prefect.utilities.math import lower_clamp_multiple
from varflow.tasks.generate import GenerationKey, retry_only_retryable, retry_options, shortest_retry_wait

from varflow.runtime.calls import AttemptContext
from varflow.runtime.resources import CallPolicy


def test_a_policy_without_retries_turns_prefect_retries_off():
    assert retry_options(CallPolicy(retries=0)) == {"retries": 0}


def test_retries_back_off_exponentially_with_jitter_and_only_for_retryable_failures():
    options = retry_options(CallPolicy(retries=3, backoff_s=2.0, jitter=0.5))
    assert options == {"retries": 3, "retry_delay_seconds": [2.0, 4.0, 8.0], "retry_jitter_factor": 0.5,
                       "retry_condition_fn": retry_only_retryable}


@pytest.mark.parametrize("try_number, base", [(1, 2.0), (2, 4.0), (3, 8.0), (9, 8.0)])
def test_the_shortest_wait_is_prefects_lower_jitter_bound(try_number, base):
    policy = CallPolicy(retries=3, backoff_s=2.0, jitter=0.5)
    assert shortest_retry_wait(policy, try_number) == pytest.approx(base * lower_clamp_multiple(1.5))
    assert shortest_retry_wait(CallPolicy(retries=3, jitter=0), try_number) == base
    assert shortest_retry_wait(CallPolicy(retries=0), 1) == 0.0


def test_the_cache_key_is_the_requests_content_key_only():
    ctx = AttemptContext("v", "low", "f" * 64)
    assert GenerationKey().compute_key(None, {"context": ctx, "request": object(), "resources": object()},
                                       {}) == "f" * 64
