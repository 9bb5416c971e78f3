"""The deployment definition and the flow's form: schedules, parameters, the report's parts (no server)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from varflow.deployments.serve import cron_schedule, deployment, interval_schedule
from varflow.flows.parameters import (
    FORM_FIELDS,
    PAID_FIELDS,
    PaidBackendOptions,
    RunParameters,
    form_values,
    run_parameters,
)
from varflow.flows.report import LOW_ACCEPTANCE_SHARE, RunSummary, image_line, image_row

from varflow.processing.pipeline import ImageOutcome


def _schema():
    from prefect.utilities.callables import parameter_schema
    from varflow.flows.variation_flow import variation_run

    return parameter_schema(variation_run).model_dump_for_openapi()


def test_each_setting_is_its_own_parameter_with_its_default_bounds_and_enum():
    schema = _schema()
    props = schema["properties"]
    assert list(props) == list(FORM_FIELDS) and schema["required"] == ["input_dir"]
    assert not set(PAID_FIELDS) & set(props), "the paid backends' settings sit in their own group"
    assert props["count"]["default"] == RunParameters.model_fields["count"].default == 4
    assert (props["count"]["minimum"], props["count"]["maximum"]) == (1, 64)
    assert props["level"]["enum"] == ["auto", "high", "medium", "low"] and props["level"]["default"] == "auto"
    assert set(props["backend"]["enum"]) == {"local", "gemini", "gemini-batch"}
    assert props["profile"]["enum"] == ["calibrated", "seed"]
    assert "object_remove" in props["variation_type"]["enum"]
    assert len(props["extensions"]["default"]) == 7, "the form shows the extensions that apply"
    paid = schema["definitions"]["PaidBackendOptions"]["properties"]
    assert set(paid) == set(PAID_FIELDS) and paid["requests_per_minute"]["default"] == 0
    text = json.dumps(schema)
    assert "`" not in text, "descriptions are plain text (the UI shows markup raw)"
    assert '"null"' not in text and "anyOf" not in text, "no 'X | None' switch in the form"
    assert all(p.get("description") for p in props.values())


def test_form_values_round_trip_and_zero_means_no_limit():
    params = RunParameters(input_dir="/in", count=3, level="low", requests_per_minute=30, max_cost_usd=None)
    assert run_parameters(form_values(params)) == params
    assert run_parameters(json.loads(json.dumps(form_values(params, json=True)))) == params
    assert form_values(params, json=True, exclude_defaults=True) == {
        "input_dir": "/in", "count": 3, "level": "low", "paid_backend": {"requests_per_minute": 30.0}}
    assert run_parameters({"input_dir": "/in", "paid_backend": {"max_cost_usd": 0}}).max_cost_usd is None
    assert run_parameters({"input_dir": "/in",
                           "paid_backend": PaidBackendOptions(max_cost_usd=0.5)}).max_cost_usd == 0.5
    with pytest.raises(ValueError, match="max_cost_usd"):  # so the form's 0 (no cap) is never a real cap
        RunParameters(input_dir="/in", max_cost_usd=0)
    assert RunParameters(input_dir="x").start_level is None and RunParameters(input_dir="x",
                                                                              level="low").start_level == "low"


def test_the_deployment_has_two_schedules_with_their_own_parameters_and_runs_one_at_a_time():
    params = RunParameters(input_dir="/data/photos", output_dir="/data/variations", count=3)
    nightly = cron_schedule("0 2 * * *", tz="Europe/Berlin", params=params,
                            overrides={"variation_type": "style_change"})
    hourly = interval_schedule(3600, params=params, overrides={"input_dir": "/data/inbox", "count": 1})
    d = deployment(name="nightly", params=params, schedules=[nightly, hourly])
    assert d.name == "nightly" and d.flow_name == "varflow-run" and d.enforce_parameter_schema
    assert d.parameters == {"input_dir": "/data/photos", "output_dir": "/data/variations", "count": 3}
    cron, every = d.schedules
    assert (cron.schedule.cron, cron.schedule.timezone, cron.parameters) == (
        "0 2 * * *", "Europe/Berlin", {"variation_type": "style_change"})
    assert every.schedule.interval.total_seconds() == 3600
    assert every.parameters == {"input_dir": "/data/inbox", "count": 1}
    assert every.schedule.anchor_date > datetime.now(UTC), "serving does not start a run at once"
    assert d.concurrency_limit == 1 and d.concurrency_options.collision_strategy == "ENQUEUE"


@pytest.mark.parametrize("overrides, message", [
    ({"count": 0}, "count"), ({"level": "extreme"}, "level"), ({"colour": "red"}, "unknown parameter"),
    ({"paid_backend": {"retries": -1}}, "retries"),
])
def test_a_bad_schedule_is_refused_when_defined(overrides, message):
    with pytest.raises(ValueError, match=message):
        interval_schedule(60, params=RunParameters(input_dir="/in"), overrides=overrides)


def test_varflow_serve_dry_run_prints_the_deployment_and_refuses_bad_settings(tmp_path):
    cmd = [sys.executable, "-m", "varflow.flows.cli", "serve", str(tmp_path), "--out", "out", "--count", "2",
           "--every", "600", "--every-set", "count=1", "--every-set", "prompt=a snowy day", "--dry-run"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["parameters"] == {"input_dir": str(tmp_path), "output_dir": str((tmp_path.cwd() / "out").resolve()),
                               "count": 2}, "folders are absolute: a run must not follow the serving directory"
    assert (d["concurrency_limit"], d["collision_strategy"]) == (1, "ENQUEUE")
    assert [(s["slug"], s["parameters"]) for s in d["schedules"]] == [
        ("nightly", {}), ("interval", {"count": 1, "prompt": "a snowy day"})]
    bad = subprocess.run(cmd[:-4] + ["--every-set", "count=0", "--dry-run"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "count" in bad.stderr


def _outcome(**kw) -> ImageOutcome:
    base = dict(path="/in/astronaut.png", image_id="i1", status="ok", quality_level="high", accepted=4, attempts=6,
                rejected={"below_level_threshold": 2})
    return ImageOutcome(**{**base, **kw})


def test_one_log_line_per_image_says_what_happened():
    assert image_line(image_row(_outcome(),
                                3.14)) == "astronaut.png: 4 accepted of 6 attempts, 2 below level threshold, 3.1 s"
    row = image_row(_outcome(accepted=1, attempts=4, rejected={"duplicate": 1}, generation_failures=2), 0.5)
    assert image_line(row) == "astronaut.png: 1 accepted of 4 attempts, 1 duplicate, 2 without an image, 0.5 s"
    assert row["rejected"] == 1
    err = image_row(ImageOutcome("/in/bad.png", None, "error", "not an image"), 0.0)
    assert image_line(err) == "bad.png: error (not an image)"


def _summary(accepted: int, requested: int) -> RunSummary:
    s = RunSummary(run_id="r1", status="completed", input_dir="/in", output_dir="/out", home="/h",
                   duckdb_path="/h/varflow.duckdb", backend="local", model="local-v1",
                   variations_accepted=accepted, variations_requested=requested, attempts=requested * 2,
                   cost_usd=0.039, calls=12)
    s.images = [image_row(_outcome(), 3.1)]
    s.level_history = ["after coffee.png: high -> medium (window average 0.41 under 0.5)"]
    return s


def test_the_report_warns_when_a_run_accepted_nothing_or_under_a_fifth():
    assert LOW_ACCEPTANCE_SHARE == 0.2
    assert _summary(0, 18).warning == "accepted nothing of 18 variations asked for (36 attempts)"
    assert "only 3 of 18" in _summary(3, 18).warning  # 3 < 0.2 * 18
    assert _summary(4, 18).warning is None and _summary(0, 0).warning is None  # nothing asked (nothing new)
    md = _summary(0, 18).render_markdown()
    assert "> **Warning:** this run accepted nothing of 18" in md
    assert "warning      this run accepted nothing" in _summary(0, 18).render_text()
    assert "Warning" not in _summary(10, 18).render_markdown()


def test_the_report_has_the_per_image_breakdown_cost_and_level_changes():
    md = _summary(10, 18).render_markdown()
    assert "| estimated cost | $0.0390 (12 calls) |" in md
    assert "## Images" in md and "| astronaut.png | ok | high | 4 | 6 | 2 below level threshold | 0 | 3.1 |  |" in md
    assert "## Quality level changes\n\n- after coffee.png: high -> medium" in md


def test_the_finished_event_carries_the_counts_and_labels_automations_match():
    from varflow.flows.publish import FINISHED_EVENT, finished_event

    e = finished_event(_summary(0, 18), "budget", "fr-1")
    assert e["event"] == FINISHED_EVENT == "varflow.run.finished"
    assert e["resource"]["prefect.resource.id"] == "varflow.run.r1"
    assert (e["resource"]["varflow.warning"], e["resource"]["varflow.stop"]) == ("nothing-accepted", "budget")
    assert e["payload"]["variations_requested"] == 18 and e["payload"]["variations_accepted"] == 0
    assert e["related"] == [{"prefect.resource.id": "prefect.flow-run.fr-1", "prefect.resource.role": "flow-run"}]
    assert finished_event(_summary(3, 18), None, None)["resource"]["varflow.warning"] == "low-acceptance"
    assert finished_event(_summary(9, 18), None, None)["resource"]["varflow.warning"] == "none"
