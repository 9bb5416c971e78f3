"""Stage 3: every quality metric of one variation, against the original and the accepted ones."""

from __future__ import annotations

import numpy as np
from prefect import task
from prefect.cache_policies import NONE
from PIL import Image

from varflow.imageio import load_grey
from varflow.metrics import VariationScores, score_variation as score


@task(name="score", cache_policy=NONE)
def score_variation(original_path: str, variation_path: str, accepted_paths: list[str]) -> VariationScores:
    with Image.open(variation_path) as im:
        rgb = np.asarray(im.convert("RGB"))
    return score(
        load_grey(original_path),
        rgb,
        variation_grey=load_grey(variation_path),
        accepted=[load_grey(p) for p in accepted_paths],
    )
