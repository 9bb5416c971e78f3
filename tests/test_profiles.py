"""Quality profiles: both measure every variation, the chosen one decides, records keep both."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import load_photo

from varflow.quality import acceptance, calibrated, metrics
from varflow.quality.profiles import HEADLINE, VariationJudge, check_profile, record_columns
from varflow.runtime.records import VariationRecord
from varflow.settings import QUALITY_LEVELS, CalibratedThresholds, QualityThresholds

MEDIUM = QUALITY_LEVELS["medium"]


def small(name: str, side: int = 384) -> np.ndarray:
    img = load_photo(name)
    h, w = img.shape[:2]
    scale = side / max(h, w)
    return cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def astronaut():
    return small("astronaut.png")


def test_record_columns_are_unique_and_cover_both_profiles():
    cols = record_columns()
    assert len(cols) == len(set(cols))
    assert set(HEADLINE) <= set(cols) and {f"seed_{k}" for k in HEADLINE} <= set(cols)
    assert {"naturalness", "colourfulness", "geometric_match"} <= set(cols)
    assert set(cols) <= set(VariationRecord.columns())


@pytest.mark.parametrize("profile", ["calibrated", "seed"])
def test_the_chosen_profile_decides_and_both_are_recorded(astronaut, profile):
    judge = VariationJudge(astronaut, level=MEDIUM, profile=profile)
    mirror = np.ascontiguousarray(astronaut[:, ::-1])
    a = judge.assess(mirror)
    seed = metrics.score_variation(metrics.GreyImage.from_image(astronaut), mirror)
    cal = calibrated.score_calibrated(calibrated.ImageFeatures.from_image(astronaut), mirror)
    row = a.scores()
    assert row["seed_similarity"] == pytest.approx(seed.similarity, abs=1e-6)
    assert row["seed_overall_quality"] == pytest.approx(seed.overall_quality, abs=1e-6)
    assert row["naturalness"] == pytest.approx(cal.naturalness, abs=1e-6)
    judging = cal if profile == "calibrated" else seed
    assert row["similarity"] == pytest.approx(judging.similarity, abs=1e-6)
    expected = (calibrated.judge_calibrated(cal, thresholds=CalibratedThresholds(), level=MEDIUM)
                if profile == "calibrated" else acceptance.judge(seed, thresholds=QualityThresholds(), level=MEDIUM))
    assert a.verdict == expected
    assert a.profile == profile


def test_a_mirror_is_kept_by_calibrated_and_refused_by_the_seed(astronaut):
    """The issue's finding, pinned: the seed's gate rejects a natural variation (integrity 0)."""
    mirror = np.ascontiguousarray(astronaut[:, ::-1])
    assert VariationJudge(astronaut, level=MEDIUM, profile="calibrated").assess(mirror).verdict.accepted
    seed = VariationJudge(astronaut, level=MEDIUM, profile="seed").assess(mirror)
    assert not seed.verdict.accepted and "object_integrity_low" in seed.verdict.reasons


def test_diversity_counts_only_accepted_variations(astronaut):
    judge = VariationJudge(astronaut, level=MEDIUM)
    warm = np.clip(astronaut.astype(np.int16) * np.array([1.15, 1.0, 0.8]), 0, 255).astype(np.uint8)
    first = judge.assess(warm)
    assert first.scores()["diversity"] is None and first.scores()["seed_diversity"] is None
    assert judge.assess(warm).scores()["diversity"] is None  # not accepted yet: nothing to differ from
    judge.accept(first)
    again = judge.assess(warm)
    assert again.scores()["diversity"] == pytest.approx(0.0, abs=0.02)
    assert "diversity_low" in again.verdict.reasons


def test_unknown_profile_says_what_to_choose(astronaut):
    with pytest.raises(ValueError, match="calibrated, seed"):
        check_profile("strict")
    with pytest.raises(ValueError, match="unknown quality profile"):
        VariationJudge(astronaut, level=MEDIUM, profile="strict")
