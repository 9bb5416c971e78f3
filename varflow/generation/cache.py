"""Never pay twice: every rule of caching generations, in this one module.

1. **The key.** A generation is keyed by the content of its request (``generation_key``), never
   by paths or pixels. The orchestrator's cache of task results uses the same key
   (tasks/generate.py attaches it to the generate task as Prefect's cache policy).
2. **Check before paying.** An attempt looks its key up first (``GenerationCache.before_call``);
   a hit makes no call and is recorded as a zero-cost attempt with ``cache_hit``.
3. **Keep the moment it exists.** A generated image goes into the size-bounded image cache as
   soon as the call returns (``GenerationCache.keep``), before the orchestrator writes its own
   result, so a run killed in between (SIGKILL included) still never pays for it twice.
4. **A served result needs its file.** A result the orchestrator serves from its cache points
   into the image cache; when the file has been evicted since (``GenerationCache.served`` is
   None) the request is generated again, refreshing both caches.
5. **Bounded.** The image cache evicts least recently used files down to 80% of its limit; the
   orchestrator's result files (one per key) are pruned to the live keys at a run's end
   (``GenerationCache.prune_results``).
6. **A result format.** The orchestrator's results are pickles that name their type's module, so
   its key is the content key under ``RESULT_FORMAT`` (``result_key``), bumped when that module
   moves: older results are missed (the image cache still serves their images, no call is paid)
   rather than failing to load, and the next prune deletes them.

The image cache is the seed's VariationCache done right:

* the key is a full SHA-256 (the seed truncated two md5 digests to 8 hex digits each) over
  everything that changes the output: the source's bytes (its SHA-256), the backend, model,
  concrete variation type, prompt, per-attempt seed, and the size the source is optimized to;
  ``generation_key`` is the one function that computes it;
* eviction counts the bytes of the files it deletes (the seed subtracted the *length of the
  path strings*, so it never got back under its limit) and stops at 80% of the limit;
* an entry whose file vanished is dropped when looked up;
* the index is a SQLite database (WAL): every update is one transaction, so a crash or two runs
  at once never leave it half-written, and the file is written before its entry, so an entry
  never points at a missing file except after someone deleted it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from varflow.errors import ConfigurationError
from varflow.safety.diskwrite import writing
from varflow.safety.filemodes import follow_umask

EVICT_TO = 0.8  # after eviction the cache holds at most this fraction of its limit


def generation_key(
    *,
    image_id: str,
    backend: str,
    model: str,
    variation_type: str,
    prompt: str,
    seed: int,
    max_image_size: int,
    extra: dict | None = None,
) -> str:
    """The cache key of one generation request (full-length SHA-256 hex)."""
    payload = {
        "v": 1,
        "image_id": image_id,
        "backend": backend,
        "model": model,
        "variation_type": variation_type,
        "prompt": prompt,
        "seed": seed,
        "max_image_size": max_image_size,
        "extra": extra or {},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    size: int
    meta: dict


class VariationCache:
    """A size-bounded, content-addressed store of generated images (thread and process safe)."""

    def __init__(self, root: str | Path, *, max_bytes: int = 2 * 2**30):
        if max_bytes <= 0:
            raise ConfigurationError(f"cache limit {max_bytes} must be positive (bytes)")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.files = self.root / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, relpath TEXT NOT NULL, "
                "size INTEGER NOT NULL, meta TEXT NOT NULL, created REAL NOT NULL, last_used REAL NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS by_use ON entries (last_used)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.root / "index.sqlite", timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return _Tx(db, self._lock)

    def _path_for(self, key: str, suffix: str) -> Path:
        return self.files / key[:2] / f"{key}{suffix}"

    def get(self, key: str) -> CacheEntry | None:
        with self._db() as db:
            row = db.execute("SELECT relpath, size, meta FROM entries WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            path = self.root / row[0]
            if not path.is_file():
                db.execute("DELETE FROM entries WHERE key = ?", (key,))
                return None
            db.execute("UPDATE entries SET last_used = ? WHERE key = ?", (time.time(), key))
        return CacheEntry(key, path, row[1], json.loads(row[2]))

    def put(self, key: str, source: str | Path, meta: dict | None = None) -> CacheEntry:
        """Copy ``source`` into the cache under ``key`` and evict down to 80% if over the limit."""
        source = Path(source)
        dest = self._path_for(key, source.suffix.lower() or ".bin")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
        follow_umask(fd)  # mkstemp makes it 0600; the data directory is readable as the umask says
        os.close(fd)
        try:
            with writing(dest):
                shutil.copyfile(source, tmp)
                os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        size = dest.stat().st_size
        now = time.time()
        meta = meta or {}
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO entries (key, relpath, size, meta, created, last_used) VALUES "
                "(?, ?, ?, ?, ?, ?)",
                (key, dest.relative_to(self.root).as_posix(), size, json.dumps(meta, sort_keys=True), now, now),
            )
        self.evict()
        return CacheEntry(key, dest, size, meta)

    def total_bytes(self) -> int:
        with self._db() as db:
            return db.execute("SELECT coalesce(sum(size), 0) FROM entries").fetchone()[0]

    def __len__(self) -> int:
        with self._db() as db:
            return db.execute("SELECT count(*) FROM entries").fetchone()[0]

    def evict(self) -> list[str]:
        """Least recently used entries out until the cache is at most 80% of its limit."""
        removed: list[str] = []
        with self._db() as db:
            total = db.execute("SELECT coalesce(sum(size), 0) FROM entries").fetchone()[0]
            if total <= self.max_bytes:
                return removed
            target = self.max_bytes * EVICT_TO
            for key, relpath, size in db.execute(
                "SELECT key, relpath, size FROM entries ORDER BY last_used, created"
            ).fetchall():
                if total <= target:
                    break
                db.execute("DELETE FROM entries WHERE key = ?", (key,))
                (self.root / relpath).unlink(missing_ok=True)
                total -= size  # the file's bytes, not the length of its path
                removed.append(key)
        return removed


# The orchestrator's stored results name their type's module (a pickle); bump this when that path
# changes. 2: GenerationResult moved to varflow.runtime.calls (issue 21, one import name).
RESULT_FORMAT = 2


def result_key(key: str) -> str:
    """The orchestrator's cache key of a generation: its content key under the result format."""
    return f"r{RESULT_FORMAT}-{key}"


class GenerationCache:
    """The run's view of caching: the bounded image cache and the orchestrator's result files."""

    def __init__(self, root: str | Path, *, max_bytes: int, results_dir: str | Path | None = None):
        self.images = VariationCache(root, max_bytes=max_bytes)
        self.results_dir = Path(results_dir) if results_dir is not None else None

    def before_call(self, key: str, *, force: bool = False) -> CacheEntry | None:
        """The image already generated for ``key`` (None when forced to regenerate)."""
        return None if force else self.images.get(key)

    def keep(self, key: str, generated: str | Path, meta: dict) -> CacheEntry:
        """Move a freshly generated file into the image cache; returns where it now is."""
        entry = self.images.put(key, generated, meta)
        Path(generated).unlink(missing_ok=True)
        return entry

    def served(self, key: str) -> CacheEntry | None:
        """The file behind a result served from a cache, or None when it was evicted since."""
        return self.images.get(key)

    def prune_results(self) -> int:
        """Delete the orchestrator's result files whose key is no longer in the image cache, and
        those of an older result format."""
        removed, prefix = 0, result_key("")
        results = self.results_dir
        for f in results.iterdir() if results is not None and results.exists() else []:
            if f.is_file() and (not f.name.startswith(prefix) or self.images.get(f.name[len(prefix):]) is None):
                f.unlink(missing_ok=True)
                removed += 1
        return removed


class _Tx:
    """``with`` a connection: one IMMEDIATE transaction, committed or rolled back as a whole.

    Threads of one process take ``lock`` first: left to SQLite, a thread finding the database
    locked sleeps in its busy handler (1, 2, 5, 10 ... 100 ms steps) even when the holder is done
    in microseconds (docs/gemini.md: found by profiling the throughput bench). Other processes
    still meet SQLite's own locking."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db = db
        self.lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()
