"""Small JPEG thumbnails for the run gallery, and where rejected variations' thumbnails live.

A rejected variation's file is deleted after judging (unless ``--keep-rejected``), so the
pipeline keeps a thumbnail of it under the data directory; the gallery reads it from there.
"""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

from PIL import Image

from varflow.images.imageio import load_rgb, write_bytes_atomic
from varflow.settings import GALLERY

THUMBNAILS_DIR = "thumbnails"


def thumbnail_jpeg(path: str | Path, *, max_side: int = GALLERY.thumbnail_px,
                   quality: int = GALLERY.jpeg_quality) -> bytes:
    """JPEG bytes of the image at ``path``, upright, alpha on white, long side at most ``max_side``."""
    if max_side < 1:
        raise ValueError(f"max_side={max_side} must be at least 1 pixel")
    rgb = load_rgb(path, max_side=max_side)  # JPEGs decode at a reduced DCT scale
    rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def jpeg_data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def rejected_thumbnail_path(home: str | Path, run_id: str, variation_id: str) -> Path:
    """Where the thumbnail of a rejected (deleted) variation of ``run_id`` is kept."""
    return Path(home) / THUMBNAILS_DIR / f"run-{_safe(run_id)}" / f"{_safe(variation_id)[:40]}.jpg"


def save_thumbnail(src: str | Path, dest: str | Path) -> Path:
    """Write ``src``'s thumbnail to ``dest`` (temp name, then rename: a reader never sees half)."""
    return write_bytes_atomic(thumbnail_jpeg(src), dest)


def prune_thumbnails(home: str | Path, *, keep_runs: int = GALLERY.keep_runs) -> int:
    """Delete the rejected thumbnails of all but the ``keep_runs`` most recently written runs;
    returns how many runs' folders were removed. Without this they would grow with every run."""
    base = Path(home) / THUMBNAILS_DIR
    runs = sorted((d for d in base.glob("run-*") if d.is_dir()), key=_mtime, reverse=True)
    for d in runs[keep_runs:]:
        shutil.rmtree(d, ignore_errors=True)
    return max(0, len(runs) - keep_runs)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile by another run's pruning
        return 0.0


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)
