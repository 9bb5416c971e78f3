"""Write a run's gallery page: the store's rows plus thumbnails, rendered by varflow.reports.gallery.

Used by ``varflow report`` and by the flow at the end of every run. Pictures come from the
files the run left: the original, the accepted variation, a rejected one kept under
``_rejected/`` (``--keep-rejected``), or else the small thumbnail the run kept of it under the
data directory (varflow/images/thumbnails.py); a card whose picture is gone says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from varflow.storage.analysis import resolve_run, run_rows

from varflow.images.imageio import write_bytes_atomic
from varflow.images.locations import exists, local_copy
from varflow.images.thumbnails import jpeg_data_uri, rejected_thumbnail_path, thumbnail_jpeg
from varflow.reports.gallery import Card, Source, render_gallery
from varflow.settings import GALLERY

REPORTS_DIR = "reports"
THUMBNAIL_THREADS = 2  # Pillow decodes and resizes without the GIL


def run_gallery_path(home: str | Path, run_id: str, execution: int = 1) -> Path:
    """Where the flow writes a run's gallery (inside the data directory); a retried flow run's
    later executions get pages of their own (``run-<id>.x<n>.html``), as their rows do."""
    return Path(home) / REPORTS_DIR / (f"run-{run_id}" + (f".x{execution}" if execution > 1 else "") + ".html")


def _thumbnail(path: str | Path | None) -> str | None:
    """A file's or an object's thumbnail (an object is fetched: buckets are read where the page is written)."""
    if not exists(path):
        return None
    try:
        with local_copy(path) as local:
            return jpeg_data_uri(thumbnail_jpeg(local))
    except Exception:  # unreadable now (moved, truncated, replaced): the card says it is missing
        return None


def _stored_thumbnail(path: Path) -> str | None:
    try:
        return jpeg_data_uri(path.read_bytes())
    except OSError:
        return None


def _picture(home: Path, run_id: str, row: dict) -> tuple[Callable[[], str | None], str]:
    """How to get a variation's thumbnail, and what the card says about where it came from."""
    path = row.get("output_path")
    if row.get("accepted"):
        if exists(path):
            return (lambda: _thumbnail(path)), "the accepted file"
        return (lambda: None), f"accepted file no longer at {path}"
    if exists(path):
        return (lambda: _thumbnail(path)), "kept under _rejected/"
    kept = rejected_thumbnail_path(home, run_id, row["variation_id"])
    if kept.is_file():
        return (lambda: _stored_thumbnail(kept)), "file deleted; thumbnail kept by the run"
    return (lambda: None), "file not kept (--keep-rejected keeps rejected files)"


def build_gallery(home: str | Path, run_id: str | None = None, *, execution: int | None = None,
                  max_images: int = GALLERY.max_images) -> tuple[str, dict]:
    """The page's HTML and the run's row, for ``run_id`` (a unique prefix) or the latest run, its
    latest execution or ``execution``."""
    home = Path(home)
    run = resolve_run(home, run_id, execution)
    rows = run_rows(home, run["run_id"], run["execution"])
    by_image: dict[str, list[dict]] = defaultdict(list)
    for v in rows.variations:
        by_image[v["image_id"]].append(v)
    failed: dict[str, dict[str, int]] = defaultdict(dict)
    for f in rows.failed_calls:
        failed[f["image_id"]][f["outcome"]] = f["calls"]
    sources, not_processed, claimed = [], [], set()
    for img in rows.images:
        # A second path with the same bytes is a 'skipped' row sharing the image_id: the
        # variations belong to the processed one.
        if img["status"] != "skipped" and img["image_id"] not in claimed and (
                img["status"] == "ok" or by_image.get(img["image_id"])):
            claimed.add(img["image_id"])
            sources.append(img)
        else:
            not_processed.append(img)
    shown, hidden = sources[:max_images], max(0, len(sources) - max_images)

    jobs = []  # (setter, thumbnail function) pairs, run on a small pool
    page_sources = []
    for img in shown:
        src = Source(img, None, failed_calls=failed.get(img["image_id"], {}))
        jobs.append((src, "thumbnail", lambda p=img["path"]: _thumbnail(p)))
        for v in sorted(by_image.get(img["image_id"], []), key=lambda r: r["attempt"]):
            make, note = _picture(home, run["run_id"], v)
            card = Card(v, None, note)
            src.cards.append(card)
            jobs.append((card, "thumbnail", make))
        page_sources.append(src)
    with ThreadPoolExecutor(THUMBNAIL_THREADS) as pool:
        for (obj, attr, _), uri in zip(jobs, pool.map(lambda job: job[2](), jobs)):
            setattr(obj, attr, uri)

    more = (f"`varflow report {run['run_id']} --max-images {len(sources)}` shows them all." if hidden else "")
    page = render_gallery(run=rows.run, parameters=rows.parameters, sources=page_sources,
                          not_processed=not_processed, hidden_sources=hidden, more_hint=more)
    return page, rows.run


def write_gallery(home: str | Path, out: str | Path, run_id: str | None = None, *, execution: int | None = None,
                  max_images: int = GALLERY.max_images) -> Path:
    """Write the gallery of ``run_id`` (default: the latest run; its latest execution, or
    ``execution``) to ``out``; returns its path."""
    page, _ = build_gallery(home, run_id, execution=execution, max_images=max_images)
    out = write_bytes_atomic(page.encode("utf-8"), out)
    return out
