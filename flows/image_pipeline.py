"""One image, end to end: optimize, then the seed's enhanced loop of generate -> dedup -> score.

The loop keeps going until ``count`` variations are accepted or ``count x
max_attempts_per_variation`` attempts are spent. Attempts go out in waves (as many as are still
wanted, within the budget) so a paid backend has several calls in flight; their results are
judged in attempt order, so acceptance and diversity are the same as one-at-a-time.

Prefect task runs: one per image (this task), one for its optimize step and one per generation
call (retries, caching, concurrency). Dedup and scoring run inside this task as plain calls of
their task functions (``.fn``): they are pure CPU with nothing to retry or cache, and a task run
per attempt tripled the runs a nightly folder makes (a Prefect server was measured dropping
events at ~5,000 task runs in one flow). As plain calls, bench/gemini_throughput.py's whole run
used ~8 ms less client CPU per attempt and went from 54% to 62-73% of ideal. Their scores and
timings are in the ``variations`` and ``images`` tables.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from storage import Store
from tasks.dedup import dedup_variation
from tasks.generate import (
    AttemptContext,
    BackendSpec,
    CallPolicy,
    GenerationFailed,
    GenerationResult,
    generate_variation,
    run_control,
    storage_block,
    variation_cache,
)
from tasks.optimize import optimize
from tasks.score import score_variation
from varflow.acceptance import judge
from varflow.dedup import KnownImage, LibraryView
from varflow.generators import VariationRequest, derive_seed, resolve_variation_type
from varflow.imageio import GREY_CACHE, ImageReadError
from varflow.cache import generation_key
from varflow.records import AttemptRecord, ImageRecord, VariationRecord, stable_id, utcnow
from varflow.settings import LevelSettings, Settings
from varflow.thumbnails import rejected_thumbnail_path, save_thumbnail


@dataclass(frozen=True)
class ImageJob:
    run_id: str
    store_home: str
    source_path: str
    image_id: str  # SHA-256 of the source's bytes, computed once by the flow
    output_stem: str  # OUTPUT-relative path without suffix, e.g. "trips/beach" -> beach-v01.png
    output_dir: str
    work_dir: str
    count: int
    variation_type: str
    prompt: str
    seed: int
    backend: BackendSpec
    model: str
    level: LevelSettings
    settings: Settings
    result_storage: str  # Prefect block slug where generate's cached results live
    cache_dir: str
    cache_max_bytes: int
    job_key: str  # stable id of (image, parameters): a finished job is not redone
    keep_rejected: bool = False
    force: bool = False  # regenerate even when cached
    policy: CallPolicy = CallPolicy()  # retries, rate limit and budget of the generation calls
    earlier_accepted: tuple[KnownImage, ...] = ()  # accepted for this source by earlier runs
    name_tag: str = ""  # 8 hex digits naming the parameter set in output file names
    library: LibraryView | None = None  # --dedup-library: every accepted variation, shared by the run's jobs

    def generate_task(self, *, refresh: bool):
        return generate_variation.with_options(result_storage=storage_block(self.result_storage), refresh_cache=refresh,
                                               **self.policy.task_options())


@dataclass
class ImageOutcome:
    """What the flow needs of an image: counts for the summary and the adaptive policy."""

    path: str
    image_id: str | None
    status: str  # ok | error | skipped
    error: str | None = None
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
    stage_ms: dict[str, float] = field(default_factory=dict)
    accepted_scores: list[dict] = field(default_factory=list)

    @property
    def success_rate(self) -> float | None:
        return self.accepted / self.attempts if self.attempts else None


def variation_id_for(job: ImageJob, image_id: str, attempt: int) -> str:
    """Stable across runs: the same image, parameters and attempt give the same id."""
    return stable_id(
        image_id, job.backend.name, job.model, job.variation_type, job.prompt, job.seed,
        job.level.name, job.level.max_image_size, attempt,
    )


def output_prefix(job: ImageJob) -> str:
    """``<stem>-<tag>``: the tag (of the output-changing parameters) keeps runs with other
    parameters from overwriting this image's earlier variations in the same output folder."""
    return f"{job.output_stem}-{job.name_tag}"


def _accepted_path(job: ImageJob, n: int) -> Path:
    return Path(job.output_dir) / f"{output_prefix(job)}-v{n:02d}.png"


def _rejected_path(job: ImageJob, attempt: int, reason: str) -> Path:
    first = reason.split(";")[0]
    return Path(job.output_dir) / "_rejected" / f"{output_prefix(job)}-a{attempt:02d}-{first}.png"


def _settle_file(src: str, dest: Path | None) -> str | None:
    """Move a generated file to its final place, or delete it when ``dest`` is None."""
    if dest is None:
        Path(src).unlink(missing_ok=True)
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(src, dest)
    return str(dest)


def _keep_thumbnail(job: ImageJob, variation_id: str, path: str) -> None:
    """A rejected file is deleted; the run's gallery shows it from this thumbnail instead."""
    try:
        save_thumbnail(path, rejected_thumbnail_path(job.store_home, job.run_id, variation_id))
    except Exception as exc:  # the gallery then says the file was not kept; the run goes on
        get_run_logger().warning("no gallery thumbnail for rejected variation %s: %s", variation_id[:12], exc)


def _collect(job: ImageJob, fut, request: VariationRequest, ctx: AttemptContext, work_stem: Path,
             outcome: ImageOutcome) -> GenerationResult:
    """The attempt's result, with its image copied out of the cache into the image's work folder.

    A Prefect cache hit made no call: it is recorded here as a zero-cost attempt. If the cached
    file has since been evicted, the request is generated again (refreshing the cache).
    """
    try:
        result = fut.result()
    except GenerationFailed as exc:
        return exc.result
    cache = variation_cache(job.cache_dir, job.cache_max_bytes)
    if fut.state.name == "Cached" or result.from_cache:
        entry = cache.get(ctx.cache_key)
        if entry is None:  # evicted since: pay for it again rather than fail
            try:
                result = job.generate_task(refresh=True)(request, job.backend, replace(ctx, force=True))
            except GenerationFailed as exc:
                return exc.result
        else:
            outcome.cache_hits += 1
            result = replace(result, output_path=str(entry.path), latency_ms=0.0, tries=0)
            Store(job.store_home).write_attempt(AttemptRecord(
                run_id=job.run_id, image_id=request.image_id, variation_id=ctx.variation_id,
                attempt=request.attempt, try_number=0, backend=job.backend.name, model=result.model,
                prompt=result.prompt_sent, outcome="ok", error=None, latency_ms=0.0,
                quality_level=ctx.quality_level, started_at=utcnow(), cost_usd=0.0, cache_hit=True,
            ))
    private = work_stem.with_suffix(Path(result.output_path).suffix)
    shutil.copyfile(result.output_path, private)  # eviction can't pull it from under the scorer
    return replace(result, output_path=str(private))


@task(name="process-image", cache_policy=NONE, task_run_name="image {job.output_stem}")
def process_image(job: ImageJob) -> ImageOutcome:
    store = Store(job.store_home)
    started = utcnow()
    t_start = time.perf_counter()
    level = job.level
    image_id = job.image_id
    outcome = ImageOutcome(job.source_path, image_id, "ok", quality_level=level.name)
    ms = Counter()
    work = Path(job.work_dir) / image_id[:16]
    optimized_path = work / "optimized.png"
    variations: list[VariationRecord] = []
    accepted: list[KnownImage] = []
    opt = None
    try:
        t0 = time.perf_counter()
        try:
            opt = optimize(job.source_path, str(optimized_path), max_side=level.max_image_size,
                           image_id=image_id, limits=job.settings.limits)
        except ImageReadError as exc:
            outcome.status, outcome.error = "error", str(exc)
            return outcome
        finally:
            ms["optimize"] += (time.perf_counter() - t0) * 1000

        budget = job.count * level.max_attempts_per_variation
        attempt = 0
        control = run_control(job.run_id, job.policy.max_cost_usd)
        while len(accepted) < job.count and attempt < budget and outcome.stopped is None:
            if control.stopped:  # another image's answer (or the budget) stopped the run
                outcome.stopped = f"the run stopped ({control.stop_outcome}): {control.stop_message}"
                break
            wave = range(attempt, attempt + min(job.count - len(accepted), budget - attempt))
            attempt = wave.stop
            t0 = time.perf_counter()
            generate = job.generate_task(refresh=job.force)
            futures = []
            for a in wave:
                seed = derive_seed(job.seed, image_id, a)
                vtype = resolve_variation_type(job.variation_type, seed)
                vid = variation_id_for(job, image_id, a)
                request = VariationRequest(
                    image_id=image_id, source_path=opt.optimized_path, variation_type=vtype,
                    prompt=job.prompt, seed=seed, attempt=a,
                    output_path=str(work / f"attempt-{a:03d}.png"),
                )
                key = generation_key(image_id=image_id, backend=job.backend.name, model=job.model,
                                     variation_type=vtype, prompt=job.prompt, seed=seed,
                                     max_image_size=level.max_image_size, extra=dict(job.backend.options))
                ctx = AttemptContext(job.run_id, job.store_home, vid, level.name, key, job.cache_dir,
                                     job.cache_max_bytes, force=job.force, policy=job.policy)
                futures.append((a, seed, vtype, vid, generate.submit(request, job.backend, ctx), request, ctx))
            results: list[GenerationResult] = []
            for a, seed, vtype, vid, fut, request, ctx in futures:
                results.append(_collect(job, fut, request, ctx, work / f"attempt-{a:03d}", outcome))
            ms["generate"] += (time.perf_counter() - t0) * 1000

            for (a, seed, vtype, vid, *_), result in zip(futures, results):
                if result.cancelled:  # never started (the run stopped): not an attempt
                    outcome.stopped = outcome.stopped or result.error
                    continue
                outcome.attempts += 1
                if not result.ok:
                    outcome.generation_failures += 1
                    if result.fatal and outcome.fatal_outcome is None:
                        outcome.fatal_outcome, outcome.fatal_message = result.outcome, result.error
                        outcome.stopped = result.error
                    continue
                t0 = time.perf_counter()
                dedup = dedup_variation.fn(result.output_path, [*job.earlier_accepted, *accepted], job.settings.dedup,
                                        job.library)
                ms["dedup"] += (time.perf_counter() - t0) * 1000
                scores = None
                if dedup.duplicate is not None:
                    reasons = "duplicate"
                    outcome.duplicates += 1
                else:
                    t0 = time.perf_counter()
                    scores = score_variation.fn(opt.optimized_path, result.output_path, [k.path for k in accepted])
                    ms["score"] += (time.perf_counter() - t0) * 1000
                    verdict = judge(scores, thresholds=job.settings.thresholds, level=level)
                    reasons = verdict.reason_text
                if reasons is None:
                    final = _settle_file(result.output_path, _accepted_path(job, len(accepted) + 1))
                    accepted.append(KnownImage(vid, dedup.hashes, final))
                    if job.library is not None:
                        job.library.add([accepted[-1]])
                    outcome.accepted_scores.append(scores.as_dict())
                else:
                    for r in reasons.split(";"):
                        outcome.rejected[r] = outcome.rejected.get(r, 0) + 1
                    keep = _rejected_path(job, a, reasons) if job.keep_rejected else None
                    if keep is None:
                        _keep_thumbnail(job, vid, result.output_path)
                    final = _settle_file(result.output_path, keep)
                s = scores.as_dict() if scores else {}
                variations.append(VariationRecord(
                    run_id=job.run_id, image_id=image_id, variation_id=vid, attempt=a,
                    variation_type=vtype, similarity=s.get("similarity"), diversity=s.get("diversity"),
                    aesthetic=s.get("aesthetic"), color_variance=s.get("color_variance"),
                    contrast=s.get("contrast"), brightness_balance=s.get("brightness_balance"),
                    sharpness=s.get("sharpness"), object_integrity=s.get("object_integrity"),
                    overall_quality=s.get("overall_quality"), accepted=reasons is None,
                    reject_reason=reasons, ahash=dedup.hashes.ahash, phash=dedup.hashes.phash,
                    dhash=dedup.hashes.dhash,
                    duplicate_of=dedup.duplicate.duplicate_of if dedup.duplicate else None,
                    output_path=final, backend=job.backend.name, model=result.model,
                    prompt=result.prompt_sent, seed=seed, quality_level=level.name, created_at=utcnow(),
                ))
        if outcome.stopped is not None:
            # Cut short by a run stop: not finished (no job_key), so the next run redoes it;
            # what was generated is cached and costs nothing then.
            outcome.status = "error" if outcome.attempts else "skipped"
            outcome.error = f"{job.source_path}: not finished: {outcome.stopped}"
        return outcome
    except Exception as exc:  # one image's failure must not cost the others
        outcome.status = "error"
        outcome.error = f"{job.source_path}: processing failed ({type(exc).__name__}: {exc})"
        return outcome
    finally:
        shutil.rmtree(work, ignore_errors=True)
        GREY_CACHE.forget([k.path for k in accepted], under=work)
        outcome.accepted = len(accepted)
        ms["total"] = (time.perf_counter() - t_start) * 1000
        outcome.stage_ms = dict(ms)
        store.write_image_result(
            ImageRecord(
                run_id=job.run_id, image_id=image_id, path=job.source_path,
                width=opt.width if opt else None, height=opt.height if opt else None,
                status=outcome.status, error=outcome.error,
                optimized_width=opt.optimized_width if opt else None,
                optimized_height=opt.optimized_height if opt else None,
                source_bytes=opt.source_bytes if opt else None, quality_level=level.name,
                requested=job.count, accepted=outcome.accepted, attempts=outcome.attempts,
                success_rate=outcome.success_rate, optimize_ms=ms.get("optimize"),
                generate_ms=ms.get("generate"), score_ms=ms.get("score"), dedup_ms=ms.get("dedup"),
                total_ms=ms["total"], started_at=started, finished_at=utcnow(),
                # Finished: every variation accepted, or every attempt judged. An image whose
                # calls failed (5xx, timeouts, blocks...) is redone by the next run.
                job_key=job.job_key if outcome.status == "ok" and (
                    outcome.accepted >= job.count or outcome.generation_failures == 0) else None,
                cache_hits=outcome.cache_hits,
            ),
            variations,
        )
