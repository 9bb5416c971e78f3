"""Which of a folder's images a run has to process: the one loop a run and its dry run share.

Each image is identified by its content (SHA-256 of its bytes) and, with the run's output-changing
parameters, by a job key; an image whose job key an earlier run finished is done, a second file
with the same bytes is processed once, and so is a copy of another input (cropped, mirrored,
framed, rotated, re-encoded: ``copies``, from ``varflow.copies.copies_in_folder``). Files are hashed one by one as the caller asks, so a run
starts on the first image before the last is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from varflow.imageio import sha256_file
from varflow.records import stable_id

TODO, UNREADABLE, SAME_CONTENT, COPY, DONE = "todo", "unreadable", "same_content", "copy", "done"


def output_stems(paths: list[Path], input_dir: Path) -> list[str]:
    """OUTPUT-relative names without suffix; same-stem files (a.jpg, a.png) keep their suffix."""
    rel = [p.relative_to(input_dir) if p != input_dir else Path(p.name) for p in paths]
    base = [r.with_suffix("").as_posix() for r in rel]
    clash = {b for b in base if base.count(b) > 1}
    return [f"{b}-{r.suffix.lstrip('.').lower()}" if b in clash else b for b, r in zip(base, rel)]


@dataclass(frozen=True)
class FoundImage:
    path: Path
    stem: str  # OUTPUT-relative name without suffix
    image_id: str  # SHA-256 of its bytes (of its path when unreadable)
    status: str  # TODO, UNREADABLE, SAME_CONTENT, COPY or DONE
    message: str | None = None  # why it is not to do
    job_key: str | None = None  # stable id of (content, output name, parameters)


def scan_images(paths: list[Path], input_dir: Path, *, fingerprint: dict,
                finished: dict[str, str], copies: dict[Path, Path] | None = None) -> Iterator[FoundImage]:
    """Every path with its status; ``finished`` maps the job keys of finished images to their run,
    ``copies`` a copy of another input to that input (it is skipped)."""
    seen: dict[str, str] = {}  # image_id -> first path with that content
    for path, stem in zip(paths, output_stems(paths, input_dir)):
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
        yield FoundImage(path, stem, image_id, TODO, None, job_key)
