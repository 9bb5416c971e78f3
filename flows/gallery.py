"""Write a run's gallery page: the store's rows plus thumbnails, rendered by varflow.reports.gallery.

Used by ``varflow report``, by the flow at the end of every run and (its rows and pictures) by
``varflow review serve`` (flows/review_server.py). Pictures come from where each file is now, after
any review (``variation_status.final_path``): the original, the accepted variation, one under
``_rejected/`` (``--keep-rejected``, or rejected by a person), or else the small thumbnail the run kept
of a deleted one under the data directory (varflow/images/thumbnails.py); a card whose picture is
gone says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from varflow.flows.review import REJECTED_DIR
from varflow.storage.analysis import RunRows, resolve_run, run_rows

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


def picture_of(home: Path, run_id: str, row: dict) -> tuple[str | Path | None, bool, str]:
    """Where a variation's picture comes from now, after any review (``final_path``): (the file or object,
    or None; whether it is the small thumbnail the run kept of a deleted rejection; what the card says of it)."""
    path = row.get("final_path", row.get("output_path"))
    if exists(path):
        in_rejected = f"/{REJECTED_DIR}/" in str(path) or str(path).startswith(f"{REJECTED_DIR}/")
        return path, False, ("kept under _rejected/" if in_rejected else "the accepted file")
    kept = rejected_thumbnail_path(home, run_id, row["variation_id"])
    if kept.is_file():
        gone = "file gone" if row.get("verdict") == "keep" else "file deleted"
        return kept, True, f"{gone}; thumbnail kept by the run"
    if path:
        return None, False, f"file no longer at {path}"
    if row.get("verdict") == "keep":
        return None, False, "file gone (not in the output folder, _rejected/ or the cache)"
    return None, False, "file not kept (--keep-rejected keeps rejected files)"


def _picture(home: Path, run_id: str, row: dict) -> tuple[Callable[[], str | None], str]:
    """How to get a variation's thumbnail as a data URI, and what the card says about where it came from."""
    path, stored, note = picture_of(home, run_id, row)
    if path is None:
        return (lambda: None), note
    return (lambda: _stored_thumbnail(path) if stored else _thumbnail(path)), note


@dataclass
class GalleryRows:
    """One execution of a run as its gallery shows it: the sources on the page with their variations
    (``variation_status`` rows: the run's decision and the latest review), and what is left off."""

    run: dict
    rows: RunRows
    shown: list[tuple[dict, list[dict]]]  # (image row, its variations by attempt)
    failed: dict[str, dict[str, int]]
    not_processed: list[dict]
    hidden: int


def gallery_rows(home: Path, run_id: str | None = None, *, execution: int | None = None,
                 max_images: int = GALLERY.max_images) -> GalleryRows:
    """The rows of ``run_id`` (a unique prefix) or the latest run: its latest execution, or ``execution``."""
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
    shown = [(img, sorted(by_image.get(img["image_id"], []), key=lambda r: r["attempt"]))
             for img in sources[:max_images]]
    return GalleryRows(run, rows, shown, failed, not_processed, max(0, len(sources) - max_images))


def build_gallery(home: str | Path, run_id: str | None = None, *, execution: int | None = None,
                  max_images: int = GALLERY.max_images) -> tuple[str, dict]:
    """The page's HTML (thumbnails embedded) and the run's row, for ``run_id`` (a unique prefix) or the
    latest run, its latest execution or ``execution``."""
    home = Path(home)
    g = gallery_rows(home, run_id, execution=execution, max_images=max_images)
    jobs = []  # (object, thumbnail function) pairs, run on a small pool
    page_sources = []
    for img, variations in g.shown:
        src = Source(img, None, failed_calls=g.failed.get(img["image_id"], {}))
        jobs.append((src, lambda p=img["path"]: _thumbnail(p)))
        for v in variations:
            make, note = _picture(home, g.run["run_id"], v)
            card = Card(v, None, note)
            src.cards.append(card)
            jobs.append((card, make))
        page_sources.append(src)
    with ThreadPoolExecutor(THUMBNAIL_THREADS) as pool:
        for (obj, _), uri in zip(jobs, pool.map(lambda job: job[1](), jobs)):
            obj.thumbnail = uri

    total = len(g.shown) + g.hidden
    more = (f"`varflow report {g.run['run_id']} --max-images {total}` shows them all." if g.hidden else "")
    page = render_gallery(run=g.rows.run, parameters=g.rows.parameters, sources=page_sources,
                          not_processed=g.not_processed, hidden_sources=g.hidden, more_hint=more)
    return page, g.rows.run


def write_gallery(home: str | Path, out: str | Path, run_id: str | None = None, *, execution: int | None = None,
                  max_images: int = GALLERY.max_images) -> Path:
    """Write the gallery of ``run_id`` (default: the latest run; its latest execution, or
    ``execution``) to ``out``; returns its path."""
    page, _ = build_gallery(home, run_id, execution=execution, max_images=max_images)
    out = write_bytes_atomic(page.encode("utf-8"), out)
    return out
