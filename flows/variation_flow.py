"""The flow: discover a folder's images and run each through the per-image pipeline.

Images are admitted in a sliding window bounded by a memory budget (the seed's batch formula,
fixed: see varflow/processing/memory.py) and a count; each finished image is recorded at once, feeds the
adaptive quality level, and frees its place for the next one. The task runner's pool holds the
images in flight plus the generation calls they submit, so the two never starve each other.

Runs are incremental: an image whose content and parameters already finished in an earlier run
is skipped, and every generation is cached on its content key, so a run killed at any point and
started again redoes only what was in flight, and never pays for a call twice.

Where things are: the run's resources are chosen in flows/resources.py; one image's stages are
varflow/processing/pipeline.py (run as the ``process-image`` task, tasks/image.py); one generation call is
varflow/runtime/calls.py (the ``generate`` task, tasks/generate.py).
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.runtime import flow_run as runtime_flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from varflow.flows.addresses import check_run_addresses
from varflow.flows.batch import BatchRun
from varflow.flows.gallery import run_gallery_path, write_gallery
from varflow.flows.lifecycle import (
    SpaceReserve,
    close_run,
    on_cancelled,
    on_crashed,
    on_failed,
    recover_interrupted_runs,
    reserve_path,
    termination_kept,
)
from varflow.flows.outcome import final_state, stop_message, summary_from
from varflow.flows.parameters import RunParameters, form_docstring, form_signature, form_values, run_parameters
from varflow.flows.preflight import check_space, new_images
from varflow.flows.publish import RunPublisher
from varflow.flows.report import RunSummary, image_row
from varflow.flows.resources import data_home, open_resources, resource_spec, run_settings
from varflow.flows.runners import pool_size, runner_for
from varflow.storage import Store
from varflow.tasks.generate import SubmitGenerations, quiet_expected_failures
from varflow.tasks.image import process_image, process_images
from varflow.tasks.optimize import optimize

from varflow.duplicates.dedup import KnownImage, KnownImageIndex, LibraryView
from varflow.duplicates.hashing import ImageHashes
from varflow.generation.backends import FATAL_OUTCOMES, GenerationError
from varflow.images.imageio import optimize_image, upright_size
from varflow.images.locations import address, folder_at, is_url, join
from varflow.images.thumbnails import prune_thumbnails
from varflow.kinds import ImageStatus, RunStatus
from varflow.processing.admission import Admission
from varflow.processing.batch import BatchScope
from varflow.processing.chunks import TaskPlan, chunk_label, plan_tasks
from varflow.processing.direct import DirectGenerations
from varflow.processing.discovery import discover_images
from varflow.processing.memory import MemoryWindow, estimate_image_bytes, tune_allocator
from varflow.processing.outnames import held_stems, holders_of, names_on_disk, next_accepted_number, stem_key
from varflow.processing.pipeline import ImageJob, ImageOutcome, ImagePipeline, JobSpec, TopUp
from varflow.processing.scan import DONE, PENDING, UNREADABLE, FoundImage, input_copies, scan_images, short_jobs
from varflow.quality.adaptive import WINDOW, AdaptiveQuality
from varflow.runtime.claims import ImageClaims
from varflow.runtime.preflight import check_folders
from varflow.runtime.records import ImageRecord, QualityLevelChangeRecord, RunRecord, stable_id, utcnow
from varflow.runtime.resources import RunResources
from varflow.runtime.runlock import RunLock, run_lock_path
from varflow.safety.escaping import escape_log_records

DEFAULT_POOL = 8
RUNNER_CHECK_S = 5.0  # while waiting for a task run, how often the runner's health is asked


def run_local(params: RunParameters) -> dict:
    """Run the flow on the task runner its parameters ask for (the CLI's entry); the summary,
    read from the flow run's final state (Completed or Failed, flows/outcome.py)."""
    runner = runner_for(params)
    flow_ = variation_run.with_options(task_runner=runner.task_runner(params))
    return summary_from(flow_(**form_values(params), return_state=True))


def variation_run(**form):
    """The flow's body: Completed or Failed as the exit code would say (flows/outcome.py)."""
    params = run_parameters(form)  # refuses a credential in a URL (flows/addresses.py)
    guard_run(params)
    runner = runner_for(params)
    ctx = FlowRunContext.get()
    if ctx is not None and not runner.owns(ctx.task_runner):
        # A deployment's flow carries the task runner it was served with; a run that asks for
        # another (the UI's runner field) runs as a subflow on it.
        state = variation_run.with_options(task_runner=runner.task_runner(params))(**form, return_state=True)
        return final_state(summary_from(state))
    with termination_kept():
        summary = run_folder(params)
    return final_state(summary)


def guard_run(params: RunParameters) -> None:
    """Before anything connects or logs a name: a deployment's run connects only where the
    operator allows (flows/addresses.py), and every log record is one escaped line."""
    escape_log_records()
    check_run_addresses(params)


# The flow takes each setting as its own parameter (the UI's form, and a deployment's run that
# overrides one of them keeps the others); its signature is RunParameters' (flows/parameters.py).
# The function keeps the flow's name: a served deployment's entrypoint names it.
variation_run.__signature__ = form_signature()
variation_run.__doc__ = form_docstring("Turn a folder of images into scored, de-duplicated variations; "
                                       "returns the run summary.")
variation_run = flow(name="varflow-run", task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_POOL),
                     persist_result=False, on_cancellation=[on_cancelled], on_crashed=[on_crashed],
                     on_failure=[on_failed])(variation_run)


def run_folder(params: RunParameters) -> dict:
    """The flow's body: one run over ``params.input_dir``; returns the run summary."""
    logger = get_run_logger()
    t_start = time.perf_counter()
    tune_allocator()
    quiet_expected_failures()
    home = data_home(params)
    check_folders(address(params.input_dir), address(params.output_dir),
                  home)  # before anything is written or paid for (varflow/runtime/preflight.py)
    # A flow run retried (from the UI or the API) runs again under its id: each execution keeps its rows.
    execution = max(1, int(runtime_flow_run.run_count or 1))
    store = Store(home, execution=execution).initialize()
    store.vacuum()
    flow_run_id = runtime_flow_run.id
    run_id = str(flow_run_id or uuid.uuid4())
    lock = RunLock(run_lock_path(home, run_id)).acquire()
    try:
        if execution > 1:  # a retry of a killed flow run: its lock hid the killed execution from the sweep below
            close_run(store, run_id, before=execution, held=lock)
        recover_interrupted_runs(store, logger)
        resources = open_resources(resource_spec(params, home, run_id, execution))  # fails before any work
        try:
            return FolderRun(params, store, resources, logger, flow_run_id, t_start).run()
        finally:
            resources.close()
    finally:
        lock.release()


def _initial_quality(params: RunParameters, store: Store, scope: str, run_id: str) -> AdaptiveQuality:
    """Start where the last run of this backend/model left off (high at first).

    A level named by the run replaces it and is recorded as a change, so the next run that
    names none goes on from there.
    """
    saved_level, history = store.quality_state(scope, window=WINDOW)
    current = saved_level or "high"
    level = params.start_level or current
    if level != current:
        recent = history[-WINDOW:]
        store.write_level_change(QualityLevelChangeRecord(
            run_id=run_id, image_id="", changed_at=utcnow(), from_level=current, to_level=level,
            window_average=sum(recent) / len(recent) if recent else float("nan"),
            reason="set by the run's level parameter", scope=scope,
        ))
    return AdaptiveQuality(level=level, history=history)


def _images_in_flight(params: RunParameters, logger) -> int:
    """Images in flight, fitted to the task runner's pool (warns when the pool is small)."""
    ctx = FlowRunContext.get()
    pool = getattr(getattr(ctx, "task_runner", None), "_max_workers", None) or DEFAULT_POOL
    in_flight = min(params.images_in_flight, max(1, pool - 1))
    if in_flight < params.images_in_flight:
        logger.warning("images_in_flight %d lowered to %d to fit the task runner's %d workers",
                       params.images_in_flight, in_flight, pool)
    if pool < pool_size(params.generation_concurrency, in_flight):
        logger.warning("the task runner's %d workers are fewer than %d images in flight plus two per call slot "
                       "(generation_concurrency %d): fewer calls may be in flight; size the pool with "
                       "varflow.flows.runners.pool_size (deployments/serve.py does)",
                       pool, in_flight, params.generation_concurrency)
    return in_flight


class FolderRun:
    """One run over a folder: its state (outcomes, level, why it stopped) lives here."""

    def __init__(self, params: RunParameters, store: Store, res: RunResources, logger, flow_run_id, t_start: float):
        self.params, self.store, self.res, self.logger, self.t_start = params, store, res, logger, t_start
        self.input_dir, self.output_dir = address(params.input_dir), address(params.output_dir)
        # a bucket's objects are identified by ETag and size once their hash is on record here
        self.source = folder_at(self.input_dir, ids_dir=store.home / "cache" / "objects")
        backend = res.backend
        self.scope = f"{backend.name}/{backend.model}"
        self.adaptive = _initial_quality(params, store, self.scope, res.run_id)
        self.fingerprint = {**params.job_fingerprint(), "model": backend.model}
        name_tag = stable_id({k: v for k, v in self.fingerprint.items() if k != "output_dir"})[:8]
        self.job_spec = JobSpec(
            count=params.count, variation_type=params.variation_type, prompt=params.prompt, seed=params.seed,
            backend=backend.name, model=backend.model, backend_options=res.spec.backend_options,
            output_dir=str(self.output_dir), name_tag=name_tag, settings=run_settings(params, store.home),
            keep_rejected=params.keep_rejected, force=params.force,
        )
        if self.job_spec.settings.profile_version is not None:
            logger.info("the calibrated profile v%d of %s judges (varflow calibrate --apply; images done earlier "
                        "stay as judged)", self.job_spec.settings.profile_version, store.home)
        self.started_at = time.time()  # what finished before this is in self.finished; after, in the claims
        self.finished = {} if params.force else store.finished_jobs()
        # finished jobs people's rejects left below count: done again for the missing ones only (TopUp)
        self.top_ups = {} if params.force else short_jobs(store.reviewed_short(), params.count)
        self.library = _load_library(store, logger) if params.dedup_library else None
        self.outcomes: list[ImageOutcome] = []
        self.level_changes = 0
        self.abort: ImageOutcome | None = None
        self.flow_run_id = str(flow_run_id) if flow_run_id else None
        self.record: dict = {}
        self.publisher = RunPublisher(res.run_id, self.flow_run_id, logger)
        self.image_rows: list[dict] = []  # the images processed, errors and stops: the report's table
        self.level_history: list[str] = []
        self.started: dict = {}  # future -> when its task run was submitted
        self.unwritten: list = []  # (what, write, args, kwargs) a full disk refused: tried again at the close
        self.reserve = SpaceReserve(reserve_path(store.home, res.run_id)).make()
        self.done_earlier = 0  # images skipped as done by an earlier run (not part of this run's work)
        self.task_runs = 0  # image task runs submitted (a stage's task runs nested in them not counted)
        self.claims = ImageClaims(store.home / "claims", res.run_id)
        self.name_claims: dict[str, str] = {}  # image_id -> the claim on its output names (names_free)
        self.claims.prune_done()
        self.batch = BatchRun(res, store, BatchScope(str(self.input_dir), name_tag, f"varflow-{res.run_id[:8]}"),
                              logger) if backend.can_batch else None

    def run(self) -> dict:
        params, home = self.params, self.store.home
        earlier_outputs = self.store.output_dirs_inside(self.input_dir)  # never sources, whatever --out is now
        paths = discover_images(self.input_dir, extensions=params.extensions,
                                exclude=[self.output_dir, home, *earlier_outputs], follow_links=params.follow_links,
                                folder=self.source if self.source.remote else None)
        check_space(params, home, new_images(paths, self.input_dir, self.store))
        self.held = held_stems(self.store.accepted_by_source(self.output_dir), self.output_dir)
        self.record = dict(
            run_id=self.res.run_id, flow_run_id=self.flow_run_id, parameters=params.model_dump_json(),
            input_dir=str(self.input_dir), output_dir=str(self.output_dir), backend=self.res.backend.name,
            model=self.res.backend.model, started_at=utcnow(),
        )
        self.store.write_run(RunRecord(**self.record, finished_at=None, status=RunStatus.RUNNING,
                                       images_total=len(paths)))
        self.logger.info("run %s: %d images in %s -> %s (%s, level %s)", self.res.run_id, len(paths),
                         self.input_dir, self.output_dir, self.scope, self.adaptive.level)
        self.publisher.start(len(paths))
        if paths:
            self.preflight()
        work_dir = home / "work" / self.res.run_id
        self.plan = self.task_plan(len(paths))
        pipeline = ImagePipeline(self.res, self.generator(work_dir), work_root=work_dir,
                                 optimize=optimize if self.plan.stage_tasks else optimize_image)
        try:
            copies = {} if params.keep_copies else input_copies(paths, self.input_dir,
                                                                follow_links=params.follow_links,
                                                                limits=params.settings().limits,
                                                                finished=self.finished, fingerprint=self.fingerprint,
                                                                held=self.held, cache_dir=home / "cache" / "copies",
                                                                folder=self.source)
            self.process(scan_images(paths, self.input_dir, fingerprint=self.fingerprint, finished=self.finished,
                                     follow_links=params.follow_links, held=self.held, copies=copies,
                                     folder=self.source, top_ups=self.top_ups), pipeline)
            if self.batch is not None:
                self.batch.submit()
        finally:
            self.claims.release_all()
            shutil.rmtree(work_dir, ignore_errors=True)
        try:
            return self.close(paths)
        finally:
            self.reserve.release()

    def task_plan(self, images: int) -> TaskPlan:
        """The run's task granularity (varflow/processing/chunks.py), and how many task runs and images
        are in flight: images whose calls wait on the network run side by side in a chunk; the
        local backend's, one after another, a chunk per core."""
        runner, remote_backend = runner_for(self.params), self.res.backend.remote
        ctx = FlowRunContext.get()
        parallel = runner.parallel(self.params, getattr(ctx, "task_runner", None))
        plan = plan_tasks(images, count=self.params.count, parallel=parallel, remote_runner=runner.remote,
                          remote_backend=remote_backend, requested=self.params.chunk_size)
        self.images_at_once = self.params.images_in_flight if remote_backend and not plan.stage_tasks else 1
        if runner.remote:
            self.tasks_in_flight = 2 * parallel  # one running and one ready per worker slot
        elif self.images_at_once > 1:
            self.tasks_in_flight = 2  # the next chunk starts while the last one's images finish
        else:
            self.tasks_in_flight = _images_in_flight(self.params, self.logger)
        self.logger.info("%s runner, %d at once: %s", runner.name, parallel, plan.describe())
        return plan

    def generator(self, work_dir: Path):
        """How the pipeline generates a wave: a batch backend queues it for a job (collecting the
        ended ones first, varflow/processing/batch.py); with stage tasks, each call is a task run; in a
        chunk, the chunk's process makes the calls."""
        if self.batch is not None:
            return self.batch.open(work_dir)
        if self.plan.stage_tasks:
            return SubmitGenerations(self.res)
        threads = self.params.generation_concurrency if self.res.backend.remote else 1
        return DirectGenerations(self.res, threads=threads)

    def preflight(self) -> None:
        """A free check that the key and the model work, before any paid call."""
        try:
            self.res.backend.check()
        except GenerationError as problem:
            if problem.outcome in FATAL_OUTCOMES:
                self.res.control.stop(problem.outcome, str(problem))
            else:
                self.logger.warning("pre-flight check of %s failed (%s); going on, calls retry transient errors",
                                    self.scope, problem)

    def process(self, found, pipeline: ImagePipeline) -> None:
        """Gather the images to do into task runs of ``plan.images_per_task`` and submit them
        while the memory window allows (varflow/processing/admission.py); record the ones not to process."""
        admission = Admission(MemoryWindow(budget_bytes=self.params.max_memory_mb * 2**20,
                                           max_images=self.tasks_in_flight), wait=self.wait_for,
                              finish=self.finish_one)
        chunk: list[FoundImage] = []
        cost = 0
        for image in found:
            if image.status != PENDING:
                self.not_processed(image, ImageStatus.ERROR if image.status == UNREADABLE else ImageStatus.SKIPPED,
                                   image.message)
                continue
            if self.stop_reason() is None and self.claim(image):
                max_side = self.adaptive.settings.max_image_size
                w, h = upright_size(image.path) or (max_side, max_side)
                # A chunk runs images_at_once of its images at a time: room for that many of its largest.
                cost = max(cost, self.images_at_once * estimate_image_bytes(w, h, max_side=max_side,
                                                                             count=self.params.count))
                chunk.append(image)
            elif self.stop_reason() is not None:
                self.not_stopped_before(image)
            if len(chunk) >= self.plan.images_per_task:
                admission.submit(cost, lambda chunk=chunk: self.start(chunk, pipeline))
                chunk, cost = [], 0
        if chunk:
            admission.submit(cost, lambda: self.start(chunk, pipeline))
        admission.drain()

    def start(self, chunk: list[FoundImage], pipeline: ImagePipeline) -> tuple | None:
        """One task run for ``chunk``, now that the window has room: (its future, its images), or
        None when the run stopped meanwhile or no image of it may write its names."""
        if self.stop_reason() is not None:
            for image in chunk:
                self.claims.release(image.image_id)
                self.not_stopped_before(image)
            return None
        chunk = self.names_free(chunk)
        if not chunk:
            return None
        jobs = self.jobs_for(chunk)
        if self.plan.stage_tasks:
            fut = process_image.submit(jobs[0], pipeline)
        else:
            fut = process_images.submit(jobs, chunk_label([Path(job.source_path).name for job in jobs]), pipeline,
                                        self.images_at_once)
        self.started[fut] = time.perf_counter()
        self.task_runs += 1
        return fut, chunk

    def names_free(self, chunk: list[FoundImage]) -> list[FoundImage]:
        """The chunk's images whose output names no other source's accepted variations hold, as
        the store says now (varflow/processing/outnames.py gives each source its own; this catches a run
        writing into the same output folder meanwhile; a claim on the name in the data directory, like
        the image's, catches one writing them right now). The others are errors, nothing written."""
        rows, free = None, []
        for image in chunk:
            prefix = _own_prefix(self.output_dir, image.stem, self.job_spec.name_tag)
            name = "name-" + stable_id(stem_key(prefix))  # a run writing these names right now holds it
            try:
                claimed = self.claims.claim(name)
            except OSError as exc:  # a full disk: this image is an error on record, the run goes on
                self.claims.release(image.image_id)
                self.not_processed(image, ImageStatus.ERROR,
                                   f"{image.path}: not processed: cannot claim its output names ({exc})")
                continue
            if claimed:
                rows = self.store.accepted_by_source(self.output_dir) if rows is None else rows
                others = holders_of(prefix, str(image.path), rows)
                if not others:
                    self.name_claims[image.image_id] = name
                    free.append(image)
                    continue
                self.claims.release(name)
                holder = f"accepted variations of {sorted(others)[0]}"
            else:
                holder = f"a run writing them now ({self.claims.holder(name)})"
            self.claims.release(image.image_id)
            message = (f"{image.path}: not processed: its output names {Path(prefix).name}NN.png are held by "
                       f"{holder}; nothing was overwritten: rename one of the files")
            self.logger.error("%s", message)
            self.not_processed(image, ImageStatus.ERROR, message)
        return free

    def not_stopped_before(self, image: FoundImage) -> None:
        stop = self.stop_reason()
        self.not_processed(image, ImageStatus.SKIPPED, f"not processed: the run stopped ({stop[0]}): {stop[1]}")

    def claim(self, image: FoundImage) -> bool:
        """Take the image's claim in the data directory (varflow/runtime/claims.py); False, with the image
        recorded as skipped, when another run holds it or finished it meanwhile."""
        try:
            claimed = self.claims.claim(image.image_id)
        except OSError as exc:  # a full disk: this image is an error on record, the run goes on
            self.not_processed(image, ImageStatus.ERROR, f"{image.path}: not processed: cannot take its claim ({exc})")
            return False
        if not claimed:
            message = (f"{image.path}: not processed: another run ({self.claims.holder(image.image_id)}) is "
                       "processing the same content; run again after it ends to pick up what it leaves")
            self.logger.warning("%s", message)
            self.not_processed(image, ImageStatus.SKIPPED, message)
            return False
        if not self.params.force and image.job_key and self.claims.finished_since(image.job_key, self.started_at):
            self.claims.release(image.image_id)
            self.logger.info("%s: finished by another run while this one started; skipped", image.path)
            self.not_processed(image, ImageStatus.SKIPPED, f"{image.path}: finished by another run meanwhile "
                                                 "(same content and parameters); --force redoes it")
            return False
        return True

    def jobs_for(self, chunk: list[FoundImage]) -> list[ImageJob]:
        """The chunk's jobs at the current level, with what earlier runs accepted for each source
        (one store query per chunk)."""
        earlier = {} if self.library is not None else \
            self.store.accepted_variations([i.image_id for i in chunk], except_run=self.res.run_id)
        return [self.job_for(image, earlier.get(image.image_id, ())) for image in chunk]

    def job_for(self, image: FoundImage, earlier_rows) -> ImageJob:
        top_up = self.top_up_of(image)
        # A run's own files are left out (a forced re-run replaces them); a top-up adds to them: they count.
        own = "" if top_up is not None else _own_prefix(self.output_dir, image.stem, self.job_spec.name_tag)
        if self.library is None:
            earlier, view = _earlier_accepted(earlier_rows, own), None
        else:  # the library holds this source's earlier variations too: no query of its own
            earlier, view = (), LibraryView(self.library, own)
        return ImageJob(spec=self.job_spec, source_path=str(image.path), image_id=image.image_id,
                        output_stem=image.stem, job_key=image.job_key, level=self.adaptive.settings,
                        earlier_accepted=earlier, library=view, top_up=top_up)

    def top_up_of(self, image: FoundImage) -> TopUp | None:
        """The image's ``TopUp`` when people's rejects left its finished job below count: its new files
        numbered past every name a variation of it was given (store) or a file holds (disk)."""
        row = self.top_ups.get(image.job_key)
        if row is None:
            return None
        prefix = f"{image.stem}-{self.job_spec.name_tag}"
        taken = set(self.store.source_names_in(self.output_dir, prefix)) | names_on_disk(self.output_dir, prefix)
        self.logger.info("%s: %d of %d variations stand after review: topping up %d", image.path, row["standing"],
                         self.params.count, row["missing"])
        return TopUp(missing=row["missing"], first_attempt=row["next_attempt"],
                     first_number=next_accepted_number(prefix, taken))

    def wait_for(self, futures: list) -> list[tuple]:
        """Wait for a task run to end: [(it, None)]. A runner that cannot run anything (a Dask
        cluster without workers) for ``dask_worker_wait_s`` ends every pending task run with a
        failure instead, and stops the run: nothing waits for ever."""
        runner, task_runner = runner_for(self.params), getattr(FlowRunContext.get(), "task_runner", None)
        troubled_since = None
        while True:
            try:
                return [(next(as_completed(futures, timeout=RUNNER_CHECK_S)), None)]
            except TimeoutError:
                trouble = runner.trouble(task_runner)
            if trouble is None:
                troubled_since = None
                continue
            troubled_since = troubled_since or time.monotonic()
            waited = time.monotonic() - troubled_since
            if waited < self.params.dask_worker_wait_s:
                self.logger.warning("%s; waiting (%.0f of %.0f s)", trouble, waited, self.params.dask_worker_wait_s)
                continue
            self.res.control.stop("no_workers", trouble)
            for fut in futures:
                _cancel(fut)
            return [(fut, RuntimeError(f"{trouble}; waited {waited:.0f} s")) for fut in futures]

    def finish_one(self, fut, chunk: list[FoundImage], failure: BaseException | None) -> None:
        """A task run ended (or ``failure`` ended it), its place freed: keep its images' outcomes, let
        them move the quality level."""
        elapsed = time.perf_counter() - self.started.pop(fut)
        try:
            if failure is not None:
                raise failure
            result = fut.result()
            outcomes = result if isinstance(result, list) else [result]
        except Exception as exc:  # noqa: BLE001 - a lost worker or task run costs its images, not the run
            outcomes = [self.task_failed(image, exc) for image in chunk]
        for outcome in outcomes:
            if not outcome.recorded:  # its own rows met a full disk: its error goes on record from here
                self.logger.error("%s", outcome.error)
                self.safely(f"the error of {outcome.path}", self.store.write_image_result,
                            ImageRecord(self.res.run_id, outcome.image_id, outcome.path, None, None, ImageStatus.ERROR,
                                        outcome.error, finished_at=utcnow()), again=True)
            # Its rows are written: another run may take it now (and sees it finished, if it is).
            self.safely("the claim of " + outcome.path, self.claims.release, outcome.image_id,
                        finished_job=outcome.finished_job)
            self.safely("the name claim of " + outcome.path, self.claims.release,
                        self.name_claims.pop(outcome.image_id, ""))
            seconds = outcome.stage_ms["total"] / 1000 if "total" in outcome.stage_ms else elapsed
            self.image_finished(outcome, image_row(outcome, seconds))

    def task_failed(self, image: FoundImage, exc: Exception) -> ImageOutcome:
        """The outcome of an image whose task run failed as a whole (its worker died, say): an
        error, recorded, so the next run redoes it; what its calls produced is in the cache."""
        message = (f"{image.path}: not finished: its task run failed ({type(exc).__name__}: {exc}); "
                   "run again to redo it")
        self.logger.error("%s", message)
        self.safely(f"the error of {image.path}", self.store.write_image_result,
                    ImageRecord(self.res.run_id, image.image_id, str(image.path), None, None, ImageStatus.ERROR,
                                message, finished_at=utcnow()),
                    key=stable_id(image.image_id, str(image.path)), again=True)
        return ImageOutcome(str(image.path), image.image_id, ImageStatus.ERROR, message)

    def image_finished(self, outcome: ImageOutcome, row: dict) -> None:
        self.outcomes.append(outcome)
        self.image_rows.append(row)
        self.publisher.image_done(row)
        if outcome.fatal_outcome and self.abort is None:
            self.abort = outcome
        if self.params.adaptive and outcome.status == ImageStatus.OK and outcome.attempts:
            change = self.adaptive.record(outcome.success_rate, level=outcome.quality_level)
            if change:
                self.level_changes += 1
                self.logger.info("quality level %s -> %s (%s)", change.from_level, change.to_level, change.reason)
                self.level_history.append(f"after {row['image']}: {change.from_level} -> {change.to_level} "
                                          f"({change.reason})")
                self.safely("a level change", self.store.write_level_change, QualityLevelChangeRecord(
                    run_id=self.res.run_id, image_id=outcome.image_id, changed_at=utcnow(),
                    from_level=change.from_level, to_level=change.to_level,
                    window_average=change.window_average, reason=change.reason, scope=self.scope,
                ))

    def not_processed(self, image: FoundImage, status: str, message: str) -> None:
        outcome = ImageOutcome(str(image.path), image.image_id, status, message)
        self.outcomes.append(outcome)
        listed = image.status != DONE  # an image already done in an earlier run is neither listed nor logged
        self.done_earlier += not listed
        row = image_row(outcome, 0.0)
        if listed:
            self.image_rows.append(row)
        self.publisher.image_done(row, processed=listed)
        self.safely(f"the {status} row of {image.path}", self.store.write_image_result,
                    ImageRecord(self.res.run_id, image.image_id, str(image.path), None, None, status, message,
                                finished_at=utcnow()),
                    key=stable_id(image.image_id, str(image.path)), again=True)

    def stop_reason(self) -> tuple[str, str] | None:
        """(outcome, message) of why the run stopped, or None while it goes on."""
        control = self.res.control
        if control.stopped:
            return control.stop_outcome, control.stop_message
        if self.abort is not None:
            return self.abort.fatal_outcome, self.abort.fatal_message
        return None

    def summary(self, paths: list[Path]) -> RunSummary:
        summary = RunSummary.from_outcomes(
            self.outcomes, run_id=self.res.run_id, status="", input_dir=str(self.input_dir),
            output_dir=str(self.output_dir), home=str(self.store.home), duckdb_path=str(self.store.duckdb_path),
            backend=self.res.backend.name, model=self.res.backend.model,
        )
        summary.final_level = self.adaptive.level
        summary.level_changes = self.level_changes
        summary.execution = self.store.execution
        summary.wall_seconds = time.perf_counter() - self.t_start
        summary.cost_usd, summary.calls = round(self.res.control.spent_usd, 6), self.res.control.calls
        summary.images, summary.level_history = self.image_rows, self.level_history
        processed = summary.images_ok + summary.images_error
        if not paths:
            summary.status = RunStatus.NO_IMAGES
            summary.message = f"no images with extensions {', '.join(self.params.extensions)} found in {self.input_dir}"
        elif summary.images_ok == 0 and summary.images_error > 0:
            summary.status = RunStatus.FAILED
            summary.message = "no image succeeded; see the errors above"
        else:
            summary.status = RunStatus.COMPLETED
            if processed == 0:
                summary.message = ("nothing new: every image was already done with these parameters "
                                   "(--force redoes them)")
            elif summary.images_topped_up == processed:
                summary.message = f"topped up {summary.top_up_text()}"
        if self.batch is not None and self.batch.waiting_message():
            summary.message = self.batch.waiting_message()
        stop = self.stop_reason()
        if stop is not None:  # a stopped run is Failed in Prefect (flows/outcome.py): the record says so too
            summary.status = RunStatus.FAILED
            summary.message = stop_message(stop[0], stop[1], processed=processed, to_do=len(paths) - self.done_earlier,
                                           ok=summary.images_ok)
            self.logger.error("run %s %s", self.res.run_id, summary.message)
        return summary

    def write_gallery(self) -> str | None:
        """The run's gallery page under the data directory; a failure is logged, never fails the run."""
        t0 = time.perf_counter()
        try:
            n = self.store.execution
            path = write_gallery(self.store.home, run_gallery_path(self.store.home, self.res.run_id, n),
                                 self.res.run_id, execution=n)
        except Exception as exc:  # noqa: BLE001 - the records are written; the page is a view of them
            self.logger.warning("could not write the run's gallery: %s", exc)
            return None
        finally:
            prune_thumbnails(self.store.home)
        self.logger.info("gallery %s written in %.2f s", path, time.perf_counter() - t0)
        return str(path)

    def safely(self, what: str, write, *args, again: bool = False, **kwargs) -> None:
        """A write of the flow's own: a full disk (any OS error) is one error line and the run goes
        on, its image counted in the summary; ``again``: retried at the close, once space is freed."""
        try:
            write(*args, **kwargs)
        except OSError as exc:
            self.logger.error("could not write %s: %s", what, exc)
            if again:
                self.unwritten.append((what, write, args, kwargs))

    def close(self, paths: list[Path]) -> dict:
        """Record the finished run, bound the caches, publish the report; the summary as a dict."""
        s = self.summary(paths)
        run = RunRecord(
            **self.record, finished_at=utcnow(), status=s.status, images_total=s.images_total,
            images_ok=s.images_ok, images_error=s.images_error, images_skipped=s.images_skipped,
            variations_accepted=s.variations_accepted, variations_rejected=s.variations_rejected,
            duplicates=s.duplicates, attempts=s.attempts, wall_seconds=s.wall_seconds, message=s.message,
        )
        if self.unwritten:  # the disk filled: the reserve makes room for the run's last rows
            self.reserve.release()
        for what, write, args, kwargs in self.unwritten:
            self.safely(what, write, *args, **kwargs)
        try:
            self.store.write_run(run)
        except OSError:
            self.reserve.release()
            self.store.write_run(run)  # a second failure is the flow's: the on_crashed hook closes it
        self.safely("the run's compacted parts (its parts stay readable)", self.store.compact_run, self.res.run_id)
        self.res.cache.prune_results()
        s.gallery_path = self.write_gallery()
        stop = self.stop_reason()
        self.logger.info("run %s %s: %d images: %d ok, %d error, %d skipped (done earlier or not reached); "
                         "%d variations accepted of %d attempts, %.1f s%s", self.res.run_id, s.status,
                         s.images_total, s.images_ok, s.images_error, s.images_skipped, s.variations_accepted,
                         s.attempts, s.wall_seconds, f"; {s.message}" if s.message else "")
        self.publisher.close(s, stop[0] if stop else None)
        out = {**s.as_dict(), "stop_outcome": stop[0] if stop else None, "task_runs": self.task_runs}
        batch = self.batch.summary() if self.batch is not None else {}
        if batch:  # what the batch jobs answered, at the batch price
            out.update(cost_usd=round((out.get("cost_usd") or 0.0) + batch.get("cost_usd", 0.0), 6),
                       calls=(out.get("calls") or 0) + batch.get("answers", 0), batch=batch)
        return out


def _cancel(fut) -> None:
    """Cancel a task run's future on its runner, where it can be (a Dask future can)."""
    try:
        getattr(fut, "wrapped_future", fut).cancel()
    except Exception:  # noqa: BLE001 - its images are recorded as errors either way
        pass


def _own_prefix(output_dir: Path | str, stem: str, name_tag: str) -> str:
    """The start of every accepted file name this job writes."""
    return join(output_dir, f"{stem}-{name_tag}-v")


def _earlier_accepted(rows, own_prefix: str) -> tuple:
    """Variations earlier runs accepted for a source (files still present), as dedup knows them.

    The files this job itself (re)writes are left out: a forced re-run replaces them. Objects in a
    bucket are kept: the image's own process fetches those still there (varflow/processing/pipeline.py).
    """
    return tuple(
        KnownImage(r["variation_id"], ImageHashes(r["ahash"], r["phash"], r["dhash"]), r["output_path"])
        for r in rows
        if not (own_prefix and r["output_path"].startswith(own_prefix))
        and (is_url(r["output_path"]) or Path(r["output_path"]).is_file())
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
