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
