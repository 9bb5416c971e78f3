"""Stage 1: an upright, RGB, size-bounded copy of the source for generation and scoring."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from varflow.images.imageio import OptimizedImage, optimize_image
from varflow.settings import LoadLimits


@task(name="optimize", cache_policy=NONE)
def optimize(source_path: str, dest_path: str, *, max_side: int, image_id: str,
             limits: LoadLimits = LoadLimits()) -> OptimizedImage:
    return optimize_image(source_path, dest_path, max_side=max_side, limits=limits, image_id=image_id)
