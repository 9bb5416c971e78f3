"""Parquet is the record, DuckDB is the SQL lens.

Layout under the data directory (``VARFLOW_HOME``)::

    varflow.duckdb                                  views over the Parquet files (no data)
    tables/<table>/_schema.parquet                  zero rows: the table's columns and types
    tables/<table>/run-<run_id>/parts/<key>.parquet written as each image finishes
    tables/<table>/run-<run_id>/compacted.parquet   all parts of a finished run, in one file
    superseded/<table>/run-<run_id>/                 its parts, moved there at compaction, deleted later

Every file is written to a temp name and renamed, so a reader never sees half a file and a
killed run loses at most the images in flight. A part's name is derived from the row's stable
id, so writing the same result twice replaces the file instead of adding rows. The views drop
the parts of any run that has a compacted file, so a run is never counted twice while its parts
wait to be deleted. Nothing holds the DuckDB file open during a run: a notebook can open it (or
``Store.lens()``) and query while a flow writes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from varflow.storage.integrity import (
    duckdb_file_problem,
    set_aside_duckdb,
)
from varflow.storage.reader import StoreReader
from varflow.storage.recovery import StoreRecovery
from varflow.storage.schema import SCHEMAS, TABLES
from varflow.storage.sqltext import sql_literal
from varflow.storage.writer import (
    COMPACT_GROUP,
    PARTS_GRACE_SECONDS,
    SUPERSEDED_DIR,
    StoreWriter,
    _write_atomic,
    _write_parquet_atomic,
)

log = logging.getLogger(__name__)
DUCKDB_FILE = "varflow.duckdb"
# The DuckDB file holds only views: written in a storage format older CLIs read too (the `duckdb`
# command on PyPI, duckdb-cli 1.5, cannot open a file in duckdb 2.0's default format).
DUCKDB_FILE_FORMAT = "v1.4.0"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _safe(name: str) -> str:
    return _SAFE.sub("_", name)[:120]


def _write_views(path: Path, script: str, home: Path) -> None:
    """Run ``script`` (the views) in the DuckDB file ``path``, its relative paths resolved from the
    data directory ``home`` (DuckDB binds a view as it creates it). DuckDB takes a ``?`` in a database
    path for the start of options (the WAL of ``/d/a?b/x.duckdb`` goes to ``/d/a.wal?b/...`` and
    the write fails, symbolic links resolved or not: duckdb 2.0.1), so a file in such a folder is
    built in a temporary folder and copied in; opening it read-only works."""
    if "?" not in str(path):
        con = duckdb.connect(str(path), config={"storage_compatibility_version": DUCKDB_FILE_FORMAT})
        try:
            con.execute(f"SET file_search_path = {sql_literal(home.as_posix())}")
            con.execute(script)
        finally:
            con.close()
        return
    with tempfile.TemporaryDirectory(prefix="varflow-views-") as tmp:
        _write_views(Path(tmp) / path.name, script, home)
        _write_atomic(lambda dest: shutil.copyfile(Path(tmp) / path.name, dest), path)


class Store(StoreWriter, StoreReader, StoreRecovery):
    """varflow's data directory: one instance per process, cheap to create from a path.

    A thin front: where things are and the set-up here; writing in ``StoreWriter`` (storage/writer.py),
    reading in ``StoreReader`` (storage/reader.py), recovery in ``StoreRecovery`` (storage/recovery.py).
    """

    def __init__(self, home: str | Path, *, execution: int = 1):
        self.home = Path(home).expanduser().resolve()
        # Which execution of a run this store writes for: a retried flow run (same run id) writes
        # its rows in a folder of its own, so each execution's rows and compacted file stay.
        self.execution = execution
        self.tables_dir = self.home / "tables"
        self.duckdb_path = self.home / DUCKDB_FILE

    # -- set-up -----------------------------------------------------------------------------
    def initialize(self) -> Store:
        """Create the folders, the schema files and the DuckDB views (idempotent).

        Unreadable Parquet files are quarantined first (storage/integrity.py) and a DuckDB file
        that cannot be opened is set aside and rebuilt: damage never stops a run.
        """
        self.quarantine_unreadable()
        for table in TABLES:
            d = self.tables_dir / table
            d.mkdir(parents=True, exist_ok=True)
            marker = d / "_schema.parquet"
            existing = pq.read_schema(marker) if marker.exists() else None
            if existing is None or not existing.equals(SCHEMAS[table]):
                _write_parquet_atomic(SCHEMAS[table].empty_table(), marker)
        # Open the file read-write only when its views must change: a reader (a notebook) that
        # connects while a writer holds the file open would get "Could not set lock".
        broken = duckdb_file_problem(self.duckdb_path)
        if broken is not None:
            set_aside_duckdb(self.home, self.duckdb_path, broken)
        marker = self.home / (DUCKDB_FILE + ".views")
        script = self._views_script(relative=True)  # the file answers wherever the data directory lies
        digest = hashlib.sha256(script.encode()).hexdigest()
        if self.duckdb_path.exists() and marker.exists() and marker.read_text() == digest:
            return self
        try:
            _write_views(self.duckdb_path, script, self.home)
        except duckdb.IOException as exc:
            log.warning("could not open %s to refresh its views (%s); using the existing ones", self.duckdb_path, exc)
            return self
        marker.write_text(digest)
        return self

    def _run_dir(self, table: str, run_id: str, execution: int | None = None) -> Path:
        """``run-<id>`` for a run's first execution (older data directories hold only those),
        ``run-<id>.x<n>`` for its n-th (a retried flow run)."""
        n = execution or self.execution
        return self.tables_dir / table / (f"run-{_safe(run_id)}" + (f".x{n}" if n > 1 else ""))

    # -- where a record goes ------------------------------------------------------------------
    def _part_path(self, table: str, run_id: str, key: str, execution: int | None = None) -> Path:
        return self._run_dir(table, run_id, execution) / "parts" / f"{_safe(key)}.parquet"


__all__ = ["COMPACT_GROUP", "DUCKDB_FILE", "PARTS_GRACE_SECONDS", "SUPERSEDED_DIR", "Store"]
