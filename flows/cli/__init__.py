"""``varflow``: the command line, one module per command group (like Prefect's CLI).

options: the run's options; run: run, demo, collect, samples, examples; inspect: score, dedup; backends:
models; data: report, runs, stats, sql, doctor; serve: serve; review: review mark, review serve; calibrate:
calibrate. Prefect is imported only by the commands that run or serve a flow.
"""

from __future__ import annotations

import argparse

from varflow.flows.cli import backends, calibrate, data, inspect, review, run, serve
from varflow.flows.cli.options import params_of
from varflow.flows.cli.run import check_backend, start_run

# main: the console script; the rest: what varflow.api and the tests call
__all__ = ["build_parser", "check_backend", "main", "params_of", "start_run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="varflow", description="Scored, de-duplicated image variations.")
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_commands(sub)
    backends.add_commands(sub)
    inspect.add_commands(sub)
    serve.add_commands(sub)
    run.add_collect_commands(sub)
    data.add_commands(sub)
    review.add_commands(sub)
    calibrate.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
