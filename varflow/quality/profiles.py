"""Quality profiles: which measurements decide whether a variation is kept.

``calibrated`` (the default) measures the seed's five notions so that they hold on real photos
(``varflow.quality.calibrated``); ``seed`` is the seed document's formulas and thresholds, exactly
(``varflow.quality.metrics``, ``varflow.quality.acceptance``). Every variation is measured by both, so the
records can compare them in SQL; only the run's profile decides. docs/quality-model.md says why
the seed's gate cannot be the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
from PIL import Image

from varflow.errors import ConfigurationError
from varflow.quality import acceptance, calibrated, metrics
from varflow.quality.acceptance import Verdict
from varflow.quality.calibrated import CalibratedScores, ImageFeatures
from varflow.quality.metrics import GreyImage, VariationScores
from varflow.settings import (
    DEFAULT_PROFILE,
    PROFILES,
    CalibratedThresholds,
    GradedOverall,
    LevelSettings,
    QualityThresholds,
)

# What a variation row records besides the judging profile's headline values (docs: SCHEMA.md).
HEADLINE = ("similarity", "diversity", "aesthetic", "object_integrity", "overall_quality")
SEED_PARTS = ("color_variance", "contrast", "brightness_balance", "sharpness")
GRADED = "graded_overall"  # the fitted graded overall (varflow calibrate --apply), null without one


def check_profile(name: str) -> str:
    if name not in PROFILES:
        raise ConfigurationError(f"unknown quality profile {name!r}; choose one of {', '.join(PROFILES)}")
    return name


@dataclass(frozen=True)
class Assessment:
    """One variation measured by both profiles and judged by one."""

    profile: str
    verdict: Verdict
    seed: VariationScores
    calibrated: CalibratedScores
    grey: GreyImage = field(repr=False, compare=False)
    features: ImageFeatures = field(repr=False, compare=False)
    graded_overall: float | None = None

    def scores(self) -> dict[str, float | None]:
        """The judging profile's headline values, then the seed's, then the calibrated parts."""
        judging = (self.calibrated if self.profile == "calibrated" else self.seed).as_dict()
        seed = self.seed.as_dict()
        out: dict[str, float | None] = {k: judging[k] for k in HEADLINE}
        out.update({f"seed_{k}": seed[k] for k in HEADLINE})
        out.update({k: seed[k] for k in SEED_PARTS})
        out.update({k: v for k, v in self.calibrated.as_dict().items() if k not in HEADLINE})
        out[GRADED] = self.graded_overall
        return out


def calibrated_parts() -> tuple[str, ...]:
    """The calibrated profile's named parts (its fields beyond the headline values)."""
    return tuple(f.name for f in fields(CalibratedScores) if f.name not in HEADLINE)


def record_columns() -> tuple[str, ...]:
    """The score columns an ``Assessment`` fills, in order (storage types them)."""
    return (*HEADLINE, *(f"seed_{k}" for k in HEADLINE), *SEED_PARTS, *calibrated_parts(), GRADED)


class VariationJudge:
    """One source image's judge: the original measured once, accepted variations remembered.

    Diversity is measured against the variations accepted so far (as the seed's loop sees
    them); call ``accept`` when a variation is kept. ``graded``: a fitted graded overall (the data
    directory's calibrated profile), computed from the calibrated scores of every variation.
    """

    def __init__(
        self,
        original: np.ndarray | Image.Image,
        *,
        level: LevelSettings,
        profile: str = DEFAULT_PROFILE,
        thresholds: QualityThresholds = QualityThresholds(),
        calibrated_thresholds: CalibratedThresholds = CalibratedThresholds(),
        original_grey: GreyImage | None = None,
        graded: GradedOverall | None = None,
    ):
        self.graded = graded
        self.profile = check_profile(profile)
        self.level = level
        self.thresholds = thresholds
        self.calibrated_thresholds = calibrated_thresholds
        self._grey = original_grey if original_grey is not None else GreyImage(metrics.to_grey(original))
        self._features = ImageFeatures.from_image(original)
        self._accepted_greys: list[GreyImage] = []
        self._accepted_features: list[ImageFeatures] = []

    def assess(self, variation: np.ndarray | Image.Image, *, grey: GreyImage | None = None) -> Assessment:
        if grey is None:
            grey = GreyImage(metrics.to_grey(variation))
        seed = metrics.score_variation(self._grey, variation, variation_grey=grey, accepted=self._accepted_greys)
        features = ImageFeatures.from_image(variation)
        cal = calibrated.score_calibrated(self._features, variation, variation_features=features,
                                          accepted=self._accepted_features, thresholds=self.calibrated_thresholds)
        if self.profile == "calibrated":
            verdict = calibrated.judge_calibrated(cal, thresholds=self.calibrated_thresholds, level=self.level)
        else:
            verdict = acceptance.judge(seed, thresholds=self.thresholds, level=self.level)
        graded = self.graded.grade(cal.as_dict()) if self.graded is not None else None
        return Assessment(self.profile, verdict, seed, cal, grey, features, graded)

    def accept(self, assessment: Assessment) -> None:
        self._accepted_greys.append(assessment.grey)
        self._accepted_features.append(assessment.features)
