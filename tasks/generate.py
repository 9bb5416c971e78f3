"""Stage 2 as a Prefect task: one generation attempt (``varflow.runtime.calls.run_attempt``) with
Prefect's retries, its cache policy and result persistence added.

* Retries: Prefect's task retries, by the run's ``RetryPolicy`` (varflow/runtime/retry.py, the rules the
  chunk path's loop uses too): ``retry_only_retryable`` lets only ``RetryableGenerationError``
  through (the policy allowed the retry), after the policy's delays with its jitter, drawn per
  attempt (``retry_options``; Prefect's own jitter stays off, it could shorten a delay).
* Cache: Prefect caches the task on the request's content key (``GenerationKey``; every caching
  rule is in varflow/generation/cache.py), its results persisted in the run's result storage.
* Logs: an expected failure (blocked, no image, rate limited, ...) is one line without a
  traceback (``quiet_expected_failures``); its row in ``attempts`` says the rest.

``SubmitGenerations`` is how the per-image pipeline generates a wave: one task run per attempt.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.runtime import task_run as runtime_task_run

from varflow.generation.backends import VariationRequest
from varflow.generation.cache import result_key
from varflow.images.imageio import ImageReadError
from varflow.processing.pipeline import Attempt
from varflow.runtime.calls import (
    AttemptContext,
    GenerationFailed,
    GenerationResult,
    RetryableGenerationError,
    run_attempt,
)
from varflow.runtime.resources import RunResources
from varflow.runtime.retry import RetryPolicy


@dataclass
class GenerationKey(CachePolicy):
    """Prefect cache policy: the request's content key, computed by the caller, under the result
    format (varflow/generation/cache.py rule 6: results stored before a module moved are missed, not
    failed on)."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
        return result_key(inputs["context"].cache_key)


def retry_only_retryable(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry transient failures only, never auth or blocks."""
    try:
        state.result()
    except RetryableGenerationError:
        return True
    except Exception:
        return False
    return False


def retry_options(policy: RetryPolicy, *, rng=random) -> dict:
    """Options for one attempt's ``generate_variation.with_options``: the policy's retries and
    its delays, jitter drawn for this attempt."""
    if policy.retries <= 0:
        return {"retries": 0}
    return {"retries": policy.retries, "retry_delay_seconds": policy.jittered_delays(rng=rng),
            "retry_jitter_factor": None, "retry_condition_fn": retry_only_retryable}


class _ExpectedFailureLogFilter(logging.Filter):
    """Drops the traceback Prefect attaches to a failed task run when the failure is expected: a
    generation failure docs/gemini.md expects (blocked, no image, rate limited, quota, ...), or an
    input image that cannot be used (its message names the file and the fix, and the image's
    record keeps it). Prefect's second line about the same image failure ("Finished in state
    Failed") is dropped too: one line per expected error. A failure of unknown kind (outcome
    ``error``, any other exception) keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ImageReadError) or (isinstance(exc, GenerationFailed) and exc.result.outcome != "error"):
            record.exc_info = None
            record.exc_text = None
        elif exc is None and f"encountered an exception {ImageReadError.__name__}:" in record.getMessage():
            return False
        return True


def quiet_expected_failures() -> None:
    """Install the filter on Prefect's task-run logger (once per process)."""
    logger = logging.getLogger("prefect.task_runs")
    if not any(isinstance(f, _ExpectedFailureLogFilter) for f in logger.filters):
        logger.addFilter(_ExpectedFailureLogFilter())


def _try_number() -> int:
    try:
        return max(1, int(runtime_task_run.run_count or 1))
    except Exception:
        return 1


@task(name="generate", cache_policy=GenerationKey(), persist_result=True, retry_condition_fn=retry_only_retryable)
def generate_variation(request: VariationRequest, context: AttemptContext, resources: RunResources) -> GenerationResult:
    return run_attempt(request, context, resources, try_number=_try_number())


class SubmitGenerations:
    """The pipeline's ``Generate``: a wave of attempts as concurrent generate task runs."""

    def __init__(self, resources: RunResources):
        self.resources = resources

    def __call__(self, attempts: Sequence[Attempt], *, refresh: bool) -> list[tuple[GenerationResult, bool]]:
        res = self.resources
        futures = [generate_variation.with_options(result_storage=res.result_storage, refresh_cache=refresh,
                                                   **retry_options(res.policy)).submit(a.request, a.context, res)
                   for a in attempts]  # each attempt its own jitter
        out = []
        for fut in futures:
            try:
                out.append((fut.result(), fut.state.name == "Cached"))
            except GenerationFailed as exc:
                out.append((exc.result, False))
        return out
