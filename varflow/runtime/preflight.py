"""The checks a run passes before its first generation call: nothing is paid for before the run
knows it can keep the result.

The output folder and the data directory can be created and written (a probe file, removed; in
a bucket, a probe object, written and removed with this machine's credentials),
the output folder is not the input folder, and their file systems have room for what the run
will write. Each failure is a ``PreflightError``: one line saying what to fix (the CLI exits 2
with it; a flow run fails with it before any call). The key's check (``models.get``) is the
backend's ``check``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from varflow.errors import ConfigurationError
from varflow.images.locations import ObjectFolder, is_url
from varflow.settings import QUALITY_LEVELS

# A variation is a PNG at the level's size. Measured on this repository's runs (local backend,
# sample photos): 0.9-2.4 bytes per pixel of the PNG; a 3:2 photo covers 2/3 of max_side^2, so
# about one byte per pixel of max_side^2: the check refuses a disk that cannot plausibly hold the
# run, not one that might run short.
BYTES_PER_VARIATION_PIXEL = 1.0
MIN_FREE_BYTES = 64 * 2**20  # the store's parts, the run's working files, the gallery


class PreflightError(ConfigurationError):
    """A run that cannot keep its results: the message says what to fix, in one line."""


def probe_folder(folder: Path, what: str, option: str) -> None:
    """Create ``folder`` if needed and write (then remove) a probe file in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PreflightError(f"the {what} {folder} exists and is not a folder; pass another {option}") from None
    except NotADirectoryError:
        parent = next((p for p in folder.parents if p.exists() and not p.is_dir()), folder.parent)
        raise PreflightError(f"the {what} {folder} cannot be created: {parent} is a file, not a folder; "
                             f"pass another {option}") from None
    except OSError as exc:
        raise PreflightError(f"the {what} {folder} cannot be created ({exc.strerror}); "
                             f"fix its permissions or pass another {option}") from None
    if not folder.is_dir():
        raise PreflightError(f"the {what} {folder} is not a folder; pass another {option}")
    probe = folder / f".varflow-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"varflow")
        finally:
            os.close(fd)
    except OSError as exc:
        raise PreflightError(f"the {what} {folder} cannot be written ({exc.strerror}); "
                             f"fix its permissions or pass another {option}") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def probe_bucket(folder: str, what: str, option: str) -> None:
    """Write (then remove) a probe object below the bucket prefix ``folder``."""
    try:
        ObjectFolder(folder).probe()
    except (OSError, ValueError) as exc:  # botocore's errors reach here as OSErrors (s3fs translates them)
        raise PreflightError(f"the {what} {folder} cannot be written ({type(exc).__name__}: {exc}); check the "
                             f"bucket's name and this machine's credentials, or pass another {option}") from None


def check_not_input(input_dir: Path | str, output_dir: Path | str) -> None:
    """The output folder may lie inside the input folder (it is never read as input), not be it."""
    if is_url(input_dir) or is_url(output_dir):
        if str(output_dir).rstrip("/") == str(input_dir).rstrip("/"):
            raise PreflightError(f"--out is the input folder {input_dir}: variations would be mixed with the "
                                 f"originals; pass a folder of their own (e.g. --out {input_dir}/variations)")
        return
    if output_dir.resolve() == input_dir.resolve():
        raise PreflightError(f"--out is the input folder {input_dir}: variations would be mixed with the "
                             "originals; pass a folder of their own (e.g. --out "
                             f"{input_dir.resolve() / 'variations'})")


def bytes_needed(images: int, count: int, level: str = "high") -> int:
    """What ``images`` x ``count`` accepted variations plausibly take on disk (module docstring)."""
    side = QUALITY_LEVELS[level].max_image_size
    return int(images * count * side * side * BYTES_PER_VARIATION_PIXEL)


def check_free_space(output_dir: Path | str, home: Path, *, images: int, count: int, cache_bytes: int,
                     level: str = "high") -> None:
    """Room for the variations in the output folder and their cached copies in the data directory
    (bounded by the cache's size), on one file system or two."""
    out_need = bytes_needed(images, count, level) + MIN_FREE_BYTES
    home_need = min(cache_bytes, bytes_needed(images, count, level)) + MIN_FREE_BYTES
    if is_url(output_dir):  # a bucket has no free space to ask about; the cache's copies are local
        needs = [(home, home_need, "the data directory")]
    elif os.stat(output_dir).st_dev == os.stat(home).st_dev:
        needs = [(output_dir, out_need + home_need, "the output folder and the data directory")]
    else:
        needs = [(output_dir, out_need, "the output folder"), (home, home_need, "the data directory")]
    for folder, need, what in needs:
        free = shutil.disk_usage(folder).free
        if free < need:
            raise PreflightError(
                f"only {free / 2**20:.0f} MiB free for {what} ({folder}); this run needs about "
                f"{need / 2**20:.0f} MiB ({images} images x {count} variations at level {level}): "
                "free some space, or pass another --out / --home")


def check_folders(input_dir: Path | str, output_dir: Path | str, home: Path) -> None:
    """The folder checks, in the order a user fixes them."""
    check_not_input(input_dir, output_dir)
    probe_folder(home, "data directory", "--home (or VARFLOW_HOME)")
    if is_url(output_dir):
        probe_bucket(str(output_dir), "output folder", "--out")
    else:
        probe_folder(output_dir, "output folder", "--out")
