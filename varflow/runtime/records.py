"""The rows varflow records, as plain dataclasses.

storage/ maps them to Parquet columns (storage/SCHEMA.md documents every column); keeping them
here lets tasks build records without knowing how they are stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime

from varflow.kinds import ImageStatus, RunStatus, Verdict


def utcnow() -> datetime:
    return datetime.now(UTC)


def stable_id(*parts: object) -> str:
    """A full-length SHA-256 hex id over ``parts``: the same inputs always give the same id."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Row:
    def as_row(self) -> dict:
        return asdict(self)

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass(frozen=True)
class RunRecord(Row):
    run_id: str
    flow_run_id: str | None
    parameters: str  # JSON of the run's parameters (no secrets)
    input_dir: str
    output_dir: str
    backend: str
    model: str
    started_at: datetime
    finished_at: datetime | None
    status: RunStatus
    images_total: int = 0
    images_ok: int = 0
    images_error: int = 0
    images_skipped: int = 0
    variations_accepted: int = 0
    variations_rejected: int = 0
    duplicates: int = 0
    attempts: int = 0
    wall_seconds: float | None = None
    message: str | None = None


@dataclass(frozen=True)
class ImageRecord(Row):
    run_id: str
    image_id: str  # SHA-256 of the file's bytes
    path: str
    width: int | None
    height: int | None
    status: ImageStatus
    error: str | None
    optimized_width: int | None = None
    optimized_height: int | None = None
    source_bytes: int | None = None
    quality_level: str | None = None
    requested: int = 0
    accepted: int = 0
    attempts: int = 0
    success_rate: float | None = None
    optimize_ms: float | None = None
    generate_ms: float | None = None
    score_ms: float | None = None
    dedup_ms: float | None = None
    total_ms: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    job_key: str | None = None  # stable id of (image, output-changing parameters)
    cache_hits: int = 0


@dataclass(frozen=True)
class VariationRecord(Row):
    """One judged variation. ``scores`` holds every score column (``score_columns()``): the
    judging profile's headline values, the seed's values and the calibrated parts; a duplicate
    is never scored, so its scores are null."""

    run_id: str
    image_id: str
    variation_id: str
    attempt: int
    variation_type: str
    accepted: bool
    reject_reason: str | None
    ahash: str | None
    phash: str | None
    dhash: str | None
    duplicate_of: str | None
    output_path: str | None
    backend: str
    model: str
    prompt: str
    seed: int
    quality_level: str
    created_at: datetime
    profile: str | None = None  # the quality profile that judged (None: not scored, a duplicate)
    cache_key: str | None = None  # the generation cache's key: where a person's "keep" finds a deleted file
    name_prefix: str | None = None  # ``<stem>-<tag>``: a person's "keep" names the file ``<name_prefix>-vNN.png``
    profile_version: int | None = None  # the data directory's calibrated profile that judged (None: the defaults)
    scores: Mapping[str, float | None] = field(default_factory=dict)

    def as_row(self) -> dict:
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "scores"}
        row.update({c: self.scores.get(c) for c in score_columns()})
        return row

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "scores"] + list(score_columns())


def score_columns() -> tuple[str, ...]:
    from varflow.quality.profiles import record_columns  # the profiles name what they measure

    return record_columns()


@dataclass(frozen=True)
class AttemptRecord(Row):
    run_id: str
    image_id: str
    variation_id: str
    attempt: int  # the image's attempt index (the enhanced loop's counter)
    try_number: int  # 1 for the first call of this attempt, 2+ for retries of it
    backend: str
    model: str
    prompt: str
    outcome: str  # ok | error | ... (see storage/SCHEMA.md)
    error: str | None
    latency_ms: float
    quality_level: str
    started_at: datetime
    http_status: int | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None
    retry_delay_s: float | None = None
    cache_hit: bool = False
    batch_job: str | None = None  # the Batch API job that answered (gemini-batch), else None

    @property
    def attempt_key(self) -> str:
        return stable_id(self.run_id, self.variation_id, self.try_number)


@dataclass(frozen=True)
class QualityLevelChangeRecord(Row):
    run_id: str
    image_id: str  # the image whose result triggered the change
    changed_at: datetime
    from_level: str
    to_level: str
    window_average: float
    reason: str
    scope: str  # what the level belongs to, e.g. "local/local-v1"


@dataclass(frozen=True)
class ReviewRecord(Row):
    """A person's keep/reject of one variation; the latest per variation is in force, the others stay
    as history. ``file_path`` is where the decision left the file (None: the file is gone)."""

    run_id: str
    variation_id: str
    image_id: str
    verdict: Verdict
    reviewer: str
    note: str | None
    reviewed_at: datetime
    file_path: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class BatchJobRecord(Row):
    """One state of a Batch API job; the latest row per ``job_name`` is the job's state."""

    run_id: str  # the run that saw this state (the submitting run, then each collecting run)
    job_name: str  # "batches/..."
    submit_run_id: str
    display_name: str
    backend: str
    model: str
    input_dir: str
    name_tag: str  # the submitting run's parameter tag: only a run with the same parameters collects it
    source: str  # inline | file
    input_file: str | None  # "files/..." for a file job
    requests: int
    state: str  # submitted | pending | running | succeeded | failed | cancelled | expired | collected | resubmitted
    succeeded: int | None
    failed: int | None
    submitted_at: datetime
    updated_at: datetime
    message: str | None = None


@dataclass(frozen=True)
class BatchRequestRecord(Row):
    """One request of a batch job: what the collecting run needs to record its answer."""

    run_id: str  # the submitting run
    job_name: str
    request_key: str  # the request's content key (varflow.generation.cache.generation_key)
    position: int  # its place in the job (inline answers come back in this order)
    image_id: str
    variation_id: str
    attempt: int
    variation_type: str
    seed: int
    quality_level: str
    prompt: str  # as sent
    submitted_at: datetime
