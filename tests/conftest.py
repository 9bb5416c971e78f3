"""Shared fixtures: real photos from scikit-image's bundled data, a fresh data directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

FIXTURES = Path(__file__).parent / "fixtures"


def skimage_photo(name: str) -> Path:
    from varflow.samples import sample_dir

    return sample_dir() / name


def load_photo(name: str) -> np.ndarray:
    with Image.open(skimage_photo(name)) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "varflow-home"
    monkeypatch.setenv("VARFLOW_HOME", str(h))
    return h


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    """A small folder of real photos, one in a sub-folder."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    shutil.copy(skimage_photo("astronaut.png"), d / "astronaut.png")
    shutil.copy(skimage_photo("coffee.png"), d / "coffee.png")
    shutil.copy(skimage_photo("rocket.jpg"), d / "sub" / "rocket.jpg")
    return d
