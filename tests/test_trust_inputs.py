"""Inputs a nightly run meets unattended (issue 19 items 2-7, issue 20 item 6), each with real
subprocesses of the ``varflow`` CLI (or the flow in a child process where the CLI lacks an option):
output names that fold to one stem, a real FIFO and device links, links leaving the input folder,
an unreadable folder (as root, the child runs without the capabilities that let root read any
folder), the preflight
against the fake Gemini server (calls counted there), and the exit codes the README promises.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_photo_folder
from PIL import Image

try:
    from tests.fake_gemini import FakeGemini
except ImportError:
    from fake_gemini import FakeGemini

from varflow.storage import Store

ROOT = Path(__file__).resolve().parents[1]
VARFLOW = str(Path(sys.executable).with_name("varflow"))
KEY = "AIza" "SyTEST-trust-inputs-key-0123456789abcdefXYZ"
OPEN_GATE = dict(similarity_min=0, similarity_max=1, diversity_min=0, aesthetic_min=0,
                 object_integrity_min=0, overall_min=0)
RUN = ["--count", "1", "--level", "low", "--no-adapt", "--json"]


def varflow(*args, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    """The installed ``varflow`` command."""
    cmd = [VARFLOW, *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def summary_of(out: subprocess.CompletedProcess) -> dict:
    assert out.stdout.lstrip().startswith("{"), out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads(out.stdout)


def notes(summary: dict) -> dict[str, tuple[str, str]]:
    return {row["image"]: (row["status"], row["note"]) for row in summary["images"]}


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def photo(dest: Path, index: int, fmt: str = "PNG") -> Path:
    """A small real photo (the bundled samples, turned a quarter past the sixth: a mirror would be a
    copy of its sample, which a run skips), saved as ``fmt``."""
    from varflow.images.samples import sample_paths

    with Image.open(sample_paths()[index % 6]) as im:
        im = im.convert("RGB")
        im.thumbnail((96, 96))
        if index >= 6:
            im = im.transpose(Image.Transpose.ROTATE_90)
        dest.parent.mkdir(parents=True, exist_ok=True)
        im.save(dest, format=fmt)
    return dest


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Output names: one per source, whatever the case or the extension, stable across runs
# ---------------------------------------------------------------------------------------------

def flow_run(env: dict, **params) -> dict:
    """The flow in a child process (an open gate: every variation is accepted, so files appear)."""
    child = ROOT / "tests" / "flow_child.py"
    out = subprocess.run([sys.executable, str(child), json.dumps(params)], env=env, capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert out.returncode == 0 and lines, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(lines[-1][len("SUMMARY "):])


def accepted(home: Path) -> list[dict]:
    return Store(home).query("SELECT i.path AS source, v.output_path FROM variations v "
                             "JOIN images i USING (run_id, image_id) WHERE v.accepted ORDER BY v.output_path")


def test_sources_folding_to_one_name_get_their_own_outputs_that_keep_their_names(tmp_path, prefect_api):
    inbox, out, home = tmp_path / "in", tmp_path / "in" / "variations", tmp_path / "home"
    photo(inbox / "x.png", 0), photo(inbox / "x.PNG", 1), photo(inbox / "y.jpg", 2, "JPEG")
    photo(inbox / "y-jpg.png", 4)
    env = {**prefect_api, "VARFLOW_HOME": str(home)}
    base = dict(output_dir=str(out), home=str(home), count=1, level="low", adaptive=False, profile="seed",
                thresholds=OPEN_GATE, images_in_flight=1, variation_type="style_change")  # photos all accepted
    first = flow_run(env, input_dir=str(inbox), **base)
    assert first["images_ok"] == 4 and first["variations_accepted"] == 4
    rows = accepted(home)
    files = sorted(p for p in out.glob("*.png"))
    # before: x.png and x.PNG both became x-png-<tag>-v01.png (4 accepted rows, 3 files)
    assert len(rows) == 4 and len({r["output_path"].casefold() for r in rows}) == 4 and len(files) == 4
    assert {Path(r["output_path"]) for r in rows} == set(files)
    by_source = {Path(r["source"]).name: Path(r["output_path"]).name for r in rows}
    assert by_source["y.jpg"].startswith("y-") and by_source["y-jpg.png"].startswith("y-jpg-")
    assert by_source["y.jpg"].count("-") == 2  # the plain stem: a non-colliding name is what it always was
    night1 = {p.name: sha(p) for p in files}

    # The next night: a new file whose name folds onto y.jpg's, and a second folder writing into
    # the same output folder with a file named like one of the first's.
    photo(inbox / "Y.png", 6)
    other = tmp_path / "other"
    photo(other / "y.jpg", 7, "JPEG")
    second = flow_run(env, input_dir=str(inbox), **base)
    assert second["images_total"] == 5  # the variations inside the input folder are never inputs
    assert second["images_ok"] == 1 and second["images_skipped"] == 4
    third = flow_run(env, input_dir=str(other), **base)
    assert third["variations_accepted"] == 1
    rows = accepted(home)
    files = sorted(p for p in out.glob("*.png"))
    assert len(rows) == 6 and len({r["output_path"].casefold() for r in rows}) == 6 and len(files) == 6
    assert {p.name: sha(p) for p in files if p.name in night1} == night1  # nothing rewritten
    new = {Path(r["source"]).relative_to(tmp_path).as_posix(): Path(r["output_path"]).name for r in rows
           if Path(r["output_path"]).name not in night1}
    assert set(new) == {"in/Y.png", "other/y.jpg"}
    assert new["in/Y.png"].startswith("Y-png-")
    assert new["other/y.jpg"].startswith("y-jpg-") and new["other/y.jpg"].count("-") == 4  # y-jpg-<6 hex>-<tag>-v01


def test_two_runs_at_once_never_share_an_output_path(tmp_path, prefect_api):
    """Two folders with an x.png each, run at the same moment into one output folder: neither knew
    the other's names when it started. The guard (a claim on the name while writing, the store's
    rows after) leaves each path to one source; the refused one is an error, redone next time."""
    out, home = tmp_path / "out", tmp_path / "home"
    photo(tmp_path / "a" / "x.png", 0), photo(tmp_path / "b" / "x.png", 1)
    env = {**prefect_api, "VARFLOW_HOME": str(home)}
    base = dict(output_dir=str(out), home=str(home), count=1, level="low", adaptive=False, profile="seed",
                thresholds=OPEN_GATE, images_in_flight=1, variation_type="style_change")
    child = ROOT / "tests" / "flow_child.py"
    procs = [subprocess.Popen([sys.executable, str(child), json.dumps({**base, "input_dir": str(tmp_path / d)})],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for d in ("a", "b")]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    rows = accepted(home)
    files = sorted(out.glob("*.png"))
    assert len(rows) == len({r["output_path"].casefold() for r in rows}) == len(files) >= 1  # before: 2 rows, 1 file
    refused = Store(home).query("SELECT path, error FROM images WHERE status = 'error'")
    assert len(rows) + len(refused) == 2 and all("nothing was overwritten" in r["error"] for r in refused)
    for d in ("a", "b"):  # the next runs: each source gets its own name, nothing rewritten
        before = {p.name: sha(p) for p in out.glob("*.png")}
        flow_run(env, input_dir=str(tmp_path / d), **base)
        assert {p.name: sha(p) for p in out.glob("*.png") if p.name in before} == before
    rows = accepted(home)
    assert {Path(r["source"]).parent.name for r in rows} == {"a", "b"}
    assert len(rows) == len({r["output_path"].casefold() for r in rows}) == len(list(out.glob("*.png"))) == 2


def test_the_guard_refuses_a_name_another_source_holds(tmp_path):
    """The last check before a job writes: the store's accepted rows, compared case-folded."""
    from varflow.processing.outnames import held_stems, holders_of, output_stems

    out = tmp_path / "out"
    rows = [{"source_path": "/a/x.png", "output_path": str(out / "x-0123abcd-v01.png")},
            {"source_path": "/a/x.PNG", "output_path": str(out / "x-0123abcd-v01-0123abcd-v01.png")}]
    assert holders_of(str(out / "X-0123abcd-v"), "/b/x.png", rows) == {"/a/x.png"}
    assert holders_of(str(out / "x-0123abcd-v"), "/a/x.png", rows) == set()
    held = held_stems(rows, out)
    assert held == {"x": {"/a/x.png"}, "x-0123abcd-v01": {"/a/x.PNG"}}
    # a new source named like a held stem, in any case, takes another name
    stems = output_stems([Path("/b/X.png"), Path("/b/x.jpg")], Path("/b"), held)
    assert len({s.casefold() for s in stems}) == 2 and "x" not in {s.casefold() for s in stems}


# ---------------------------------------------------------------------------------------------
# Only regular files are opened; links stay inside the input folder unless allowed
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def inbox(tmp_path_factory):
    """A folder with a photo and everything that is not one: a FIFO, a link to a FIFO inside the
    folder, links to /dev/zero and /dev/null, a link to a photo outside, a folder link outside."""
    base = tmp_path_factory.mktemp("inbox")
    d = base / "in"
    photo(d / "ok.png", 0)
    os.mkfifo(d / "fifo.png")
    (d / ".pipes").mkdir()
    os.mkfifo(d / ".pipes" / "p")
    os.symlink(d / ".pipes" / "p", d / "link-to-fifo.png")
    os.symlink("/dev/zero", d / "zero.png")
    os.symlink(d / "ok.png", d / "z-alias.png")  # inside: followed (the same content: skipped)
    secret = photo(base / "elsewhere" / "secret.png", 7)
    os.symlink(secret, d / "leak.png")
    os.symlink(base / "elsewhere", d / "leakdir")
    return {"dir": d, "base": base, "secret": secret}


def inbox_run(inbox, prefect_api, name: str, *extra) -> tuple[subprocess.CompletedProcess, Path]:
    home = inbox["base"] / f"home-{name}"
    out = varflow("run", inbox["dir"], "--out", inbox["base"] / f"out-{name}", "--home", home, *RUN, *extra,
                  env={**prefect_api, "VARFLOW_HOME": str(home)}, timeout=240)
    return out, home


@pytest.fixture(scope="module")
def inbox_default(inbox, prefect_api):
    return inbox_run(inbox, prefect_api, "default")


@pytest.fixture(scope="module")
def inbox_follow(inbox, prefect_api):
    return inbox_run(inbox, prefect_api, "follow", "--follow-links")


def test_fifos_and_devices_are_recorded_and_never_read(inbox_default, inbox_follow):
    for out, home in (inbox_default, inbox_follow):  # before: the run hung on the first FIFO
        assert out.returncode == 0, out.stderr[-3000:]
        got = notes(summary_of(out))
        assert got["ok.png"][0] == "ok"
        assert got["fifo.png"][0] == "error" and "is a FIFO (named pipe), not a regular file" in got["fifo.png"][1]
        assert got["link-to-fifo.png"][0] == "error" and "FIFO" in got["link-to-fifo.png"][1]
        recorded = {Path(r["path"]).name: r for r in Store(home).query("SELECT path, status, error FROM images")}
        assert recorded["fifo.png"]["status"] == "error" and "FIFO" in recorded["fifo.png"]["error"]
    zero_default = notes(summary_of(inbox_default[0]))["zero.png"]
    zero_follow = notes(summary_of(inbox_follow[0]))["zero.png"]
    assert zero_default[0] == "error" and "--follow-links" in zero_default[1]  # outside the folder
    assert zero_follow[0] == "error" and "is a character device" in zero_follow[1]  # allowed out, still not read


def test_links_leaving_the_input_folder_are_recorded_unless_allowed(inbox, inbox_default, inbox_follow):
    out, home = inbox_default
    got = notes(summary_of(out))
    for name in ("leak.png", "leakdir"):
        assert got[name][0] == "error", got
        assert "outside the input folder" in got[name][1] and "--follow-links" in got[name][1]
    # a link inside the folder is followed (here to ok.png: the same content, done once)
    assert got["z-alias.png"][0] == "skipped" and "same content as" in got["z-alias.png"][1]
    secret_id = sha(inbox["secret"])
    assert not Store(home).query("SELECT image_id FROM images WHERE image_id = ?", [secret_id])  # never read
    got = notes(summary_of(inbox_follow[0]))
    assert got["leak.png"][0] == "ok"
    statuses = Store(inbox_follow[1]).query("SELECT path, status FROM images WHERE image_id = ?", [secret_id])
    assert {Path(r["path"]).name: r["status"] for r in statuses} == {"leak.png": "ok", "secret.png": "skipped"}


def test_an_unreadable_subfolder_is_on_record_and_in_the_summary(tmp_path, prefect_api):
    """Root reads any folder whatever its mode, by two capabilities: as root, the run is a child
    without them (setpriv drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), so mode 000 holds."""
    prefix = []
    if os.geteuid() == 0:
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                  "--inh-caps=-dac_override,-dac_read_search"]
        if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"]).returncode != 0:
            pytest.skip("root without a way to drop CAP_DAC_OVERRIDE (setpriv): root reads any folder")
    photo(tmp_path / "in" / "open" / "a.png", 0)
    photo(tmp_path / "in" / "locked" / "b.png", 1)
    (tmp_path / "in" / "locked").chmod(0)
    try:
        out = subprocess.run([*prefix, VARFLOW, "run", tmp_path / "in", "--out", tmp_path / "out", "--home",
                              tmp_path / "home", *RUN], env={**prefect_api, "VARFLOW_HOME": str(tmp_path / "home")},
                             capture_output=True, text=True, timeout=180, cwd=ROOT)
    finally:
        (tmp_path / "in" / "locked").chmod(0o755)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = summary_of(out)
    got = notes(summary)
    # before: "1 found: 1 ok", the locked folder's image silently missing
    assert summary["images_total"] == 2 and summary["images_ok"] == 1 and summary["images_error"] == 1
    assert got["locked"][0] == "error" and "folder cannot be read (Permission denied)" in got["locked"][1]
    rows = Store(tmp_path / "home").query("SELECT path, status, error FROM images WHERE status = 'error'")
    assert [Path(r["path"]).name for r in rows] == ["locked"] and "its images were not looked at" in rows[0]["error"]


# ---------------------------------------------------------------------------------------------
# The preflight: nothing paid for before the run knows it can keep the result
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gemini():
    with FakeGemini(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def gemini_env(gemini, prefect_api, tmp_path):
    gemini.reset()
    env = {k: v for k, v in prefect_api.items() if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY")}
    env.update(GEMINI_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=gemini.base_url, NO_PROXY="127.0.0.1,localhost",
               VARFLOW_HOME=str(tmp_path / "home"))
    return env


@pytest.fixture
def four_photos(tmp_path) -> Path:
    make_photo_folder(tmp_path / "photos", 4, size=64)
    return tmp_path / "photos"


GEMINI_RUN = ["--backend", "gemini", "--retries", "0", *RUN]


def test_an_output_folder_under_a_file_is_found_before_any_call(tmp_path, four_photos, gemini, gemini_env):
    (tmp_path / "a-file").write_text("x")
    out = varflow("run", four_photos, "--out", tmp_path / "a-file" / "out", *GEMINI_RUN, env=gemini_env)
    # before: 4 calls, then every image NotADirectoryError, summed up as "rejected"
    assert out.returncode == 2 and out.stdout == ""
    line = one_line(out.stderr)
    assert "output folder" in line and "is a file, not a folder" in line and "--out" in line
    assert gemini.count() == 0


def test_a_refused_key_exits_2_before_any_call(four_photos, tmp_path, gemini, gemini_env):
    env = {**gemini_env, "GEMINI_API_KEY": "AIza" "SyWRONG-key-000000000000000000000000000"}
    out = varflow("run", four_photos, "--out", tmp_path / "out", *GEMINI_RUN, env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "auth" in one_line(out.stderr) and "GEMINI_API_KEY" in out.stderr
    assert gemini.count() == 0 and gemini.count(endpoint="models.get") == 1  # the free check, once


def test_a_disk_without_room_for_the_run_exits_2_before_any_call(tmp_path, gemini, gemini_env):
    """Enough images (empty files: discovery counts names) that 64 variations each cannot fit."""
    from varflow.runtime.preflight import bytes_needed

    free = shutil.disk_usage(tmp_path).free
    n = free // bytes_needed(1, 64, "low") + 1  # the run starts (and stays) at level low
    if n > 20_000:
        pytest.skip(f"{free / 2**30:.0f} GiB free: too many files to outgrow it")
    inbox = tmp_path / "many"
    inbox.mkdir()
    for i in range(n):
        (inbox / f"{i:05d}.png").touch()
    out = varflow("run", inbox, "--out", tmp_path / "out", *GEMINI_RUN, "--count", "64", env=gemini_env)
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert "MiB free" in line and f"{n} images x 64 variations at level low" in line
    assert gemini.count() == 0


def test_a_data_directory_that_is_a_file_exits_2(tmp_path, four_photos, gemini_env):
    (tmp_path / "home-file").write_text("x")
    out = varflow("run", four_photos, "--out", tmp_path / "out", "--home", tmp_path / "home-file", *RUN,
                  env=gemini_env)
    assert out.returncode == 2 and "data directory" in one_line(out.stderr)  # before: a traceback, exit 1
    out = varflow("runs", "--home", tmp_path / "home-file", env=gemini_env)
    assert out.returncode == 2 and "data directory" in one_line(out.stderr)


def test_a_deployment_run_fails_on_the_preflight_before_any_call(tmp_path, four_photos, gemini, gemini_env):
    """A flow run not started by the CLI (a deployment's) checks the folders itself."""
    (tmp_path / "a-file").write_text("x")
    params = dict(input_dir=str(four_photos), output_dir=str(tmp_path / "a-file" / "out"), home=str(tmp_path / "home"),
                  backend="gemini", count=1, level="low", retries=0)
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "flow_child.py"), json.dumps(params)],
                         env=gemini_env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode != 0 and "PreflightError" in out.stderr and "is a file, not a folder" in out.stderr
    assert gemini.count() == 0 and gemini.count(endpoint="models.get") == 0


# ---------------------------------------------------------------------------------------------
# Exit codes: 2 and one line for a wrong argument
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0", "lots"])
def test_max_megapixels_must_be_a_positive_number(tmp_path, four_photos, value):
    out = varflow("run", four_photos, "--max-megapixels", value, env={**os.environ, "VARFLOW_HOME": str(tmp_path)})
    assert out.returncode == 2 and "--max-megapixels" in out.stderr and "Traceback" not in out.stderr


def test_out_equal_to_the_input_folder_exits_2(tmp_path, four_photos):
    out = varflow("run", four_photos, "--out", four_photos, env={**os.environ, "VARFLOW_HOME": str(tmp_path)})
    assert out.returncode == 2 and "--out is the input folder" in one_line(out.stderr)
    out = varflow("run", four_photos, "--out", four_photos, "--dry-run",
                  env={**os.environ, "VARFLOW_HOME": str(tmp_path)})
    assert out.returncode == 2


def test_report_and_runs_arguments(inbox_default, tmp_path):
    _, home = inbox_default
    env = {**os.environ, "VARFLOW_HOME": str(home)}
    folder = tmp_path / "pages"
    folder.mkdir()
    out = varflow("report", "--out", folder, env=env)  # before: IsADirectoryError
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(folder / "report.html") and (folder / "report.html").stat().st_size > 0
    assert "an existing folder gets report.html" in " ".join(varflow("report", "--help", env=env).stdout.split())
    for args in (["report", "--max-images", "-3"], ["report", "--max-images", "0"], ["runs", "--limit", "-1"]):
        out = varflow(*args, env=env)
        assert out.returncode == 2 and "at least 1" in out.stderr, args
