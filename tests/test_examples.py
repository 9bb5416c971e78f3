"""The notebooks and the deployment and automation examples ship in the package, and ``varflow
examples DIR`` copies them out, never over a file already there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"calls.ipynb": "notebooks", "quality.ipynb": "notebooks", "runs.ipynb": "notebooks",
           "prefect.yaml": "deployments", "automations.yaml": "deployments"}


def varflow_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "varflow.flows.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_examples_copies_every_example_and_keeps_what_is_there(tmp_path):
    dest = tmp_path / "mine"
    done = varflow_cli("examples", str(dest))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in dest.iterdir()) == sorted(SHIPPED)
    for name, folder in SHIPPED.items():
        assert (dest / name).read_bytes() == (ROOT / folder / name).read_bytes()
    (dest / "quality.ipynb").write_text("my edits")
    again = varflow_cli("examples", str(dest))
    assert again.returncode == 0 and again.stdout == ""
    assert f"kept {dest / 'quality.ipynb'}" in again.stderr and (dest / "quality.ipynb").read_text() == "my edits"


def test_the_wheel_holds_the_examples(tmp_path):
    """Built as a user's pip would build it: package data, not files of this checkout."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = tmp_path.glob("varflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"varflow/{folder}/{name}" for name, folder in SHIPPED.items()} <= names
