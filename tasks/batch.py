"""Batch jobs as Prefect tasks: collect the ended jobs of a run's folder, submit what it queued
(the work itself: varflow/processing/batch.py). A task run each, so the Prefect UI shows when a run polled
and when it submitted; no cache (their inputs are live objects) and no retries (a job that cannot
be polled stays open for the next run; requests not submitted are queued again by the next run)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from varflow.processing.batch import BatchQueue, BatchScope, collect_jobs, submit_queued
from varflow.runtime.resources import RunResources


@task(name="collect-batch-jobs", cache_policy=NO_CACHE, persist_result=False)
def collect_batch_jobs(resources: RunResources, store, scope: BatchScope, work_dir: Path):
    return collect_jobs(resources, store, scope, work_dir)


@task(name="submit-batch-jobs", cache_policy=NO_CACHE, persist_result=False)
def submit_batch_jobs(resources: RunResources, queue: BatchQueue, store, scope: BatchScope):
    return submit_queued(resources, queue, store, scope)
