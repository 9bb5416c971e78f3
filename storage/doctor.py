"""``varflow doctor``: what is wrong with a data directory, and what repairing it does.

``diagnose`` only reads; ``repair`` acts on what ``diagnose`` found. Every problem names its
file and the action, so the report reads as a plan (storage/integrity.py explains quarantine).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from varflow.storage.integrity import (
    Problem,
    duckdb_file_problem,
    quarantine,
    set_aside_duckdb,
    stale_temp,
    undecodable_parts,
)
from varflow.storage.store import Store

from varflow.runtime.runlock import is_held, run_lock_path


def diagnose(home: str | Path) -> list[Problem]:
    """Every problem of the data directory at ``home`` (reads only)."""
    store = Store(home)
    problems = [Problem("unreadable_part", str(path), reason.splitlines()[0][:200],
                        f"move it to {store.home / 'quarantine'}/ and record it; the store goes on without its rows")
                for path, reason in undecodable_parts(store.tables_dir)]  # every page, not just the footer
    broken = duckdb_file_problem(store.duckdb_path)
    if broken is not None:
        problems.append(Problem("unreadable_duckdb", str(store.duckdb_path), broken.splitlines()[0][:200],
                                "move it to quarantine/ and rebuild it (it holds only views over the Parquet files)"))
    problems += [Problem("stale_temp", str(tmp), "a write a killed process never finished", "delete it")
                 for tmp in stale_temp(store.tables_dir)]
    problems += _dead_work(store)
    if not any(p.kind == "unreadable_part" for p in problems) and store.tables_dir.exists():
        problems += _dead_runs(store)
    return problems


def _dead_work(store: Store) -> list[Problem]:
    work = store.home / "work"
    if not work.exists():
        return []
    return [Problem("stale_work", str(d), "the working folder of a run that is no longer running", "delete it")
            for d in sorted(work.iterdir()) if d.is_dir() and not is_held(run_lock_path(store.home, d.name))]


def _dead_runs(store: Store) -> list[Problem]:
    problems = []
    for run in store.running_runs():
        if is_held(run_lock_path(store.home, run["run_id"])):
            continue
        execution = run.get("execution") or 1
        in_flight = store.query("SELECT count(*) AS n FROM attempts WHERE run_id = ? AND outcome = 'in_flight' "
                                "AND coalesce(execution, 1) = ?", [run["run_id"], execution])[0]["n"]
        detail = "recorded as running, but no process holds its lock (killed)"
        if in_flight:
            detail += f"; {in_flight} calls were in flight"
        if execution > 1:
            detail = f"execution {execution} " + detail
        problems.append(Problem("interrupted_run", run["run_id"], detail,
                                "close it as interrupted: drop its half-written images, mark in-flight calls "
                                "interrupted (their estimated cost kept), compact its parts", execution=execution))
    return problems


def repair(home: str | Path, problems: list[Problem]) -> list[str]:
    """Do what each problem's ``action`` says; returns one line per thing done."""
    store = Store(home)
    done = []
    for p in problems:
        path = Path(p.path)
        if p.kind == "unreadable_part":
            dest = quarantine(store.home, path, p.detail)
            done.append(f"moved {path} to {dest}" if dest else f"{path} was gone already")
        elif p.kind == "unreadable_duckdb":
            set_aside_duckdb(store.home, path, p.detail)
            done.append(f"set {path} aside; rebuilt it")
        elif p.kind == "stale_temp":
            path.unlink(missing_ok=True)
            done.append(f"deleted {path}")
        elif p.kind == "stale_work":
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"deleted {path}")
    store.initialize()  # rebuilds the DuckDB file and the schema files; quarantines anything left
    for p in problems:
        if p.kind == "interrupted_run":
            done += _close(store, p)
    if any(p.kind == "unreadable_part" for p in problems):  # runs could not be read before
        for extra in _dead_runs(store):
            done += _close(store, extra)
    return done


def _close(store: Store, p: Problem) -> list[str]:
    """Close the execution ``p`` names if it is still running and dead (a retried run's other
    executions, finished or alive, are left as they are)."""
    run = store.query("SELECT * FROM runs WHERE run_id = ? AND coalesce(execution, 1) = ? AND status = 'running'",
                      [p.path, p.execution or 1])
    if not run or is_held(run_lock_path(store.home, p.path)):
        return []
    store.recover_interrupted(run[0])
    return [f"closed run {p.path}" + (f" (execution {p.execution})" if (p.execution or 1) > 1 else "")
            + " as interrupted"]
