"""run, demo, collect, samples, examples: the commands that run a flow (Prefect is imported only by
them), and the ones that hand out what the package ships."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from varflow.flows.cli.options import add_run_options, params_of

from varflow.errors import VarflowError
from varflow.safety.escaping import for_log, for_terminal


def add_commands(sub) -> None:
    p = sub.add_parser("run", help="vary every image of a folder")
    p.add_argument("input_dir", help="folder of images (walked recursively)")
    p.add_argument("--out", default="variations", help="where accepted variations go (default ./variations)")
    add_run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run on bundled sample photos with the default settings")
    p.add_argument("--dir", default="varflow-demo", help="where the photos and variations go (default ./varflow-demo)")
    add_run_options(p)
    p.set_defaults(func=cmd_demo)


def add_collect_commands(sub) -> None:
    p = sub.add_parser("collect",
                       help="collect ended batch jobs (--backend gemini-batch): judge and record their answers")
    p.add_argument("--home", default=None, help="data directory (default $VARFLOW_HOME or ~/.local/share/varflow)")
    p.add_argument("--json", action="store_true", help="print the jobs and the runs as JSON")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("examples", help="copy the notebooks and the deployment and automation examples into a folder")
    p.add_argument("dest")
    p.set_defaults(func=cmd_examples)

    p = sub.add_parser("samples", help="copy the bundled sample photos into a folder")
    p.add_argument("dest")
    p.set_defaults(func=cmd_samples)


def check_backend(params) -> None:
    """Build the backend once before Prefect starts, so a setup mistake is one clear line
    (raises ConfigurationError; ``varflow.run`` raises it as it is, the CLI prints it).

    A key held in a Prefect Secret block is read by the run itself (it needs the Prefect API),
    which also fails before any work when the block is missing.
    """
    from varflow.errors import ConfigurationError
    from varflow.generation.backends import backend_class, make_backend, model_name
    from varflow.runtime.resources import enforceable_cap

    backend = backend_class(params.backend)
    try:
        enforceable_cap(backend, model_name(params.backend, params.model), params.max_cost_usd)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if backend.remote and params.api_key_secret:
        return
    try:
        make_backend(params.backend, **({"model": params.model} if params.model else {}))
    except (ValueError, ImportError) as exc:
        raise ConfigurationError(f"cannot use the {params.backend} backend: {exc}") from None


def exit_unless_usable(params) -> None:
    """``check_backend`` for the command line: a setup mistake is one line and exit 1."""
    from varflow.errors import ConfigurationError

    try:
        check_backend(params)
    except ConfigurationError as exc:
        raise SystemExit(f"varflow: {exc}") from None

def _print_plan(plan: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(plan, indent=2))
        return
    usd = lambda v: "unknown (no price for this model)" if v is None else f"${v:.2f}"
    lines = [
        f"varflow dry run ({plan['backend']} / {for_log(plan['model'])}, level {plan['level']}): no call made",
        f"  images       {plan['images_found']} found, {plan['images_to_do']} to do"
        f" ({plan['images_already_done']} already done, {plan['images_same_content']} duplicates of another file,"
        f" {plan.get('images_copies', 0)} copies of another picture)"
        + (f"; {plan['images_topped_up']} of them topped up: people's reviews left them below count"
           if plan.get("images_topped_up") else ""),
        f"  calls        expected {plan['calls_expected']:.0f}: {plan['attempts_per_image']:.1f} attempts per image"
        f" ({plan['acceptance_rate']:.0%} accepted) x {plan['calls_per_attempt']:.2f} calls per attempt; worst case "
        f"{plan['calls_worst_case']} ({plan['variations_to_do']} variations to do x "
        f"{plan['max_attempts_per_variation']} attempts per variation x {plan['max_tries_per_attempt']} tries "
        "per attempt)",
        f"  basis        {plan['basis']}",
        f"  cost         expected {usd(plan['cost_expected_usd'])}, worst case {usd(plan['cost_worst_case_usd'])}"
        + (f" at ${plan['usd_per_call']:.3f} per call (estimate)" if plan["usd_per_call"] else ""),
    ]
    if plan.get("batch"):
        lines.append(f"  batch        expected {usd(plan['cost_expected_usd'])} at the Batch API's price, against "
                     f"{usd(plan['cost_expected_synchronous_usd'])} for the same calls made one by one; answers "
                     "within 24 h, judged by `varflow collect`")
    if plan["max_cost_usd"] is not None:
        room = (f" (room for about {int(plan['max_cost_usd'] // plan['usd_per_call'])} calls)"
                if plan["usd_per_call"] else "")
        lines.append(f"  cap          --max-cost ${plan['max_cost_usd']:.2f}: no call starts past it{room}")
    print("\n".join(lines))

def execute(params, as_json: bool, dry_run: bool = False) -> int:
    if dry_run:
        from varflow.flows.plan import plan_run

        _print_plan(plan_run(params), as_json)
        return 0
    exit_unless_usable(params)
    from varflow.runtime.preflight import PreflightError

    try:
        summary = start_run(params, warn=lambda warning: print(f"varflow: {warning}", file=sys.stderr))
    except PreflightError as exc:  # before Prefect starts, or found by the run itself (the data changed meanwhile)
        print(f"varflow: {for_log(exc)}", file=sys.stderr)
        return 2
    except VarflowError as exc:  # a setup problem found by the run (missing key or secret, ...); a bug stays a bug
        raise SystemExit(f"varflow: cannot run: {for_log(exc)}") from None
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        import dataclasses

        from varflow.flows.report import RunSummary

        names = {f.name for f in dataclasses.fields(RunSummary)}
        print(for_terminal(RunSummary(**{k: v for k, v in summary.items() if k in names}).render_text(),
                           keep_newlines=True))
        from varflow.generation.backends import backend_class

        if backend_class(summary["backend"]).remote and summary.get("calls"):
            print(f"  cost         ${summary.get('cost_usd') or 0:.4f} estimated for {summary['calls']} calls "
                  f"(retries included)")
    if summary.get("stop_outcome"):
        print(f"varflow: {for_log(summary['message'])}", file=sys.stderr)
    return run_exit_code(summary)

def start_run(params, *, warn) -> dict:
    """A checked run's start to end, for ``varflow run`` and ``varflow.run`` alike: the preflight
    (nothing is paid for before the run knows it can keep the result; ``warn`` gets its warning),
    then the flow on the task runner the parameters ask for; returns the run's summary. Raises
    PreflightError (the CLI's exit 2) and VarflowError for a run that cannot start."""
    from varflow.flows.preflight import preflight

    warning = preflight(params)
    if warning:
        warn(warning)
    from varflow.flows.variation_flow import run_local

    return run_local(params)


def run_exit_code(summary: dict) -> int:
    """The exit code Prefect's state agrees with (flows/outcome.py has the table): 0 an image
    succeeded or nothing needed doing; 1 nothing succeeded; 3 the spending cap or the daily
    quota stopped the run (143: SIGTERM, Prefect's own)."""
    from varflow.flows.outcome import verdict

    return verdict(summary).exit_code

def cmd_run(args) -> int:
    from varflow.images.locations import is_url

    if is_url(args.input_dir) or is_url(args.out):  # a bucket: checked (and listed) by the preflight
        return execute(params_of(args, args.input_dir, args.out), args.json, args.dry_run)
    input_dir = Path(args.input_dir)
    if not input_dir.exists():
        print(f"varflow: input folder {input_dir} does not exist; pass a folder of images", file=sys.stderr)
        return 2
    from varflow.runtime.preflight import PreflightError, check_not_input

    try:
        check_not_input(input_dir, Path(args.out).expanduser())
    except PreflightError as exc:
        print(f"varflow: {exc}", file=sys.stderr)
        return 2
    return execute(params_of(args, str(input_dir), args.out), args.json, args.dry_run)

def cmd_demo(args) -> int:
    from varflow.images.samples import export_samples

    base = Path(args.dir)
    photos = export_samples(base / "photos")
    print(f"varflow demo: {len(photos)} sample photos in {base / 'photos'}", flush=True)
    params = params_of(args, str(base / "photos"), str(base / "variations"))
    code = execute(params, args.json, args.dry_run)
    if not args.dry_run:
        sheet = write_contact_sheet(params, base / "contact-sheet.png")
        if sheet is not None and not args.json:
            print(f"varflow demo: look at the originals beside their variations: {sheet}")
    return code

def write_contact_sheet(params, dest: Path) -> Path | None:
    """Each original beside its accepted variations (type and overall score under each): how a
    person judges the result. None when nothing was accepted."""
    from varflow.flows.resources import data_home
    from varflow.storage import Store

    from varflow.reports.contact_sheet import make_contact_sheet

    store = Store(data_home(params))
    rows: dict[str, list] = {}
    for r in store.accepted_by_source(params.output_dir):
        if Path(r["output_path"]).is_file():
            rows.setdefault(r["source_path"], [r["source_path"]]).append(
                (r["output_path"], f"{r['variation_type']} {r['overall_quality']:.2f}"))
    if not rows:
        return None
    sheet = make_contact_sheet([(Path(src).name, images) for src, images in rows.items()], thumb_height=180)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(dest)
    return dest

def cmd_collect(args) -> int:
    """Collect ended batch jobs (``--backend gemini-batch``): their folders' runs judge the answers."""
    from varflow.flows.collect_flow import batch_collect
    from varflow.flows.outcome import collector_verdict, summary_from

    try:
        result = summary_from(batch_collect(home=args.home, return_state=True))
    except ValueError as exc:
        raise SystemExit(f"varflow: cannot collect: {exc}") from None
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return collector_verdict(result["runs"]).exit_code
    for job in result["jobs"]:
        done = (f", {job['succeeded']} answered with an image, {job['failed']} without"
                if job["succeeded"] is not None else "")
        print(f"  {job['job_name']:<32} {job['state']:<10} {job['requests']} requests{done}")
    for run in result["runs"]:
        print(f"  run {run['run_id']}: {run['input_dir']}: {run['images_ok']} images ok, "
              f"{run['variations_accepted']} variations accepted, ${run.get('cost_usd') or 0:.4f} estimated")
    print(f"varflow collect: {len(result['runs'])} folder run(s), {result['open_jobs']} job(s) still open")
    return collector_verdict(result["runs"]).exit_code

def cmd_samples(args) -> int:
    from varflow.images.samples import export_samples

    for p in export_samples(args.dest):
        print(p)
    return 0


EXAMPLES = {"varflow.notebooks": "*.ipynb", "varflow.deployments": "*.yaml"}  # package data, by package


def cmd_examples(args) -> int:
    """Copy the notebooks and the deployment and automation examples into a folder; a file already
    there is kept (named on stderr), never overwritten."""
    import shutil
    from importlib.resources import as_file, files

    dest = Path(args.dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    for package, pattern in EXAMPLES.items():
        with as_file(files(package)) as folder:
            for source in sorted(Path(folder).glob(pattern)):
                target = dest / source.name
                if target.exists():
                    print(f"varflow examples: kept {target} (it exists; remove it for a fresh copy)", file=sys.stderr)
                    continue
                shutil.copyfile(source, target)
                print(target)
    return 0
