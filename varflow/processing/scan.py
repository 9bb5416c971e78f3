"""Which of a folder's images a run has to process: the one loop a run and its dry run share.

Each image is identified by its content (SHA-256 of its bytes) and, with the run's output-changing
parameters, by a job key; an image whose job key an earlier run finished is done, a second file
with the same bytes is processed once, and so is a copy of another input (cropped, mirrored,
framed, rotated, re-encoded: ``copies``, from ``varflow.duplicates.copies.copies_in_folder``). Files are hashed one by
one as the caller asks, so a run
starts on the first image before the last is read.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from varflow.duplicates.copies import FeatureCache, copies_in_folder
from varflow.images.locations import Folder, LocalFolder
from varflow.kinds import ScanStatus
from varflow.processing.outnames import output_stems
from varflow.runtime.records import stable_id
from varflow.settings import LoadLimits

PENDING, UNREADABLE, SAME_CONTENT, COPY, DONE = (ScanStatus.PENDING, ScanStatus.UNREADABLE, ScanStatus.SAME_CONTENT,
                                                ScanStatus.COPY, ScanStatus.DONE)
log = logging.getLogger(__name__)


def input_copies(paths: list[Path], input_dir: Path, *, follow_links: bool, limits: LoadLimits,
                 finished: dict[str, str] | None = None, fingerprint: dict | None = None,
                 held: dict[str, set[str]] | None = None, cache_dir: Path | None = None,
                 folder: Folder | None = None) -> dict[Path, Path]:
    """Each input that is a copy of another -> the one that stands for it (``copies_in_folder``: one
    an earlier run finished with these parameters, else the first), among the paths that may be read:
    a FIFO, a device or a link leaving the folder is never opened. When every readable input is done
    (a nightly run over an unchanged folder), nothing is decoded: there is nothing to skip; otherwise
    features come from ``cache_dir`` by content where an earlier run left them (``FeatureCache``).
    Objects of a bucket (``folder``) are compared from local copies of those not in that cache."""
    folder = folder or LocalFolder(input_dir)
    readable = [p for p in paths if folder.problem(p, follow_links=follow_links) is None]
    ids: dict[str, str] = {}
    done = done_paths(paths, input_dir, readable, finished or {}, fingerprint, held, ids, folder) \
        if fingerprint is not None else set()
    if readable and len(done) == len(readable):
        return {}
    cache = FeatureCache(cache_dir, ids) if cache_dir is not None else None
    try:
        if not folder.remote:
            return copies_in_folder(readable, limits=limits, done=done, cache=cache)
        with tempfile.TemporaryDirectory(prefix="varflow-copies-") as tmp:
            local = _local_copies(readable, folder, ids, cache, Path(tmp))
            found = copies_in_folder(list(local), limits=limits, done={p for p, u in local.items() if u in done},
                                     cache=cache)
            return {local[a]: local[b] for a, b in found.items()}
    except MemoryError:  # the copy check is a saving, never worth the run
        log.warning("the copy check ran out of memory; every input is processed, copies too (--keep-copies)")
        return {}


def _local_copies(paths: list, folder: Folder, ids: dict[str, str], cache: FeatureCache | None,
                  tmp: Path) -> dict[Path, str]:
    """Local stand-ins of a bucket's objects: fetched where the feature cache lacks them, else a
    name never read (``ids`` gets each stand-in's image_id, the cache's key)."""
    local = {}
    for n, url in enumerate(paths):
        stand_in = tmp / f"{n:07d}{Path(str(url)).suffix.lower()[:6]}"
        try:
            ids[str(stand_in)] = ids.get(str(url)) or folder.content_id(url)
            if cache is None or not cache.has(str(stand_in)):
                folder.fetch(url, stand_in)
        except OSError:
            continue  # the scan says why
        local[stand_in] = url
    return local


def done_paths(paths: list[Path], input_dir: Path, readable: list[Path], finished: dict[str, str],
               fingerprint: dict, held: dict[str, set[str]] | None, ids: dict[str, str],
               folder: Folder | None = None) -> set[Path]:
    """The readable paths whose job (content, output name, parameters) an earlier run finished;
    ``ids`` gets each readable path's image_id (the feature cache's key)."""
    folder = folder or LocalFolder(input_dir)
    stems = dict(zip(paths, output_stems(paths, input_dir, held)))
    done = set()
    for path in readable:
        try:
            ids[str(path)] = image_id = folder.content_id(path)
            if stable_id(image_id, stems[path], fingerprint) in finished:
                done.add(path)
        except OSError:
            continue  # the scan says why
    return done


def short_jobs(reviewed: Mapping[str, Mapping], count: int) -> dict[str, dict]:
    """The finished jobs people's rejects left below ``count`` (``Store.reviewed_short``'s rows), each
    with ``missing``: what a run with these parameters tops up instead of skipping."""
    return {key: {**row, "missing": count - row["standing"]} for key, row in reviewed.items()
            if row["standing"] < count}


@dataclass(frozen=True)
class FoundImage:
    path: Path
    stem: str  # OUTPUT-relative name without suffix
    image_id: str  # SHA-256 of its bytes (of its path when unreadable)
    status: ScanStatus
    message: str | None = None  # why it is not to do
    job_key: str | None = None  # stable id of (content, output name, parameters)


def scan_images(paths: list[Path], input_dir: Path, *, fingerprint: dict, finished: dict[str, str],
                follow_links: bool = False, held: dict[str, set[str]] | None = None,
                copies: dict[Path, Path] | None = None, folder: Folder | None = None,
                top_ups: Collection[str] = ()) -> Iterator[FoundImage]:
    """Every path with its status; ``finished`` maps the job keys of finished images to their run,
    ``copies`` a copy of another input to that input (it is skipped: ``input_copies``); a finished job in
    ``top_ups`` (``short_jobs``: people's rejects left it below count) is to do again, for the missing ones.

    A path that is not a regular file (inside the input folder, unless ``follow_links``) is
    UNREADABLE with the reason (varflow/images/inputs.py) and never opened; ``held`` keeps each source's
    output name (varflow/processing/outnames.py). ``folder``: where they are read (a bucket's
    objects: ``varflow.images.locations``; default, the local folder).
    """
    folder = folder or LocalFolder(input_dir)
    seen: dict[str, str] = {}  # image_id -> first path with that content
    for path, stem in zip(paths, output_stems(paths, input_dir, held)):
        problem = folder.problem(path, follow_links=follow_links)
        if problem is not None:
            yield FoundImage(path, stem, stable_id(str(path)), UNREADABLE, problem)
            continue
        try:
            image_id = folder.content_id(path)
        except OSError as exc:
            problem, fix = ("is a symbolic link that leads nowhere", "point it at an image or remove it") \
                if not folder.remote and path.is_symlink() else ("cannot be read", "check the path and permissions")
            yield FoundImage(path, stem, stable_id(str(path)), UNREADABLE, f"{path}: {problem} ({exc.strerror}); {fix}")
            continue
        job_key = stable_id(image_id, stem, fingerprint)
        if job_key in finished:  # before any copy rule: what was paid for stays the one that stands
            seen.setdefault(image_id, str(path))
            if job_key in top_ups:
                yield FoundImage(path, stem, image_id, PENDING, None, job_key)
                continue
            yield FoundImage(path, stem, image_id, DONE, f"unchanged since run {finished[job_key]} "
                             "(same content and parameters); --force redoes it", job_key)
            continue
        if image_id in seen:  # the same bytes twice: pay for them once
            yield FoundImage(path, stem, image_id, SAME_CONTENT,
                             f"same content as {seen[image_id]}; its variations stand for both")
            continue
        if copies and path in copies:  # the same picture again: pay for it once
            yield FoundImage(path, stem, image_id, COPY, f"copy of {copies[path]} (cropped, mirrored, framed, "
                             "rotated or re-encoded); its variations stand for both; --keep-copies processes both")
            continue
        seen[image_id] = str(path)
        yield FoundImage(path, stem, image_id, PENDING, None, job_key)
