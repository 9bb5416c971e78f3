"""A chunk's generation calls in its own process: retried by the run's policy, never twice paid."""

from __future__ import annotations

import random
import threading
import time

from test_calls import CTX, Scripted, request, source  # noqa: F401 - the source fixture
from test_pipeline import resources

from varflow.generation.backends import GenerationError
from varflow.processing.direct import DirectGenerations
from varflow.processing.pipeline import Attempt
from varflow.runtime.resources import CallPolicy


def attempt(source_path, tmp_path) -> Attempt:
    req = request(source_path, tmp_path)
    return Attempt(0, req.seed, req.variation_type, req, CTX)


def server_errors(n):
    return [GenerationError("503", outcome="server_error", retryable=True, http_status=503)] * n


def test_transient_failures_are_retried_until_an_image_comes_back(tmp_path, source):
    backend = Scripted(server_errors(2))
    res = resources(tmp_path, backend, policy=CallPolicy(retries=3, backoff_s=0.01, jitter=0.0))
    [(result, served)] = DirectGenerations(res)([attempt(source, tmp_path)], refresh=False)
    assert (result.ok, result.tries, served) == (True, 3, False)
    assert [a.outcome for a in res.records.attempts if a.outcome != "in_flight"] == \
        ["server_error", "server_error", "ok"]


def test_retries_stop_at_the_policy_and_the_last_failure_is_the_result(tmp_path, source):
    res = resources(tmp_path, Scripted(server_errors(5)), policy=CallPolicy(retries=1, backoff_s=0.01, jitter=0.0))
    [(result, _)] = DirectGenerations(res)([attempt(source, tmp_path)], refresh=False)
    assert (result.ok, result.outcome, result.tries) == (False, "server_error", 2)


def test_a_fatal_answer_is_not_retried_and_stops_the_run(tmp_path, source):
    fatal = [GenerationError("bad key", outcome="auth", retryable=False, http_status=401)]
    res = resources(tmp_path, Scripted(fatal), policy=CallPolicy(retries=4, backoff_s=0.01))
    [(result, _)] = DirectGenerations(res)([attempt(source, tmp_path)], refresh=False)
    assert (result.outcome, result.tries, res.control.stop_outcome) == ("auth", 1, "auth")


def test_a_run_stopped_during_the_backoff_makes_no_retry(tmp_path, source):
    backend = Scripted(server_errors(1))
    res = resources(tmp_path, backend, policy=CallPolicy(retries=3, backoff_s=30.0, jitter=0.0))
    threading.Timer(0.3, lambda: res.control.stop("budget", "cap reached")).start()
    t0 = time.monotonic()
    [(result, _)] = DirectGenerations(res)([attempt(source, tmp_path)], refresh=False)
    assert result.outcome == "server_error" and time.monotonic() - t0 < 5
    assert len(backend.calls) == 1


def test_a_cached_answer_makes_no_call(tmp_path, source):
    res = resources(tmp_path, Scripted([]), policy=CallPolicy(retries=0))
    gen = DirectGenerations(res)
    [(first, _)] = gen([attempt(source, tmp_path)], refresh=False)
    [(again, _)] = gen([attempt(source, tmp_path)], refresh=False)
    assert first.ok and not first.from_cache and again.from_cache and again.tries == 0


def test_the_wait_is_the_backoff_stretched_by_at_most_the_jitter():
    policy = CallPolicy(retries=3, backoff_s=2.0, jitter=0.5)
    waits = [policy.wait(2, rng=random.Random(i)) for i in range(200)]
    assert 4.0 <= min(waits) < 4.2 and 5.8 < max(waits) <= 6.0
    assert CallPolicy(retries=1, backoff_s=2.0, jitter=0.0).wait(1) == 2.0
