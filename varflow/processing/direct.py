"""A wave of attempts generated in this process: the pipeline's ``Generate`` when the orchestrator
runs a chunk of images as one task run (varflow/processing/chunks.py says when).

Each attempt is ``varflow.runtime.calls.run_attempt`` with the run's retry policy applied here: a
``RetryableGenerationError`` (raised when the policy allows another try) is tried again after the
policy's ``wait``; any other failure is the attempt's result. The policy is the one Prefect's task
retries use on the per-call path (varflow/runtime/retry.py, tasks/generate.py): one set of rules,
two loops, never both on one call. A wave's attempts run side by side on a few threads; the run's
call slots and rate limit (varflow/runtime/resources.py) still bound the calls, in every process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from varflow.processing.pipeline import Attempt
from varflow.runtime.calls import GenerationFailed, GenerationResult, RetryableGenerationError, run_attempt
from varflow.runtime.resources import RunResources


class DirectGenerations:
    """``Generate`` for a chunk task: each attempt in this process, retried by the run's policy."""

    def __init__(self, resources: RunResources, *, threads: int = 1):
        self.resources = resources
        self.threads = max(1, threads)

    def __getstate__(self):
        return {"resources": self.resources, "threads": self.threads}

    def __call__(self, attempts: Sequence[Attempt], *, refresh: bool) -> list[tuple[GenerationResult, bool]]:
        if len(attempts) <= 1 or self.threads == 1:
            return [(self.attempt(a), False) for a in attempts]
        with ThreadPoolExecutor(max_workers=min(self.threads, len(attempts)),
                                thread_name_prefix="varflow-generate") as pool:
            return [(r, False) for r in pool.map(self.attempt, attempts)]

    def attempt(self, a: Attempt) -> GenerationResult:
        res, policy = self.resources, self.resources.policy
        try_number = 1
        while True:
            try:
                return run_attempt(a.request, a.context, res, try_number=try_number)
            except RetryableGenerationError as exc:  # run_attempt planned a retry
                if _sleep_unless_stopped(policy.wait(try_number), res):
                    return exc.result
                try_number += 1
            except GenerationFailed as exc:
                return exc.result


def _sleep_unless_stopped(seconds: float, res: RunResources) -> bool:
    """Sleep; True if the run stopped meanwhile (the retry is then not made)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if res.control.stopped:
            return True
        time.sleep(min(left, 0.25))
    return res.control.stopped
