"""The run's options (varflow run, demo, serve) and the argument types the commands share."""

from __future__ import annotations

import argparse
import sys

from varflow.generation.backends import BACKENDS
from varflow.settings import IMAGE_EXTENSIONS, PROFILES, VARIATION_TYPES


def add_run_options(p: argparse.ArgumentParser) -> None:
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
        "default 100)", type=megapixels)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--dry-run", action="store_true",
                   help="print how many calls the run would make and their estimated cost; make none")
    add_runner_options(p.add_argument_group("beyond one machine (docs/scale-out.md)"), opt)
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


def megapixels(value: str) -> int:
    """--max-megapixels as pixels: a positive, finite number of megapixels."""
    try:
        mp = float(value)
    except ValueError:
        mp = float("nan")
    if not (0 < mp < float("inf")) or mp * 1_000_000 < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of megapixels (e.g. 100)")
    return int(mp * 1_000_000)

def positive_int(value: str) -> int:
    """An argument that counts something: a whole number of at least 1."""
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return n


def add_runner_options(r, opt) -> None:
    """Where the run executes: ``opt`` is add_run_options' option maker."""
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


def params_of(args, input_dir: str, output_dir: str):
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
