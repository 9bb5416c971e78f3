"""One source image's judge: the original measured once, its accepted variations remembered.

The pipeline asks a judge to ``assess`` each new variation (every score and the verdict) and
tells it which ones it ``accept``-ed, so diversity is measured against those, in the order the
seed's loop sees them. This judge applies the seed's formulas and gate
(varflow.metrics, varflow.acceptance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from varflow import metrics
from varflow.acceptance import Verdict, judge
from varflow.metrics import GreyImage, VariationScores
from varflow.settings import LevelSettings, QualityThresholds


@dataclass(frozen=True)
class Assessment:
    """One variation measured and judged."""

    profile: str
    verdict: Verdict
    seed: VariationScores
    grey: GreyImage = field(repr=False, compare=False)

    def scores(self) -> dict[str, float | None]:
        return self.seed.as_dict()


class SeedJudge:
    """The seed's metrics and thresholds, for one original."""

    profile = "seed"

    def __init__(self, original_grey: GreyImage, *, level: LevelSettings,
                 thresholds: QualityThresholds = QualityThresholds()):
        self.level = level
        self.thresholds = thresholds
        self._grey = original_grey
        self._accepted: list[GreyImage] = []

    def assess(self, variation: np.ndarray | Image.Image, *, grey: GreyImage | None = None) -> Assessment:
        if grey is None:
            grey = GreyImage(metrics.to_grey(variation))
        scores = metrics.score_variation(self._grey, variation, variation_grey=grey, accepted=self._accepted)
        return Assessment(self.profile, judge(scores, thresholds=self.thresholds, level=self.level), scores, grey)

    def accept(self, assessment: Assessment) -> None:
        self._accepted.append(assessment.grey)
