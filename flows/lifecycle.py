"""A run's end when its flow does not reach ``close``: SIGTERM, a crash, a cancel from the UI, a
killed process found by the next run.

Each closes the run's ``runs`` row (``interrupted``, ``crashed``, ``cancelled``), drops its
half-written images, marks its in-flight calls and frees its claims, so nothing is left
``running``. Only one process closes a run: it holds the run's lock while it does (two processes
recovering the same killed run raced: one crashed on a part the other had moved), and a process
that cannot take the lock leaves the run to the one that holds it.
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from varflow.storage import Store

from varflow.kinds import RunStatus
from varflow.runtime.claims import free_claims_of
from varflow.runtime.runlock import RunLock, is_held, run_lock_path

log = logging.getLogger(__name__)

LOCK_WAIT_S = 10.0  # how long a hook waits for the run's own process to let go of its lock
LOCK_POLL_S = 0.2


def reserve_path(home: Path, run_id: str) -> Path:
    return Path(home) / "locks" / f"space-{run_id}"


class SpaceReserve:
    """A file of ``size`` bytes written as the run starts and deleted when the disk fills, so the
    run's last rows (its errors, its ``runs`` row) still land: a full disk once ended a run with a
    traceback while it recorded the error, leaving it ``running``."""

    SIZE = 512 * 1024  # the run's closing rows are a few Parquet parts of a few KiB each

    def __init__(self, path: Path, size: int = SIZE):
        self.path, self.size = Path(path), size

    def make(self) -> SpaceReserve:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "wb") as f:
                f.truncate(0)
                f.write(b"\0" * self.size)  # written, not sparse: the blocks are really taken
        except OSError as exc:
            self.release()
            log.warning("no room for the run's %d KiB reserve at %s (%s)", self.size // 1024, self.path, exc)
        return self

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def close_run(store: Store, run_id: str, *, status: str = RunStatus.INTERRUPTED, message: str | None = None,
              wait_s: float = 0.0, before: int | None = None, held: RunLock | None = None) -> int | None:
    """Close ``run_id``'s executions still ``running`` if no live process holds it (``before``:
    only executions before that one); how many half-written image parts were removed, or None
    when none was closed here (finished, alive, or being closed by another process). ``held``:
    the run's lock, already taken by the caller (a retry closing its killed predecessors)."""
    lock = held or _take_lock(store, run_id, wait_s)
    if lock is None:
        return None
    try:
        rows = store.query("SELECT * FROM runs WHERE run_id = ? AND status = 'running' "
                           "AND coalesce(execution, 1) < coalesce(CAST(? AS INTEGER), 2147483647) "
                           "ORDER BY coalesce(execution, 1)", [run_id, before])
        removed = (sum(store.recover_interrupted(row, status=status, message=message) for row in rows)
                   if rows else None)
        if held is not None:  # the caller is this run's live process: its claims and working files are its own
            return removed
        free_claims_of(store.home / "claims", run_id)
        shutil.rmtree(store.home / "work" / run_id, ignore_errors=True)
        reserve_path(store.home, run_id).unlink(missing_ok=True)
        return removed
    finally:
        if held is None:
            lock.release()


def _take_lock(store: Store, run_id: str, wait_s: float) -> RunLock | None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return RunLock(run_lock_path(store.home, run_id)).acquire()
        except RuntimeError:  # its process is alive, or another process is closing it
            if time.monotonic() >= deadline:
                return None
            time.sleep(LOCK_POLL_S)


def recover_interrupted_runs(store: Store, logger) -> None:
    """Close every run left ``running`` by a dead process; remove killed runs' working files."""
    for run in store.running_runs():
        if not is_held(run_lock_path(store.home, run["run_id"])):
            removed = close_run(store, run["run_id"])
            if removed is not None:
                logger.info("run %s was interrupted; closed it (%d half-written image parts removed)",
                            run["run_id"], removed)
    work = store.home / "work"
    for folder in sorted(work.iterdir()) if work.exists() else []:  # a killed run's working files
        if folder.is_dir() and not is_held(run_lock_path(store.home, folder.name)):
            shutil.rmtree(folder, ignore_errors=True)


def _ended(status: str):
    """A Prefect state-change hook that closes the flow run's varflow run as ``status``."""
    def hook(flow, flow_run, state) -> None:
        from varflow.flows.parameters import run_parameters
        from varflow.flows.resources import data_home

        try:
            store = Store(data_home(run_parameters(dict(flow_run.parameters or {}))))
        except Exception as exc:  # noqa: BLE001 - parameters that never made a run have no rows
            log.warning("flow run %s ended %s; no varflow run to close (%s)", flow_run.id, state.name, exc)
            return
        ended = status
        if status == RunStatus.CRASHED and "termination signal" in (state.message or ""):
            ended = RunStatus.INTERRUPTED  # SIGTERM (systemd, Kubernetes, a worker stopping it)
        message = (f"{ended}: {state.message or state.name}; the images it finished are kept, the next run "
                   "redoes the others")
        removed = close_run(store, str(flow_run.id), status=ended, message=message, wait_s=LOCK_WAIT_S)
        if removed is not None:
            log.warning("varflow run %s closed as %s (%d half-written image parts removed)", flow_run.id, ended,
                        removed)
    hook.__name__ = f"close_run_as_{status}"
    return hook


on_cancelled = _ended(RunStatus.CANCELLED)
on_crashed = _ended(RunStatus.CRASHED)
on_failed = _ended(RunStatus.FAILED)  # a run that raised (not one that returned Failed: its row is closed already)


@contextmanager
def termination_kept() -> Iterator[None]:
    """Keep a SIGTERM a SIGTERM while the flow's body runs.

    Prefect's SIGTERM handler raises ``TerminationSignal`` wherever the main thread is; inside a
    DuckDB query DuckDB turns it into ``RuntimeError('Query interrupted')`` (duckdb 2.0.1), so the
    run ended Failed, exit 1, its row left ``running``. That exception becomes a
    ``TerminationSignal`` again, and Prefect decides as it does for its own: Cancelled when its
    runner asked for a cancel, else Crashed (exit 143; the hooks close the row). The handler itself
    is left alone: Prefect's runner acknowledges a cancel only while its own handler is installed.
    """
    from prefect.exceptions import TerminationSignal

    try:
        yield
    except Exception as exc:
        if _interrupted_query(exc):
            raise TerminationSignal(signal=signal.SIGTERM) from exc
        raise


def _interrupted_query(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it came from) is DuckDB's answer to a signal handler's exception."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, RuntimeError) and str(exc).strip() == "Query interrupted":
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
