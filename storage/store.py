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

import ctypes
import errno
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from varflow.storage.integrity import (
    duckdb_file_problem,
    file_named_in,
    is_query_error,
    quarantine,
    set_aside_duckdb,
    undecodable_parts,
    unreadable_parts,
    unreadable_reason,
)
from varflow.storage.schema import EXECUTION, RECORD_TYPES, SCHEMA_VERSION, SCHEMAS, TABLES, shaped_view, to_arrow
from varflow.storage.sqltext import glob_literal, sql_literal

from varflow.processing.estimate import AttemptHistory
from varflow.runtime.calls import CANCELLED, IN_FLIGHT, INTERRUPTED
from varflow.runtime.records import (
    AttemptRecord,
    BatchJobRecord,
    BatchRequestRecord,
    ImageRecord,
    QualityLevelChangeRecord,
    RunRecord,
    VariationRecord,
)
from varflow.safety.diskwrite import writing
from varflow.safety.filemodes import follow_umask
from varflow.safety.redaction import redact_row

log = logging.getLogger(__name__)

DUCKDB_FILE = "varflow.duckdb"
PARTS_GRACE_SECONDS = 600  # parts of a compacted run are deleted after this (readers may hold them)
# The DuckDB file holds only views: written in a storage format older CLIs read too (the `duckdb`
# command on PyPI, duckdb-cli 1.5, cannot open a file in duckdb 2.0's default format).
DUCKDB_FILE_FORMAT = "v1.4.0"
COMPACT_GROUP = 1000  # parts merged at a time when a run is compacted
SUPERSEDED_DIR = "superseded"  # where a compacted run's parts wait for deletion, outside the views' glob
MAX_QUARANTINE_PER_QUERY = 20  # damaged files one query may set aside before it gives up
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _safe(name: str) -> str:
    return _SAFE.sub("_", name)[:120]


def _write_parquet_atomic(table, path: Path, *, durable: bool = False) -> None:
    """Write ``table`` to ``path`` under a temp name, then rename. ``durable``: on disk (fsync)
    before this returns, so a record written before an action survives a power cut after it."""
    _write_atomic(lambda tmp: pq.write_table(table, tmp, compression="zstd"), path, durable=durable)


def _merge_parts_atomic(parts: list[Path], schema, path: Path) -> None:
    """Merge ``parts`` into one file at ``path``, ``COMPACT_GROUP`` parts at a time: read all at
    once, 10,000 one-row parts held ~1.7 GiB (each tiny table's buffers), which set the run's peak
    memory (bench/scale_out.py)."""
    def write(tmp: str) -> None:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for i in range(0, len(parts), COMPACT_GROUP):
                writer.write_table(pq.ParquetDataset([str(p) for p in parts[i:i + COMPACT_GROUP]],
                                                     schema=schema).read())

    _write_atomic(write, path)


def _write_atomic(write, path: Path, *, durable: bool = False) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path`` (fsync'd first when ``durable``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name must not match the views' ``*.parquet`` glob, or a reader could open it half-written.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet-partial", dir=path.parent)
    follow_umask(fd)  # mkstemp makes 0600, which a reader under another account cannot open
    os.close(fd)
    try:
        with writing(path):  # a full disk's error names the part, not the temp file
            write(tmp)
            if durable:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        if durable:
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_RENAME_EXCHANGE = 2  # renameat2's flag (linux/fs.h)
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` (two folders) in one step: Linux's ``renameat2`` with
    ``RENAME_EXCHANGE``; a reader sees one or the other at ``b``, never neither nor both. False
    where the system or the file system cannot (then nothing moved)."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


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


class Store:
    """varflow's data directory: one instance per process, cheap to create from a path."""

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

    def quarantine_unreadable(self) -> int:
        """Move every Parquet file whose footer cannot be read to ``quarantine/``; how many."""
        damaged = unreadable_parts(self.tables_dir)
        for path, reason in damaged:
            quarantine(self.home, path, reason)
        return len(damaged)

    def view_sql(self, table: str, *, relative: bool = False) -> str:
        """The view of ``table``: every Parquet file under its folder, without the parts of a run
        that has a compacted file. The folder is a quoted literal with its glob characters escaped
        (storage/sqltext.py); ``relative``: ``tables/<table>``, resolved by DuckDB from the working
        directory (or ``file_search_path``), so the file's views answer wherever the data directory
        lies. A file is told a part or a compacted file by its last three path components only
        (``run-<id>/parts/<key>.parquet``), so a data directory may be named with quotes, brackets,
        ``*``, spaces or ``/run-x/parts/``, and the path DuckDB reports may be relative or absolute."""
        base = Path("tables", table) if relative else self.tables_dir / table
        pattern = glob_literal(base)
        return f"""
            SELECT * EXCLUDE (filename)
            FROM read_parquet({sql_literal(pattern + '/**/*.parquet')}, union_by_name = true, filename = true)
            WHERE NOT regexp_matches(filename, '/run-[^/]+/parts/[^/]+$')
               OR regexp_extract(filename, '/run-([^/]+)/parts/[^/]+$', 1) NOT IN (
                    SELECT regexp_extract(file, '/run-([^/]+)/compacted[.]parquet$', 1)
                    FROM glob({sql_literal(pattern + '/run-*/compacted.parquet')}))
        """

    def _views_script(self, *, relative: bool = False) -> str:
        """The views, macros and meta row; ``relative``: the file's (paths relative to the data
        directory, ``home`` is ``.``), else a lens's (this data directory's absolute paths)."""
        statements = [f"CREATE OR REPLACE VIEW {table} AS {shaped_view(table, self.view_sql(table, relative=relative))}"
                      for table in TABLES]
        home = "." if relative else self.home.as_posix()
        statements.append(f"CREATE OR REPLACE VIEW varflow_meta AS SELECT {int(SCHEMA_VERSION)} AS schema_version, "
                          f"{sql_literal(home)} AS home")
        # Hamming distance between two 16-hex-digit perceptual hashes.
        statements.append("CREATE OR REPLACE MACRO hamming(a, b) AS "
                          "bit_count(xor(('0x' || a)::UBIGINT, ('0x' || b)::UBIGINT))")
        return ";\n".join(statements) + ";"

    # -- reading ----------------------------------------------------------------------------
    def lens(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the same views: never blocked by a file lock. No
        progress bar: it would print over a run's log and a command's output."""
        con = duckdb.connect()
        try:
            con.execute("SET enable_progress_bar = false")
        except duckdb.Error:  # in Jupyter without ipywidgets DuckDB refuses to touch the setting
            pass
        con.execute(self._views_script())
        return con

    def _read(self, read):
        """``read(connection)``, quarantining any damaged file a query trips over and retrying
        without it (a footer can be sound and a page broken)."""
        for _ in range(MAX_QUARANTINE_PER_QUERY):
            con = self.lens()
            try:
                return read(con)
            except duckdb.Error as exc:
                if is_query_error(exc):
                    raise
                named = file_named_in(exc, self.tables_dir)
                damaged = [(named, f"{type(exc).__name__}: {exc}")] if named else undecodable_parts(self.tables_dir)
                if not damaged:
                    raise
                for path, reason in damaged:
                    quarantine(self.home, path, reason)
            finally:
                con.close()
        con = self.lens()
        try:
            return read(con)
        finally:
            con.close()

    def connect(self, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
        """The DuckDB file itself, as a notebook or the duckdb CLI would open it; its views' relative
        paths resolved from the data directory (``file_search_path``), whatever the working directory."""
        if not self.duckdb_path.exists():
            self.initialize()
        con = duckdb.connect(str(self.duckdb_path), read_only=read_only)
        con.execute(f"SET file_search_path = {sql_literal(self.home.as_posix())}")
        return con

    def query(self, sql: str, params: Iterable | None = None) -> list[dict]:
        def read(con):
            cur = con.execute(sql, list(params) if params is not None else None)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

        return self._read(read)

    # -- state that outlives a run --------------------------------------------------------------
    def finished_jobs(self) -> dict[str, str]:
        """job_key -> run_id of every image that finished ``ok`` (what an incremental run skips)."""
        rows = self.query("SELECT job_key, any_value(run_id) AS run_id FROM images "
                          "WHERE status = 'ok' AND job_key IS NOT NULL GROUP BY job_key")
        return {r["job_key"]: r["run_id"] for r in rows}

    def finished_paths(self, folder: str | Path) -> set[str]:
        """Paths under ``folder`` of images some run finished ``ok`` (the preflight's space check
        counts the others: a nightly run over a large folder has little new)."""
        prefix = str(Path(folder).resolve()).rstrip("/") + "/"
        rows = self.query("SELECT DISTINCT path FROM images WHERE status = 'ok' AND job_key IS NOT NULL "
                          "AND starts_with(path, ?)", [prefix])
        return {r["path"] for r in rows}

    def output_dirs_inside(self, folder: str | Path) -> list[str]:
        """The output folders earlier runs wrote to strictly inside ``folder``: not sources for a
        run over ``folder`` (one with another output folder would take their files as new)."""
        prefix = str(Path(folder).resolve()).rstrip("/") + "/"
        rows = self.query("SELECT DISTINCT output_dir FROM runs WHERE starts_with(output_dir, ?)", [prefix])
        return [r["output_dir"] for r in rows]

    def quality_state(self, scope: str, *, window: int) -> tuple[str | None, list[float]]:
        """The adaptive level last set for ``scope`` and the success rates that count toward it.

        Derived from what runs recorded (no separate state to drift): the level is the target of
        the scope's latest change; the history is the latest ``window`` success rates of images
        processed at that level since that change (varflow/quality/adaptive.py explains why).
        """
        backend, _, model = scope.partition("/")
        last = self.query("SELECT to_level, changed_at FROM quality_level_changes WHERE scope = ? "
                          "ORDER BY changed_at DESC LIMIT 1", [scope])
        level, since = (last[0]["to_level"], last[0]["changed_at"]) if last else (None, None)
        rates = self.query(
            "SELECT i.success_rate FROM images i JOIN runs r USING (run_id) "
            "WHERE r.backend = ? AND r.model = ? AND i.status = 'ok' AND i.success_rate IS NOT NULL "
            "  AND i.quality_level = ? AND (CAST(? AS TIMESTAMPTZ) IS NULL OR i.finished_at > ?) "
            "ORDER BY i.finished_at DESC LIMIT ?", [backend, model, level or "high", since, since, window])
        return level, [r["success_rate"] for r in reversed(rates)]

    def accepted_variations(self, image_ids: Iterable[str], *, except_run: str | None = None) -> dict[str, list[dict]]:
        """Every variation ever accepted for these source images, by image: what a new one must
        not duplicate. ``except_run``: leave out that run's files (a running run's own parts grow
        by one per image; reading them for every chunk would cost more as the run goes on)."""
        ids = list(dict.fromkeys(image_ids))
        files = self._table_files("variations", except_run=except_run)
        if not ids or not files:
            return {i: [] for i in ids}

        def read(con):
            cur = con.execute(
                "SELECT DISTINCT image_id, variation_id, ahash, phash, dhash, output_path "
                "FROM read_parquet(?, union_by_name = true) "
                "WHERE image_id IN (SELECT unnest(?)) AND accepted AND output_path IS NOT NULL "
                "ORDER BY image_id, output_path", [[glob_literal(f) for f in files], ids])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

        out: dict[str, list[dict]] = {i: [] for i in ids}
        for row in self._read(read):
            out[row.pop("image_id")].append(row)
        return out

    def _run_dir(self, table: str, run_id: str, execution: int | None = None) -> Path:
        """``run-<id>`` for a run's first execution (older data directories hold only those),
        ``run-<id>.x<n>`` for its n-th (a retried flow run)."""
        n = execution or self.execution
        return self.tables_dir / table / (f"run-{_safe(run_id)}" + (f".x{n}" if n > 1 else ""))

    def _table_files(self, table: str, *, except_run: str | None = None) -> list[str]:
        """The files the lens reads for ``table``: a run's compacted file, or its parts until it has one."""
        skip = self._run_dir(table, except_run).name if except_run else None
        files: list[str] = []
        base = self.tables_dir / table
        for run_dir in sorted(base.glob("run-*")) if base.exists() else []:
            if run_dir.name == skip:
                continue
            compacted = run_dir / "compacted.parquet"
            files += [str(compacted)] if compacted.exists() else sorted(str(p) for p in run_dir.glob("parts/*.parquet"))
        return files

    def accepted_by_source(self, output_dir: str | Path) -> list[dict]:
        """The accepted variations written under ``output_dir``, one row each with its source's
        path, variation type and overall score, by source then file (the demo's contact sheet)."""
        prefix = str(Path(output_dir).resolve()).rstrip("/") + "/"
        return self.query(
            "SELECT i.path AS source_path, arg_max(v.output_path, v.created_at) AS output_path, "
            "       arg_max(v.variation_type, v.created_at) AS variation_type, "
            "       arg_max(v.overall_quality, v.created_at) AS overall_quality "
            "FROM variations v JOIN images i USING (run_id, image_id) "
            "WHERE v.accepted AND starts_with(v.output_path, ?) "
            "GROUP BY i.path, v.variation_id ORDER BY source_path, output_path", [prefix])

    def accepted_library(self) -> dict[str, list]:
        """Every variation ever accepted, from any source (``--dedup-library``), as columns:
        variation_id, ahash, phash, dhash, output_path (the latest, if accepted in several
        runs). Columns, not row dicts: a library of a million variations is one Arrow fetch."""
        table = self._read(lambda con: con.sql(
            "SELECT variation_id, any_value(ahash) AS ahash, any_value(phash) AS phash, "
            "any_value(dhash) AS dhash, arg_max(output_path, created_at) AS output_path FROM variations "
            "WHERE accepted AND output_path IS NOT NULL AND ahash IS NOT NULL "
            "GROUP BY variation_id ORDER BY variation_id").to_arrow_table())
        return {name: table.column(name).to_pylist() for name in table.column_names}

    def attempt_history(self, backend: str, model: str) -> dict[str, AttemptHistory]:
        """What runs of ``backend``/``model`` recorded, by level: attempts made, accepted, calls
        and their cost (the dry run's basis, varflow/processing/estimate.py). An attempt is one variation of
        one image in one run; its calls are its tries that reached the backend (not cache hits,
        not cancelled, not a live run's in-flight call)."""
        rows = self.query(
            "WITH a AS (SELECT run_id, image_id, attempt, any_value(quality_level) AS level, "
            "  count(*) FILTER (WHERE NOT coalesce(cache_hit, false) AND outcome NOT IN (?, ?)) AS calls, "
            "  coalesce(sum(cost_usd) FILTER (WHERE NOT coalesce(cache_hit, false) AND outcome NOT IN (?, ?)), 0) "
            "    AS cost, bool_or(outcome NOT IN (?, ?)) AS made "
            "  FROM attempts WHERE backend = ? AND model = ? GROUP BY run_id, image_id, attempt), "
            "v AS (SELECT run_id, image_id, attempt, bool_or(accepted) AS accepted FROM variations "
            "  WHERE backend = ? AND model = ? GROUP BY run_id, image_id, attempt) "
            "SELECT level, count(*) AS attempts, count(*) FILTER (WHERE v.accepted) AS accepted, "
            "  count(*) FILTER (WHERE a.calls > 0) AS called, sum(a.calls) AS calls, sum(a.cost) AS cost "
            "FROM a LEFT JOIN v USING (run_id, image_id, attempt) WHERE a.made AND level IS NOT NULL "
            "GROUP BY level ORDER BY level",
            [CANCELLED, IN_FLIGHT] * 3 + [backend, model, backend, model])
        return {r["level"]: AttemptHistory(attempts=r["attempts"], accepted=r["accepted"], called=r["called"],
                                           calls=int(r["calls"]), cost_usd=float(r["cost"]), level=r["level"])
                for r in rows}

    def running_runs(self) -> list[dict]:
        return self.query("SELECT * FROM runs WHERE status = 'running'")

    def recover_interrupted(self, run: dict, *, status: str = "interrupted", message: str | None = None) -> int:
        """Close a run that was killed: drop its half-written images, compact, mark it ``status``
        (``interrupted``; ``cancelled`` or ``crashed`` from Prefect's hooks, flows/lifecycle.py).

        An image's rows are written variations-first, image-row-last, so variations without an
        image row belong to an image that was in flight when the process died; that image is
        redone by the next run, so those rows are removed. Returns how many parts were removed.
        """
        run_id, execution = run["run_id"], run.get("execution") or 1
        image_parts = self._run_dir("images", run_id, execution) / "parts"
        done = {p.stem for p in image_parts.glob("*.parquet")} if image_parts.exists() else set()
        removed = 0
        parts = self._run_dir("variations", run_id, execution) / "parts"
        for part in parts.glob("*.parquet") if parts.exists() else []:
            if part.stem not in done:
                part.unlink(missing_ok=True)
                removed += 1
        counts = self.query(
            "SELECT count(*) AS total, count(*) FILTER (status = 'ok') AS ok, "
            "count(*) FILTER (status = 'error') AS err, count(*) FILTER (status = 'skipped') AS skipped, "
            "coalesce(sum(accepted), 0) AS accepted, coalesce(sum(attempts), 0) AS attempts FROM images "
            "WHERE run_id = ? AND coalesce(execution, 1) = ?", [run_id, execution])[0]
        interrupted = self.close_in_flight_calls(run_id, execution)
        fields = {k: run[k] for k in RunRecord.columns() if k in run}
        fields.update(status=status, finished_at=run.get("finished_at"), images_ok=counts["ok"],
                      images_error=counts["err"], images_skipped=counts["skipped"],
                      variations_accepted=counts["accepted"], attempts=counts["attempts"],
                      message=message or "the process stopped before the run finished; its finished images are kept")
        self.write_run(RunRecord(**fields), execution=execution)
        self.compact_run(run_id, execution=execution)
        if interrupted:
            log.warning("run %s: %d calls were in flight when it was killed; recorded as interrupted, their "
                        "estimated cost counted (an answer that reached the cache is reused)", run_id, interrupted)
        return removed

    def close_in_flight_calls(self, run_id: str, execution: int = 1) -> int:
        """A killed run's ``in_flight`` calls become ``interrupted``, keeping their estimated cost
        (they may have been answered and billed). Returns how many."""
        rows = self.query("SELECT * FROM attempts WHERE run_id = ? AND outcome = ? AND coalesce(execution, 1) = ?",
                          [run_id, IN_FLIGHT, execution])
        for row in rows:
            fields = {k: row[k] for k in AttemptRecord.columns() if k in row}
            fields.update(outcome=INTERRUPTED, error="the run was killed while this call was in flight: it may "
                                                     "have been answered and billed; its estimated cost is counted")
            self.write_attempt(AttemptRecord(**fields), execution=execution)
        return len(rows)

    # -- writing ----------------------------------------------------------------------------
    def _part_path(self, table: str, run_id: str, key: str, execution: int | None = None) -> Path:
        return self._run_dir(table, run_id, execution) / "parts" / f"{_safe(key)}.parquet"

    def _write(self, table: str, run_id: str, key: str, rows: list, *, durable: bool = False,
               execution: int | None = None) -> None:
        record_type = RECORD_TYPES[table]
        dict_rows = []
        for r in rows:
            if not isinstance(r, record_type):
                raise TypeError(f"{table} takes {record_type.__name__} rows, got {type(r).__name__}")
            # no fragment of a known key is kept
            dict_rows.append(redact_row({**r.as_row(), EXECUTION: execution or self.execution}))
        _write_parquet_atomic(to_arrow(table, dict_rows), self._part_path(table, run_id, key, execution),
                              durable=durable)

    def write_run(self, run: RunRecord, *, execution: int | None = None) -> None:
        self._write("runs", run.run_id, "run", [run], execution=execution)

    def write_attempt(self, attempt: AttemptRecord, *, execution: int | None = None) -> None:
        """One call's row; an ``in_flight`` row (written before the request leaves) is fsynced,
        and the call's final row replaces it (the same part)."""
        self._write("attempts", attempt.run_id, f"{attempt.image_id[:16]}-{attempt.attempt_key[:32]}", [attempt],
                    durable=attempt.outcome == IN_FLIGHT, execution=execution)

    def write_image_result(
        self, image: ImageRecord, variations: list[VariationRecord] = (), *, key: str | None = None
    ) -> None:
        """One image's rows; the image row goes last, so a present image row means all of it landed.

        ``key`` names the part (default: the image id); a run processes each content once, so
        only rows about a second path with the same bytes need their own key.
        """
        key = key or image.image_id
        if variations:
            self._write("variations", image.run_id, key, list(variations))
        self._write("images", image.run_id, key, [image])

    def write_level_change(self, change: QualityLevelChangeRecord) -> None:
        self._write("quality_level_changes", change.run_id, f"{change.image_id}", [change])

    # -- batch jobs (docs/batch.md) ----------------------------------------------------------------
    def write_batch_job(self, job: BatchJobRecord, requests: list[BatchRequestRecord] = ()) -> None:
        """A job's state as ``job.run_id`` saw it; its requests (at submission) land first, so a
        job row means its requests are on record."""
        key = job.job_name.replace("/", "-")
        if requests:
            self._write("batch_requests", job.run_id, key, list(requests))
        self._write("batch_jobs", job.run_id, f"{key}-{job.state}", [job])

    def batch_jobs(self, *, states: Iterable[str] | None = None, input_dir: str | None = None,
                   name_tag: str | None = None) -> list[dict]:
        """Every job's latest state (optionally only those in ``states``, of one folder and
        parameter set), oldest first."""
        rows = self.query(
            "SELECT * FROM batch_jobs QUALIFY row_number() OVER "
            "(PARTITION BY job_name ORDER BY updated_at DESC, run_id DESC) = 1 ORDER BY submitted_at, job_name")
        wanted = set(states) if states is not None else None
        return [r for r in rows if (wanted is None or r["state"] in wanted)
                and (input_dir is None or r["input_dir"] == input_dir)
                and (name_tag is None or r["name_tag"] == name_tag)]

    def batch_requests(self, job_name: str) -> list[dict]:
        return self.query("SELECT * FROM batch_requests WHERE job_name = ? ORDER BY image_id, attempt", [job_name])

    def batch_failures(self, job_names: Iterable[str]) -> list[dict]:
        """Per request key of these jobs that was answered without an image: its latest outcome
        and error, and how many times a job answered it so."""
        names = list(job_names)
        if not names:
            return []
        return self.query(
            "SELECT r.request_key, arg_max(a.outcome, a.started_at) AS outcome, arg_max(a.error, "
            "a.started_at) AS error, "
            "arg_max(a.prompt, a.started_at) AS prompt, arg_max(a.model, a.started_at) AS model, count(*) AS answers "
            "FROM attempts a JOIN batch_requests r ON a.batch_job = r.job_name AND a.variation_id = r.variation_id "
            "WHERE a.outcome <> 'ok' AND list_contains(?, r.job_name) GROUP BY r.request_key", [names])

    def waiting_batch_keys(self, open_states: Iterable[str]) -> set[str]:
        """Content keys of the requests in jobs still open (not to be submitted again)."""
        names = [j["job_name"] for j in self.batch_jobs(states=open_states)]
        if not names:
            return set()
        rows = self.query("SELECT DISTINCT request_key FROM batch_requests WHERE list_contains(?, job_name)", [names])
        return {r["request_key"] for r in rows}

    # -- compaction ---------------------------------------------------------------------------
    def compact_run(self, run_id: str, *, execution: int | None = None) -> None:
        """Merge a finished run's parts (of this execution) into one file per table; the parts go later (vacuum).

        The compacted file is made outside ``tables/`` and takes the parts' place in one step
        (``_exchange``), so a reader of ``tables/<table>`` with pyarrow or polars, which knows
        nothing of the views' rule, counts each row once at every moment, compaction included."""
        for table in TABLES:
            run_dir = self._run_dir(table, run_id, execution)
            parts = sorted((run_dir / "parts").glob("*.parquet")) if run_dir.exists() else []
            for part in list(parts):
                reason = unreadable_reason(part)
                if reason is not None:
                    quarantine(self.home, part, reason)
                    parts.remove(part)
            if not parts:
                continue
            staged = self.home / SUPERSEDED_DIR / table / f".compacting-{run_dir.name}"
            shutil.rmtree(staged, ignore_errors=True)  # left by a process killed while compacting
            _merge_parts_atomic(parts, SCHEMAS[table], staged / "compacted.parquet")
            if _exchange(staged, run_dir):  # run_dir: the compacted file only; staged: the old run folder
                self._supersede(table, staged)
            else:  # a file system without the exchange: parts and compacted file side by side for a moment
                os.replace(staged / "compacted.parquet", run_dir / "compacted.parquet")
                self._supersede(table, run_dir)
            shutil.rmtree(staged, ignore_errors=True)

    def _supersede(self, table: str, run_dir: Path) -> None:
        """Move a compacted run's parts (``run_dir``'s, named for the run) out of the tables' tree in one
        rename. The views ignore them anyway, but only after opening each one: left in place, 10,000 parts
        made every query of the lens take seconds until they were deleted (bench/scale_out.py). A reader
        that listed them just before gets "no such file" and reads again (``_read``)."""
        name = run_dir.name.removeprefix(".compacting-")
        dest = self.home / SUPERSEDED_DIR / table / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)  # a run compacted twice (a retried flow run)
        try:
            os.replace(run_dir / "parts", dest)
        except FileNotFoundError:
            pass

    def vacuum(self, *, grace_seconds: float = PARTS_GRACE_SECONDS) -> int:
        """Delete the parts of runs compacted more than ``grace_seconds`` ago; returns how many."""
        removed = 0
        now = time.time()
        for compacted in self.tables_dir.glob("*/run-*/compacted.parquet"):
            table, run = compacted.parent.parent.name, compacted.parent.name
            for parts in (compacted.parent / "parts", self.home / SUPERSEDED_DIR / table / run):
                if parts.exists() and now - compacted.stat().st_mtime > grace_seconds:
                    removed += sum(1 for _ in parts.glob("*.parquet"))
                    shutil.rmtree(parts, ignore_errors=True)
        return removed
