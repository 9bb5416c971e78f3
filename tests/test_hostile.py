"""Hostile inputs (issue 20): paths, file names, parameters and queries are data, never code.

Real parts: data directories named with quotes, brackets, globs, SQL and unicode on disk; real
``varflow`` subprocesses; a real run over file names made to forge Markdown, log lines and
terminal sequences, its artifact read back from the session's ``prefect server start``; the real
google-genai SDK against FakeGemini for a key echoed back altered; deployments registered on that
server for the parameter schema's 409.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import make_photo_folder
from varflow.storage import Store

from varflow.runtime.records import AttemptRecord, BatchJobRecord, RunRecord, utcnow

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-Pw-9f1c"  # must never be printed, answered or recorded


def varflow(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``varflow ARGS`` as a user types it, in a child process."""
    return subprocess.run([sys.executable, "-m", "varflow.flows.cli", *args], capture_output=True, text=True,
                          timeout=300,
                          cwd=ROOT, env={**(env or os.environ), "PYTHONPATH": str(ROOT)})


def api(env: dict, path: str, body: dict | None = None, method: str | None = None) -> tuple[int, object]:
    req = urllib.request.Request(env["PREFECT_API_URL"] + path, method=method or ("GET" if body is None else "POST"),
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _run(run_id: str) -> RunRecord:
    return RunRecord(run_id, None, "{}", "in", "out", "local", "local-v1", utcnow(), None, "running")


# -- 1. the data directory's path is data ------------------------------------------------------------

HOSTILE_HOMES = [
    "o'brien",
    "glob[1]",  # as a glob it matches the neighbour "glob1"
    "x' AS home; COPY (SELECT 42) TO '{injected}'; SELECT '",
    "sp ace $HOME é ü *?",
]


@pytest.mark.parametrize("name", HOSTILE_HOMES)
def test_a_data_directory_named_with_quotes_brackets_globs_or_sql_works_and_runs_nothing(tmp_path, name):
    injected = tmp_path / "injected.txt"
    home = tmp_path / name.format(injected=injected)
    neighbour = Store(tmp_path / "glob1").initialize()
    neighbour.write_run(_run("neighbour"))
    store = Store(home).initialize()
    for run_id in ("r1", "r2"):
        store.write_run(_run(run_id))
    store.compact_run("r1")  # one run compacted, one still in parts
    assert [r["run_id"] for r in Store(home).query("SELECT run_id FROM runs ORDER BY 1")] == ["r1", "r2"]
    assert Store(home).query("SELECT home FROM varflow_meta") == [{"home": home.resolve().as_posix()}]
    with Store(home).connect() as con:  # the views file, as a notebook or the duckdb CLI opens it
        assert con.execute("SELECT count(*) FROM runs").fetchall() == [(2,)]
    out = varflow("sql", "SELECT run_id FROM runs ORDER BY 1", "--home", str(home), "--json")
    assert out.returncode == 0, out.stderr
    assert [r["run_id"] for r in json.loads(out.stdout)] == ["r1", "r2"]
    assert not injected.exists(), "the path ran as SQL"


# -- 2. varflow sql reads the store and nothing else ----------------------------------------------------

@pytest.fixture(scope="module")
def sql_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("sql") / "home"
    Store(home).initialize().write_run(_run("r1"))
    return home


def _escape_targets(home: Path) -> dict[str, Path]:
    tables = home / "tables" / "runs"
    return {"inside": tables / "written-inside.parquet", "outside": home.parent / "written-outside.csv"}


@pytest.mark.parametrize("query", [
    "EXPLAIN ANALYZE COPY (SELECT 42 AS x) TO '{inside}'",  # an allowed folder is writable
    "COPY runs TO '{inside}'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM glob('/home/*')",
    "SELECT * FROM read_parquet('{home}/../*/tables/runs/**/*.parquet')",
    "SET enable_external_access = true",
])
def test_varflow_sql_refuses_what_reads_or_writes_outside_the_store_in_one_line(sql_home, query):
    targets = _escape_targets(sql_home)
    out = varflow("sql", query.format(home=sql_home, **targets), "--home", str(sql_home))
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("varflow sql: "), out.stderr
    assert out.stdout == ""
    assert not any(p.exists() for p in targets.values()), "the query wrote a file"


def test_varflow_sql_still_reads_describes_and_explains_the_store(sql_home):
    for query in ("DESCRIBE runs", "EXPLAIN ANALYZE SELECT count(*) FROM runs"):
        out = varflow("sql", query, "--home", str(sql_home), "--json")
        assert out.returncode == 0, (query, out.stderr)
        assert json.loads(out.stdout)


# -- 3 and 8. a credential never reaches a record; the operator chooses where a worker connects ----------

def _flow_runs(env: dict) -> int:
    status, count = api(env, "/flow_runs/count", {})
    assert status == 200
    return count


@pytest.mark.parametrize("args, field, commands", [
    (["--shared-limits", f"redis://:{PASSWORD}@127.0.0.1:6379/0"], "shared_limits", ("run", "serve")),
    (["--shared-limits", f"redis://127.0.0.1:6379/0?password={PASSWORD}"], "shared_limits", ("run",)),
    (["--runner", "dask", "--dask-address", f"tls://user:{PASSWORD}@127.0.0.1:8786"], "dask_address", ("run",)),
    (["--backend", "gemini", "--api-key-secret", f"AIzaSy{PASSWORD}-0123456789abcdefghijkl"], "api_key_secret",
     ("run", "serve")),
])
def test_the_cli_and_serve_refuse_a_credential_before_prefect_records_a_run(prefect_api, tmp_path, args, field,
                                                                          commands):
    photos = tmp_path / "photos"
    make_photo_folder(photos, 1, size=64)
    before = _flow_runs(prefect_api)
    env = {**prefect_api, "VARFLOW_HOME": str(tmp_path / "home"), "GEMINI_API_KEY": "unused-key"}
    extra = {"run": [], "serve": ["--dry-run"]}
    for command in ([name, str(photos), "--out", str(tmp_path / "out"), *extra[name]] for name in commands):
        out = varflow(*command, *args, env=env)
        assert out.returncode == 2, (command, out.stdout[-2000:], out.stderr[-2000:])
        assert PASSWORD not in out.stdout + out.stderr
        assert field in out.stderr and ("VARFLOW_REDIS_PASSWORD" in out.stderr or "Secret block" in out.stderr)
    assert _flow_runs(prefect_api) == before, "a flow run was created, its parameters recorded"


def test_serve_refuses_a_credential_in_a_schedules_parameters(tmp_path):
    out = varflow("serve", str(tmp_path), "--dry-run", "--every", "60",
                  "--every-set", f"shared_limits=redis://:{PASSWORD}@127.0.0.1:6379/0")
    assert out.returncode == 2 and "shared_limits" in out.stderr and "VARFLOW_REDIS_PASSWORD" in out.stderr
    assert PASSWORD not in out.stdout + out.stderr


PINNED_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def deployments(prefect_api) -> dict:
    """Two deployments registered on the session's server (no worker: nothing runs them): one
    pinning a Redis for the shared limits, one whose parameter schema is not enforced."""
    code = ("import json, sys\n"
            "from varflow.deployments.serve import deployment\n"
            "from varflow.flows.parameters import RunParameters\n"
            "for name, enforce, extra in json.loads(sys.argv[1]):\n"
            "    d = deployment(name=name, params=RunParameters(input_dir='/nonexistent', **extra))\n"
            "    d.enforce_parameter_schema = enforce\n"
            "    print('ID', name, d.apply())\n")
    specs = [["hostile-pinned", True, {"shared_limits": PINNED_REDIS}], ["hostile-loose", False, {}]]
    out = subprocess.run([sys.executable, "-c", code, json.dumps(specs)], capture_output=True, text=True,
                         timeout=180, cwd=ROOT, env={**prefect_api, "PYTHONPATH": str(ROOT)})
    ids = {line.split()[1]: line.split()[2] for line in out.stdout.splitlines() if line.startswith("ID ")}
    assert out.returncode == 0 and len(ids) == 2, out.stderr[-3000:]
    return {"pinned": ids["hostile-pinned"], "loose": ids["hostile-loose"]}


@pytest.mark.parametrize("parameters, field", [
    ({"shared_limits": f"redis://:{PASSWORD}@127.0.0.1:6379/0"}, "shared_limits"),
    ({"runner": "dask", "dask_address": f"tls://user:{PASSWORD}@127.0.0.1:8786"}, "dask_address"),
    ({"paid_backend": {"api_key_secret": f"AIzaSy{PASSWORD}"}}, "api_key_secret"),
])
def test_prefects_server_refuses_a_credential_from_the_api_with_409_naming_the_field(
        prefect_api, deployments, parameters, field):
    before = _flow_runs(prefect_api)
    status, answer = api(prefect_api, f"/deployments/{deployments['pinned']}/create_flow_run",
                         {"parameters": parameters})
    assert status == 409 and field in answer["detail"], answer
    assert _flow_runs(prefect_api) == before  # refused, not recorded (the answer goes to whoever sent it)


def test_the_flow_refuses_a_credential_when_the_schema_is_not_enforced(prefect_api, deployments):
    from varflow.flows.variation_flow import variation_run

    status, run = api(prefect_api, f"/deployments/{deployments['loose']}/create_flow_run",
                      {"parameters": {"shared_limits": f"redis://:{PASSWORD}@127.0.0.1:6379/0"}})
    assert status == 201, "without enforcement the server takes it: the flow must refuse it itself"
    api(prefect_api, f"/flow_runs/{run['id']}", method="DELETE")
    with pytest.raises(ValueError) as refused:  # the flow's body, as the worker would start it
        variation_run.fn(input_dir="/nonexistent", shared_limits=f"redis://:{PASSWORD}@127.0.0.1:6379/0")
    assert "VARFLOW_REDIS_PASSWORD" in str(refused.value) and PASSWORD not in str(refused.value)


def test_a_deployments_run_connects_only_where_the_deployment_pins_or_the_worker_allows(
        prefect_api, deployments):
    """``deployment_pins`` reads the deployment from the server, as the flow does for its run."""
    code = ("import json, sys\n"
            "from varflow.flows.addresses import allowed_addresses, deployment_pins, refuse_unpinned_addresses\n"
            "from varflow.flows.parameters import RunParameters\n"
            "out = {}\n"
            "for name, fields in json.loads(sys.argv[1]).items():\n"
            "    try:\n"
            "        refuse_unpinned_addresses(RunParameters(input_dir='x', **fields), deployment_pins(),\n"
            "                                  allowed_addresses())\n"
            "        out[name] = 'ok'\n"
            "    except ValueError as exc:\n"
            "        out[name] = str(exc)\n"
            "print('RESULT', json.dumps(out))\n")
    cases = {"pinned": {"shared_limits": PINNED_REDIS},
             "other_redis": {"shared_limits": "redis://10.66.6.6:6379/0"},
             "other_scheduler": {"runner": "dask", "dask_address": "tcp://10.66.6.6:8786"},
             "allowed_scheduler": {"runner": "dask", "dask_address": "tcp://10.0.0.5:8786"},
             "files": {"shared_limits": "file"}}
    env = {**prefect_api, "PYTHONPATH": str(ROOT), "VARFLOW_ALLOWED_ADDRESSES": "tcp://10.0.0.5:8786",
           "PREFECT__RUNTIME__DEPLOYMENT__ID": deployments["pinned"]}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(cases)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    result = json.loads(lines[0][len("RESULT "):])
    assert result["pinned"] == result["allowed_scheduler"] == result["files"] == "ok"
    for refused in ("other_redis", "other_scheduler"):
        assert "VARFLOW_ALLOWED_ADDRESSES" in result[refused] and "refused" in result[refused]
    # A run that is not a deployment's (varflow run, Python) is its caller's to point anywhere.
    from varflow.flows.addresses import refuse_unpinned_addresses
    from varflow.flows.parameters import RunParameters

    refuse_unpinned_addresses(RunParameters(input_dir="x", runner="dask", dask_address="tcp://10.66.6.6:8786"),
                              None, set())


# -- 4. names never drive a sink: Markdown, log records, the terminal ---------------------------------------

FORGED_HEADING = "evil\n# Forged heading | col"
TITLE = "title\x1b]0;pwned\x07"
CLEAR = "clear\x1b[2J"
HOSTILE_NAMES = [FORGED_HEADING + ".png", TITLE + ".png", CLEAR + ".png"]


@pytest.fixture(scope="module")
def hostile_run(prefect_api, tmp_path_factory) -> dict:
    """One real run (local backend) over photos named to forge output, into a data directory
    named with quotes, brackets and unicode. Keeps the child's output (its log lines)."""
    base = tmp_path_factory.mktemp("hostile-run")
    photos = make_photo_folder(base / "photos", len(HOSTILE_NAMES) + 1, size=96)
    for photo, name in zip(photos, HOSTILE_NAMES):
        photo.rename(photo.with_name(name))
    home, out_dir = base / "d'ata [1] ü", base / "out"
    params = dict(input_dir=str(base / "photos"), output_dir=str(out_dir), home=str(home), count=1, seed=2,
                  images_in_flight=1)
    child = subprocess.run([sys.executable, str(ROOT / "tests" / "flow_child.py"), json.dumps(params)],
                           env={**prefect_api, "VARFLOW_HOME": str(home)}, capture_output=True, text=True,
                           timeout=300, cwd=ROOT)
    lines = [line for line in child.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert child.returncode == 0 and lines, child.stdout[-3000:] + child.stderr[-3000:]
    return {"home": home, "summary": json.loads(lines[-1][len("SUMMARY "):]), "output": child.stdout + child.stderr}


def test_a_hostile_name_forges_no_log_line_and_sends_no_escape_to_the_terminal(hostile_run):
    output = hostile_run["output"]
    assert "\x1b" not in output and "\x07" not in output
    assert not any(line.lstrip().startswith("# Forged") for line in output.splitlines())
    assert "evil\\n# Forged heading | col.png" in output  # the image's line, as one line
    assert "\\x1b]0;pwned\\x07" in output and "\\x1b[2J" in output


def test_the_markdown_report_keeps_its_table_and_headings(hostile_run, prefect_api):
    run_id = hostile_run["summary"]["run_id"]
    status, artifacts = api(prefect_api, "/artifacts/filter", {"artifacts": {
        "key": {"any_": ["varflow-run-report"]}, "flow_run_id": {"any_": [run_id]}}})
    assert status == 200 and len(artifacts) == 1, artifacts
    md = artifacts[0]["data"]
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings[0].startswith("# varflow run") and all(h.startswith("## ") for h in headings[1:])
    assert "Forged" not in "".join(headings)
    table = md.split("## Images\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(table) == 2 + hostile_run["summary"]["images_total"]
    assert all(row.count(" | ") == table[0].count(" | ") for row in table[2:]), "a name added a column"
    assert "\x1b" not in md


def test_the_summary_and_varflow_sql_print_no_raw_escape(hostile_run):
    from varflow.flows.report import RunSummary

    summary = hostile_run["summary"]
    names = {f for f in RunSummary.__dataclass_fields__}
    text = RunSummary(**{k: v for k, v in summary.items() if k in names}).render_text()
    assert "\x1b" not in text
    out = varflow("sql", "SELECT regexp_extract(path, '[^/]*$') AS name, error FROM images ORDER BY path",
                  "--home", str(hostile_run["home"]))
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\\x1b]0;pwned\\x07" in out.stdout and "\\x1b[2J" in out.stdout
    assert not any(line.startswith("# Forged") for line in out.stdout.splitlines())
    out = varflow("sql", "SELECT path FROM images", "--home", str(hostile_run["home"]), "--json")
    assert "\x1b" not in out.stdout and TITLE + ".png" in [Path(r["path"]).name for r in json.loads(out.stdout)]


def test_one_escaping_function_per_sink():
    from varflow.safety.escaping import for_html, for_log, for_markdown, for_terminal

    assert for_terminal(TITLE) == "title\\x1b]0;pwned\\x07"
    assert for_terminal("a\u202eb") == "a\\u202eb"  # text shown in another order than stored
    assert for_terminal("one\ntwo", keep_newlines=True) == "one\ntwo" and for_log("one\ntwo") == "one\\ntwo"
    assert "\n" not in for_markdown(FORGED_HEADING) and "\\|" in for_markdown(FORGED_HEADING)
    assert for_markdown("[x](javascript:alert(1)) <b>") == "\\[x\\](javascript:alert(1)) \\<b>"
    assert for_html('<img src=x onerror="a">') == "&lt;img src=x onerror=&quot;a&quot;&gt;"


# -- 5. files follow the umask -----------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o077, 0o600), (0o027, 0o640), (0o022, 0o644)])
def test_every_file_follows_the_umask(hostile_run, tmp_path, umask, mode):
    code = ("import os, sys; os.umask(int(sys.argv[1], 8))\n"
            "from pathlib import Path\n"
            "from PIL import Image\n"
            "from varflow.flows.gallery import write_gallery\n"
            "from varflow.generation.cache import GenerationCache\n"
            "from varflow.images.imageio import save_atomic\n"
            "from varflow.images.thumbnails import save_thumbnail\n"
            "home, out = Path(sys.argv[2]), Path(sys.argv[3])\n"
            "src = save_atomic(Image.new('RGB', (32, 32), 'red'), out / 'variation.png')\n"
            "save_thumbnail(src, out / 'thumb.jpg')\n"
            "generated = save_atomic(Image.new('RGB', (32, 32), 'blue'), out / 'generated.png')\n"
            "entry = GenerationCache(out / 'cache', max_bytes=2**20).keep('k' * 64, generated, {})\n"
            "write_gallery(home, out / 'gallery.html')\n"
            "print('CACHED', entry.path)\n")
    out = subprocess.run([sys.executable, "-c", code, oct(umask), str(hostile_run["home"]), str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    cached = Path(out.stdout.split("CACHED ", 1)[1].strip())
    for path in (tmp_path / "variation.png", tmp_path / "thumb.jpg", tmp_path / "gallery.html", cached):
        assert path.stat().st_mode & 0o777 == mode, path


# -- 7. redaction: any fragment of the key, any case, wherever errors are kept --------------------------------

ECHO_KEY = "vf-hostile-Key-7f3a9c21e4b8d06a5c"


def _altered(key: str) -> list[str]:
    return [key.upper(), key[:12] + key[13:], key.swapcase()[3:]]


def test_redaction_covers_fragments_in_calls_batch_jobs_logs_and_exceptions(tmp_path):
    from fake_gemini import FakeGemini, Reply

    from varflow.generation.backends import GenerationError
    from varflow.generation.backends.base import VariationRequest
    from varflow.generation.backends.gemini import GeminiGenerator
    from varflow.safety.escaping import OneLineRecords

    src = tmp_path / "src.png"
    from PIL import Image

    Image.new("RGB", (64, 48), "red").save(src)
    echoes = _altered(ECHO_KEY)
    with FakeGemini(api_key=ECHO_KEY) as fake:
        fake.script([Reply(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                           "message": f"bad request for key {e}"}}) for e in echoes])
        backend = GeminiGenerator(api_key=ECHO_KEY, base_url=fake.base_url, timeout_s=5.0)
        errors = []
        for attempt in range(len(echoes)):
            req = VariationRequest(image_id="abc", source_path=str(src), variation_type="object_add", prompt="p",
                                   seed=1, attempt=attempt, output_path=str(tmp_path / f"v{attempt}.png"))
            with pytest.raises(GenerationError) as info:
                backend.generate(req)
            errors.append(str(info.value))
        backend.close()
    store = Store(tmp_path / "home").initialize()
    for i, (error, echo) in enumerate(zip(errors, echoes)):
        store.write_attempt(AttemptRecord(
            run_id="r1", image_id="abc", variation_id=f"v{i}", attempt=i, try_number=1, backend="gemini", model="m",
            prompt="p", outcome="invalid_request", error=f"{error} / raw {echo}", latency_ms=1.0,
            quality_level="high", started_at=utcnow()))
    store.write_batch_job(BatchJobRecord(
        run_id="r1", job_name="batches/1", submit_run_id="r1", display_name="d", backend="gemini-batch", model="m",
        input_dir="in", name_tag="t", source="inline", input_file=None, requests=1, state="failed", succeeded=None,
        failed=None, submitted_at=utcnow(), updated_at=utcnow(), message=f"job failed: key {echoes[0]} refused"))
    kept = json.dumps(store.query("SELECT error FROM attempts") + store.query("SELECT message FROM batch_jobs"))
    record = logging.LogRecord("varflow.runtime.calls", logging.WARNING, __file__, 1, "call failed: %s", (echoes[1],),
                               None)
    OneLineRecords().filter(record)
    for text in (*errors, kept, record.getMessage()):
        low = text.lower()
        assert all(ECHO_KEY.lower()[i:i + 8] not in low for i in range(len(ECHO_KEY) - 7)), text
        assert "[redacted]" in text
