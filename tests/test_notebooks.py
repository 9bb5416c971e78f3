"""The SQL notebooks (varflow.open_store, query results as DataFrames) run headless (nbclient)
against stores made by real flow runs, and on an
empty data directory; they live in git as nbformat 4.5 with cell ids and without outputs."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from varflow.storage import Store

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("quality", "runs", "calls")


def execute(name: str, store: Path, tmp_path: Path):
    """Run every cell with the parameters cell naming ``store``; raises on any cell's error."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0].source.rstrip().endswith("STORE = None")
    params[0].source = f"STORE = {str(store)!r}"
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def texts(cell) -> list[str]:
    out = []
    for o in cell.outputs:
        if o.output_type == "stream":
            out.append(o.text)
        elif o.output_type in ("display_data", "execute_result"):
            out.append(o.data.get("text/plain", ""))
    return out


def images(cell) -> int:
    return sum(1 for o in cell.outputs if o.output_type == "display_data" and "image/png" in o.data)


def table_rows(cell) -> list[int]:
    """Row counts of the tables (DataFrames) a cell displayed: the lines that start with a row index."""
    return [0 if t.startswith("Empty DataFrame") else len(re.findall(r"^\d+\s", t, re.M))
            for o in cell.outputs if o.output_type in ("display_data", "execute_result")
            and "image/png" not in o.data for t in [o.data.get("text/plain", "")]]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_as_nbformat_4_5_with_ids_without_outputs(name):
    raw = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=nbformat.NO_CONVERT)
    assert (raw.nbformat, raw.nbformat_minor) >= (4, 5)
    nbformat.validate(raw)  # a missing cell id is a validation error at 4.5
    ids = [c.id for c in raw.cells]
    assert all(ids) and len(set(ids)) == len(ids)
    for c in code_cells(raw):
        assert c.outputs == [] and c.execution_count is None
    lead = raw.cells[0]
    assert lead.cell_type == "markdown" and lead.source.startswith("# ") and "?" in lead.source.splitlines()[0]


def check_ran(nb, *, expect_plots: bool) -> None:
    for c in code_cells(nb):
        assert c.execution_count is not None, c.source[:80]
        assert not [o for o in c.outputs if o.output_type == "error"]
        tags = c.metadata.get("tags", [])
        if "key" in tags and expect_plots:
            assert table_rows(c) and all(n > 0 for n in table_rows(c)), (c.source[:80], texts(c))
        if "plot" in tags:
            assert (images(c) > 0) == expect_plots, c.source[:80]


@pytest.fixture(scope="module")
def on_local_run(local_run_store, tmp_path_factory):
    """The quality and runs notebooks, executed once against the local run's store."""
    return {name: execute(name, local_run_store["home"], tmp_path_factory.mktemp(name)) for name in ("quality", "runs")}


@pytest.mark.parametrize("name", ("quality", "runs"))
def test_quality_and_runs_notebooks_plot_a_real_local_run(name, on_local_run, local_run_store):
    nb = on_local_run[name]
    check_ran(nb, expect_plots=True)
    setup = code_cells(nb)[1]
    assert f"{local_run_store['home']}: 1 runs" in "".join(texts(setup))


def test_runs_notebook_shows_the_level_change_with_its_window_average(on_local_run, local_run_store):
    from varflow.storage import Store

    (change,) = Store(local_run_store["home"]).query("SELECT * FROM quality_level_changes")
    cell = next(c for c in code_cells(on_local_run["runs"]) if "FROM quality_level_changes" in c.source)
    table = next(t for t in texts(cell) if "window_average" in t)
    assert table_rows(cell) == [1]
    value = change["window_average"]  # NaN (or None) when the run's --level set it
    average = "NaN" if value is None or value != value else f"{round(value, 3):g}"  # as pandas prints it
    assert re.search(rf"{change['from_level']}\s+{change['to_level']}\s+{re.escape(average)}\s", table), table


def rewrite_variations(local_run_store, tmp_path, change) -> Path:
    """A copy of the local run's store whose variations table went through ``change``."""
    import shutil

    import pyarrow.parquet as pq

    home = tmp_path / "home"
    shutil.copytree(local_run_store["home"], home)
    for src in (home / "tables" / "variations").glob("**/*.parquet"):  # the schema file, compacted, parts
        pq.write_table(change(pq.read_table(src)), src)
    return home


def test_quality_notebook_says_the_store_predates_profiles(local_run_store, tmp_path):
    """A store written before quality profiles (no profile, no seed_* columns)."""
    home = rewrite_variations(local_run_store, tmp_path, lambda t: t.drop_columns(
        [c for c in t.column_names if c == "profile" or c.startswith("seed_")]))
    nb = execute("quality", home, tmp_path)
    check_ran(nb, expect_plots=True)
    out = "".join("".join(texts(c)) for c in code_cells(nb))
    assert "this store predates quality profiles" in out


def test_quality_notebook_tables_match_the_store(on_local_run, local_run_store):
    """The reasons table's counts are the store's own, reason by reason."""
    from collections import Counter

    from varflow.storage import Store

    cell = next(c for c in code_cells(on_local_run["quality"]) if "unnest(reasons)" in c.source)
    shown = next(t for t in texts(cell) if "share_of_rejected" in t)
    expected = Counter()
    for r in Store(local_run_store["home"]).query("SELECT reject_reason FROM variations WHERE NOT accepted"):
        expected.update(r["reject_reason"].split(";"))
    assert expected  # the run rejected something
    for reason, n in expected.items():
        assert re.search(rf"^\d+\s+{reason}\s+{n}\s", shown, re.M), (reason, n, shown)


def test_calls_notebook_on_real_gemini_calls(gemini_calls_store, tmp_path):
    nb = execute("calls", gemini_calls_store["home"], tmp_path)
    check_ran(nb, expect_plots=True)
    out = {c.source.split("\n")[0]: "".join(texts(c)) for c in code_cells(nb)}
    outcomes = next(v for k, v in out.items() if k.startswith("outcomes ="))
    for outcome in ("ok", "server_error", "blocked", "no_image"):
        assert re.search(rf"gemini-2.5-flash-image\s+{outcome}\s", outcomes), (outcome, outcomes)
    cache = next(v for k, v in out.items() if k.startswith("cache ="))
    assert re.search(r"gemini\s+gemini-2.5-flash-image\s+1\s", cache), cache  # one hit, its saving shown
    cost = next(v for k, v in out.items() if k.startswith("cost ="))
    assert "no estimated cost" not in cost


@pytest.mark.parametrize("name", NAMES)
def test_an_empty_store_says_no_runs_yet_and_plots_nothing(name, tmp_path):
    nb = execute(name, tmp_path / "no-store-here", tmp_path)
    check_ran(nb, expect_plots=False)
    assert "no runs yet" in "".join(texts(code_cells(nb)[1]))
    assert not (tmp_path / "no-store-here").exists()  # reading never creates a store


def test_quality_notebook_compares_seed_and_calibrated_when_the_store_records_profiles(local_run_store, tmp_path):
    """A store whose variations carry ``profile`` and ``seed_*`` columns (and a newer profile's
    parts): the comparison plots and tabulates them, the histograms include the new parts."""
    import pyarrow as pa

    def as_calibrated(t):  # the fixture's run judged with the seed profile (its gates opened)
        return t.set_column(t.column_names.index("profile"), "profile", pa.array(
            [None if p is None else "calibrated" for p in t.column("profile").to_pylist()], pa.string()))

    home = rewrite_variations(local_run_store, tmp_path, as_calibrated)
    n = Store(home).query("SELECT count(*) AS n FROM variations WHERE profile IS NOT NULL")[0]["n"]

    nb = execute("quality", home, tmp_path)
    check_ran(nb, expect_plots=True)
    compare = next(c for c in code_cells(nb) if "seed_" in c.source)
    out = "".join(texts(compare))
    assert images(compare) == 1 and "predates" not in out
    for metric in ("similarity", "aesthetic", "overall_quality"):
        assert re.search(rf"^\d+\s+{metric}\s+\d+\s", out, re.M), (metric, out)
    assert re.search(rf"^\d+\s+calibrated\s+{n}\s", out, re.M)
    histograms = next(c for c in code_cells(nb) if "score_columns(store.connection)" in c.source)
    assert re.search(r"^\d+\s+naturalness\s+(accepted|rejected)\s", "".join(texts(histograms)), re.M)


def test_quality_notebook_shows_the_gates_agreement_with_people(on_local_run, local_run_store, tmp_path):
    """Without reviews it says so; with them (everything kept, on two days), the agreement by run and by
    review day is the share the run accepted, as the store counts it."""
    import shutil
    from datetime import UTC, datetime, timedelta

    from varflow.runtime.records import ReviewRecord

    agreement = next(c for c in code_cells(on_local_run["quality"]) if "FROM variation_status" in c.source)
    assert "no reviews" in "".join(texts(agreement)) and images(agreement) == 0

    home = tmp_path / "home"
    shutil.copytree(local_run_store["home"], home)
    store = Store(home)
    rows = store.query("SELECT DISTINCT run_id, variation_id, image_id, accepted FROM variations ORDER BY variation_id")
    day = datetime(2026, 12, 1, 9, tzinfo=UTC)
    for n, r in enumerate(rows):
        store.write_review(ReviewRecord(r["run_id"], r["variation_id"], r["image_id"], "keep", "ana", None,
                                        day + timedelta(days=n % 2, seconds=n)))
    nb = execute("quality", home, tmp_path)
    check_ran(nb, expect_plots=True)
    agreement = next(c for c in code_cells(nb) if "FROM variation_status" in c.source)
    by_run, by_day = [t for t in texts(agreement) if "agreement" in t]
    kept = sum(r["accepted"] for r in rows)
    assert images(agreement) == 1
    assert re.search(rf"\sdefault\s+{len(rows)}\s+{len(rows)}\s+{kept}\s+{round(kept / len(rows), 3):g}(\s|$)", by_run)
    first = [r for n, r in enumerate(rows) if n % 2 == 0]
    agree = sum(r["accepted"] for r in first)
    share = round(agree / len(first), 3)
    assert re.search(rf"2026-12-01\s+{len(first)}\s+{len(first)}\s+{agree}\s+{share:g}(\s|$)", by_day), by_day
