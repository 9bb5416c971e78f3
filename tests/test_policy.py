"""Adaptive quality (the seed's rules), memory admission and acceptance."""

import pytest

from varflow.processing.memory import MemoryWindow, estimate_image_bytes
from varflow.quality.acceptance import judge
from varflow.quality.adaptive import AdaptiveQuality
from varflow.quality.metrics import AestheticScore, VariationScores
from varflow.settings import QUALITY_LEVELS, QualityThresholds


def test_no_change_before_five_images():
    q = AdaptiveQuality()
    assert [q.record(0.0) for _ in range(4)] == [None] * 4 and q.level == "high"


def test_downgrade_is_one_step_at_a_time_and_restore_goes_straight_to_high():
    q = AdaptiveQuality()
    changes = [q.record(0.2) for _ in range(5)]
    assert (changes[4].from_level, changes[4].to_level,
            changes[4].window_average) == ("high", "medium", pytest.approx(0.2))
    # the window restarts: medium is judged on five images of its own, not on high's
    assert [q.record(0.2) for _ in range(4)] == [None] * 4
    change = q.record(0.2)
    assert (change.from_level, change.to_level, q.level) == ("medium", "low", "low")
    for _ in range(4):
        assert q.record(1.0) is None
    change = q.record(1.0)
    assert (change.from_level, change.to_level, q.level) == ("low", "high", "high")


def test_results_produced_at_another_level_do_not_count():
    q = AdaptiveQuality(level="medium")
    assert all(q.record(0.0, level="high") is None for _ in range(10))
    assert q.level == "medium" and q.history == []


def test_between_thresholds_nothing_moves():
    q = AdaptiveQuality(level="medium")
    assert all(q.record(0.4) is None for _ in range(10)) and q.level == "medium"


def test_settings_follow_the_level():
    q = AdaptiveQuality(level="low")
    assert (q.settings.max_image_size, q.settings.max_attempts_per_variation) == (1024, 1)
    with pytest.raises(ValueError, match="unknown quality level"):
        AdaptiveQuality(level="ultra")


def test_memory_estimate_grows_with_the_source_and_a_big_image_waits_until_it_fits():
    small = estimate_image_bytes(1000, 800, max_side=1536, count=4)
    big = estimate_image_bytes(6000, 4000, max_side=1536, count=4)
    assert big > small
    # the seed averaged sizes; each image is costed by its own, so one big photo among small
    # ones waits for room instead of blowing the budget
    w = MemoryWindow(budget_bytes=big + small, max_images=16)
    w.enter(small)
    w.enter(small)
    assert not w.admits(big)
    w.leave(small)
    assert w.admits(big)


def test_memory_window_admits_one_image_alone_however_large():
    w = MemoryWindow(budget_bytes=100, max_images=3)
    assert w.admits(10_000)
    w.enter(60)
    assert not w.admits(50) and w.admits(40)
    w.enter(40)
    assert not w.admits(1)
    w.leave(60)
    assert w.admits(50)


def scores(sim=0.6, div=0.5, aes=0.8, integ=0.9, overall=0.7):
    a = AestheticScore(aes, aes, aes, aes)
    return VariationScores(sim, div, a, integ, overall)


def test_acceptance_lists_every_failed_check():
    t, medium = QualityThresholds(), QUALITY_LEVELS["medium"]
    assert judge(scores(), thresholds=t, level=medium).accepted
    v = judge(scores(sim=0.95, div=0.1, aes=0.5, integ=0.2, overall=0.5), thresholds=t, level=medium)
    assert v.reasons == ("similarity_high", "diversity_low", "aesthetic_low", "object_integrity_low",
                         "overall_low", "below_level_threshold")
    assert judge(scores(overall=0.7), thresholds=t, level=QUALITY_LEVELS["high"]).reasons == ("below_level_threshold",)


def test_first_variation_is_not_failed_for_missing_diversity():
    v = judge(scores(div=None), thresholds=QualityThresholds(), level=QUALITY_LEVELS["medium"])
    assert v.accepted


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="outside"):
        QualityThresholds(aesthetic_min=1.5)
    with pytest.raises(ValueError, match="no variation could pass"):
        QualityThresholds(similarity_min=0.8, similarity_max=0.5)
