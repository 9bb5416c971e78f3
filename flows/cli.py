"""``varflow``: the command line. Prefect is imported only by the commands that run a flow."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from varflow.errors import VarflowError
from varflow.generation.backends import BACKENDS
from varflow.reports.tabular import cell_text, format_table
from varflow.safety.escaping import for_log, for_terminal
from varflow.settings import DEFAULT_PROFILE, GALLERY, IMAGE_EXTENSIONS, PROFILES, VARIATION_TYPES


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Options named as ``RunParameters`` fields; a default shown here is read from there."""
    from varflow.flows.parameters import RunParameters

    fields = RunParameters.model_fields

    def opt(flag: str, dest: str, help: str, *, group=p, **kw) -> None:
        default = fields[dest].default
        if default not in (None, False, "") and "default" not in help:
            help += f" (default {default})"
        group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, help=help, **kw)

    opt("--count", "count", "accepted variations wanted per image", type=int)
    opt("--type", "variation_type", "kind of variation", choices=VARIATION_TYPES)
    opt("--prompt", "prompt", "what the variations should look like")
    opt("--seed", "seed", "same seed, same variations", type=int)
    opt("--backend", "backend", "generator", choices=BACKENDS)
    opt("--model", "model", "model name (default: the backend's)")
    opt("--profile", "profile", "quality model that decides: calibrated (agrees with a person on real photos) "
        "or seed (the seed document's formulas); both are recorded", choices=PROFILES)
    opt("--level", "level", "quality level to start at (default: where the last run of this backend/model left "
        "it; high at first, as the seed)", choices=("high", "medium", "low"))
    opt("--no-adapt", "adaptive", "keep the quality level fixed", action="store_false")
    opt("--keep-rejected", "keep_rejected", "keep rejected variations under OUT/_rejected", action="store_true")
    opt("--force", "force", "redo finished images and regenerate cached variations", action="store_true")
    opt("--dedup-library", "dedup_library", "also reject a new variation that duplicates any variation ever "
        "accepted in the data directory, from any source image (default: only its own source's)", action="store_true")
    opt("--keep-copies", "keep_copies", "also process an input that is a copy of another input (cropped, mirrored, "
        "framed, rotated, re-encoded); default: skip it as 'copy of' the other", action="store_true")
    opt("--cache-max-mb", "cache_max_mb", "variation cache size limit (MiB)", type=int)
    opt("--home", "home", "data directory (default $VARFLOW_HOME or ~/.local/share/varflow)")
    opt("--ext", "extensions", "comma-separated image extensions (default: " + ",".join(
        e.lstrip(".") for e in IMAGE_EXTENSIONS) + ")", type=lambda v: v.split(","))
    opt("--follow-links", "follow_links", "also read images through links that lead outside the input folder "
        "(default: such a link is recorded as an error, not read)", action="store_true")
    opt("--images-in-flight", "images_in_flight", "most images processed at once", type=int)
    opt("--concurrency", "generation_concurrency", "most generation calls at once", type=int)
    opt("--max-memory-mb", "max_memory_mb", "memory budget for images in flight (MiB)", type=int)
    opt("--max-megapixels", "max_pixels", "refuse images larger than this many megapixels (decompression bombs; "
        "default 100)", type=_megapixels)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--dry-run", action="store_true",
                   help="print how many calls the run would make and their estimated cost; make none")
    _add_runner_options(p.add_argument_group("beyond one machine (docs/scale-out.md)"), opt)
    g = p.add_argument_group("paid backends (gemini)")
    opt("--retries", "retries", "retries of a call that failed transiently (429, 5xx, timeout, no image)", type=int,
        group=g)
    opt("--retry-backoff", "retry_backoff_s", "first retry delay in seconds, doubling per retry, plus jitter",
        type=float, group=g)
    opt("--rpm", "requests_per_minute", "most calls started per minute, shared by all runs on this data directory "
        "(default: no limit)", type=float, group=g)
    opt("--timeout", "request_timeout_s", "timeout of one API request in seconds", type=float, group=g)
    opt("--max-cost", "max_cost_usd", "no call starts once the run's estimated spend would pass this "
        "(default: no cap)", type=float, metavar="USD", group=g)
    opt("--api-key-secret", "api_key_secret", "Prefect Secret block holding the API key (default: GEMINI_API_KEY / "
        "GOOGLE_API_KEY)", metavar="BLOCK", group=g)


def _megapixels(value: str) -> int:
    """--max-megapixels as pixels: a positive, finite number of megapixels."""
    try:
        mp = float(value)
    except ValueError:
        mp = float("nan")
    if not (0 < mp < float("inf")) or mp * 1_000_000 < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of megapixels (e.g. 100)")
    return int(mp * 1_000_000)


def _positive_int(value: str) -> int:
    """An argument that counts something: a whole number of at least 1."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return n


def _add_runner_options(r, opt) -> None:
    """Where the run executes: ``opt`` is _add_run_options' option maker."""
    opt("--runner", "runner", "threads: one process (default); dask: image chunks on a Dask cluster",
        choices=("threads", "dask"), group=r)
    opt("--dask-address", "dask_address", "an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local "
        "cluster of --dask-workers processes)", metavar="ADDRESS", group=r)
    opt("--dask-workers", "dask_workers", "worker processes of the local Dask cluster (default 2)", type=int, group=r)
    opt("--dask-worker-wait", "dask_worker_wait_s", "seconds a run waits while its Dask cluster has no worker before "
        "it ends the images it holds with an error (default 120)", type=float, metavar="S", group=r)
    opt("--chunk-size", "chunk_size", "images per task run (default: chosen from the folder's size and the runner)",
        type=int, metavar="N", group=r)
    opt("--shared-limits", "shared_limits",
        "where call slots, spend and the RPM limit are shared: redis://host:port/db "
        "for processes on many machines (default: this process, or the data directory with --runner dask)",
        metavar="URL", group=r)


def _params(args, input_dir: str, output_dir: str):
    from pydantic import ValidationError
    from varflow.flows.parameters import RunParameters

    given = {k: v for k, v in vars(args).items()
             if k in RunParameters.model_fields and k not in ("input_dir", "output_dir")}
    try:
        return RunParameters(input_dir=input_dir, output_dir=output_dir, **given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"varflow: invalid arguments: {problems}", file=sys.stderr)
        raise SystemExit(2) from None  # like argparse: 2 is a usage error


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


def _check_backend(params) -> None:
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
        f" {plan.get('images_copies', 0)} copies of another picture)",
        f"  calls        expected {plan['calls_expected']:.0f}: {plan['attempts_per_image']:.1f} attempts per image"
        f" ({plan['acceptance_rate']:.0%} accepted) x {plan['calls_per_attempt']:.2f} calls per attempt; worst case "
        f"{plan['calls_worst_case']} (images x count {plan['count']} x {plan['max_attempts_per_variation']} attempts"
        f" per variation x {plan['max_tries_per_attempt']} tries per attempt)",
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


def _run(params, as_json: bool, dry_run: bool = False) -> int:
    if dry_run:
        from varflow.flows.plan import plan_run

        _print_plan(plan_run(params), as_json)
        return 0
    _check_backend(params)
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
    return _run(_params(args, str(input_dir), args.out), args.json, args.dry_run)


def cmd_demo(args) -> int:
    from varflow.images.samples import export_samples

    base = Path(args.dir)
    photos = export_samples(base / "photos")
    print(f"varflow demo: {len(photos)} sample photos in {base / 'photos'}", flush=True)
    params = _params(args, str(base / "photos"), str(base / "variations"))
    code = _run(params, args.json, args.dry_run)
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


def cmd_models(args) -> int:
    """The models a backend can use (a remote one: those its key can use), or why they can't be listed."""
    from varflow.generation.backends import BACKENDS, GenerationError, backend_class, make_backend

    name = args.backend or next(b for b in BACKENDS if backend_class(b).remote)
    options = {}
    if backend_class(name).remote:
        options["timeout_s"] = args.timeout
        if args.api_key_secret:
            from varflow.flows.resources import load_secret

            try:
                options["api_key"] = load_secret(args.api_key_secret)
            except ValueError as exc:
                print(f"varflow models: {exc}", file=sys.stderr)
                return 2
    try:
        backend = make_backend(name, **options)
    except ValueError as exc:  # no key, or options the backend refuses
        print(f"varflow models: {exc}", file=sys.stderr)
        return 2
    try:
        models = backend.list_models()
    except GenerationError as exc:
        hint = {"auth": "the key was refused", "connection": "cannot reach the API",
                "timeout": "the API did not answer in time"}.get(exc.outcome, exc.outcome)
        print(f"varflow models: cannot list models ({hint}): {exc}", file=sys.stderr)
        return 1
    finally:
        backend.close()
    return _print_models(models, args.json)


def _print_models(models, as_json: bool) -> int:
    if as_json:
        print(json.dumps([{"name": m.name, "display_name": m.display_name, "description": m.description,
                           "supported_actions": list(m.supported_actions)} for m in models], indent=2))
        return 0
    if not models:
        print("no image-capable models are available to this key")
        return 1
    width = max(len(m.name) for m in models)
    for m in models:
        print(f"{m.name:<{width}}  {m.display_name}" + (f" - {m.description}" if m.description else ""))
    return 0


def cmd_score(args) -> int:
    from varflow.images.imageio import ImageReadError
    from varflow.quality.profiles import calibrated_parts
    from varflow.reports.inspect import score_files

    try:
        rows = score_files(args.original, args.variations, profile=args.profile, level=args.level,
                           max_side=args.max_side)
    except ImageReadError as exc:
        print(f"varflow: {exc}", file=sys.stderr)
        return 2
    verdict_code = 0 if all(r["accepted"] for r in rows) else 1  # like a linter: 1 when any fails the gate
    if args.json:
        print(json.dumps(rows, indent=2))
        return verdict_code
    print(f"against {for_terminal(args.original)} (profile {args.profile}, level {args.level}; the diversity of "
          f"each variation "
          "is against the ones before it)")
    num = lambda v: "n/a (first)" if v is None else f"{v:.4f}"
    for r in rows:
        verdict = "accepted" if r["accepted"] else "rejected: " + ", ".join(r["reasons"])
        print(f"V{r['index']} {for_terminal(r['path'])}  {verdict}")
        print(f"   {args.profile:<10}  similarity {num(r['similarity'])}  diversity {num(r['diversity'])}  "
              f"aesthetic {num(r['aesthetic'])}  integrity {num(r['object_integrity'])}  "
              f"overall {num(r['overall_quality'])} (level needs {r['level_threshold']:.2f})")
        print("   calibrated parts  " + "  ".join(f"{k.replace('_', ' ')} {num(r[k])}" for k in calibrated_parts()))
        print(f"   seed        similarity {num(r['seed_similarity'])}  diversity {num(r['seed_diversity'])}  "
              f"aesthetic {num(r['seed_aesthetic'])}  integrity {num(r['seed_object_integrity'])}  "
              f"overall {num(r['seed_overall_quality'])}")
        print(f"   hashes a {r['ahash']} p {r['phash']} d {r['dhash']}")
    return verdict_code


def cmd_dedup(args) -> int:
    from varflow.reports.inspect import copy_groups_in

    errors: list[tuple[str, str]] = []
    try:
        groups, looked_at = copy_groups_in(args.dir, errors=errors)
    except FileNotFoundError as exc:
        print(f"varflow: {for_log(exc)}", file=sys.stderr)
        return 2
    for _path, message in errors:
        print(f"varflow: skipped {for_log(message)}", file=sys.stderr)
    if args.json:
        print(json.dumps(groups, indent=2))
    else:
        print(f"{len(groups)} near-duplicate groups among {looked_at} images")
        for g in groups:
            print("  " + "\n    ".join(for_terminal(path) for path in g))
    return 0


RUN_ID_SHOWN = 8  # characters of a run id in `varflow runs`; any unique prefix names a run


def _home(args) -> Path:
    from varflow.settings import default_home

    home = Path(args.home).expanduser() if args.home else default_home()
    if home.exists() and not home.is_dir():
        print(f"varflow: the data directory {home} is a file, not a folder; pass another --home (or VARFLOW_HOME)",
              file=sys.stderr)
        raise SystemExit(2)
    return home


def cmd_report(args) -> int:
    from varflow.flows.gallery import write_gallery

    out = Path(args.out)
    if out.is_dir():  # like cp: a folder receives the page under its default name
        out = out / "report.html"
    try:
        out = write_gallery(_home(args), out, args.run_id, execution=args.execution, max_images=args.max_images)
    except LookupError as exc:
        print(f"varflow report: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def cmd_runs(args) -> int:
    from varflow.storage.analysis import recent_runs

    from varflow.reports.tabular import format_json

    result = recent_runs(_home(args), limit=args.limit)
    if args.json:
        print(format_json(result.columns, result.rows))
        return 0
    if not result.rows:
        print(f"no runs yet in {_home(args)}: run `varflow demo` or `varflow run DIR` (or pass --home)")
        return 0
    pct = lambda v: "" if v is None else f"{v:.0%}"
    # A retried flow run has a row per execution: "<id> #2" tells them apart (--execution 2 names it).
    run = lambda r: r["run_id"][:RUN_ID_SHOWN] + (f" #{r['execution']}" if r["executions"] > 1 else "")
    rows = [[run(r), r["started_at"].strftime("%Y-%m-%d %H:%M") if r["started_at"] else "",
             r["status"], f"{r['backend']}/{r['model']}", r["images"], r["ok"], r["error"], r["skipped"],
             r["accepted"], r["rejected"], r["duplicates"], r["attempts"], pct(r["acceptance"]),
             r["mean_overall"], None if r["wall_seconds"] is None else round(r["wall_seconds"], 1)]
            for r in result.records()]
    print(format_table(["run", "started (UTC)", "status", "backend/model", "images", "ok", "error", "skipped",
                        "accepted", "rejected", "dup", "attempts", "accepted %", "overall", "wall s"], rows,
                       row_count=False))
    print(f"(a run id prefix is enough: varflow stats {result.rows[0][0][:RUN_ID_SHOWN]}; --json gives full ids)")
    return 0


def cmd_stats(args) -> int:
    from varflow.storage.analysis import as_jsonable, quality_summary, resolve_run

    try:
        run = resolve_run(_home(args), args.run_id, args.execution)
    except LookupError as exc:
        print(f"varflow stats: {exc}", file=sys.stderr)
        return 1
    summary = quality_summary(_home(args), run["run_id"], run["execution"])
    if args.json:
        print(json.dumps(as_jsonable(summary), indent=2))
    else:
        print(for_terminal(render_stats(summary), keep_newlines=True))
    return 0


def cmd_sql(args) -> int:
    from varflow.storage.analysis import QueryFailed, ReadOnlyQueryError, read_only_query

    from varflow.reports.tabular import format_csv, format_json

    try:
        result = read_only_query(_home(args), args.query)
    except ReadOnlyQueryError as exc:
        print(f"varflow sql: {for_log(exc)}", file=sys.stderr)
        return 2
    except QueryFailed as exc:
        print(f"varflow sql: {for_terminal(exc, keep_newlines=True)}\n(tables and columns: storage/SCHEMA.md, or "
              "varflow sql \"DESCRIBE variations\")", file=sys.stderr)
        return 1
    if args.csv:  # exact values for a pipe; a terminal gets control characters escaped
        text = format_csv(result.columns, result.rows)
        sys.stdout.write(for_terminal(text, keep_newlines=True) if sys.stdout.isatty() else text)
    elif args.json:
        print(format_json(result.columns, result.rows))
    else:
        print(format_table(result.columns, result.rows))
    return 0


def cmd_doctor(args) -> int:
    """Check the data directory; with --repair, fix it. Exit 0 when healthy (or repaired), 1 when
    problems remain (the lines say what --repair would do)."""
    from varflow.storage.doctor import diagnose, repair
    from varflow.storage.integrity import quarantined

    home = _home(args)
    if not home.exists():
        print(f"varflow doctor: {home} does not exist; nothing to check (pass --home DIR)", file=sys.stderr)
        return 2
    problems = diagnose(home)
    for p in problems:
        print(p.line())
    earlier = quarantined(home)
    if earlier:
        print(f"{len(earlier)} file(s) set aside in {home / 'quarantine'} (listed in quarantine.jsonl): a Parquet "
              "part's rows are not in the store until a good copy is restored to its old place")
    if not problems:
        print(f"varflow doctor: {home} is healthy")
        return 0
    if not args.repair:
        print(f"varflow doctor: {len(problems)} problem(s); run `varflow doctor --repair` to do what each line says")
        return 1
    for line in repair(home, problems):
        print(f"repaired: {line}")
    left = diagnose(home)
    for p in left:
        print(f"still wrong: {p.line()}", file=sys.stderr)
    return 1 if left else 0


def render_stats(summary: dict) -> str:
    """``varflow stats``: one run's quality summary (``varflow.storage.analysis.quality_summary``) as text."""
    run = summary["run"]
    rate = summary["acceptance_rate"]
    lines = [
        f"varflow run {run['run_id']} ({run['status']}, {run['backend']} / {run['model']}, "
        f"started {cell_text(run['started_at'])})",
        f"  images      {run['images_total']} found: {run['images_ok']} ok, {run['images_error']} error, "
        f"{run['images_skipped']} skipped",
        f"  variations  {summary['judged']} judged: {summary['accepted']} accepted, {summary['rejected']} rejected "
        f"(of which duplicates: {summary['duplicates']}); {'n/a' if rate is None else f'{rate:.0%}'} "
        f"of {summary['attempts']} attempts accepted",
    ]
    if summary["levels"]:
        lines.append("  levels      " + ", ".join(f"{k} {v} images" for k, v in summary["levels"].items()))
    lines.append("")
    metrics = summary["metrics"]
    if metrics:
        cols = ["metric", "accepted", "min", "p50", "mean", "max", "rejected", "p50", "mean"]
        rows = [[m["metric"], m["accepted_n"], m["accepted_min"], m["accepted_p50"], m["accepted_mean"],
                 m["accepted_max"], m["rejected_n"], m["rejected_p50"], m["rejected_mean"]] for m in metrics]
        lines.append("scores: accepted (count, min, p50, mean, max) | rejected (count, p50, mean); "
                     "duplicates are not scored")
        lines.append(_indent(format_table(cols, rows, row_count=False)))
        lines.append("")
    if summary["reasons"]:
        lines.append("rejected by reason (a variation can fail several checks)")
        lines.append(_indent(format_table(["reason", "variations"], list(summary["reasons"].items()), row_count=False)))
        lines.append("")
    if summary["by_type"]:
        lines.append("acceptance by variation type")
        lines.append(_indent(format_table(["variation_type", "judged", "accepted", "acceptance"],
                                          [[r["variation_type"], r["judged"], r["accepted"], r["acceptance"]]
                                           for r in summary["by_type"]], row_count=False)))
        lines.append("")
    if summary["level_changes"]:
        lines.append("quality level changes")
        lines.append(_indent(format_table(["changed_at", "from", "to", "window_average", "reason"],
                                          [[c["changed_at"], c["from_level"], c["to_level"], c["window_average"],
                                            c["reason"]] for c in summary["level_changes"]], row_count=False)))
    return "\n".join(lines).rstrip()


def _indent(table: str) -> str:
    return "\n".join("  " + line for line in table.splitlines())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="varflow", description="Scored, de-duplicated image variations.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="vary every image of a folder")
    p.add_argument("input_dir", help="folder of images (walked recursively)")
    p.add_argument("--out", default="variations", help="where accepted variations go (default ./variations)")
    _add_run_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run on bundled sample photos with the default settings")
    p.add_argument("--dir", default="varflow-demo", help="where the photos and variations go (default ./varflow-demo)")
    _add_run_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("models",
                       help="list the image models a backend can use (a paid one: those your API key can use)")
    p.add_argument("--backend", default=None, choices=BACKENDS, help="default: the first paid backend")
    p.add_argument("--api-key-secret", default=None, metavar="BLOCK",
                   help="Prefect Secret block holding the API key (default: GEMINI_API_KEY / GOOGLE_API_KEY)")
    p.add_argument("--timeout", type=float, default=30.0, help="request timeout in seconds (default 30)")
    p.add_argument("--json", action="store_true", help="print the models as JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("score", help="score variations against their original, as a run would (exit 1 if any fails)")
    p.add_argument("original")
    p.add_argument("variations", nargs="+", help="V1 V2 ...: diversity of Vi is measured against V1..V(i-1)")
    p.add_argument("--level", default="medium", choices=("high", "medium", "low"),
                   help="level for the gate (default medium)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES,
                   help=f"quality model that decides (default {DEFAULT_PROFILE}); both are printed")
    p.add_argument("--max-side", type=int, default=None,
                   help="fit images within this size first, as a run's optimize does")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("dedup", help="find near-duplicate groups among a folder's images")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true", help="print a list of groups, each a list of file paths")
    p.set_defaults(func=cmd_dedup)

    _add_serve_command(sub)

    p = sub.add_parser("collect",
                       help="collect ended batch jobs (--backend gemini-batch): judge and record their answers")
    p.add_argument("--home", default=None, help="data directory (default $VARFLOW_HOME or ~/.local/share/varflow)")
    p.add_argument("--json", action="store_true", help="print the jobs and the runs as JSON")
    p.set_defaults(func=cmd_collect)

    _add_analysis_commands(sub)

    p = sub.add_parser("examples", help="copy the notebooks and the deployment and automation examples into a folder")
    p.add_argument("dest")
    p.set_defaults(func=cmd_examples)

    p = sub.add_parser("samples", help="copy the bundled sample photos into a folder")
    p.add_argument("dest")
    p.set_defaults(func=cmd_samples)
    return parser


def _add_serve_command(sub) -> None:
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
    _add_run_options(p)
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
        if key.strip() in ("input_dir", "output_dir", "home") and out[key.strip()]:
            out[key.strip()] = str(Path(out[key.strip()]).expanduser().resolve())
    return out


def cmd_serve(args) -> int:
    """Serve the deployment until interrupted; --dry-run prints it and serves nothing."""
    params = _params(args, str(Path(args.input_dir).expanduser().resolve()),
                     str(Path(args.out).expanduser().resolve()))
    if params.home:  # a served run's relative paths would follow the serving process's directory
        params = params.model_copy(update={"home": str(Path(params.home).expanduser().resolve())})
    _check_backend(params)
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


def _add_analysis_commands(sub) -> None:
    """report, runs, stats, sql: reading what runs recorded."""
    home_help = "data directory (default $VARFLOW_HOME or ~/.local/share/varflow)"
    p = sub.add_parser("report",
                       help="write a run's gallery: originals, accepted and rejected variations, one HTML page")
    p.add_argument("run_id", nargs="?", default=None, help="run id or a unique prefix (default: the latest run)")
    p.add_argument("--out", default="report.html", help="the page to write (default ./report.html); an existing "
                   "folder gets report.html inside it")
    p.add_argument("--max-images", type=_positive_int, default=GALLERY.max_images,
                   help=f"most source images on the page (default {GALLERY.max_images})")
    p.add_argument("--execution", type=_positive_int, default=None,
                   help="which execution of a retried flow run (default: its latest; `varflow runs` shows them as #n)")
    p.add_argument("--home", default=None, help=home_help)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("runs", help="list recent runs with their counts")
    p.add_argument("--limit", type=_positive_int, default=20, help="how many runs, newest first (default 20)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.add_argument("--home", default=None, help=home_help)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("stats", help="a run's quality summary: scores, reasons, acceptance by type, level changes")
    p.add_argument("run_id", nargs="?", default=None, help="run id or a unique prefix (default: the latest run)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--execution", type=_positive_int, default=None,
                   help="which execution of a retried flow run (default: its latest; `varflow runs` shows them as #n)")
    p.add_argument("--home", default=None, help=home_help)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("sql", help="run one read-only SQL query against the store and print the rows")
    p.add_argument("query", help='e.g. "SELECT reject_reason, count(*) FROM variations GROUP BY ALL"')
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    fmt.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.add_argument("--home", default=None, help=home_help)
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("doctor",
                       help="check the data directory (damaged files, killed runs, leftovers); --repair fixes it")
    p.add_argument("--repair", action="store_true", help="do what each problem line says")
    p.add_argument("--home", default=None, help=home_help)
    p.set_defaults(func=cmd_doctor)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
