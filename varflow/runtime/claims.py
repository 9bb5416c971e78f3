"""Claims on image contents, held in the data directory: two runs never process one image at once.

A run claims an image's content (its ``image_id``) before processing it and releases the claim
when the image's rows are written. A claim is an ``flock`` on ``<home>/claims/<image_id>.lock``:
the operating system drops it when its process dies, however it dies (SIGKILL included), so a
killed run's claims free themselves; and because it lives in the data directory, it holds for
runs started from the CLI, from the Prefect UI, or on two machines sharing the directory (an NFS
v4 mount turns ``flock`` into a lock the server keeps).

The claim file says who holds it (host, pid, run), so a run that finds an image claimed can say
by whom. A run that finishes an image leaves a marker named by its job key in ``claims/done/``, so
another run that claims the image later can tell, from one file, that it was finished meanwhile
(asking the store instead cost a query of every part per image; bench/scale_out.py).
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from pathlib import Path

DONE_MARKERS_KEPT_S = 7 * 24 * 3600  # older markers are pruned: the store says what finished before a run started


class ImageClaims:
    """The claims one run holds in a data directory's ``claims/`` folder."""

    def __init__(self, directory: str | Path, run_id: str):
        self.directory = Path(directory)
        self.run_id = run_id
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def path(self, image_id: str) -> Path:
        return self.directory / f"{image_id}.lock"

    def claim(self, image_id: str) -> bool:
        """Take the claim on ``image_id``; False when another live process holds it."""
        with self._lock:
            if image_id in self._held:
                return True
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.path(image_id)
            while True:
                fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    return False
                # A holder that released meanwhile unlinks the file: the lock we got may be on a
                # file nobody else can see. Only a lock on the file at ``path`` counts.
                try:
                    same = os.fstat(fd).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"host {socket.gethostname()} pid {os.getpid()} run {self.run_id}\n".encode())
            except OSError as exc:  # a full disk: no claim, and no lock left held
                path.unlink(missing_ok=True)
                os.close(fd)
                raise OSError(exc.errno, f"{os.strerror(exc.errno or 0)}: cannot write", str(path)) from exc
            self._held[image_id] = fd
            return True

    def done_path(self, job_key: str) -> Path:
        return self.directory / "done" / job_key

    def finished_since(self, job_key: str, since: float) -> bool:
        """True if a run finished ``job_key`` at or after ``since`` (a ``time.time()``)."""
        try:
            return self.done_path(job_key).stat().st_mtime >= since
        except FileNotFoundError:
            return False

    def prune_done(self, *, older_than_s: float = DONE_MARKERS_KEPT_S) -> int:
        cutoff, removed = time.time() - older_than_s, 0
        for marker in (self.directory / "done").glob("*") if (self.directory / "done").is_dir() else ():
            try:
                if marker.stat().st_mtime < cutoff:
                    marker.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def release(self, image_id: str, *, finished_job: str | None = None) -> None:
        """Release the claim; ``finished_job``: the job key the image finished (its marker is left
        before the claim goes, so a run that takes the claim next sees it)."""
        with self._lock:
            fd = self._held.pop(image_id, None)
            if fd is None:
                return
            try:
                if finished_job:
                    marker = self.done_path(finished_job)
                    marker.parent.mkdir(exist_ok=True)
                    marker.touch()
            finally:  # a marker a full disk refused still frees the claim
                self.path(image_id).unlink(missing_ok=True)  # while still locked: see claim()
                os.close(fd)

    def release_all(self) -> None:
        for image_id in list(self._held):
            self.release(image_id)

    def holder(self, image_id: str) -> str:
        """Who holds the claim, as its file says ("host h pid p run r"), or "another run"."""
        try:
            text = self.path(image_id).read_text().strip()
        except OSError:
            text = ""
        return text or "another run"


def free_claims_of(directory: str | Path, run_id: str) -> int:
    """Remove the claim files a run that ended left behind (its process died or was cancelled:
    the OS dropped the locks, the files still name it); a claim some live process holds stays.
    Returns how many were removed."""
    removed = 0
    for path in Path(directory).glob("*.lock") if Path(directory).is_dir() else ():
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live process
            os.close(fd)
            continue
        try:
            if f" run {run_id}" in os.pread(fd, 512, 0).decode(errors="replace"):
                path.unlink(missing_ok=True)  # while locked, as ImageClaims.release does
                removed += 1
        finally:
            os.close(fd)
    return removed
