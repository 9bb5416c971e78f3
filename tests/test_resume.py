"""A run killed with SIGKILL at any point, started again, finishes without redoing finished work.

Real subprocesses of the ``varflow`` command against a real Prefect server; the store is read
while the victim runs to choose the moment of the kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from conftest import make_photo_folder
from varflow.storage import Store

N_IMAGES = 8


def varflow(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "varflow.flows.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def count(store: Store, sql: str) -> int:
    try:
        return store.query(sql)[0]["n"]
    except Exception:  # the store may not exist yet
        return 0


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume-photos")
    make_photo_folder(d, N_IMAGES)
    return d


def kill_when(proc, store: Store, condition, timeout=120):
    deadline = time.time() + timeout
    while not condition(store):
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the kill point:\n{proc.stdout.read()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("kill point not reached in time")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


KILL_POINTS = {
    "before-any-image": lambda s: count(s, "SELECT count(*) AS n FROM runs") >= 1,
    "after-first-attempts": lambda s: count(s, "SELECT count(*) AS n FROM attempts") >= 3,
    "half-way": lambda s: count(s, "SELECT count(*) AS n FROM images WHERE status = 'ok'") >= N_IMAGES // 2,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_run_resumes_without_redoing_finished_images(point, photos, tmp_path, prefect_api):
    home = tmp_path / "home"
    env = {**prefect_api, "VARFLOW_HOME": str(home)}
    args = ["run", str(photos), "--out", str(tmp_path / "out"), "--count", "2", "--level", "medium",
            "--no-adapt", "--images-in-flight", "2"]
    store = Store(home)
    victim = varflow(args, env)
    kill_when(victim, store, KILL_POINTS[point])

    killed_run = store.query("SELECT run_id FROM runs")[0]["run_id"]
    done_before = {r["image_id"] for r in store.query(
        "SELECT image_id FROM images WHERE run_id = ? AND status = 'ok'", [killed_run])}

    resumed = varflow(args, env)
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out

    runs = {r["run_id"]: r for r in store.query("SELECT run_id, status FROM runs")}
    assert runs[killed_run]["status"] == "interrupted"
    (new_run,) = [r for r in runs if r != killed_run]
    assert runs[new_run]["status"] == "completed"

    # every image finished exactly once, across the two runs
    ok = Counter(r["image_id"] for r in store.query("SELECT image_id FROM images WHERE status = 'ok'"))
    assert len(ok) == N_IMAGES and set(ok.values()) == {1}
    # finished images were not touched again: skipped, with no attempt of any kind
    skipped = {r["image_id"] for r in store.query(
        "SELECT image_id FROM images WHERE run_id = ? AND status = 'skipped'", [new_run])}
    assert skipped == done_before
    assert count(store, f"SELECT count(*) AS n FROM attempts WHERE run_id = '{new_run}' AND image_id IN "
                        f"(SELECT image_id FROM images WHERE run_id = '{killed_run}' AND status = 'ok')") == 0
    # no half-written rows: every variation row belongs to an image row of its run
    orphans = count(store, "SELECT count(*) AS n FROM variations v ANTI JOIN images i USING (run_id, image_id)")
    assert orphans == 0
    # no duplicate rows
    assert count(store, "SELECT count(*) - count(DISTINCT (run_id, variation_id)) AS n FROM variations") == 0
    assert count(store, "SELECT count(*) - count(DISTINCT (run_id, image_id, path)) AS n FROM images") == 0
    # work generated before the kill is reused, not paid again: a variation is generated
    # at most twice (the only window is a call the kill cut between its record and the cache)
    paid = Counter(r["variation_id"] for r in store.query("SELECT variation_id FROM attempts WHERE NOT cache_hit"))
    assert max(paid.values()) <= 2
    assert sum(1 for v in paid.values() if v == 2) <= 2  # at most the calls in flight at the kill
    # the outputs on disk are the accepted variations of the finished images
    accepted = {r["output_path"] for r in store.query("SELECT output_path FROM variations WHERE accepted")}
    on_disk = {str(p) for p in (tmp_path / "out").rglob("*-v*.png")}
    assert accepted == on_disk
