"""The run gallery: written by the flow and by ``varflow report``, opened in headless Chromium
(Debian's, through Playwright), its pictures loaded, its counts the store's, its filters working."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TRICKY_NAME
from varflow.storage import Store

from varflow.reports.gallery import Card, Source, render_gallery

ROOT = Path(__file__).resolve().parents[1]
@pytest.fixture(scope="module")
def report(local_run_store, tmp_path_factory):
    """``varflow report`` of the local run (the latest run by default), written by the CLI."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    env = {**os.environ, "VARFLOW_HOME": str(local_run_store["home"])}
    done = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "report", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    return out


def store_counts(home: Path) -> dict:
    s = Store(home)
    v = s.query("SELECT count(*) FILTER (accepted) AS accepted, count(*) FILTER (NOT accepted) AS rejected "
                "FROM variations")[0]
    reasons: dict[str, int] = {}
    for r in s.query("SELECT reject_reason FROM variations WHERE NOT accepted"):
        for reason in r["reject_reason"].split(";"):
            reasons[reason] = reasons.get(reason, 0) + 1
    images = s.query("SELECT count(*) AS n FROM images WHERE status = 'ok'")[0]["n"]
    return {**v, "reasons": reasons, "images": images}


def test_the_flow_writes_the_gallery_and_the_summary_names_it(local_run_store):
    summary = local_run_store["summary"]
    path = Path(summary["gallery_path"])
    assert path == local_run_store["home"] / "reports" / f"run-{summary['run_id']}.html"
    assert path.is_file() and summary["run_id"] in path.read_text()


def test_the_page_is_self_contained_and_escapes_every_text(report, local_run_store):
    page = report.read_text()
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/jpeg;base64,") for s in sources)
    counts = store_counts(local_run_store["home"])
    # rejected files were deleted: their pictures are the thumbnails the run kept
    assert len(sources) == counts["images"] + counts["accepted"] + counts["rejected"]
    assert not re.search(r'(src|href)="(https?:|file:|//)', page)  # nothing to fetch
    assert "<img src=x" not in page and "onerror=alert(1)>" not in page
    assert "photo &lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot;.png" in page


def test_in_chromium_images_load_counts_match_the_store_and_filters_work(browser, report, local_run_store,
                                                                          tmp_path_factory):
    counts = store_counts(local_run_store["home"])
    assert counts["accepted"] > 0 and counts["rejected"] > 0  # the run made both
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    assert all(u.startswith(("file:", "data:")) for u in requests), requests  # works offline, from disk
    loaded = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    # every original, every accepted file and every rejected one's kept thumbnail is on the page
    assert len(loaded) == counts["images"] + counts["accepted"] + counts["rejected"] and all(loaded)
    visible = "document.querySelectorAll('.card[data-verdict]:not([hidden])').length"
    assert page.locator(".card[data-verdict=accepted]").count() == counts["accepted"]
    assert page.locator(".card[data-verdict=rejected]").count() == counts["rejected"]
    assert page.locator("section.source").count() == counts["images"]
    assert page.evaluate(visible) == counts["accepted"] + counts["rejected"]
    # the file name full of HTML is shown as text, and injected nothing
    assert TRICKY_NAME in page.locator("section.source h2").all_inner_texts()
    assert page.evaluate("document.querySelectorAll('img[src=x], script:not(:last-of-type)').length") == 0

    shots = tmp_path_factory.mktemp("screenshots")
    page.screenshot(path=str(shots / "gallery.png"))
    page.click("button.seg[data-verdict=accepted]")
    assert page.evaluate(visible) == counts["accepted"]
    page.click("button.seg[data-verdict=rejected]")
    assert page.evaluate(visible) == counts["rejected"]
    reason, n = max(counts["reasons"].items(), key=lambda kv: kv[1])
    page.click(f"button.chip.reason[data-reason={reason}]")
    assert page.evaluate(visible) == n
    assert page.locator("#shown").inner_text() == f"showing {n} of {counts['accepted'] + counts['rejected']} variations"
    page.screenshot(path=str(shots / f"gallery-rejected-{reason}.png"))
    saved = os.environ.get("VARFLOW_SCREENSHOTS")  # a folder to keep them in, e.g. for a reviewer
    if saved:
        Path(saved).mkdir(parents=True, exist_ok=True)
        for f in shots.glob("*.png"):
            shutil.copy(f, Path(saved) / f.name)
    assert (shots / "gallery.png").stat().st_size > 10_000
    page.close()


def _row(attempt: int, **kw) -> dict:
    base = dict(variation_id=f"v{attempt}", image_id="img", attempt=attempt, variation_type="style_change",
                similarity=0.5, diversity=None, aesthetic=0.7, color_variance=1.0, contrast=0.5,
                brightness_balance=0.9, sharpness=1.0, object_integrity=1.0, overall_quality=0.7,
                accepted=True, reject_reason=None, duplicate_of=None, prompt="p")
    return {**base, **kw}


def test_render_marks_failing_scores_links_duplicates_and_says_what_is_missing():
    run = dict(run_id="r1", status="completed", backend="local", model="local-v1", input_dir="/in",
               output_dir="/out", wall_seconds=1.0, message='<i>stopped</i> "early"')
    image = dict(image_id="img", path="/in/a.png", status="ok", width=10, height=10, requested=2, attempts=3,
                 quality_level="high", error=None)
    cards = [Card(_row(0), "data:image/jpeg;base64,AA==", "the accepted file"),
             Card(_row(1, accepted=False, reject_reason="similarity_low;below_level_threshold", similarity=0.2),
                  None, "file not kept (--keep-rejected keeps rejected files)"),
             Card(_row(2, accepted=False, reject_reason="duplicate", duplicate_of="v0", similarity=None), None,
                  "file not kept")]
    page = render_gallery(run=run, parameters={"prompt": "<b>p</b>"}, sources=[Source(image, None, cards)],
                          not_processed=[dict(path="/in/bad.png", status="error", error="bad <file>")])
    assert "&lt;i&gt;stopped&lt;/i&gt; &quot;early&quot;" in page and "<i>stopped" not in page
    assert "&lt;b&gt;p&lt;/b&gt;" in page and "bad &lt;file&gt;" in page
    card1 = page[page.index('id="v-v1"'):page.index('id="v-v2"')]
    assert re.search(r'class="score bad"><span>similarity</span>.*?<b>0.200</b>', card1)
    assert re.search(r'class="score bad"><span>overall</span>', card1)
    assert 'class="score bad"><span>aesthetic' not in card1
    assert "file not kept (--keep-rejected keeps rejected files)" in card1
    card2 = page[page.index('id="v-v2"'):]
    assert 'duplicate of <a href="#v-v0">attempt 0</a>' in card2
    assert "original not found" in page
    assert re.search(r"<b>1</b><span>accepted</span>.*<b>2</b><span>rejected</span>.*<b>1</b><span>duplicates</span>"
                     r".*<b>3</b><span>attempts</span>.*<b>33%</b><span>acceptance</span>", page)
    assert "gave no image" not in page
    failed = render_gallery(run=run, parameters={}, sources=[Source({**image, "attempts": 5}, None, cards)],
                            not_processed=[])
    assert re.search(r"<b>2</b><span>gave no image</span>.*<b>5</b><span>attempts</span>", failed)


def test_thumbnails_are_small_upright_jpegs_and_old_runs_are_pruned(tmp_path):
    import time

    from conftest import skimage_photo
    from PIL import Image

    from varflow.images.thumbnails import prune_thumbnails, rejected_thumbnail_path, save_thumbnail, thumbnail_jpeg

    data = thumbnail_jpeg(skimage_photo("rocket.jpg"), max_side=100)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and max(im.size) == 100 and im.size == (100, 67)  # rocket.jpg is 640 x 427
    for i in range(4):
        dest = save_thumbnail(skimage_photo("coffee.png"), rejected_thumbnail_path(tmp_path, f"run{i}", "v" * 64))
        assert dest.parent.name == f"run-run{i}" and dest.stat().st_size > 0
        os.utime(dest.parent, (time.time() - 100 + i, time.time() - 100 + i))
    assert prune_thumbnails(tmp_path, keep_runs=2) == 2
    assert sorted(d.name for d in (tmp_path / "thumbnails").iterdir()) == ["run-run2", "run-run3"]


def test_the_run_report_artifact_and_the_printed_summary_link_the_gallery(tmp_path):
    from varflow.flows.report import RunSummary

    page = tmp_path / "reports" / "run-r1.html"
    s = RunSummary(run_id="r1", status="completed", input_dir="/in", output_dir="/out", home=str(tmp_path),
                   duckdb_path="/h/varflow.duckdb", backend="local", model="local-v1", gallery_path=str(page))
    assert f"| gallery | [run-r1.html]({page.as_uri()})" in s.render_markdown()
    assert f"  gallery      {page} (open it in a browser)" in s.render_text()
    without = RunSummary(run_id="r1", status="completed", input_dir="/in", output_dir="/out", home="/h",
                         duckdb_path="/d", backend="local", model="local-v1")
    assert "gallery" not in without.render_text() and "gallery" not in without.render_markdown()
