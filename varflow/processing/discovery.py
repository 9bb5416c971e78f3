"""Finding the images of a folder: recursive, deterministic, safe against symlink loops."""

from __future__ import annotations

import os
from pathlib import Path

from varflow.errors import ConfigurationError
from varflow.images.inputs import leaves_folder
from varflow.images.locations import ObjectFolder, is_url
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
    follow_links: bool = False,
    folder: ObjectFolder | None = None,
) -> list[Path] | list[str]:
    """Image files below ``root`` in a stable order (sorted path components).

    Hidden files and folders (a leading dot) are skipped; symlinked folders inside ``root`` are
    followed once (a loop back to a folder already seen is skipped); ``exclude`` folders (e.g. the
    output folder when it lies inside the input) are not entered. Listed, so the run records them
    instead of dropping them silently (varflow/images/inputs.py says why each is not read): a file link
    that leads nowhere (its target gone, or a loop), a FIFO, device or socket with an image's
    extension, a folder that cannot be listed, and a folder link leaving ``root`` (unless
    ``follow_links``). Nothing found here is opened.

    A bucket (``root`` a URL; ``folder`` its ``ObjectFolder``, which keeps each object's ETag and
    size for the scan) is listed by the same rules: its objects' URLs, in the same order.
    """
    if is_url(root):
        folder = folder or ObjectFolder(str(root))
        return folder.list_images(normalize_extensions(extensions), exclude=[str(x) for x in exclude])
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"input folder {root} does not exist; pass an existing folder of images")
    exts = normalize_extensions(extensions)
    if not root.is_dir():
        return [root] if root.suffix.lower() in exts else []
    excluded = {os.path.realpath(p) for p in exclude}
    seen_dirs: set[tuple[int, int]] = set()
    found: list[Path] = []

    def unlisted(err: OSError) -> None:  # a folder that cannot be listed: recorded by the scan
        if err.filename is not None and os.path.realpath(err.filename) not in excluded:
            found.append(Path(err.filename))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unlisted):
        st = os.stat(dirpath)
        ident = (st.st_dev, st.st_ino)
        if ident in seen_dirs or os.path.realpath(dirpath) in excluded:
            dirnames[:] = []
            continue
        seen_dirs.add(ident)
        walk = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            sub = Path(dirpath) / d
            if not follow_links and os.path.islink(sub) and leaves_folder(sub, root) is not None \
                    and os.path.realpath(sub) not in excluded:
                found.append(sub)  # recorded, not walked
            else:
                walk.append(d)
        dirnames[:] = walk
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                found.append(Path(dirpath) / name)  # scan records what may not be read
    return found
