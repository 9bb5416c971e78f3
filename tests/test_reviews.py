"""A person's keep or reject (flows/review.py, `varflow review mark`): the ``reviews`` table, the
``variation_status`` view, and the files that follow the decision, on the records of a real run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_photo_folder, run_flow_child
from varflow.flows.review import apply_review, reviewer_name
from varflow.storage import Store

from varflow.errors import InputError

OPEN_GATE = dict(similarity_min=0, similarity_max=1, diversity_min=0, aesthetic_min=0,
                 object_integrity_min=0, overall_min=0)


@pytest.fixture(scope="module")
def reviewed_run(prefect_api, tmp_path_factory) -> dict:
    """Two small photos, count 2, level low, the seed profile's gate open but for overall quality: two
    accepted and two rejected variations (measured); rejected files deleted, so only the generation cache
    still has them."""
    base = tmp_path_factory.mktemp("reviews")
    make_photo_folder(base / "photos", 2, size=96)
    home, out = base / "home", base / "out"
    summary = run_flow_child({**prefect_api, "VARFLOW_HOME": str(home)}, input_dir=str(base / "photos"),
                             output_dir=str(out), home=str(home), count=2, seed=3, level="low",
                             images_in_flight=1, profile="seed", thresholds={**OPEN_GATE, "overall_min": 0.54})
    store = Store(home).initialize()
    rows = store.query("SELECT * FROM variations ORDER BY variation_id")
    accepted = [r for r in rows if r["accepted"]]
    assert len(accepted) >= 2 and len(accepted) < len(rows), summary  # the tests take distinct variations
    return {"home": home, "out": out, "store": store, "rows": rows}


def _status(store: Store, variation_id: str, run_id: str | None = None) -> dict:
    rows = store.query("SELECT * FROM variation_status WHERE variation_id = ? AND starts_with(run_id, ?)",
                       [variation_id, run_id or ""])
    assert len(rows) == 1, rows
    return rows[0]


def test_reject_moves_an_accepted_file_aside_and_keep_brings_it_back_under_its_name(reviewed_run):
    store, out = reviewed_run["store"], reviewed_run["out"]
    row = next(r for r in reviewed_run["rows"] if r["accepted"])
    first = Path(row["output_path"])
    body = first.read_bytes()

    done = apply_review(store, row["variation_id"][:10], "reject", reviewer="ana", note="too dark")
    aside = out / "_rejected" / first.name
    assert done.file_path == str(aside) and not first.exists() and aside.read_bytes() == body
    status = _status(store, row["variation_id"])
    assert (status["accepted"], status["verdict"], status["final_accepted"], status["agrees"]) == (
        True, "reject", False, False)  # the run's decision stays; the person's is in force
    assert status["final_path"] == str(aside) and status["reviewer"] == "ana" and status["review_note"] == "too dark"

    done = apply_review(store, row["variation_id"], "keep", reviewer="ben")
    assert done.file_path == str(first) and first.read_bytes() == body and not aside.exists()
    assert [r["verdict"] for r in store.review_history(row["variation_id"], row["run_id"])] == ["keep", "reject"]
    assert _status(store, row["variation_id"])["final_accepted"] is True


def test_keep_of_a_deleted_rejection_takes_it_from_the_cache_under_the_next_free_name(reviewed_run):
    store, out = reviewed_run["store"], reviewed_run["out"]
    row = next(r for r in reviewed_run["rows"] if not r["accepted"])
    assert row["output_path"] is None and row["cache_key"]  # deleted by the run; the cache holds it
    prefix = row["name_prefix"]
    siblings = sorted(p.name for p in out.glob(f"{prefix}-v*.png"))
    squatter = out / f"{prefix}-v{len(siblings) + 1:02d}.png"  # a file nobody recorded takes the next name
    squatter.write_bytes(b"not ours")

    done = apply_review(store, row["variation_id"], "keep", reviewer="ana")
    kept = Path(done.file_path)
    # past the squatter and past the numbers a redo of the image would use again (v01 to its count, 2)
    assert kept.parent == out and kept.name == f"{prefix}-v{max(len(siblings) + 1, 2) + 1:02d}.png"
    assert squatter.read_bytes() == b"not ours"  # never overwritten
    assert kept.stat().st_size > 1000 and _status(store, row["variation_id"])["final_path"] == str(kept)
    # keeping it again moves nothing
    again = apply_review(store, row["variation_id"], "keep", reviewer="ana")
    assert again.file_path == str(kept) and "stays" in again.message


def test_a_decision_on_a_file_that_is_gone_is_recorded_and_says_so(reviewed_run):
    store = reviewed_run["store"]
    row = [r for r in reviewed_run["rows"] if r["accepted"]][-1]
    Path(row["output_path"]).unlink()  # someone deleted the accepted file by hand
    done = apply_review(store, row["variation_id"], "reject", reviewer="ana")
    assert done.file_path is None and "gone" in done.message
    status = _status(store, row["variation_id"])
    assert (status["verdict"], status["final_accepted"], status["final_path"]) == ("reject", False, None)


def test_unknown_ambiguous_and_malformed_ids_are_refused(reviewed_run):
    store = reviewed_run["store"]
    with pytest.raises(InputError, match="no variation"):
        apply_review(store, "ffffff0000", "keep", reviewer="ana")
    with pytest.raises(InputError, match="not a variation id"):
        apply_review(store, "'; DROP TABLE reviews; --", "keep", reviewer="ana")
    with pytest.raises(InputError, match="neither"):
        apply_review(store, reviewed_run["rows"][0]["variation_id"], "maybe", reviewer="ana")


def test_mark_from_the_command_line(reviewed_run):
    row = next(r for r in reviewed_run["rows"] if r["accepted"])
    env = {**os.environ, "VARFLOW_REVIEWER": "carla\x1b[2J"}
    cmd = [sys.executable, "-m", "varflow.flows.cli", "review", "mark", "--home", str(reviewed_run["home"])]
    done = subprocess.run([*cmd, row["variation_id"][:12], "keep", "--note", "fine"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "keep recorded" in done.stdout, done.stderr
    latest = reviewed_run["store"].review_history(row["variation_id"], row["run_id"])[0]
    assert latest["reviewer"] == "carla[2J" and latest["note"] == "fine"  # no control character is kept
    bad = subprocess.run([*cmd, "0123456789", "keep"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no variation 0123456789" in bad.stderr and bad.stderr.count("\n") == 1


def test_reviewer_name_comes_from_the_flag_then_the_environment(monkeypatch):
    monkeypatch.setenv("VARFLOW_REVIEWER", "  dana \n x ")
    assert reviewer_name("eve") == "eve" and reviewer_name() == "dana x"
    monkeypatch.delenv("VARFLOW_REVIEWER")
    assert reviewer_name()  # the login name


def test_reviews_are_never_compacted_away_and_an_older_store_reads_without_them(reviewed_run, tmp_path):
    store = reviewed_run["store"]
    row = reviewed_run["rows"][0]
    apply_review(store, row["variation_id"], "keep", reviewer="ana")
    store.compact_run(row["run_id"])  # a run compacting after a review (a live run's gallery)
    assert store.review_history(row["variation_id"], row["run_id"])
    assert not list((store.tables_dir / "reviews").glob("*/compacted*"))

    older = tmp_path / "older"
    shutil.copytree(reviewed_run["home"], older, ignore=shutil.ignore_patterns("reviews", "varflow.duckdb*"))
    lens = Store(older).lens()  # a data directory whose last run predates the table
    assert lens.execute("SELECT count(*) FROM reviews").fetchone() == (0,)
    assert lens.execute("SELECT count(*) FILTER (WHERE final_accepted = accepted) = count(*) FROM variation_status"
                    ).fetchone() == (True,)


def test_a_variation_made_by_two_runs_is_decided_per_run(prefect_api, tmp_path):
    """A second run over the same photos into another folder (--force: the first finished them) makes the same
    variation ids (here a duplicate of the first run's file, so it wrote none): a decision names its run
    (refused without one: the latest row alone once recorded "gone" while the file sat in the first folder)."""
    make_photo_folder(tmp_path / "photos", 1, size=96)
    home = tmp_path / "home"
    for out, force in (("out1", False), ("out2", True)):
        run_flow_child({**prefect_api, "VARFLOW_HOME": str(home)}, input_dir=str(tmp_path / "photos"),
                       output_dir=str(tmp_path / out), home=str(home), count=1, seed=3, level="low",
                       profile="seed", thresholds=OPEN_GATE, force=force)
    store = Store(home).initialize()
    rows = store.query("SELECT variation_id, run_id, accepted, output_path FROM variations WHERE variation_id IN "
                       "(SELECT variation_id FROM variations GROUP BY ALL HAVING count(DISTINCT run_id) = 2) "
                       "ORDER BY created_at")
    assert len(rows) == 2 and rows[0]["accepted"] and rows[0]["output_path"], rows
    first, second = rows
    with pytest.raises(InputError, match="several runs"):
        apply_review(store, first["variation_id"], "reject", reviewer="ana")
    done = apply_review(store, first["variation_id"], "reject", reviewer="ana", run_id=first["run_id"][:8])
    assert Path(done.file_path) == tmp_path / "out1" / "_rejected" / Path(first["output_path"]).name
    assert Path(done.file_path).is_file() and not Path(first["output_path"]).exists()
    assert _status(store, first["variation_id"], first["run_id"])["final_accepted"] is False
    assert _status(store, first["variation_id"], second["run_id"])["verdict"] is None  # the other run's row


def test_a_file_system_without_hard_links_still_moves_without_overwriting(tmp_path, monkeypatch):
    """exFAT, some SMB and FUSE mounts refuse os.link: the name is claimed by an exclusive create instead."""
    import errno

    from varflow.flows import review

    def no_links(*_):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(review.os, "link", no_links)
    (tmp_path / "out").mkdir()
    src, dest = tmp_path / "a.png", tmp_path / "out" / "a.png"
    src.write_bytes(b"ours")
    review._move(src, dest, copy=False)
    assert dest.read_bytes() == b"ours" and not src.exists()
    src.write_bytes(b"second")
    with pytest.raises(FileExistsError):
        review._move(src, dest, copy=False)
    assert dest.read_bytes() == b"ours" and src.read_bytes() == b"second"  # neither lost nor overwritten
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".review-")]


def test_a_source_in_a_subfolder_is_shown_and_kept_under_rejected(tmp_path):
    from varflow.reports.gallery import review_facts

    out = tmp_path / "out"
    facts = review_facts({"final_path": str(out / "_rejected" / "sub" / "photo-abcdef12-a03-x.png"),
                          "accepted": False}, str(out))
    assert facts["place"].startswith("in _rejected/"), facts


def test_no_decision_moves_a_file_while_a_run_makes_variations_of_its_image(reviewed_run):
    """A run holds the image's claim while it writes that image's files; a decision then would race it for
    a name (or a redo would write over a kept file): it is refused in one line, nothing recorded or moved."""
    from varflow.runtime.claims import ImageClaims

    store = reviewed_run["store"]
    row = next(r for r in reviewed_run["rows"] if r["accepted"])
    before = len(store.review_history(row["variation_id"], row["run_id"]))
    run = ImageClaims(store.home / "claims", "a-live-run")
    assert run.claim(row["image_id"])
    try:
        with pytest.raises(InputError, match="a run is making variations of this image now"):
            apply_review(store, row["variation_id"], "reject", reviewer="ana")
    finally:
        run.release(row["image_id"])
    assert len(store.review_history(row["variation_id"], row["run_id"])) == before
    apply_review(store, row["variation_id"], "keep", reviewer="ana")  # the run has ended: it goes through
