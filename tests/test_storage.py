"""The store: Parquet parts written atomically, DuckDB views, idempotent rewrites, compaction."""

import json
import subprocess
import sys
from datetime import UTC, datetime

import duckdb
import pyarrow.parquet as pq
import pytest
from varflow.storage import SCHEMAS, TABLES, Store
from varflow.storage.schema import RECORD_TYPES

from varflow.runtime.records import ImageRecord, QualityLevelChangeRecord, RunRecord, VariationRecord

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def variation(run_id, image_id, n, accepted=True):
    return VariationRecord(
        run_id, image_id, f"{image_id}-v{n}", n, "style_change", accepted,
        None if accepted else "aesthetic_low", "ff00ff00ff00ff00", "0f0f0f0f0f0f0f0f", "00000000ffffffff",
        None, f"/out/{image_id}-v{n}.png", "local", "local-v1", "golden hour", 7, "medium", NOW,
        profile="calibrated", scores={"similarity": 0.6, "diversity": None, "overall_quality": 0.7,
                                      "seed_similarity": 0.95},
    )


def image(run_id, image_id, status="ok", error=None):
    return ImageRecord(run_id, image_id, f"/in/{image_id}.png", 640, 480, status, error)


def test_every_record_field_is_a_column_and_back():
    from varflow.storage.schema import EXECUTION

    for table in TABLES:  # plus the execution the store writes for (a retried flow run's)
        assert RECORD_TYPES[table].columns() + [EXECUTION] == SCHEMAS[table].names, table


def test_rows_round_trip_through_parquet_and_duckdb(tmp_path):
    store = Store(tmp_path).initialize()
    store.write_run(RunRecord("r1", None, json.dumps({"count": 4}), "/in", "/out", "local", "local-v1", NOW, None,
                              "running"))
    store.write_image_result(image("r1", "a"), [variation("r1", "a", 0), variation("r1", "a", 1, accepted=False)])
    store.write_image_result(image("r1", "b", "error", "/in/b.png: is empty (0 bytes); remove it"))
    store.write_level_change(QualityLevelChangeRecord("r1", "a", NOW, "high", "medium", 0.42, "mean < 0.5",
                                                      "local/local-v1"))
    rows = store.query("SELECT variation_id, accepted, reject_reason, diversity FROM variations ORDER BY attempt")
    assert rows == [
        {"variation_id": "a-v0", "accepted": True, "reject_reason": None, "diversity": None},
        {"variation_id": "a-v1", "accepted": False, "reject_reason": "aesthetic_low", "diversity": None},
    ]
    assert store.query("SELECT status, error FROM images WHERE image_id = 'b'") == [
        {"status": "error", "error": "/in/b.png: is empty (0 bytes); remove it"}]
    assert store.query("SELECT to_level FROM quality_level_changes") == [{"to_level": "medium"}]
    assert store.query("SELECT hamming(ahash, dhash) AS d FROM variations LIMIT 1") == [{"d": 32}]
    assert store.query("SELECT profile, similarity, seed_similarity, seed_overall_quality FROM variations "
                       "ORDER BY attempt LIMIT 1") == [
        {"profile": "calibrated", "similarity": 0.6, "seed_similarity": 0.95, "seed_overall_quality": None}]


def test_writing_the_same_result_twice_adds_no_rows(tmp_path):
    store = Store(tmp_path).initialize()
    for _ in range(3):
        store.write_image_result(image("r1", "a"), [variation("r1", "a", 0)])
    assert store.query("SELECT count(*) AS n FROM variations")[0]["n"] == 1
    assert store.query("SELECT count(*) AS n FROM images")[0]["n"] == 1


def test_compaction_never_double_counts_and_vacuum_removes_parts(tmp_path):
    store = Store(tmp_path).initialize()
    for i in range(5):
        store.write_image_result(image("r1", f"i{i}"), [variation("r1", f"i{i}", 0)])
    store.write_image_result(image("r2", "x"), [variation("r2", "x", 0)])
    store.compact_run("r1")
    assert store.query("SELECT run_id, count(*) AS n FROM images GROUP BY run_id ORDER BY run_id") == [
        {"run_id": "r1", "n": 5}, {"run_id": "r2", "n": 1}]
    assert store.vacuum(grace_seconds=3600) == 0  # too recent: a reader may still hold the parts
    assert store.vacuum(grace_seconds=0) == 10
    assert store.query("SELECT count(*) AS n FROM variations")[0]["n"] == 6
    assert pq.read_table(tmp_path / "tables" / "images" / "run-r1" / "compacted.parquet").num_rows == 5


def test_empty_store_queries_return_no_rows(tmp_path):
    store = Store(tmp_path).initialize()
    for table in TABLES:
        assert store.query(f"SELECT count(*) AS n FROM {table}") == [{"n": 0}]


def test_the_duckdb_file_is_a_lens_other_processes_can_open(tmp_path, monkeypatch):
    """Opened from inside the data directory (its views' paths are relative to it)."""
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path).initialize()
    store.write_image_result(image("r1", "a"), [variation("r1", "a", 0)])
    code = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True);"
        "print(c.execute('SELECT count(*) FROM variations').fetchone()[0])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(store.duckdb_path)], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    assert out.stdout.strip() == "1"
    # a writer holding nothing open: a second reader in this process works alongside
    with duckdb.connect(str(store.duckdb_path), read_only=True) as con:
        store.write_image_result(image("r1", "b"), [variation("r1", "b", 0)])
        assert con.execute("SELECT count(*) FROM variations").fetchone()[0] == 2


def test_initialize_tolerates_a_notebook_holding_the_file(tmp_path):
    store = Store(tmp_path).initialize()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); time.sleep(30)",
         str(store.duckdb_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        Store(tmp_path).initialize()  # must not raise
        store.write_image_result(image("r1", "a"))
        assert store.query("SELECT count(*) AS n FROM images")[0]["n"] == 1
    finally:
        holder.kill()
        holder.wait()


def test_rows_of_the_wrong_type_are_refused(tmp_path):
    store = Store(tmp_path).initialize()
    with pytest.raises(TypeError, match="images takes ImageRecord rows"):
        store._write("images", "r1", "k", [variation("r1", "a", 0)])


def test_a_file_being_written_is_invisible_to_readers(tmp_path, monkeypatch):
    import varflow.storage.writer as store_module  # where parts are written

    store = Store(tmp_path).initialize()
    store.write_image_result(image("r1", "a"))
    seen = []
    real_replace = store_module.os.replace

    def replace_after_a_read(src, dst):  # a reader queries while the new part sits under its temp name
        seen.append(store.query("SELECT count(*) AS n FROM images")[0]["n"])
        real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "replace", replace_after_a_read)
    store.write_image_result(image("r1", "b"))
    assert seen == [1]
    assert store.query("SELECT count(*) AS n FROM images")[0]["n"] == 2


def test_initialize_leaves_the_file_alone_when_its_views_are_current(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the file's views read paths relative to the data directory
    store = Store(tmp_path).initialize()
    with duckdb.connect(str(store.duckdb_path), read_only=True) as reader:
        before = store.duckdb_path.stat().st_mtime_ns
        Store(tmp_path).initialize()  # a run starting while a notebook reads
        assert store.duckdb_path.stat().st_mtime_ns == before
        assert reader.execute("SELECT count(*) FROM images").fetchone()[0] == 0


def test_earlier_accepted_variations_are_read_again_when_another_run_compacts_meanwhile(tmp_path, monkeypatch):
    """Two runs on one data directory: run A lists run B's parts, B compacts (its parts move out
    in one exchange), A's read named a file that is gone. It failed A's run ("No files found");
    the read lists the files again."""
    store = Store(tmp_path).initialize()
    for i in range(3):
        store.write_image_result(image("rB", f"i{i}"), [variation("rB", f"i{i}", 0)])
    from varflow.storage.reader import StoreReader

    listed_before = store._table_files("variations")
    real = StoreReader._table_files
    calls = []

    def stale_then_fresh(self, table, **kw):
        calls.append(table)
        return listed_before if len(calls) == 1 else real(self, table, **kw)

    store.compact_run("rB")  # the parts listed above are gone now
    monkeypatch.setattr(StoreReader, "_table_files", stale_then_fresh)
    got = store.accepted_variations(["i0", "i2"], except_run="rA")
    assert [r["variation_id"] for r in got["i0"]] == ["i0-v0"] and len(got["i2"]) == 1
    assert len(calls) == 2  # read once with the stale list, once again


def test_a_lens_lists_the_files_again_when_one_vanished_while_its_views_were_made(tmp_path, monkeypatch):
    """Two runs on one data directory: making the views reads every listed file's schema, and the
    other run compacted a listed part away in between. It failed the run (IO Error: Cannot open
    file ...); the lens lists the files again."""
    store = Store(tmp_path).initialize()
    store.write_image_result(image("rB", "i0"), [variation("rB", "i0", 0)])
    from varflow.storage.reader import StoreReader
    from varflow.storage.sqltext import sql_literal

    gone = tmp_path / "tables" / "variations" / "run-rB" / "parts" / "gone.parquet"
    real = StoreReader._views_script
    calls = []

    def stale_then_fresh(self, **kw):
        calls.append(1)
        if len(calls) == 1:  # a view over a file that was listed, then compacted away
            return f"CREATE OR REPLACE VIEW variations AS SELECT * FROM read_parquet({sql_literal(str(gone))});"
        return real(self, **kw)

    monkeypatch.setattr(StoreReader, "_views_script", stale_then_fresh)
    assert [r["variation_id"] for r in store.query("SELECT variation_id FROM variations")] == ["i0-v0"]
    assert len(calls) == 2
    calls.clear()
    monkeypatch.setattr(StoreReader, "_views_script", lambda self, **kw: calls.append(1) or "SELECT * FROM nowhere;")
    with pytest.raises(duckdb.CatalogException):
        store.lens()
    assert len(calls) == 1  # any other error is not listed again
