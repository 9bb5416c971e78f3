"""The store's writer: a record is a Parquet part written to a temp name and renamed (storage/store.py
has the layout); a finished run's parts are compacted into one file, and the superseded ones deleted later."""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from varflow.storage.integrity import (
    quarantine,
    unreadable_reason,
)
from varflow.storage.schema import EXECUTION, NEVER_COMPACTED, RECORD_TYPES, SCHEMAS, TABLES, to_arrow

from varflow.runtime.calls import IN_FLIGHT
from varflow.runtime.records import (
    AttemptRecord,
    BatchJobRecord,
    BatchRequestRecord,
    ImageRecord,
    QualityLevelChangeRecord,
    ReviewRecord,
    RunRecord,
    VariationRecord,
)
from varflow.safety.diskwrite import writing
from varflow.safety.filemodes import follow_umask
from varflow.safety.redaction import redact_row

PARTS_GRACE_SECONDS = 600  # parts of a compacted run are deleted after this (readers may hold them)
COMPACT_GROUP = 1000  # parts merged at a time when a run is compacted
SUPERSEDED_DIR = "superseded"  # where a compacted run's parts wait for deletion, outside the views' glob
_RENAME_EXCHANGE = 2  # renameat2's flag (linux/fs.h)
_AT_FDCWD = -100


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


class StoreWriter:
    """Writing records (a part of ``Store``): rows of runs, images, variations, attempts, levels, batch jobs."""

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

    def write_review(self, review: ReviewRecord) -> None:
        """A person's decision, in a part of its own (the history stays; the latest is in force). Written
        durably: the file move it describes follows it (flows/review.py)."""
        stamp = review.reviewed_at.strftime("%Y%m%dT%H%M%S%f")
        self._write("reviews", review.run_id, f"{review.variation_id[:32]}-{stamp}", [review], durable=True,
                    execution=1)

    # -- batch jobs (docs/batch.md) ----------------------------------------------------------------
    def write_batch_job(self, job: BatchJobRecord, requests: list[BatchRequestRecord] = ()) -> None:
        """A job's state as ``job.run_id`` saw it; its requests (at submission) land first, so a
        job row means its requests are on record."""
        key = job.job_name.replace("/", "-")
        if requests:
            self._write("batch_requests", job.run_id, key, list(requests))
        self._write("batch_jobs", job.run_id, f"{key}-{job.state}", [job])

    # -- compaction ---------------------------------------------------------------------------
    def compact_run(self, run_id: str, *, execution: int | None = None) -> None:
        """Merge a finished run's parts (of this execution) into one file per table; the parts go later (vacuum).

        The compacted file is made outside ``tables/`` and takes the parts' place in one step
        (``_exchange``), so a reader of ``tables/<table>`` with pyarrow or polars, which knows
        nothing of the views' rule, counts each row once at every moment, compaction included."""
        for table in TABLES:
            if table in NEVER_COMPACTED:
                continue
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
