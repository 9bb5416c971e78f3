"""``varflow run --backend gemini`` end to end: the real SDK against FakeGemini (a real HTTP server,
reached through ``GOOGLE_GEMINI_BASE_URL``), the real flow under a Prefect test server, the real store.

Every row of docs/gemini.md's decision table is exercised here, with the calls counted on the
server (``fake.count()``) and in the ``attempts`` table.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from conftest import make_photo_folder
from limiter_child import slot_times

try:
    from tests.fake_gemini import FakeGemini, image_reply
except ImportError:
    from fake_gemini import FakeGemini, image_reply

from varflow.flows.parameters import RunParameters, Thresholds
from varflow.flows.plan import plan_run
from varflow.flows.variation_flow import run_local
from varflow.storage import Store

KEY = "AIza" "SyTEST-gemini-flow-key-0123456789abcdefXYZ"
ROOT = Path(__file__).resolve().parents[1]
SDK_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_API_VERSION",
           "GOOGLE_GENAI_USE_VERTEXAI", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
           "https_proxy", "all_proxy")
# The seed profile's gate opened wide: accepts whatever comes back, an unrelated picture too.
OPEN_GATE = Thresholds(similarity_min=0, similarity_max=1, diversity_min=0, aesthetic_min=0,
                       object_integrity_min=0, overall_min=0)


@pytest.fixture(scope="module")
def server():
    with FakeGemini(api_key=KEY, retry_delay="1s", slow_s=3.0) as fake:
        yield fake


@pytest.fixture
def fake(server, monkeypatch):
    """The fake, reset, with the SDK pointed at it by its own environment variables."""
    for name in SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.base_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server.reset()
    yield server
    server.reset()


def params(tmp: Path, photos: Path, **kw) -> RunParameters:
    base = dict(input_dir=str(photos), output_dir=str(tmp / "out"), home=str(tmp / "home"), backend="gemini",
                count=1, level="low", adaptive=False, images_in_flight=1, generation_concurrency=1,
                retries=3, retry_backoff_s=0.02, request_timeout_s=5.0)  # the default (calibrated) gate
    base.update(kw)
    return RunParameters(**base)


def photos(tmp: Path, n: int) -> Path:
    make_photo_folder(tmp / "photos", n, size=64)
    return tmp / "photos"


def attempts(store: Store, where: str = "TRUE") -> list[dict]:
    return store.query(f"SELECT a.*, i.path FROM attempts a LEFT JOIN (SELECT DISTINCT image_id, path FROM images) i "
                       f"USING (image_id) WHERE {where} ORDER BY a.started_at, a.try_number")


def images(store: Store) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in store.query("SELECT * FROM images")}


# ---------------------------------------------------------------------------------------------
# A run with a mix of faults: one image per row of the decision table, calls made one at a time
# (one image in flight, one call in flight) so the script maps onto images deterministically.
# ---------------------------------------------------------------------------------------------

MIX = [  # (image, the server's answers for its one attempt, outcomes recorded)
    ("photo-000.png", ["rate_limit_minute", "ok"], ["rate_limited", "ok"]),
    ("photo-001.png", ["server_500", "bad_gateway_html", "overloaded_503", "gateway_timeout_504"],
     ["server_error", "server_error", "server_error", "timeout"]),  # 1 + 3 retries, then given up
    ("photo-002.png", ["text_only", "ok"], ["no_image", "ok"]),
    ("photo-003.png", ["garbage_image", "ok"], ["bad_image", "ok"]),
    ("photo-004.png", ["safety_block"], ["blocked"]),
    ("photo-005.png", ["prompt_blocked"], ["blocked"]),
    ("photo-006.png", ["drop", "ok"], ["connection", "ok"]),
    ("photo-007.png", ["slow", "ok"], ["timeout", "ok"]),
    ("photo-008.png", ["rate_limit_bare", "malformed_json", "ok"], ["rate_limited", "server_error", "ok"]),
    ("photo-009.png", ["rate_limit_day"], ["quota_day"]),
]
N_MIX_IMAGES = len(MIX) + 2  # the last two are never processed: the daily quota stopped the run


@pytest.fixture(scope="module")
def mixed(prefect_server, server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mixed")
    saved = {k: os.environ.get(k) for k in (*SDK_ENV, "NO_PROXY")}
    for k in SDK_ENV:
        os.environ.pop(k, None)
    os.environ.update(GEMINI_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=server.base_url, NO_PROXY="127.0.0.1,localhost")
    server.reset()
    server.script([fault for _, faults, _ in MIX for fault in faults])
    try:
        summary = run_local(params(tmp, photos(tmp, N_MIX_IMAGES), request_timeout_s=1.0))
        log = server.requests
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.reset()
    return summary, Store(tmp / "home"), log, tmp


def test_mixed_faults_every_image_ends_in_a_recorded_state(mixed):
    summary, store, _, _ = mixed
    rows = images(store)
    judged = {Path(r["path"]).name: r["n"] for r in store.query(
        "SELECT i.path, count(v.variation_id) AS n FROM images i LEFT JOIN variations v USING (run_id, image_id) "
        "GROUP BY i.path")}
    assert len(rows) == N_MIX_IMAGES == summary["images_total"]
    for name, _, outcomes in MIX[:-1]:
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["attempts"] == 1
        # an answered call is one judged variation (the gate's verdict on the fake's 64 px edit is
        # the quality tests' business: it rejects about 1 in 36 of them as soft, tests/fake_gemini.py)
        assert judged[name] == (1 if outcomes[-1] == "ok" else 0), name
        assert rows[name]["accepted"] <= judged[name]
    stopped = rows["photo-009.png"]
    assert stopped["status"] == "error" and "quota" in stopped["error"].lower()
    for name in ("photo-010.png", "photo-011.png"):
        assert rows[name]["status"] == "skipped"
        assert "the run stopped (quota_day)" in rows[name]["error"] and "daily quota" in rows[name]["error"]
    # Failed (exit 3) whatever succeeded before the stop, saying how far it got (flows/outcome.py)
    assert summary["status"] == "failed" and summary["images_ok"] > 0
    assert summary["message"].startswith(f"stopped by the daily quota after "
                                         f"{summary['images_ok'] + summary['images_error']} of ")
    assert store.query("SELECT message FROM runs")[0]["message"] == summary["message"]
    assert summary["stop_outcome"] == "quota_day"


def test_mixed_faults_every_call_is_a_row_and_each_row_behaves_as_decided(mixed):
    summary, store, log, _ = mixed
    generate_calls = [r for r in log if r.endpoint == "generateContent"]
    expected_calls = sum(len(faults) for _, faults, _ in MIX)
    assert len(generate_calls) == expected_calls  # no call after quota_day, none unaccounted for
    rows = attempts(store)
    assert len(rows) == expected_calls == summary["calls"]
    assert not any(r["cache_hit"] or r["outcome"] == "cancelled" for r in rows)
    for name, _faults, outcomes in MIX:
        mine = [r for r in rows if Path(r["path"]).name == name]
        assert [r["outcome"] for r in mine] == outcomes, name
        assert [r["try_number"] for r in mine] == list(range(1, len(outcomes) + 1)), name
        assert len({r["variation_id"] for r in mine}) == 1  # retries of one attempt, not new attempts
    # the server saw the answers in that order
    assert [r.fault for r in generate_calls] == [f for _, faults, _ in MIX for f in faults]


def test_mixed_faults_http_status_tokens_and_cost_per_row(mixed):
    _, store, _, _ = mixed
    rows = attempts(store)
    by_outcome = {}
    for r in rows:
        by_outcome.setdefault(r["outcome"], []).append(r)
    for r in by_outcome["ok"]:
        assert r["http_status"] is None and r["output_tokens"] == 1290 and r["prompt_tokens"] > 258
        assert r["cost_usd"] == pytest.approx(0.0388, abs=5e-4)
    statuses = {r["http_status"] for r in by_outcome["server_error"]}
    assert statuses == {500, 502, 503, 200}  # 200: the body was not JSON
    assert {r["http_status"] for r in by_outcome["rate_limited"]} == {429}
    for outcome in ("server_error", "rate_limited", "quota_day", "connection"):
        assert all(r["cost_usd"] == 0 for r in by_outcome[outcome]), outcome  # errors are not billed
    for r in by_outcome["blocked"] + by_outcome["no_image"]:
        assert r["http_status"] == 200 and r["prompt_tokens"] and 0 < r["cost_usd"] < 0.002
    # a retried failure records the delay before its next try; a final one records none
    assert [r["retry_delay_s"] for r in by_outcome["rate_limited"]][0] == 1.0  # RetryInfo "1s"
    assert all(r["retry_delay_s"] is None for r in by_outcome["blocked"] + by_outcome["quota_day"])
    last_server_error = [r for r in rows if r["outcome"] == "timeout" and r["http_status"] == 504][0]
    assert last_server_error["retry_delay_s"] is None  # retries exhausted


def test_mixed_faults_429_retry_delay_is_honoured(mixed):
    _, _, log, _ = mixed
    gen = [r for r in log if r.endpoint == "generateContent"]
    i = next(k for k, r in enumerate(gen) if r.fault == "rate_limit_minute")
    assert gen[i + 1].monotonic - gen[i].monotonic >= 1.0  # RetryInfo.retryDelay "1s"
    j = next(k for k, r in enumerate(gen) if r.fault == "server_500")
    assert gen[j + 1].monotonic - gen[j].monotonic < 1.0  # plain backoff (0.02 s) otherwise


def test_mixed_faults_no_image_is_retried_with_a_changed_prompt(mixed):
    _, store, log, _ = mixed
    gen = [r for r in log if r.endpoint == "generateContent"]
    for fault in ("text_only", "garbage_image"):
        i = next(k for k, r in enumerate(gen) if r.fault == fault)
        first, retry = gen[i].prompt, gen[i + 1].prompt
        assert first != retry and "(alternative interpretation)" in retry and "(alternative" not in first
    sent = {r["prompt"] for r in attempts(store, "outcome = 'ok'")}
    assert any("(alternative interpretation)" in p for p in sent)  # the prompt actually sent is recorded
    assert sent <= {r.prompt for r in gen}


def test_mixed_faults_images_with_failed_calls_are_not_marked_finished(mixed):
    _, store, _, _ = mixed
    rows = images(store)
    assert rows["photo-000.png"]["job_key"] is not None  # accepted: done
    for name in ("photo-001.png", "photo-004.png", "photo-009.png"):  # failed calls: redone next run
        assert rows[name]["job_key"] is None


# ---------------------------------------------------------------------------------------------
# Worst case, fatal answers, budget, dry run, rate limit
# ---------------------------------------------------------------------------------------------


def test_worst_case_calls_per_variation_is_attempts_times_tries(prefect_server, fake, tmp_path):
    fake.script(lambda model, index, prompt: "overloaded_503")
    p = params(tmp_path, photos(tmp_path, 1), level="high", retries=2)
    plan = plan_run(p)
    summary = run_local(p)
    # high: 3 attempts per variation, each 1 + 2 retries: 9 calls for the one variation
    assert fake.count() == 3 * 3 == plan["calls_worst_case"]
    store = Store(tmp_path / "home")
    assert len(attempts(store)) == 9
    assert images(store)["photo-000.png"]["attempts"] == 3 and summary["images_ok"] == 1


def test_auth_error_mid_run_stops_at_once_without_retries(prefect_server, fake, tmp_path):
    fake.script(lambda model, index, prompt: "bad_key_echo")  # the key is valid for models.get
    p = params(tmp_path, photos(tmp_path, 3), count=4, generation_concurrency=4)
    summary = run_local(p)
    store = Store(tmp_path / "home")
    calls = fake.count()
    assert 1 <= calls <= 4  # at most the calls already in flight; no retry, no later call
    rows = attempts(store)
    assert sorted(r["outcome"] for r in rows) == sorted(["auth"] * calls + ["cancelled"] * (4 - calls))
    assert all(r["try_number"] == 1 for r in rows)
    st = {n: r["status"] for n, r in images(store).items()}
    assert st == {"photo-000.png": "error", "photo-001.png": "skipped", "photo-002.png": "skipped"}
    assert summary["status"] == "failed" and "API key" in summary["message"]


def test_wrong_key_stops_before_any_paid_call_and_the_cli_exits_2(prefect_server, fake, tmp_path, monkeypatch, capsys):
    from varflow.flows.cli import main

    monkeypatch.setenv("GEMINI_API_KEY", "AIza" "SyWRONG-key-000000000000000000000000")
    folder = photos(tmp_path, 2)
    code = main(["run", str(folder), "--out", str(tmp_path / "out"), "--home", str(tmp_path / "home"),
                 "--backend", "gemini", "--count", "1"])
    err = capsys.readouterr().err
    # the CLI's preflight (flows/preflight.py): one line, before Prefect starts; a deployment's run
    # stops on the flow's own check instead (test_unknown_model_names_the_model_and_varflow_models)
    assert code == 2 and "API key was rejected" in err and "GEMINI_API_KEY" in err and len(err.splitlines()) == 1
    assert fake.count() == 0 and fake.count(endpoint="models.get") == 1  # the free models.get check caught it
    assert not (tmp_path / "home" / "tables").exists()  # no run was started
    assert "WRONG" not in err


def test_unknown_model_names_the_model_and_varflow_models(prefect_server, fake, tmp_path):
    retired = "gemini-2.5-flash-image-preview"
    summary = run_local(params(tmp_path, photos(tmp_path, 2), model=retired))
    assert fake.count() == 0 and summary["status"] == "failed" and summary["stop_outcome"] == "not_found"
    assert retired in summary["message"] and "varflow models" in summary["message"]
    for r in images(Store(tmp_path / "home")).values():
        assert r["status"] == "skipped" and retired in r["error"]


def test_404_mid_run_is_not_retried(prefect_server, fake, tmp_path):
    fake.script(["not_found"])
    summary = run_local(params(tmp_path, photos(tmp_path, 2)))
    assert fake.count() == 1 and summary["stop_outcome"] == "not_found"
    assert "varflow models" in summary["message"] and "gemini-2.5-flash-image" in summary["message"]


def test_budget_cap_stops_new_calls_and_skips_the_rest(prefect_server, fake, tmp_path):
    # $0.039 estimated per call: $0.10 pays for two calls, not a third
    p = params(tmp_path, photos(tmp_path, 3), count=2, generation_concurrency=2, max_cost_usd=0.10)
    summary = run_local(p)
    store = Store(tmp_path / "home")
    assert fake.count() == 2 == summary["calls"]
    spent = store.query("SELECT sum(cost_usd) AS s FROM attempts")[0]["s"]
    assert spent <= 0.10 and summary["cost_usd"] == pytest.approx(spent)
    cancelled = attempts(store, "outcome = 'cancelled'")
    assert cancelled and all("budget cap" in r["error"] and "--max-cost" in r["error"] for r in cancelled)
    assert all(r["cost_usd"] == 0 for r in cancelled)
    st = {n: (r["status"], r["error"]) for n, r in images(store).items()}
    assert st["photo-000.png"][0] == "ok"
    for n in ("photo-001.png", "photo-002.png"):
        assert st[n][0] == "skipped" and "budget" in st[n][1]
    assert summary["stop_outcome"] == "budget" and summary["images_ok"] == 1


def test_dry_run_prints_calls_and_cost_and_makes_none(fake, tmp_path, monkeypatch, capsys):
    from varflow.flows.cli import main

    monkeypatch.delenv("GEMINI_API_KEY")  # no key needed to plan
    folder = photos(tmp_path, 3)
    code = main(["run", str(folder), "--home", str(tmp_path / "home"), "--backend", "gemini", "--count", "2",
                 "--level", "medium", "--no-adapt", "--retries", "2", "--dry-run", "--json"])
    plan = json.loads(capsys.readouterr().out)
    assert code == 0 and fake.requests == []  # not a single request, not even models.get
    # no history: the stated prior, 1 in 2 attempts accepted (tests/test_estimate.py checks the arithmetic)
    assert plan["images_to_do"] == 3 and plan["calls_expected"] == pytest.approx(3 * 3.25, abs=0.1)
    assert plan["basis"].startswith("prior, no history at level medium")
    assert plan["calls_worst_case"] == 6 * 2 * 3  # x 2 attempts (medium) x 3 tries
    assert plan["cost_expected_usd"] == pytest.approx(3 * 3.25 * 0.039)
    assert plan["cost_worst_case_usd"] == pytest.approx(36 * 0.039)
    assert not (tmp_path / "home").exists()  # no run, no store
    main(["run", str(folder), "--home", str(tmp_path / "home"), "--backend", "gemini", "--dry-run"])
    text = capsys.readouterr().out
    assert "no call made" in text and "expected 23: " in text and "worst case 180" in text and "$0.91" in text


def test_requests_per_minute_paces_the_calls(prefect_server, fake, tmp_path):
    rpm = 120  # one start every 0.5 s
    p = params(tmp_path, photos(tmp_path, 3), count=2, images_in_flight=3, generation_concurrency=4,
               requests_per_minute=rpm)
    run_local(p)
    starts = sorted(r.monotonic for r in fake.requests if r.endpoint == "generateContent")
    assert len(starts) == 6
    assert_paced(starts, 60 / rpm, slack=0.15)
    assert fake.max_in_flight <= 4


def assert_paced(starts: list[float], interval: float, slack: float) -> None:
    """Call i (in arrival order) starts no earlier than i intervals after the first.

    Each call waits for its own slot, slots are ``interval`` apart, so the i-th arrival is at or
    after the i-th slot; ``slack`` only covers how late the *first* call was on its slot (thread
    scheduling on a loaded machine), never an early start.
    """
    for i, t in enumerate(starts):
        assert t - starts[0] >= i * interval - slack, (i, [round(s - starts[0], 3) for s in starts])


def test_rate_limit_holds_across_processes(tmp_path):
    rpm, per_process, procs = 600, 6, 3  # 10 starts/s shared by three processes
    starts = slot_times(tmp_path / "rl" / "gemini.json", rpm, per_process, procs, start_in=1.5, timeout=60)
    assert len(starts) == procs * per_process
    assert_paced(starts, 60 / rpm, slack=0.05)  # one shared pace whichever process asked
    span = starts[-1] - starts[0]
    assert span == pytest.approx((len(starts) - 1) * 60 / rpm, abs=0.25)


# ---------------------------------------------------------------------------------------------
# Keys: from the SDK's environment or a Prefect Secret block, never anywhere else
# ---------------------------------------------------------------------------------------------


def test_missing_key_is_a_clear_error_before_any_work(fake, tmp_path, monkeypatch):
    from varflow.flows.cli import main

    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(SystemExit) as info:
        main(["run", str(photos(tmp_path, 1)), "--home", str(tmp_path / "home"), "--backend", "gemini"])
    assert "no Gemini API key" in str(info.value) and "GEMINI_API_KEY" in str(info.value)
    assert not (tmp_path / "home").exists() and fake.requests == []


def test_a_missing_secret_block_fails_before_any_call(prefect_server, fake, tmp_path, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(ValueError, match="no Prefect Secret block named 'no-such-block'"):
        run_local(params(tmp_path, photos(tmp_path, 1), api_key_secret="no-such-block"))
    assert fake.requests == []


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record):
        self.texts.append(self.format(record))
        if record.exc_info:
            self.texts.append(logging.Formatter().formatException(record.exc_info))


def test_the_key_never_appears_in_logs_records_artifacts_caches_or_errors(prefect_server, fake, tmp_path,
                                                                          monkeypatch, capsys, caplog):
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client

    # the key comes from a Prefect Secret block here; the server echoes it back in an error
    Secret(value=KEY).save("varflow-test-gemini-key", overwrite=True)
    monkeypatch.delenv("GEMINI_API_KEY")
    fake.script(["ok", "server_500", "ok", "text_only", "ok", "bad_key_echo"])
    capture = _Capture()
    logging.getLogger().addHandler(capture)
    logging.getLogger("prefect").addHandler(capture)
    caplog.set_level(logging.DEBUG)
    try:
        summary = run_local(params(tmp_path, photos(tmp_path, 5), api_key_secret="varflow-test-gemini-key"))
    finally:
        logging.getLogger().removeHandler(capture)
        logging.getLogger("prefect").removeHandler(capture)
    assert fake.count() == 6 and summary["stop_outcome"] == "auth"
    assert any(r.fault == "bad_key_echo" for r in fake.requests) and all(r.api_key_valid for r in fake.requests)

    out = capsys.readouterr()
    texts = {"summary": json.dumps(summary, default=str), "stdout": out.out, "stderr": out.err,
             "caplog": caplog.text, "logs": "\n".join(capture.texts)}
    with get_client(sync_client=True) as client:
        texts["artifacts"] = json.dumps([a.model_dump(mode="json") for a in client.read_artifacts()])
        texts["flow_runs"] = json.dumps([f.model_dump(mode="json") for f in client.read_flow_runs()])
        texts["task_runs"] = json.dumps([t.model_dump(mode="json") for t in client.read_task_runs()])
        texts["api_logs"] = json.dumps([entry.model_dump(mode="json") for entry in client.read_logs()])
    assert "varflow run" in texts["artifacts"] and "HTTP 400" in texts["api_logs"] + texts["logs"]
    for where, text in texts.items():
        assert KEY not in text, where
    store = Store(tmp_path / "home")
    auth = store.query("SELECT error FROM attempts WHERE outcome = 'auth'")
    assert len(auth) == 1 and "API key was rejected" in auth[0]["error"]  # the echoed key is not quoted
    leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert leaks == []  # Parquet files, DuckDB file, variation cache, Prefect results, outputs
    for table in ("runs", "images", "variations", "attempts"):
        assert KEY not in json.dumps(store.query(f"SELECT * FROM {table}"), default=str), table


def test_an_expected_failure_is_one_log_line_without_a_traceback(prefect_server, fake, tmp_path, caplog):
    """A safety block is an outcome, not a crash: Prefect's ERROR line for the failed task run
    stays, its traceback goes (the attempt's row has the details)."""
    fake.script(["safety_block", "server_500", "ok"])
    caplog.set_level(logging.INFO)
    summary = run_local(params(tmp_path, photos(tmp_path, 2), retries=0))
    assert summary["images_ok"] == 2
    failed = [r for r in caplog.records
              if r.name == "prefect.task_runs" and "GenerationFailed" in r.getMessage()]
    raised = [r for r in failed if r.getMessage().startswith("Task run failed with exception")]
    assert len(raised) == 2  # blocked, then a 500 not retried (each also ends "Finished in state Failed")
    assert all(r.exc_info is None and r.exc_text is None for r in failed)
    assert "Traceback" not in caplog.text
    assert any("blocked" in r.getMessage() for r in failed)


# ---------------------------------------------------------------------------------------------
# --dedup-library: a model that answers every photo with the same picture
# ---------------------------------------------------------------------------------------------


def test_dedup_library_rejects_a_copy_of_any_sources_accepted_variation(prefect_server, fake, tmp_path):
    shots = make_photo_folder(tmp_path / "shots", 5, size=64)
    same_picture = shots[4].read_bytes()
    fake.script(lambda model, index, prompt: image_reply(same_picture))
    folders = []
    for name, files in (("one", shots[:2]), ("two", shots[2:3]), ("three", shots[3:4])):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f.name).write_bytes(f.read_bytes())
        folders.append(tmp_path / name)

    def run(folder: Path, library: bool) -> dict[str, list[dict]]:
        # the fake answers with another photo: only an open gate keeps it (the calibrated one
        # rightly calls it unrelated), and this test is about the library, not the gate
        summary = run_local(params(tmp_path, folder, output_dir=str(tmp_path / f"out-{folder.name}"),
                                   dedup_library=library, profile="seed", thresholds=OPEN_GATE))
        rows = Store(tmp_path / "home").query(
            "SELECT v.*, i.path FROM variations v JOIN images i USING (run_id, image_id) WHERE v.run_id = ? "
            "ORDER BY i.path, v.attempt", [summary["run_id"]])
        by_photo: dict[str, list[dict]] = {}
        for r in rows:
            by_photo.setdefault(Path(r["path"]).name, []).append(r)
        return by_photo

    # one run, two photos: the second photo's picture is the first one's accepted variation
    first = run(folders[0], library=True)
    [kept] = first[shots[0].name]
    assert kept["accepted"] and Path(kept["output_path"]).is_file()
    assert first[shots[1].name] and all(
        not r["accepted"] and r["reject_reason"] == "duplicate" and r["duplicate_of"] == kept["variation_id"]
        for r in first[shots[1].name])
    # a later run, another photo: the library is loaded from the store
    second = run(folders[1], library=True)
    assert second[shots[2].name] and all(r["duplicate_of"] == kept["variation_id"] for r in second[shots[2].name])
    # without the flag only a photo's own variations count: the same picture is accepted again
    third = run(folders[2], library=False)
    assert [r["accepted"] for r in third[shots[3].name]] == [True]
    assert third[shots[3].name][0]["duplicate_of"] is None


# ---------------------------------------------------------------------------------------------
# varflow models
# ---------------------------------------------------------------------------------------------


def test_varflow_models_lists_image_models(fake, capsys):
    from varflow.flows.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines()]
    assert "gemini-2.5-flash-image" in names and "gemini-3-pro-image" in names
    assert "gemini-2.5-flash" not in names and "imagen-4.0-generate-001" not in names


def test_varflow_models_says_why_it_cannot_list(fake, capsys, monkeypatch):
    from varflow.flows.cli import main

    monkeypatch.setenv("GEMINI_API_KEY", "AIza" "SyWRONG-key-000000000000000000000000")
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "key was refused" in err and "WRONG" not in err
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    assert main(["models", "--timeout", "5"]) == 1
    assert "cannot reach the API" in capsys.readouterr().err
    monkeypatch.delenv("GEMINI_API_KEY")
    assert main(["models"]) == 2
    assert "no Gemini API key" in capsys.readouterr().err
