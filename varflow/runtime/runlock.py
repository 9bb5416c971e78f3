"""A lock file per run, held by the running process: how a later run tells a dead run from a live one.

The operating system releases an ``flock`` when its process dies, however it dies (SIGKILL
included), so "the lock can be taken" means "nobody is running that run any more".
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def run_lock_path(home: str | Path, run_id: str) -> Path:
    """Where a run's lock lives in a data directory."""
    return Path(home) / "locks" / f"run-{run_id}.lock"


class RunLock:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RuntimeError(f"run lock {self.path} is held by another live process") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_held(path: str | Path) -> bool:
    """True while a live process holds the lock at ``path``."""
    path = Path(path)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
