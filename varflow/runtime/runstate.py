"""Where a run's shared numbers live: why it stopped, its spend, its call count, its call slots.

``RunControl`` (varflow/runtime/resources.py) keeps the rules and the API the calls use; a ``RunState``
keeps the numbers, in one of three places chosen by ``ResourceSpec.shared_limits``:

* ``MemoryState`` -- this process (the threads runner): a lock, a dict and a semaphore.
* ``FileState`` -- a directory of the data directory (``shared_dir``): a small JSON ledger
  read, changed and rewritten in place under an exclusive POSIX lock on it, and one lock
  file per call slot (a slot is a non-blocking exclusive lock on a free slot file, polled every
  ``SLOT_POLL_S``). The OS drops a dead process's locks, so its slots come back at once. POSIX
  (``fcntl``) locks are also honoured by NFSv4, so machines sharing the data directory share
  the state too. POSIX locks belong to the *process*, not the thread or the open file: a
  process-wide guard per directory orders this process's threads and remembers which slots it
  holds, so two threads never take the same slot and no close drops another thread's lock.
* ``RedisState`` -- a Redis (varflow/runtime/redisstate.py), for machines that share no file system.

The rules (first stop wins; a call is booked only if spent + booked + its estimate stays within
the cap; settling swaps the estimate for the actual cost) are written once here for the first
two, and once in Lua for Redis. Core module: no Prefect, no storage.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from varflow.errors import StoreError

SLOT_POLL_S = 0.05  # how often a caller waiting for a shared call slot looks again
CAP_TOLERANCE_USD = 1e-12  # float sums of estimates may overshoot an exactly reachable cap by this
SHARED_DIR = "shared"  # under the data directory: one folder of shared state per run


class Ledger(NamedTuple):
    """A snapshot of a run's shared numbers."""

    stop_outcome: str | None = None
    stop_message: str | None = None
    spent: float = 0.0
    booked: float = 0.0
    calls: int = 0


class RunState(Protocol):
    """The numbers behind ``RunControl``; each method is atomic across everyone sharing them."""

    slots: int | None  # call slots (None: unbounded)

    def ledger(self) -> Ledger: ...

    def stop(self, outcome: str, message: str) -> bool: ...

    def reserve(self, estimate: float, cap: float | None) -> bool: ...

    def settle(self, estimate: float, actual: float) -> None: ...

    def take_slot(self, timeout: float | None) -> object | None: ...

    def give_slot(self, token: object) -> None: ...

    def reset(self) -> None: ...

    def close(self, discard: bool) -> None: ...


def shared_dir(home: str | Path, run_id: str) -> Path:
    """The folder of ``run_id``'s file state: every process (and machine) derives the same one."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_") or "run"
    return Path(home) / SHARED_DIR / safe


# -- the rules, on a plain dict (MemoryState, FileState) ------------------------------------------

def _fresh() -> dict:
    return Ledger()._asdict()


def _stop(d: dict, outcome: str, message: str) -> tuple[bool, bool]:
    if d["stop_outcome"] is not None:
        return False, False
    d["stop_outcome"], d["stop_message"] = outcome, message
    return True, True


def _reserve(d: dict, estimate: float, cap: float | None) -> tuple[bool, bool]:
    if cap is not None and d["spent"] + d["booked"] + estimate > cap + CAP_TOLERANCE_USD:
        return False, False
    d["booked"] += estimate
    d["calls"] += 1
    return True, True


def _settle(d: dict, estimate: float, actual: float) -> tuple[None, bool]:
    d["booked"] = max(0.0, d["booked"] - estimate)
    d["spent"] += actual
    return None, True


def _forget(d: dict) -> tuple[None, bool]:
    changed = d != _fresh()
    d.clear()
    d.update(_fresh())
    return None, changed


class _DictState:
    """The rules over ``_update(fn)``, which runs ``fn(ledger dict) -> (result, changed)`` atomically."""

    slots: int | None = None

    def _update(self, fn: Callable[[dict], tuple]):
        raise NotImplementedError

    def ledger(self) -> Ledger:
        return Ledger(**self._update(lambda d: (dict(d), False)))

    def stop(self, outcome: str, message: str) -> bool:
        return self._update(lambda d: _stop(d, outcome, message))

    def reserve(self, estimate: float, cap: float | None) -> bool:
        return self._update(lambda d: _reserve(d, estimate, cap))

    def settle(self, estimate: float, actual: float) -> None:
        self._update(lambda d: _settle(d, estimate, actual))


class MemoryState(_DictState):
    """This process's threads share it (the threads runner)."""

    def __init__(self, slots: int | None = None):
        self.slots = slots or None
        self._lock = threading.Lock()
        self._data = _fresh()
        self._sem = threading.BoundedSemaphore(slots) if slots else None

    def _update(self, fn):
        with self._lock:
            return fn(self._data)[0]

    def take_slot(self, timeout: float | None) -> object | None:
        return True if self._sem.acquire(timeout=timeout) else None

    def give_slot(self, token: object) -> None:
        self._sem.release()

    def reset(self) -> None:
        with self._lock:
            self._data = _fresh()

    def close(self, discard: bool) -> None:
        pass


@dataclass
class _Guard:
    """This process's hold on one state directory (POSIX locks are per process, see the docstring)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    held: dict[int, int] = field(default_factory=dict)  # slot index -> the fd holding its lock


_GUARDS: dict[str, _Guard] = {}
_GUARDS_LOCK = threading.Lock()


def _guard(directory: Path) -> _Guard:
    with _GUARDS_LOCK:
        return _GUARDS.setdefault(str(directory.resolve()), _Guard())


class FileState(_DictState):
    """A run's state in ``directory``: every process on every machine that sees it shares it."""

    LEDGER = "ledger.json"

    def __init__(self, directory: str | Path, slots: int | None = None, *, poll_s: float = SLOT_POLL_S):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.slots = slots or None
        self.poll_s = poll_s
        self._guard = _guard(self.dir)

    def __repr__(self) -> str:
        return f"FileState({str(self.dir)!r}, slots={self.slots!r})"

    def _update(self, fn):
        """Read, change and write the ledger in place, in the file that is locked: taking a POSIX
        lock makes an NFS client drop its cached pages of that file, so every machine reads the
        last write (a renamed-in copy could be read through a stale cached name)."""
        with self._guard.lock:
            fd = os.open(self.dir / self.LEDGER, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
                raw = os.pread(fd, max(os.fstat(fd).st_size, 1), 0)
                data = self._parse(raw)
                result, changed = fn(data)
                if changed:
                    new = json.dumps(data).encode()
                    # One write; padded with spaces (valid JSON) so a process killed before the
                    # truncate leaves no tail of the longer old ledger.
                    os.pwrite(fd, new.ljust(len(raw)), 0)
                    os.ftruncate(fd, len(new))
                return result
            finally:
                os.close(fd)  # drops the lock

    def _parse(self, raw: bytes) -> dict:
        if not raw.strip():
            return _fresh()
        try:
            data = json.loads(raw)
            return {**_fresh(), **{k: data[k] for k in Ledger._fields if k in data}}
        except (ValueError, TypeError, KeyError):
            raise StoreError(f"the run's shared ledger {self.dir / self.LEDGER} is damaged, so its spend is "
                             f"unknown: stop the run and remove {self.dir}") from None

    def take_slot(self, timeout: float | None) -> object | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            index = self._try_slot()
            if index is not None:
                return index
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_s)

    def _try_slot(self) -> int | None:
        with self._guard.lock:
            for index in range(self.slots):
                if index in self._guard.held:
                    continue  # one of our threads has it (POSIX would let us lock it again)
                fd = os.open(self.dir / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # another process holds it
                    os.close(fd)
                    continue
                self._guard.held[index] = fd
                return index
        return None

    def give_slot(self, token: object) -> None:
        with self._guard.lock:
            os.close(self._guard.held.pop(token))  # drops the lock

    def reset(self) -> None:
        self._update(_forget)

    def close(self, discard: bool) -> None:
        if discard:
            shutil.rmtree(self.dir, ignore_errors=True)


__all__ = ["FileState", "Ledger", "MemoryState", "RunState", "SLOT_POLL_S", "shared_dir"]
