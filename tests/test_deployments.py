"""The deployment definition: schedule, parameters and the UI form they make."""

from deployments.nightly import build
from flows.parameters import RunParameters


def test_nightly_deployment_has_its_schedule_and_parameters():
    params = RunParameters(input_dir="/data/photos", output_dir="/data/variations", count=3)
    d = build(name="nightly", params=params, cron="0 2 * * *", timezone="Europe/Berlin")
    assert d.name == "nightly" and d.flow_name == "varflow-run"
    (schedule,) = d.schedules
    assert schedule.schedule.cron == "0 2 * * *" and schedule.schedule.timezone == "Europe/Berlin"
    assert d.parameters == {"params": {"input_dir": "/data/photos", "output_dir": "/data/variations", "count": 3}}


def test_the_ui_form_is_typed_with_defaults_and_descriptions():
    from prefect.utilities.callables import parameter_schema

    from flows.variation_flow import variation_run

    d = build(name="ui-only", params=RunParameters(input_dir="/data/photos"))
    assert d.schedules == [] and d.enforce_parameter_schema
    schema = parameter_schema(variation_run).model_dump()
    run_params = schema["definitions"]["RunParameters"]["properties"]
    assert run_params["count"]["default"] == 4 and run_params["count"]["maximum"] == 64
    assert "description" in run_params["prompt"]
    assert set(run_params["backend"]["enum"]) == {"local", "gemini", "gemini-batch"}
    assert "input_dir" in schema["definitions"]["RunParameters"]["required"]
