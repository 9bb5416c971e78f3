"""Where a run's task runs execute: the runners, in one registry.

``threads``: Prefect's thread pool in the flow's process (the default; one machine).
``dask``: prefect-dask's ``DaskTaskRunner`` on a Dask cluster: an existing scheduler
(``dask_address``) or a ``LocalCluster`` of ``dask_workers`` processes on this machine. Task runs
then travel to other processes, so images go in chunks (varflow/processing/chunks.py) and the run's limits
are shared through the data directory or Redis (flows/resources.py). docs/scale-out.md.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from varflow.flows.parameters import RunParameters

from varflow.errors import ConfigurationError
from varflow.generation.backends import backend_class
from varflow.runtime.redisstate import MISSING as REDIS_MISSING
from varflow.runtime.redisstate import is_redis_url

# The optional packages an option needs (pyproject.toml's extras): the one line that names them.
DASK_MISSING = "--runner dask needs the dask extra: pip install 'varflow[dask]'"


def pool_size(generation_concurrency: int, images_in_flight: int = 0) -> int:
    """Task-runner threads for a run: one per image in flight (its pipeline task waits on its
    variations) and two per call slot. A generate task holds its thread for Prefect's
    bookkeeping before and after the call (state changes, cache lookup, result persistence);
    with one thread per slot that time idles a slot. The call slots still bound the calls
    themselves. docs/gemini.md gives the measured cost and gain."""
    return images_in_flight + 2 * generation_concurrency


class Runner(Protocol):
    name: str
    remote: bool  # task runs travel to other processes (maybe other machines)

    def task_runner(self, params: RunParameters) -> TaskRunner: ...

    def owns(self, task_runner: TaskRunner | None) -> bool:
        """True if ``task_runner`` is this runner's (a deployment's flow may carry another)."""

    def parallel(self, params: RunParameters, task_runner: TaskRunner | None) -> int:
        """How many of the run's task runs execute at once."""

    def check(self, params: RunParameters) -> None:
        """Raise ValueError (one line: what and what to do) if the run cannot use this runner."""

    def trouble(self, task_runner: TaskRunner | None) -> str | None:
        """Why no task run can make progress now (no worker, no scheduler), or None."""


class ThreadsRunner:
    name, remote = "threads", False

    def task_runner(self, params: RunParameters) -> TaskRunner:
        return ThreadPoolTaskRunner(max_workers=pool_size(params.generation_concurrency, params.images_in_flight))

    def owns(self, task_runner) -> bool:
        return isinstance(task_runner, ThreadPoolTaskRunner)

    def parallel(self, params: RunParameters, task_runner) -> int:
        return params.images_in_flight

    def check(self, params: RunParameters) -> None:
        if params.dask_address:
            raise ConfigurationError("dask_address is set but the runner is threads: add --runner dask to "
                                     "use the cluster")

    def trouble(self, task_runner) -> str | None:
        return None  # the flow's own threads


class DaskRunner:
    name, remote = "dask", True

    def task_runner(self, params: RunParameters) -> TaskRunner:
        from prefect_dask import DaskTaskRunner

        if params.dask_address:
            return DaskTaskRunner(address=params.dask_address)
        # One thread per worker process: the pipeline's imaging code holds the GIL for much of
        # its work, so processes, not threads, are what use the cores.
        return DaskTaskRunner(cluster_class=local_cluster,
                              cluster_kwargs={"n_workers": params.dask_workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})

    def owns(self, task_runner) -> bool:
        from prefect_dask import DaskTaskRunner

        return isinstance(task_runner, DaskTaskRunner)

    def parallel(self, params: RunParameters, task_runner) -> int:
        client = getattr(task_runner, "_client", None)
        try:
            return max(1, sum(client.nthreads().values())) if client is not None else params.dask_workers
        except Exception:  # noqa: BLE001 - a count for sizing chunks, not worth failing the run
            return params.dask_workers

    def check(self, params: RunParameters) -> None:
        if importlib.util.find_spec("prefect_dask") is None:
            raise ConfigurationError(DASK_MISSING)
        if backend_class(params.backend).can_batch:
            raise ConfigurationError(f"the {params.backend} backend queues requests in the flow's process "
                                     f"and cannot run "
                             "on Dask: use --runner threads (a batch job does the work far away anyway)")
        if params.dedup_library:
            raise ConfigurationError("dedup_library is not available with --runner dask (every chunk would carry the "
                             "whole library to its worker): use --runner threads for a library-wide dedup")

    def trouble(self, task_runner) -> str | None:
        """A cluster without workers runs nothing: its task runs would wait for ever (workers that
        cannot import varflow's tasks exit as soon as they are sent one)."""
        client = getattr(task_runner, "_client", None)
        if client is None:
            return None
        if client.status not in ("running", "connecting", "newly-created"):
            return f"the Dask client lost its scheduler (client {client.status})"
        try:
            workers = client.nthreads()
        except Exception as exc:  # noqa: BLE001 - an unreachable scheduler is the trouble
            return f"the Dask scheduler does not answer ({type(exc).__name__}: {exc})"
        if not workers:
            return ("the Dask cluster has no worker (a worker that cannot import varflow's tasks exits at once: "
                    "check that every worker runs the same varflow install; its log names the import error)")
        return None


def local_cluster(**kwargs):
    """A ``LocalCluster`` whose worker processes report to this process's Prefect API.

    Without ``PREFECT_API_URL`` the flow talks to a temporary server whose address exists only
    once it runs; worker processes would each start a server of their own and their task runs
    would be lost with it. Called by the ``DaskTaskRunner`` when the flow starts, so the address
    is known.
    """
    from distributed import LocalCluster
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    env = {"PREFECT_API_URL": api_url, **kwargs.pop("env", {})}
    return LocalCluster(env=env, **kwargs)


RUNNERS: dict[str, Runner] = {r.name: r for r in (ThreadsRunner(), DaskRunner())}


def runner_for(params: RunParameters) -> Runner:
    runner = RUNNERS[params.runner]
    if is_redis_url(params.shared_limits.strip()) and importlib.util.find_spec("redis") is None:
        raise ConfigurationError(REDIS_MISSING)
    runner.check(params)
    return runner
