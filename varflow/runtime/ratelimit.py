"""A requests-per-minute limit shared by every thread and process that uses the same state file.

Why not Prefect's global concurrency / rate limits: they poll the server. Measured here (prefect
3.9.1, 2 cores, see docs/gemini.md): a rate limit of 20/s admitted calls at a fraction of that,
with seconds of jitter; a limiter that must not cost throughput cannot be a network round trip per
call.

How it works: GCRA (the "virtual scheduling" form of a token bucket) over one tiny state file
holding two numbers, read and rewritten under an exclusive ``fcntl.flock``:

* ``tat`` -- the theoretical arrival time of the next request. A caller reserves the slot
  ``start = max(now, tat - tolerance)`` and moves ``tat`` on by ``60 / rpm``; it then sleeps until
  ``start`` *outside* the lock. Every caller holds the lock for one read-modify-write (tens of
  microseconds), so many processes and threads share it without polling and are served in the
  order they asked.
* ``paused_until`` -- nobody starts before it. :meth:`RateLimiter.defer` pushes it forward when the
  API answers 429 with a ``RetryInfo.retryDelay``: every thread and process then holds back until
  the server said capacity is back, instead of each discovering the 429 on its own.

With the default burst of 1, starts are spaced at least ``60 / rpm`` apart, so any 60 s window
holds at most ``rpm`` starts (plus one at the window's closed edge) whatever the number of
processes. Times are wall-clock (``time.time()``), which all processes share; a clock step
backwards of more than an hour resets the state rather than blocking for that long.

``Limiter`` writes ``acquire`` once over ``reserve``/``defer``/``paused_until``; varflow/runtime/redisstate.py
has the same GCRA in Redis for machines that share no file system (``--shared-limits redis://``).

POSIX only (``fcntl``). Core module: no Prefect, no storage.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from varflow.errors import ConfigurationError

HORIZON_S = 3600.0  # a reservation further ahead than this is treated as a clock step
WAIT_POLL_S = 0.25  # a waiting caller looks at should_stop() and at new pauses this often


@dataclass(frozen=True)
class Reservation:
    start: float  # time.time() at which the caller may start
    waited_s: float  # how long acquire() slept (0 when it could start at once)


def state_path(directory: str | Path, scope: str) -> Path:
    """The state file for ``scope`` (e.g. ``gemini/gemini-2.5-flash-image``) under ``directory``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", scope).strip("_") or "default"
    return Path(directory) / f"{safe}.json"


class Limiter:
    """What every rate limiter offers: ``reserve``, ``defer`` and ``paused_until`` (in
    ``time.time()`` terms) from its state, and ``acquire`` written once over them. This module's
    ``RateLimiter`` keeps the state in a file; varflow/runtime/redisstate.py's ``RedisRateLimiter`` in Redis."""

    def __init__(self, rpm: float | None = None, *, burst: int = 1):
        if rpm is not None and rpm <= 0:
            raise ConfigurationError(f"rpm={rpm!r} must be a positive number of requests per minute, or None")
        if burst < 1:
            raise ConfigurationError(f"burst={burst!r} must be at least 1")
        self.rpm = rpm
        self.interval = 60.0 / rpm if rpm else 0.0
        self.tolerance = (burst - 1) * self.interval

    def reserve(self) -> float:
        """Reserve the next slot; returns the ``time.time()`` at which the caller may start."""
        raise NotImplementedError

    def defer(self, seconds: float) -> None:
        """Nobody starts for ``seconds`` from now (the API asked us to wait)."""
        raise NotImplementedError

    def paused_until(self) -> float:
        raise NotImplementedError

    def acquire(self, *, should_stop=None) -> Reservation:
        """Wait for a slot. ``should_stop()`` (optional) is polled while sleeping; if it turns
        true the wait ends early (the slot is forfeited)."""
        start = self.reserve()
        t0 = time.time()
        while True:
            left = start - time.time()
            if left <= 0:
                break
            if should_stop is not None and should_stop():
                break
            time.sleep(min(left, WAIT_POLL_S))
        # A pause set while we slept (another caller's 429) still applies to us.
        paused = self.paused_until()
        while paused > time.time() and not (should_stop is not None and should_stop()):
            time.sleep(min(paused - time.time(), WAIT_POLL_S))
            paused = self.paused_until()
        return Reservation(start=start, waited_s=max(0.0, time.time() - t0))


class RateLimiter(Limiter):
    """At most ``rpm`` starts per minute across every user of ``path``; ``rpm=None``: no limit,
    but :meth:`defer` pauses still apply (so 429s are honoured by everyone)."""

    def __init__(self, path: str | Path, rpm: float | None = None, *, burst: int = 1):
        super().__init__(rpm, burst=burst)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.Lock()  # flock is per open file; this only orders our threads

    def __repr__(self) -> str:
        return f"RateLimiter({str(self.path)!r}, rpm={self.rpm!r})"

    # -- state --------------------------------------------------------------------------------

    def _update(self, fn) -> float:
        """Run ``fn(state, now) -> result`` on the state under the file lock; returns result."""
        with self._local:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                raw = os.pread(fd, 4096, 0)
                try:
                    state = json.loads(raw) if raw else {}
                    if not isinstance(state, dict):
                        state = {}
                except ValueError:
                    state = {}
                now = time.time()
                for k in ("tat", "paused_until"):
                    v = state.get(k)
                    if not isinstance(v, (int, float)) or v > now + HORIZON_S:
                        state[k] = 0.0
                result = fn(state, now)
                data = json.dumps(state).encode()
                os.pwrite(fd, data.ljust(64), 0)
                os.ftruncate(fd, max(64, len(data)))
                return result
            finally:
                os.close(fd)  # releases the flock

    # -- use ----------------------------------------------------------------------------------

    def reserve(self) -> float:
        """Reserve the next slot; returns the ``time.time()`` at which the caller may start."""

        def take(state: dict, now: float) -> float:
            earliest = max(now, state["paused_until"])
            if not self.interval:
                return earliest
            tat = max(state["tat"], earliest)
            start = max(earliest, tat - self.tolerance)
            state["tat"] = tat + self.interval
            return start

        return self._update(take)

    def defer(self, seconds: float) -> None:
        """Nobody starts for ``seconds`` from now (the API asked us to wait)."""
        if not seconds or seconds <= 0:
            return
        seconds = min(float(seconds), HORIZON_S)

        def push(state: dict, now: float) -> float:
            state["paused_until"] = max(state["paused_until"], now + seconds)
            return state["paused_until"]

        self._update(push)

    def paused_until(self) -> float:
        return self._update(lambda state, now: state["paused_until"])


__all__ = ["HORIZON_S", "Limiter", "RateLimiter", "Reservation", "state_path"]
