"""A store that survives damage: unreadable files are moved aside, never allowed to stop a run.

One truncated Parquet part used to make every query of the data directory fail, and a garbage
``varflow.duckdb`` stayed unreadable for good. Here:

* an unreadable part is *quarantined*: moved under ``<home>/quarantine/`` (same relative path),
  with one JSON line in ``quarantine/quarantine.jsonl`` saying what, why and when; the views then
  read everything else. Nothing is deleted: a person can inspect or restore the file.
* ``varflow.duckdb`` holds only views, so when it cannot be opened (anything but another
  process's lock) it is quarantined the same way and rebuilt.

``diagnose`` lists what is wrong with a data directory and what repairing would do (``varflow
doctor``); ``repair`` does it (``varflow doctor --repair``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from varflow.storage.sqltext import glob_literal

from varflow.runtime.records import utcnow

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
QUARANTINE_LOG = "quarantine.jsonl"
TEMP_GLOB = ".tmp-*.parquet-partial"
_FILE_IN_ERROR = re.compile(r"""['"]([^'"]+\.parquet)['"]""")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data directory: what, and what ``repair`` does about it."""

    kind: str  # unreadable_part | unreadable_duckdb | interrupted_run | in_flight_calls | stale_work | stale_temp
    path: str
    detail: str
    action: str
    execution: int | None = None  # interrupted_run: which execution of the run (a retried one has several)

    def line(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}; repair: {self.action}"


def unreadable_reason(path: Path) -> str | None:
    """Why a Parquet file cannot be read (its footer), or None when it can."""
    try:
        pq.read_metadata(path)
    except FileNotFoundError:
        return None  # gone meanwhile (vacuumed): nothing to quarantine
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for damaged files
        return f"{type(exc).__name__}: {exc}"
    return None


def unreadable_parts(tables_dir: Path) -> list[tuple[Path, str]]:
    """Every ``*.parquet`` under ``tables_dir`` whose footer cannot be read, with the reason."""
    found = []
    for path in sorted(tables_dir.glob("**/*.parquet")) if tables_dir.exists() else []:
        reason = unreadable_reason(path)
        if reason is not None:
            found.append((path, reason))
    return found


def undecodable_parts(tables_dir: Path) -> list[tuple[Path, str]]:
    """Every ``*.parquet`` under ``tables_dir`` that DuckDB cannot decode in full, with the reason.

    Reads every file: only for a query that failed without naming its file (a damaged page
    behind a sound footer gives e.g. "Variable-length int over 10 bytes")."""
    found = []
    con = duckdb.connect()
    try:
        for path in sorted(tables_dir.glob("**/*.parquet")) if tables_dir.exists() else []:
            try:
                con.execute("SELECT * FROM read_parquet(?)", [glob_literal(path)]).fetchall()
            except duckdb.Error as exc:
                found.append((path, f"{type(exc).__name__}: {exc}"))
    finally:
        con.close()
    return found


def is_query_error(error: Exception) -> bool:
    """A mistake in the SQL itself (not damage to a file): never a reason to quarantine."""
    return isinstance(error, (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException,
                              duckdb.ConversionException, duckdb.ConstraintException, duckdb.NotImplementedException,
                              duckdb.InterruptException))


def quarantine(home: Path, path: Path, reason: str) -> Path | None:
    """Move ``path`` under ``<home>/quarantine/`` and record it; returns where it went (None if it
    was gone already). Says so in one warning line naming the file, the reason and the fix."""
    home = Path(home)
    try:
        rel = path.resolve().relative_to(home.resolve())
    except ValueError:
        rel = Path(path.name)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    dest = home / QUARANTINE_DIR / stamp / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, dest)
    except FileNotFoundError:
        return None
    with open(home / QUARANTINE_DIR / QUARANTINE_LOG, "a") as f:
        f.write(json.dumps({"file": str(path), "moved_to": str(dest), "reason": reason,
                            "at": utcnow().isoformat()}) + "\n")
    log.warning("varflow: %s is unreadable (%s); moved it to %s and went on without its rows "
                "(a good copy put back at its old path brings them back; `varflow doctor` lists quarantined files)",
                path, reason.splitlines()[0][:200], dest)
    return dest


def quarantined(home: Path) -> list[dict]:
    """What was quarantined so far (from the log), oldest first."""
    log_path = Path(home) / QUARANTINE_DIR / QUARANTINE_LOG
    if not log_path.exists():
        return []
    rows = []
    for line in log_path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def file_named_in(error: Exception, tables_dir: Path) -> Path | None:
    """The store's Parquet file a DuckDB error names, if any (a damaged page the footer check missed)."""
    root = str(Path(tables_dir).resolve())
    for match in _FILE_IN_ERROR.findall(str(error)):
        if str(Path(match).resolve()).startswith(root + os.sep) and Path(match).exists():
            return Path(match)
    return None


def duckdb_file_problem(path: Path) -> str | None:
    """Why the DuckDB file cannot be opened, or None when it can (or another process holds it)."""
    if not path.exists():
        return None
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            return None  # busy, not broken: a notebook or a writer has it open
        return f"{type(exc).__name__}: {exc}"
    except duckdb.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def set_aside_duckdb(home: Path, path: Path, reason: str) -> None:
    """The DuckDB file holds only views: move a broken one aside (the caller rebuilds it)."""
    quarantine(home, path, reason)
    for side in (path.with_name(path.name + ".wal"), path.with_name(path.name + ".views")):
        side.unlink(missing_ok=True)


def stale_temp(tables_dir: Path, *, older_than_s: float = 3600) -> list[Path]:
    out = []
    for tmp in tables_dir.glob(f"**/{TEMP_GLOB}") if tables_dir.exists() else []:
        try:
            if time.time() - tmp.stat().st_mtime > older_than_s:
                out.append(tmp)
        except FileNotFoundError:
            continue
    return out

