"""The acceptance gate: the seed's thresholds plus the quality level's own threshold."""

from __future__ import annotations

from dataclasses import dataclass

from varflow.metrics import VariationScores
from varflow.settings import LevelSettings, QualityThresholds


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reasons: tuple[str, ...]  # stable codes, e.g. "similarity_high"; empty when accepted

    @property
    def reason_text(self) -> str | None:
        return ";".join(self.reasons) if self.reasons else None


def judge(
    scores: VariationScores, *, thresholds: QualityThresholds, level: LevelSettings
) -> Verdict:
    """Every failed check, not just the first, so a notebook can see why variations fail.

    A missing diversity (the first variation of an image has nothing to differ from) does not
    fail the diversity check; the seed read it as 0 and so rejected every first variation.
    """
    t = thresholds
    reasons: list[str] = []
    if scores.similarity < t.similarity_min:
        reasons.append("similarity_low")
    elif scores.similarity > t.similarity_max:
        reasons.append("similarity_high")
    if scores.diversity is not None and scores.diversity < t.diversity_min:
        reasons.append("diversity_low")
    if scores.aesthetic.total < t.aesthetic_min:
        reasons.append("aesthetic_low")
    if scores.object_integrity < t.object_integrity_min:
        reasons.append("object_integrity_low")
    if scores.overall_quality < t.overall_min:
        reasons.append("overall_low")
    if scores.overall_quality < level.quality_threshold:
        reasons.append("below_level_threshold")
    return Verdict(not reasons, tuple(reasons))
