"""The flow end to end on real folders: files on disk, rows in DuckDB and Parquet, the summary."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES
from PIL import Image
from varflow.flows.parameters import RunParameters
from varflow.flows.variation_flow import run_local
from varflow.storage import Store


def run(photo_dir, tmp_path, **kw):
    params = RunParameters(input_dir=str(photo_dir), output_dir=str(tmp_path / "out"),
                           home=str(tmp_path / "home"), **kw)
    return run_local(params), Store(tmp_path / "home")


@pytest.fixture(scope="module")
def mixed_run(prefect_server, tmp_path_factory):
    """One run over three real photos plus every bad fixture, shared by the assertions below."""
    tmp = tmp_path_factory.mktemp("mixed")
    photos = tmp / "photos"
    (photos / "sub").mkdir(parents=True)
    from conftest import skimage_photo

    shutil.copy(skimage_photo("astronaut.png"), photos / "astronaut.png")
    shutil.copy(skimage_photo("coffee.png"), photos / "coffee.png")
    shutil.copy(skimage_photo("rocket.jpg"), photos / "sub" / "rocket.jpg")
    shutil.copy(FIXTURES / "good" / "half-transparent.png", photos / "sub" / "half-transparent.png")
    for bad in ["zero-bytes.jpg", "not-an-image.png", "truncated.png", "bomb.png"]:
        shutil.copy(FIXTURES / "bad" / bad, photos / bad)
    summary, store = run(photos, tmp, count=3, prompt="golden hour", seed=7, level="medium",
                         keep_rejected=True)
    return summary, store, tmp


def test_bad_images_are_recorded_with_clear_errors_and_the_rest_succeed(mixed_run):
    summary, store, tmp = mixed_run
    rows = {Path(r["path"]).name: r for r in store.query("SELECT path, status, error FROM images")}
    assert {n: r["status"] for n, r in rows.items()} == {
        "astronaut.png": "ok", "coffee.png": "ok", "rocket.jpg": "ok", "half-transparent.png": "ok",
        "zero-bytes.jpg": "error", "not-an-image.png": "error", "truncated.png": "error", "bomb.png": "error",
    }
    assert "is empty (0 bytes)" in rows["zero-bytes.jpg"]["error"]
    assert "decompression bomb" in rows["bomb.png"]["error"]
    assert rows["truncated.png"]["error"].startswith(str(tmp / "photos" / "truncated.png"))
    assert (summary["images_ok"], summary["images_error"], summary["status"]) == (4, 4, "completed")


def test_accepted_files_on_disk_match_the_variations_table(mixed_run):
    summary, store, tmp = mixed_run
    accepted = store.query("SELECT output_path FROM variations WHERE accepted ORDER BY output_path")
    on_disk = sorted(str(p) for p in (tmp / "out").rglob("*-v*.png") if "_rejected" not in p.parts)
    assert [r["output_path"] for r in accepted] == on_disk
    assert len(on_disk) == summary["variations_accepted"] > 0
    assert all(p.startswith(str(tmp / "out")) for p in on_disk)
    import re

    assert all(re.search(r"/[a-z-]+-[0-9a-f]{8}-v0\d\.png$", p) for p in on_disk), on_disk
    assert any("/sub/rocket-" in p for p in on_disk) or not any("rocket" in p for p in on_disk)
    for p in on_disk:
        with Image.open(p) as im:
            assert im.mode == "RGB"


def test_rejected_files_are_kept_for_review_when_asked(mixed_run):
    _, store, tmp = mixed_run
    rejected = store.query("SELECT output_path, reject_reason FROM variations WHERE NOT accepted")
    for r in rejected:
        assert "/_rejected/" in r["output_path"] and Path(r["output_path"]).exists()
        assert r["reject_reason"].split(";")[0] in Path(r["output_path"]).name


def test_every_attempt_is_recorded_and_counts_agree(mixed_run):
    summary, store, _ = mixed_run
    (n_attempts,) = store.query("SELECT count(*) AS n FROM attempts")[0].values()
    (image_attempts,) = store.query("SELECT sum(attempts) AS n FROM images")[0].values()
    assert n_attempts == image_attempts == summary["attempts"]
    judged = store.query("SELECT count(*) AS n, sum(accepted::INT) AS a FROM variations")[0]
    assert judged["a"] == summary["variations_accepted"]
    assert judged["n"] - judged["a"] == summary["variations_rejected"]
    reasons = Counter()
    for r in store.query("SELECT reject_reason FROM variations WHERE NOT accepted"):
        reasons.update(r["reject_reason"].split(";"))
    assert dict(reasons) == summary["rejected_by_reason"]
    per_image = store.query("SELECT attempts, accepted, requested, quality_level FROM images WHERE status = 'ok'")
    for r in per_image:  # the enhanced loop's budget: count x max attempts (medium: 2)
        assert r["accepted"] <= r["requested"] == 3
        assert r["attempts"] <= 3 * 2
        assert r["accepted"] == 3 or r["attempts"] == 6


def test_the_run_row_and_the_compacted_parquet(mixed_run):
    summary, store, _ = mixed_run
    run = store.query("SELECT * FROM runs")
    assert len(run) == 1
    assert run[0]["status"] == "completed" and run[0]["finished_at"] is not None
    assert run[0]["variations_accepted"] == summary["variations_accepted"]
    compacted = store.tables_dir / "variations" / f"run-{summary['run_id']}" / "compacted.parquet"
    assert pq.read_table(compacted).num_rows == store.query("SELECT count(*) AS n FROM variations")[0]["n"]


def test_variation_records_carry_scores_hashes_and_provenance(mixed_run):
    _, store, _ = mixed_run
    rows = store.query("SELECT * FROM variations WHERE accepted")
    from varflow.settings import CalibratedThresholds, QualityThresholds

    gates = {"calibrated": CalibratedThresholds(), "seed": QualityThresholds()}
    for r in rows:
        gate = gates[r["profile"]]  # an accepted variation passed its judging profile's gate
        assert gate.similarity_min <= r["similarity"] <= gate.similarity_max, r
        assert r["object_integrity"] >= gate.object_integrity_min and r["aesthetic"] >= gate.aesthetic_min, r
        assert len(r["ahash"]) == len(r["phash"]) == len(r["dhash"]) == 16
        assert (r["backend"], r["model"], r["quality_level"]) == ("local", "local-v1", "medium")
        assert len(r["variation_id"]) == 64
    firsts = store.query("SELECT diversity FROM variations WHERE accepted AND output_path LIKE '%-v01.png'")
    assert all(r["diversity"] is None for r in firsts)


def test_same_seed_same_variations(prefect_server, photo_dir, tmp_path):
    (photo_dir / "sub" / "rocket.jpg").unlink()
    a, _ = run(photo_dir, tmp_path / "a", count=2, seed=3, level="low", adaptive=False)
    b, _ = run(photo_dir, tmp_path / "b", count=2, seed=3, level="low", adaptive=False)
    files_a = sorted((tmp_path / "a" / "out").rglob("*.png"))
    files_b = sorted((tmp_path / "b" / "out").rglob("*.png"))
    assert [p.name for p in files_a] == [p.name for p in files_b] and files_a
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(files_a, files_b))


def test_a_folder_of_only_bad_images_fails_the_run(prefect_server, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(FIXTURES / "bad" / "truncated.png", photos / "truncated.png")
    summary, store = run(photos, tmp_path)
    assert summary["status"] == "failed" and summary["images_error"] == 1
    assert store.query("SELECT status FROM runs") == [{"status": "failed"}]


def test_an_empty_folder_says_so(prefect_server, tmp_path):
    (tmp_path / "photos").mkdir()
    summary, _ = run(tmp_path / "photos", tmp_path)
    assert summary["status"] == "no_images" and "no images" in summary["message"]


def test_a_variation_is_checked_against_every_earlier_run_of_its_source(prefect_server, photo_dir, tmp_path):
    (photo_dir / "sub" / "rocket.jpg").unlink()
    first, store = run(photo_dir, tmp_path, count=2, seed=5, level="medium", adaptive=False)
    assert first["variations_accepted"] > 0
    # other parameters (count), so not skipped; same seed, so the same variations come back (from cache)
    second, _ = run(photo_dir, tmp_path, count=3, seed=5, level="medium", adaptive=False)
    runs = [r["run_id"] for r in store.query("SELECT run_id FROM runs ORDER BY started_at")]
    earlier = {r["variation_id"] for r in store.query(
        "SELECT variation_id FROM variations WHERE run_id = ? AND accepted", [runs[0]])}
    repeats = store.query("SELECT variation_id, accepted, reject_reason, duplicate_of FROM variations "
                          "WHERE run_id = ? AND variation_id IN (SELECT unnest(?::VARCHAR[]))",
                          [runs[1], sorted(earlier)])
    assert len(repeats) == len(earlier)
    assert all(not r["accepted"] and r["reject_reason"] == "duplicate" and r["duplicate_of"] in earlier
               for r in repeats)
    assert second["duplicates"] >= len(earlier)
    # both runs' accepted files are on disk under their own names
    accepted = [r["output_path"] for r in store.query("SELECT output_path FROM variations WHERE accepted")]
    assert len(set(accepted)) == len(accepted) and all(Path(p).is_file() for p in accepted)
