"""Every file varflow writes follows the process's umask, as ``open()`` would make it.

Files are written to a temporary name and renamed; ``tempfile.mkstemp`` makes that name 0600
whatever the umask, so each writer gives it ``file_mode()`` before the rename. Forcing a mode
instead (0644) would make thumbnails of private photos world-readable under ``umask 077``.
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it (another thread may be creating a file)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: set and restore
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0644 under 022, 0640 under 027)."""
    return 0o666 & ~current_umask()


def follow_umask(fd: int) -> None:
    """Give the file open as ``fd`` (a ``mkstemp`` file) the mode the umask asks for."""
    os.fchmod(fd, file_mode())
