"""The Python API against the command line: each call makes what its command makes (docs/api.md)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import FIXTURES, make_photo_folder, skimage_photo
from varflow.flows import cli
from varflow.storage import Store

import varflow

ROOT = Path(__file__).resolve().parents[1]

# A run as a user's script makes it: one process, the settings as keywords, the summary as JSON.
API_RUN = """
import json, sys
import varflow
summary = varflow.run(sys.argv[1], sys.argv[2], home=sys.argv[3], **json.loads(sys.argv[4]))
print("SUMMARY " + json.dumps({"type": type(summary).__name__, "accepted": summary.accepted,
                               **summary.to_dict()}, default=str), flush=True)
"""
SETTINGS = {"count": 1, "seed": 5, "level": "low", "adaptive": False}
CLI_FLAGS = ["--count", "1", "--seed", "5", "--level", "low", "--no-adapt"]
VARIATION_RECORD = ("SELECT variation_id, variation_type, accepted, reject_reason, overall_quality, ahash "
                    "FROM variations ORDER BY variation_id")


def api_run(env: dict, photos: Path, out: Path, home: Path, settings: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", API_RUN, str(photos), str(out), str(home), json.dumps(settings)],
                          env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("SUMMARY "):])


def flow_run_on_server(api: str, flow_run_id: str) -> dict:
    with urllib.request.urlopen(f"{api}/flow_runs/{flow_run_id}", timeout=30) as answer:
        return json.loads(answer.read())


def test_run_makes_the_run_varflow_run_makes(tmp_path, prefect_api):
    """The same folder and settings through the CLI and through varflow.run: the same records
    (variation ids, verdicts, reasons, scores), the same files, both flow runs on the server the
    CLI uses, and the summary the CLI prints with --json."""
    photos = make_photo_folder(tmp_path / "photos", 2, size=64)[0].parent
    done = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "run", str(photos), "--out",
                           str(tmp_path / "cli-out"), *CLI_FLAGS, "--json"],
                          env={**prefect_api, "VARFLOW_HOME": str(tmp_path / "cli-home")}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    by_cli = json.loads(done.stdout[done.stdout.index("{"):])
    by_api = api_run(prefect_api, photos, tmp_path / "api-out", tmp_path / "api-home", SETTINGS)

    assert by_api.pop("type") == "RunSummary" and by_api.pop("accepted") == by_api["variations_accepted"]
    assert set(by_api) == set(by_cli)  # one shape: RunSummary.to_dict() is what `varflow run --json` prints
    for key in ("status", "images_total", "images_ok", "variations_accepted", "variations_rejected", "duplicates",
                "attempts", "rejected_by_reason", "final_level"):
        assert by_api[key] == by_cli[key], key
    assert by_api["status"] == "completed" and by_api["images_ok"] == 2
    assert by_api["execution"] == by_cli["execution"] == 1  # which execution of the flow run (a retry: 2, 3, ...)

    cli_store, api_store = Store(tmp_path / "cli-home"), Store(tmp_path / "api-home")
    assert api_store.query(VARIATION_RECORD) == cli_store.query(VARIATION_RECORD)
    assert sorted(p.name for p in (tmp_path / "api-out").iterdir()) == sorted(
        p.name for p in (tmp_path / "cli-out").iterdir())
    (run_row,) = api_store.query("SELECT * FROM runs")
    assert (run_row["run_id"], run_row["status"]) == (by_api["run_id"], "completed")
    assert json.loads(run_row["parameters"])["count"] == 1
    for summary in (by_api, by_cli):  # both runs are on the server the CLI uses (PREFECT_API_URL)
        flow_run = flow_run_on_server(prefect_api["PREFECT_API_URL"], summary["run_id"])
        assert flow_run["state"]["type"] == "COMPLETED" and flow_run["parameters"]["count"] == 1


def test_run_returns_a_failed_summary_instead_of_raising(tmp_path, prefect_api):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.png").write_bytes((FIXTURES / "bad" / "truncated.png").read_bytes())
    summary = api_run(prefect_api, photos, tmp_path / "out", tmp_path / "home", {})
    assert summary["status"] == "failed" and "truncated or corrupt" in summary["errors"][0]
    (row,) = Store(tmp_path / "home").query("SELECT status, images_error FROM runs")
    assert row == {"status": "failed", "images_error": 1}


def test_settings_that_cannot_run_raise_before_any_run(tmp_path):
    photos = make_photo_folder(tmp_path / "photos", 1, size=32)[0].parent
    with pytest.raises(varflow.ConfigurationError) as unknown:
        varflow.run(photos, tmp_path / "out", cuont=2)
    assert "cuont" in str(unknown.value) and "count" in str(unknown.value) and "images_in_flight" in str(unknown.value)
    with pytest.raises(varflow.ConfigurationError, match="count"):
        varflow.run(photos, tmp_path / "out", count=0)
    with pytest.raises(varflow.InputError, match="does not exist"):
        varflow.run(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(varflow.VarflowError, match="is the input folder"):
        varflow.run(photos, photos, home=str(tmp_path / "home"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "home").exists()  # nothing was started


def test_score_is_varflow_score(capsys):
    original = skimage_photo("chelsea.png")
    variations = [FIXTURES / "good" / "flipped.png", FIXTURES / "good" / "resized-half.png"]
    code = cli.main(["score", str(original), *map(str, variations), "--json"])
    by_cli = json.loads(capsys.readouterr().out)
    assessments = varflow.score(original, *variations)
    assert [a.to_dict() for a in assessments] == by_cli
    assert code == 1 and [a.accepted for a in assessments] == [r["accepted"] for r in by_cli]
    first, second = assessments
    assert first.diversity is None and second.diversity is not None
    assert "similarity_high" in second.reasons and second.similarity > 0.9  # a resized copy
    assert {"seed_similarity", "color_variance", "naturalness", "overall_quality"} <= set(second.metrics)
    assert second.path == variations[1] and second.profile == "calibrated" and second.level == "medium"
    seed = varflow.score(original, variations[1], profile="seed", level="high")[0]
    cli.main(["score", str(original), str(variations[1]), "--profile", "seed", "--level", "high", "--json"])
    assert [seed.to_dict()] == json.loads(capsys.readouterr().out)
    with pytest.raises(varflow.InputError, match="truncated.png"):
        varflow.score(original, FIXTURES / "bad" / "truncated.png")


def test_find_duplicates_is_varflow_dedup(tmp_path, capsys, caplog):
    for name in ("flipped.png", "resized-half.png", "grey.png"):
        shutil.copy(FIXTURES / "good" / name, tmp_path / name)
    shutil.copy(skimage_photo("chelsea.png"), tmp_path / "chelsea.png")
    shutil.copy(skimage_photo("astronaut.png"), tmp_path / "astronaut.png")
    shutil.copy(FIXTURES / "bad" / "truncated.png", tmp_path / "broken.png")
    assert cli.main(["dedup", str(tmp_path), "--json"]) == 0
    by_cli = json.loads(capsys.readouterr().out)
    groups = varflow.find_duplicates(tmp_path)
    assert groups == [[Path(p) for p in g] for g in by_cli]
    # a mirror is a copy (varflow/duplicates/copies.py): flipped.png joins chelsea's group
    assert ["chelsea.png", "flipped.png", "grey.png", "resized-half.png"] in [sorted(p.name for p in g) for g in groups]
    assert "broken.png" in caplog.text  # named, not fatal
    with pytest.raises(varflow.InputError):
        varflow.find_duplicates(tmp_path / "nope")


def test_open_store_answers_what_varflow_sql_answers(local_run_store, capsys):
    home = local_run_store["home"]
    query = ("SELECT variation_type, count(*) AS n, sum(accepted::INT) AS accepted FROM variations "
             "GROUP BY ALL ORDER BY 1")
    assert cli.main(["sql", query, "--json", "--home", str(home)]) == 0
    by_cli = json.loads(capsys.readouterr().out)
    with varflow.open_store(home) as store:
        relation = store.sql(query)
        assert [dict(zip(relation.columns, row)) for row in relation.fetchall()] == by_cli
        assert store.sql(query).df().to_dict("records") == by_cli  # pandas
        assert store.sql(query).pl().to_dicts() == by_cli  # polars
        assert store.sql(query).arrow().read_all().num_rows == store.sql(query).to_arrow_table().num_rows == len(by_cli)
        n = local_run_store["summary"]["variations_accepted"] + local_run_store["summary"]["variations_rejected"]
        variations = store.table("variations")
        assert len(variations.fetchall()) == n == store.sql("SELECT count(*) FROM variations").fetchall()[0][0]
        assert store.sql("SELECT count(*) FROM runs WHERE status = ?", params=["completed"]).fetchall()[0] == (1,)
        # the analyst's own connection: their tables beside the views, and no lock on the store's file
        store.sql("CREATE TABLE mine AS SELECT * FROM variations WHERE accepted")
        mine = store.sql("SELECT count(*) FROM mine").fetchall()[0][0]
        assert mine == local_run_store["summary"]["variations_accepted"]
        import duckdb

        duckdb.connect(str(home / "varflow.duckdb"), read_only=True).close()
        with pytest.raises(varflow.InputError, match="variations"):
            store.table("no_such_table")
    assert "mine" not in {r["table_name"] for r in Store(home).query("SELECT table_name FROM duckdb_tables()")}


def test_open_store_on_a_folder_without_a_store_reads_empty_tables_and_creates_nothing(tmp_path):
    store = varflow.open_store(tmp_path / "nothing-here")
    assert store.empty and store.table("runs").fetchall() == []
    assert "variation_id" in store.table("variations").columns
    store.close()
    assert not (tmp_path / "nothing-here").exists()


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.M | re.S)


def test_the_examples_in_docs_api_run(tmp_path, prefect_api):
    """docs/api.md's examples, in order, as one script in a folder holding photos/ (each block's
    first printed line checked against the store it made)."""
    from PIL import Image

    (tmp_path / "photos").mkdir()
    for name in ("astronaut.png", "coffee.png"):
        with Image.open(skimage_photo(name)) as im:
            im.convert("RGB").resize((96, 96)).save(tmp_path / "photos" / name)
    shutil.copy(tmp_path / "photos" / "coffee.png", tmp_path / "photos" / "coffee-copy.png")
    blocks = python_blocks((ROOT / "docs" / "api.md").read_text())
    assert len(blocks) == 5
    done = subprocess.run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path, capture_output=True, text=True,
                          env={**prefect_api, "VARFLOW_HOME": str(tmp_path / "home")}, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    (run,) = Store(tmp_path / "home").query("SELECT * FROM runs")
    accepted, asked = map(int, re.fullmatch(r"completed (\d+) accepted of (\d+) asked for", lines[0]).groups())
    assert (accepted, asked) == (run["variations_accepted"], 4) and lines[1] == "True"  # coffee-copy: same bytes
    assert lines[2].startswith("unknown setting cuont; the settings are")
    kept = sorted(Path(r["output_path"]).name for r in Store(tmp_path / "home").query(
        "SELECT output_path FROM variations WHERE accepted AND output_path LIKE '%/astronaut-%'"))
    assert kept and [line.split()[0] for line in lines[3:3 + len(kept)]] == kept
    assert "['coffee-copy.png', 'coffee.png']" in lines
    assert "1 completed run(s)" in lines and f"[({run['variations_accepted'] + run['variations_rejected']},)]" in lines


def test_reasons_read_as_a_list_and_parameters_as_json(local_run_store):
    """Every row, earlier ones included (the Parquet files hold the ``;``-joined string only):
    ``reasons`` is the list of ``reject_reason``'s codes, [] when accepted; ``parameters`` is JSON."""
    with varflow.open_store(local_run_store["home"]) as store:
        rows = store.sql("SELECT accepted, reject_reason, reasons, typeof(reasons) AS t FROM variations").fetchall()
        assert {t for *_, t in rows} == {"VARCHAR[]"}
        assert any(not accepted for accepted, *_ in rows) and any(accepted for accepted, *_ in rows)
        for accepted, joined, reasons, _ in rows:
            assert reasons == ([] if accepted else joined.split(";"))
        counts = dict(store.sql("SELECT reason, count(*) FROM (SELECT unnest(reasons) AS reason FROM variations) "
                                "GROUP BY ALL").fetchall())
        assert counts == local_run_store["summary"]["rejected_by_reason"]
        kind, count, level = store.sql("SELECT typeof(parameters), parameters->>'$.count', "
                                       "parameters->'level' FROM runs").fetchall()[0]
        assert (kind, count, json.loads(level)) == ("JSON", "2", "low")
    empty = varflow.open_store(local_run_store["home"].parent / "no-store")
    assert [c for c, t in zip(empty.table("variations").columns, empty.table("variations").types)
            if c == "reasons" and str(t) == "VARCHAR[]"] == ["reasons"]
    assert empty.sql("SELECT typeof(parameters) FROM runs").fetchall() == []


# -- a store any engine reads, wherever it lies -------------------------------------------------------

COUNT_ALL = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in ("runs", "images", "variations",
                                                                           "attempts", "quality_level_changes"))


def counts_by_lens(home: Path) -> dict[str, int]:
    with varflow.open_store(home) as store:
        return dict(store.sql(COUNT_ALL).fetchall())


def test_a_moved_store_answers_through_duckdb_itself_from_inside_it(local_run_store, tmp_path):
    """The store a run wrote, copied then moved to a path with a space: the DuckDB CLI (read-only,
    as the README shows it) and Python's duckdb opened from inside it, varflow sql and open_store
    all count what the original holds."""
    expected = counts_by_lens(local_run_store["home"])
    assert expected["variations"] > 0 and expected["runs"] == 1
    shutil.copytree(local_run_store["home"], tmp_path / "copy")
    moved = tmp_path / "mounted elsewhere" / "data"
    moved.parent.mkdir()
    shutil.move(tmp_path / "copy", moved)

    cli_duckdb = Path(sys.prefix) / "bin" / "duckdb"
    done = subprocess.run([str(cli_duckdb), "-readonly", "-csv", "-noheader", "varflow.duckdb", COUNT_ALL], cwd=moved,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert {k: int(v) for k, v in (line.split(",") for line in done.stdout.split())} == expected
    code = ("import duckdb, json, sys; c = duckdb.connect('varflow.duckdb', read_only=True); "
            "print(json.dumps(dict(c.sql(sys.argv[1]).fetchall())))")
    done = subprocess.run([sys.executable, "-c", code, COUNT_ALL], cwd=moved, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == expected
    assert counts_by_lens(moved) == expected
    out = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "sql", COUNT_ALL, "--home", str(moved), "--csv"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert {k: int(v) for k, v in (line.split(",") for line in out.stdout.split()[1:])} == expected
    # read-only opens share the file; the README's way in never locks a run or a notebook out
    holder = subprocess.Popen([str(cli_duckdb), "-readonly", "varflow.duckdb"], cwd=moved, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        again = subprocess.run([str(cli_duckdb), "-readonly", "-csv", "-noheader", "varflow.duckdb",
                                "SELECT count(*) FROM runs"], cwd=moved, capture_output=True, text=True, timeout=60)
        assert (again.returncode, again.stdout.strip()) == (0, "1"), again.stderr
    finally:
        holder.communicate(b".quit\n", timeout=30)


def direct_counts(home: Path) -> dict[str, tuple[int, int]]:
    """Rows of each table read straight from ``tables/<table>`` by pyarrow and by polars."""
    import polars as pl
    import pyarrow.dataset as ds

    out = {}
    for table in ("runs", "images", "variations", "attempts", "quality_level_changes"):
        arrow = ds.dataset(home / "tables" / table, format="parquet").count_rows()
        polars = pl.scan_parquet(f"{home}/tables/{table}/**/*.parquet").select(pl.len()).collect().item()
        out[table] = (arrow, polars)
    return out


def test_pyarrow_and_polars_reading_the_tables_count_what_the_views_count(local_run_store):
    assert direct_counts(local_run_store["home"]) == {t: (n, n) for t, n in counts_by_lens(
        local_run_store["home"]).items()}


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "no-exchange"])
def test_compaction_never_shows_a_direct_reader_a_row_twice_or_not_at_all(tmp_path, monkeypatch, exchange):
    """At every step of compacting a run: before the compacted file takes the parts' place, and
    after; and on a file system without the exchange, the end state is the same."""
    import varflow.storage.writer as store_module  # where compaction swaps files
    from test_storage import image, variation

    store = Store(tmp_path).initialize()
    for key in ("a", "b", "c"):
        store.write_image_result(image("r1", key), [variation("r1", key, 0), variation("r1", key, 1)])
    seen = []
    real = store_module._exchange

    def watched(a, b):
        seen.append(direct_counts(tmp_path)["variations"])
        done = real(a, b) if exchange else False
        seen.append(direct_counts(tmp_path)["variations"])
        return done

    monkeypatch.setattr(store_module, "_exchange", watched)
    store.compact_run("r1")
    assert seen == [(6, 6)] * 4  # before and after each table's exchange (images, variations)
    assert direct_counts(tmp_path)["variations"] == (6, 6) == (counts_by_lens(tmp_path)["variations"],) * 2
    run_dir = tmp_path / "tables" / "variations" / "run-r1"
    assert sorted(p.name for p in run_dir.iterdir()) == ["compacted.parquet"]
    assert len(list((tmp_path / "superseded" / "variations" / "run-r1").glob("*.parquet"))) == 3  # vacuum's
    assert not list((tmp_path / "superseded" / "variations").glob(".compacting-*"))
    assert store.vacuum(grace_seconds=0) == 6  # the parts of images and variations, 3 each


DIRECT_READER = """
import json, pathlib, sys, time
import pyarrow.dataset as ds
home, stop = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
while not stop.exists():
    try:
        print(json.dumps({t: ds.dataset(home / "tables" / t, format="parquet").count_rows()
                          for t in ("images", "variations")}), flush=True)
    except (FileNotFoundError, OSError):  # a file listed, then moved by compaction: read again
        pass
    time.sleep(0.05)
"""


def test_a_direct_reader_during_a_run_never_counts_a_row_twice(tmp_path, prefect_api):
    photos = make_photo_folder(tmp_path / "photos", 6, size=64)[0].parent
    home = tmp_path / "home"
    Store(home).initialize()
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", DIRECT_READER, str(home), str(stop)], stdout=subprocess.PIPE,
                              text=True)
    try:
        done = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "run", str(photos), "--out",
                               str(tmp_path / "out"), "--count", "1", "--level", "low", "--images-in-flight", "1"],
                              env={**prefect_api, "VARFLOW_HOME": str(home)}, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        time.sleep(0.3)
    finally:
        stop.touch()
        observed = [json.loads(line) for line in reader.communicate(timeout=30)[0].splitlines()]
    final = counts_by_lens(home)
    assert len(observed) > 5
    for table in ("images", "variations"):
        counts = [o[table] for o in observed]
        assert counts == sorted(counts) and counts[-1] == final[table], (table, counts)  # only ever grows
    assert final["images"] == 6
