"""The Gemini backend through the real google-genai SDK against FakeGemini (a real HTTP server)."""

from __future__ import annotations

import pickle
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:
    from tests.fake_gemini import FAULTS, FakeGemini, Reply
except ImportError:  # tests/ on sys.path (pytest's default rootdir-less import)
    from fake_gemini import FAULTS, FakeGemini, Reply

from varflow.generation.backends import (
    PROMPT_CHANGE_OUTCOMES,
    GenerationError,
    GeneratorBackend,
    TokenUsage,
    make_backend,
)
from varflow.generation.backends.base import CONCRETE_TYPES, VariationRequest
from varflow.generation.backends.gemini import (
    DEFAULT_MODEL,
    OUTCOMES,
    PROMPT_TEMPLATES,
    GeminiGenerator,
    MissingApiKeyError,
    build_prompt,
    classify,
    estimate_cost,
    is_image_model,
    list_image_models,
    redact,
    retry_prompt,
)

KEY = "AIza" "FAKE-test-key-0123456789abcdefghijklmn"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL",
                 "GOOGLE_GENAI_API_VERSION", "GOOGLE_GENAI_USE_VERTEXAI",
                 "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION",
                 "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def server():
    with FakeGemini(api_key=KEY, slow_s=10.0) as fake:
        yield fake


@pytest.fixture
def fake(server):
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def source(tmp_path) -> Path:
    y, x = np.mgrid[0:64, 0:96]
    arr = np.stack([x * 2, y * 3, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    arr[16:40, 20:50] = (220, 40, 40)
    path = tmp_path / "src.png"
    Image.fromarray(arr, "RGB").save(path)
    return path


def make_request(source: Path, tmp_path: Path, *, variation_type="object_add",
                 prompt="add a red kite in the sky", seed=12345, attempt=0) -> VariationRequest:
    return VariationRequest(image_id="abc", source_path=str(source), variation_type=variation_type,
                            prompt=prompt, seed=seed, attempt=attempt,
                            output_path=str(tmp_path / "out" / f"var_{attempt}.png"))


def gen(fake: FakeGemini, **kw) -> GeminiGenerator:
    kw.setdefault("api_key", KEY)
    kw.setdefault("timeout_s", 5.0)
    return GeminiGenerator(base_url=fake.base_url, **kw)


# ---------------------------------------------------------------------------------------------
# Happy path
# ---------------------------------------------------------------------------------------------


def test_happy_path_writes_image_and_reports_usage(fake, source, tmp_path):
    backend = gen(fake)
    assert isinstance(backend, GeneratorBackend)
    assert backend.name == "gemini" and backend.model == DEFAULT_MODEL
    req = make_request(source, tmp_path)
    result = backend.generate(req)

    out = Path(result.output_path)
    assert out == tmp_path / "out" / "var_0.png" and out.exists()
    with Image.open(out) as img:
        img.load()
        assert img.format == "PNG" and img.size == (96, 64) == (result.width, result.height)
        changed = np.abs(np.asarray(img.convert("RGB"), dtype=int)
                         - np.asarray(Image.open(source).convert("RGB"), dtype=int)).mean()
    assert changed > 10  # a visible change, not an echo
    assert result.model == DEFAULT_MODEL
    assert result.usage == TokenUsage(prompt_tokens=result.usage.prompt_tokens,
                                      output_tokens=1290,
                                      total_tokens=result.usage.prompt_tokens + 1290)
    assert result.prompt_sent == build_prompt("object_add", req.prompt, req.seed)
    assert "add a red kite in the sky" in result.prompt_sent
    assert [p.name for p in out.parent.iterdir()] == ["var_0.png"]  # no temp files left

    (rec,) = fake.requests
    assert rec.endpoint == "generateContent" and rec.model == DEFAULT_MODEL
    assert rec.prompt == result.prompt_sent  # exactly the text sent
    assert rec.has_image and rec.image_mime == "image/png"
    assert rec.api_key_present and rec.api_key_valid
    assert rec.response_modalities == ("IMAGE",) and rec.candidate_count is None
    assert rec.seed == req.seed and rec.api_version == "v1"


def test_same_seed_same_output_other_seed_differs(fake, source, tmp_path):
    backend = gen(fake)
    a = backend.generate(make_request(source, tmp_path / "a", seed=1))
    b = backend.generate(make_request(source, tmp_path / "b", seed=1))
    c = backend.generate(make_request(source, tmp_path / "c", seed=2))
    assert Path(a.output_path).read_bytes() == Path(b.output_path).read_bytes()
    assert Path(a.output_path).read_bytes() != Path(c.output_path).read_bytes()


def test_huge_seed_is_folded_into_int32(fake, source, tmp_path):
    gen(fake).generate(make_request(source, tmp_path, seed=2**63 - 1))
    (rec,) = fake.requests
    assert 0 <= rec.seed < 2**31


def test_thought_parts_are_skipped(fake, source, tmp_path):
    fake.script(["ok_with_thoughts"])
    result = gen(fake).generate(make_request(source, tmp_path))
    assert (result.width, result.height) == (96, 64)  # not the 8x8 thought image


def test_jpeg_answer_gets_jpg_suffix(fake, source, tmp_path):
    fake.script(["ok_jpeg"])
    result = gen(fake).generate(make_request(source, tmp_path))
    out = Path(result.output_path)
    assert out.suffix == ".jpg" and out.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["var_0.jpg"]
    with Image.open(out) as img:
        assert img.format == "JPEG"


def test_random_type_is_resolved(fake, source, tmp_path):
    result = gen(fake).generate(make_request(source, tmp_path, variation_type="random", seed=3))
    assert any(result.prompt_sent.startswith(t) for ts in PROMPT_TEMPLATES.values() for t in ts)


def test_make_backend_builds_gemini(fake, source, tmp_path):
    backend = make_backend("gemini", api_key=KEY, base_url=fake.base_url, timeout_s=5)
    assert backend.generate(make_request(source, tmp_path)).width == 96


def test_concurrent_calls_share_one_client(source, tmp_path):
    with FakeGemini(api_key=KEY, latency_s=0.25) as fake:
        backend = gen(fake)
        reqs = [make_request(source, tmp_path / str(i), seed=i) for i in range(16)]
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(backend.generate, reqs))
        elapsed = time.monotonic() - t0
        assert len(results) == 16 and fake.count() == 16
        assert fake.max_in_flight >= 4
        assert elapsed < 16 * 0.25 / 2  # really concurrent


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

ERROR_TABLE = [
    # fault, outcome, retryable, http_status, retry_after_s
    ("rate_limit_minute", "rate_limited", True, 429, 2.0),
    ("rate_limit_bare", "rate_limited", True, 429, None),
    ("rate_limit_day", "quota_day", False, 429, None),
    ("server_500", "server_error", True, 500, None),
    ("bad_gateway_html", "server_error", True, 502, None),
    ("overloaded_503", "server_error", True, 503, None),
    ("gateway_timeout_504", "timeout", True, 504, None),
    ("not_found", "not_found", False, 404, None),
    ("permission_denied", "auth", False, 403, None),
    ("unauthenticated", "auth", False, 401, None),
    ("bad_key", "auth", False, 400, None),
    ("invalid_argument", "invalid_request", False, 400, None),
    ("drop", "connection", True, None, None),
    ("safety_block", "blocked", False, 200, None),
    ("prohibited", "blocked", False, 200, None),
    ("prompt_blocked", "blocked", False, 200, None),
    ("text_only", "no_image", True, 200, None),
    ("no_image", "no_image", True, 200, None),
    ("empty", "no_image", True, 200, None),
    ("garbage_image", "bad_image", True, 200, None),
    ("malformed_json", "server_error", True, 200, None),
]


@pytest.mark.parametrize("fault,outcome,retryable,status,retry_after", ERROR_TABLE,
                         ids=[row[0] for row in ERROR_TABLE])
def test_error_table(fake, source, tmp_path, fault, outcome, retryable, status, retry_after):
    fake.script([fault])
    with pytest.raises(GenerationError) as info:
        gen(fake).generate(make_request(source, tmp_path))
    err = info.value
    assert (err.outcome, err.retryable, err.http_status, err.retry_after_s) == \
        (outcome, retryable, status, retry_after), str(err)
    assert OUTCOMES[outcome][0] == retryable
    assert fake.count() == 1  # the SDK did not retry behind our back
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert (err.outcome in PROMPT_CHANGE_OUTCOMES) == (outcome in ("no_image", "bad_image"))
    # SDK exceptions (whose text may quote request details) are neither chained nor kept
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


def test_502_html_message_is_short_text(fake, source, tmp_path):
    fake.script(["bad_gateway_html"])
    with pytest.raises(GenerationError) as info:
        gen(fake).generate(make_request(source, tmp_path))
    assert "<" not in str(info.value) and len(str(info.value)) < 400


def test_text_only_message_quotes_the_text(fake, source, tmp_path):
    fake.script(["text_only"])
    with pytest.raises(GenerationError, match="text only") as info:
        gen(fake).generate(make_request(source, tmp_path))
    assert "description" in str(info.value)


def test_retired_model_404_names_model_and_command(fake, source, tmp_path):
    backend = gen(fake, model="gemini-2.5-flash-image-preview")
    with pytest.raises(GenerationError) as info:
        backend.generate(make_request(source, tmp_path))
    err = info.value
    assert (err.outcome, err.retryable, err.http_status) == ("not_found", False, 404)
    assert "gemini-2.5-flash-image-preview" in str(err) and "varflow models" in str(err)


def test_text_model_asked_for_images_is_invalid_request(fake, source, tmp_path):
    with pytest.raises(GenerationError) as info:
        gen(fake, model="gemini-2.5-flash").generate(make_request(source, tmp_path))
    assert (info.value.outcome, info.value.http_status) == ("invalid_request", 400)


def test_wrong_key_is_auth(fake, source, tmp_path):
    wrong = "AIza" "WRONG-key-zzzzzzzzzzzzzzzzzzzzzzzzzzzz"
    with pytest.raises(GenerationError) as info:
        gen(fake, api_key=wrong).generate(make_request(source, tmp_path))
    err = info.value
    assert (err.outcome, err.retryable, err.http_status) == ("auth", False, 400)
    assert wrong not in str(err) and "GOOGLE_API_KEY" in str(err)
    (rec,) = fake.requests
    assert rec.api_key_present and not rec.api_key_valid


def test_client_timeout(fake, source, tmp_path):
    fake.script(["slow"])
    t0 = time.monotonic()
    with pytest.raises(GenerationError) as info:
        gen(fake, timeout_s=0.4).generate(make_request(source, tmp_path))
    elapsed = time.monotonic() - t0
    assert (info.value.outcome, info.value.retryable) == ("timeout", True)
    assert elapsed < 3.0
    assert "0.4s" in str(info.value)


def test_connection_refused(source, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = GeminiGenerator(api_key=KEY, base_url=f"http://127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(GenerationError) as info:
        backend.generate(make_request(source, tmp_path))
    assert (info.value.outcome, info.value.retryable) == ("connection", True)


def test_missing_source_is_invalid_request(fake, tmp_path):
    req = make_request(tmp_path / "nope.png", tmp_path)
    with pytest.raises(GenerationError) as info:
        gen(fake).generate(req)
    assert info.value.outcome == "invalid_request" and fake.count() == 0


def _key_echo_replies(key: str) -> list[Reply]:
    return [
        Reply(403, {"error": {"code": 403, "status": "PERMISSION_DENIED",
                              "message": f"API key {key} was reported as leaked."}}),
        Reply(500, {"error": {"code": 500, "status": "INTERNAL",
                              "message": f"upstream GET /v1/models?key={key} failed",
                              "details": [{"x-goog-api-key": key}]}}),
        Reply(502, f"<html><body>Bad gateway for x-goog-api-key: {key}</body></html>",
              content_type="text/html"),
        Reply(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                              "message": f"Bad request (key {key})"}}),
        Reply(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                              "message": f"quota for {key} exhausted"}}),
    ]


@pytest.mark.parametrize("case", range(6))
def test_key_never_in_exception(fake, source, tmp_path, case):
    script = _key_echo_replies(KEY) + ["bad_key_echo"]
    fake.script([script[case]])
    with pytest.raises(GenerationError) as info:
        gen(fake).generate(make_request(source, tmp_path))
    err = info.value
    rendered = "".join(traceback.format_exception(err))
    for text in (str(err), repr(err), repr(err.args), rendered, repr(err.__dict__)):
        assert KEY not in text
    assert err.__cause__ is None and err.__context__ is None


def test_classify_redacts_sdk_exception_text():
    from google.genai import errors

    exc = errors.ClientError(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                             "message": f"bad header x-goog-api-key: {KEY}"}})
    assert KEY in str(exc)  # the SDK's own text does contain it
    err = classify(exc, model="m", secrets=[KEY])
    assert KEY not in str(err) and KEY not in repr(err.args)
    other = "sk-a-custom-secret-value"
    assert other not in redact(f"key={other}&x=1", [])
    assert other not in redact(f"oops {other}", [other])


def test_generator_repr_and_pickle_hide_nothing_important(fake):
    backend = gen(fake)
    assert KEY not in repr(backend)
    backend.client  # noqa: B018 - built lazily (the attribute access builds it); not pickled
    clone = pickle.loads(pickle.dumps(backend))
    assert clone.model == backend.model and clone._client is None
    backend.close()
    with clone:
        assert clone.client is not None
    assert clone._client is None


def test_generation_error_pickles():
    err = GenerationError("x", outcome="rate_limited", retryable=True, http_status=429,
                          retry_after_s=2.0)
    back = pickle.loads(pickle.dumps(err))
    assert (back.outcome, back.retryable, back.http_status, back.retry_after_s) == \
        ("rate_limited", True, 429, 2.0)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


def test_env_base_url_and_env_key(fake, source, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    backend = GeminiGenerator(timeout_s=5)  # no base_url, no api_key
    assert backend.base_url is None
    backend.generate(make_request(source, tmp_path))
    assert fake.count() == 1


def test_env_api_version(fake, source, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_GENAI_API_VERSION", "v1beta")
    gen(fake).generate(make_request(source, tmp_path))
    assert fake.requests[0].api_version == "v1beta"


def test_google_api_key_wins(fake, source, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_API_KEY", "AIza" "OTHER-key-yyyyyyyyyyyyyyyyyyyyyyyyyyy")
    GeminiGenerator(timeout_s=5).generate(make_request(source, tmp_path))
    assert fake.requests[0].api_key_valid
    # an explicit argument beats both
    with pytest.raises(GenerationError) as info:
        GeminiGenerator(api_key="AIza" "EXPLICIT-wrong-xxxxxxxxxxxxxxxxxxxxxxxxxx",
                        timeout_s=5).generate(make_request(source, tmp_path))
    assert info.value.outcome == "auth"


def test_missing_key_is_clear_and_early(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_API_KEY", "   ")
    with pytest.raises(MissingApiKeyError) as info:
        GeminiGenerator()
    assert isinstance(info.value, ValueError)
    assert "GOOGLE_API_KEY" in str(info.value) and "GEMINI_API_KEY" in str(info.value)
    with pytest.raises(ValueError, match="GEMINI_API_KEY"):
        make_backend("gemini")


def test_bad_options():
    with pytest.raises(ValueError):
        GeminiGenerator(api_key=KEY, timeout_s=0)
    with pytest.raises(ValueError):
        GeminiGenerator(api_key=KEY, model=" ")


def test_image_config_is_sent(fake, source, tmp_path):
    gen(fake, aspect_ratio="16:9", temperature=0.7).generate(make_request(source, tmp_path))
    assert fake.count() == 1


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def test_list_image_models_filters_and_pages(source):
    with FakeGemini(api_key=KEY, list_page_size=2) as fake:
        models = list_image_models(api_key=KEY, base_url=fake.base_url)
        names = [m.name for m in models]
        assert names == ["gemini-2.5-flash-image", "gemini-3-pro-image",
                         "gemini-3.1-flash-image", "gemini-nano-banana-2.1"]
        assert all("generateContent" in m.supported_actions for m in models)
        assert fake.count(endpoint="models.list") == 4  # 8 models, 2 a page


def test_list_image_models_bad_key():
    with FakeGemini(api_key=KEY) as fake:
        with pytest.raises(GenerationError) as info:
            list_image_models(api_key="AIza" "NOPE-nope-nope-nope-nope-nope-nope-no",
                              base_url=fake.base_url)
        assert info.value.outcome == "auth"


def test_is_image_model():
    assert is_image_model("models/gemini-2.5-flash-image", ["generateContent"])
    assert is_image_model("gemini-nano-banana-2.1")
    assert not is_image_model("models/imagen-4.0-generate-001", ["predict"])
    assert not is_image_model("models/gemini-2.5-flash", ["generateContent"])
    assert not is_image_model("models/gemini-2.0-flash-image-x", ["embedContent"])


# ---------------------------------------------------------------------------------------------
# Prompts and prices
# ---------------------------------------------------------------------------------------------


def test_templates_cover_every_type_and_are_reproducible():
    assert set(PROMPT_TEMPLATES) == set(CONCRETE_TYPES)
    for vt in CONCRETE_TYPES:
        assert len(PROMPT_TEMPLATES[vt]) >= 3
        assert build_prompt(vt, "x y", 42) == build_prompt(vt, "x y", 42)
        used = {build_prompt(vt, "", s) for s in range(40)}
        assert len(used) == len(PROMPT_TEMPLATES[vt])  # every template reachable
    assert build_prompt("style_change", "  watercolour\n please ", 1).count("watercolour please")
    with pytest.raises(ValueError):
        build_prompt("random", "", 1)


def test_retry_prompt():
    assert retry_prompt("make it snowy", 0) == "make it snowy"
    assert retry_prompt("make it snowy", 1) == "make it snowy (alternative interpretation)"
    assert retry_prompt("make it snowy", 2) == "Create a different version of: make it snowy"
    assert retry_prompt("make it snowy", 3) == "Generate an alternative approach to: make it snowy"
    assert retry_prompt("make it snowy", 4) == "Please try again with: make it snowy"
    assert retry_prompt("make it snowy", 5) == retry_prompt("make it snowy", 1)  # cycles
    assert retry_prompt("", 2) == "Create a different version."


def test_retry_prompt_reaches_the_wire(fake, source, tmp_path):
    from dataclasses import replace

    req = make_request(source, tmp_path)
    fake.script(["text_only"])
    with pytest.raises(GenerationError) as info:
        gen(fake).generate(req)
    assert info.value.outcome in PROMPT_CHANGE_OUTCOMES
    retry = replace(req, prompt=retry_prompt(req.prompt, 1))
    result = gen(fake).generate(retry)
    assert "(alternative interpretation)" in result.prompt_sent
    assert fake.requests[-1].prompt == result.prompt_sent


def test_estimate_cost():
    assert estimate_cost("gemini-2.5-flash-image") == pytest.approx(0.039)
    usage = TokenUsage(prompt_tokens=300, output_tokens=1290, total_tokens=1590)
    assert estimate_cost("models/gemini-2.5-flash-image", usage) == pytest.approx(0.0388, abs=2e-4)
    assert estimate_cost("gemini-3-pro-image", TokenUsage(0, 1120, 1120)) == \
        pytest.approx(0.134, abs=1e-3)
    assert estimate_cost("gemini-3-pro-image", TokenUsage(0, 2000, 2000)) == \
        pytest.approx(0.24, abs=1e-3)
    assert estimate_cost("gemini-3.1-flash-image", TokenUsage(0, 2520, 2520)) == \
        pytest.approx(0.151, abs=1e-3)
    assert estimate_cost("gemini-2.5-flash-image", batch=True) == pytest.approx(0.0195)
    assert estimate_cost("gemini-2.5-flash-image-preview", images=2) == pytest.approx(0.078)
    assert estimate_cost("some-unknown-model") is None


# ---------------------------------------------------------------------------------------------
# The fake itself
# ---------------------------------------------------------------------------------------------


def test_fake_script_function_and_log(fake, source, tmp_path):
    seen = []

    def script(model, index, prompt):
        seen.append((model, index))
        return "overloaded_503" if index == 0 else None

    fake.script(script)
    backend = gen(fake)
    with pytest.raises(GenerationError):
        backend.generate(make_request(source, tmp_path))
    backend.generate(make_request(source, tmp_path))
    assert seen == [(DEFAULT_MODEL, 0), (DEFAULT_MODEL, 1)]
    assert [r.status for r in fake.requests] == [503, 200]
    assert [r.fault for r in fake.requests] == ["overloaded_503", "ok"]
    with pytest.raises(ValueError):
        fake.script(["no-such-fault"])
    assert "ok" in FAULTS


def test_fake_rpm_limit(source, tmp_path):
    with FakeGemini(api_key=KEY, rpm_limit=2) as fake:
        backend = gen(fake)
        backend.generate(make_request(source, tmp_path))
        backend.generate(make_request(source, tmp_path))
        with pytest.raises(GenerationError) as info:
            backend.generate(make_request(source, tmp_path))
        assert info.value.outcome == "rate_limited" and info.value.retry_after_s == 2.0


def test_fake_without_key_header_is_403(fake):
    import httpx

    r = httpx.post(f"{fake.base_url}/v1beta/models/{DEFAULT_MODEL}:generateContent",
                   json={"contents": [{"parts": [{"text": "hi"}]}]}, timeout=5)
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    assert not fake.requests[0].api_key_present


def test_fake_close_interrupts_slow_answers(source, tmp_path):
    fake = FakeGemini(api_key=KEY, slow_s=30).start()
    fake.script(["slow"])
    errors = []

    def call():
        try:
            gen(fake, timeout_s=20).generate(make_request(source, tmp_path))
        except GenerationError as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    fake.close()
    t.join(10)
    assert time.monotonic() - t0 < 5 and errors and errors[0].outcome == "connection"


def test_invalid_base64_image_is_bad_image(fake, source, tmp_path):
    fake.script([Reply(200, {"candidates": [{"content": {"parts": [
        {"inlineData": {"mimeType": "image/png", "data": "!!not base64!!"}}]},
        "finishReason": "STOP"}]})])
    with pytest.raises(GenerationError) as info:
        gen(fake).generate(make_request(source, tmp_path))
    assert (info.value.outcome, info.value.retryable) == ("bad_image", True)
