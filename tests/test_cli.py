"""The command line as a user runs it: the README's main-job command, errors, a reader beside a writer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from conftest import FIXTURES, make_photo_folder
from varflow.storage import Store

ROOT = Path(__file__).resolve().parents[1]


def readme_command(name: str) -> list[str]:
    """The README's command for ``name`` (demo or test), as a user would copy it."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^(make {name})\s", text, re.MULTILINE)
    assert match, f"the README no longer shows `make {name}`"
    return match.group(1).split()


def test_readme_main_job_command_runs_the_demo_and_the_summary_matches_the_store(tmp_path, prefect_api):
    cmd = readme_command("demo")
    home = tmp_path / "home"
    env = {**prefect_api, "VARFLOW_HOME": str(home)}
    # run from a scratch folder, as a user in their own directory: make -f finds the project
    out = subprocess.run([cmd[0], "-s", "-f", str(ROOT / "Makefile"), *cmd[1:]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "varflow demo: 6 sample photos" in text
    line = lambda label: re.search(rf"^  {label}\s+(.*)$", text, re.MULTILINE).group(1)
    images = re.match(r"(\d+) found: (\d+) ok, (\d+) error, (\d+) skipped", line("images")).groups()
    assert images == ("6", "6", "0", "0")
    accepted, requested, attempts = map(int, re.match(r"(\d+) accepted of (\d+) requested; (\d+) attempts",
                                                      line("variations")).groups())
    store = Store(home)
    assert str(store.duckdb_path) in line("records")
    db = store.query("SELECT count(*) FILTER (accepted) AS a, count(*) AS judged FROM variations")[0]
    assert db["a"] == accepted
    assert store.query("SELECT count(*) AS n FROM attempts")[0]["n"] == attempts
    assert requested == 6 * 4
    files = [p for p in (tmp_path / "varflow-demo" / "variations").rglob("*.png")]
    assert len(files) == accepted
    assert store.query("SELECT status FROM runs") == [{"status": "completed"}]


def test_wrong_arguments_exit_2_with_what_to_fix(tmp_path):
    out = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "run", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "does not exist" in out.stderr
    out = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "run", str(tmp_path), "--count", "0"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "count" in (out.stderr + out.stdout)


def test_no_image_succeeding_exits_1(tmp_path, prefect_api):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.png").write_bytes((FIXTURES / "bad" / "truncated.png").read_bytes())
    env = {**prefect_api, "VARFLOW_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "run", str(photos), "--out", str(tmp_path / "o"),
                          "--json"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    assert summary["status"] == "failed" and "truncated or corrupt" in summary["errors"][0]


def test_a_rerun_with_nothing_new_exits_0(tmp_path, prefect_api):
    from conftest import make_photo_folder

    photos = make_photo_folder(tmp_path / "photos", 1, size=64)[0].parent
    env = {**prefect_api, "VARFLOW_HOME": str(tmp_path / "home")}
    args = [sys.executable, "-m", "varflow.flows.cli", "run", str(photos), "--out", str(tmp_path / "o"), "--count", "1",
            "--level", "low", "--no-adapt", "--json"]
    runs = [subprocess.run(args, env=env, capture_output=True, text=True, timeout=300) for _ in range(2)]
    summaries = [json.loads(r.stdout[r.stdout.index("{"):]) for r in runs]
    assert summaries[0]["images_ok"] == 1 and runs[0].returncode == 0
    assert summaries[1]["images_ok"] == 0 and summaries[1]["images_skipped"] == 1
    assert runs[1].returncode == 0, "a nightly run with nothing new is not a failure"


READER = """
import duckdb, json, sys, time, pathlib
db, stop = sys.argv[1], pathlib.Path(sys.argv[2])
while not stop.exists():
    try:
        con = duckdb.connect(db, read_only=True)
        n = con.execute("SELECT count(*) FROM images").fetchone()[0]
        v = con.execute("SELECT count(*) FROM variations").fetchone()[0]
        con.close()
        print(json.dumps({"images": n, "variations": v}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": repr(exc)}), flush=True)
    time.sleep(0.1)
"""


def test_a_notebook_can_query_while_a_flow_is_writing(tmp_path, prefect_api):
    photos = tmp_path / "photos"
    make_photo_folder(photos, 10)
    home = tmp_path / "home"
    Store(home).initialize()  # the file a notebook opens exists before the run
    env = {**prefect_api, "VARFLOW_HOME": str(home)}
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(home / "varflow.duckdb"), str(stop)],
                              stdout=subprocess.PIPE, text=True, cwd=home)  # the file's paths are relative to it
    try:
        writer = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "run", str(photos), "--out",
                                 str(tmp_path / "o"),
                                 "--count", "2", "--level", "medium", "--images-in-flight", "1"],
                                env=env, capture_output=True, text=True, timeout=300)
        assert writer.returncode == 0, writer.stdout[-2000:] + writer.stderr[-2000:]
        time.sleep(0.5)
    finally:
        stop.touch()
        observed = [json.loads(line) for line in reader.communicate(timeout=30)[0].splitlines()]
    errors = [o for o in observed if "error" in o]
    assert errors == []
    counts = [o["images"] for o in observed]
    assert counts == sorted(counts)  # rows only ever appear
    assert counts[-1] == 10
    assert any(0 < c < 10 for c in counts), f"never saw the run half-way: {sorted(set(counts))}"


def test_score_prints_every_metric_and_the_verdict(tmp_path):
    from conftest import skimage_photo

    original = skimage_photo("chelsea.png")
    args = [str(original), str(FIXTURES / "good" / "flipped.png"), str(FIXTURES / "good" / "resized-half.png")]
    out = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "score", *args, "--json"], capture_output=True,
                         text=True)
    rows = json.loads(out.stdout)
    assert [r["index"] for r in rows] == [1, 2]
    assert rows[0]["diversity"] is None and rows[1]["diversity"] is not None
    assert rows[1]["similarity"] > 0.9 and "similarity_high" in rows[1]["reasons"]  # a resized copy
    for key in ("aesthetic", "color_variance", "contrast", "brightness_balance", "sharpness", "object_integrity",
                "overall_quality", "ahash", "phash", "dhash"):
        assert key in rows[0]
    assert out.returncode == 1  # not every variation passed
    text = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "score", *args], capture_output=True,
                          text=True).stdout
    assert "V2" in text and "rejected: " in text and "similarity_high" in text


def test_dedup_groups_near_copies_of_a_folder(tmp_path):
    import shutil

    from conftest import skimage_photo

    for name in ("flipped.png", "resized-half.png", "grey.png", "exif-rotate-6.jpg"):
        shutil.copy(FIXTURES / "good" / name, tmp_path / name)
    shutil.copy(skimage_photo("chelsea.png"), tmp_path / "chelsea.png")
    shutil.copy(skimage_photo("astronaut.png"), tmp_path / "astronaut.png")
    shutil.copy(FIXTURES / "bad" / "truncated.png", tmp_path / "broken.png")
    out = subprocess.run([sys.executable, "-m", "varflow.flows.cli", "dedup", str(tmp_path), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    groups = [[Path(p).name for p in g] for g in json.loads(out.stdout)]
    assert ["chelsea.png", "flipped.png", "grey.png",
            "resized-half.png"] in [sorted(g) for g in groups]  # a mirror is a copy
    assert not any("astronaut.png" in g for g in groups)
    assert "broken.png" in out.stderr  # unreadable files are named, not fatal
