"""Write errors that name the file: a full disk (ENOSPC), a quota or a read-only mount.

Arrow's and shutil's write errors often say "No space left on device" with no file, or with a
temporary name; the record of the image it hit must say which file could not be written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Re-raise an ``OSError`` of the block as one naming ``path`` (its errno kept)."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None or exc.filename == str(path):
            raise
        raise OSError(exc.errno, f"{os.strerror(exc.errno)}: cannot write", str(path)) from exc
