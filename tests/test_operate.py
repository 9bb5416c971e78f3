"""Operating varflow from Prefect with real parts: a real ``prefect server start`` (loopback, free
port, temporary PREFECT_HOME, UI on), ``varflow serve`` in a child process, runs triggered through
``POST /api/deployments/{id}/create_flow_run`` and from the UI's custom run form in Debian's
Chromium. One server and one served deployment for the module.

The times (server start, trigger to completed) and the screenshots land in the module's output
folder (``operate-output*`` under pytest's temporary directory; the path is printed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from conftest import make_photo_folder, running_server
from varflow.storage import Store

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 180
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def call(url: str, body: dict | None = None) -> tuple[int, object]:
    """(HTTP status, JSON answer) of a GET, or of a POST when ``body`` is given. A 503 (the
    server's SQLite busy on a loaded machine) is retried for a while, as a client would."""
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(20):
        req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"},
                                     method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code != 503 or attempt == 19:
                return e.code, json.loads(e.read() or b"null")
        time.sleep(1)


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> dict:
    """The module's output folder: screenshots and timings.json (paths printed at the end)."""
    folder = tmp_path_factory.mktemp("operate-output")
    timings: dict = {}
    yield {"dir": folder, "timings": timings}
    (folder / "timings.json").write_text(json.dumps(timings, indent=2))
    print(f"\noperate output: {folder} {json.dumps(timings)}")


@pytest.fixture(scope="module")
def server(tmp_path_factory, output):
    """``prefect server start`` with its UI (tests/prefect_servers.py)."""
    # A run waiting for its deployment's slot asks again after this long (default 30 s).
    slot_wait = {"PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2"}
    with running_server(tmp_path_factory.mktemp("prefect-ui-home"), ui=True, server_env=slot_wait) as server:
        output["timings"]["server_start_s"] = server["start_s"]
        yield server


@pytest.fixture(scope="module")
def served(server, tmp_path_factory, output):
    """``varflow serve`` of two small real photos, given relative folders from its own working
    directory (a run must not follow that directory): a nightly cron and a daily interval with
    its own count."""
    base = tmp_path_factory.mktemp("served")
    make_photo_folder(base / "photos", 2, size=192)
    cwd = base / "cwd"
    cwd.mkdir()
    env = {**server["env"], "PREFECT_HOME": str(base / "client-home"), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = open(base / "serve.log", "w")  # noqa: SIM115 - `varflow serve` writes to it until it is stopped
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "varflow.flows.cli", "serve", "../photos", "--out", "../out", "--home", "../home",
         "--count", "2", "--images-in-flight", "1", "--name", "e2e", "--every", "86400", "--every-set", "count=1"],
        cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        while True:
            status, deployment = call(f"{server['api']}/deployments/name/varflow-run/e2e")
            if status == 200:
                break
            if proc.poll() is not None or time.perf_counter() - t0 > 120:
                raise RuntimeError(f"varflow serve did not register: {(base / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.5)
        output["timings"]["serve_registered_s"] = round(time.perf_counter() - t0, 1)
        yield {"deployment": deployment, "id": deployment["id"], "photos": base / "photos", "out": base / "out",
               "home": base / "home", "cwd": cwd, "log": base / "serve.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def trigger(server, served, parameters: dict) -> dict:
    status, run = call(f"{server['api']}/deployments/{served['id']}/create_flow_run", {"parameters": parameters})
    assert status == 201, run
    return run


def wait_final(server, served, run_id: str) -> dict:
    deadline = time.time() + RUN_TIMEOUT_S
    while time.time() < deadline:
        run = call(f"{server['api']}/flow_runs/{run_id}")[1]
        if run["state_type"] in FINAL:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} not finished in {RUN_TIMEOUT_S} s: {served['log'].read_text()[-3000:]}")


def events(server, name: str, resource_id: str | None = None, timeout_s: float = 30) -> list[dict]:
    """The events of that name (and resource), waiting for the server to store them (it batches)."""
    query = {"event": {"name": [name]}, **({"resource": {"id": [resource_id]}} if resource_id else {})}
    deadline = time.time() + timeout_s
    while True:
        found = call(f"{server['api']}/events/filter", {"filter": query})[1]["events"]
        if found or time.time() > deadline:
            return found
        time.sleep(1)


def artifacts_of(server, run_id: str) -> dict:
    status, found = call(f"{server['api']}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    assert status == 200
    return {a["key"]: a for a in found}


def test_the_served_deployment_has_both_schedules_its_parameters_and_one_run_at_a_time(served, server):
    d = served["deployment"]
    assert d["parameters"] == {"input_dir": str(served["photos"]), "output_dir": str(served["out"]),
                               "home": str(served["home"]), "count": 2, "images_in_flight": 1}
    by_kind = {("cron" if "cron" in s["schedule"] else "interval"): s for s in d["schedules"]}
    assert by_kind["cron"]["schedule"]["cron"] == "0 2 * * *" and by_kind["cron"]["parameters"] == {}
    assert by_kind["interval"]["schedule"]["interval"] == 86400 and by_kind["interval"]["parameters"] == {"count": 1}
    assert d["global_concurrency_limit"]["limit"] == 1
    assert d["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    props = d["parameter_openapi_schema"]["properties"]
    assert props["count"]["maximum"] == 64 and props["level"]["enum"] == ["auto", "high", "medium", "low"]


@pytest.mark.parametrize("parameters, field", [
    ({"count": 0}, "count"), ({"count": -1}, "count"), ({"level": "extreme"}, "level"),
    ({"backend": "dall-e"}, "backend"), ({"paid_backend": {"retries": -1}}, "retries"),
])
def test_invalid_values_are_refused_with_the_field_named(served, server, parameters, field):
    status, answer = call(f"{server['api']}/deployments/{served['id']}/create_flow_run", {"parameters": parameters})
    assert status == 409 and field in answer["detail"], answer


NOTHING_PASSES = {"profile": "seed", "thresholds": {"similarity_min": 0.99, "similarity_max": 1.0}}


def test_api_runs_keep_the_deployment_parameters_publish_progress_table_report_event_and_never_overlap(
        served, server, output):
    # The documented automations, created as the README says (the CLI, from the file).
    made = subprocess.run([sys.executable, "-m", "prefect", "automation", "create", "--from-file",
                           str(ROOT / "deployments" / "automations.yaml")], env=server["env"], capture_output=True,
                          text=True, timeout=120)
    assert made.returncode == 0 and "varflow-low-acceptance" in made.stdout, made.stdout + made.stderr

    t0 = time.perf_counter()
    first = trigger(server, served, {"count": 1})
    second = trigger(server, served, {"count": 1, **NOTHING_PASSES})  # while the first runs; accepts nothing
    a = wait_final(server, served, first["id"])
    b = wait_final(server, served, second["id"])
    output["timings"]["two_runs_one_after_the_other_s"] = round(time.perf_counter() - t0, 1)
    assert (a["state_type"], b["state_type"]) == ("COMPLETED", "COMPLETED"), served["log"].read_text()[-3000:]

    # One changed parameter; the deployment's others kept (folders, home, images_in_flight).
    kept = {k: v for k, v in served["deployment"]["parameters"].items() if k != "count"}
    assert a["parameters"] == {**kept, "count": 1}
    assert b["parameters"] == {**kept, "count": 1, **NOTHING_PASSES}

    # The concurrency limit made one wait for the other (the runner may start either first).
    spans = sorted((_when(r["start_time"]), _when(r["end_time"]), r["id"]) for r in (a, b))
    assert spans[0][1] <= spans[1][0], f"the runs overlapped: {spans}"
    went_first = a if spans[0][2] == a["id"] else b
    output["timings"]["trigger_to_completed_s"] = round(
        (_when(went_first["end_time"]) - _when(went_first["created"])).total_seconds(), 1)
    states = call(f"{server['api']}/flow_run_states/?flow_run_id={spans[1][2]}")[1]
    assert "AwaitingConcurrencySlot" in {s["name"] for s in states}, [s["name"] for s in states]

    # The run that accepted nothing says so, in its report and its event, and the automation fired.
    report_b = artifacts_of(server, second["id"])["varflow-run-report"]["data"]
    assert "> **Warning:** this run accepted nothing of 2 variations asked for" in report_b
    finished = events(server, "varflow.run.finished", f"varflow.run.{second['id']}")
    assert [e["resource"]["varflow.warning"] for e in finished] == ["nothing-accepted"]
    names = [e["resource"].get("prefect.resource.name") for e in events(server, "prefect.automation.triggered")]
    assert names == ["varflow-low-acceptance"], "only the low-acceptance automation fires, once"

    # The store: both runs, their parameters, their rows, their files (in the deployment's folder).
    store = Store(served["home"])
    runs = {r["flow_run_id"]: r for r in store.query("SELECT * FROM runs")}
    assert {runs[first["id"]]["status"], runs[second["id"]]["status"]} == {"completed"}
    assert json.loads(runs[second["id"]]["parameters"])["thresholds"]["similarity_min"] == 0.99
    assert runs[second["id"]]["variations_accepted"] == 0
    for run in (first, second):
        images = store.query("SELECT * FROM images WHERE run_id = ?", [run["id"]])
        assert sorted(Path(i["path"]).name for i in images) == ["photo-000.png", "photo-001.png"]
    accepted = store.query("SELECT output_path FROM variations WHERE accepted")
    assert accepted and all(Path(r["output_path"]).parent == served["out"] for r in accepted)
    assert sorted(p.name for p in served["out"].glob("*.png")) == sorted(Path(r["output_path"]).name for r in accepted)
    assert list(served["cwd"].iterdir()) == [], "a run wrote into the serving process's directory"

    # The artifacts: progress at 100%, a table row per image, the report with its breakdown.
    arts = artifacts_of(server, first["id"])
    assert {k: arts[k]["type"] for k in arts} == {"varflow-run-progress": "progress", "varflow-run-images": "table",
                                                  "varflow-run-report": "markdown"}
    assert float(arts["varflow-run-progress"]["data"]) == 100.0
    table = arts["varflow-run-images"]["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    assert sorted(r["image"] for r in rows) == ["photo-000.png", "photo-001.png"]
    row = runs[first["id"]]
    assert sum(r["accepted"] for r in rows) == row["variations_accepted"]
    report = arts["varflow-run-report"]["data"]
    assert "## Images" in report and "photo-000.png" in report and "| gallery |" in report

    # The end-of-run event carries the counts.
    (event,) = events(server, "varflow.run.finished", f"varflow.run.{first['id']}")
    assert event["payload"]["variations_accepted"] == row["variations_accepted"]
    assert event["payload"]["images_ok"] == 2 and event["resource"]["varflow.status"] == "completed"




def test_in_chromium_a_custom_run_from_the_form_completes_and_shows_its_report(browser, served, server, output):
    shots, ui = output["dir"], server["url"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(f"{ui}/deployments/deployment/{served['id']}")
    page.get_by_text("Concurrency Limit").wait_for()
    body = page.inner_text("body")
    assert "e2e" in body and "interval" in body and "nightly" in body, "both schedules are listed"
    page.screenshot(path=str(shots / "1-deployment.png"))

    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.wait_for_url("**/run**")
    page.get_by_text("Accepted variations wanted per image (1 to 64).").wait_for()
    count = page.get_by_role("spinbutton").first
    assert count.input_value() == "2", "the form starts from the deployment's parameters"
    count.fill("1")
    prompt = page.locator("xpath=//*[normalize-space(text())='prompt (Optional)']"
                          "/ancestor::*[.//textarea][1]//textarea")
    prompt.fill("from the browser")
    count.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "2-custom-run-form.png"))

    run_name = page.locator("input").first.input_value()  # the form's Run Name
    assert run_name
    t0 = time.perf_counter()
    page.get_by_role("button", name="Submit").click()
    page.get_by_text(f"{run_name} scheduled to start now").first.wait_for()
    status, found = call(f"{server['api']}/flow_runs/filter", {"flow_runs": {"name": {"any_": [run_name]}}})
    (run,) = found
    run = wait_final(server, served, run["id"])
    output["timings"]["browser_submit_to_completed_s"] = round(time.perf_counter() - t0, 1)
    assert run["state_type"] == "COMPLETED", served["log"].read_text()[-3000:]
    assert run["parameters"]["count"] == 1 and run["parameters"]["prompt"] == "from the browser"
    assert run["parameters"]["input_dir"] == str(served["photos"])

    page.goto(f"{ui}/runs/flow-run/{run['id']}")
    page.get_by_text("Completed").first.wait_for()
    line = page.get_by_text("photo-000.png: 1 accepted of ").first  # the image's own log line
    line.wait_for()
    line.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "3-run-completed.png"))
    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text("varflow-run-images").wait_for()
    page.screenshot(path=str(shots / "4-run-artifacts.png"))
    page.get_by_text("varflow-run-report").first.click()
    page.get_by_text("variations accepted").wait_for()
    text = page.inner_text("body")
    assert "photo-000.png" in text and "photo-001.png" in text and "gallery" in text
    page.screenshot(path=str(shots / "5-run-report.png"), full_page=True)
    page.close()


def _automation_names(server) -> set[str]:
    return {a["name"] for a in call(f"{server['api']}/automations/filter", {})[1]}


def test_a_served_run_where_no_image_succeeds_ends_failed_and_the_failed_automation_fires(served, server, tmp_path):
    if "varflow-run-failed" not in _automation_names(server):  # this test alone: the README's command
        subprocess.run([sys.executable, "-m", "prefect", "automation", "create", "--from-file",
                        str(ROOT / "deployments" / "automations.yaml")], env=server["env"], check=True,
                       capture_output=True, timeout=120)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"not an image")
    run = wait_final(server, served, trigger(server, served, {"input_dir": str(junk)})["id"])
    assert (run["state_type"], run["state"]["message"]) == ("FAILED", "no image succeeded; see the errors above")
    (row,) = Store(served["home"]).query("SELECT status FROM runs WHERE run_id = ?", [run["id"]])
    assert row["status"] == "failed"
    deadline = time.time() + 30
    while "varflow-run-failed" not in (names := [e["resource"].get("prefect.resource.name")
                                                 for e in events(server, "prefect.automation.triggered")]):
        assert time.time() < deadline, f"the Failed automation did not fire: {names}"
        time.sleep(1)


def test_a_served_run_cancelled_from_the_api_closes_its_rows_cancelled_and_frees_its_claims(served, server, tmp_path):
    make_photo_folder(tmp_path / "many", 10, size=256)
    run_id = trigger(server, served, {"input_dir": str(tmp_path / "many"), "count": 3})["id"]
    store = Store(served["home"])
    deadline = time.time() + RUN_TIMEOUT_S
    # running, an image done (the data directory appears with the first run served by this module)
    while not ((served["home"] / "tables" / "runs").exists()
               and store.query("SELECT 1 FROM images WHERE run_id = ?", [run_id])):
        assert time.time() < deadline, served["log"].read_text()[-3000:]
        time.sleep(0.5)
    status, _ = call(f"{server['api']}/flow_runs/{run_id}/set_state",
                     {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True})
    assert status in (200, 201)
    assert wait_final(server, served, run_id)["state_type"] == "CANCELLED"
    while (row := store.query("SELECT status, message FROM runs WHERE run_id = ?", [run_id])[0])["status"] == "running":
        assert time.time() < deadline, "the cancelled run's row stayed running"
        time.sleep(0.5)
    assert row["status"] == "cancelled", row
    assert not list((served["home"] / "claims").glob("*.lock")), "claims left behind"


def test_a_retried_flow_run_keeps_each_executions_records_and_resumes(served, server, tmp_path):
    make_photo_folder(tmp_path / "retry", 2, size=128)
    run_id = trigger(server, served, {"input_dir": str(tmp_path / "retry"), "count": 1})["id"]
    assert wait_final(server, served, run_id)["state_type"] == "COMPLETED"
    # The UI's Retry: the finished flow run goes back to Scheduled (AwaitingRetry) and runs again, same id.
    status, _ = call(f"{server['api']}/flow_runs/{run_id}/set_state",
                     {"state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"},
                      "force": True})
    assert status in (200, 201)
    deadline = time.time() + RUN_TIMEOUT_S
    while not ((run := call(f"{server['api']}/flow_runs/{run_id}")[1])["run_count"] == 2
               and run["state_type"] in FINAL):
        assert time.time() < deadline, served["log"].read_text()[-3000:]
        time.sleep(0.5)
    assert run["state_type"] == "COMPLETED"
    store = Store(served["home"])
    runs = store.query("SELECT execution, status, images_ok, images_skipped FROM runs WHERE run_id = ? "
                       "ORDER BY execution", [run_id])
    assert [(r["execution"], r["status"], r["images_ok"], r["images_skipped"]) for r in runs] == [
        (1, "completed", 2, 0), (2, "completed", 0, 2)]
    images = store.query("SELECT execution, status, job_key IS NOT NULL AS finished FROM images WHERE run_id = ? "
                         "ORDER BY execution, path", [run_id])
    assert [(i["execution"], i["status"], i["finished"]) for i in images] == [
        (1, "ok", True), (1, "ok", True), (2, "skipped", False), (2, "skipped", False)]
    accepted = store.query("SELECT execution FROM variations WHERE run_id = ? AND accepted", [run_id])
    assert accepted and {a["execution"] for a in accepted} == {1}, "the first execution's variations are kept"
