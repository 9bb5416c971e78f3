"""The store's reader: the DuckDB views over the Parquet files, and the questions a run asks them
(what finished, what was accepted, where the quality level was, what calls cost)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import duckdb
from varflow.storage.integrity import (
    file_named_in,
    is_query_error,
    quarantine,
    undecodable_parts,
)
from varflow.storage.schema import (
    DERIVED_VIEWS,
    FINAL_ACCEPTED,
    FINAL_PATH,
    REVIEWS_IN_FORCE,
    SCHEMA_VERSION,
    TABLES,
    empty_rows_sql,
    shaped_view,
)
from varflow.storage.sqltext import glob_literal, sql_literal

from varflow.processing.estimate import AttemptHistory
from varflow.runtime.calls import CANCELLED, IN_FLIGHT

MAX_QUARANTINE_PER_QUERY = 20  # damaged files one query may set aside before it gives up
MAX_RELISTS = 20  # times the lens lists the files again when one it listed was compacted away meanwhile


class StoreReader:
    """Reading records (a part of ``Store``): every query goes through the views; a damaged file met by one
    is set aside and the query tried again."""

    def view_sql(self, table: str, *, relative: bool = False) -> str:
        """The view of ``table``: every Parquet file under its folder, without the parts of a run
        that has a compacted file. The folder is a quoted literal with its glob characters escaped
        (storage/sqltext.py); ``relative``: ``tables/<table>``, resolved by DuckDB from the working
        directory (or ``file_search_path``), so the file's views answer wherever the data directory
        lies. A file is told a part or a compacted file by its last three path components only
        (``run-<id>/parts/<key>.parquet``), so a data directory may be named with quotes, brackets,
        ``*``, spaces or ``/run-x/parts/``, and the path DuckDB reports may be relative or absolute."""
        base = Path("tables", table) if relative else self.tables_dir / table
        pattern = glob_literal(base)
        return f"""
            SELECT * EXCLUDE (filename)
            FROM read_parquet({sql_literal(pattern + '/**/*.parquet')}, union_by_name = true, filename = true)
            WHERE NOT regexp_matches(filename, '/run-[^/]+/parts/[^/]+$')
               OR regexp_extract(filename, '/run-([^/]+)/parts/[^/]+$', 1) NOT IN (
                    SELECT regexp_extract(file, '/run-([^/]+)/compacted[.]parquet$', 1)
                    FROM glob({sql_literal(pattern + '/run-*/compacted.parquet')}))
        """

    def _views_script(self, *, relative: bool = False) -> str:
        """The views, macros and meta row; ``relative``: the file's (paths relative to the data
        directory, ``home`` is ``.``), else a lens's (this data directory's absolute paths)."""
        def rows(table: str) -> str:
            if (self.tables_dir / table / "_schema.parquet").exists():
                return self.view_sql(table, relative=relative)
            return empty_rows_sql(table)  # a table newer than this data directory's last run

        statements = [f"CREATE OR REPLACE VIEW {table} AS {shaped_view(table, rows(table))}" for table in TABLES]
        statements += [f"CREATE OR REPLACE VIEW {name} AS {sql}" for name, sql in DERIVED_VIEWS.items()]
        home = "." if relative else self.home.as_posix()
        statements.append(f"CREATE OR REPLACE VIEW varflow_meta AS SELECT {int(SCHEMA_VERSION)} AS schema_version, "
                          f"{sql_literal(home)} AS home")
        # Hamming distance between two 16-hex-digit perceptual hashes.
        statements.append("CREATE OR REPLACE MACRO hamming(a, b) AS "
                          "bit_count(xor(('0x' || a)::UBIGINT, ('0x' || b)::UBIGINT))")
        return ";\n".join(statements) + ";"

    # -- reading ----------------------------------------------------------------------------
    def lens(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the same views: never blocked by a file lock. No
        progress bar: it would print over a run's log and a command's output. Making the views
        reads every file's schema: one that another run compacted away between the listing and
        the reading is listed again (it failed a run that shared the data directory)."""
        for attempt in range(1, MAX_RELISTS + 1):
            con = duckdb.connect()
            try:
                try:
                    con.execute("SET enable_progress_bar = false")
                except duckdb.Error:  # in Jupyter without ipywidgets DuckDB refuses to touch the setting
                    pass
                con.execute(self._views_script())
                return con
            except BaseException as exc:
                con.close()
                if attempt == MAX_RELISTS or not _vanished(exc):
                    raise

    def _read(self, read):
        """``read(connection)``, quarantining any damaged file a query trips over and retrying
        without it (a footer can be sound and a page broken)."""
        for _ in range(MAX_QUARANTINE_PER_QUERY):
            con = None
            try:
                con = self.lens()  # a damaged file met while the views are made is set aside too
                return read(con)
            except duckdb.Error as exc:
                if is_query_error(exc):
                    raise
                if _vanished(exc):  # listed before another process compacted that run: list and read again
                    continue
                named = file_named_in(exc, self.tables_dir)
                damaged = [(named, f"{type(exc).__name__}: {exc}")] if named else undecodable_parts(self.tables_dir)
                if not damaged:
                    raise
                for path, reason in damaged:
                    quarantine(self.home, path, reason)
            finally:
                if con is not None:
                    con.close()
        con = self.lens()
        try:
            return read(con)
        finally:
            con.close()

    def connect(self, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
        """The DuckDB file itself, as a notebook or the duckdb CLI would open it; its views' relative
        paths resolved from the data directory (``file_search_path``), whatever the working directory."""
        if not self.duckdb_path.exists():
            self.initialize()
        con = duckdb.connect(str(self.duckdb_path), read_only=read_only)
        con.execute(f"SET file_search_path = {sql_literal(self.home.as_posix())}")
        return con

    def query(self, sql: str, params: Iterable | None = None) -> list[dict]:
        def read(con):
            cur = con.execute(sql, list(params) if params is not None else None)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

        return self._read(read)

    # -- state that outlives a run --------------------------------------------------------------
    def finished_jobs(self) -> dict[str, str]:
        """job_key -> run_id of every image that finished ``ok`` (what an incremental run skips)."""
        rows = self.query("SELECT job_key, any_value(run_id) AS run_id FROM images "
                          "WHERE status = 'ok' AND job_key IS NOT NULL GROUP BY job_key")
        return {r["job_key"]: r["run_id"] for r in rows}

    def reviewed_short(self) -> dict[str, dict]:
        """job_key -> ``standing`` (its variations accepted as people left them, ``variation_status``) and
        ``next_attempt`` (one past every attempt recorded for it), for each finished job where a person
        rejected a variation its run accepted after the job last ran: what the next run with the same
        parameters may top up (the caller compares ``standing`` with its count). A job topped up since, or
        left short by the gate alone, is not listed: the gate's shortfall is not retried on every run."""
        if not any((self.tables_dir / "reviews").glob("run-*")):  # nobody reviewed here: nothing more to ask
            return {}
        return {r["job_key"]: {"standing": int(r["standing"]), "next_attempt": int(r["next_attempt"])}
                for r in self.query(_REVIEWED_SHORT_SQL)}

    def finished_paths(self, folder: str | Path) -> set[str]:
        """Paths under ``folder`` of images some run finished ``ok`` (the preflight's space check
        counts the others: a nightly run over a large folder has little new)."""
        prefix = _prefix(folder)
        rows = self.query("SELECT DISTINCT path FROM images WHERE status = 'ok' AND job_key IS NOT NULL "
                          "AND starts_with(path, ?)", [prefix])
        return {r["path"] for r in rows}

    def output_dirs_inside(self, folder: str | Path) -> list[str]:
        """The output folders earlier runs wrote to strictly inside ``folder``: not sources for a
        run over ``folder`` (one with another output folder would take their files as new)."""
        prefix = _prefix(folder)
        rows = self.query("SELECT DISTINCT output_dir FROM runs WHERE starts_with(output_dir, ?)", [prefix])
        return [r["output_dir"] for r in rows]

    def quality_state(self, scope: str, *, window: int) -> tuple[str | None, list[float]]:
        """The adaptive level last set for ``scope`` and the success rates that count toward it.

        Derived from what runs recorded (no separate state to drift): the level is the target of
        the scope's latest change; the history is the latest ``window`` success rates of images
        processed at that level since that change (varflow/quality/adaptive.py explains why).
        """
        backend, _, model = scope.partition("/")
        last = self.query("SELECT to_level, changed_at FROM quality_level_changes WHERE scope = ? "
                          "ORDER BY changed_at DESC LIMIT 1", [scope])
        level, since = (last[0]["to_level"], last[0]["changed_at"]) if last else (None, None)
        rates = self.query(
            "SELECT i.success_rate FROM images i JOIN runs r "  # a retried run's row per execution: join on both
            "  ON r.run_id = i.run_id AND coalesce(r.execution, 1) = coalesce(i.execution, 1) "
            "WHERE r.backend = ? AND r.model = ? AND i.status = 'ok' AND i.success_rate IS NOT NULL "
            "  AND i.quality_level = ? AND (CAST(? AS TIMESTAMPTZ) IS NULL OR i.finished_at > ?) "
            "ORDER BY i.finished_at DESC LIMIT ?", [backend, model, level or "high", since, since, window])
        return level, [r["success_rate"] for r in reversed(rates)]

    def accepted_variations(self, image_ids: Iterable[str], *, except_run: str | None = None) -> dict[str, list[dict]]:
        """Every variation ever accepted for these source images (as people left them: ``final_accepted``,
        at ``final_path``), by image: what a new one must not duplicate. ``except_run``: leave out that run's
        files (a running run's own parts grow by one per image; reading them for every chunk would cost more
        as the run goes on)."""
        ids = list(dict.fromkeys(image_ids))
        if not ids:
            return {}

        def read(con):  # lists the files each time: a retry after another run's compaction sees its new file
            files = self._table_files("variations", except_run=except_run)
            if not files:
                return []
            cur = con.execute(  # as people left them: a kept one counts, a rejected one no longer blocks
                f"SELECT DISTINCT v.image_id, v.variation_id, v.ahash, v.phash, v.dhash, "
                f"{FINAL_PATH} AS output_path "
                f"FROM read_parquet(?, union_by_name = true) v "
                f"LEFT JOIN ({REVIEWS_IN_FORCE}) r USING (run_id, variation_id) "
                f"WHERE v.image_id IN (SELECT unnest(?)) AND {FINAL_ACCEPTED} AND {FINAL_PATH} IS NOT NULL "
                "ORDER BY v.image_id, output_path", [[glob_literal(f) for f in files], ids])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]

        out: dict[str, list[dict]] = {i: [] for i in ids}
        for row in self._read(read):
            out[row.pop("image_id")].append(row)
        return out

    def _table_files(self, table: str, *, except_run: str | None = None) -> list[str]:
        """The files the lens reads for ``table``: a run's compacted file, or its parts until it has one."""
        skip = self._run_dir(table, except_run).name if except_run else None
        files: list[str] = []
        base = self.tables_dir / table
        for run_dir in sorted(base.glob("run-*")) if base.exists() else []:
            if run_dir.name == skip:
                continue
            compacted = run_dir / "compacted.parquet"
            files += [str(compacted)] if compacted.exists() else sorted(str(p) for p in run_dir.glob("parts/*.parquet"))
        return files

    def accepted_by_source(self, output_dir: str | Path) -> list[dict]:
        """The accepted variations under ``output_dir`` as people left them (``variation_status``: a kept one
        at the name it was given, a rejected one left out), one row each with its source's path, variation
        type and overall score, by source then file: the output-name guard and the contact sheet."""
        prefix = _prefix(output_dir)
        return self.query(
            "SELECT i.path AS source_path, arg_max(v.final_path, v.created_at) AS output_path, "
            "       arg_max(v.variation_type, v.created_at) AS variation_type, "
            "       arg_max(v.overall_quality, v.created_at) AS overall_quality "
            "FROM variation_status v JOIN images i USING (run_id, image_id) "
            "WHERE v.final_accepted AND starts_with(v.final_path, ?) "
            "GROUP BY i.path, v.variation_id ORDER BY source_path, output_path", [prefix])

    def accepted_library(self) -> dict[str, list]:
        """Every variation ever accepted, from any source (``--dedup-library``), as people left them
        (``final_accepted``: a person's reject no longer blocks a similar new one, a keep does), as columns:
        variation_id, ahash, phash, dhash, output_path (where its file is now; the latest, if accepted in
        several runs). Columns, not row dicts: a library of a million variations is one Arrow fetch."""
        table = self._read(lambda con: con.sql(
            "SELECT variation_id, any_value(ahash) AS ahash, any_value(phash) AS phash, "
            "any_value(dhash) AS dhash, arg_max(final_path, created_at) AS output_path FROM variation_status "
            "WHERE final_accepted AND final_path IS NOT NULL AND ahash IS NOT NULL "
            "GROUP BY variation_id ORDER BY variation_id").to_arrow_table())
        return {name: table.column(name).to_pylist() for name in table.column_names}

    def attempt_history(self, backend: str, model: str) -> dict[str, AttemptHistory]:
        """What runs of ``backend``/``model`` recorded, by level: attempts made, accepted, calls
        and their cost (the dry run's basis, varflow/processing/estimate.py). An attempt is one variation of
        one image in one execution of a run; its calls are its tries that reached the backend (not cache hits,
        not cancelled, not a live run's in-flight call)."""
        rows = self.query(
            "WITH a AS (SELECT run_id, coalesce(execution, 1) AS ex, image_id, attempt, "
            "  any_value(quality_level) AS level, "
            "  count(*) FILTER (WHERE NOT coalesce(cache_hit, false) AND outcome NOT IN (?, ?)) AS calls, "
            "  coalesce(sum(cost_usd) FILTER (WHERE NOT coalesce(cache_hit, false) AND outcome NOT IN (?, ?)), 0) "
            "    AS cost, bool_or(outcome NOT IN (?, ?)) AS made "
            "  FROM attempts WHERE backend = ? AND model = ? GROUP BY run_id, ex, image_id, attempt), "
            "v AS (SELECT run_id, coalesce(execution, 1) AS ex, image_id, attempt, bool_or(accepted) AS accepted "
            "  FROM variations WHERE backend = ? AND model = ? GROUP BY run_id, ex, image_id, attempt) "
            "SELECT level, count(*) AS attempts, count(*) FILTER (WHERE v.accepted) AS accepted, "
            "  count(*) FILTER (WHERE a.calls > 0) AS called, sum(a.calls) AS calls, sum(a.cost) AS cost "
            "FROM a LEFT JOIN v USING (run_id, ex, image_id, attempt) WHERE a.made AND level IS NOT NULL "
            "GROUP BY level ORDER BY level",
            [CANCELLED, IN_FLIGHT] * 3 + [backend, model, backend, model])
        return {r["level"]: AttemptHistory(attempts=r["attempts"], accepted=r["accepted"], called=r["called"],
                                           calls=int(r["calls"]), cost_usd=float(r["cost"]), level=r["level"])
                for r in rows}

    # -- reviews (flows/review.py) -------------------------------------------------------------------
    def review_targets(self, variation_id: str, run_id: str | None = None) -> list[dict]:
        """The variations whose id is or starts with ``variation_id`` (their latest row per run: a later run
        over the same photos with another ``--out`` makes the same id), of the run ``run_id`` (or a prefix)
        if given, each with its source, its run's output folder, and the status its latest review left."""
        return self.query(
            "SELECT s.variation_id, s.run_id, s.image_id, s.attempt, s.accepted, s.reject_reason, s.output_path, "
            "  s.cache_key, s.name_prefix, s.verdict, s.final_accepted, s.final_path, i.path AS source_path, "
            "  i.requested, "
            "  r.output_dir, r.input_dir "
            "FROM variation_status s "
            "LEFT JOIN (SELECT run_id, image_id, any_value(path) AS path, max(requested) AS requested FROM images "
            "  GROUP BY ALL) i "
            "  USING (run_id, image_id) "
            "LEFT JOIN (SELECT run_id, any_value(output_dir) AS output_dir, any_value(input_dir) AS input_dir "
            "  FROM runs GROUP BY run_id) r USING (run_id) "
            "WHERE starts_with(s.variation_id, ?) AND starts_with(s.run_id, ?) "
            "QUALIFY row_number() OVER (PARTITION BY s.run_id, s.variation_id ORDER BY s.created_at DESC) = 1 "
            "ORDER BY s.variation_id, s.run_id LIMIT 8", [variation_id, run_id or ""])

    def review_decisions(self) -> list[dict]:
        """Every reviewed variation (its latest row, every ``variation_status`` column, the review in force):
        what ``varflow calibrate`` fits on and measures (varflow/quality/fitting.py)."""
        return self.query(
            "SELECT * EXCLUDE (reasons) FROM variation_status WHERE verdict IS NOT NULL "
            "QUALIFY row_number() OVER (PARTITION BY run_id, variation_id ORDER BY created_at DESC) = 1 "
            "ORDER BY variation_id, run_id")

    def review_history(self, variation_id: str, run_id: str) -> list[dict]:
        """Every decision on one run's variation, latest first."""
        return self.query("SELECT * FROM reviews WHERE variation_id = ? AND run_id = ? ORDER BY reviewed_at DESC",
                          [variation_id, run_id])

    def source_names_in(self, output_dir: str | Path, name_prefix: str) -> list[str]:
        """File names (relative to ``output_dir``) that any variation of a source with ``name_prefix`` was ever
        given there, as the run left it or as a review moved it: a kept one's new name must be free of all."""
        base = str(Path(output_dir)).rstrip("/") + "/"
        rows = self.query(
            "SELECT DISTINCT p FROM (SELECT output_path AS p FROM variations UNION ALL "
            "SELECT file_path FROM reviews) WHERE starts_with(p, ?)", [base + name_prefix])
        return [r["p"][len(base):] for r in rows]

    def batch_jobs(self, *, states: Iterable[str] | None = None, input_dir: str | None = None,
                   name_tag: str | None = None) -> list[dict]:
        """Every job's latest state (optionally only those in ``states``, of one folder and
        parameter set), oldest first."""
        rows = self.query(
            "SELECT * FROM batch_jobs QUALIFY row_number() OVER "
            "(PARTITION BY job_name ORDER BY updated_at DESC, run_id DESC) = 1 ORDER BY submitted_at, job_name")
        wanted = set(states) if states is not None else None
        return [r for r in rows if (wanted is None or r["state"] in wanted)
                and (input_dir is None or r["input_dir"] == input_dir)
                and (name_tag is None or r["name_tag"] == name_tag)]

    def batch_requests(self, job_name: str) -> list[dict]:
        return self.query("SELECT * FROM batch_requests WHERE job_name = ? ORDER BY image_id, attempt", [job_name])

    def batch_failures(self, job_names: Iterable[str]) -> list[dict]:
        """Per request key of these jobs that was answered without an image: its latest outcome
        and error, and how many times a job answered it so."""
        names = list(job_names)
        if not names:
            return []
        return self.query(
            "SELECT r.request_key, arg_max(a.outcome, a.started_at) AS outcome, arg_max(a.error, "
            "a.started_at) AS error, "
            "arg_max(a.prompt, a.started_at) AS prompt, arg_max(a.model, a.started_at) AS model, count(*) AS answers "
            "FROM attempts a JOIN batch_requests r ON a.batch_job = r.job_name AND a.variation_id = r.variation_id "
            "WHERE a.outcome <> 'ok' AND list_contains(?, r.job_name) GROUP BY r.request_key", [names])

    def waiting_batch_keys(self, open_states: Iterable[str]) -> set[str]:
        """Content keys of the requests in jobs still open (not to be submitted again)."""
        names = [j["job_name"] for j in self.batch_jobs(states=open_states)]
        if not names:
            return set()
        rows = self.query("SELECT DISTINCT request_key FROM batch_requests WHERE list_contains(?, job_name)", [names])
        return {r["request_key"] for r in rows}


# Finished jobs (``job_key``) a person's reject of a variation the run accepted, made after the job last
# finished, may have left short: each one's standing variations (latest row per variation, as people left it)
# and the next attempt index past every recorded variation and call of it (a top-up asks for new ones only).
_REVIEWED_SHORT_SQL = """
WITH fin AS (SELECT job_key, run_id, image_id, max(finished_at) AS finished_at FROM images
             WHERE status = 'ok' AND job_key IS NOT NULL GROUP BY ALL),
hit AS (SELECT DISTINCT f.job_key FROM variation_status s JOIN fin f USING (run_id, image_id)
        JOIN (SELECT job_key, max(finished_at) AS last_finished FROM fin GROUP BY job_key) l USING (job_key)
        WHERE s.verdict = 'reject' AND s.accepted AND s.reviewed_at > l.last_finished),
mine AS (SELECT * FROM fin WHERE job_key IN (SELECT job_key FROM hit)),
var AS (SELECT m.job_key, s.variation_id, max(s.attempt) AS attempt,
               arg_max(s.final_accepted, s.created_at) AS final_accepted
        FROM mine m JOIN variation_status s USING (run_id, image_id) GROUP BY ALL),
tried AS (SELECT m.job_key, max(a.attempt) AS attempt FROM mine m JOIN attempts a USING (run_id, image_id)
          GROUP BY ALL)
SELECT var.job_key, count(*) FILTER (var.final_accepted) AS standing,
       greatest(max(var.attempt), coalesce(any_value(tried.attempt), -1)) + 1 AS next_attempt
FROM var LEFT JOIN tried USING (job_key) GROUP BY var.job_key
"""


def _vanished(error: Exception) -> bool:
    """A file the query named is gone (another process compacted or superseded its run meanwhile)."""
    return isinstance(error, duckdb.IOException) and (
        "No files found that match the pattern" in str(error) or "No such file or directory" in str(error))


def _prefix(folder: str | Path) -> str:
    """What every path below ``folder`` starts with (a bucket URL as it is, a local path resolved)."""
    text = str(folder)
    return (text if "://" in text else str(Path(text).resolve())).rstrip("/") + "/"
