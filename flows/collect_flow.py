"""The collector: ``varflow collect``, or the ``varflow-collect`` deployment every few minutes.

It looks at every open batch job in the data directory (a poll each: free). For each folder and
parameter set with a job that has ended, it runs that folder's run again, with the parameters
its submitting run recorded, as a subflow: the run collects the ended jobs (answers into the
cache and ``attempts``, at the batch price), judges the images whose requests are all answered,
and submits what the quality loop still needs, or what a failed, expired or cancelled job did not
answer, as new jobs. It ends by publishing every job's state as the ``varflow-batch-jobs``
artifact (the Prefect UI's Artifacts page).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.runtime import flow_run as runtime_flow_run
from prefect.states import Completed, Failed
from varflow.flows.batch import publish_jobs
from varflow.flows.outcome import collector_verdict
from varflow.flows.parameters import RunParameters
from varflow.flows.resources import data_home, open_resources, resource_spec
from varflow.flows.variation_flow import run_local
from varflow.storage import Store

from varflow.processing.batch import OPEN_STATES, poll_jobs


@flow(name="varflow-collect", persist_result=False)
def batch_collect(home: str | None = None):
    """Collect every ended batch job of a data directory: re-run its folder, which judges the answers."""
    logger = get_run_logger()
    home_path = data_home(RunParameters(input_dir=".", home=home or ""))  # None: $VARFLOW_HOME
    store = Store(home_path).initialize()
    run_id = str(runtime_flow_run.id or uuid.uuid4())
    groups: dict[tuple[str, str], list[dict]] = {}
    for job in store.batch_jobs(states=OPEN_STATES):
        groups.setdefault((job["input_dir"], job["name_tag"]), []).append(job)
    runs = []
    for (input_dir, _), jobs in groups.items():
        params = submitted_parameters(store, jobs[-1]["submit_run_id"], home_path)
        res = open_resources(resource_spec(params, home_path, run_id))
        try:
            ended = poll_jobs(res.backend, store, jobs, run_id)
        finally:
            res.close()
        logger.info("%s: %d open batch job(s), %d ended", input_dir, len(jobs), len(ended))
        if ended:
            runs.append(run_local(params))
    jobs = store.batch_jobs()
    publish_jobs(jobs, f"batch jobs of {home_path} (collector run {run_id})", logger)
    open_jobs = [j for j in jobs if j["state"] in OPEN_STATES]
    result = {"runs": runs, "open_jobs": len(open_jobs), "jobs": [
        {k: j[k] for k in ("job_name", "state", "requests", "succeeded", "failed", "input_dir")} for j in jobs]}
    v = collector_verdict(runs)  # Failed when a folder run failed, as its exit code says (flows/outcome.py)
    return (Failed if v.failed else Completed)(message=v.message, data=result)


def submitted_parameters(store: Store, run_id: str, home: Path) -> RunParameters:
    """The parameters of the run that submitted a job (the store keeps them, secrets excluded)."""
    rows = store.query("SELECT parameters FROM runs WHERE run_id = ? ORDER BY started_at DESC LIMIT 1", [run_id])
    if not rows:
        raise ValueError(f"no run {run_id} in {home}: the batch job's submitting run is not on record")
    return RunParameters.model_validate_json(rows[0]["parameters"]).model_copy(update={"home": str(home)})
