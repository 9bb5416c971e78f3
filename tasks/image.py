"""The per-image pipeline (varflow/processing/pipeline.py) as Prefect task runs: one per image, or one per
chunk of images when the folder is large or the tasks run in other processes (varflow/processing/chunks.py)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from varflow.processing.pipeline import ImageJob, ImageOutcome, ImagePipeline, run_chunk


@task(name="process-image", cache_policy=NONE, task_run_name="image {job.output_stem}")
def process_image(job: ImageJob, pipeline: ImagePipeline) -> ImageOutcome:
    return pipeline.run(job)


@task(name="process-images", cache_policy=NONE, task_run_name="images {label}")
def process_images(jobs: list[ImageJob], label: str, pipeline: ImagePipeline, at_once: int = 1) -> list[ImageOutcome]:
    """A chunk's images, ``at_once`` side by side (the pipeline never raises: an image's failure
    is its outcome)."""
    return run_chunk(pipeline, jobs, at_once=at_once)
