"""The flow: discover a folder's images and run each through the image pipeline.

Images are admitted in a sliding window bounded by a memory budget (the seed's batch formula,
fixed: see varflow/memory.py) and a count; each finished image is recorded at once, feeds the
adaptive quality level, and frees its place for the next one. The task runner's pool holds the
images in flight plus the generation calls they submit, so the two never starve each other.

Runs are incremental: an image whose content and parameters already finished in an earlier run
is skipped, and every generation is cached on its content key, so a run killed at any point and
started again redoes only what was in flight, and never pays for a call twice.
"""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.filesystems import LocalFileSystem
from prefect.futures import as_completed
from prefect.runtime import flow_run as runtime_flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.gallery import run_gallery_path, write_gallery
from flows.image_pipeline import ImageJob, ImageOutcome, process_image
from flows.parameters import RunParameters
from flows.report import RunSummary
from storage import Store
from tasks.generate import (
    FATAL_OUTCOMES,
    BackendSpec,
    CallPolicy,
    backend_for,
    estimated_call_cost,
    preflight,
    quiet_expected_failures,
    release_backend,
    release_run_control,
    run_control,
    variation_cache,
)
from varflow.adaptive import WINDOW, AdaptiveQuality, LevelChange
from varflow.dedup import KnownImage, KnownImageIndex, LibraryView
from varflow.discovery import discover_images
from varflow.hashing import ImageHashes
from varflow.imageio import sha256_file, upright_size
from varflow.memory import MemoryWindow, estimate_image_bytes, tune_allocator
from varflow.records import ImageRecord, QualityLevelChangeRecord, RunRecord, stable_id, utcnow
from varflow.runlock import RunLock, is_held
from varflow.settings import default_home
from varflow.thumbnails import prune_thumbnails

DEFAULT_POOL = 8


def output_stems(paths: list[Path], input_dir: Path) -> list[str]:
    """OUTPUT-relative names without suffix; same-stem files (a.jpg, a.png) keep their suffix."""
    rel = [p.relative_to(input_dir) if p != input_dir else Path(p.name) for p in paths]
    base = [r.with_suffix("").as_posix() for r in rel]
    clash = {b for b in base if base.count(b) > 1}
    return [f"{b}-{r.suffix.lstrip('.').lower()}" if b in clash else b for b, r in zip(base, rel)]


def _runner_workers() -> int:
    ctx = FlowRunContext.get()
    return getattr(getattr(ctx, "task_runner", None), "_max_workers", None) or DEFAULT_POOL


def _result_storage(home: Path) -> str:
    """A saved LocalFileSystem block under the data directory for generate's cached results.

    Prefect only accepts saved blocks for result storage; the name is derived from the data
    directory so two homes never share results.
    """
    name = "varflow-results-" + hashlib.sha256(str(home).encode()).hexdigest()[:12]
    LocalFileSystem(basepath=str(home / "cache" / "prefect-results")).save(name, overwrite=True)
    return f"local-file-system/{name}"


def prune_prefect_results(home: Path, cache) -> int:
    """Bound Prefect's persisted results (Prefect never deletes them): keep only live cache keys."""
    removed = 0
    results = home / "cache" / "prefect-results"
    for f in results.iterdir() if results.exists() else []:
        if f.is_file() and cache.get(f.name) is None:
            f.unlink(missing_ok=True)
            removed += 1
    return removed


def recover_interrupted_runs(store: Store, logger) -> None:
    for run in store.running_runs():
        if not is_held(store.home / "locks" / f"run-{run['run_id']}.lock"):
            removed = store.recover_interrupted(run)
            logger.info("run %s was interrupted; closed it (%d half-written image parts removed)",
                        run["run_id"], removed)


@flow(name="varflow-run", task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_POOL), persist_result=False)
def variation_run(params: RunParameters) -> dict:
    """Turn a folder of images into scored, de-duplicated variations; returns the run summary."""
    logger = get_run_logger()
    t_start = time.perf_counter()
    tune_allocator()
    quiet_expected_failures()
    home = (Path(params.home).expanduser() if params.home else default_home()).resolve()
    store = Store(home).initialize()
    store.vacuum()
    flow_run_id = runtime_flow_run.id
    run_id = str(flow_run_id or uuid.uuid4())
    lock = RunLock(home / "locks" / f"run-{run_id}.lock").acquire()
    try:
        recover_interrupted_runs(store, logger)
        return _run(params, store, run_id, flow_run_id, logger, t_start)
    finally:
        lock.release()


def _initial_quality(params: RunParameters, store: Store, scope: str, run_id: str) -> AdaptiveQuality:
    """Start where the last run of this backend/model left off (high at first).

    A level named by the run replaces it and is recorded as a change, so the next run that
    names none goes on from there.
    """
    saved_level, history = store.quality_state(scope, window=WINDOW)
    current = saved_level or "high"
    level = params.level or current
    if level != current:
        recent = history[-WINDOW:]
        store.write_level_change(QualityLevelChangeRecord(
            run_id=run_id, image_id="", changed_at=utcnow(), from_level=current, to_level=level,
            window_average=sum(recent) / len(recent) if recent else float("nan"),
            reason="set by the run's level parameter", scope=scope,
        ))
    return AdaptiveQuality(level=level, history=history)


def backend_spec(params: RunParameters) -> BackendSpec:
    """What to build: the model is an output-changing option; timeout and secret name are not."""
    options = (("model", params.model),) if params.model else ()
    if params.backend == "local":
        return BackendSpec("local", options)
    return BackendSpec(params.backend, options, timeout_s=params.request_timeout_s,
                       api_key_secret=params.api_key_secret)


def call_policy(params: RunParameters, home: Path) -> CallPolicy:
    """Retries, pacing and budget of the run's calls (the local backend is never retried)."""
    if params.backend == "local":
        return CallPolicy(retries=0, max_cost_usd=params.max_cost_usd, concurrency=params.generation_concurrency)
    return CallPolicy(retries=params.retries, backoff_s=params.retry_backoff_s,
                      rpm=params.requests_per_minute, rate_dir=str(home / "ratelimit"),
                      max_cost_usd=params.max_cost_usd, concurrency=params.generation_concurrency)


def _run(params: RunParameters, store: Store, run_id: str, flow_run_id, logger, t_start: float) -> dict:
    spec = backend_spec(params)
    try:
        return _run_backend(params, store, run_id, flow_run_id, logger, t_start, spec)
    finally:
        release_run_control(run_id)
        release_backend(spec)


def _run_backend(params: RunParameters, store: Store, run_id: str, flow_run_id, logger, t_start: float,
                 spec: BackendSpec) -> dict:
    home = store.home
    input_dir = Path(params.input_dir).expanduser().resolve()
    output_dir = Path(params.output_dir).expanduser().resolve()
    settings = params.settings()
    backend = backend_for(spec)  # fails before any work on a bad backend setup (e.g. no key)
    scope = f"{backend.name}/{backend.model}"
    policy = call_policy(params, home)
    if policy.max_cost_usd is not None and estimated_call_cost(backend) is None:
        raise ValueError(f"--max-cost cannot be enforced: no price is known for model {backend.model!r} "
                         "(see PRICES_USD_PER_IMAGE in varflow/generators/gemini.py)")
    control = run_control(run_id, policy.max_cost_usd)
    adaptive = _initial_quality(params, store, scope, run_id)
    fingerprint = {**params.job_fingerprint(), "model": backend.model}
    name_tag = stable_id({k: v for k, v in fingerprint.items() if k != "output_dir"})[:8]
    finished = {} if params.force else store.finished_jobs()
    library = _load_library(store, logger) if params.dedup_library else None
    cache_dir = home / "cache" / "variations"
    cache_max_bytes = params.cache_max_mb * 2**20
    result_storage = _result_storage(home)

    paths = discover_images(input_dir, extensions=params.extensions, exclude=[output_dir, home])
    stems = output_stems(paths, input_dir)
    record = dict(
        run_id=run_id, flow_run_id=str(flow_run_id) if flow_run_id else None,
        parameters=params.model_dump_json(), input_dir=str(input_dir), output_dir=str(output_dir),
        backend=backend.name, model=backend.model, started_at=utcnow(),
    )
    store.write_run(RunRecord(**record, finished_at=None, status="running", images_total=len(paths)))
    logger.info("run %s: %d images in %s -> %s (%s, level %s)", run_id, len(paths), input_dir,
                output_dir, scope, adaptive.level)
    if paths and backend.name != "local":
        problem = preflight(spec)  # free: is the key accepted, does the model exist?
        if problem is not None and problem.outcome in FATAL_OUTCOMES:
            control.stop(problem.outcome, str(problem))
        elif problem is not None:
            logger.warning("pre-flight check of %s failed (%s); going on, calls retry transient errors",
                           scope, problem)

    pool = _runner_workers()
    in_flight_max = min(params.images_in_flight, max(1, pool - 1))
    if in_flight_max < params.images_in_flight:
        logger.warning("images_in_flight %d lowered to %d to fit the task runner's %d workers",
                       params.images_in_flight, in_flight_max, pool)
    if pool < pool_size(params.generation_concurrency, in_flight_max):
        logger.warning("the task runner's %d workers are fewer than %d images in flight plus two per call slot "
                       "(generation_concurrency %d): fewer calls may be in flight; size the pool with "
                       "flows.variation_flow.pool_size (deployments/nightly.py does)",
                       pool, in_flight_max, params.generation_concurrency)
    window = MemoryWindow(budget_bytes=params.max_memory_mb * 2**20, max_images=in_flight_max)
    work_dir = home / "work" / run_id
    outcomes: list[ImageOutcome] = []
    level_changes = 0
    pending: dict = {}  # future -> reserved bytes
    abort: ImageOutcome | None = None
    seen: dict[str, str] = {}  # image_id -> first path with that content

    def finish(fut) -> None:
        nonlocal level_changes, abort
        window.leave(pending.pop(fut))
        outcome: ImageOutcome = fut.result()
        outcomes.append(outcome)
        if outcome.fatal_outcome and abort is None:
            abort = outcome
        if params.adaptive and outcome.status == "ok" and outcome.attempts:
            change: LevelChange | None = adaptive.record(outcome.success_rate, level=outcome.quality_level)
            if change:
                level_changes += 1
                logger.info("quality level %s -> %s (%s)", change.from_level, change.to_level, change.reason)
                store.write_level_change(QualityLevelChangeRecord(
                    run_id=run_id, image_id=outcome.image_id, changed_at=utcnow(),
                    from_level=change.from_level, to_level=change.to_level,
                    window_average=change.window_average, reason=change.reason, scope=scope,
                ))

    def not_processed(path: Path, image_id: str, status: str, message: str) -> None:
        outcomes.append(ImageOutcome(str(path), image_id, status, message))
        store.write_image_result(
            ImageRecord(run_id, image_id, str(path), None, None, status, message, finished_at=utcnow()),
            key=stable_id(image_id, str(path)),
        )

    try:
        for path, stem in zip(paths, stems):
            try:
                image_id = sha256_file(path)
            except OSError as exc:
                not_processed(path, stable_id(str(path)), "error",
                              f"{path}: cannot be read ({exc.strerror}); check the path and permissions")
                continue
            if image_id in seen:  # the same bytes twice: pay for them once
                not_processed(path, image_id, "skipped", f"same content as {seen[image_id]}; its variations stand for both")
                continue
            seen[image_id] = str(path)
            job_key = stable_id(image_id, stem, fingerprint)
            if job_key in finished:
                not_processed(path, image_id, "skipped",
                              f"unchanged since run {finished[job_key]} (same content and parameters); --force redoes it")
                continue
            max_side = adaptive.settings.max_image_size
            w, h = upright_size(path) or (max_side, max_side)
            cost = estimate_image_bytes(w, h, max_side=max_side, count=params.count)
            while pending and not window.admits(cost):
                finish(next(as_completed(list(pending))))
            if control.stopped or abort is not None:
                outcome_, message_ = ((control.stop_outcome, control.stop_message) if control.stopped
                                      else (abort.fatal_outcome, abort.fatal_message))
                not_processed(path, image_id, "skipped", f"not processed: the run stopped ({outcome_}): {message_}")
                continue
            if library is None:
                earlier, library_view = _earlier_accepted(store, image_id, output_dir, stem, name_tag), None
            else:  # the library holds this source's earlier variations too: no query of its own
                earlier, library_view = (), LibraryView(library, _own_prefix(output_dir, stem, name_tag))
            job = ImageJob(
                run_id=run_id, store_home=str(home), source_path=str(path), image_id=image_id,
                output_stem=stem, output_dir=str(output_dir), work_dir=str(work_dir), count=params.count,
                variation_type=params.variation_type, prompt=params.prompt, seed=params.seed,
                backend=spec, model=backend.model, level=adaptive.settings, settings=settings,
                result_storage=result_storage, cache_dir=str(cache_dir), cache_max_bytes=cache_max_bytes,
                job_key=job_key, keep_rejected=params.keep_rejected, force=params.force,
                earlier_accepted=earlier, name_tag=name_tag, policy=policy, library=library_view,
            )
            window.enter(cost)
            pending[process_image.submit(job)] = cost
        while pending:
            finish(next(as_completed(list(pending))))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    summary = RunSummary.from_outcomes(
        outcomes, run_id=run_id, status="", input_dir=str(input_dir), output_dir=str(output_dir),
        home=str(home), duckdb_path=str(store.duckdb_path), backend=backend.name, model=backend.model,
    )
    summary.variations_requested = params.count * summary.images_ok
    summary.final_level = adaptive.level
    summary.level_changes = level_changes
    summary.wall_seconds = time.perf_counter() - t_start
    processed = summary.images_ok + summary.images_error
    if not paths:
        summary.status = "no_images"
        summary.message = f"no images with extensions {', '.join(params.extensions)} found in {input_dir}"
    elif summary.images_ok == 0 and summary.images_error > 0:
        summary.status = "failed"
        summary.message = "no image succeeded; see the errors above"
    else:
        summary.status = "completed"
        if processed == 0:
            summary.message = "nothing new: every image was already done with these parameters (--force redoes them)"
    stop = ((control.stop_outcome, control.stop_message) if control.stopped
            else (abort.fatal_outcome, abort.fatal_message) if abort is not None else None)
    if stop is not None:
        if summary.images_ok == 0:
            summary.status = "failed"
        summary.message = f"stopped early ({stop[0]}): {stop[1]}"
        logger.error("run %s %s", run_id, summary.message)
    store.write_run(RunRecord(
        **record, finished_at=utcnow(), status=summary.status, images_total=summary.images_total,
        images_ok=summary.images_ok, images_error=summary.images_error,
        images_skipped=summary.images_skipped, variations_accepted=summary.variations_accepted,
        variations_rejected=summary.variations_rejected, duplicates=summary.duplicates,
        attempts=summary.attempts, wall_seconds=summary.wall_seconds, message=summary.message,
    ))
    store.compact_run(run_id)
    prune_prefect_results(home, variation_cache(str(cache_dir), cache_max_bytes))
    summary.gallery_path = _write_run_gallery(home, run_id, logger)
    try:
        create_markdown_artifact(
            key="varflow-run-report", markdown=summary.render_markdown(),
            description=f"varflow run {run_id}",
        )
    except Exception as exc:  # a report must never fail a run whose results are recorded
        logger.warning("could not publish the run report artifact: %s", exc)
    logger.info("run %s %s: %d/%d images ok, %d variations accepted of %d attempts, %.1f s",
                run_id, summary.status, summary.images_ok, summary.images_total,
                summary.variations_accepted, summary.attempts, summary.wall_seconds)
    result = summary.as_dict()
    result.update(cost_usd=round(control.spent_usd, 6), calls=control.calls,
                  stop_outcome=stop[0] if stop else None)
    return result


def _write_run_gallery(home: Path, run_id: str, logger) -> str | None:
    """The run's gallery page under the data directory; a failure is logged, never fails the run."""
    t0 = time.perf_counter()
    try:
        path = write_gallery(home, run_gallery_path(home, run_id), run_id)
    except Exception as exc:
        logger.warning("could not write the run's gallery: %s", exc)
        return None
    finally:
        prune_thumbnails(home)
    logger.info("gallery %s written in %.2f s", path, time.perf_counter() - t0)
    return str(path)


def default_model(backend: str, model: str | None) -> str:
    """The model name a run would record, without building the backend (no key needed)."""
    if model:
        return model.strip().removeprefix("models/")
    if backend == "local":
        from varflow.generators.local import LocalGenerator

        return LocalGenerator.model
    from varflow.generators.gemini import DEFAULT_MODEL

    return DEFAULT_MODEL


def plan_run(params: RunParameters) -> dict:
    """What ``varflow run`` would call and spend, computed without running anything.

    No flow run, no Prefect server, no API call and no key: the images are discovered and
    hashed, those an earlier run finished with the same parameters are left out (as the run
    would), and the number of calls is bounded from the enhanced loop and the retry policy:

    * expected = images to do x count (every first attempt accepted, no retry);
    * worst case = images to do x count x the level's max attempts per variation x (1 + retries).

    Generations already in the variation cache would be free; the plan does not subtract them,
    so it errs high.
    """
    from varflow.settings import QUALITY_LEVELS, level_settings

    home = (Path(params.home).expanduser() if params.home else default_home()).resolve()
    input_dir = Path(params.input_dir).expanduser().resolve()
    output_dir = Path(params.output_dir).expanduser().resolve()
    model = default_model(params.backend, params.model)
    scope = f"{params.backend}/{model}"
    store = Store(home).initialize() if (home / "tables").exists() else None
    finished = {} if (params.force or store is None) else store.finished_jobs()
    saved_level = store.quality_state(scope, window=WINDOW)[0] if store is not None else None
    level = level_settings(params.level or saved_level or "high")
    fingerprint = {**params.job_fingerprint(), "model": model}
    paths = discover_images(input_dir, extensions=params.extensions, exclude=[output_dir, home])
    todo, done, same = 0, 0, 0
    seen: set[str] = set()
    for path, stem in zip(paths, output_stems(paths, input_dir)):
        try:
            image_id = sha256_file(path)
        except OSError:
            continue
        if image_id in seen:
            same += 1
            continue
        seen.add(image_id)
        if stable_id(image_id, stem, fingerprint) in finished:
            done += 1
            continue
        todo += 1
    retries = 0 if params.backend == "local" else params.retries
    # The adaptive policy may move back up to high during the run: its attempts bound the worst case.
    max_attempts = max(QUALITY_LEVELS["high"].max_attempts_per_variation, level.max_attempts_per_variation) \
        if params.adaptive else level.max_attempts_per_variation
    expected = todo * params.count
    worst = expected * max_attempts * (1 + retries)
    if params.backend == "local":
        per_call: float | None = 0.0
    else:
        from varflow.generators.gemini import estimate_cost

        per_call = estimate_cost(model)
    cost = (lambda n: round(n * per_call, 6) if per_call is not None else None)
    return {
        "backend": params.backend, "model": model, "level": level.name, "images_found": len(paths),
        "images_to_do": todo, "images_already_done": done, "images_same_content": same,
        "count": params.count, "max_attempts_per_variation": max_attempts,
        "max_tries_per_attempt": 1 + retries, "calls_expected": expected, "calls_worst_case": worst,
        "usd_per_call": per_call, "cost_expected_usd": cost(expected), "cost_worst_case_usd": cost(worst),
        "max_cost_usd": params.max_cost_usd,
    }


def _own_prefix(output_dir: Path, stem: str, name_tag: str) -> str:
    """The start of every accepted file name this job writes."""
    return str(output_dir / f"{stem}-{name_tag}-v")


def _earlier_accepted(store: Store, image_id: str, output_dir: Path, stem: str, name_tag: str) -> tuple:
    """Variations earlier runs accepted for this source (files still present), as dedup knows them.

    The files this job itself (re)writes are left out: a forced re-run replaces them.
    """
    own = _own_prefix(output_dir, stem, name_tag)
    return tuple(
        KnownImage(r["variation_id"], ImageHashes(r["ahash"], r["phash"], r["dhash"]), r["output_path"])
        for r in store.accepted_variations(image_id)
        if not r["output_path"].startswith(own) and Path(r["output_path"]).is_file()
    )


def _load_library(store: Store, logger) -> KnownImageIndex:
    """Every variation ever accepted in this data directory, indexed by hash (--dedup-library)."""
    t0 = time.perf_counter()
    cols = store.accepted_library()
    index = KnownImageIndex(
        KnownImage(key, ImageHashes(a, p, d), path)
        for key, a, p, d, path in zip(cols["variation_id"], cols["ahash"], cols["phash"], cols["dhash"],
                                      cols["output_path"])
    )
    logger.info("dedup library: %d accepted variations indexed in %.2f s", len(index), time.perf_counter() - t0)
    return index


def pool_size(generation_concurrency: int, images_in_flight: int = 0) -> int:
    """Task-runner threads for a run: one per image in flight (its pipeline task waits on its
    variations) and two per call slot. A generate task holds its thread for Prefect's
    bookkeeping before and after the call (state changes, cache lookup, result persistence);
    with only one thread per slot that time idles a slot: 26.9 against 28.6 calls/s (84% against
    89% of ideal) concurrency-bound in bench/gemini_throughput.py. The call slots
    (``CallPolicy.concurrency``) still bound the calls themselves. Measured on
    bench/memory_flat.py (local backend, 30 photos of 3000 x 2000): 12% faster than one thread
    per slot (35 s against 40 s), for 37 MiB more peak RSS (735 against 697 MiB)."""
    return images_in_flight + 2 * generation_concurrency


def run_local(params: RunParameters) -> dict:
    """Run the flow with a task-runner pool sized for these parameters (the CLI's entry)."""
    pool = pool_size(params.generation_concurrency, params.images_in_flight)
    return variation_run.with_options(task_runner=ThreadPoolTaskRunner(max_workers=pool))(params)
