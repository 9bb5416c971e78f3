"""An unattended run tells the truth (issue 19): Prefect's state says what the exit code says, a
run that is stopped (SIGTERM, a crash) or cannot go on (no Dask worker) ends within a bounded time
with its rows closed, ``varflow collect`` runs as the README types it, one process closes a killed
run. Real parts: the CLI in child processes, the session's ``prefect server start`` (the flow run's
state read through its API), a real Dask scheduler and workers, the real google-genai SDK against
the fake Gemini server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import make_photo_folder
from varflow.storage import Store

try:
    from tests.fake_gemini import FakeGemini
except ImportError:  # run from tests/
    from fake_gemini import FakeGemini

ROOT = Path(__file__).resolve().parents[1]
KEY = "AIza" "SyTEST-trust-states-key-0123456789abcdefXYZ"
RUN_TIMEOUT_S = 240


def varflow(env: dict, *args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "varflow.flows.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def flow_run(env: dict, flow_run_id: str) -> dict:
    with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/flow_runs/{flow_run_id}", timeout=10) as r:
        return json.load(r)


def final_flow_run(env: dict, flow_run_id: str, timeout_s: float = 30) -> dict:
    """The flow run once the server shows a final state (a crashed run's state lands just after exit)."""
    deadline = time.time() + timeout_s
    while True:
        run = flow_run(env, flow_run_id)
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.time() > deadline:
            return run
        time.sleep(0.5)


def runs_rows(home: Path) -> list[dict]:
    return Store(home).query("SELECT run_id, status, message, images_ok, images_error FROM runs ORDER BY started_at")


def junk_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "a.png").write_bytes(b"not an image")
    (path / "b.jpg").write_bytes(b"not an image either")
    return path


def test_a_run_where_no_image_succeeds_is_failed_in_prefect_and_one_that_succeeds_is_completed(prefect_api, tmp_path):
    env = {**prefect_api, "VARFLOW_HOME": str(tmp_path / "home")}
    bad = varflow(env, "run", str(junk_folder(tmp_path / "bad")), "--out", str(tmp_path / "out"), "--json")
    assert bad.returncode == 1, bad.stderr[-3000:]
    summary = json.loads(bad.stdout)
    run = final_flow_run(env, summary["run_id"])
    assert (run["state_type"], run["state"]["message"]) == ("FAILED", "no image succeeded; see the errors above")
    assert runs_rows(tmp_path / "home")[-1]["status"] == "failed"

    make_photo_folder(tmp_path / "good", 1, size=96)
    good = varflow(env, "run", str(tmp_path / "good"), "--out", str(tmp_path / "out"), "--count", "1", "--json")
    assert good.returncode == 0, good.stderr[-3000:]
    summary = json.loads(good.stdout)
    assert final_flow_run(env, summary["run_id"])["state_type"] == "COMPLETED"
    assert runs_rows(tmp_path / "home")[-1]["status"] == "completed"


def test_a_run_the_spending_cap_stops_exits_3_failed_saying_how_far_it_got(prefect_api, tmp_path):
    # $0.039 estimated per call: $0.10 pays for two calls, one image of count 2, not a second image.
    make_photo_folder(tmp_path / "photos", 3, size=96)
    with FakeGemini(api_key=KEY) as fake:
        env = {k: v for k, v in prefect_api.items() if not k.startswith(("GOOGLE_", "HTTP", "http"))}
        env.update(VARFLOW_HOME=str(tmp_path / "home"), GEMINI_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=fake.base_url,
                   NO_PROXY="127.0.0.1,localhost")
        out = varflow(env, "run", str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "--backend", "gemini",
                      "--count", "2", "--concurrency", "1", "--level", "low", "--max-cost", "0.10", "--json")
        calls = fake.count()
    assert out.returncode == 3, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert calls == 2 and summary["images_ok"] == 1
    expected = "stopped by the spending cap after 1 of 3 images (1 succeeded): budget cap reached"
    assert summary["message"].startswith(expected)
    run = final_flow_run(env, summary["run_id"])
    assert run["state_type"] == "FAILED" and run["state"]["message"].startswith(expected)
    row = runs_rows(tmp_path / "home")[-1]
    assert (row["status"], row["images_ok"]) == ("failed", 1) and row["message"].startswith(expected)
    assert f"varflow: {expected}" in out.stderr


def test_varflow_collect_as_the_readme_types_it_reads_varflow_home(prefect_api, tmp_path):
    env = {**prefect_api, "VARFLOW_HOME": str(tmp_path / "home")}
    out = varflow(env, "collect")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "varflow collect: 0 folder run(s), 0 job(s) still open" in out.stdout
    assert (tmp_path / "home" / "varflow.duckdb").exists()  # the data directory VARFLOW_HOME names
    assert "ValidationError" not in out.stderr


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_sigterm_ends_a_run_within_seconds_rows_interrupted_claims_freed(prefect_api, tmp_path):
    home = tmp_path / "home"
    make_photo_folder(tmp_path / "photos", 8, size=160)
    env = {**prefect_api, "VARFLOW_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "varflow.flows.cli", "run", str(tmp_path / "photos"), "--out",
                             str(tmp_path / "out"), "--count", "2"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # Running, with an image finished and others claimed.
        images = home / "tables" / "images"
        wait_for(lambda: images.exists() and list(images.glob("run-*/parts/*")), RUN_TIMEOUT_S, "a finished image")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        seconds = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode in (143, -signal.SIGTERM), err[-3000:]
    assert seconds < 15, f"SIGTERM took {seconds:.1f} s to end the run"
    row = runs_rows(home)[-1]
    assert row["status"] == "interrupted" and "termination signal" in row["message"], row
    assert row["images_ok"] < 8
    assert not list((home / "claims").glob("*.lock")), "claims left behind"
    assert not list((home / "locks").glob("*")), "a lock or the space reserve left behind"
    assert final_flow_run(env, row["run_id"])["state_type"] == "CRASHED"
    # The next run takes the rest: nothing is claimed by the stopped one (an image it had in flight
    # is not finished: redone).
    finished = Store(home).query("SELECT count(*) AS n FROM images WHERE job_key IS NOT NULL")[0]["n"]
    again = varflow(env, "run", str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "--count", "2", "--json")
    summary = json.loads(again.stdout)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (summary["images_skipped"], summary["images_ok"]) == (finished, 8 - finished)


@pytest.fixture
def workerless_dask(tmp_path):
    """A Dask scheduler whose workers cannot import varflow's tasks (a ``varflow`` package that
    raises, first on their path: what a worker with another or a broken install sees): each exits
    when it is sent a task run."""
    from conftest import free_port

    broken = tmp_path / "broken"
    (broken / "varflow").mkdir(parents=True)
    (broken / "varflow" / "__init__.py").write_text('raise ImportError("varflow cannot load on this worker")\n')
    port = free_port()
    dask = str(Path(sys.executable).with_name("dask"))
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(3)
        env = {**os.environ, "PYTHONPATH": str(broken)}
        procs += [subprocess.Popen([dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-dashboard"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        time.sleep(4)
        yield f"tcp://127.0.0.1:{port}"
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_dask_run_whose_workers_cannot_load_the_task_ends_bounded_with_errors_on_record(
        prefect_api, tmp_path, workerless_dask):
    home = tmp_path / "home"
    make_photo_folder(tmp_path / "photos", 3, size=96)
    env = {**prefect_api, "VARFLOW_HOME": str(home)}
    t0 = time.monotonic()
    out = varflow(env, "run", str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "--runner", "dask",
                  "--dask-address", workerless_dask, "--dask-worker-wait", "5", "--json", timeout=120)
    seconds = time.monotonic() - t0
    assert out.returncode == 1, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert seconds < 90 and summary["images_error"] == 3
    images = Store(home).query("SELECT status, error FROM images")
    assert len(images) == 3 and all(i["status"] == "error" and "no worker" in i["error"] for i in images)
    row = runs_rows(home)[-1]
    assert row["status"] == "failed" and "no worker" in row["message"]
    run = final_flow_run(env, summary["run_id"])
    assert run["state_type"] == "FAILED" and "no worker" in run["state"]["message"]


RECOVER_CHILD = """
import logging, sys, time
logging.basicConfig(level=logging.INFO, format="%(message)s")
from varflow.storage import Store
from varflow.flows.lifecycle import recover_interrupted_runs
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
recover_interrupted_runs(Store(sys.argv[1]), logging.getLogger("child"))
"""


def killed_run(home: Path, images: int) -> str:
    """A run a SIGKILL left ``running``: its images' parts written, its lock free."""
    from varflow.runtime.records import AttemptRecord, ImageRecord, RunRecord, utcnow

    store = Store(home).initialize()
    run_id = "killed-run"
    store.write_run(RunRecord(run_id, None, "{}", "/in", "/out", "local", "local-v1", utcnow(), None, "running",
                              images_total=images))
    for i in range(images):
        image_id = f"{i:064x}"
        store.write_attempt(AttemptRecord(run_id, image_id, f"v{i}", 0, 1, "local", "local-v1", "p", "ok", None,
                                          1.0, "high", utcnow()))
        store.write_image_result(ImageRecord(run_id, image_id, f"/in/{i}.png", 8, 8, "ok", None, job_key=f"k{i}"))
    return run_id


def test_two_processes_recovering_the_same_killed_run_one_closes_it_the_others_skip(tmp_path):
    home = tmp_path / "home"
    run_id = killed_run(home, 300)
    start = time.time() + 4  # the children start together, after their imports
    children = [subprocess.Popen([sys.executable, "-c", RECOVER_CHILD, str(home), str(start)], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outputs = [c.communicate(timeout=120)[0] for c in children]
    assert [c.returncode for c in children] == [0, 0, 0], "\n".join(outputs)[-3000:]
    assert sum(f"run {run_id} was interrupted; closed it" in out for out in outputs) == 1, outputs
    (row,) = Store(home).query("SELECT status, images_ok FROM runs WHERE run_id = ?", [run_id])
    assert (row["status"], row["images_ok"]) == ("interrupted", 300)
    assert Store(home).query("SELECT count(*) AS n FROM attempts")[0]["n"] == 300


def assert_closed_with_errors_naming_paths(out: subprocess.CompletedProcess, home: Path, root: Path) -> list[dict]:
    """No traceback; the run closed with its summary (never ``running``); the images the full disk
    hit are errors naming the file (or folder) it could not write."""
    assert out.returncode in (0, 1) and "Traceback" not in out.stderr, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    (row,) = Store(home).query("SELECT status, images_error FROM runs WHERE run_id = ?", [summary["run_id"]])
    assert row["status"] == summary["status"] != "running"
    hit = [r for r in Store(home).query("SELECT path, error FROM images WHERE status = 'error'")
           if "No space left on device" in r["error"]]
    assert hit and row["images_error"] >= len(hit), summary
    assert all(str(root) in r["error"].split("No space left on device", 1)[1] for r in hit), hit
    return hit


@pytest.mark.parametrize("site", ["parts", "output", "cache", "claims"])
def test_enospc_at_each_write_site_is_an_error_naming_the_path_and_the_run_closes(prefect_api, tmp_path, site):
    home = tmp_path / "home"
    make_photo_folder(tmp_path / "photos", 3, size=96)
    env = {**prefect_api, "VARFLOW_HOME": str(home)}
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "enospc_child.py"), site, "2", "run",
                          str(tmp_path / "photos"), "--out", str(tmp_path / "out"), "--count", "1", "--json"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    hit = assert_closed_with_errors_naming_paths(out, home, tmp_path)
    assert len(hit) == 1  # one write failed: one image lost, the others done
    assert json.loads(out.stdout)["images_ok"] == 2


@pytest.fixture
def small_disk(tmp_path):
    """A 224 MiB tmpfs (CI runs as root): room for the preflight's estimate of the run below, until
    the test fills it; skipped where mounting is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=224m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_data_directory_on_a_full_disk_errors_name_the_path_and_the_run_closes(prefect_api, tmp_path, small_disk):
    """The disk fills while the run goes (another process's file): the preflight saw room."""
    home = small_disk / "home"
    make_photo_folder(tmp_path / "photos", 16, size=256)
    env = {**prefect_api, "VARFLOW_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "varflow.flows.cli", "run", str(tmp_path / "photos"), "--out",
                             str(tmp_path / "out"), "--count", "2", "--json"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        images = home / "tables" / "images"
        wait_for(lambda: images.exists() and list(images.glob("run-*/parts/*")), RUN_TIMEOUT_S, "a finished image")
        fill_up(small_disk / "filler")
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        proc.kill()
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    hit = assert_closed_with_errors_naming_paths(out, home, small_disk)
    assert len(hit) < 16


def fill_up(path: Path) -> None:
    """Write ``path`` until its disk has no block left."""
    with open(path, "wb", buffering=0) as f:
        for block in (1 << 20, 1 << 12):
            try:
                while True:
                    f.write(b"\0" * block)
            except OSError:
                continue


def test_a_sigterm_inside_a_duckdb_query_stays_a_termination_signal():
    """DuckDB turns the exception Prefect's SIGTERM handler raises into RuntimeError('Query
    interrupted'): the run then ended Failed, exit 1, its row left running (seen in this test
    module's SIGTERM case under load). termination_kept gives Prefect its TerminationSignal back."""
    child = textwrap.dedent("""
        import os, signal, threading
        import duckdb
        from prefect.exceptions import TerminationSignal
        from varflow.flows.lifecycle import termination_kept

        def prefects_handler(signum, frame):  # what Prefect's capture_sigterm installs
            raise TerminationSignal(signal=signum)

        signal.signal(signal.SIGTERM, prefects_handler)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        try:
            with termination_kept():
                duckdb.sql("SELECT count(*) FROM range(10000000000) t(i) WHERE i % 7 = 3").fetchall()
        except TerminationSignal as exc:
            print("TerminationSignal from", type(exc.__cause__).__name__, exc.__cause__)
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "TerminationSignal from RuntimeError Query interrupted", out.stderr[-2000:]
