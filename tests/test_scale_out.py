"""varflow on a Prefect server backed by PostgreSQL (docs/scale-out.md, section 1): ``varflow run``
in child processes against a real ``prefect server start`` whose database is a fresh PostgreSQL
database (tests/prefect_servers.py).

SQLite has one writer: under load the server answers 503 and "database is locked"
(REFERENCE.md). Here: the server keeps every task run a run made, with its final state (counted
against what varflow's store says ran, a task run per stage or one per chunk), the rows are in
PostgreSQL itself, and two runs started at once on one server and one data directory overlap and
both complete, both recorded in full. (How many task runs a flow run may send before the server's
event queue drops them is the bench's and the chunk plan's business: docs/scale-out.md.)
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from conftest import make_photo_folder
from prefect_servers import query_postgres
from varflow.storage import Store
from varflow.tasks.generate import generate_variation
from varflow.tasks.image import process_image, process_images
from varflow.tasks.optimize import optimize

from varflow.processing.chunks import plan_tasks

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 180
RECORDED_WAIT_S = 60  # task-run states reach the server as events, stored in batches
PAGE = 200  # the server's default page size (PREFECT_API_DEFAULT_LIMIT)
COUNT = 2  # variations per image: two generate task runs per image at least


def start_run(server: dict, photos: Path, out: Path, home: Path, *options: str) -> subprocess.Popen:
    """``varflow run`` in a child process, against the server (PREFECT_API_URL in its env)."""
    return subprocess.Popen(
        [sys.executable, "-m", "varflow.flows.cli", "run", str(photos), "--out", str(out), "--home", str(home),
         "--count", str(COUNT), "--json", *options],
        env=server["env"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    """The run's summary; the run must have exited 0."""
    stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return json.loads(stdout)


def expected_task_runs(home: Path, run_id: str, chunk_size: int = 0) -> Counter:
    """(task_key, final state type) of the task runs varflow's store says a threads run made.

    The local backend runs in chunks (varflow/processing/chunks.py; a small folder in chunks of one image):
    one completed process-images task run each, and nothing else. With stage tasks (a paid
    backend on a small folder), a completed process-image and optimize per image processed, one
    generate per attempt, failed when the attempt's outcome was not ok.
    """
    store = Store(home)
    images = store.query("SELECT count(*) AS n FROM images WHERE run_id = ? AND status = 'ok'", [run_id])[0]["n"]
    plan = plan_tasks(images, count=COUNT, parallel=1, remote_runner=False, remote_backend=False,
                      requested=chunk_size)
    if not plan.stage_tasks:
        return Counter({(process_images.task_key, "COMPLETED"): math.ceil(images / plan.images_per_task)})
    attempts = store.query("SELECT bool_or(outcome = 'ok') AS ok FROM attempts WHERE run_id = ? "
                           "GROUP BY variation_id", [run_id])
    generated = Counter("COMPLETED" if a["ok"] else "FAILED" for a in attempts)
    return Counter({(process_image.task_key, "COMPLETED"): images, (optimize.task_key, "COMPLETED"): images,
                    **{(generate_variation.task_key, state): n for state, n in generated.items()}})


def read_task_runs(client, flow_run_id: str) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs, offset = [], 0
    while True:
        page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                     limit=PAGE, offset=offset)
        runs += page
        if len(page) < PAGE:
            return runs
        offset += PAGE


def recorded_task_runs(client, flow_run_id: str, expected: int) -> list:
    """The flow run's task runs on the server, once ``expected`` of them arrived (or the wait ended)."""
    deadline = time.time() + RECORDED_WAIT_S
    while True:
        runs = read_task_runs(client, flow_run_id)
        if len(runs) >= expected or time.time() > deadline:
            return runs
        time.sleep(0.5)


def check_recorded(server: dict, home: Path, summary: dict, chunk_size: int = 0):
    """The flow run completed on the server, with every task run the store says it made; returns it."""
    from prefect.client.orchestration import SyncPrefectClient

    run_id = summary["run_id"]
    (row,) = Store(home).query("SELECT flow_run_id, status FROM runs WHERE run_id = ?", [run_id])
    assert row["status"] == "completed" and row["flow_run_id"] == run_id  # the store's run is the flow run
    expected = expected_task_runs(home, run_id, chunk_size)
    assert summary["images_ok"] > 0
    with SyncPrefectClient(server["api"]) as client:
        flow_run = client.read_flow_run(uuid.UUID(run_id))
        assert flow_run.state_type.value == "COMPLETED", flow_run.state
        assert client.read_flow(flow_run.flow_id).name == "varflow-run"
        task_runs = recorded_task_runs(client, run_id, sum(expected.values()))
    assert Counter((t.task_key, t.state_type.value) for t in task_runs) == expected
    return flow_run


def test_a_run_against_a_postgres_server_completes_and_every_task_run_is_recorded_in_postgres(
        prefect_server_postgres, tmp_path):
    server = prefect_server_postgres
    make_photo_folder(tmp_path / "photos", 4, size=96)
    home = tmp_path / "home"
    summary = finish(start_run(server, tmp_path / "photos", tmp_path / "out", home))
    assert summary["status"] == "completed" and summary["images_ok"] == 4
    expected = expected_task_runs(home, summary["run_id"])
    # A small folder on the local backend: a task run per image (chunks of one), nothing nested.
    assert expected == Counter({(process_images.task_key, "COMPLETED"): 4}) and summary["task_runs"] == 4

    check_recorded(server, home, summary)
    # The records are in PostgreSQL, not in a SQLite file the server fell back to.
    rows = asyncio.run(query_postgres(
        server["database"], "SELECT f.state_type::text AS state, count(t.id) AS tasks FROM flow_run f "
        "LEFT JOIN task_run t ON t.flow_run_id = f.id WHERE f.id = $1 GROUP BY f.state_type",
        uuid.UUID(summary["run_id"])))
    assert rows == [{"state": "COMPLETED", "tasks": sum(expected.values())}]
    assert not list(Path(server["env"]["PREFECT_HOME"]).glob("*.db"))


def test_two_runs_at_once_on_one_server_and_one_data_directory_both_complete_in_full(
        prefect_server_postgres, tmp_path):
    server = prefect_server_postgres
    home = tmp_path / "home"  # one data directory for both runs
    # Different sizes: different content, so neither run's images are claimed by the other.
    folders = {name: tmp_path / name for name in ("a", "b")}
    make_photo_folder(folders["a"], 4, size=80)
    make_photo_folder(folders["b"], 4, size=112)
    chunks = {"a": 0, "b": 2}  # a: a task run per stage; b: chunks of two images (both granularities)
    procs = {name: start_run(server, folder, tmp_path / f"out-{name}", home, "--chunk-size", str(chunks[name]))
             for name, folder in folders.items()}
    summaries = {name: finish(proc) for name, proc in procs.items()}

    for summary in summaries.values():
        assert summary["status"] == "completed"
        assert (summary["images_ok"], summary["images_skipped"], summary["images_error"]) == (4, 0, 0)
    a, b = (check_recorded(server, home, summaries[name], chunks[name]) for name in ("a", "b"))
    assert a.start_time < b.end_time and b.start_time < a.end_time, "the two runs did not overlap"
    runs = Store(home).query("SELECT run_id, status FROM runs ORDER BY run_id")
    assert sorted((r["run_id"], r["status"]) for r in runs) == sorted(
        (s["run_id"], "completed") for s in summaries.values())


def doc_commands(program: str) -> list[list[str]]:
    """The ``program`` commands of docs/scale-out.md's shell blocks, continuation lines joined."""
    text = (ROOT / "docs" / "scale-out.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith(f"{program} "):
                commands.append(shlex.split(line))
    return commands


def test_every_varflow_command_in_the_scale_out_doc_is_one_the_cli_takes():
    """A user pastes these: every flag must exist and every value pass the run's validation."""
    from varflow.flows.cli import build_parser, params_of
    from varflow.flows.resources import shared_limits

    commands = doc_commands("varflow")
    assert {c[1] for c in commands} == {"run"} and len(commands) >= 3
    assert any("--dask-address" in c for c in commands) and any("--shared-limits" in c for c in commands)
    for argv in commands:
        try:
            args = build_parser().parse_args(argv[1:])
        except SystemExit:
            raise AssertionError(f"docs/scale-out.md: the CLI refuses {' '.join(argv)}") from None
        params = params_of(args, args.input_dir, args.out)
        assert shared_limits(params) in ("", "file") or params.shared_limits.startswith("redis://")
        assert params.runner == "dask" and params.home == "/data/varflow", argv
