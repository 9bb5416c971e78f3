"""``--backend gemini-batch`` end to end: the real SDK against FakeGemini's Batch and Files API, the
real flow under a Prefect test server, the real store. A run submits and ends; the same run again
(``varflow collect`` does that for every folder with open jobs) collects, judges and records.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import make_photo_folder

try:
    from tests.fake_gemini import BATCH_CANCELLED, BATCH_EXPIRED, BATCH_FAILED, FakeGemini
except ImportError:
    from fake_gemini import BATCH_CANCELLED, BATCH_EXPIRED, BATCH_FAILED, FakeGemini

from flows.parameters import RunParameters
from flows.variation_flow import run_local
from storage import Store

KEY = "AIza" "SyTEST-gemini-batch-key-0123456789abcdefXYZ"
SDK_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_API_VERSION",
           "GOOGLE_GENAI_USE_VERTEXAI", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
           "https_proxy", "all_proxy")


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def server():
    with FakeGemini(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(server, prefect_server, monkeypatch):
    for name in SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.base_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server.reset()
    server.batches.__init__(server)
    yield server
    server.reset()


def params(tmp: Path, photos: Path, **kw) -> RunParameters:
    base = dict(input_dir=str(photos), output_dir=str(tmp / "out"), home=str(tmp / "home"), backend="gemini-batch",
                count=2, level="low", adaptive=False, images_in_flight=1, generation_concurrency=1,
                request_timeout_s=10.0)
    base.update(kw)
    return RunParameters(**base)


def test_submit_then_collect_records_like_a_synchronous_run_at_half_price(fake, tmp_path):
    photos = make_photo_folder(tmp_path / "photos", 2, size=64)[0].parent
    p = params(tmp_path, photos)
    first = run_local(p)
    store = Store(tmp_path / "home")
    jobs = store.batch_jobs()
    assert [j["state"] for j in jobs] == ["submitted"] and jobs[0]["requests"] == 4
    assert fake.count() == 0 and fake.batches.count() == 4  # no synchronous call: all in the job
    assert first["images_ok"] == 0 and "wait in 1 batch job" in first["message"]
    second = run_local(p)  # the job is running
    assert fake.batches.count() == 4, "requests in an open job are never sent again"
    third = run_local(p)
    print(first, second, third)
    assert third["images_ok"] == 2
    a = store.query("SELECT run_id, outcome, cost_usd, try_number, cache_hit, batch_job, attempt FROM attempts")
    v = store.query("SELECT run_id, accepted, reject_reason, backend, model FROM variations")
    i = store.query("SELECT run_id, path, status, error, attempts, accepted, cache_hits FROM images ORDER BY finished_at")
    for rows in (a, v, i, store.batch_jobs()):
        for r in rows:
            print(r)
