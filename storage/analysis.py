"""Read-side SQL for people: the notebooks, the gallery and the terminal commands.

Everything here reads the store through a lens (an in-memory DuckDB connection with the views),
so it works while a run writes. A data directory with no store yet reads as an empty one: every
query returns no rows, and the callers say "no runs yet" instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from varflow.storage.schema import DERIVED_VIEWS, SCHEMAS, TABLES, shaped_view
from varflow.storage.sqltext import glob_literal, sql_literal
from varflow.storage.store import Store

from varflow.errors import InputError
from varflow.reports.tabular import format_table, html_table

# Every score a variation row carries, in the order people read them (docs/quality-model.md).
METRICS = ("similarity", "diversity", "aesthetic", "object_integrity", "overall_quality")
AESTHETIC_PARTS = ("color_variance", "contrast", "brightness_balance", "sharpness")
SCORE_COLUMNS = METRICS[:3] + AESTHETIC_PARTS + METRICS[3:]


@dataclass(frozen=True)
class QueryResult:
    """Columns and rows of one query; prints as a table, and renders as one in a notebook."""

    columns: list[str]
    rows: list[tuple]

    def __len__(self) -> int:
        return len(self.rows)

    def records(self) -> list[dict]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def __repr__(self) -> str:
        return format_table(self.columns, self.rows)

    def _repr_html_(self) -> str:
        return html_table(self.columns, self.rows)


def has_store(home: str | Path) -> bool:
    """A run has written here (a table newer than the data directory's last run reads as empty)."""
    return (Store(home).tables_dir / "runs" / "_schema.parquet").exists()


def open_lens(home: str | Path) -> duckdb.DuckDBPyConnection:
    """The store's views (``Store.lens``); for a data directory without a store, empty tables
    with the same columns, so every query runs and returns no rows."""
    if has_store(home):
        store = Store(home)
        store.quarantine_unreadable()  # one damaged part must not make every query fail
        return store.lens()
    con = duckdb.connect()
    for table in TABLES:
        con.register(f"_empty_{table}", SCHEMAS[table].empty_table())
        con.execute(f"CREATE VIEW {table} AS {shaped_view(table, f'SELECT * FROM _empty_{table}')}")
    for name, sql in DERIVED_VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {sql}")
    con.execute("CREATE MACRO hamming(a, b) AS bit_count(xor(('0x' || a)::UBIGINT, ('0x' || b)::UBIGINT))")
    return con


def open_sandbox(home: str | Path) -> duckdb.DuckDBPyConnection:
    """The store's views in a connection that cannot reach the rest of the machine: what
    ``varflow sql``, ``runs``, ``stats`` and the gallery query through. DuckDB opens only files
    under the store's ``tables/`` (``allowed_directories``, then ``enable_external_access`` off:
    the order DuckDB requires), and the configuration is locked so no statement turns it back on.
    An allowed folder is still writable, so what runs here must also be read-only
    (``check_read_only``). An analyst's own connection (``open_lens``, ``Store.lens``) is theirs and
    is not restricted."""
    con = open_lens(home)
    try:
        tables = Store(home).tables_dir
        allowed = sorted({tables.as_posix() + "/", glob_literal(tables) + "/"})  # the views' patterns, the files
        con.execute(f"SET allowed_directories = [{', '.join(sql_literal(a) for a in allowed)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def run_query(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence | dict | None = None) -> QueryResult:
    cur = con.execute(sql, params) if params is not None else con.execute(sql)
    return QueryResult([d[0] for d in cur.description], cur.fetchall())


def columns_of(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The columns a table has in this store (newer builds add columns; older stores lack them)."""
    return [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]


def score_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every score column of ``variations`` in this store: the seed's metrics and parts first,
    then any other numeric column (a newer profile's parts), leaving out the ``seed_*`` copies."""
    numeric = [r[0] for r in con.execute("DESCRIBE variations").fetchall()
               if r[1] in ("DOUBLE", "FLOAT", "REAL") and not r[0].startswith("seed_")]
    return [c for c in SCORE_COLUMNS if c in numeric] + [c for c in numeric if c not in SCORE_COLUMNS]


class ReadOnlyQueryError(InputError):
    """The text given to ``varflow sql`` is not one read-only query."""


class QueryFailed(Exception):
    """DuckDB refused or failed the query (a wrong column, a type error...): its message says why."""


def check_read_only(sql: str) -> None:
    """Raise ``ReadOnlyQueryError`` unless ``sql`` is one statement that only reads, by DuckDB's
    own parse: a SELECT (WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE parse as one), or an
    EXPLAIN [ANALYZE] of one. EXPLAIN ANALYZE runs its statement, so what it explains is parsed
    and checked the same way (``EXPLAIN ANALYZE COPY ...`` writes a file)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ReadOnlyQueryError(f"cannot parse the query: {' '.join(str(exc).split())}") from None
    if len(statements) != 1:
        raise ReadOnlyQueryError(f"give exactly one query, not {len(statements)}; run them one at a time")
    kind = statements[0].type.name
    if kind == "EXPLAIN":
        explained = _explained(statements[0].query)
        if explained is None:
            raise ReadOnlyQueryError("EXPLAIN with options does not run here; give EXPLAIN [ANALYZE] SELECT ...")
        inner = duckdb.extract_statements(explained)
        if len(inner) == 1 and inner[0].type.name == "SELECT":
            return
        raise ReadOnlyQueryError(f"only read-only queries run here; this EXPLAIN runs a {inner[0].type.name} statement")
    if kind != "SELECT":
        raise ReadOnlyQueryError(f"only read-only queries run here (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, "
                                 f"EXPLAIN of one); this is a {kind} statement")


def _explained(sql: str) -> str | None:
    """The statement an ``EXPLAIN [ANALYZE]`` explains, or None (an EXPLAIN with options)."""
    tokens = duckdb.tokenize(sql)
    ends = [pos for pos, _ in tokens[1:]] + [len(sql)]
    words = [(pos, sql[pos:end].strip().upper()) for (pos, kind), end in zip(tokens, ends)
             if kind != duckdb.token_type.comment]
    if not words or words[0][1] != "EXPLAIN":
        return None
    rest = words[2:] if len(words) > 1 and words[1][1] == "ANALYZE" else words[1:]
    if not rest or rest[0][1].startswith("("):
        return None
    return sql[rest[0][0]:]


def read_only_query(home: str | Path, sql: str) -> QueryResult:
    """One read-only query (``check_read_only``) against the store, in the sandbox
    (``open_sandbox``): it reads the store's files and nothing else, and writes nothing."""
    check_read_only(sql)
    con = open_sandbox(home)
    try:
        return run_query(con, sql)
    except duckdb.PermissionException as exc:
        raise ReadOnlyQueryError(f"refused: the query reaches outside the store ({_first_line(exc)}); "
                                 "varflow sql reads only the store's tables") from None
    except duckdb.Error as exc:
        raise QueryFailed(str(exc)) from None
    finally:
        con.close()


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# -- runs -----------------------------------------------------------------------------------------

_RUNS_SQL = """
WITH img AS (
    SELECT run_id, coalesce(execution, 1) AS ex, count(*) AS images_found,
           count(*) FILTER (status = 'ok') AS images_ok,
           count(*) FILTER (status = 'error') AS images_error,
           count(*) FILTER (status = 'skipped') AS images_skipped,
           coalesce(sum(attempts), 0) AS attempts
    FROM images GROUP BY run_id, ex),
var AS (
    SELECT run_id, coalesce(execution, 1) AS ex, count(*) FILTER (accepted) AS accepted,
           count(*) FILTER (NOT accepted) AS rejected,
           count(*) FILTER (reject_reason = 'duplicate') AS duplicates,
           avg(overall_quality) FILTER (accepted) AS mean_overall,
           count(*) FILTER (verdict IS NOT NULL) AS reviewed,
           count(*) FILTER (final_accepted) AS after_review,
           count(*) FILTER (verdict = 'keep' AND NOT accepted) AS kept_by_people,
           count(*) FILTER (verdict = 'reject' AND accepted) AS rejected_by_people
    FROM variation_status GROUP BY run_id, ex)
SELECT r.run_id, coalesce(r.execution, 1) AS execution,
       count(*) OVER (PARTITION BY r.run_id) AS executions, r.started_at, r.status, r.backend, r.model,
       greatest(r.images_total, coalesce(img.images_found, 0)) AS images,
       coalesce(img.images_ok, 0) AS ok, coalesce(img.images_error, 0) AS error,
       coalesce(img.images_skipped, 0) AS skipped,
       coalesce(var.accepted, 0) AS accepted, coalesce(var.rejected, 0) AS rejected,
       coalesce(var.duplicates, 0) AS duplicates, coalesce(var.reviewed, 0) AS reviewed,
       coalesce(var.after_review, 0) AS accepted_after_review, coalesce(var.kept_by_people, 0) AS kept_by_people,
       coalesce(var.rejected_by_people, 0) AS rejected_by_people, coalesce(img.attempts, 0) AS attempts,
       CASE WHEN coalesce(img.attempts, 0) > 0 THEN var.accepted / img.attempts END AS acceptance,
       var.mean_overall AS mean_overall, r.wall_seconds
FROM runs r
LEFT JOIN img ON img.run_id = r.run_id AND img.ex = coalesce(r.execution, 1)
LEFT JOIN var ON var.run_id = r.run_id AND var.ex = coalesce(r.execution, 1)
"""  # one row per execution of a run (a retried flow run has several: storage/SCHEMA.md); ``accepted`` as the
# run's gate decided, ``accepted_after_review`` as people left it (variation_status: kept ones in, rejected out)


def recent_runs(home: str | Path, *, limit: int = 20) -> QueryResult:
    """The latest runs, newest first, with counts taken from their rows (so a running run's
    counts are live)."""
    con = open_sandbox(home)
    try:
        return run_query(con, _RUNS_SQL + " ORDER BY r.started_at DESC, execution DESC LIMIT ?", [limit])
    finally:
        con.close()


def resolve_run(home: str | Path, run_id: str | None = None, execution: int | None = None) -> dict:
    """The runs row of ``run_id`` (a unique prefix is enough), or of the latest run: of its latest
    execution, or of ``execution`` (a retried flow run has one row per execution)."""
    con = open_sandbox(home)
    try:
        if run_id is None:
            rows = run_query(con, "SELECT * FROM runs ORDER BY started_at DESC LIMIT 1").records()
            if not rows:
                raise LookupError(f"no runs yet in {Path(home)}: run `varflow demo` or `varflow run DIR`, "
                                  "or pass --home")
            run_id = rows[0]["run_id"]
        rows = run_query(con, "SELECT * REPLACE (coalesce(execution, 1) AS execution) FROM runs "
                              "WHERE starts_with(run_id, ?) ORDER BY started_at DESC, execution DESC",
                         [run_id]).records()
    finally:
        con.close()
    if not rows:
        raise LookupError(f"no run {run_id!r} in {Path(home)}; `varflow runs` lists the recent ones")
    if len({r['run_id'] for r in rows}) > 1:
        raise LookupError(f"{run_id!r} matches {len({r['run_id'] for r in rows})} runs; give more of the run id")
    if execution is None:
        return max(rows, key=lambda r: r["execution"])
    for r in rows:
        if r["execution"] == execution:
            return r
    raise LookupError(f"run {rows[0]['run_id']} has no execution {execution} (it has "
                      f"{', '.join(str(r['execution']) for r in sorted(rows, key=lambda r: r['execution']))})")


def _latest_execution(con, run_id: str) -> int:
    """The latest execution of ``run_id`` (1 when it has no rows)."""
    return run_query(con, "SELECT coalesce(max(coalesce(execution, 1)), 1) FROM runs WHERE run_id = ?",
                     [run_id]).rows[0][0]


# -- one run: the gallery and the stats ----------------------------------------------------------------

@dataclass(frozen=True)
class RunRows:
    """What the gallery shows of one run, as plain rows."""

    run: dict
    parameters: dict
    images: list[dict]
    variations: list[dict]
    failed_calls: list[dict]  # image_id, outcome, calls: generation calls that gave no image


def run_rows(home: str | Path, run_id: str, execution: int | None = None) -> RunRows:
    """One execution of a run (default: its latest)."""
    con = open_sandbox(home)
    try:
        key = [run_id, execution or _latest_execution(con, run_id)]
        one = "run_id = ? AND coalesce(execution, 1) = ?"
        run = run_query(con, f"SELECT * FROM runs WHERE {one}", key).records()
        if not run:
            raise LookupError(f"no run {run_id!r} in {Path(home)}; `varflow runs` lists the recent ones")
        images = run_query(con, f"SELECT * FROM images WHERE {one} ORDER BY path", key).records()
        # as people left them: the run's decision and the latest review's (storage/SCHEMA.md)
        variations = run_query(con, f"SELECT * FROM variation_status WHERE {one} ORDER BY image_id, attempt",
                               key).records()
        failed = run_query(con, "SELECT image_id, outcome, count(*) AS calls FROM attempts "
                                f"WHERE {one} AND outcome <> 'ok' GROUP BY ALL ORDER BY image_id, calls DESC",
                           key).records()
    finally:
        con.close()
    try:
        parameters = json.loads(run[0].get("parameters") or "{}")
    except ValueError:
        parameters = {}
    return RunRows(run[0], parameters, images, variations, failed)


def quality_summary(home: str | Path, run_id: str, execution: int | None = None) -> dict:
    """One run's quality in numbers (``varflow stats``): counts, score distributions of accepted
    and rejected variations, reasons, acceptance by type, level changes; of one execution of the
    run (default: its latest)."""
    con = open_sandbox(home)
    try:
        key = [run_id, execution or _latest_execution(con, run_id)]
        one = "run_id = ? AND coalesce(execution, 1) = ?"
        run = run_query(con, _RUNS_SQL + " WHERE r.run_id = ? AND coalesce(r.execution, 1) = ?", key).records()
        if not run:
            raise LookupError(f"no run {run_id!r} in {Path(home)}; `varflow runs` lists the recent ones")
        counts = run[0]
        head = run_query(con, f"SELECT * FROM runs WHERE {one}", key).records()[0]
        metrics = []
        for m in SCORE_COLUMNS:
            row = run_query(con, f"""
                SELECT count({m}) FILTER (accepted) AS accepted_n, min({m}) FILTER (accepted) AS accepted_min,
                       quantile_cont({m}, 0.5) FILTER (accepted) AS accepted_p50,
                       avg({m}) FILTER (accepted) AS accepted_mean, max({m}) FILTER (accepted) AS accepted_max,
                       count({m}) FILTER (NOT accepted) AS rejected_n,
                       quantile_cont({m}, 0.5) FILTER (NOT accepted) AS rejected_p50,
                       avg({m}) FILTER (NOT accepted) AS rejected_mean
                FROM variations WHERE {one}""", key).records()[0]
            metrics.append({"metric": m, **row})
        reasons = run_query(con, f"""
            SELECT reason, count(*) AS n FROM (
                SELECT unnest(string_split(reject_reason, ';')) AS reason FROM variations
                WHERE {one} AND NOT accepted) GROUP BY reason ORDER BY n DESC, reason""", key).rows
        by_type = run_query(con, f"""
            SELECT variation_type, count(*) AS judged, count(*) FILTER (accepted) AS accepted,
                   avg(accepted::INT) AS acceptance
            FROM variations WHERE {one} GROUP BY ALL ORDER BY judged DESC, variation_type""",
                            key).records()
        levels = run_query(con, f"SELECT quality_level, count(*) FROM images WHERE {one} AND status = 'ok' "
                                "GROUP BY ALL ORDER BY 2 DESC", key).rows
        changes = run_query(con, "SELECT changed_at, from_level, to_level, window_average, reason "
                                 f"FROM quality_level_changes WHERE {one} ORDER BY changed_at",
                            key).records()
    finally:
        con.close()
    judged = counts["accepted"] + counts["rejected"]
    return {
        "run": {**head, "images_total": counts["images"], "images_ok": counts["ok"],
                "images_error": counts["error"], "images_skipped": counts["skipped"]},
        "judged": judged, "accepted": counts["accepted"], "rejected": counts["rejected"],
        "duplicates": counts["duplicates"], "attempts": counts["attempts"],
        "reviews": {k: counts[k] for k in ("reviewed", "accepted_after_review", "kept_by_people",
                                           "rejected_by_people")},
        "acceptance_rate": counts["acceptance"],
        "metrics": [m for m in metrics if m["accepted_n"] or m["rejected_n"]],
        "reasons": dict(reasons), "by_type": by_type, "levels": dict(levels), "level_changes": changes,
    }


def as_jsonable(value: Any) -> Any:
    """Rows with timestamps, as JSON-ready values (``varflow stats --json``)."""
    if isinstance(value, dict):
        return {k: as_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
