"""Which of a folder's images a run has to process: the one loop a run and its dry run share.

Each image is identified by its content (SHA-256 of its bytes) and, with the run's output-changing
parameters, by a job key; an image whose job key an earlier run finished is done, a second file
with the same bytes is processed once, and so is a copy of another input (cropped, mirrored,
framed, rotated, re-encoded: ``copies``, from ``varflow.duplicates.copies.copies_in_folder``). Files are hashed one by
one as the caller asks, so a run
starts on the first image before the last is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from varflow.duplicates.copies import copies_in_folder
from varflow.images.imageio import sha256_file
from varflow.images.inputs import input_problem
from varflow.kinds import ScanStatus
from varflow.processing.outnames import output_stems
from varflow.runtime.records import stable_id
from varflow.settings import LoadLimits

PENDING, UNREADABLE, SAME_CONTENT, COPY, DONE = (ScanStatus.PENDING, ScanStatus.UNREADABLE, ScanStatus.SAME_CONTENT,
                                                ScanStatus.COPY, ScanStatus.DONE)


def input_copies(paths: list[Path], input_dir: Path, *, follow_links: bool, limits: LoadLimits) -> dict[Path, Path]:
    """Each input that is a copy of an earlier one -> that one (``copies_in_folder``), among the
    paths that may be read: a FIFO, a device or a link leaving the folder is never opened."""
    readable = [p for p in paths if input_problem(p, input_dir, follow_links=follow_links) is None]
    return copies_in_folder(readable, limits=limits)


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
                copies: dict[Path, Path] | None = None) -> Iterator[FoundImage]:
    """Every path with its status; ``finished`` maps the job keys of finished images to their run,
    ``copies`` a copy of another input to that input (it is skipped: ``input_copies``).

    A path that is not a regular file (inside the input folder, unless ``follow_links``) is
    UNREADABLE with the reason (varflow/images/inputs.py) and never opened; ``held`` keeps each source's
    output name (varflow/processing/outnames.py).
    """
    seen: dict[str, str] = {}  # image_id -> first path with that content
    for path, stem in zip(paths, output_stems(paths, input_dir, held)):
        problem = input_problem(path, input_dir, follow_links=follow_links)
        if problem is not None:
            yield FoundImage(path, stem, stable_id(str(path)), UNREADABLE, problem)
            continue
        try:
            image_id = sha256_file(path)
        except OSError as exc:
            problem, fix = ("is a symbolic link that leads nowhere", "point it at an image or remove it") \
                if path.is_symlink() else ("cannot be read", "check the path and permissions")
            yield FoundImage(path, stem, stable_id(str(path)), UNREADABLE, f"{path}: {problem} ({exc.strerror}); {fix}")
            continue
        if image_id in seen:  # the same bytes twice: pay for them once
            yield FoundImage(path, stem, image_id, SAME_CONTENT,
                             f"same content as {seen[image_id]}; its variations stand for both")
            continue
        seen[image_id] = str(path)
        if copies and path in copies:  # the same picture again: pay for it once
            yield FoundImage(path, stem, image_id, COPY, f"copy of {copies[path]} (cropped, mirrored, framed, "
                             "rotated or re-encoded); its variations stand for both; --keep-copies processes both")
            continue
        job_key = stable_id(image_id, stem, fingerprint)
        if job_key in finished:
            yield FoundImage(path, stem, image_id, DONE, f"unchanged since run {finished[job_key]} "
                             "(same content and parameters); --force redoes it", job_key)
            continue
        yield FoundImage(path, stem, image_id, PENDING, None, job_key)
