"""Which input paths a run may read: regular files, inside the input folder unless links may leave it.

Opening a FIFO waits for a writer for ever, ``/dev/zero`` never ends and a socket cannot be read:
such a path (named directly or through a link) is recorded with a message and never opened.
Links are followed inside the input folder; one that leaves it (a shared inbox holding a link
to any file the worker can read) is recorded unless the run allows it (``--follow-links``).
A folder that cannot be listed is recorded too, instead of its images silently missing.
Every check here is ``lstat``/``stat`` or ``scandir``: nothing is opened.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

FOLLOW_LINKS_HINT = "pass --follow-links (the run's follow_links parameter) to allow links that leave it"

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or below it (both as given: resolve them first)."""
    path, folder = str(path), str(folder).rstrip(os.sep) or os.sep
    return path == folder or path.startswith(folder + os.sep) or folder == os.sep


def leaves_folder(path: str | Path, root: str | Path) -> str | None:
    """The target of ``path`` when following its links ends outside ``root``, else None."""
    target = os.path.realpath(path)
    return None if is_inside(target, os.path.realpath(root)) else target


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def input_problem(path: str | Path, root: str | Path, *, follow_links: bool = False) -> str | None:
    """Why ``path`` (found below ``root``) must not be read, as the one line recorded for it; None
    for a regular file the run may read."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror}); check the path and permissions"
    via = ""
    if stat.S_ISLNK(st.st_mode):
        try:
            st = os.stat(path)
        except OSError as exc:
            return f"{path}: is a symbolic link that leads nowhere ({exc.strerror}); point it at an image or remove it"
        outside = leaves_folder(path, root)
        if outside is not None and not follow_links:
            return (f"{path}: is a link to {outside}, outside the input folder {root}; not followed: "
                    f"move the file into the folder, or {FOLLOW_LINKS_HINT}")
        via = f" (the link's target {os.path.realpath(path)})"
    if stat.S_ISDIR(st.st_mode):
        try:
            with os.scandir(path):
                pass
        except OSError as exc:
            return (f"{path}: folder cannot be read ({exc.strerror}); its images were not looked at; "
                    "check its permissions")
        return None  # a readable folder listed by discovery is walked, not read
    if not stat.S_ISREG(st.st_mode):
        return (f"{path}: is {kind_of(st.st_mode)}{via}, not a regular file; not read: "
                "replace it with the image file or remove it")
    return None


def open_regular(path: str | Path):
    """``path`` opened for reading, only if it is a regular file (checked on the opened file, so a
    file swapped for a FIFO after the check cannot block: O_NONBLOCK makes the open return)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"{kind_of(mode)}, not a regular file", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
