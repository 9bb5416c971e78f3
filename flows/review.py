"""A person's keep or reject of a variation: recorded in ``reviews``, and the file follows.

The variation's own row keeps the run's decision (``accepted``); the ``variation_status`` view gives
the decision in force (storage/SCHEMA.md). Keep brings the file into the output folder under the
source's next free name past the run's own numbers (from ``_rejected/``, or else from the generation
cache); reject moves an accepted file to ``_rejected/``. Nothing is overwritten: a name is claimed with
a hard link, which fails if the name exists. The decision is written (durably) before its file moves, and where the move
fails a second row says where the file still is, so the record never claims a file that is not there
for longer than a crash; marking again finishes the move (every place the file was is looked at).
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from varflow.storage import Store

from varflow.errors import InputError
from varflow.generation.cache import VariationCache
from varflow.images.locations import is_url, shown
from varflow.kinds import Verdict
from varflow.processing.outnames import names_on_disk, next_accepted_name, prefix_of
from varflow.runtime.claims import ImageClaims
from varflow.runtime.records import ReviewRecord, utcnow
from varflow.safety.diskwrite import writing
from varflow.safety.escaping import for_log
from varflow.safety.filemodes import follow_umask

REJECTED_DIR = "_rejected"  # beside the accepted files, as ``--keep-rejected`` does
REVIEWER_MAX_CHARS = 80
NOTE_MAX_CHARS = 2000
_LOCK = Path("locks") / "reviews.lock"


@dataclass(frozen=True)
class ReviewOutcome:
    """What a decision did: where the file is now (None: gone) and a line for a person."""

    variation_id: str
    verdict: Verdict
    file_path: str | None
    message: str


def reviewer_name(explicit: str | None = None) -> str:
    """``--reviewer``, else ``VARFLOW_REVIEWER``, else the login name; one line, bounded."""
    name = explicit or os.environ.get("VARFLOW_REVIEWER") or _login_name()
    name = " ".join("".join(c for c in str(name) if c.isprintable() or c.isspace()).split())[:REVIEWER_MAX_CHARS]
    if not name:
        raise InputError("the reviewer's name is empty: pass --reviewer NAME or set VARFLOW_REVIEWER")
    return name


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's numeric uid)
        return f"uid-{os.getuid()}"


def apply_review(store: Store, variation_id: str, verdict: str, *, reviewer: str, note: str | None = None,
                 run_id: str | None = None) -> ReviewOutcome:
    """Record ``reviewer``'s ``verdict`` on the variation ``variation_id`` (or a unique prefix of it) of the
    run ``run_id`` (or a prefix; needed only when several runs made that variation) and move its file to
    match. Raises ``InputError`` for an unknown or ambiguous id or verdict."""
    try:
        verdict = Verdict(verdict)
    except ValueError:
        raise InputError(f"verdict {for_log(verdict)!r} is neither 'keep' nor 'reject'") from None
    target = _target(store, variation_id, run_id)
    if is_url(target.get("output_dir")):
        raise InputError(f"variation {target['variation_id'][:12]} was written to a bucket "
                         f"({shown(target['output_dir'])}); keeping or rejecting objects is not built yet: "
                         "copy or move the object with your bucket's tools")
    note = note[:NOTE_MAX_CHARS] if note else None
    with _locked(store.home), _image_claimed(store.home, target["image_id"]):
        target = _target(store, target["variation_id"], target["run_id"])  # as it stands under the lock
        source, from_cache = _locate(store, target, verdict)
        dest = _destination(store, target, verdict, source)
        record = ReviewRecord(run_id=target["run_id"], variation_id=target["variation_id"],
                              image_id=target["image_id"], verdict=verdict, reviewer=reviewer, note=note,
                              reviewed_at=utcnow(), file_path=str(dest) if dest else None,
                              message=None if dest else "the file is gone")
        store.write_review(record)
        if dest is None or source == dest:
            return ReviewOutcome(record.variation_id, verdict, record.file_path, _said(record, source, dest))
        try:
            _move(source, dest, copy=from_cache)
        except OSError as exc:
            store.write_review(_still_at(record, source, exc))
            raise InputError(f"recorded {verdict} of {record.variation_id[:12]}, but its file stays at "
                             f"{for_log(source)}: {for_log(exc)}; free the space or fix the permission and mark "
                             "it again") from exc
        return ReviewOutcome(record.variation_id, verdict, record.file_path, _said(record, source, dest))


def _target(store: Store, variation_id: str, run_id: str | None) -> dict:
    wanted = (variation_id or "").strip().lower()
    if len(wanted) < 6 or any(c not in "0123456789abcdef" for c in wanted):
        raise InputError(f"{for_log(variation_id)!r} is not a variation id: give the id (or its first 6+ hex "
                         "digits) as the gallery or `varflow sql \"SELECT variation_id FROM variations\"` shows it")
    found = store.review_targets(wanted, run_id)
    if not found:
        raise InputError(f"no variation {wanted}{f' of run {for_log(run_id)}' if run_id else ''} in {store.home} "
                         "(pass --home for another data directory)")
    if len({r["variation_id"] for r in found}) > 1:
        raise InputError(f"{wanted} names several variations; give more of its digits")
    if len(found) > 1:
        runs = ", ".join(r["run_id"][:8] for r in found)
        raise InputError(f"variation {wanted} was made by several runs ({runs}, each with its own file): "
                         "pass --run RUN_ID (a prefix is enough)")
    return found[0]


def _locate(store: Store, target: dict, verdict: Verdict) -> tuple[Path | None, bool]:
    """Where the variation's file is now, and whether that is the generation cache (copied, not moved):
    the latest decision's place, the run's place, any earlier decision's place, then the cache (for keep)."""
    places = [target.get("final_path"), target.get("output_path")]
    places += [r["file_path"] for r in store.review_history(target["variation_id"], target["run_id"])]
    for place in places:
        if place and Path(place).is_file():
            return Path(place), False
    key = target.get("cache_key")
    if verdict is Verdict.KEEP and key:
        entry = VariationCache(store.home / "cache" / "variations").get(key)
        if entry is not None:
            return entry.path, True
    return None, False


def _destination(store: Store, target: dict, verdict: Verdict, source: Path | None) -> Path | None:
    """Where the decision puts the file (``source`` itself when it is already in such a place)."""
    if source is None or not target.get("output_dir"):
        return None
    out = Path(target["output_dir"])
    rejected_dir = out / REJECTED_DIR
    in_rejected = _inside(source, rejected_dir)  # _rejected/sub/...: a source in a subfolder
    if verdict is Verdict.REJECT:
        if in_rejected or not _inside(source, out):
            return source
        return _free_path(rejected_dir, source.name)
    if _inside(source, out) and not _inside(source, rejected_dir):
        return source  # already among the accepted files
    first = Path(target["output_path"]) if target.get("output_path") else None
    if target.get("accepted") and first is not None and _inside(first, out) and not first.exists():
        return first  # rejected by a person, then kept again: back under the name the run gave it
    prefix = target.get("name_prefix") or next(
        (p for p in (prefix_of(Path(x).name) for x in (target.get("output_path"), target.get("final_path")) if x)
         if p), None)
    if prefix is None:
        raise InputError(f"variation {target['variation_id'][:12]} was recorded by an older varflow without its "
                         "file name; copy the file into the output folder by hand")
    taken = set(store.source_names_in(out, prefix)) | names_on_disk(out, prefix)
    # A later run that redoes the image (a call failed) numbers its files from v01 to its count again: a
    # kept file takes a number past those, so the redo never writes over it.
    taken |= {f"{prefix}-v{n:02d}.png" for n in range(1, (target.get("requested") or 0) + 1)}
    return out / next_accepted_name(prefix, taken)


def _inside(path: Path, folder: Path) -> bool:
    return path.is_relative_to(folder)


def _free_path(folder: Path, name: str) -> Path:
    candidate, n = folder / name, 2
    while candidate.exists():
        candidate = folder / f"{Path(name).stem}-{n}{Path(name).suffix}"
        n += 1
    return candidate


def _move(source: Path, dest: Path, *, copy: bool) -> None:
    """Put ``source`` at ``dest`` without replacing anything there (a hard link claims the name); remove
    ``source`` unless ``copy``. Across file systems, a temporary copy beside ``dest`` is linked in."""
    with writing(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not copy:
            try:
                os.link(source, dest)
                os.unlink(source)
                return
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
        fd, tmp = tempfile.mkstemp(prefix=".review-", suffix=".partial", dir=dest.parent)
        try:
            follow_umask(fd)
            os.close(fd)
            shutil.copyfile(source, tmp)
            _claim(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)
        if not copy:
            source.unlink()


def _claim(tmp: str, dest: Path) -> None:
    """Put the finished ``tmp`` at ``dest`` only if nothing is there: a hard link where the file system has
    them; else (exFAT, some SMB and FUSE mounts) an empty placeholder created exclusively, then replaced."""
    try:
        os.link(tmp, dest)
        return
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # FileExistsError: taken meanwhile
    os.replace(tmp, dest)


def _still_at(record: ReviewRecord, source: Path, exc: OSError) -> ReviewRecord:
    return replace(record, reviewed_at=utcnow(), file_path=str(source),
                   message=f"the file could not be moved: {exc.strerror or exc}")


def _said(record: ReviewRecord, source: Path | None, dest: Path | None) -> str:
    vid = record.variation_id[:12]
    if dest is None:
        return (f"{record.verdict} recorded for {vid}; its file is gone "
                "(not in the output folder, _rejected/ or the cache)")
    if source == dest:
        return f"{record.verdict} recorded for {vid}; its file stays at {dest}"
    return f"{record.verdict} recorded for {vid}; its file moved to {dest}"


@contextmanager
def _image_claimed(home: Path, image_id: str) -> Iterator[None]:
    """Hold the source image's claim while its file moves, as a run does while it makes variations of it:
    a run writing that image's files now would pick the same free name (or a redo write over a kept one)."""
    claims = ImageClaims(home / "claims", f"review by pid {os.getpid()}")
    if not claims.claim(image_id):
        raise InputError(f"a run is making variations of this image now ({for_log(claims.holder(image_id))}); "
                         "decide again when it has finished")
    try:
        yield
    finally:
        claims.release(image_id)


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One decision at a time per data directory: two reviewers keeping one file must not both move it."""
    path = home / _LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
