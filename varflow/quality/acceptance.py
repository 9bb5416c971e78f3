"""The acceptance gate: the seed's thresholds plus the quality level's own threshold."""

from __future__ import annotations

from dataclasses import dataclass

from varflow.quality.metrics import VariationScores
from varflow.settings import LevelSettings, QualityThresholds


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reasons: tuple[str, ...]  # stable codes, e.g. "similarity_high"; empty when accepted

    @property
    def reason_text(self) -> str | None:
        return ";".join(self.reasons) if self.reasons else None


def gate(
    *, similarity: float, diversity: float | None, aesthetic: float, object_integrity: float,
    overall_quality: float, thresholds, level_min: float,
) -> Verdict:
    """The seed's checks, whichever profile measured the values: every failed check, not just
    the first, so a notebook can see why variations fail. ``thresholds`` has similarity_min/max,
    diversity_min, aesthetic_min, object_integrity_min and overall_min; ``level_min`` is the
    quality level's own overall threshold.

    A missing diversity (the first variation of an image has nothing to differ from) does not
    fail the diversity check; the seed read it as 0 and so rejected every first variation.
    """
    t = thresholds
    reasons: list[str] = []
    if similarity < t.similarity_min:
        reasons.append("similarity_low")
    elif similarity > t.similarity_max:
        reasons.append("similarity_high")
    if diversity is not None and diversity < t.diversity_min:
        reasons.append("diversity_low")
    if aesthetic < t.aesthetic_min:
        reasons.append("aesthetic_low")
    if object_integrity < t.object_integrity_min:
        reasons.append("object_integrity_low")
    if overall_quality < t.overall_min:
        reasons.append("overall_low")
    if overall_quality < level_min:
        reasons.append("below_level_threshold")
    return Verdict(not reasons, tuple(reasons))


def judge(
    scores: VariationScores, *, thresholds: QualityThresholds, level: LevelSettings
) -> Verdict:
    """The seed profile's verdict: its thresholds and the level's quality threshold."""
    return gate(similarity=scores.similarity, diversity=scores.diversity, aesthetic=scores.aesthetic.total,
                object_integrity=scores.object_integrity, overall_quality=scores.overall_quality,
                thresholds=thresholds, level_min=level.quality_threshold)
