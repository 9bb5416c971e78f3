"""People's decisions correct the gate (`varflow calibrate`, varflow/quality/fitting.py): agreement, a proposal
fitted on some source photos and measured on the others, a graded overall, and ``--apply`` putting a
versioned profile in force for later runs of the data directory."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_photo_folder, run_flow_child
from varflow.flows.cli import main
from varflow.flows.parameters import RunParameters
from varflow.storage import Store
from varflow.storage.profiles import IN_FORCE, load_profile, profile_versions

from varflow.errors import ConfigurationError
from varflow.quality import fitting
from varflow.quality.acceptance import gate
from varflow.quality.calibrated import overall_calibrated
from varflow.runtime.records import ImageRecord, ReviewRecord, RunRecord, VariationRecord
from varflow.settings import CalibratedThresholds, QualityLevel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from review_calibration import decisions  # noqa: E402  (the seeded decisions, shared with the bench)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RUN = "5eed0000-0000-4000-8000-000000000001"


def test_the_array_gate_is_the_gate_and_its_overall_the_profiles():
    rows = decisions(photos=3)
    t = CalibratedThresholds(similarity_min=0.2, similarity_max=0.9, aesthetic_min=0.6)
    s = fitting.Scores(rows)
    for r, o, a in zip(rows, fitting.overall(s, t), fitting.gate_accepts(s, t)):
        expected = overall_calibrated(similarity=r["similarity"], diversity=r["diversity"], aesthetic=r["aesthetic"],
                                      object_integrity=r["object_integrity"], thresholds=t)
        assert o == pytest.approx(expected, abs=1e-12)
        verdict = gate(similarity=r["similarity"], diversity=r["diversity"], aesthetic=r["aesthetic"],
                       object_integrity=r["object_integrity"], overall_quality=expected, thresholds=t,
                       level_min=t.overall_for(QualityLevel.MEDIUM))
        assert a == verdict.accepted


def test_auc_counts_ties_half_and_needs_both_verdicts():
    assert fitting.auc([0.2, 0.8], [False, True]) == 1.0
    assert fitting.auc([0.8, 0.2], [False, True]) == 0.0
    assert fitting.auc([0.5, 0.5, 0.5], [True, False, True]) == 0.5
    # kept 0.9, 0.5; rejected 0.5, 0.1: pairs (0.9>0.5) (0.9>0.1) (0.5=0.5: half) (0.5>0.1) -> 3.5 / 4
    assert fitting.auc([0.9, 0.5, 0.5, 0.1], [True, True, False, False]) == 0.875
    assert fitting.auc([0.3, 0.4], [True, True]) is None


def test_the_split_is_by_photo_deterministic_and_halves_them():
    ids = [f"{i:064x}" for i in range(1, 13)]
    held = fitting.held_out_photos(ids)
    assert len(held) == 6 and held == fitting.held_out_photos(list(reversed(ids)) * 2)
    assert held == {f"{i:064x}" for i in (1, 4, 5, 8, 9, 11)}


def test_calibration_on_seeded_decisions_is_measured_on_held_out_photos():
    c = fitting.calibrate(decisions(), base=CalibratedThresholds())
    assert (c.reviewed, c.scored, c.needed) == (160, 160, 0)
    assert c.agreement == pytest.approx(0.7375)  # the default gate against people, every review
    fit, held = c.splits["fit"], c.splits["held_out"]
    assert (fit["photos"], fit["reviewed"], held["photos"], held["reviewed"]) == (8, 80, 8, 80)
    proposed = c.proposed(CalibratedThresholds())["thresholds"]
    assert proposed == {"similarity_min": 0.05, "similarity_max": 0.9, "diversity_min": 0.15, "aesthetic_min": 0.6,
                        "object_integrity_min": 0.4}  # people reject below aesthetic 0.6 and copies above 0.88
    assert (fit["agreement"], fit["proposal_agreement"]) == (pytest.approx(0.725), pytest.approx(0.8125))
    assert held["agreement"] == pytest.approx(0.75)
    assert c.held_out_agreement == pytest.approx(0.8)  # the proposal on photos it never saw
    rank = c.ranking
    assert rank["overall_auc"] == pytest.approx(0.8174, abs=1e-4)
    assert rank["graded_auc"] == pytest.approx(0.9087, abs=1e-4)  # the graded overall ranks better
    assert rank["accepted"] == 29
    assert rank["overall_auc_accepted"] == pytest.approx(0.61, abs=1e-4)
    assert rank["graded_auc_accepted"] == pytest.approx(0.9, abs=1e-4)  # within accepted: higher, kept more
    # the graded overall leans on what people liked (aesthetic, colour), not on what they ignored
    weights = dict(zip(c.graded.parts, c.graded.weights))
    assert weights["aesthetic"] > 1.0 and weights["colourfulness"] > 0.5 and abs(weights["noise_excess"]) < 0.3


def test_on_other_seeds_the_proposal_does_no_worse_on_held_out_photos():
    for seed in range(1, 5):
        c = fitting.calibrate(decisions(seed=seed), base=CalibratedThresholds())
        assert c.held_out_agreement > c.splits["held_out"]["agreement"], seed
        assert c.ranking["graded_auc"] > c.ranking["overall_auc"], seed


def test_no_evidence_moves_nothing():
    rows = decisions(photos=6, per_photo=6)
    s = fitting.Scores(rows)
    for r, a in zip(rows, fitting.gate_accepts(s, CalibratedThresholds())):
        r["verdict"] = "keep" if a else "reject"  # people agree with the gate everywhere
    c = fitting.calibrate(rows, base=CalibratedThresholds())
    assert c.agreement == 1.0 and c.held_out_agreement == 1.0
    assert c.thresholds == CalibratedThresholds()


def test_too_few_reviews_say_how_many_more():
    rows = decisions(photos=3, per_photo=8)  # 24 reviews of 3 photos
    assert fitting.shortfall(rows) == 6
    assert fitting.shortfall(rows[:8]) == 22
    one_photo = [r for r in decisions(photos=4, per_photo=10) if r["image_id"] == f"{1:064x}"] * 4
    assert fitting.shortfall(one_photo) == 3  # 40 reviews, but of one photo: three more photos
    kept_only = [{**r, "verdict": "keep"} for r in decisions(photos=4, per_photo=10)]
    assert fitting.shortfall(kept_only) == 1
    c = fitting.calibrate(rows, base=CalibratedThresholds())
    assert c.needed == 6 and c.thresholds is None and c.proposed(CalibratedThresholds()) is None


# -- the command, on a store holding the seeded decisions ---------------------------------------------------

SCORE_KEYS = ("similarity", "diversity", "aesthetic", "object_integrity", "overall_quality", "structure_match",
              "visible_change", "detail_ratio", "noise_excess", "colourfulness")


def write_decisions(home, rows: list[dict]) -> Store:
    """The rows as a run and its reviews would have left them in the store."""
    store = Store(home).initialize()
    for n, image_id in enumerate(dict.fromkeys(r["image_id"] for r in rows)):
        mine = [r for r in rows if r["image_id"] == image_id]
        store.write_image_result(
            ImageRecord(RUN, image_id, f"/in/{n}.png", 64, 64, "ok", None, quality_level="medium",
                        requested=len(mine), accepted=sum(r["accepted"] for r in mine), attempts=len(mine)),
            [VariationRecord(RUN, image_id, r["variation_id"], k, "style_change", r["accepted"],
                             None if r["accepted"] else "aesthetic_low", None, None, None, None, None, "local",
                             "local-v1", "", 1, "medium", T0, profile="calibrated",
                             scores={key: r[key] for key in SCORE_KEYS}) for k, r in enumerate(mine)])
        for k, r in enumerate(mine):
            store.write_review(ReviewRecord(RUN, r["variation_id"], image_id, r["verdict"], "ana", None,
                                            T0 + timedelta(days=k % 3, minutes=n)))
    store.write_run(RunRecord(RUN, None, "{}", "/in", "/out", "local", "local-v1", T0, T0, "completed"))
    return store


@pytest.fixture(scope="module")
def seeded_home(tmp_path_factory):
    """A data directory holding the seeded decisions (written once: each review is a durable part)."""
    home = tmp_path_factory.mktemp("seeded") / "home"
    write_decisions(home, decisions())
    return home


@pytest.fixture
def home(seeded_home, tmp_path):
    """A copy of it to apply profiles in."""
    import shutil

    return Path(shutil.copytree(seeded_home, tmp_path / "home"))


def calibrate_json(home, *extra) -> dict:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["calibrate", "--json", "--home", str(home), *extra]) == 0
    return json.loads(out.getvalue())


def test_the_command_reports_the_figures_and_too_few(tmp_path, seeded_home, capsys):
    few = tmp_path / "few"
    write_decisions(few, decisions(photos=3, per_photo=8))
    report = calibrate_json(few)
    assert (report["reviewed"], report["needed"], report["proposed"], report["held_out_agreement"]) == (
        24, 6, None, None)
    assert main(["calibrate", "--home", str(few)]) == 0
    assert "6 more needed" in capsys.readouterr().out
    assert main(["calibrate", "--apply", "--home", str(few)]) == 2  # nothing to apply
    assert "nothing applied: 6 more reviews" in capsys.readouterr().err and not (few / "profiles").exists()

    home = seeded_home
    report = calibrate_json(home)
    assert {"reviewed", "agreement", "proposed", "held_out_agreement", "ranking", "splits", "needed"} <= set(report)
    assert (report["reviewed"], report["needed"], report["agreement"], report["held_out_agreement"]) == (
        160, 0, 0.7375, 0.8)  # the same figures as the core's, through the store's rows
    assert report["proposed"]["thresholds"]["aesthetic_min"] == 0.6
    assert report["ranking"]["graded_auc"] == pytest.approx(0.9087, abs=1e-4)
    assert report["splits"]["held_out"]["reviewed"] == 80 and report["applied"] is None
    assert main(["calibrate", "--home", str(home)]) == 0
    text = capsys.readouterr().out
    assert "aesthetic_min 0.5 -> 0.6" in text and "the proposal on 80.0%" in text


def test_apply_saves_versions_never_overwritten_and_a_later_run_records_it(home, tmp_path, prefect_api):
    first = calibrate_json(home, "--apply")["applied"]
    assert first["version"] == 1 and profile_versions(home) == [1]
    v1 = (home / "profiles" / "calibrated-v1.json").read_bytes()
    second = calibrate_json(home, "--apply")
    assert second["applied"]["version"] == 2 and second["in_force"]["version"] == 1
    assert (home / "profiles" / "calibrated-v1.json").read_bytes() == v1  # never overwritten
    assert json.loads((home / "profiles" / IN_FORCE).read_text())["file"] == "calibrated-v2.json"
    profile = load_profile(home)
    assert profile.version == 2 and profile.thresholds.aesthetic_min == 0.6

    make_photo_folder(tmp_path / "photos", 2, size=96)
    run_flow_child({**prefect_api, "VARFLOW_HOME": str(home)}, input_dir=str(tmp_path / "photos"),
                   output_dir=str(tmp_path / "out"), home=str(home), count=1, seed=3, level="low",
                   images_in_flight=1)
    rows = Store(home).query("SELECT profile_version, graded_overall, profile FROM variations WHERE run_id <> ?",
                             [RUN])
    scored = [r for r in rows if r["profile"] == "calibrated"]
    assert scored and all(r["profile_version"] == 2 for r in scored)
    assert all(0 < r["graded_overall"] < 1 for r in scored)


def test_the_profile_judges_only_runs_that_leave_the_calibrated_thresholds_alone(home):
    assert main(["calibrate", "--apply", "--home", str(home)]) == 0
    profile = load_profile(home)
    plain = RunParameters(input_dir="in")
    assert plain.settings() == plain.settings(None)  # no profile: exactly as before
    assert (plain.settings().profile_version, plain.settings().graded) == (None, None)
    applied = plain.settings(profile)
    assert (applied.profile_version, applied.calibrated, applied.graded) == (1, profile.thresholds, profile.graded)
    assert RunParameters(input_dir="in", profile="seed").settings(profile).profile_version is None
    own = RunParameters(input_dir="in", calibrated_thresholds={"aesthetic_min": 0.45})
    assert own.settings(profile).profile_version is None and own.settings(profile).calibrated.aesthetic_min == 0.45


def test_a_damaged_profile_stops_with_a_line_naming_it(tmp_path):
    home = tmp_path / "home"
    (home / "profiles").mkdir(parents=True)
    (home / "profiles" / IN_FORCE).write_text('{"file": "calibrated-v1.json"}')
    (home / "profiles" / "calibrated-v1.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="calibrated-v1.json.*remove it to run with the default"):
        load_profile(home)
    (home / "profiles" / IN_FORCE).write_text('{"file": "../../etc/passwd"}')
    with pytest.raises(ConfigurationError, match="pointer"):
        load_profile(home)
