"""The per-image pipeline: optimize, then generate in waves, dedup, score, judge and record.

For one source image (an ``ImageJob``) the seed's enhanced loop: keep generating until ``count``
variations are accepted or the attempt budget (count x the level's attempts per variation) is
spent. Each wave asks for as many attempts as variations are still missing; every generated
variation is checked for duplicates (its own source's accepted variations, earlier runs' too,
and with ``--dedup-library`` every source's), then scored and judged; accepted ones move to
the output folder, rejected ones are deleted or kept for review. The image's row and its
variations' rows go to the record sink when it ends, whatever happened.

Plain code, no Prefect: the caller supplies how a wave of attempts is generated (``Generate``:
the flow submits them as Prefect tasks; a test calls ``varflow.runtime.calls.run_attempt``), how the
source is optimized, and the judge of each source image.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from varflow.duplicates.dedup import DedupResult, KnownImage, LibraryView, dedup_file
from varflow.generation.backends import VariationRequest, derive_seed, resolve_variation_type
from varflow.generation.backends.base import CONCRETE_TYPES
from varflow.generation.cache import generation_key
from varflow.images.imageio import GREY_CACHE, ImageReadError, OptimizedImage, load_grey, load_rgb, optimize_image
from varflow.images.locations import LocalFolder, ObjectFolder, bucket_root, folder_at, is_url, join
from varflow.images.thumbnails import rejected_thumbnail_path, save_thumbnail
from varflow.kinds import ImageStatus
from varflow.quality.profiles import VariationJudge
from varflow.runtime.calls import AttemptContext, GenerationResult, record_cache_hit
from varflow.runtime.records import ImageRecord, VariationRecord, stable_id, utcnow
from varflow.runtime.resources import RunResources
from varflow.safety.diskwrite import writing
from varflow.settings import LevelSettings, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    """What every image of a run is asked for: the run's output-changing parameters."""

    count: int
    variation_type: str
    prompt: str
    seed: int
    backend: str
    model: str
    backend_options: tuple[tuple[str, object], ...]
    output_dir: str
    name_tag: str  # 8 hex digits naming the parameter set in output file names
    settings: Settings = Settings()
    keep_rejected: bool = False
    force: bool = False  # regenerate even when cached


@dataclass(frozen=True)
class TopUp:
    """A finished image that people's rejects left below ``count``: the next run with the same parameters
    asks for the ``missing`` variations only, from attempt ``first_attempt`` on (past every attempt on
    record: new variation ids and seeds, so what a person kept or rejected is never asked for again), and
    names them from ``v<first_number>`` on (above every name a variation of the source was given: a kept
    file keeps its name, a rejected one's is not reused)."""

    missing: int
    first_attempt: int
    first_number: int


@dataclass(frozen=True)
class ImageJob:
    spec: JobSpec
    source_path: str
    image_id: str  # SHA-256 of the source's bytes, computed once by the flow
    output_stem: str  # OUTPUT-relative path without suffix, e.g. "trips/beach" -> beach-<tag>-v01.png
    job_key: str  # stable id of (image, parameters): a finished job is not redone
    level: LevelSettings
    earlier_accepted: tuple[KnownImage, ...] = ()  # accepted for this source by earlier runs
    library: LibraryView | None = None  # --dedup-library: every accepted variation, shared by the run's jobs
    top_up: TopUp | None = None  # people's reviews left it short: only the missing ones (TopUp)

    @property
    def wanted(self) -> int:
        """The variations this run asks of the image: ``count``, or a top-up's missing ones."""
        return self.top_up.missing if self.top_up is not None else self.spec.count


@dataclass
class ImageOutcome:
    """What the flow needs of an image: counts for the summary and the adaptive policy."""

    path: str
    image_id: str | None
    status: str  # ok | error | skipped
    error: str | None = None
    requested: int = 0  # variations asked of it (count, or a top-up's missing ones; 0: not processed)
    top_up: bool = False  # a top-up of an image people's reviews left below count
    quality_level: str | None = None
    accepted: int = 0
    attempts: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    duplicates: int = 0
    generation_failures: int = 0
    cache_hits: int = 0
    fatal_outcome: str | None = None
    fatal_message: str | None = None
    stopped: str | None = None  # why the run stopped this image before it finished
    waiting: bool = False  # its next wave waits for a batch job: judged when the job is collected
    stage_ms: dict[str, float] = field(default_factory=dict)
    accepted_scores: list[dict] = field(default_factory=list)
    finished_job: str | None = None  # the job key, once the image is finished (not redone by later runs)
    recorded: bool = True  # False: its rows could not be written (a full disk); the flow records the error

    @property
    def success_rate(self) -> float | None:
        return self.accepted / self.attempts if self.attempts else None


@dataclass(frozen=True)
class Attempt:
    """One planned attempt of an image: its request and what its call needs besides."""

    index: int
    seed: int
    variation_type: str
    request: VariationRequest
    context: AttemptContext


class Generate(Protocol):
    """Generate a wave of attempts; for each, its result (a failure's too) and whether the
    orchestrator served it from its own cache of results (no task body ran)."""

    def __call__(self, attempts: Sequence[Attempt], *, refresh: bool) -> list[tuple[GenerationResult, bool]]: ...


class Judge(Protocol):
    """One source image's judge, built after it is optimized: ``assess`` gives a variation's
    scores (``.scores()``) and verdict (``.verdict.reason_text``: None when accepted);
    ``accept`` tells it a variation was kept, so later diversity is measured against it."""

    def assess(self, variation: np.ndarray, *, grey=None): ...

    def accept(self, assessment) -> None: ...


def variation_id_for(job: ImageJob, attempt: int) -> str:
    """Stable across runs: the same image, parameters and attempt give the same id."""
    s = job.spec
    return stable_id(job.image_id, s.backend, s.model, s.variation_type, s.prompt, s.seed,
                     job.level.name, job.level.max_image_size, attempt)


def output_prefix(job: ImageJob) -> str:
    """``<stem>-<tag>``: the tag (of the output-changing parameters) keeps runs with other
    parameters from overwriting this image's earlier variations in the same output folder."""
    return f"{job.output_stem}-{job.spec.name_tag}"


def judge_for_image(optimized_path: str, level: LevelSettings, settings: Settings) -> VariationJudge:
    """The judge of one source image (both profiles measure, the run's decides), built once
    after it is optimized."""
    return VariationJudge(load_rgb(optimized_path), level=level, profile=settings.profile,
                          thresholds=settings.thresholds, calibrated_thresholds=settings.calibrated,
                          original_grey=load_grey(optimized_path), graded=settings.graded)


@dataclass
class ImagePipeline:
    """Runs ``ImageJob``s; one per run, shared by its images (it holds no per-image state)."""

    resources: RunResources
    generate: Generate
    work_root: Path  # each image works in <work_root>/<image id prefix>, removed when it ends
    optimize: Callable[..., OptimizedImage] = optimize_image
    judge_for: Callable[[str, LevelSettings, Settings], Judge] = judge_for_image

    def run(self, job: ImageJob) -> ImageOutcome:
        return _ImageRun(self, job).run()


def run_chunk(pipeline: ImagePipeline, jobs: Sequence[ImageJob], *, at_once: int = 1) -> list[ImageOutcome]:
    """A chunk's images, ``at_once`` side by side (images whose calls wait on the network), or one
    after another; outcomes in the jobs' order."""
    if at_once <= 1 or len(jobs) <= 1:
        return [pipeline.run(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=min(at_once, len(jobs)), thread_name_prefix="varflow-image") as pool:
        return list(pool.map(pipeline.run, jobs))


class _ImageRun:
    """One image through the pipeline; its state lives here, not in closures."""

    def __init__(self, pipeline: ImagePipeline, job: ImageJob):
        self.p, self.job = pipeline, job
        self.res = pipeline.resources
        self.outcome = ImageOutcome(job.source_path, job.image_id, ImageStatus.OK, quality_level=job.level.name,
                                    requested=job.wanted, top_up=job.top_up is not None)
        self.ms: Counter = Counter()
        self.work = Path(pipeline.work_root) / job.image_id[:16]
        self.accepted: list[KnownImage] = []
        self.variations: list[VariationRecord] = []
        self.opt: OptimizedImage | None = None
        self.judge: Judge | None = None
        self.types: tuple[str, ...] = CONCRETE_TYPES  # what ``random`` chooses among
        self.started = utcnow()
        self.out = folder_at(job.spec.output_dir)  # a bucket's: this process's own connection
        self.earlier: tuple[KnownImage, ...] = job.earlier_accepted

    def run(self) -> ImageOutcome:
        t_start = time.perf_counter()
        try:
            if not self.optimize():
                return self.outcome
            self.earlier = self.fetch_earlier()
            self.judge = self.p.judge_for(self.opt.optimized_path, self.job.level, self.job.spec.settings)
            if self.job.spec.variation_type == "random":  # only the types this photo allows
                self.types = self.res.backend.variation_types_for(self.opt.optimized_path)
            self.loop()
            if self.outcome.waiting:
                # Its requests wait for a batch job: the run that collects the job judges the
                # image from its first attempt (served from the cache), so nothing is judged twice.
                self.outcome.status = ImageStatus.SKIPPED
                self.outcome.error = f"{self.job.source_path}: waiting: {self.outcome.stopped}"
                self.variations = []
            elif self.outcome.stopped is not None:
                # Cut short by a run stop: not finished (no job_key), so the next run redoes it;
                # what was generated is cached and costs nothing then.
                self.outcome.status = ImageStatus.ERROR if self.outcome.attempts else ImageStatus.SKIPPED
                self.outcome.error = f"{self.job.source_path}: not finished: {self.outcome.stopped}"
            return self.outcome
        except Exception as exc:  # one image's failure must not cost the others
            self.outcome.status = ImageStatus.ERROR
            # An OS error naming no file (a full disk under an image writer) names the image's working folder.
            where = f" in {self.work}" if isinstance(exc, OSError) and exc.errno and not exc.filename else ""
            self.outcome.error = f"{self.job.source_path}: processing failed ({type(exc).__name__}: {exc}){where}"
            return self.outcome
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
            GREY_CACHE.forget([k.path for k in self.accepted], under=self.work)
            self.outcome.accepted = len(self.accepted)
            self.ms["total"] = (time.perf_counter() - t_start) * 1000
            self.outcome.stage_ms = dict(self.ms)
            record = self.image_record()
            try:
                self.res.records.write_image_result(record, self.variations)
                self.outcome.finished_job = record.job_key
            except OSError as exc:  # a full disk: an error, not finished; the flow writes its row when it can
                self.outcome.status, self.outcome.recorded = ImageStatus.ERROR, False
                self.outcome.error = f"{self.job.source_path}: its rows could not be written ({exc})"

    def optimize(self) -> bool:
        job, t0 = self.job, time.perf_counter()
        try:
            source = job.source_path
            if is_url(source):  # an object: this process reads it from its bucket into the image's work folder
                self.work.mkdir(parents=True, exist_ok=True)
                source = str(ObjectFolder(bucket_root(source)).fetch(source, self.work / "source"))
            self.opt = self.p.optimize(source, str(self.work / "optimized.png"),
                                       max_side=job.level.max_image_size, image_id=job.image_id,
                                       limits=job.spec.settings.limits)
            return True
        except ImageReadError as exc:
            self.outcome.status, self.outcome.error = ImageStatus.ERROR, str(exc).replace(source, job.source_path)
            return False
        except OSError as exc:
            if not is_url(job.source_path):
                raise
            self.outcome.status = ImageStatus.ERROR
            self.outcome.error = f"{job.source_path}: cannot be read ({type(exc).__name__}: {exc}); check the object"
            return False
        finally:
            self.ms["optimize"] += (time.perf_counter() - t0) * 1000

    def fetch_earlier(self) -> tuple[KnownImage, ...]:
        """Earlier accepted variations in a bucket, as local copies dedup can compare against
        (those gone since are left out, as a deleted local file is)."""
        if not self.out.remote:
            return self.earlier
        kept = []
        for n, k in enumerate(self.earlier):
            try:
                kept.append(replace(k, path=str(self.out.fetch(k.path, self.work / f"earlier-{n:03d}.png"))))
            except OSError:
                continue
        return tuple(kept)

    def loop(self) -> None:
        """The enhanced loop: waves of attempts until enough are accepted or the budget is spent."""
        job, control, outcome = self.job, self.res.control, self.outcome
        wanted = job.wanted
        attempt = job.top_up.first_attempt if job.top_up is not None else 0
        budget = attempt + wanted * job.level.max_attempts_per_variation  # the attempt index it stops before
        while len(self.accepted) < wanted and attempt < budget and outcome.stopped is None:
            if control.stopped:  # another image's answer (or the budget) stopped the run
                outcome.stopped = f"the run stopped ({control.stop_outcome}): {control.stop_message}"
                break
            wave = range(attempt, attempt + min(wanted - len(self.accepted), budget - attempt))
            attempt = wave.stop
            t0 = time.perf_counter()
            attempts = [self.plan(a) for a in wave]
            results = [self.collect(a, r, served)
                       for a, (r, served) in zip(attempts, self.p.generate(attempts, refresh=job.spec.force))]
            self.ms["generate"] += (time.perf_counter() - t0) * 1000
            for a, result in zip(attempts, results):
                self.judge_result(a, result)

    def plan(self, a: int) -> Attempt:
        job, s, level = self.job, self.job.spec, self.job.level
        seed = derive_seed(s.seed, job.image_id, a)
        vtype = resolve_variation_type(s.variation_type, seed, among=self.types)
        request = VariationRequest(
            image_id=job.image_id, source_path=self.opt.optimized_path, variation_type=vtype,
            prompt=s.prompt, seed=seed, attempt=a, output_path=str(self.work / f"attempt-{a:03d}.png"),
        )
        key = generation_key(image_id=job.image_id, backend=s.backend, model=s.model, variation_type=vtype,
                             prompt=s.prompt, seed=seed, max_image_size=level.max_image_size,
                             extra=dict(s.backend_options))
        return Attempt(a, seed, vtype, request, AttemptContext(variation_id_for(job, a), level.name, key, s.force))

    def collect(self, a: Attempt, result: GenerationResult, served: bool) -> GenerationResult:
        """The attempt's result, its image copied out of the cache into the image's work folder.

        A result served from a cache made no call: it is recorded here as a zero-cost attempt.
        If the cached file has been evicted since, the request is generated again.
        """
        if not result.ok:
            return result
        if served or result.from_cache:
            entry = self.res.cache.served(a.context.cache_key)
            if entry is None:  # evicted since: pay for it again rather than fail
                regenerated = replace(a, context=replace(a.context, force=True))
                result, _ = self.p.generate([regenerated], refresh=True)[0]
                if not result.ok:
                    return result
            else:
                self.outcome.cache_hits += 1
                result = replace(result, output_path=str(entry.path), latency_ms=0.0, tries=0)
                record_cache_hit(self.res, a.request, a.context, result)
        private = (self.work / f"attempt-{a.index:03d}").with_suffix(Path(result.output_path).suffix)
        shutil.copyfile(result.output_path, private)  # eviction can't pull it from under the scorer
        return replace(result, output_path=str(private))

    def judge_result(self, a: Attempt, result: GenerationResult) -> None:
        outcome = self.outcome
        if result.cancelled or result.deferred:  # never started (the run stopped, or a batch job will): not an attempt
            outcome.stopped = outcome.stopped or result.error
            outcome.waiting = outcome.waiting or result.deferred
            return
        outcome.attempts += 1
        if not result.ok:
            outcome.generation_failures += 1
            if result.fatal and outcome.fatal_outcome is None:
                outcome.fatal_outcome, outcome.fatal_message = result.outcome, result.error
                outcome.stopped = result.error
            return
        dedup, assessment = self.assess(result.output_path)
        reasons = "duplicate" if assessment is None else assessment.verdict.reason_text
        if reasons is None:
            final, local = self.settle_file(result.output_path, self.accepted_path(len(self.accepted) + 1))
            self.accepted.append(KnownImage(a.context.variation_id, dedup.hashes, local))
            self.judge.accept(assessment)
            if self.job.library is not None:
                self.job.library.add([self.accepted[-1]])
            outcome.accepted_scores.append(assessment.scores())
        else:
            for r in reasons.split(";"):
                outcome.rejected[r] = outcome.rejected.get(r, 0) + 1
            keep = self.rejected_path(a.index, reasons) if self.job.spec.keep_rejected else None
            if keep is None:
                self.keep_thumbnail(a.context.variation_id, result.output_path)
            final, _ = self.settle_file(result.output_path, keep)
        self.variations.append(self.variation_record(a, result, dedup, assessment, reasons, final))

    def assess(self, path: str):
        """(dedup result, assessment); the assessment is None for a duplicate (never scored)."""
        t0 = time.perf_counter()
        dedup: DedupResult = dedup_file(path, [*self.earlier, *self.accepted],
                                        self.job.spec.settings.dedup, self.job.library)
        self.ms["dedup"] += (time.perf_counter() - t0) * 1000
        if dedup.duplicate is not None:
            self.outcome.duplicates += 1
            return dedup, None
        t0 = time.perf_counter()
        rgb = np.asarray(load_rgb(path))  # upright and flattened, like its cached grey
        assessment = self.judge.assess(rgb, grey=load_grey(path))
        self.ms["score"] += (time.perf_counter() - t0) * 1000
        return dedup, assessment

    def keep_thumbnail(self, variation_id: str, path: str) -> None:
        """A rejected file is deleted; the run's gallery shows it from this thumbnail instead."""
        try:
            save_thumbnail(path, rejected_thumbnail_path(self.res.spec.home, self.res.run_id, variation_id))
        except Exception as exc:  # noqa: BLE001 - the gallery then says the file was not kept
            log.warning("no gallery thumbnail for rejected variation %s: %s", variation_id[:12], exc)

    def accepted_path(self, n: int) -> str:
        """The ``n``-th accepted file of this run of the image (a top-up's numbers start past the names taken)."""
        if self.job.top_up is not None:
            n += self.job.top_up.first_number - 1
        return join(self.job.spec.output_dir, f"{output_prefix(self.job)}-v{n:02d}.png")

    def rejected_path(self, attempt: int, reason: str) -> str:
        first = reason.split(";")[0]
        return join(self.job.spec.output_dir, f"_rejected/{output_prefix(self.job)}-a{attempt:02d}-{first}.png")

    def settle_file(self, src: str, dest: str | None) -> tuple[str | None, str | None]:
        """Move a generated file to its final place (a bucket's: uploaded, the local file kept in
        the work folder for dedup), or delete it when ``dest`` is None: (its address, a local path)."""
        if dest is None:
            Path(src).unlink(missing_ok=True)
            return None, None
        if self.out.remote:
            keep = self.work / f"kept-{Path(src).name}"
            shutil.copyfile(src, keep)
            return self.out.put(Path(src), dest), str(keep)
        with writing(dest):
            final = LocalFolder(self.job.spec.output_dir).put(Path(src), dest)
        return final, final

    def variation_record(self, a: Attempt, result: GenerationResult, dedup: DedupResult, assessment,
                         reasons: str | None, final: str | None) -> VariationRecord:
        return VariationRecord(
            run_id=self.res.run_id, image_id=self.job.image_id, variation_id=a.context.variation_id,
            attempt=a.index, variation_type=a.variation_type, accepted=reasons is None, reject_reason=reasons,
            ahash=dedup.hashes.ahash, phash=dedup.hashes.phash, dhash=dedup.hashes.dhash,
            duplicate_of=dedup.duplicate.duplicate_of if dedup.duplicate else None,
            output_path=final, backend=self.job.spec.backend, model=result.model,
            prompt=result.prompt_sent, seed=a.seed, quality_level=self.job.level.name, created_at=utcnow(),
            profile=assessment.profile if assessment is not None else None, cache_key=a.context.cache_key,
            name_prefix=output_prefix(self.job),
            profile_version=self.job.spec.settings.profile_version if assessment is not None else None,
            scores=assessment.scores() if assessment is not None else {},
        )

    def image_record(self) -> ImageRecord:
        job, outcome, opt, ms = self.job, self.outcome, self.opt, self.ms
        return ImageRecord(
            run_id=self.res.run_id, image_id=job.image_id, path=job.source_path,
            width=opt.width if opt else None, height=opt.height if opt else None,
            status=outcome.status, error=outcome.error,
            optimized_width=opt.optimized_width if opt else None,
            optimized_height=opt.optimized_height if opt else None,
            source_bytes=opt.source_bytes if opt else None, quality_level=job.level.name,
            requested=job.wanted, accepted=outcome.accepted, attempts=outcome.attempts,
            success_rate=outcome.success_rate, optimize_ms=ms.get("optimize"),
            generate_ms=ms.get("generate"), score_ms=ms.get("score"), dedup_ms=ms.get("dedup"),
            total_ms=ms["total"], started_at=self.started, finished_at=utcnow(),
            # Finished: every variation accepted, or every attempt judged. An image whose
            # calls failed (5xx, timeouts, blocks...) is redone by the next run.
            job_key=job.job_key if outcome.status == ImageStatus.OK and (
                outcome.accepted >= job.wanted or outcome.generation_failures == 0) else None,
            cache_hits=outcome.cache_hits,
        )
