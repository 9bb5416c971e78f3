"""Every rule of a retried generation call, in one object both retry paths use.

A call runs on one of two paths (varflow/processing/chunks.py says which): in a chunk of images,
``DirectGenerations`` (varflow/processing/direct.py) retries it in its own loop; as a stage task,
Prefect retries the ``generate`` task (tasks/generate.py). Both ask the run's ``RetryPolicy``
(``CallPolicy`` is one) the same questions, so a call is retried the same way on either path:

* whether: ``allows`` (a failure the backend calls retryable, a try left, the run not stopped;
  ``run_attempt`` raises ``RetryableGenerationError`` exactly when it says yes, and Prefect's
  retry condition only relays that);
* how long: ``wait`` (the backoff, doubling per retry, stretched by up to ``jitter`` times itself,
  never shortened; on the task path drawn per attempt by ``jittered_delays`` and given to Prefect
  with its own jitter off);
* a server's retry delay (a 429's or a 503's ``retryDelay``): ``server_wait``, the part of it
  longer than the backoff, waited by the attempt itself (a 429 with a shared limiter pauses every
  caller instead); the delay recorded is ``recorded_delay``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_RETRIES = 50  # a bound on the delay list, far above any sensible --retries (the form allows 20)


@dataclass(frozen=True)
class RetryPolicy:
    """``retries``: retries of a retryable failure (0 for a backend that is not remote).
    ``backoff_s``: the first retry's delay; doubles per retry. ``jitter``: up to this many times the
    delay is added at random, so calls that failed together do not retry together."""

    retries: int = 0
    backoff_s: float = 2.0
    jitter: float = 0.5

    def delays(self) -> list[float]:
        return [self.backoff_s * 2**r for r in range(min(self.retries, MAX_RETRIES))]

    def backoff(self, try_number: int) -> float:
        """The retry delay after try ``try_number`` (before jitter)."""
        delays = self.delays()
        return delays[min(try_number - 1, len(delays) - 1)] if delays else 0.0

    def allows(self, *, retryable: bool, try_number: int, stopped: bool) -> bool:
        """Whether try ``try_number``'s failure is tried again."""
        return retryable and try_number <= self.retries and not stopped

    def wait(self, try_number: int, *, rng=random) -> float:
        """Seconds between try ``try_number`` and the next: the backoff stretched by up to ``jitter``
        times itself (never shorter than the backoff, which ``server_wait`` counts on)."""
        base = self.backoff(try_number)
        return base * (1 + self.jitter * rng.random()) if self.jitter else base

    def jittered_delays(self, *, rng=random) -> list[float]:
        """One attempt's waits after each of its tries (Prefect's ``retry_delay_seconds``)."""
        return [self.wait(n, rng=rng) for n in range(1, len(self.delays()) + 1)]

    def server_wait(self, try_number: int, retry_after: float | None) -> float:
        """The part of a server's retry delay the next try would not wait anyway."""
        return max(0.0, (retry_after or 0.0) - self.backoff(try_number))

    def recorded_delay(self, try_number: int, retry_after: float | None) -> float:
        """The least delay before the next try (the attempt's row keeps it)."""
        return max(self.backoff(try_number), retry_after or 0.0)
