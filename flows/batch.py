"""A batch run's jobs, seen from the flow: collected at the run's start, submitted at its end,
shown in the Prefect UI as the ``varflow-batch-jobs`` artifact (varflow/processing/batch.py does the work)."""

from __future__ import annotations

from pathlib import Path

from prefect.artifacts import create_table_artifact
from varflow.tasks.batch import collect_batch_jobs, submit_batch_jobs

from varflow.processing.batch import OPEN_STATES, BatchQueue, BatchScope, answered_failures
from varflow.runtime.resources import RunResources

ARTIFACT_KEY = "varflow-batch-jobs"
_COLUMNS = ("job_name", "display_name", "state", "requests", "succeeded", "failed", "submitted_at", "updated_at",
            "input_dir", "message")


def publish_jobs(jobs: list[dict], description: str, logger) -> None:
    """Every job's latest state as a table artifact (a new version of the same key each time)."""
    rows = [{c: (str(j[c]) if j.get(c) is not None else "") for c in _COLUMNS} for j in jobs]
    try:
        create_table_artifact(key=ARTIFACT_KEY, table=rows or [{c: "" for c in _COLUMNS}], description=description)
    except Exception as exc:  # noqa: BLE001 - the jobs are in the store; the artifact is a view of them
        logger.warning("could not publish the batch jobs artifact: %s", exc)


class BatchRun:
    """The batch side of one run of a backend that ``can_batch``."""

    def __init__(self, res: RunResources, store, scope: BatchScope, logger):
        self.res, self.store, self.scope, self.logger = res, store, scope, logger
        self.queue: BatchQueue | None = None
        self.delivered: dict = {}
        self.submitted: list = []
        self.jobs: list[dict] = []

    def open(self, work_dir: Path) -> BatchQueue:
        """Collect the ended jobs of this folder and parameters; the queue for the run's pipeline."""
        self.delivered, self.jobs = collect_batch_jobs(self.res, self.store, self.scope, Path(work_dir) / "answers")
        answered = {**answered_failures(self.res, self.store, self.scope), **self.delivered}
        self.queue = BatchQueue(self.res, self.store.home / "batch" / f"spool-{self.res.run_id}.jsonl",
                                delivered=answered, waiting=self.store.waiting_batch_keys(OPEN_STATES))
        return self.queue

    def submit(self) -> None:
        self.submitted = submit_batch_jobs(self.res, self.queue, self.store, self.scope)
        self.jobs = self.store.batch_jobs(input_dir=self.scope.input_dir, name_tag=self.scope.name_tag)
        for job in self.submitted:
            self.logger.info("batch job %s submitted: %d requests (%s)", job.job_name, job.requests, job.source)
        publish_jobs(self.jobs, f"batch jobs of {self.scope.input_dir} (run {self.res.run_id})", self.logger)

    def open_jobs(self) -> list[dict]:
        return [j for j in self.jobs if j["state"] in OPEN_STATES]

    def waiting_message(self) -> str | None:
        jobs = self.open_jobs()
        if not jobs:
            return None
        return (f"{sum(j['requests'] for j in jobs)} requests wait in {len(jobs)} batch job(s) "
                f"({', '.join(j['job_name'] for j in jobs)}); `varflow collect` judges them when the jobs end")

    def summary(self) -> dict:
        return {
            "jobs_submitted": len(self.submitted), "requests_submitted": sum(j.requests for j in self.submitted),
            "answers": len(self.delivered), "cost_usd": round(sum(r.cost_usd or 0.0 for r in self.delivered.values()),
                                                              6),
            "jobs": [{k: j[k] for k in ("job_name", "state", "requests", "succeeded", "failed")} for j in self.jobs],
        }
