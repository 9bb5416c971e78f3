"""One retry policy for both retry loops (varflow/runtime/retry.py), and the result format of the
generate task's cache key (varflow/generation/cache.py rule 6)."""

import random

from PIL import Image

from varflow.generation.cache import GenerationCache, result_key
from varflow.runtime.resources import CallPolicy
from varflow.runtime.retry import RetryPolicy


def test_the_run_policy_is_the_retry_policy_both_paths_read():
    policy = CallPolicy(retries=2, backoff_s=1.0, jitter=0.25, rpm=30)
    assert isinstance(policy, RetryPolicy) and policy.delays() == [1.0, 2.0]
    assert [policy.backoff(n) for n in (1, 2, 3)] == [1.0, 2.0, 2.0]


def test_whether_a_failure_is_retried():
    p = RetryPolicy(retries=2)
    assert p.allows(retryable=True, try_number=1, stopped=False)
    assert p.allows(retryable=True, try_number=2, stopped=False)
    assert not p.allows(retryable=True, try_number=3, stopped=False)  # the retries are used up
    assert not p.allows(retryable=False, try_number=1, stopped=False)  # auth, blocked, a bug
    assert not p.allows(retryable=True, try_number=1, stopped=True)  # the run stopped
    assert not RetryPolicy(retries=0).allows(retryable=True, try_number=1, stopped=False)


def test_a_servers_retry_delay_is_waited_in_full_and_recorded():
    p = RetryPolicy(retries=3, backoff_s=2.0, jitter=0.5)
    # the next try waits at least the backoff (jitter only stretches it): the attempt waits the rest
    assert min(p.wait(1, rng=random.Random(i)) for i in range(100)) >= 2.0
    assert p.server_wait(1, 5.0) == 3.0 and p.server_wait(1, 1.0) == 0.0 and p.server_wait(1, None) == 0.0
    assert p.recorded_delay(1, 5.0) == 5.0 and p.recorded_delay(2, 1.0) == 4.0


def test_prune_keeps_live_results_of_this_format_and_deletes_older_formats(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    cache = GenerationCache(tmp_path / "variations", max_bytes=10**8, results_dir=results)
    image = tmp_path / "made.png"
    Image.new("RGB", (8, 8)).save(image)
    cache.keep("a" * 64, image, {})
    live, old, dead = results / result_key("a" * 64), results / ("a" * 64), results / result_key("b" * 64)
    for f in (live, old, dead):
        f.write_bytes(b"pickle")
    assert cache.prune_results() == 2
    assert sorted(p.name for p in results.iterdir()) == [live.name]
