"""Batch runs: a backend that ``can_batch`` answers in jobs, not calls. docs/batch.md has the story.

A batch run is the ordinary run (discover, optimize, the per-image pipeline) with another
``Generate``: :class:`BatchQueue`. For each wave of an image it serves what is already there —
answers collected from ended jobs in this run (``delivered``) and the content-keyed cache — and
when anything is missing, it queues the missing requests (one JSONL line each, in a spool file)
and answers the whole wave ``deferred``: the image waits, unjudged. At the run's end
:func:`submit_queued` splits the spool into jobs within the API's size limits (inline when the
whole lot fits, else uploaded JSONL files) and records each job and its requests in the store.

The same run, started again (the collector), first calls :func:`collect_jobs`: every open job of
its folder and parameters is polled; an ended job's answers become variations in the cache (or
classified failures) and one ``attempts`` row each, at the batch price; then the pipeline judges
the images whose waves are complete, exactly as a synchronous run would, and queues what the
quality loop still needs (the next wave) for the next job. Requests of a job that failed,
expired or was cancelled are no longer waiting, so the next run sends them again; answers a
job did deliver are kept. Nothing lives only in memory between runs: jobs and requests are in
the store, answers in the cache.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from varflow.generation.backends import GenerationError, VariationRequest
from varflow.kinds import CallOutcome
from varflow.runtime.calls import DEFERRED, GenerationResult, _complete
from varflow.runtime.records import AttemptRecord, BatchJobRecord, BatchRequestRecord, utcnow
from varflow.runtime.resources import RunResources
from varflow.settings import BATCH, BatchLimits

log = logging.getLogger(__name__)

OPEN_STATES = ("submitted", "pending", "running")  # the job may still answer: its requests wait
COLLECTED = "collected"  # ended with answers, and they are recorded


@dataclass(frozen=True)
class BatchScope:
    """Which jobs a run owns: those submitted for the same folder with the same parameters."""

    input_dir: str
    name_tag: str
    display_prefix: str  # job display names: "<prefix>-<n>"


class BatchQueue:
    """The pipeline's ``Generate`` for a backend that batches (see the module docstring)."""

    def __init__(self, res: RunResources, spool: Path, *, delivered: dict[str, GenerationResult] | None = None,
                 waiting: set[str] | None = None):
        self.res, self.spool = res, Path(spool)
        self.delivered = dict(delivered or {})
        self.waiting = set(waiting or ())  # keys in open jobs: never sent twice
        self.queued = 0
        self._lock = threading.Lock()

    def __call__(self, attempts: Sequence, *, refresh: bool) -> list[tuple[GenerationResult, bool]]:
        ready, missing = [], []
        for a in attempts:
            key = a.context.cache_key
            if key in self.delivered:
                ready.append((self.delivered[key], False))
                continue
            entry = self.res.cache.before_call(key, force=refresh or a.context.force)
            if entry is None:
                missing.append(a)
                continue
            ready.append((GenerationResult(
                ok=True, outcome=CallOutcome.OK, output_path=str(entry.path),
                prompt_sent=entry.meta.get("prompt", a.request.prompt),
                model=entry.meta.get("model", self.res.backend.model), latency_ms=0.0, tries=0, from_cache=True),
                False))
        if not missing:
            return ready
        sent = sum(self.queue(a) for a in missing)
        why = (f"{len(missing)} request(s) wait for a batch job ({sent} queued now, {len(missing) - sent} already "
               "in an open job); the run that collects the job judges this image")
        return [(GenerationResult(ok=False, outcome=DEFERRED, output_path=None, prompt_sent=a.request.prompt,
                                  model=self.res.backend.model, latency_ms=0.0, error=why, tries=0, cost_usd=0.0),
                                  False)
                for a in attempts]

    def queue(self, a) -> bool:
        """Append the attempt's request to the spool (its source image read now, while it
        exists); False when it already waits in an open job."""
        key = a.context.cache_key
        with self._lock:
            if key in self.waiting:
                return False
            self.waiting.add(key)
        line = self.res.backend.batch_line(a.request, key)
        line["meta"] = {"image_id": a.request.image_id, "variation_id": a.context.variation_id, "attempt": a.index,
                        "variation_type": a.variation_type, "seed": a.seed, "quality_level": a.context.quality_level,
                        "prompt": self.res.backend.sent_prompt(a.request)}
        text = json.dumps(line) + "\n"
        with self._lock:
            self.spool.parent.mkdir(parents=True, exist_ok=True)
            with open(self.spool, "a") as f:
                f.write(text)
            self.queued += 1
        return True


def plan_jobs(sizes: Sequence[int], *, limits: BatchLimits) -> list[tuple[list[int], bool]]:
    """Split requests of ``sizes`` bytes into jobs: [(request indices, as_file)].

    All of them in one inline job when their total fits the inline limit; otherwise JSONL file
    jobs, each within the file limit, in order. A request larger than a file cannot be sent.
    """
    if not sizes:
        return []
    if sum(sizes) <= limits.inline_max_bytes:
        return [(list(range(len(sizes))), False)]
    jobs: list[tuple[list[int], bool]] = []
    current: list[int] = []
    total = 0
    for i, size in enumerate(sizes):
        if size > limits.file_max_bytes:
            raise ValueError(f"request {i} is {size} bytes, more than a batch input file may hold "
                             f"({limits.file_max_bytes}); lower the quality level's max_image_size")
        if current and total + size > limits.file_max_bytes:
            jobs.append((current, True))
            current, total = [], 0
        current.append(i)
        total += size
    jobs.append((current, True))
    return jobs


def _spooled(spool: Path) -> list[tuple[int, int]]:
    """(offset, size of the request without its meta) of every spooled line."""
    out, offset = [], 0
    with open(spool, "rb") as f:
        for raw in f:
            line = json.loads(raw)
            line.pop("meta", None)
            out.append((offset, len(json.dumps(line)) + 1))
            offset += len(raw)
    return out


def _read(spool: Path, offsets: Sequence[int]) -> Iterator[dict]:
    with open(spool, "rb") as f:
        for offset in offsets:
            f.seek(offset)
            yield json.loads(f.readline())


def submit_queued(res: RunResources, queue: BatchQueue, store, scope: BatchScope, *,
                  limits: BatchLimits | None = None) -> list[BatchJobRecord]:
    """Send the spooled requests as jobs (split by ``limits``, default ``settings.BATCH``) and
    record each job with its requests; the spool is removed afterwards (requests not sent stay
    unfinished: the next run queues them again)."""
    spool, backend, limits = queue.spool, res.backend, limits or BATCH
    if not spool.exists():
        return []
    jobs = []
    try:
        lines = _spooled(spool)
        for n, (indices, as_file) in enumerate(plan_jobs([size for _, size in lines], limits=limits), start=1):
            requests = list(_read(spool, [lines[i][0] for i in indices]))
            metas = [r.pop("meta") for r in requests]
            name, input_file = backend.submit(requests, display_name=f"{scope.display_prefix}-{n}", as_file=as_file,
                                              work_dir=spool.parent)
            now = utcnow()
            job = BatchJobRecord(
                run_id=res.run_id, job_name=name, submit_run_id=res.run_id, display_name=f"{scope.display_prefix}-{n}",
                backend=backend.name, model=backend.model, input_dir=scope.input_dir, name_tag=scope.name_tag,
                source="file" if as_file else "inline", input_file=input_file, requests=len(requests),
                state="submitted", succeeded=None, failed=None, submitted_at=now, updated_at=now)
            store.write_batch_job(job, [BatchRequestRecord(run_id=res.run_id, job_name=name, request_key=r["key"],
                                                           position=i, submitted_at=now, **m)
                                        for i, (r, m) in enumerate(zip(requests, metas))])
            jobs.append(job)
            log.info("batch job %s: %d requests (%s)", name, len(requests), job.source)
    finally:
        spool.unlink(missing_ok=True)
    return jobs


def collect_jobs(res: RunResources, store, scope: BatchScope,
                 work_dir: Path) -> tuple[dict[str, GenerationResult], list[dict]]:
    """Poll this scope's open jobs; record the answers of those that ended.

    Returns (request key -> result, for every answer delivered now; every job's latest state).
    A job that cannot be polled now (a network error) stays open and is tried next time.
    """
    delivered: dict[str, GenerationResult] = {}
    for row in store.batch_jobs(states=OPEN_STATES, input_dir=scope.input_dir, name_tag=scope.name_tag):
        try:
            status, job = res.backend.status(row["job_name"])
        except GenerationError as exc:
            log.warning("batch job %s: cannot poll it now (%s); it stays open", row["job_name"], exc)
            continue
        fields = {k: row[k] for k in BatchJobRecord.columns() if k in row}
        if status.state in OPEN_STATES:
            if status.state != row["state"]:
                store.write_batch_job(BatchJobRecord(**{**fields, "run_id": res.run_id, "state": status.state,
                                                        "updated_at": utcnow()}))
            continue
        answers = _deliver(res, store, row, res.backend.answers(job), work_dir)
        delivered.update(answers)
        ok = sum(1 for r in answers.values() if r.ok)
        state = COLLECTED if status.state == "succeeded" else status.state
        message = status.message
        if state != COLLECTED:
            message = (f"{status.state}: {len(answers)} of {row['requests']} answers kept; the other requests are "
                       "sent again by the next run" + (f" ({status.message})" if status.message else ""))
        store.write_batch_job(BatchJobRecord(**{**fields, "run_id": res.run_id, "state": state, "succeeded": ok,
                                                "failed": len(answers) - ok, "updated_at": utcnow(),
                                                "message": message}))
        log.info("batch job %s %s: %d answers, %d with an image", row["job_name"], status.state, len(answers), ok)
    return delivered, store.batch_jobs(input_dir=scope.input_dir, name_tag=scope.name_tag)


def _deliver(res: RunResources, store, job: dict, answers, work_dir: Path) -> dict[str, GenerationResult]:
    """Each answer as a variation in the cache or a classified failure, with its attempts row."""
    requests = store.batch_requests(job["job_name"])
    by_key = {r["request_key"]: r for r in requests}
    in_order = sorted(requests, key=lambda r: r["position"])  # inline answers come back in request order
    turnaround_ms = (utcnow() - job["submitted_at"]).total_seconds() * 1000
    out = {}
    for answer in answers:
        req = by_key.get(answer.key) if answer.key else None
        if req is None and answer.key is None and answer.index < len(in_order):
            req = in_order[answer.index]
        if req is None:
            log.warning("batch job %s: an answer for an unknown request (%s) was ignored", job["job_name"], answer.key)
            continue
        out[req["request_key"]] = _answer_result(res, job, req, answer, work_dir, turnaround_ms)
    return out


def _answer_result(res: RunResources, job: dict, req: dict, answer, work_dir: Path,
                   turnaround_ms: float) -> GenerationResult:
    backend, started = res.backend, job["submitted_at"]
    request = VariationRequest(image_id=req["image_id"], source_path="", variation_type=req["variation_type"],
                               prompt=req["prompt"], seed=req["seed"], attempt=req["attempt"],
                               output_path=str(Path(work_dir) / f"batch-{req['request_key'][:24]}.png"))
    usage, status, outcome, error, result = None, None, CallOutcome.OK, None, None
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    try:
        variation = backend.answer_variation(answer, request, prompt=req["prompt"])
        usage = variation.usage
        entry = res.cache.keep(req["request_key"], variation.output_path,
                               {"image_id": req["image_id"], "prompt": variation.prompt_sent, "model": variation.model})
        result = GenerationResult(ok=True, outcome=CallOutcome.OK, output_path=str(entry.path),
                                  prompt_sent=variation.prompt_sent, model=variation.model, latency_ms=turnaround_ms,
                                  width=variation.width, height=variation.height, detail=variation.detail)
    except GenerationError as exc:
        usage, status, outcome, error = exc.usage, exc.http_status, exc.outcome, str(exc)
        result = GenerationResult(ok=False, outcome=outcome, output_path=None, prompt_sent=req["prompt"],
                                  model=backend.model, latency_ms=turnaround_ms, error=error)
    cost = (backend.estimate_cost(backend.model, _complete(usage)) or 0.0) if result.ok or usage is not None else 0.0
    result = replace(result, cost_usd=round(cost, 6))
    res.records.write_attempt(AttemptRecord(
        run_id=res.run_id, image_id=req["image_id"], variation_id=req["variation_id"], attempt=req["attempt"],
        try_number=1, backend=backend.name, model=result.model, prompt=result.prompt_sent, outcome=outcome,
        error=error, latency_ms=turnaround_ms, quality_level=req["quality_level"], started_at=started,
        http_status=status, prompt_tokens=getattr(usage, "prompt_tokens", None),
        output_tokens=getattr(usage, "output_tokens", None), total_tokens=getattr(usage, "total_tokens", None),
        cost_usd=result.cost_usd, batch_job=job["job_name"]))
    return result



def poll_jobs(backend, store, jobs: Sequence[dict], run_id: str) -> list[dict]:
    """Look at open jobs without collecting them: record a changed state (pending -> running),
    return the jobs that have ended (their answers are the run's to collect)."""
    ended = []
    for row in jobs:
        try:
            status, _ = backend.status(row["job_name"])
        except GenerationError as exc:
            log.warning("batch job %s: cannot poll it now (%s); it stays open", row["job_name"], exc)
            continue
        if status.state not in OPEN_STATES:
            ended.append(row)
        elif status.state != row["state"]:
            fields = {k: row[k] for k in BatchJobRecord.columns() if k in row}
            store.write_batch_job(BatchJobRecord(**{**fields, "run_id": run_id, "state": status.state,
                                                    "updated_at": utcnow()}))
    return ended


def answered_failures(res: RunResources, store, scope: BatchScope) -> dict[str, GenerationResult]:
    """Requests of this scope's jobs answered without an image that are not to be sent again:
    a final outcome (a block), or a retryable one already answered 1 + retries times. The
    pipeline counts them as failed attempts (their ``attempts`` rows exist) instead of queueing them."""
    jobs = store.batch_jobs(input_dir=scope.input_dir, name_tag=scope.name_tag)
    out = {}
    for row in store.batch_failures(j["job_name"] for j in jobs):
        if res.backend.resubmits(row["outcome"]) and row["answers"] <= res.policy.retries:
            continue
        out[row["request_key"]] = GenerationResult(ok=False, outcome=row["outcome"], output_path=None,
                                                   prompt_sent=row["prompt"], model=row["model"], latency_ms=0.0,
                                                   error=row["error"], tries=0, cost_usd=0.0)
    return out
