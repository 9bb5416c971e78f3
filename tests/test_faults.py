"""The fault campaign (issue 11): a damaged store, concurrent runs, killed calls, bad inputs.

Every case is a real subprocess or a real damaged file. Each asserts that nothing accepted is
lost, nothing is duplicated, every call sent has a row, and the message names the file and
the fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from conftest import FAKE_GEMINI_KEY, make_photo_folder
from varflow.storage import Store

from varflow.runtime.records import AttemptRecord, RunRecord, utcnow

ROOT = Path(__file__).resolve().parents[1]


def varflow(args, env, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "varflow.flows.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def finish(proc: subprocess.Popen, timeout=240) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def run_cli(args, env, timeout=240) -> tuple[int, str]:
    return finish(varflow(args, env), timeout)


def accepted_on_disk_match_the_store(store: Store, out_dirs: list[Path]) -> None:
    accepted = {r["output_path"] for r in store.query("SELECT DISTINCT output_path FROM variations WHERE accepted")}
    on_disk = {str(p) for d in out_dirs for p in d.glob("*-v*.png")}
    assert accepted == on_disk


# -- 1. a damaged store: a truncated part, a garbage varflow.duckdb ------------------------------

@pytest.fixture(scope="module")
def damaged_then_run(prefect_api, tmp_path_factory):
    """Run A over two photos (output inside the input folder); then its images part is truncated
    and varflow.duckdb overwritten with garbage; run B adds a new photo, a broken link, a looping
    link and a file that is not an image, and writes to another output folder inside the input."""
    base = tmp_path_factory.mktemp("damaged")
    photos, home = base / "photos", base / "home"
    make_photo_folder(photos, 2, size=96)
    env = {**prefect_api, "VARFLOW_HOME": str(home)}
    common = ["--count", "1", "--level", "low", "--no-adapt", "--images-in-flight", "1"]
    code, out_a = run_cli(["run", str(photos), "--out", str(photos / "out1"), *common], env)
    assert code == 0, out_a
    store = Store(home)
    accepted_a = store.query("SELECT variation_id, output_path FROM variations WHERE accepted")
    (part,) = list((home / "tables" / "images").glob("run-*/compacted.parquet"))
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    (home / "varflow.duckdb").write_bytes(b"this is not a database" * 200)

    make_photo_folder(base / "more", 3, size=96)
    (base / "more" / "photo-002.png").rename(photos / "new.png")
    (photos / "gone.png").symlink_to(photos / "nowhere.png")
    (photos / "loop.png").symlink_to(photos / "loop.png")
    (photos / "notes.jpg").write_text("not an image")
    code, out_b = run_cli(["run", str(photos), "--out", str(photos / "out2"), *common], env)
    return dict(home=home, photos=photos, part=part, accepted_a=accepted_a, code=code, out=out_b, store=store)


def test_a_truncated_part_is_quarantined_named_once_and_the_run_goes_on(damaged_then_run):
    d = damaged_then_run
    assert d["code"] == 0, d["out"]
    lines = [line for line in d["out"].splitlines() if str(d["part"]) in line]
    assert len(lines) == 1 and "is unreadable" in lines[0] and "quarantine" in lines[0], d["out"][-3000:]
    assert "Traceback" not in d["out"]
    (moved,) = list((d["home"] / "quarantine").glob("*/tables/images/run-*/compacted.parquet"))
    assert not d["part"].exists()
    logged = [json.loads(x) for x in (d["home"] / "quarantine" / "quarantine.jsonl").read_text().splitlines()]
    assert {x["file"] for x in logged} >= {str(d["part"])} and str(moved) in {x["moved_to"] for x in logged}


def test_nothing_accepted_is_lost_or_duplicated_after_damage(damaged_then_run):
    d, store = damaged_then_run, damaged_then_run["store"]
    now = {r["variation_id"] for r in store.query("SELECT variation_id FROM variations WHERE accepted")}
    assert {r["variation_id"] for r in d["accepted_a"]} <= now
    assert all(Path(r["output_path"]).is_file() for r in d["accepted_a"])
    assert store.query("SELECT count(*) - count(DISTINCT (run_id, variation_id)) AS n FROM variations")[0]["n"] == 0


def test_a_garbage_duckdb_file_is_rebuilt(damaged_then_run, monkeypatch):
    d = damaged_then_run
    monkeypatch.chdir(d["home"])  # the file's views read paths relative to the data directory
    con = duckdb.connect(str(d["home"] / "varflow.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 2
    finally:
        con.close()
    assert list((d["home"] / "quarantine").glob("*/varflow.duckdb"))


def test_earlier_outputs_inside_the_input_are_not_sources_and_bad_links_are_recorded(damaged_then_run):
    d, store = damaged_then_run, damaged_then_run["store"]
    run_b = store.query("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")[0]["run_id"]
    rows = {Path(r["path"]).name: r for r in store.query("SELECT path, status, error FROM images WHERE run_id = ?",
                                                           [run_b])}
    assert not any("/out1/" in r["path"] for r in rows.values())
    assert {"new.png", "gone.png", "loop.png", "notes.jpg"} <= set(rows)
    for name in ("gone.png", "loop.png"):
        assert rows[name]["status"] == "error"
        assert str(d["photos"] / name) in rows[name]["error"] and "symbolic link" in rows[name]["error"]
        assert "remove it" in rows[name]["error"]
    assert rows["notes.jpg"]["status"] == "error" and "remove it" in rows["notes.jpg"]["error"]
    assert rows["new.png"]["status"] == "ok"


def test_parts_are_readable_by_the_group(damaged_then_run):
    parts = list((damaged_then_run["home"] / "tables").glob("*/run-*/**/*.parquet"))
    assert parts and all(p.stat().st_mode & 0o040 for p in parts)


def test_parts_follow_the_umask(tmp_path):
    code = ("import os; os.umask(0o027)\n"
            "from varflow.storage import Store; from varflow.runtime.records import RunRecord, utcnow\n"
            f"s = Store({str(tmp_path)!r}).initialize()\n"
            "s.write_run(RunRecord('r1', None, '{}', 'i', 'o', 'local', 'local-v1', utcnow(), None, 'running'))\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    (part,) = list(tmp_path.glob("tables/runs/run-r1/parts/*.parquet"))
    assert part.stat().st_mode & 0o777 == 0o640


def test_a_damaged_page_behind_a_sound_footer_is_quarantined_when_a_query_meets_it(tmp_path):
    store = Store(tmp_path).initialize()
    for run_id in ("r0", "r1", "r2"):
        store.write_run(RunRecord(run_id, None, "{}", "i", "o", "local", "local-v1", utcnow(), None, "running",
                                  message="x" * 3000))
    (part,) = list(tmp_path.glob("tables/runs/run-r1/parts/*.parquet"))
    data = bytearray(part.read_bytes())
    data[8:200] = b"\xab" * 192  # the first pages; the footer still reads
    part.write_bytes(bytes(data))
    assert [r["run_id"] for r in store.query("SELECT run_id FROM runs ORDER BY 1")] == ["r0", "r2"]
    assert list(tmp_path.glob("quarantine/*/tables/runs/run-r1/parts/*.parquet")) and not part.exists()
    with pytest.raises(duckdb.BinderException):  # a mistake in the SQL quarantines nothing
        store.query("SELECT no_such_column FROM runs")
    assert len(list(tmp_path.glob("quarantine/**/*.parquet"))) == 1


# -- 2. varflow doctor -----------------------------------------------------------------------------

def _killed_run_store(home: Path) -> tuple[Store, Path]:
    """A store as a SIGKILL leaves it: a run still 'running' with one call in flight, its work
    folder, a temp file never renamed; plus a truncated part and a garbage varflow.duckdb."""
    store = Store(home).initialize()
    store.write_run(RunRecord("dead", None, "{}", "/in", "/out", "gemini", "m", utcnow(), None, "running"))
    store.write_attempt(AttemptRecord("dead", "img", "var", 0, 1, "gemini", "m", "p", "in_flight", None, 0.0,
                                      "high", utcnow(), cost_usd=0.039))
    store.write_run(RunRecord("good", None, "{}", "/in", "/out", "local", "m", utcnow(), utcnow(), "completed"))
    bad = store.tables_dir / "runs" / "run-good" / "parts" / "run.parquet"
    bad.write_bytes(bad.read_bytes()[:40])
    (home / "work" / "dead").mkdir(parents=True)
    tmp = store.tables_dir / "images" / ".tmp-x.parquet-partial"
    tmp.write_bytes(b"half")
    os.utime(tmp, (time.time() - 7200, time.time() - 7200))
    (home / "varflow.duckdb").write_bytes(b"garbage" * 100)
    return store, bad


def test_doctor_says_what_is_wrong_and_repair_fixes_it(tmp_path):
    home = tmp_path / "home"
    store, bad = _killed_run_store(home)
    code, out = run_cli(["doctor", "--home", str(home)], os.environ)
    assert code == 1, out
    assert f"unreadable_part: {bad}" in out and "quarantine" in out
    assert f"unreadable_duckdb: {home / 'varflow.duckdb'}" in out and "rebuild" in out
    assert f"stale_work: {home / 'work' / 'dead'}" in out and "stale_temp" in out
    assert "varflow doctor --repair" in out
    assert bad.exists()  # diagnosing changes nothing

    code, out = run_cli(["doctor", "--repair", "--home", str(home)], os.environ)
    assert code == 0, out
    assert not bad.exists() and not (home / "work" / "dead").exists()
    runs = {r["run_id"]: r["status"] for r in store.query("SELECT run_id, status FROM runs")}
    assert runs == {"dead": "interrupted"}  # the truncated "good" run row is in quarantine
    (call,) = store.query("SELECT outcome, cost_usd FROM attempts")
    assert call == {"outcome": "interrupted", "cost_usd": 0.039}
    code, out = run_cli(["doctor", "--home", str(home)], os.environ)
    assert code == 0 and "healthy" in out and "2 file(s) set aside" in out, out


# -- 3. claims: two runs never process one image at once -----------------------------------------

HOLD = """
import sys, time
from varflow.runtime.claims import ImageClaims
c = ImageClaims(sys.argv[1], "holder-run")
assert c.claim("abc")
print("held", flush=True)
time.sleep(60)
"""


def test_a_claim_is_exclusive_and_frees_itself_when_its_holder_is_killed(tmp_path):
    from varflow.runtime.claims import ImageClaims

    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        mine = ImageClaims(tmp_path, "me")
        assert not mine.claim("abc")
        assert f"pid {holder.pid} run holder-run" in mine.holder("abc")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert mine.claim("abc")
        mine.release("abc")
        assert not (tmp_path / "abc.lock").exists()
    finally:
        holder.kill()


N_CONCURRENT = 6  # images; each call answers after CALL_LATENCY_S, so a run lasts longer than a start-up
CALL_LATENCY_S = 3.0


def gemini_env(prefect_api: dict, fake, home: Path) -> dict:
    sdk = {k: v for k, v in prefect_api.items()
           if not k.startswith(("GOOGLE_", "GEMINI_")) and not k.lower().endswith("_proxy")}
    return {**sdk, "GEMINI_API_KEY": FAKE_GEMINI_KEY, "GOOGLE_GEMINI_BASE_URL": fake.base_url,
            "NO_PROXY": "127.0.0.1,localhost", "VARFLOW_HOME": str(home)}


def test_two_runs_at_once_never_process_one_image_twice(prefect_api, tmp_path):
    from fake_gemini import FakeGemini

    photos, home, out = tmp_path / "photos", tmp_path / "home", tmp_path / "out"
    make_photo_folder(photos, N_CONCURRENT, size=64)
    args = ["run", str(photos), "--out", str(out), "--backend", "gemini", "--count", "1", "--level", "low",
            "--no-adapt", "--images-in-flight", "1", "--concurrency", "1"]
    store = Store(home)
    with FakeGemini(api_key=FAKE_GEMINI_KEY, latency_s=CALL_LATENCY_S) as fake:
        env = gemini_env(prefect_api, fake, home)
        first, second = varflow(args, env), varflow(args, env)
        results = [finish(first), finish(second)]
        sent = fake.count()
    assert all(code == 0 for code, _ in results), results
    runs = store.query("SELECT started_at, finished_at FROM runs ORDER BY started_at")
    assert runs[1]["started_at"] < runs[0]["finished_at"], f"the runs did not overlap: the case was not tried {runs}"
    # every image finished, and finished once (an image whose calls failed is not finished: the
    # incremental rule lets a later run redo it, so it may be processed again, but never at once)
    done = Counter(r["image_id"] for r in store.query("SELECT image_id FROM images WHERE job_key IS NOT NULL"))
    assert len(done) == N_CONCURRENT and set(done.values()) == {1}, done
    processed = store.query("SELECT image_id, run_id, started_at, finished_at FROM images "
                            "WHERE status IN ('ok', 'error') ORDER BY image_id, started_at")
    for a, b in zip(processed, processed[1:]):
        if a["image_id"] == b["image_id"]:
            assert a["finished_at"] <= b["started_at"], f"two runs processed one image at once: {a} {b}"
    # every call sent has a row, and no image was paid for by both runs
    calls = store.query("SELECT image_id, run_id FROM attempts WHERE NOT cache_hit")
    assert len(calls) == sent
    assert store.query("SELECT image_id FROM attempts WHERE NOT cache_hit GROUP BY image_id "
                       "HAVING count(DISTINCT run_id) > 1") == []
    skipped = store.query("SELECT error FROM images WHERE status = 'skipped'")
    assert all("another run" in r["error"] or "unchanged since run" in r["error"] for r in skipped)
    assert any("another run" in r["error"] for r in skipped), skipped
    accepted_on_disk_match_the_store(store, [out])


# -- 4. a SIGKILL during paid calls ------------------------------------------------------------------

def test_calls_in_flight_at_a_kill_are_on_record_counted_and_not_lost(prefect_api, tmp_path):
    from fake_gemini import FakeGemini

    photos, home = tmp_path / "photos", tmp_path / "home"
    make_photo_folder(photos, 2, size=64)
    args = ["run", str(photos), "--out", str(tmp_path / "out"), "--backend", "gemini", "--count", "2",
            "--level", "low", "--no-adapt", "--images-in-flight", "1", "--concurrency", "2"]
    store = Store(home)
    with FakeGemini(api_key=FAKE_GEMINI_KEY, latency_s=30.0) as fake:
        env = gemini_env(prefect_api, fake, home)
        victim = varflow(args, env)
        deadline = time.time() + 120
        while fake.count() < 2:  # both calls of the first image have arrived; no answer yet
            assert victim.poll() is None and time.time() < deadline, victim.stdout.read()[-3000:]
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        sent = fake.count()
        rows = store.query("SELECT outcome, cost_usd FROM attempts WHERE NOT cache_hit")
        assert len(rows) >= sent  # every call that left has a row, written before it left
        assert {r["outcome"] for r in rows} == {"in_flight"} and all(r["cost_usd"] > 0 for r in rows)

        fake.latency_s = 0.0
        code, out = run_cli(args, env)
        assert code == 0, out
    runs = {r["run_id"]: r["status"] for r in store.query("SELECT run_id, status FROM runs")}
    assert sorted(runs.values()) == ["completed", "interrupted"]
    killed = [k for k, v in runs.items() if v == "interrupted"][0]
    calls = store.query("SELECT outcome, cost_usd FROM attempts WHERE run_id = ?", [killed])
    assert len(calls) == len(rows) and {c["outcome"] for c in calls} == {"interrupted"}
    # the interrupted calls' estimated cost stays in every total
    total = store.query("SELECT sum(cost_usd) AS usd, count(*) AS n FROM attempts WHERE NOT cache_hit")[0]
    assert total["usd"] == pytest.approx(sum(r["cost_usd"] for r in rows) + sum(
        r["cost_usd"] for r in store.query("SELECT cost_usd FROM attempts WHERE run_id <> ?", [killed])))
    assert total["n"] >= fake.count()  # every call sent, in both runs, has a row
    assert "calls (retries included)" in out
    assert store.query("SELECT count(*) AS n FROM attempts WHERE outcome = 'in_flight'")[0]["n"] == 0
    assert not (home / "work" / killed).exists()  # the killed run's working files are gone
    ok = Counter(r["image_id"] for r in store.query("SELECT image_id FROM images WHERE status = 'ok'"))
    assert len(ok) == 2 and set(ok.values()) == {1}
    accepted_on_disk_match_the_store(store, [tmp_path / "out"])
