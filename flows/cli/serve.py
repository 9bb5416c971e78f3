"""serve: a Prefect deployment of the flow, with its schedules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from varflow.flows.cli.options import add_run_options, params_of
from varflow.flows.cli.run import exit_unless_usable


def add_commands(sub) -> None:
    p = sub.add_parser("serve",
                       help="serve a Prefect deployment: a nightly cron, an interval schedule, runs from the UI")
    p.add_argument("input_dir", help="folder of images of the deployment's runs")
    p.add_argument("--out", default="variations", help="where accepted variations go (default ./variations)")
    p.add_argument("--name", default="varflow", help="deployment name (default varflow)")
    p.add_argument("--cron", default="0 2 * * *", help='the nightly schedule (default "0 2 * * *"); "" for none')
    p.add_argument("--timezone", default="UTC", help="the cron's time zone (default UTC)")
    p.add_argument("--cron-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the cron's runs only, e.g. count=6 (repeat for more)")
    p.add_argument("--every", type=float, default=None, metavar="SECONDS", help="also run every SECONDS")
    p.add_argument("--every-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the interval's runs only, e.g. input_dir=/data/inbox (repeat for more)")
    add_run_options(p)
    p.set_defaults(func=cmd_serve)


def _settings_pairs(pairs: list[str]) -> dict:
    """KEY=VALUE strings as parameters: a value that reads as JSON (6, true, [..]) is that, else text."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"varflow serve: expected KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
        folder = out[key.strip()]
        if key.strip() in ("input_dir", "output_dir", "home") and folder and "://" not in str(folder):  # not a bucket
            out[key.strip()] = str(Path(folder).expanduser().resolve())
    return out

def cmd_serve(args) -> int:
    """Serve the deployment until interrupted; --dry-run prints it and serves nothing."""
    local = lambda folder: folder if "://" in folder else str(Path(folder).expanduser().resolve())  # a bucket
    params = params_of(args, local(args.input_dir), local(args.out))
    if params.home:  # a served run's relative paths would follow the serving process's directory
        params = params.model_copy(update={"home": str(Path(params.home).expanduser().resolve())})
    exit_unless_usable(params)
    from varflow.deployments.serve import cron_schedule, deployment, interval_schedule, serve

    try:
        schedules = []
        if args.cron:
            schedules.append(cron_schedule(args.cron, tz=args.timezone, params=params,
                                           overrides=_settings_pairs(args.cron_set)))
        if args.every:
            schedules.append(interval_schedule(args.every, params=params, overrides=_settings_pairs(args.every_set)))
    except ValueError as exc:
        print(f"varflow serve: {exc}", file=sys.stderr)
        return 2
    d = deployment(name=args.name, params=params, schedules=schedules)
    if args.dry_run or args.json:
        print(json.dumps({"name": d.name, "flow": d.flow_name, "parameters": d.parameters,
                          "concurrency_limit": d.concurrency_limit,
                          "collision_strategy": getattr(d.concurrency_options, "collision_strategy", None),
                          "schedules": [
                              {"slug": s.slug, "schedule": s.schedule.model_dump(mode="json", exclude_none=True),
                               "parameters": s.parameters} for s in d.schedules]}, indent=2, default=str))
        if args.dry_run:
            return 0
    from varflow.generation.backends import backend_class

    if backend_class(params.backend).can_batch:  # a batch run submits and ends: its collector goes with it
        from varflow.deployments.serve import collector

        serve([d, collector(name=f"{args.name}-collect", home=params.home or None)])
    else:
        serve([d])
    return 0
