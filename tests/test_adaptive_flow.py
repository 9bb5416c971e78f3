"""The adaptive level drives the pipeline, is recorded, and outlives the run."""

from __future__ import annotations

from conftest import make_photo_folder
from varflow.flows.parameters import CalibratedForm, RunParameters
from varflow.flows.variation_flow import run_local
from varflow.storage import Store


def test_forced_failures_step_the_level_down_and_shrink_the_work(prefect_server, tmp_path):
    photos = tmp_path / "photos"
    make_photo_folder(photos, 11, size=2400)  # larger than every level's max side
    home = tmp_path / "home"
    never = CalibratedForm(overall_min=1.0)  # nothing can pass: the overall is never a perfect 1
    params = RunParameters(input_dir=str(photos), output_dir=str(tmp_path / "out"), home=str(home),
                           count=1, calibrated_thresholds=never, images_in_flight=1, generation_concurrency=1,
                           variation_type="style_change")  # never fails to generate: every attempt is judged
    summary = run_local(params)
    store = Store(home)

    images = store.query("SELECT quality_level, optimized_width, optimized_height, attempts, success_rate "
                         "FROM images ORDER BY started_at")
    # five failures at high -> medium; five more, judged at medium alone -> low
    assert [r["quality_level"] for r in images] == ["high"] * 5 + ["medium"] * 5 + ["low"]
    assert [max(r["optimized_width"], r["optimized_height"]) for r in images] == [2048] * 5 + [1536] * 5 + [1024]
    assert [r["attempts"] for r in images] == [3] * 5 + [2] * 5 + [1]  # count x the level's attempts
    assert all(r["success_rate"] == 0.0 for r in images)

    changes = store.query("SELECT from_level, to_level, window_average, reason, scope, image_id "
                          "FROM quality_level_changes ORDER BY changed_at")
    assert [(c["from_level"], c["to_level"]) for c in changes] == [("high", "medium"), ("medium", "low")]
    assert all(c["window_average"] == 0.0 and c["scope"] == "local/local-v1" for c in changes)
    assert "< 0.5 at high" in changes[0]["reason"] and "< 0.3 at medium" in changes[1]["reason"]
    triggering = store.query("SELECT image_id FROM images ORDER BY started_at")
    assert [c["image_id"] for c in changes] == [triggering[4]["image_id"], triggering[9]["image_id"]]

    # the level in force is on every variation and attempt
    by_level = store.query("SELECT v.quality_level, count(*) AS n FROM variations v GROUP BY ALL ORDER BY 1")
    assert {r["quality_level"]: r["n"] for r in by_level} == {"high": 15, "medium": 10, "low": 1}
    assert store.query("SELECT count(*) AS n FROM attempts a JOIN variations v USING (run_id, variation_id) "
                       "WHERE a.quality_level <> v.quality_level") == [{"n": 0}]
    assert summary["final_level"] == "low" and summary["level_changes"] == 2

    # tomorrow's run starts where today's ended
    more = tmp_path / "more"
    make_photo_folder(more, 1, size=800)
    run_local(params.model_copy(update={"input_dir": str(more)}))
    last = store.query("SELECT quality_level FROM images i JOIN runs r USING (run_id) "
                       "WHERE r.input_dir = ? AND i.status = 'ok'", [str(more.resolve())])
    assert last == [{"quality_level": "low"}]


def test_an_explicit_level_is_recorded_and_carried_into_the_next_run(prefect_server, tmp_path):
    home = tmp_path / "home"
    photos = make_photo_folder(tmp_path / "photos", 3, size=600)
    store = Store(home)

    def run_one(photo, **kw):
        folder = tmp_path / photo.stem
        folder.mkdir()
        photo.rename(folder / photo.name)
        run_local(RunParameters(input_dir=str(folder), output_dir=str(tmp_path / "out"), home=str(home),
                                count=1, adaptive=False, **kw))

    run_one(photos[0], level="low")
    run_one(photos[1])  # names no level: goes on at low
    run_one(photos[2], level="medium")
    assert [r["quality_level"] for r in store.query("SELECT quality_level FROM images ORDER BY started_at")] == [
        "low", "low", "medium"]
    changes = store.query("SELECT from_level, to_level, reason FROM quality_level_changes ORDER BY changed_at")
    assert [(c["from_level"], c["to_level"]) for c in changes] == [("high", "low"), ("low", "medium")]
    assert all(c["reason"] == "set by the run's level parameter" for c in changes)
