"""Stage 3: every quality metric of one variation, against the original and the accepted ones."""

from __future__ import annotations

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from varflow.imageio import load_grey, load_rgb
from varflow.metrics import VariationScores, score_variation as score


@task(name="score", cache_policy=NONE)
def score_variation(original_path: str, variation_path: str, accepted_paths: list[str]) -> VariationScores:
    rgb = np.asarray(load_rgb(variation_path))  # upright and flattened, like its cached grey
    return score(
        load_grey(original_path),
        rgb,
        variation_grey=load_grey(variation_path),
        accepted=[load_grey(p) for p in accepted_paths],
    )
