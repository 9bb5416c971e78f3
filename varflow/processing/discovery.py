"""Finding the images of a folder: recursive, deterministic, safe against symlink loops."""

from __future__ import annotations

import os
from pathlib import Path

from varflow.errors import ConfigurationError
from varflow.settings import IMAGE_EXTENSIONS


def normalize_extensions(extensions) -> tuple[str, ...]:
    out = []
    for ext in extensions:
        ext = ext.strip().lower()
        if not ext:
            continue
        out.append(ext if ext.startswith(".") else "." + ext)
    if not out:
        raise ConfigurationError("no image extensions given; pass e.g. png,jpg,jpeg")
    return tuple(dict.fromkeys(out))


def discover_images(
    root: str | Path,
    *,
    extensions=IMAGE_EXTENSIONS,
    exclude: list[str | Path] = (),
) -> list[Path]:
    """Image files below ``root`` in a stable order (sorted path components).

    Hidden files and folders (a leading dot) are skipped; symlinked folders are followed once
    (a loop back to a folder already seen is skipped); ``exclude`` folders (e.g. the output
    folder when it lies inside the input) are not entered. A file link that leads nowhere (its
    target gone, or a loop) is listed, so the run records it instead of dropping it silently.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"input folder {root} does not exist; pass an existing folder of images")
    exts = normalize_extensions(extensions)
    if root.is_file():
        return [root] if root.suffix.lower() in exts else []
    excluded = {os.path.realpath(p) for p in exclude}
    seen_dirs: set[tuple[int, int]] = set()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        ident = (st.st_dev, st.st_ino)
        if ident in seen_dirs or os.path.realpath(dirpath) in excluded:
            dirnames[:] = []
            continue
        seen_dirs.add(ident)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in exts:
                path = Path(dirpath) / name
                if path.is_file() or path.is_symlink():  # a broken or looping link is kept: scan records it
                    found.append(path)
    return found
