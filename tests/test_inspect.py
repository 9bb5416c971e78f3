"""score_files and find_duplicate_groups: the Prefect-free cores of `varflow score` and `varflow dedup`."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import fields

import pytest
import seed_reference as seed
from conftest import FIXTURES, skimage_photo
from PIL import Image, ImageEnhance

from varflow.images.imageio import ImageReadError
from varflow.quality.acceptance import judge
from varflow.quality.calibrated import CalibratedScores, judge_calibrated
from varflow.quality.metrics import AestheticScore, VariationScores
from varflow.reports.inspect import find_duplicate_groups, score_files
from varflow.settings import CalibratedThresholds, DedupSettings, QualityThresholds, level_settings


@pytest.fixture
def variations(tmp_path):
    src = skimage_photo("coffee.png")
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    paths = []
    for i, factor in enumerate([0.7, 1.3, 1.0]):
        v = ImageEnhance.Color(rgb).enhance(factor).rotate(i * 4)
        p = tmp_path / f"v{i + 1}.png"
        v.save(p)
        paths.append(p)
    return src, paths


def test_score_files_scores_each_variation_against_the_original_and_the_ones_before(variations):
    original, paths = variations
    rows = score_files(original, paths, profile="seed", thresholds=QualityThresholds(), level="medium")
    calibrated_rows = score_files(original, paths, level="medium")  # the default profile
    assert [r["index"] for r in rows] == [1, 2, 3]
    assert rows[0]["diversity"] is None
    with Image.open(original) as im:
        o = im.convert("RGB")
    vs = [Image.open(p).convert("RGB") for p in paths]
    for i, row in enumerate(rows):
        ref = seed.seed_score(o, vs[i], vs[:i])
        assert row["similarity"] == pytest.approx(ref["similarity"], abs=1e-6)
        if i:
            assert row["diversity"] == pytest.approx(ref["diversity"], abs=1e-6)
        for key in ("aesthetic", "color_variance", "contrast", "brightness_balance",
                    "sharpness", "object_integrity", "overall_quality"):
            assert row[key] == pytest.approx(ref[key], abs=1e-6)
        assert row["level"] == "medium" and row["level_threshold"] == 0.6
        assert len(row["ahash"]) == 16
        # whichever profile judges, the seed's values are recorded beside it
        for key in ("similarity", "aesthetic", "object_integrity", "overall_quality"):
            assert calibrated_rows[i][f"seed_{key}"] == pytest.approx(ref[key], abs=1e-6)
        assert calibrated_rows[i]["profile"] == "calibrated" and calibrated_rows[i]["level_threshold"] == 0.65
    json.dumps(rows)  # plain JSON for --json


def test_verdict_and_reasons_are_the_acceptance_gates(variations):
    original, paths = variations
    thresholds = QualityThresholds()
    level = level_settings("high")
    for row in score_files(original, paths, profile="seed", thresholds=thresholds, level=level):
        scores = VariationScores(
            row["similarity"], row["diversity"],
            AestheticScore(row["color_variance"], row["contrast"], row["brightness_balance"], row["sharpness"]),
            row["object_integrity"], row["overall_quality"],
        )
        verdict = judge(scores, thresholds=thresholds, level=level)
        assert row["accepted"] == verdict.accepted
        assert row["reasons"] == list(verdict.reasons)
    for row in score_files(original, paths, level=level):  # calibrated, the default
        scores = CalibratedScores(**{f.name: row[f.name] for f in fields(CalibratedScores)})
        verdict = judge_calibrated(scores, thresholds=CalibratedThresholds(), level=level)
        assert (row["accepted"], row["reasons"]) == (verdict.accepted, list(verdict.reasons))
    # a variation identical to the original is too similar, to both profiles
    for profile in ("seed", "calibrated"):
        same = score_files(original, [original], profile=profile, level=level)[0]
        assert same["similarity"] == pytest.approx(1.0, abs=0.02)
        assert "similarity_high" in same["reasons"] and not same["accepted"]


def test_score_files_names_an_unreadable_file(variations):
    original, paths = variations
    with pytest.raises(ImageReadError, match="not-an-image.png"):
        score_files(original, [paths[0], FIXTURES / "bad" / "not-an-image.png"])


def test_score_files_can_fit_images_first(variations):
    original, paths = variations
    rows = score_files(original, paths[:1], max_side=200)
    assert max(rows[0]["width"], rows[0]["height"]) == 200


def test_find_duplicate_groups_groups_copies_and_leaves_look_alikes_apart(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    with Image.open(skimage_photo("astronaut.png")) as im:
        astro = im.convert("RGB")
    astro.save(d / "astronaut.png")
    astro.resize((256, 256), Image.Resampling.LANCZOS).save(d / "astronaut-small.png")
    buf = io.BytesIO()
    astro.save(buf, "JPEG", quality=40)
    (d / "astronaut-q40.jpg").write_bytes(buf.getvalue())
    astro.rotate(2, resample=Image.Resampling.BICUBIC).save(d / "astronaut-rot2.png")
    shutil.copy(skimage_photo("coffee.png"), d / "coffee.png")
    with Image.open(skimage_photo("coffee.png")) as im:
        w, h = im.size
        im.convert("RGB").crop((12, 8, w - 12, h - 8)).save(d / "coffee-crop.png")
    shutil.copy(skimage_photo("motorcycle_left.png"), d / "motorcycle_left.png")
    shutil.copy(skimage_photo("motorcycle_right.png"), d / "motorcycle_right.png")
    with Image.open(skimage_photo("brick.png")) as im:
        im.crop((0, 0, 256, 256)).save(d / "brick-a.png")
        im.crop((256, 256, 512, 512)).save(d / "brick-b.png")
    shutil.copy(FIXTURES / "bad" / "truncated.png", d / "broken.png")

    paths = sorted(str(p) for p in d.iterdir())
    errors: list = []
    groups = find_duplicate_groups(paths, errors=errors)  # copy-finding, as varflow dedup
    assert groups == [
        sorted(str(d / n) for n in ["astronaut.png", "astronaut-small.png", "astronaut-q40.jpg", "astronaut-rot2.png"]),
        sorted(str(d / n) for n in ["coffee.png", "coffee-crop.png"]),
    ]
    assert [p for p, _ in errors] == [str(d / "broken.png")]
    assert "truncated" in errors[0][1]


def test_find_duplicate_groups_full_size_mode_and_empty_input(tmp_path):
    with Image.open(skimage_photo("chelsea.png")) as im:
        im.convert("RGB").save(tmp_path / "a.png")
        im.convert("RGB").save(tmp_path / "b.png")
    paths = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert find_duplicate_groups(paths, settings=DedupSettings(ssim_size=0, ssim_threshold=0.95)) == [paths]
    assert find_duplicate_groups([]) == []


def test_dedup_sees_a_photo_stored_sideways_as_it_is_shown(tmp_path):
    """A camera's sideways JPEG with an EXIF orientation is the upright picture for hashing and
    for the SSIM confirmation alike. With full-size SSIM (the seed's way, ssim_size=0) the
    confirmation reads the grey cache, which once read the file as stored: its upright copy was
    a candidate by hash, then refuted by SSIM."""
    from varflow.reports.inspect import find_duplicate_groups
    from varflow.settings import DedupSettings

    photo = Image.open(skimage_photo("chelsea.png")).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    photo.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.jpg", quality=92, exif=exif.tobytes())
    photo.save(tmp_path / "upright.png")
    expected = [[str(tmp_path / "sideways.jpg"), str(tmp_path / "upright.png")]]
    assert find_duplicate_groups(sorted(tmp_path.iterdir())) == expected
    assert find_duplicate_groups(sorted(tmp_path.iterdir()), settings=DedupSettings(ssim_size=0)) == expected
