"""Every default has one home: parameters and the CLI read the core settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from varflow.flows.cli import build_parser
from varflow.flows.parameters import CalibratedForm, RunParameters, Thresholds

from varflow.settings import CalibratedThresholds, DedupSettings, LoadLimits, QualityThresholds, Settings


def test_run_parameters_defaults_are_the_core_settings():
    settings = RunParameters(input_dir="in").settings()
    assert settings == Settings()
    assert settings.dedup == DedupSettings()  # the run's duplicates are the measured ones (16 bits, 0.72)
    assert settings.profile == "calibrated"
    assert settings.thresholds == QualityThresholds() and settings.calibrated == CalibratedThresholds()
    assert settings.limits == LoadLimits()


def test_forms_take_bounds_meanings_and_rules_from_the_dataclasses():
    schema = Thresholds.model_json_schema()["properties"]["similarity_min"]
    assert schema["default"] == QualityThresholds().similarity_min
    assert schema["minimum"] == 0 and schema["maximum"] == 1 and "SSIM" in schema["description"]
    with pytest.raises(ValidationError, match="no variation could pass"):
        Thresholds(similarity_min=0.8, similarity_max=0.5)  # QualityThresholds.__post_init__'s rule
    with pytest.raises(ValidationError, match="strictly ordered"):
        CalibratedForm(overall_high=0.5, overall_medium=0.6)
    assert CalibratedForm(overall_low=0.45).to_core() == CalibratedThresholds(overall_low=0.45)


def test_cli_defaults_are_the_run_parameters():
    """An option not given is not passed, so RunParameters' default (from the core) applies."""
    from varflow.flows.cli import params_of

    args = build_parser().parse_args(["run", "photos"])
    params = params_of(args, "photos", "out")
    assert params.model_dump(exclude={"input_dir", "output_dir"}) == \
        RunParameters(input_dir="photos", output_dir="out").model_dump(exclude={"input_dir", "output_dir"})
    args = build_parser().parse_args(["run", "photos", "--profile", "seed", "--ext", "png,jpg",
                                      "--max-megapixels", "1.5"])
    params = params_of(args, "photos", "out")
    assert (params.profile, params.extensions, params.max_pixels) == ("seed", ["png", "jpg"], 1_500_000)


def test_invalid_arguments_exit_2(capsys):
    from varflow.flows.cli import params_of

    args = build_parser().parse_args(["run", "photos", "--count", "0"])
    with pytest.raises(SystemExit) as exc:
        params_of(args, "photos", "out")
    assert exc.value.code == 2
    assert "count" in capsys.readouterr().err


# The flags the README, the docs and the tests use: none may vanish or change its name.
FLAGS_OF_VARFLOW_RUN = {
    "--count", "--type", "--prompt", "--seed", "--backend", "--model", "--profile", "--level", "--no-adapt",
    "--keep-rejected", "--force", "--dedup-library", "--cache-max-mb", "--home", "--ext", "--follow-links",
    "--images-in-flight", "--concurrency", "--max-memory-mb", "--max-megapixels", "--json", "--dry-run",
    "--runner", "--dask-address", "--dask-workers", "--dask-worker-wait", "--chunk-size", "--shared-limits",
    "--retries", "--retry-backoff", "--rpm", "--timeout", "--max-cost", "--api-key-secret", "--out",
}


def run_options() -> dict:
    """dest -> the argparse action of ``varflow run``'s options."""
    parser = build_parser()
    run = next(a for a in parser._actions if a.dest == "command").choices["run"]
    return {a.dest: a for a in run._actions if a.option_strings}


def test_every_run_parameter_has_a_flag_with_the_models_default_and_description():
    from varflow.flows.parameters import CLI_FLAGS, NOT_FLAGS

    options = run_options()
    fields = RunParameters.model_fields
    assert set(CLI_FLAGS) | set(NOT_FLAGS) == set(fields) and not set(CLI_FLAGS) & set(NOT_FLAGS)
    assert {f: options[f].option_strings[0] for f in CLI_FLAGS if f in options} == \
        {f: flag.name for f, flag in CLI_FLAGS.items()}  # every field in the table is an option
    shown = {"extensions": "png,jpg,jpeg,webp,bmp,tif,tiff", "max_pixels": "100", "adaptive": None}
    for name in CLI_FLAGS:
        help_text = options[name].help.replace("%%", "%")
        assert fields[name].description.rstrip(".")[1:40] in help_text, name  # help is the description
        default = shown.get(name, fields[name].default)
        if default not in (None, "", False):
            value = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"(default {value})" in help_text, name  # the model's default, shown


def test_no_flag_of_varflow_run_vanished():
    names = {s for a in run_options().values() for s in a.option_strings}
    assert FLAGS_OF_VARFLOW_RUN - names == set()


def test_each_flag_reaches_its_field():
    """A given value lands in the model's field, converted by the field's type (and unit)."""
    args = build_parser().parse_args(["run", "photos", "--count", "7", "--rpm", "30", "--max-cost", "1.5",
                                      "--no-adapt", "--dedup-ssim", "0.8", "--level", "low", "--runner", "dask",
                                      "--dask-worker-wait", "5", "--max-megapixels", "2"])
    from varflow.flows.cli import params_of

    p = params_of(args, "photos", "out")
    assert (p.count, p.requests_per_minute, p.max_cost_usd, p.adaptive, p.dedup_ssim, p.level, p.runner,
            p.dask_worker_wait_s, p.max_pixels) == (7, 30.0, 1.5, False, 0.8, "low", "dask", 5.0, 2_000_000)


@pytest.mark.parametrize("argv", [["--count", "65"], ["--dedup-ssim", "2"], ["--retries", "-1"], ["--timeout", "0"]])
def test_the_models_bounds_are_the_cli_bounds(argv, capsys):
    from varflow.flows.cli import params_of

    with pytest.raises(SystemExit) as exc:
        params_of(build_parser().parse_args(["run", "photos", *argv]), "photos", "out")
    assert exc.value.code == 2 and "invalid arguments" in capsys.readouterr().err
