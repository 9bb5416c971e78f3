"""Shared fixtures: real photos from scikit-image's bundled data, a fresh data directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prefect_servers import (  # noqa: F401 - free_port: tests import it from here
    free_port,
    postgres_database,
    postgres_unavailable,
    postgres_url,
    running_server,
)

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

FIXTURES = Path(__file__).parent / "fixtures"


def skimage_photo(name: str) -> Path:
    from varflow.images.samples import sample_dir

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


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A real ``prefect server start`` (SQLite) on loopback for tests that run varflow as a subprocess.

    One server for the session: each subprocess then skips the ~15 s start of a temporary
    server. Yields the environment a subprocess needs to use it.
    """
    with running_server(tmp_path_factory.mktemp("prefect-home")) as server:
        yield server["env"]


@pytest.fixture(scope="session")
def prefect_server_postgres(tmp_path_factory):
    """A real ``prefect server start`` on PostgreSQL (127.0.0.1:5432, trust auth, user postgres):
    a fresh database named for this session, migrated by the server on start and dropped at the
    end. Yields the server (url, api, env for clients, log, start_s) and its ``database``."""
    reason = postgres_unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI has PostgreSQL: its absence there is a failure, not a skip
        pytest.skip(reason)
    with postgres_database() as database:
        server_env = {"PREFECT_API_DATABASE_CONNECTION_URL": postgres_url(database)}
        with running_server(tmp_path_factory.mktemp("prefect-pg-home"), server_env=server_env) as server:
            yield {**server, "database": database}


def make_photo_folder(dest: Path, n: int, *, size: int | None = None) -> list[Path]:
    """``n`` distinct real photos (sample photos, turned by 90, 180 and 270 degrees for more: never
    a mirror, which varflow.duplicates.copies calls a copy), optionally resized."""
    from varflow.images.samples import sample_paths

    dest.mkdir(parents=True, exist_ok=True)
    sources = sample_paths()
    ops = [None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270]
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


# ---------------------------------------------------------------------------------------------
# Stores made by real runs, shared by the notebook, gallery and terminal tests (session scope:
# each costs a flow run in a child process on the session's Prefect server).
# ---------------------------------------------------------------------------------------------

FAKE_GEMINI_KEY = "AIza" "SyTEST-analysis-store-key-0123456789abcdXYZ"
TRICKY_NAME = 'photo <img src=x onerror=alert(1)> & "q".png'  # a legal file name full of HTML
# The calls store's answers, in arrival order (one image, one call in flight at a time): a
# retried 500, a safety block (its image stays unfinished, so the next run redoes it and takes
# its successful attempt from the cache), and a text-only answer retried to an image.
GEMINI_SCRIPT = ["server_500", "ok", "ok", "ok", "safety_block", "text_only", "ok", "ok"]


def run_flow_child(env: dict, **params) -> dict:
    """One real flow run in a child process; returns its summary."""
    import json
    import subprocess
    import sys

    child = Path(__file__).with_name("flow_child.py")
    out = subprocess.run([sys.executable, str(child), json.dumps(params)], env=env, capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    lines = [line for line in out.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(lines[-1][len("SUMMARY "):])


@pytest.fixture(scope="session")
def local_run_store(prefect_api, tmp_path_factory) -> dict:
    """A store made by one real run (local backend) over seven small real photos, count 2, one
    image at a time, at level low (set by the run: a recorded level change). The seed profile's
    fixed gates are opened so the level's overall threshold and the duplicate check decide: the
    store then holds accepted, rejected and duplicate variations whatever the generator's current
    acceptance rate. Rejected files are deleted (the gallery shows the thumbnails the run kept).
    One photo's name is full of HTML. Returns home, output folder and the summary."""
    base = tmp_path_factory.mktemp("local-store")
    photos = make_photo_folder(base / "photos", 7, size=160)
    photos[0].rename(photos[0].with_name(TRICKY_NAME))  # every text in the gallery is escaped
    home, out_dir = base / "home", base / "out"
    open_gate = dict(similarity_min=0, similarity_max=1, diversity_min=0, aesthetic_min=0,
                     object_integrity_min=0, overall_min=0)
    summary = run_flow_child({**prefect_api, "VARFLOW_HOME": str(home)}, input_dir=str(base / "photos"),
                             output_dir=str(out_dir), home=str(home), count=2, seed=3, level="low",
                             images_in_flight=1, profile="seed", thresholds=open_gate)
    assert summary["variations_accepted"] > 0 and summary["variations_rejected"] > 0, (
        "the analysis tests need a store with both verdicts; adjust this run's level or gate")
    return {"home": home, "out": out_dir, "summary": summary}


@pytest.fixture(scope="session")
def gemini_calls_store(prefect_api, tmp_path_factory) -> dict:
    """A store with real Gemini calls: two runs of the gemini backend (the real SDK) against
    FakeGemini, answering ``GEMINI_SCRIPT``; the second run redoes the unfinished image and
    takes one attempt from the cache. Returns home and both summaries."""
    try:
        from tests.fake_gemini import FakeGemini
    except ImportError:
        from fake_gemini import FakeGemini

    base = tmp_path_factory.mktemp("gemini-store")
    make_photo_folder(base / "photos", 3, size=64)
    home = base / "home"
    open_gate = dict(similarity_min=0, similarity_max=1, diversity_min=0, aesthetic_min=0,
                     object_integrity_min=0, overall_min=0)
    params = dict(input_dir=str(base / "photos"), output_dir=str(base / "out"), home=str(home), backend="gemini",
                  count=2, level="low", adaptive=False, images_in_flight=1, generation_concurrency=1,
                  retries=2, retry_backoff_s=0.02, thresholds=open_gate, request_timeout_s=10.0)
    sdk = {k: v for k, v in prefect_api.items()
           if not k.startswith(("GOOGLE_", "GEMINI_")) and not k.lower().endswith("_proxy")}
    with FakeGemini(api_key=FAKE_GEMINI_KEY, retry_delay="1s") as fake:
        env = {**sdk, "GEMINI_API_KEY": FAKE_GEMINI_KEY, "GOOGLE_GEMINI_BASE_URL": fake.base_url,
               "NO_PROXY": "127.0.0.1,localhost", "VARFLOW_HOME": str(home)}
        fake.script(GEMINI_SCRIPT)
        first = run_flow_child(env, **params)
        second = run_flow_child(env, **params)
    return {"home": home, "summaries": [first, second]}


# Debian's Chromium, driven by Playwright (never a browser download): the gallery and the UI tests.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium; CI installs it (scripts/install-system-deps.sh), elsewhere it may skip."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (make system-deps)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: its absence there is a failure, not a skip
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def prefect_server():
    """Prefect's temporary test server, one per test module that runs flows in-process."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
