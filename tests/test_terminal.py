"""``varflow runs``, ``varflow stats`` and ``varflow sql`` against a store made by a real run."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from varflow.flows.cli import main
from varflow.storage import Store
from varflow.storage.analysis import ReadOnlyQueryError, read_only_query


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def home(local_run_store) -> str:
    return str(local_run_store["home"])


def test_runs_lists_the_run_with_the_stores_counts(home, local_run_store, capsys):
    summary = local_run_store["summary"]
    code, out, _ = run_cli(capsys, "runs", "--home", home)
    assert code == 0
    header, _, row = out.splitlines()[:3]
    assert header.split()[:3] == ["run", "started", "(UTC)"]
    cells = re.split(r"\s{2,}", row.strip())
    assert cells[0] == summary["run_id"][:8] and cells[2] == "completed" and cells[3] == "local/local-v1"
    assert cells[4:12] == [str(v) for v in (summary["images_total"], summary["images_ok"], summary["images_error"],
                                            summary["images_skipped"], summary["variations_accepted"],
                                            summary["variations_rejected"], summary["duplicates"], summary["attempts"])]
    code, out, _ = run_cli(capsys, "runs", "--home", home, "--json")
    (run,) = json.loads(out)
    assert run["run_id"] == summary["run_id"] and run["accepted"] == summary["variations_accepted"]
    assert run["acceptance"] == pytest.approx(summary["variations_accepted"] / summary["attempts"])


def test_stats_prints_the_quality_summary_of_the_latest_run_or_a_prefix(home, local_run_store, capsys):
    summary = local_run_store["summary"]
    code, latest, _ = run_cli(capsys, "stats", "--home", home)
    code2, by_prefix, _ = run_cli(capsys, "stats", summary["run_id"][:6], "--home", home)
    assert code == code2 == 0 and latest == by_prefix
    assert latest.startswith(f"varflow run {summary['run_id']} (completed, local / local-v1")
    assert (f"{summary['variations_accepted'] + summary['variations_rejected']} judged: "
            f"{summary['variations_accepted']} accepted, {summary['variations_rejected']} rejected") in latest
    for reason, n in summary["rejected_by_reason"].items():
        assert re.search(rf"^\s+{reason}\s+{n}$", latest, re.M), reason
    accepted = Store(home).query("SELECT avg(overall_quality) AS m FROM variations WHERE accepted")[0]["m"]
    row = re.search(r"^\s+overall_quality\s+(\d+)\s+\S+\s+\S+\s+(\S+)", latest, re.M)
    assert int(row.group(1)) == summary["variations_accepted"]
    assert float(row.group(2)) == pytest.approx(accepted, abs=1e-3)
    code, out, _ = run_cli(capsys, "stats", "--home", home, "--json")
    data = json.loads(out)
    assert data["accepted"] == summary["variations_accepted"] and data["reasons"] == summary["rejected_by_reason"]
    changes = Store(home).query("SELECT to_level FROM quality_level_changes ORDER BY changed_at")
    assert [c["to_level"] for c in data["level_changes"]] == [c["to_level"] for c in changes] != []


def test_stats_names_what_is_missing(home, tmp_path, capsys):
    code, _, err = run_cli(capsys, "stats", "no-such-run", "--home", home)
    assert code == 1 and "no run 'no-such-run'" in err and "varflow runs" in err
    code, _, err = run_cli(capsys, "stats", "--home", str(tmp_path / "empty"))
    assert code == 1 and "no runs yet" in err
    code, out, _ = run_cli(capsys, "runs", "--home", str(tmp_path / "empty"))
    assert code == 0 and out.startswith("no runs yet")
    assert not (tmp_path / "empty").exists()


def test_sql_prints_a_table_csv_and_json(home, capsys):
    query = "SELECT reject_reason, count(*) AS n FROM variations WHERE NOT accepted GROUP BY ALL ORDER BY n DESC, 1"
    expected = Store(home).query(query)
    code, table, _ = run_cli(capsys, "sql", query, "--home", home)
    assert code == 0 and table.splitlines()[0].split() == ["reject_reason", "n"]
    assert table.rstrip().endswith(f"({len(expected)} rows)" if len(expected) != 1 else "(1 row)")
    code, text, _ = run_cli(capsys, "sql", query, "--home", home, "--csv")
    assert list(csv.DictReader(io.StringIO(text))) == [{k: str(v) for k, v in r.items()} for r in expected]
    code, text, _ = run_cli(capsys, "sql", query, "--home", home, "--json")
    assert json.loads(text) == expected and expected


@pytest.mark.parametrize("query, kind", [
    ("COPY (SELECT * FROM runs) TO '/tmp/varflow-copy.csv'", "COPY"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("ATTACH '/tmp/varflow-other.duckdb' AS other", "ATTACH"),
    ("SET threads = 1", "SET"),
    ("INSTALL httpfs", "LOAD"),
])
def test_sql_refuses_anything_but_a_read(home, query, kind, capsys):
    with pytest.raises(ReadOnlyQueryError, match=f"this is a {kind} statement"):
        read_only_query(home, query)
    code, _, err = run_cli(capsys, "sql", query, "--home", home)
    assert code == 2 and "only read-only queries" in err


def test_sql_takes_one_query_and_explains_a_wrong_column(home, capsys):
    code, _, err = run_cli(capsys, "sql", "SELECT 1; SELECT 2", "--home", home)
    assert code == 2 and "exactly one query" in err
    code, _, err = run_cli(capsys, "sql", "SELECT no_such_column FROM variations", "--home", home)
    assert code == 1 and "no_such_column" in err and "DESCRIBE variations" in err
    code, out, _ = run_cli(capsys, "sql", "DESCRIBE variations", "--home", home)
    assert code == 0 and re.search(r"^overall_quality\s+DOUBLE", out, re.M)
