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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A real ``prefect server start`` on loopback for tests that run varflow as a subprocess.

    One server for the session: each subprocess then skips the ~15 s start of a temporary
    server. Yields the environment a subprocess needs to use it.
    """
    import subprocess
    import sys
    import time
    import urllib.request

    prefect_home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "PREFECT_UI_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = open(prefect_home / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"prefect server did not start: {(prefect_home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    client_env = {**env, "PREFECT_API_URL": url}
    try:
        yield client_env
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def make_photo_folder(dest: Path, n: int, *, size: int | None = None) -> list[Path]:
    """``n`` distinct real photos (sample photos, flipped/rotated for more), optionally resized."""
    from varflow.samples import sample_paths

    dest.mkdir(parents=True, exist_ok=True)
    sources = sample_paths()
    ops = [None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180]
    out = []
    for i in range(n):
        src, op = sources[i % len(sources)], ops[(i // len(sources)) % len(ops)]
        with Image.open(src) as im:
            im = im.convert("RGB")
            if op is not None:
                im = im.transpose(op)
            if size:
                scale = size / max(im.size)
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
            p = dest / f"photo-{i:03d}.png"
            im.save(p)
            out.append(p)
    return out
