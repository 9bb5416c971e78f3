"""The run's resources are chosen from its parameters in one place (flows/resources.py)."""

from __future__ import annotations

import pickle

from varflow.flows.parameters import RunParameters
from varflow.flows.resources import resource_spec


def test_a_backend_that_is_not_remote_is_never_retried_paced_or_given_a_key(tmp_path):
    params = RunParameters(input_dir="x", backend="local", retries=5, requests_per_minute=60,
                           api_key_secret="block", max_cost_usd=2.0, generation_concurrency=3, cache_max_mb=7)
    spec = resource_spec(params, tmp_path, "run-1")
    assert (spec.backend, spec.backend_options, spec.timeout_s, spec.api_key_secret) == ("local", (), None, None)
    p = spec.policy
    assert (p.retries, p.rpm, p.rate_dir, p.max_cost_usd, p.concurrency) == (0, None, None, 2.0, 3)
    assert spec.cache_max_bytes == 7 * 2**20


def test_a_remote_backend_gets_retries_pacing_a_timeout_and_the_secrets_name(tmp_path):
    params = RunParameters(input_dir="x", backend="gemini", model="gemini-3-pro-image", retries=5,
                           retry_backoff_s=1.5, requests_per_minute=60, request_timeout_s=9,
                           api_key_secret="block")
    spec = resource_spec(params, tmp_path, "run-1")
    assert spec.backend_options == (("model", "gemini-3-pro-image"),)  # output-changing: in the cache key
    assert (spec.timeout_s, spec.api_key_secret) == (9, "block")
    p = spec.policy
    assert (p.retries, p.backoff_s, p.rpm, p.rate_dir) == (5, 1.5, 60, str(tmp_path / "ratelimit"))
    assert pickle.loads(pickle.dumps(spec)) == spec and hash(spec)  # small, picklable, hashable


def test_limits_are_shared_in_this_process_for_threads_and_in_the_data_directory_for_dask(tmp_path):
    def shared(**kw) -> str:
        return resource_spec(RunParameters(input_dir="x", backend="local", **kw), tmp_path, "run-1").shared_limits

    assert shared() == ""
    assert shared(runner="dask") == "file"
    assert shared(shared_limits="file") == "file"
    assert shared(runner="dask", shared_limits=" redis://10.0.0.5:6379/2 ") == "redis://10.0.0.5:6379/2"
