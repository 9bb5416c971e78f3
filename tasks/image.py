"""The per-image pipeline (varflow/pipeline.py) as one Prefect task run per image."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from varflow.pipeline import ImageJob, ImageOutcome, ImagePipeline


@task(name="process-image", cache_policy=NONE, task_run_name="image {job.output_stem}")
def process_image(job: ImageJob, pipeline: ImagePipeline) -> ImageOutcome:
    return pipeline.run(job)
