"""varflow as Prefect deployments: scheduled folder runs, and runs started from the UI.

Two ways, one definition of the flow and its parameters:

- ``varflow serve PHOTOS OUT --cron "0 2 * * *" --every 3600 ...``: one process serves the
  deployment and runs its flow runs (no work pool); ``deployment()`` below builds it.
- ``deployments/prefect.yaml`` for ``prefect deploy --all`` and a process work pool's worker.

Both need a Prefect server (``prefect server start``; ``PREFECT_API_URL`` set): the temporary
server cannot hold deployments. A deployment runs one flow run at a time (concurrency limit 1,
later runs wait their turn: ``ENQUEUE``), so a slow nightly run never overlaps the next one or a
run started from the UI. Every run is incremental (finished images are skipped), so a schedule
over a growing folder does only the new work.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.schedules import Cron, Interval, Schedule
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import ValidationError
from varflow.flows.parameters import FORM_FIELDS, RunParameters, form_values, run_parameters
from varflow.flows.runners import runner_for
from varflow.flows.variation_flow import variation_run

from varflow.errors import ConfigurationError

DESCRIPTION = ("Turn a folder of images into scored, de-duplicated variations. Each run is incremental: "
               "images already done with the same parameters are skipped.")
ONE_AT_A_TIME = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)


def schedule_parameters(params: RunParameters, overrides: dict) -> dict:
    """A schedule's own parameters (form values as JSON), checked against the deployment's.

    Raises ValueError naming the bad field, so a wrong schedule is refused when served, not at 2 am.
    """
    unknown = set(overrides) - set(FORM_FIELDS)
    if unknown:
        raise ConfigurationError(f"unknown parameter(s) {', '.join(sorted(unknown))}; the flow takes "
                                 f"{', '.join(FORM_FIELDS)}")
    base = form_values(params, json=True)
    try:
        merged = run_parameters({**base, **overrides})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid schedule parameters: {problems}") from None
    full = form_values(merged, json=True)
    return {k: full[k] for k in overrides}


def cron_schedule(cron: str, *, tz: str = "UTC", params: RunParameters, overrides: dict | None = None,
                  slug: str = "nightly") -> Schedule:
    return Cron(cron, timezone=tz, slug=slug, parameters=schedule_parameters(params, overrides or {}))


def interval_schedule(seconds: float, *, params: RunParameters, overrides: dict | None = None,
                      slug: str = "interval") -> Schedule:
    """Runs every ``seconds``, the first one interval from now (serving does not start a run at once)."""
    if seconds <= 0:
        raise ConfigurationError(f"an interval must be positive; got {seconds} s")
    every = timedelta(seconds=seconds)
    return Interval(every, anchor_date=datetime.now(UTC) + every, slug=slug,
                    parameters=schedule_parameters(params, overrides or {}))


def deployment(*, name: str, params: RunParameters, schedules: list[Schedule] = (), pool_size: int | None = None):
    """The served deployment: the flow on the runner ``params`` ask for (a thread pool sized for them,
    or ``pool_size`` threads), its schedules, one run at a time.

    The deployment's parameters are the values of ``params`` that differ from the defaults, each
    its own top-level parameter: a run that overrides one keeps the others.
    """
    runner = ThreadPoolTaskRunner(max_workers=pool_size) if pool_size else runner_for(params).task_runner(params)
    flow = variation_run.with_options(task_runner=runner)
    return flow.to_deployment(
        name=name,
        parameters=form_values(params, json=True, exclude_defaults=True),
        schedules=list(schedules),
        concurrency_limit=ONE_AT_A_TIME,
        description=DESCRIPTION,
        tags=["varflow"],
    )


def collector(*, name: str = "collect", home: str | None = None, every_s: float | None = None):
    """The batch collector (a backend that ``can_batch``): every few minutes it polls the open
    jobs and runs again the folders whose jobs ended (flows/collect_flow.py)."""
    from datetime import timedelta

    from prefect.schedules import Interval
    from varflow.flows.collect_flow import batch_collect

    from varflow.settings import BATCH

    return batch_collect.to_deployment(
        name=name, parameters={"home": home} if home else {},
        schedule=Interval(timedelta(seconds=every_s or BATCH.poll_seconds)),
        description="Collect ended Gemini batch jobs: judge and record their answers.", tags=["varflow"],
    )


def serve(deployments: list, *, limit: int | None = None) -> None:
    """Serve until interrupted (Ctrl-C); runs execute in this process's children."""
    from prefect import serve as prefect_serve

    prefect_serve(*deployments, limit=limit)
