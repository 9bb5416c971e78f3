"""Redis, Dask and S3 are extras (varflow[redis], varflow[dask], varflow[s3]): a plain install runs on one machine,
and an option that needs one says which, in one line."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import make_photo_folder

import varflow

ROOT = Path(__file__).resolve().parents[1]
# A process where the extra's package is not installed (an import of it fails, find_spec finds nothing).
WITHOUT = "import sys; sys.modules[{module!r}] = None; from varflow.flows.cli import main; sys.exit(main({argv!r}))"


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_extras_are_optional_and_the_tests_install_both():
    names = lambda reqs: {r.split(">")[0].split("[")[0].strip() for r in reqs}
    required, extras = names(project()["dependencies"]), project()["optional-dependencies"]
    assert not {"redis", "prefect-dask", "s3fs"} & required
    assert {"prefect", "google-genai", "duckdb", "pyarrow", "pillow"} <= required  # the design card's stay
    assert (names(extras["redis"]), names(extras["dask"])) == ({"redis"}, {"prefect-dask"})
    assert names(extras["s3"]) == {"s3fs", "aiobotocore"}
    assert "varflow[dask,redis,s3]" in extras["test"]


@pytest.mark.parametrize("module, option, line", [
    ("prefect_dask", ["--runner", "dask"], "--runner dask needs the dask extra: pip install 'varflow[dask]'"),
    ("redis", ["--shared-limits", "redis://127.0.0.1:6379/0"],
     "--shared-limits redis://... needs the redis extra: pip install 'varflow[redis]'"),
])
def test_an_option_whose_extra_is_missing_says_which_in_one_line(tmp_path, module, option, line):
    photos = make_photo_folder(tmp_path / "photos", 1, size=32)[0].parent
    argv = ["run", str(photos), "--out", str(tmp_path / "out"), "--home", str(tmp_path / "home"), *option]
    done = subprocess.run([sys.executable, "-c", WITHOUT.format(module=module, argv=argv)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == f"varflow: cannot run: {line}"
    assert not list((tmp_path / "out").glob("*.png"))  # stopped before any work


def test_the_api_names_the_extra_too(tmp_path, monkeypatch):
    photos = make_photo_folder(tmp_path / "photos", 1, size=32)[0].parent
    monkeypatch.setitem(sys.modules, "prefect_dask", None)
    with pytest.raises(varflow.ConfigurationError, match=r"--runner dask needs the dask extra: .*varflow\[dask\]"):
        varflow.run(photos, tmp_path / "out", runner="dask", home=str(tmp_path / "home"))
