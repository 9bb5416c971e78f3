"""Stage 3: every quality metric of one variation, judged by the run's quality profile."""

from __future__ import annotations

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from varflow.imageio import load_grey, load_rgb
from varflow.profiles import Assessment, VariationJudge


@task(name="score", cache_policy=NONE)
def score_variation(judge: VariationJudge, variation_path: str) -> Assessment:
    """``judge`` holds the original's measurements and the image's accepted variations."""
    rgb = np.asarray(load_rgb(variation_path))  # upright and flattened, like its cached grey
    return judge.assess(rgb, grey=load_grey(variation_path))
