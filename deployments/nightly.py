"""Serve varflow as a Prefect deployment: a scheduled run over a folder, and runs from the UI.

    python -m deployments.nightly --input /data/photos --output /data/variations --cron "0 2 * * *"

needs a Prefect server (``prefect server start``; set ``PREFECT_API_URL``); the temporary server
cannot hold deployments. The deployment's parameters are ``RunParameters``: the UI's "Run"
button shows them as a validated form. Every scheduled run is incremental (finished images are
skipped), so a nightly run over a growing folder does only the new work.
"""

from __future__ import annotations

import argparse

from prefect.schedules import Cron
from prefect.task_runners import ThreadPoolTaskRunner

from flows.parameters import RunParameters
from flows.variation_flow import pool_size as run_pool_size
from flows.variation_flow import variation_run
from varflow.generators import BACKENDS, DEFAULT_BACKEND, backend_class


def build(*, name: str, params: RunParameters, cron: str | None = None, timezone: str = "UTC",
          pool_size: int | None = None):
    """The deployment: the flow with a pool sized for ``params`` and an optional cron schedule."""
    pool = pool_size or run_pool_size(params.generation_concurrency, params.images_in_flight)
    flow = variation_run.with_options(task_runner=ThreadPoolTaskRunner(max_workers=pool))
    kwargs = {"schedule": Cron(cron, timezone=timezone)} if cron else {}
    return flow.to_deployment(
        name=name,
        parameters={"params": params.model_dump(mode="json", exclude_defaults=True)},
        description="Turn a folder of images into scored, de-duplicated variations.",
        tags=["varflow"],
        **kwargs,
    )


def build_collector(*, name: str = "collect", home: str | None = None, every_s: float | None = None):
    """The batch collector (``--backend gemini-batch``): every few minutes it polls the open jobs
    and runs again the folders whose jobs ended (flows/collect_flow.py)."""
    from datetime import timedelta

    from prefect.schedules import Interval

    from flows.collect_flow import batch_collect
    from varflow.settings import BATCH

    return batch_collect.to_deployment(
        name=name, parameters={"home": home} if home else {},
        schedule=Interval(timedelta(seconds=every_s or BATCH.poll_seconds)),
        description="Collect ended Gemini batch jobs: judge and record their answers.", tags=["varflow"],
    )


def main(argv: list[str] | None = None) -> None:
    from prefect import serve

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="nightly")
    ap.add_argument("--input", required=True, help="folder of images")
    ap.add_argument("--output", required=True, help="where accepted variations go")
    ap.add_argument("--cron", default="0 2 * * *", help='schedule (default "0 2 * * *"); "" for UI-only runs')
    ap.add_argument("--timezone", default="UTC")
    ap.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS)
    args = ap.parse_args(argv)
    params = RunParameters(input_dir=args.input, output_dir=args.output, backend=args.backend)
    deployments = [build(name=args.name, params=params, cron=args.cron or None, timezone=args.timezone)]
    if backend_class(args.backend).can_batch:  # a batch run submits and ends: its collector goes with it
        deployments.append(build_collector(name=f"{args.name}-collect"))
    serve(*deployments)


if __name__ == "__main__":
    main()
