"""Everything downstream of a review reads the final status (``variation_status``): the next run of the
folder tops up what people left below ``--count`` (new attempts only, never what a person decided), a kept
file holds its name, ``--dedup-library`` and the contact sheet follow people, ``varflow runs`` shows the
run's figures and the figures after review. One real run through the flow, reviews, then the next runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_photo_folder, run_flow_child
from varflow.flows.parameters import RunParameters
from varflow.flows.plan import plan_run
from varflow.flows.review import apply_review
from varflow.storage import Store

from varflow.processing.outnames import held_stems

# The seed profile's gates open but overall: with this seed one photo's second style change (0.41) is
# rejected, and the next attempt the top-up makes (0.43) accepted.
GATE = dict(similarity_min=0, similarity_max=1, diversity_min=0, aesthetic_min=0,
            object_integrity_min=0, overall_min=0.42)


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "varflow.flows.cli", *args, "--home", str(home)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "VARFLOW_HOME": str(home)})


@pytest.fixture(scope="module")
def reviewed(prefect_api, tmp_path_factory) -> dict:
    """A run of two small photos (count 2, level low: one attempt per variation, the gate at overall), then
    people's decisions on photo A: its accepted variations rejected, a gate-rejected one kept. A stands
    at 1 of 2; B, untouched, at what the run left."""
    base = tmp_path_factory.mktemp("review-final")
    make_photo_folder(base / "photos", 2, size=96)
    home, out = base / "home", base / "out"
    params = dict(input_dir=str(base / "photos"), output_dir=str(out), home=str(home), count=2, seed=3,
                  level="low", images_in_flight=1, profile="seed", thresholds=GATE,
                  variation_type="style_change")  # the local backend makes one from any photo
    env = {**prefect_api, "VARFLOW_HOME": str(home)}
    first = run_flow_child(env, **params)
    store = Store(home).initialize()
    rows = store.query("SELECT * FROM variations ORDER BY image_id, attempt")
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(r["image_id"], []).append(r)
    a = next(i for i, vs in by_image.items() if any(v["accepted"] for v in vs) and not all(
        v["accepted"] for v in vs))  # accepted ones, and a rejected one the cache still has
    b = next(i for i in by_image if i != a)
    accepted_a = [v for v in by_image[a] if v["accepted"]]
    rejected = [apply_review(store, v["variation_id"], "reject", reviewer="ana", note="not the look")
                for v in accepted_a]
    kept_row = next(v for v in by_image[a] if not v["accepted"])
    kept = apply_review(store, kept_row["variation_id"], "keep", reviewer="ana")
    return {"home": home, "out": out, "env": env, "params": params, "store": store, "first": first, "a": a,
            "b": b, "rows": rows, "accepted_a": accepted_a, "kept": kept, "kept_row": kept_row,
            "rejected_files": {Path(r.file_path): (Path(r.file_path).read_bytes(), Path(r.file_path).stat().st_mtime_ns)
                               for r in rejected}}


def test_downstream_reads_see_the_final_status(reviewed):
    store, out, kept = reviewed["store"], reviewed["out"], reviewed["kept"]
    rejected_ids = {v["variation_id"] for v in reviewed["accepted_a"]}
    kept_id = reviewed["kept_row"]["variation_id"]
    # the contact sheet's and the name guard's rows: the kept one at its new name, the rejected ones gone
    sheet = store.accepted_by_source(out)
    assert kept.file_path in {r["output_path"] for r in sheet}
    assert not {str(p) for p in reviewed["rejected_files"]} & {r["output_path"] for r in sheet}
    assert all(not r["output_path"].startswith(str(out / "_rejected")) for r in sheet)
    # --dedup-library: a person-rejected variation no longer blocks a similar new one; a kept one does
    library = store.accepted_library()
    assert kept_id in library["variation_id"] and not rejected_ids & set(library["variation_id"])
    assert library["output_path"][library["variation_id"].index(kept_id)] == kept.file_path
    earlier = store.accepted_variations([reviewed["a"]])[reviewed["a"]]
    assert [r["variation_id"] for r in earlier] == [kept_id] and earlier[0]["output_path"] == kept.file_path
    # the kept file's name is held by its source; a source whose every variation people rejected holds none
    held = held_stems(sheet, out)
    source_a = next(r["source_path"] for r in sheet if r["output_path"] == kept.file_path)
    assert any(source_a in srcs for srcs in held.values())


def test_the_dry_run_counts_only_the_missing_variation(reviewed):
    plan = plan_run(RunParameters(**reviewed["params"]))
    assert (plan["images_to_do"], plan["images_topped_up"], plan["variations_to_do"]) == (1, 1, 1)
    assert plan["calls_worst_case"] == 1 * plan["max_attempts_per_variation"] * plan["max_tries_per_attempt"]
    assert plan["images_already_done"] == 1


def test_runs_shows_the_gate_and_the_people(reviewed):
    first = reviewed["first"]
    done = _cli("runs", "--json", home=reviewed["home"])
    assert done.returncode == 0, done.stderr
    run = next(r for r in json.loads(done.stdout) if r["run_id"] == first["run_id"])
    assert run["accepted"] == first["variations_accepted"]  # as the run decided, whatever people said
    n = len(reviewed["accepted_a"])
    assert (run["reviewed"], run["kept_by_people"], run["rejected_by_people"]) == (n + 1, 1, n)
    assert run["accepted_after_review"] == first["variations_accepted"] - n + 1
    text = _cli("runs", home=reviewed["home"])
    assert "after review" in text.stdout and "reviewed" in text.stdout, text.stdout
    line = next(x for x in text.stdout.splitlines() if x.startswith(first["run_id"][:8]))
    assert f" {first['variations_accepted']} " in line and f" {first['variations_accepted'] - n + 1} " in line
    stats = _cli("stats", first["run_id"][:8], home=reviewed["home"])
    assert f"{n + 1} by people: 1 kept that the gate rejected, {n} rejected that it accepted" in stats.stdout, \
        stats.stdout


@pytest.fixture(scope="module")
def topped_up(reviewed) -> dict:
    """The next run of the folder with the same parameters, then one more."""
    second = run_flow_child(reviewed["env"], **reviewed["params"])
    third = run_flow_child(reviewed["env"], **reviewed["params"])
    return {"second": second, "third": third}


def test_the_next_run_tops_up_only_the_missing_one_with_new_ids(reviewed, topped_up):
    store, second, a = reviewed["store"], topped_up["second"], reviewed["a"]
    # exactly the missing one asked for, in one attempt (level low: one attempt per variation)
    assert (second["images_topped_up"], second["variations_requested"], second["attempts"]) == (1, 1, 1)
    assert "topped up 1 image" in second["message"]
    new = store.query("SELECT * FROM variation_status WHERE run_id = ? ORDER BY attempt", [second["run_id"]])
    assert new and {v["image_id"] for v in new} == {a}
    earlier = [v for v in reviewed["rows"] if v["image_id"] == a]
    assert min(v["attempt"] for v in new) > max(v["attempt"] for v in earlier)  # new attempts: new ids, new seeds
    assert not {v["variation_id"] for v in new} & {v["variation_id"] for v in reviewed["rows"]}
    assert not {v["seed"] for v in new} & {v["seed"] for v in earlier}
    # a call only for A: B stands at what its run left, and is skipped as done
    calls = store.query("SELECT DISTINCT image_id FROM attempts WHERE run_id = ?", [second["run_id"]])
    assert [c["image_id"] for c in calls] == [a]
    assert store.query("SELECT status FROM images WHERE run_id = ? AND image_id = ?",
                       [second["run_id"], reviewed["b"]])[0]["status"] == "skipped"
    # the new file takes a name past every name A's variations were given: the kept one's stays its own
    k = max(len(reviewed["accepted_a"]), 2) + 1  # a kept file's number: past the run's own, v01 to its count (2)
    kept = Path(reviewed["kept"].file_path)
    prefix = Path(reviewed["kept_row"]["name_prefix"]).name
    assert kept.name == f"{prefix}-v{k:02d}.png" and kept.is_file()
    assert second["variations_accepted"] == 1, second  # the seed's attempt passes the open gate
    assert Path(new[0]["output_path"]).name == f"{prefix}-v{k + 1:02d}.png" and Path(new[0]["output_path"]).is_file()
    standing = store.query("SELECT count(DISTINCT variation_id) AS n FROM variation_status "
                           "WHERE image_id = ? AND final_accepted", [a])
    assert standing[0]["n"] == 2
    # the rejected files stay in _rejected/ as they were
    for path, (body, mtime) in reviewed["rejected_files"].items():
        assert path.parent.name == "_rejected" and path.read_bytes() == body and path.stat().st_mtime_ns == mtime


def test_a_topped_up_folder_is_done(reviewed, topped_up):
    third = topped_up["third"]
    assert third["images_topped_up"] == 0 and third["attempts"] == 0 and "nothing new" in third["message"]
    assert plan_run(RunParameters(**reviewed["params"]))["images_to_do"] == 0


def test_the_contact_sheet_shows_the_kept_one_and_not_the_rejected(reviewed, topped_up, tmp_path):
    from varflow.flows.cli.run import write_contact_sheet

    params = RunParameters(**reviewed["params"])
    rows = reviewed["store"].accepted_by_source(reviewed["out"])
    shown = {r["output_path"] for r in rows}
    assert reviewed["kept"].file_path in shown and not shown & {str(p) for p in reviewed["rejected_files"]}
    sheet = write_contact_sheet(params, tmp_path / "sheet.png")
    assert sheet is not None and sheet.stat().st_size > 1000
