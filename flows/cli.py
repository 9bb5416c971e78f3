"""``varflow``: the command line. Prefect is imported only by the commands that run a flow."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from varflow.settings import IMAGE_EXTENSIONS, VARIATION_TYPES


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=int, default=4, help="accepted variations wanted per image (default 4)")
    p.add_argument("--type", dest="variation_type", default="random", choices=VARIATION_TYPES,
                   help="kind of variation (default random)")
    p.add_argument("--prompt", default="", help="what the variations should look like")
    p.add_argument("--seed", type=int, default=0, help="same seed, same variations (default 0)")
    p.add_argument("--backend", default="local", choices=("local", "gemini"), help="generator (default local)")
    p.add_argument("--model", default=None, help="model name (default: the backend's)")
    p.add_argument("--level", default=None, choices=("high", "medium", "low"),
                   help="quality level to start at (default: where the last run of this backend/model "
                        "left it; high at first, as the seed)")
    p.add_argument("--no-adapt", dest="adaptive", action="store_false", help="keep the quality level fixed")
    p.add_argument("--keep-rejected", action="store_true", help="keep rejected variations under OUT/_rejected")
    p.add_argument("--force", action="store_true", help="redo finished images and regenerate cached variations")
    p.add_argument("--cache-max-mb", type=int, default=2048, help="variation cache size limit (MiB, default 2048)")
    p.add_argument("--home", default=None, help="data directory (default $VARFLOW_HOME or ~/.local/share/varflow)")
    p.add_argument("--ext", default=",".join(e.lstrip(".") for e in IMAGE_EXTENSIONS),
                   help="comma-separated image extensions")
    p.add_argument("--images-in-flight", type=int, default=2, help="most images processed at once (default 2)")
    p.add_argument("--concurrency", type=int, default=2, help="most generation calls at once (default 2)")
    p.add_argument("--max-memory-mb", type=int, default=2048, help="memory budget for images in flight")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _params(args, input_dir: str, output_dir: str):
    from pydantic import ValidationError

    from flows.parameters import RunParameters

    try:
        return RunParameters(
            input_dir=input_dir, output_dir=output_dir, count=args.count,
            variation_type=args.variation_type, prompt=args.prompt, seed=args.seed,
            backend=args.backend, model=args.model, level=args.level, adaptive=args.adaptive,
            keep_rejected=args.keep_rejected, force=args.force, cache_max_mb=args.cache_max_mb, home=args.home, extensions=args.ext.split(","),
            images_in_flight=args.images_in_flight, generation_concurrency=args.concurrency,
            max_memory_mb=args.max_memory_mb,
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"varflow: invalid arguments: {problems}")


def _check_backend(params) -> None:
    """Build the backend once before Prefect starts, so a setup mistake is one clear line."""
    from varflow.generators import make_backend

    options = {"model": params.model} if params.model else {}
    try:
        make_backend(params.backend, **options)
    except (ValueError, ImportError) as exc:
        raise SystemExit(f"varflow: cannot use the {params.backend} backend: {exc}")


def _run(params, as_json: bool) -> int:
    _check_backend(params)
    from flows.variation_flow import run_local

    summary = run_local(params)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        from flows.report import RunSummary

        fields = {k: v for k, v in summary.items() if k != "acceptance_rate"}
        print(RunSummary(**fields).render_text())
    return 0 if summary["images_ok"] > 0 else 1


def cmd_run(args) -> int:
    input_dir = Path(args.input_dir)
    if not input_dir.exists():
        print(f"varflow: input folder {input_dir} does not exist; pass a folder of images", file=sys.stderr)
        return 2
    return _run(_params(args, str(input_dir), args.out), args.json)


def cmd_demo(args) -> int:
    from varflow.samples import export_samples

    base = Path(args.dir)
    photos = export_samples(base / "photos")
    print(f"varflow demo: {len(photos)} sample photos in {base / 'photos'}", flush=True)
    return _run(_params(args, str(base / "photos"), str(base / "variations")), args.json)


def cmd_samples(args) -> int:
    from varflow.samples import export_samples

    for p in export_samples(args.dest):
        print(p)
    return 0


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

    p = sub.add_parser("samples", help="copy the bundled sample photos into a folder")
    p.add_argument("dest")
    p.set_defaults(func=cmd_samples)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
