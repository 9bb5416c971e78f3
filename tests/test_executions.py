"""Readers of a retried flow run: one ``runs`` row per execution (storage/SCHEMA.md), each execution
read on its own. The rows are written through the real Store, as a run and its retry write them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from varflow.flows.cli import main
from varflow.flows.gallery import build_gallery, run_gallery_path
from varflow.flows.lifecycle import close_run, recover_interrupted_runs
from varflow.storage import Store
from varflow.storage.analysis import quality_summary, recent_runs, resolve_run, run_rows
from varflow.storage.doctor import diagnose

from varflow.runtime.records import AttemptRecord, ImageRecord, RunRecord, VariationRecord
from varflow.runtime.runlock import RunLock, run_lock_path

RUN = "0c1d2e3f-4a5b-4c6d-8e7f-001122334455"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
IDS = [f"{i:064x}" for i in range(1, 7)]


def run_row(execution: int, status: str = "completed", **counts) -> RunRecord:
    return RunRecord(RUN, RUN, "{}", "/in", "/out", "local", "local-v1", T0 + timedelta(hours=execution),
                     None if status == "running" else T0 + timedelta(hours=execution, minutes=5), status, **counts)


def variation(image_id: str, accepted: bool, execution: int) -> VariationRecord:
    return VariationRecord(
        RUN, image_id, f"{image_id[-4:]}-x{execution}", 1, "style_change", accepted,
        None if accepted else "aesthetic_low", "ff00ff00ff00ff00", "0f0f0f0f0f0f0f0f", "00000000ffffffff",
        None, f"/out/{image_id[-4:]}-x{execution}.png", "local", "local-v1", "golden hour", 7, "high",
        T0 + timedelta(hours=execution), profile="calibrated", scores={"overall_quality": 0.7})


@pytest.fixture
def retried(tmp_path):
    """Execution 1: 6 images ok, one accepted variation each; execution 2 (the retry): the same 6 skipped."""
    home = tmp_path / "home"
    first = Store(home).initialize()
    for n, image_id in enumerate(IDS):
        first.write_image_result(
            ImageRecord(RUN, image_id, f"/in/{n}.png", 64, 64, "ok", None, quality_level="high", requested=1,
                        accepted=1, attempts=1, success_rate=(n + 1) / 10,
                        finished_at=T0 + timedelta(minutes=n)),
            [variation(image_id, True, 1)])
    first.write_run(run_row(1, images_total=6, images_ok=6, variations_accepted=6, attempts=6))
    second = Store(home, execution=2)
    for n, image_id in enumerate(IDS):
        second.write_image_result(ImageRecord(RUN, image_id, f"/in/{n}.png", 64, 64, "skipped",
                                              f"/in/{n}.png: done by an earlier run"))
    second.write_run(run_row(2, images_total=6, images_skipped=6))
    return home


def test_runs_lists_each_execution_with_its_own_counts(retried, capsys):
    rows = [(r["execution"], r["executions"], r["images"], r["ok"], r["skipped"], r["accepted"])
            for r in recent_runs(retried).records()]
    assert rows == [(2, 2, 6, 0, 6, 0), (1, 2, 6, 6, 0, 6)]  # was two rows of 12 images, 6 ok, 6 skipped
    assert main(["runs", "--home", str(retried)]) == 0
    out = capsys.readouterr().out
    assert f"{RUN[:8]} #2" in out and f"{RUN[:8]} #1" in out
    assert main(["runs", "--json", "--home", str(retried)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["execution"], r["ok"]) for r in listed] == [(RUN, 2, 0), (RUN, 1, 6)]


def test_stats_and_the_gallery_read_the_latest_execution_or_the_one_named(retried, capsys):
    latest = quality_summary(retried, RUN)
    assert (latest["run"]["execution"], latest["run"]["images_total"], latest["run"]["images_skipped"],
            latest["accepted"]) == (2, 6, 6, 0)
    first = quality_summary(retried, RUN, 1)
    assert (first["run"]["images_ok"], first["run"]["images_skipped"], first["accepted"]) == (6, 0, 6)
    assert main(["stats", RUN[:8], "--execution", "1", "--json", "--home", str(retried)]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 6
    assert main(["stats", RUN[:8], "--execution", "3", "--home", str(retried)]) == 1
    assert "has no execution 3 (it has 1, 2)" in capsys.readouterr().err

    assert resolve_run(retried, RUN[:8])["execution"] == 2
    rows = run_rows(retried, RUN)
    assert (rows.run["execution"], {i["status"] for i in rows.images}, rows.variations) == (2, {"skipped"}, [])
    assert len(run_rows(retried, RUN, 1).variations) == 6
    _, run = build_gallery(retried, RUN, execution=1)
    assert run["execution"] == 1
    assert run_gallery_path(retried, RUN).name == f"run-{RUN}.html"
    assert run_gallery_path(retried, RUN, 2).name == f"run-{RUN}.x2.html"


def test_the_adaptive_window_counts_each_image_of_a_retried_run_once(retried):
    _, rates = Store(retried).quality_state("local/local-v1", window=5)
    assert rates == [0.2, 0.3, 0.4, 0.5, 0.6]  # was [0.4, 0.5, 0.5, 0.6, 0.6]: each rate twice


def test_the_dry_run_history_counts_a_retrys_attempt_as_its_own(tmp_path):
    home = tmp_path / "home"
    for execution, accepted in ((1, True), (2, False)):
        store = Store(home, execution=execution).initialize()
        store.write_attempt(AttemptRecord(RUN, IDS[0], f"v{execution}", 1, 1, "local", "local-v1", "p", "ok", None,
                                          10.0, "high", T0, cost_usd=0.04))
        store.write_image_result(ImageRecord(RUN, IDS[0], "/in/0.png", 64, 64, "ok", None, quality_level="high"),
                                 [variation(IDS[0], accepted, execution)])
    history = Store(home).attempt_history("local", "local-v1")["high"]
    assert (history.attempts, history.accepted, history.calls, history.cost_usd) == (2, 1, 2, 0.08)


def test_doctor_repair_closes_the_killed_execution_and_leaves_the_finished_ones(tmp_path, capsys):
    home = tmp_path / "home"
    Store(home).initialize()
    for execution, status in ((1, "completed"), (2, "completed"), (3, "running")):
        Store(home, execution=execution).write_run(run_row(execution, status))
    assert main(["doctor", "--repair", "--home", str(home)]) == 0
    statuses = Store(home).query("SELECT execution, status FROM runs ORDER BY execution")
    assert [(r["execution"], r["status"]) for r in statuses] == [(1, "completed"), (2, "completed"),
                                                                  (3, "interrupted")]
    assert f"closed run {RUN} (execution 3) as interrupted" in capsys.readouterr().out
    assert main(["doctor", "--home", str(home)]) == 0
    assert not [p for p in diagnose(home) if p.kind == "interrupted_run"]


def test_doctor_names_the_execution_it_would_close(tmp_path):
    home = tmp_path / "home"
    Store(home).initialize()
    Store(home).write_run(run_row(1))
    Store(home, execution=2).write_run(run_row(2, "running"))
    (problem,) = [p for p in diagnose(home) if p.kind == "interrupted_run"]
    assert (problem.path, problem.execution) == (RUN, 2) and problem.detail.startswith("execution 2 ")


def test_a_retry_closes_its_killed_first_execution_under_its_own_lock(tmp_path):
    home = tmp_path / "home"
    store = Store(home, execution=2).initialize()
    Store(home).write_run(run_row(1, "running"))  # execution 1 was killed: its row says running
    lock = RunLock(run_lock_path(home, RUN)).acquire()  # the retry's process holds the run's lock
    try:
        recover_interrupted_runs(store, None)  # the sweep takes the held lock for a live run ...
        assert store.query("SELECT status FROM runs")[0]["status"] == "running"
        assert close_run(store, RUN, before=2, held=lock) == 0  # ... so the retry closes it itself
        assert lock._fd is not None, "the retry keeps its lock"
    finally:
        lock.release()
    (row,) = store.query("SELECT execution, status FROM runs")
    assert (row["execution"], row["status"]) == (1, "interrupted")


RETRY_CHILD = """
import json, sys
from prefect import get_client
from prefect.flow_engine import run_flow
from prefect.states import Running, Scheduled
from varflow.flows.parameters import RunParameters, form_values
from varflow.flows.variation_flow import variation_run
from varflow.storage import Store
from varflow.runtime.records import RunRecord, utcnow

params = form_values(RunParameters(**json.loads(sys.argv[1])), json=True)
with get_client(sync_client=True) as client:
    run = client.create_flow_run(variation_run, parameters=params)
    client.set_flow_run_state(run.id, Running(), force=True)  # the first execution starts ...
    Store(sys.argv[2]).initialize().write_run(RunRecord(  # ... writes its row and is killed (SIGKILL: no hook)
        str(run.id), str(run.id), "{}", "/in", "/out", "local", "local-v1", utcnow(), None, "running"))
    client.set_flow_run_state(run.id, Scheduled(name="AwaitingRetry"), force=True)  # the UI's Retry
    run = client.read_flow_run(run.id)
summary = run_flow(variation_run, flow_run=run, parameters=params)
print("SUMMARY " + json.dumps({"run_id": str(run.id), "execution": summary["execution"]}), flush=True)
"""


def test_a_real_retry_of_a_killed_flow_run_closes_its_first_execution(prefect_api, tmp_path):
    import subprocess
    import sys

    from conftest import make_photo_folder

    make_photo_folder(tmp_path / "in", 1, size=96)
    home = tmp_path / "home"
    params = {"input_dir": str(tmp_path / "in"), "output_dir": str(tmp_path / "out"), "home": str(home), "count": 1}
    out = subprocess.run([sys.executable, "-c", RETRY_CHILD, json.dumps(params), str(home)], env=prefect_api,
                         capture_output=True, text=True, timeout=300)
    lines = [line for line in out.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads(lines[-1][len("SUMMARY "):])
    assert summary["execution"] == 2
    rows = Store(home).query("SELECT execution, status FROM runs WHERE run_id = ? ORDER BY execution",
                             [summary["run_id"]])
    assert [(r["execution"], r["status"]) for r in rows] == [(1, "interrupted"), (2, "completed")]


def test_the_runs_notebook_counts_runs_and_shows_each_execution(retried, tmp_path):
    from test_notebooks import code_cells, execute, table_rows, texts

    cells = code_cells(execute("runs", retried, tmp_path))
    (opening,) = [c for c in cells if "N_RUNS = sql(" in c.source]
    assert any(": 1 runs" in t for t in texts(opening)), texts(opening)  # was "2 runs": it counted executions
    (per_run,) = [c for c in cells if "per_run = sql(" in c.source]
    assert table_rows(per_run) == [2]
    shown = "\n".join(texts(per_run))
    assert f"{RUN[:8]} #1" in shown and f"{RUN[:8]} #2" in shown, shown
