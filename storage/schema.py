"""Column types of every table. SCHEMA.md beside this file says what each column means.

Names are a public interface (notebooks and users query them): add columns, never rename.
"""

from __future__ import annotations

import pyarrow as pa

from varflow.runtime.records import (
    AttemptRecord,
    BatchJobRecord,
    BatchRequestRecord,
    ImageRecord,
    QualityLevelChangeRecord,
    ReviewRecord,
    RunRecord,
    VariationRecord,
    score_columns,
)

# 2: variations.profile, seed_* and the calibrated parts; 3: batch_jobs, batch_requests, attempts.batch_job;
# 4: execution in every table (a retried flow run's executions each keep their rows); 5: reviews,
# variations.cache_key; 6: variations.profile_version and graded_overall (varflow calibrate --apply)
SCHEMA_VERSION = 6
_TS = pa.timestamp("us", tz="UTC")
_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()

_TYPES: dict[str, dict[str, pa.DataType]] = {
    "runs": {
        "run_id": _S, "flow_run_id": _S, "parameters": _S, "input_dir": _S, "output_dir": _S,
        "backend": _S, "model": _S, "started_at": _TS, "finished_at": _TS, "status": _S,
        "images_total": _I, "images_ok": _I, "images_error": _I, "images_skipped": _I,
        "variations_accepted": _I, "variations_rejected": _I, "duplicates": _I, "attempts": _I,
        "wall_seconds": _F, "message": _S,
    },
    "images": {
        "run_id": _S, "image_id": _S, "path": _S, "width": _I, "height": _I, "status": _S,
        "error": _S, "optimized_width": _I, "optimized_height": _I, "source_bytes": _I,
        "quality_level": _S, "requested": _I, "accepted": _I, "attempts": _I,
        "success_rate": _F, "optimize_ms": _F, "generate_ms": _F, "score_ms": _F,
        "dedup_ms": _F, "total_ms": _F, "started_at": _TS, "finished_at": _TS, "job_key": _S,
        "cache_hits": _I,
    },
    "variations": {
        "run_id": _S, "image_id": _S, "variation_id": _S, "attempt": _I, "variation_type": _S,
        "accepted": _B, "reject_reason": _S, "ahash": _S, "phash": _S,
        "dhash": _S, "duplicate_of": _S, "output_path": _S, "backend": _S, "model": _S,
        "prompt": _S, "seed": _I, "quality_level": _S, "created_at": _TS, "profile": _S, "cache_key": _S,
        "name_prefix": _S, "profile_version": _I,
        **{column: _F for column in score_columns()},  # what the quality profiles measure
    },
    "attempts": {
        "run_id": _S, "image_id": _S, "variation_id": _S, "attempt": _I, "try_number": _I,
        "backend": _S, "model": _S, "prompt": _S, "outcome": _S, "error": _S,
        "latency_ms": _F, "quality_level": _S, "started_at": _TS, "http_status": _I,
        "prompt_tokens": _I, "output_tokens": _I, "total_tokens": _I, "cost_usd": _F,
        "retry_delay_s": _F, "cache_hit": _B, "batch_job": _S,
    },
    "quality_level_changes": {
        "run_id": _S, "image_id": _S, "changed_at": _TS, "from_level": _S, "to_level": _S,
        "window_average": _F, "reason": _S, "scope": _S,
    },
    "reviews": {
        "run_id": _S, "variation_id": _S, "image_id": _S, "verdict": _S, "reviewer": _S, "note": _S,
        "reviewed_at": _TS, "file_path": _S, "message": _S,
    },
    "batch_jobs": {
        "run_id": _S, "job_name": _S, "submit_run_id": _S, "display_name": _S, "backend": _S, "model": _S,
        "input_dir": _S, "name_tag": _S, "source": _S, "input_file": _S, "requests": _I, "state": _S,
        "succeeded": _I, "failed": _I, "submitted_at": _TS, "updated_at": _TS, "message": _S,
    },
    "batch_requests": {
        "run_id": _S, "job_name": _S, "request_key": _S, "position": _I, "image_id": _S, "variation_id": _S,
        "attempt": _I,
        "variation_type": _S, "seed": _I, "quality_level": _S, "prompt": _S, "submitted_at": _TS,
    },
}

RECORD_TYPES = {
    "runs": RunRecord,
    "images": ImageRecord,
    "variations": VariationRecord,
    "attempts": AttemptRecord,
    "quality_level_changes": QualityLevelChangeRecord,
    "reviews": ReviewRecord,
    "batch_jobs": BatchJobRecord,
    "batch_requests": BatchRequestRecord,
}

TABLES = tuple(_TYPES)
# Written after a run, never by one: a run's compaction leaves them as parts (a review made while the
# run was live would otherwise be merged away, and any made after hidden behind the compacted file).
NEVER_COMPACTED = frozenset({"reviews"})

EXECUTION = "execution"  # added to every table: which execution of the run wrote the row (1, 2 after a retry)

SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema([pa.field(col, typ) for col, typ in {**cols, EXECUTION: _I}.items()])
    for name, cols in _TYPES.items()
}


# Columns the views add to (or type over) the stored ones: SQL reads lists as lists and JSON as JSON,
# for every row ever written (an older row's string is split), while the Parquet files keep their
# columns as they were written (storage/SCHEMA.md).
VIEW_COLUMNS = {
    "variations": "*, CASE WHEN coalesce(reject_reason, '') = '' THEN []::VARCHAR[] "
                  "ELSE string_split(reject_reason, ';') END AS reasons",
    "runs": "* REPLACE (CAST(parameters AS JSON) AS parameters)",
}


# Views over the tables: a variation as people left it. ``final_accepted``: the latest review's verdict where
# there is one, else the run's decision (``accepted``, which stays as the run decided); ``final_path``: where
# its file is now. Everything downstream of a review reads this (storage/SCHEMA.md).
# The decision in force per variation (its latest review); a reader of the variations' own files (the run's
# earlier accepted ones, storage/reader.py) joins it as the view does.
REVIEWS_IN_FORCE = """SELECT * FROM reviews QUALIFY row_number() OVER (
                PARTITION BY run_id, variation_id ORDER BY reviewed_at DESC, verdict) = 1"""
FINAL_ACCEPTED = "coalesce(r.verdict = 'keep', v.accepted)"  # v: a variations row, r: its review in force
FINAL_PATH = "CASE WHEN r.verdict IS NULL THEN v.output_path ELSE r.file_path END"
DERIVED_VIEWS = {
    "variation_status": f"""
        SELECT v.*, r.verdict, r.reviewer, r.reviewed_at, r.note AS review_note,
               {FINAL_ACCEPTED} AS final_accepted, {FINAL_PATH} AS final_path,
               CASE WHEN r.verdict IS NULL THEN NULL ELSE (r.verdict = 'keep') = v.accepted END AS agrees
        FROM variations v LEFT JOIN ({REVIEWS_IN_FORCE}) r USING (run_id, variation_id)""",
}


def shaped_view(table: str, rows_sql: str) -> str:
    """The view of ``table`` over the query ``rows_sql`` that reads its stored rows."""
    columns = VIEW_COLUMNS.get(table)
    return rows_sql if columns is None else f"SELECT {columns} FROM ({rows_sql})"


_SQL_TYPES = {_S: "VARCHAR", _I: "BIGINT", _F: "DOUBLE", _B: "BOOLEAN", _TS: "TIMESTAMPTZ"}


def empty_rows_sql(table: str) -> str:
    """No rows with ``table``'s columns: its view in a data directory written before the table existed
    (a store from an older varflow has no ``reviews`` until its next run), so every query still runs."""
    return "SELECT " + ", ".join(f"CAST(NULL AS {_SQL_TYPES[f.type]}) AS {f.name}" for f in SCHEMAS[table]) + \
        " WHERE false"


def to_arrow(table: str, rows: list[dict]) -> pa.Table:
    schema = SCHEMAS[table]
    return pa.Table.from_pylist(rows, schema=schema)
