"""What each process of tests/test_runstate.py does: importable, so spawned processes can run it.

Every function takes ``where``: a ``ResourceSpec`` (a separate process builds the run's control
from it, as a worker does: ``varflow.flows.resources.run_control``) or a ``RunControl`` (threads of one
process share it). They meet at a barrier (``start``: a folder and how many) so they contend
for real.
"""

from __future__ import annotations

import os
import pickle
import time
import uuid
from pathlib import Path

WAIT_S = 60  # the longest a worker waits for the others


def control(where, lease_s: float | None = None):
    from varflow.flows.resources import run_control

    from varflow.runtime.redisstate import RedisState, connect
    from varflow.runtime.resources import ResourceSpec, RunControl

    if not isinstance(where, ResourceSpec):
        return where
    if lease_s is None:
        return run_control(where, owner=False)
    state = RedisState(connect(where.shared_limits), where.run_id, where.policy.concurrency, lease_s=lease_s)
    return RunControl(where.run_id, where.policy.max_cost_usd, state=state)


def gather(start: tuple[str, int]) -> None:
    """Wait until all ``n`` workers have arrived at the barrier folder, then go together (a
    worker that is not there yet cannot be replaced by one that has finished, so each part
    really runs in its own process at the same time)."""
    folder, n = start
    Path(folder, uuid.uuid4().hex).touch()
    deadline = time.time() + WAIT_S
    while len(os.listdir(folder)) < n:
        if time.time() > deadline:
            raise TimeoutError(f"only {len(os.listdir(folder))} of {n} workers arrived")
        time.sleep(0.001)


def reserve_many(where, tries: int, estimate: float, start: tuple[str, int]) -> tuple[int, int]:
    """(calls this process booked, its pid)."""
    c = control(where)
    gather(start)
    return sum(bool(c.reserve(estimate)) for _ in range(tries)), os.getpid()


def hold_slots(where, calls: int, hold_s: float, start: tuple[str, int], log: str) -> int:
    """Make ``calls`` calls of ``hold_s`` in the run's slots, appending 'enter exit' lines to ``log``."""
    c = control(where)
    gather(start)
    for _ in range(calls):
        with c.call_slot():
            enter = time.time()
            time.sleep(hold_s)
            leave = time.time()
        with open(log, "a") as f:
            f.write(f"{enter!r} {leave!r}\n")
    return os.getpid()


def race_stop(where, outcome: str, message: str, start: tuple[str, int]) -> tuple:
    """(stopped before, this stop won, the outcome and message seen after, pid)."""
    c = control(where)
    before = c.stopped
    gather(start)
    won = c.stop(outcome, message)
    return before, won, c.stop_outcome, c.stop_message, os.getpid()


def hold_forever(where, ready: str, lease_s: float | None) -> None:
    """Take a call slot, say so in ``ready``, and keep it until killed."""
    c = control(where, lease_s)
    with c.call_slot():
        Path(ready).write_text(str(os.getpid()))
        time.sleep(600)


def acquire_times(url: str, scope: str, rpm: float | None, n: int, start: tuple[str, int]) -> list[tuple]:
    """(reserved start, time woken) of ``n`` acquisitions of a Redis rate limiter."""
    from varflow.runtime.redisstate import RedisRateLimiter, connect

    limiter = RedisRateLimiter(connect(url), scope, rpm)
    gather(start)
    out = []
    for _ in range(n):
        r = limiter.acquire()
        out.append((r.start, time.time()))
    return out


def attach_twice(pickled: bytes) -> tuple[bool, bool, bool, int]:
    """Unpickle the flow's resources twice, as two tasks bring them to a worker; book one call.

    Prefect's result-storage block is the one part left out (it is saved over the Prefect API)."""
    import varflow.flows.resources

    varflow.flows.resources.result_storage = lambda home, results_dir: None
    first, second = pickle.loads(pickled), pickle.loads(pickled)
    booked = first.control.reserve(0.25)
    return first is second, first.owner, booked, os.getpid()
