"""``--backend gemini-batch`` end to end: the real SDK against FakeGemini's Batch and Files API, the
real flow under a Prefect test server, the real store. A run submits and ends; the collector
(``batch_collect``, what ``varflow collect`` runs) polls, and when a job has ended runs the folder
again, which judges the answers and records them as a synchronous run would, at half the price.

The fake moves a job PENDING -> RUNNING at its first ``batches.get`` and ends it at the second, so
a collector's first pass finds it running and its second collects it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_photo_folder, run_flow_child

try:
    from tests.fake_gemini import BATCH_EXPIRED, BATCH_FAILED, FakeBatches, FakeGemini
except ImportError:
    from fake_gemini import BATCH_EXPIRED, BATCH_FAILED, FakeBatches, FakeGemini

from varflow.flows.cli import main as cli_main
from varflow.flows.collect_flow import batch_collect
from varflow.flows.parameters import RunParameters
from varflow.flows.plan import plan_run
from varflow.flows.variation_flow import run_local
from varflow.storage import Store

from varflow.generation.backends import TokenUsage
from varflow.generation.backends.gemini import estimate_cost
from varflow.processing.batch import plan_jobs
from varflow.settings import BatchLimits

KEY = "AIza" "SyTEST-gemini-batch-key-0123456789abcdefXYZ"
MODEL = "gemini-2.5-flash-image"
SDK_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_API_VERSION",
           "GOOGLE_GENAI_USE_VERTEXAI", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
           "https_proxy", "all_proxy")


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
    server.batches = FakeBatches(server)
    yield server
    server.reset()


def params(tmp: Path, photos: Path, **kw) -> RunParameters:
    base = dict(input_dir=str(photos), output_dir=str(tmp / "out"), home=str(tmp / "home"), backend="gemini-batch",
                count=2, level="low", adaptive=False, images_in_flight=1, generation_concurrency=1,
                request_timeout_s=10.0)
    base.update(kw)
    return RunParameters(**base)


def photos(tmp: Path, n: int = 2) -> Path:
    make_photo_folder(tmp / "photos", n, size=64)
    return tmp / "photos"


def collect_until_idle(p: RunParameters, passes: int = 2) -> list[dict]:
    """The collector's scheduled passes: each polls, the pass that finds a job ended collects it."""
    return [batch_collect(home=p.home) for _ in range(passes)]


def query(p: RunParameters, sql: str, args=()) -> list[dict]:
    return Store(p.home).query(sql, list(args))


# ---------------------------------------------------------------------------------------------
# Success: the same records as a synchronous run, at half the price
# ---------------------------------------------------------------------------------------------


def test_a_batch_run_submits_and_the_collector_records_like_a_synchronous_run(fake, tmp_path):
    p = params(tmp_path, photos(tmp_path))
    first = run_local(p)
    jobs = Store(p.home).batch_jobs()
    assert [(j["state"], j["requests"], j["source"]) for j in jobs] == [("submitted", 4, "inline")]
    assert fake.count() == 0 and fake.batches.count() == 4  # no synchronous call: 2 images x count 2
    assert (first["images_ok"], first["images_skipped"], first["attempts"]) == (0, 2, 0)
    assert "4 requests wait in 1 batch job" in first["message"]
    assert query(p, "SELECT count(*) AS n FROM variations")[0]["n"] == 0  # nothing judged yet

    waiting, collected = collect_until_idle(p)
    assert waiting["runs"] == [] and waiting["jobs"][0]["state"] == "running"
    assert fake.batches.count() == 4, "requests in an open job are never sent again"
    (run,) = collected["runs"]
    assert (run["images_ok"], run["variations_accepted"], run["attempts"], run["calls"]) == (2, 4, 4, 4)
    assert collected["open_jobs"] == 0 and collected["jobs"][0]["state"] == "collected"
    assert (collected["jobs"][0]["succeeded"], collected["jobs"][0]["failed"]) == (4, 0)

    rows = query(p, "SELECT * FROM attempts WHERE run_id = ?", [run["run_id"]])
    assert len(rows) == 4 and {r["outcome"] for r in rows} == {"ok"}
    assert {r["batch_job"] for r in rows} == {jobs[0]["job_name"]} and not any(r["cache_hit"] for r in rows)
    for r in rows:  # half of what the same tokens cost one call at a time
        usage = TokenUsage(r["prompt_tokens"], r["output_tokens"], r["total_tokens"])
        assert r["cost_usd"] == pytest.approx(estimate_cost(MODEL, usage) / 2, abs=1e-6)
        assert r["output_tokens"] == 1290 and r["backend"] == "gemini-batch"
    assert run["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows), abs=1e-6)
    variations = query(p, "SELECT * FROM variations WHERE run_id = ?", [run["run_id"]])
    assert len(variations) == 4 and all(v["accepted"] and Path(v["output_path"]).is_file() for v in variations)
    assert all(v["profile"] == "calibrated" and v["overall_quality"] is not None for v in variations)
    images = query(p, "SELECT * FROM images WHERE run_id = ?", [run["run_id"]])
    assert {(i["status"], i["attempts"], i["accepted"], i["cache_hits"]) for i in images} == {("ok", 2, 2, 0)}
    assert all(i["job_key"] for i in images)  # finished: the next run skips them

    again = run_local(p)
    assert again["images_ok"] == 0 and fake.batches.count() == 4 and len(Store(p.home).batch_jobs()) == 1


def test_the_collector_publishes_each_jobs_state_as_an_artifact(fake, tmp_path):
    from prefect.artifacts import Artifact

    p = params(tmp_path, photos(tmp_path, 1), count=1)
    run_local(p)
    batch_collect(home=p.home)
    artifact = Artifact.get("varflow-batch-jobs")
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert artifact.type == "table" and [r["state"] for r in rows] == ["running"]
    batch_collect(home=p.home)
    rows = Artifact.get("varflow-batch-jobs").data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert [(r["state"], r["succeeded"]) for r in rows] == [("collected", "1")]


# ---------------------------------------------------------------------------------------------
# Partial failure: answers kept, failures recorded, the quality loop goes on in a next job
# ---------------------------------------------------------------------------------------------


def test_a_partly_failed_job_keeps_its_answers_and_the_quality_loop_continues_in_a_next_job(fake, tmp_path):
    p = params(tmp_path, photos(tmp_path, 1), level="medium")  # 2 attempts per variation: budget 4
    run_local(p)
    fake.script(["ok", "safety_block"])  # the job's two answers: an image, a block
    _, collected = collect_until_idle(p)
    (run,) = collected["runs"]
    rows = query(p, "SELECT outcome, attempt, cost_usd, batch_job FROM attempts WHERE run_id = ? ORDER BY attempt",
                 [run["run_id"]])
    assert [(r["outcome"], r["attempt"]) for r in rows] == [("ok", 0), ("blocked", 1)]
    assert rows[1]["cost_usd"] > 0  # a block is billed its prompt tokens, at the batch price
    (image,) = query(p, "SELECT * FROM images WHERE run_id = ?", [run["run_id"]])
    assert (image["attempts"], image["accepted"], image["job_key"]) == (2, 1, None)  # kept; not finished
    jobs = Store(p.home).batch_jobs()
    assert [(j["state"], j["requests"], j["succeeded"], j["failed"]) for j in jobs] == [
        ("collected", 2, 1, 1), ("submitted", 1, None, None)], "the next wave (attempt 2) went out in a new job"
    (req,) = Store(p.home).batch_requests(jobs[1]["job_name"])
    assert req["attempt"] == 2

    _, last = collect_until_idle(p)
    (image,) = query(p, "SELECT * FROM images WHERE run_id = ?", [last["runs"][0]["run_id"]])
    assert (image["status"], image["accepted"], image["attempts"]) == ("ok", 2, 3)
    assert image["job_key"] is not None
    assert fake.batches.count() == 3  # 2 + 1: the answered image was never sent again


# ---------------------------------------------------------------------------------------------
# Expired, failed and cancelled jobs: recorded, their requests sent again
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["expired", "failed", "cancelled"])
def test_an_ended_job_without_answers_is_recorded_and_its_requests_resubmitted(fake, tmp_path, end):
    p = params(tmp_path, photos(tmp_path, 1))
    run_local(p)
    (job,) = Store(p.home).batch_jobs()
    if end == "cancelled":
        from varflow.generation.backends import make_backend

        make_backend("gemini-batch").cancel(job["job_name"])  # batches.cancel through the SDK: ended at once
        batch_collect(home=p.home)
    else:
        fake.batches.end_states.append(BATCH_EXPIRED if end == "expired" else BATCH_FAILED)
        collect_until_idle(p)
    jobs = Store(p.home).batch_jobs()
    assert [j["state"] for j in jobs] == [end, "submitted"]
    assert "sent again by the next run" in jobs[0]["message"]
    first, second = (Store(p.home).batch_requests(j["job_name"]) for j in jobs)
    assert sorted(r["request_key"] for r in first) == sorted(r["request_key"] for r in second)
    assert query(p, "SELECT count(*) AS n FROM attempts")[0]["n"] == 0  # nothing answered, nothing billed

    _, collected = collect_until_idle(p)
    assert collected["runs"][0]["images_ok"] == 1 and collected["open_jobs"] == 0
    assert fake.batches.count() == 4


# ---------------------------------------------------------------------------------------------
# The cache: a request already answered is never submitted
# ---------------------------------------------------------------------------------------------


def test_a_cached_request_is_not_resubmitted(fake, tmp_path):
    p = params(tmp_path, photos(tmp_path, 1), count=1)
    run_local(p)
    collect_until_idle(p)
    assert fake.batches.count() == 1
    more = p.model_copy(update={"count": 2})  # new parameters: the image is redone, attempt 0 is cached
    run_local(more)
    jobs = Store(p.home).batch_jobs()
    assert [j["requests"] for j in jobs] == [1, 1] and fake.batches.count() == 2
    (req,) = Store(p.home).batch_requests(jobs[1]["job_name"])
    assert req["attempt"] == 1
    _, collected = collect_until_idle(more)
    (run,) = collected["runs"]
    assert (run["images_ok"], run["attempts"], run["cache_hits"]) == (1, 2, 1)
    rows = query(p, "SELECT attempt, cache_hit, cost_usd FROM attempts WHERE run_id = ? ORDER BY attempt",
                 [run["run_id"]])
    assert [(r["attempt"], r["cache_hit"]) for r in rows] == [(0, True), (1, False)] and rows[0]["cost_usd"] == 0
    judged = query(p, "SELECT attempt, reject_reason FROM variations WHERE run_id = ? ORDER BY attempt",
                   [run["run_id"]])
    # attempt 0 is judged again (from the cache): the same picture the first run accepted, so a duplicate
    assert [(v["attempt"], v["reject_reason"]) for v in judged] == [(0, "duplicate"), (1, None)]


# ---------------------------------------------------------------------------------------------
# Large jobs: JSONL files through the Files API, split by the size limits
# ---------------------------------------------------------------------------------------------


def test_requests_over_the_inline_limit_go_as_uploaded_files_split_by_the_file_limit(fake, tmp_path, monkeypatch):
    import varflow.processing.batch

    one = len(json.dumps({"x": "y"}))  # any request is larger: nothing goes inline
    # a request here is 12-17 kB (a 64 px photo in base64): at most two per file
    monkeypatch.setattr(varflow.processing.batch, "BATCH", BatchLimits(inline_max_bytes=one, file_max_bytes=40_000))
    p = params(tmp_path, photos(tmp_path, 2))
    run_local(p)
    jobs = Store(p.home).batch_jobs()
    assert {j["source"] for j in jobs} == {"file"} and sum(j["requests"] for j in jobs) == 4 and len(jobs) >= 2
    assert all(j["input_file"].startswith("files/") for j in jobs)
    uploads = [r for r in fake.requests if r.endpoint in ("files.create", "files.upload")]
    assert len(uploads) == 2 * len(jobs)  # a resumable start, then the upload to the absolute URL
    _, collected = collect_until_idle(p)
    downloads = [r for r in fake.requests if r.endpoint == "files.download"]
    assert len(downloads) == len(jobs)
    assert collected["runs"][0]["variations_accepted"] == 4


def test_plan_jobs_keeps_small_lots_inline_and_splits_large_ones_by_the_file_limit():
    limits = BatchLimits(inline_max_bytes=100, file_max_bytes=250)
    assert plan_jobs([], limits=limits) == []
    assert plan_jobs([40, 60], limits=limits) == [([0, 1], False)]
    assert plan_jobs([40, 61], limits=limits) == [([0, 1], True)]
    assert plan_jobs([100, 100, 100, 50, 250], limits=limits) == [([0, 1], True), ([2, 3], True), ([4], True)]
    with pytest.raises(ValueError, match="more than a batch input file may hold"):
        plan_jobs([10, 251], limits=limits)
    with pytest.raises(ValueError, match="must not exceed"):
        BatchLimits(inline_max_bytes=10, file_max_bytes=5)


# ---------------------------------------------------------------------------------------------
# A restart between submit and collect loses nothing
# ---------------------------------------------------------------------------------------------


def test_a_restart_between_submit_and_collect_loses_nothing(fake, tmp_path, prefect_api):
    """The submitting run is another process, gone when the collector starts: the jobs, their
    requests and the run's parameters are all the collector needs, and they are in the store."""
    p = params(tmp_path, photos(tmp_path, 2))
    sdk = {k: v for k, v in prefect_api.items() if not k.startswith(("GOOGLE_", "GEMINI_"))
           and not k.lower().endswith("_proxy")}
    env = {**sdk, "GEMINI_API_KEY": KEY, "GOOGLE_GEMINI_BASE_URL": fake.base_url, "NO_PROXY": "127.0.0.1,localhost"}
    submitted = run_flow_child(env, **json.loads(p.model_dump_json()))
    assert submitted["batch"]["requests_submitted"] == 4 and submitted["images_ok"] == 0
    _, collected = collect_until_idle(p)
    (run,) = collected["runs"]
    assert (run["images_ok"], run["variations_accepted"]) == (2, 4)
    assert fake.batches.count() == 4 and fake.count() == 0


# ---------------------------------------------------------------------------------------------
# Prices: the dry run shows both; the CLI collects
# ---------------------------------------------------------------------------------------------


def test_the_dry_run_shows_the_batch_price_beside_the_synchronous_one(tmp_path, capsys):
    p = params(tmp_path, photos(tmp_path, 3))
    plan = plan_run(p)
    assert plan["batch"] and plan["calls_expected"] == 6 and plan["max_tries_per_attempt"] == 1
    assert plan["cost_expected_usd"] == pytest.approx(plan["cost_expected_synchronous_usd"] / 2)
    assert plan["cost_expected_synchronous_usd"] == pytest.approx(6 * 0.039)
    cli_main(["run", str(p.input_dir), "--backend", "gemini-batch", "--home", p.home, "--count", "2", "--dry-run"])
    out = capsys.readouterr().out  # level high, no history: the prior's 11.25 calls (varflow/processing/estimate.py)
    assert "batch        expected $0.22 at the Batch API's price, against $0.44 for the same calls" in out


def test_varflow_collect_prints_the_jobs_and_the_folder_runs(fake, tmp_path, capsys):
    p = params(tmp_path, photos(tmp_path, 1), count=1)
    run_local(p)
    assert cli_main(["collect", "--home", p.home]) == 0
    assert "running" in capsys.readouterr().out
    assert cli_main(["collect", "--home", p.home]) == 0
    out = capsys.readouterr().out
    assert "collected" in out and "1 images ok, 1 variations accepted" in out and "0 job(s) still open" in out


# ---------------------------------------------------------------------------------------------
# The fake's Batch and Files API, driven by the real SDK
# ---------------------------------------------------------------------------------------------


def test_the_fake_speaks_the_batch_and_files_api_to_the_real_sdk(fake, tmp_path):
    import base64
    import io

    from google import genai
    from google.genai import types
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(buf, format="PNG")
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=fake.base_url))
    request = types.InlinedRequest(
        contents=[types.Content(role="user", parts=[types.Part.from_bytes(data=buf.getvalue(), mime_type="image/png"),
                                                    types.Part.from_text(text="vary it")])],
        config=types.GenerateContentConfig(response_modalities=["IMAGE"], seed=7), metadata={"key": "a"})
    job = client.batches.create(model=MODEL, src=[request], config={"display_name": "inline-one"})
    assert job.name.startswith("batches/") and job.state.name == "JOB_STATE_PENDING"
    assert job.display_name == "inline-one"
    assert client.batches.get(name=job.name).state.name == "JOB_STATE_RUNNING"
    done = client.batches.get(name=job.name)
    assert done.state.name == "JOB_STATE_SUCCEEDED" and done.dest.file_name is None
    (answer,) = done.dest.inlined_responses
    assert answer.metadata == {"key": "a"} and answer.error is None
    image = answer.response.candidates[0].content.parts[-1].inline_data
    assert image.mime_type == "image/png" and Image.open(io.BytesIO(image.data)).size == (32, 24)
    assert answer.response.usage_metadata.candidates_token_count == 1290

    line = {"key": "b", "request": {"contents": [{"role": "user", "parts": [
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(buf.getvalue()).decode()}},
        {"text": "vary it"}]}], "generationConfig": {"responseModalities": ["IMAGE"], "seed": 3}}}
    path = tmp_path / "requests.jsonl"
    path.write_text(json.dumps(line) + "\n")
    uploaded = client.files.upload(file=str(path), config=types.UploadFileConfig(mime_type="jsonl"))
    assert uploaded.name.startswith("files/") and uploaded.size_bytes == path.stat().st_size
    fake.script(["safety_block"])
    from_file = client.batches.create(model=MODEL, src=uploaded.name)
    client.batches.get(name=from_file.name)
    ended = client.batches.get(name=from_file.name)
    assert ended.dest.file_name.startswith("files/")
    (result,) = [json.loads(x) for x in client.files.download(file=ended.dest.file_name).decode().splitlines()]
    assert result["key"] == "b" and result["response"]["candidates"][0]["finishReason"] == "IMAGE_SAFETY"

    third = client.batches.create(model=MODEL, src=[request])
    client.batches.cancel(name=third.name)
    assert client.batches.get(name=third.name).state.name == "JOB_STATE_CANCELLED"
    fake.batches.expire(client.batches.create(model=MODEL, src=[request]).name)
    states = {j.name: j.state.name for j in client.batches.list()}
    assert sorted(states.values()) == ["JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED", "JOB_STATE_SUCCEEDED",
                                       "JOB_STATE_SUCCEEDED"]
    with pytest.raises(genai.errors.ClientError) as err:
        client.batches.get(name="batches/nope")
    assert err.value.code == 404


def test_the_collector_deployment_polls_on_an_interval():
    from datetime import timedelta

    from varflow.deployments.serve import collector

    deployment = collector(home="/data/varflow", every_s=120)
    assert deployment.name == "collect" and deployment.parameters == {"home": "/data/varflow"}
    assert deployment.schedules[0].schedule.interval == timedelta(seconds=120)


def test_the_batch_backend_declares_its_capabilities(monkeypatch):
    from varflow.generation.backends import backend_class, make_backend
    from varflow.generation.backends.base import BatchingBackend

    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    cls = backend_class("gemini-batch")
    assert (cls.can_batch, cls.remote, cls.default_model) == (True, True, MODEL)
    usage = TokenUsage(300, 1290, 1590)
    assert cls.estimate_cost(MODEL, usage) == pytest.approx(cls.synchronous_cost(MODEL, usage) / 2)
    assert cls.estimate_cost(MODEL) == pytest.approx(0.0195)
    backend = make_backend("gemini-batch")
    assert isinstance(backend, BatchingBackend)
    assert (backend.resubmits("blocked"), backend.resubmits("no_image"), backend.resubmits("server_error")) == (
        False, True, True)
    assert not backend_class("gemini").can_batch and backend_class("gemini").synchronous_cost(MODEL) == 0.039
