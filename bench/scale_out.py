"""What Prefect costs per image on a large folder, whether its server keeps every task run, and
what a 2-worker Dask cluster buys on this machine.

Against a real ``prefect server start`` (its own PREFECT_HOME, SQLite), each run in its own
process, on N small distinct photos (random crops of the bundled sample photos), count 1, the
local backend, a fixed level:

* ``plain``   the same per-image work in a plain Python loop, no Prefect: scan and hash, then
              optimize/generate/score/dedup (varflow.processing.pipeline) on as many threads as the flow
              has images in flight, every record written to the store, the run's parts compacted;
* ``threads`` ``varflow run`` on the thread pool (chunks of images per task run);
* ``dask``    ``varflow run --runner dask``: a LocalCluster of 2 worker processes;
* ``threads`` again on ``--large`` images: peak memory must stay flat, time per image unchanged.

Prints per run: wall time, time per image, task runs the flow sent and the server recorded,
peak RSS of the whole process tree (workers included); then the ratios the goals are stated in:
orchestration overhead (threads / plain - 1, goal <= 10%), nothing dropped (recorded / sent = 1),
RSS large / small (goal <= 1.1), Dask against threads and its cost per chunk.

    python bench/scale_out.py [--images 2000] [--large 10000] [--size 96] [--only plain,threads,dask,large]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from varflow.images.samples import sample_paths  # noqa: E402

COUNT, LEVEL, IN_FLIGHT = 1, "medium", 2

FLOW_CHILD = r"""
import json, sys, time
from varflow.flows.parameters import RunParameters
from varflow.flows.variation_flow import run_local
params = RunParameters.model_validate_json(sys.argv[1])
t = time.perf_counter()
summary = run_local(params)
seconds = time.perf_counter() - t
from varflow.storage import Store
work = Store(params.home).query("SELECT sum(total_ms) / 1000 AS s FROM images WHERE run_id = ?", [summary["run_id"]])
print("RESULT " + json.dumps({"seconds": seconds, "run_id": summary["run_id"], "image_seconds": work[0]["s"],
    "images_ok": summary["images_ok"], "images_error": summary["images_error"], "attempts": summary["attempts"],
    "accepted": summary["variations_accepted"], "task_runs": summary.get("task_runs")}), flush=True)
"""

PLAIN_CHILD = r"""
import json, sys, time, uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from varflow.storage import Store
from varflow.generation.cache import GenerationCache
from varflow.processing.direct import DirectGenerations
from varflow.processing.discovery import discover_images
from varflow.generation.backends import make_backend
from varflow.processing.pipeline import ImageJob, ImagePipeline, JobSpec
from varflow.runtime.records import ImageRecord
from varflow.runtime.resources import ResourceSpec, RunControl, RunResources
from varflow.processing.scan import PENDING, scan_images
from varflow.settings import Settings, level_settings

args = json.loads(sys.argv[1])
t = time.perf_counter()
home, src, out = Path(args["home"]), Path(args["input_dir"]), Path(args["output_dir"])
store = Store(home).initialize()
run_id = str(uuid.uuid4())
backend = make_backend("local")
res = RunResources(ResourceSpec(run_id, str(home), backend.name), records=store, backend=backend,
                   cache=GenerationCache(home / "cache" / "variations", max_bytes=2 * 2**30),
                   control=RunControl(run_id))
spec = JobSpec(count=args["count"], variation_type="random", prompt="", seed=0, backend=backend.name,
               model=backend.model, backend_options=(), output_dir=str(out), name_tag="plain000")
level = level_settings(args["level"])
pipeline = ImagePipeline(res, DirectGenerations(res), work_root=home / "work" / run_id)
paths = discover_images(src, exclude=[out, home])
jobs = (ImageJob(spec=spec, source_path=str(f.path), image_id=f.image_id, output_stem=f.stem, job_key=f.job_key,
                 level=level) for f in scan_images(paths, src, fingerprint={"plain": 1}, finished={})
        if f.status == PENDING)
with ThreadPoolExecutor(args["in_flight"]) as pool:
    outcomes = list(pool.map(pipeline.run, jobs))
store.compact_run(run_id)
print("RESULT " + json.dumps({"seconds": time.perf_counter() - t, "run_id": run_id,
    "image_seconds": sum(o.stage_ms.get("total", 0.0) for o in outcomes) / 1000,
    "images_ok": sum(o.status == "ok" for o in outcomes), "images_error": sum(o.status == "error" for o in outcomes),
    "attempts": sum(o.attempts for o in outcomes), "accepted": sum(o.accepted for o in outcomes),
    "task_runs": 0}), flush=True)
"""


def make_photos(folder: Path, n: int, size: int, *, seed: int = 0) -> Path:
    """``n`` distinct small photos: random crops (position, scale, mirror) of the sample photos."""
    marker = folder / f".made-{n}-{size}-{seed}"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    sources = [Image.open(p).convert("RGB") for p in sample_paths()]
    for i in range(n):
        im = sources[i % len(sources)]
        side = rng.randint(min(im.size) // 3, min(im.size))
        x, y = rng.randint(0, im.width - side), rng.randint(0, im.height - side)
        crop = im.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.LANCZOS)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop.save(folder / f"photo-{i:05d}.png")
    marker.touch()
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path) -> tuple[subprocess.Popen, dict]:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(workdir / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_LOGGING_LEVEL": "WARNING", "PREFECT_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    log = open(workdir / "server.log", "w")  # noqa: SIM115 - the server writes to it until it is stopped
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--no-ui"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return proc, {**env, "PREFECT_API_URL": url}
        except OSError:
            time.sleep(1)
    proc.terminate()
    raise SystemExit(f"prefect server did not become healthy; see {workdir / 'server.log'}")


def run_child(code: str, arg: dict, env: dict, log: Path) -> dict:
    """Run ``code`` in a child process, sampling the RSS of its whole process tree."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(arg)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=out, text=True)
        peak = [0]

        def sample():
            root = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                    peak[0] = max(peak[0], total)
                except psutil.Error:
                    pass
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, _ = proc.communicate()
        sampler.join()
    lines = [line[line.index("RESULT ") + len("RESULT "):] for line in stdout.splitlines() if "RESULT " in line]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"run failed (exit {proc.returncode}); see {log}: {stdout[-2000:]}")
    return {**json.loads(lines[-1]), "peak_rss_mib": peak[0] / 2**20}


def recorded_task_runs(env: dict, flow_run_id: str, *, settle_s: float = 10.0, timeout_s: float = 300.0) -> int:
    """Task runs the server holds for the flow run, once the count has stopped changing (the
    server writes task runs from a queue of events, after the flow has ended)."""
    body = json.dumps({"flow_runs": {"id": {"any_": [flow_run_id]}}}).encode()
    last, stable_since, t0 = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        request = urllib.request.Request(env["PREFECT_API_URL"] + "/task_runs/count", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            n = int(answer.read())
        if n != last:
            last, stable_since = n, time.monotonic()
        elif time.monotonic() - stable_since >= settle_s:
            return n
        time.sleep(2)
    return last


def flow_params(photos: Path, work: Path, name: str, **kw) -> dict:
    return {"input_dir": str(photos), "output_dir": str(work / f"out-{name}"), "home": str(work / f"home-{name}"),
            "count": COUNT, "level": LEVEL, "adaptive": False, "images_in_flight": IN_FLIGHT, **kw}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--large", type=int, default=10000)
    ap.add_argument("--size", type=int, default=96, help="side of the small photos (px)")
    ap.add_argument("--only", default="plain,threads,dask,large")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run plain and threads this many times, alternating, and keep each one's fastest "
                         "(the machine's noise is of the order of the overhead measured)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/varflow-bench-scale"))
    args = ap.parse_args()
    which = set(args.only.split(","))
    work = args.workdir
    for old in work.glob("home-*"):
        shutil.rmtree(old)
    for old in work.glob("out-*"):
        shutil.rmtree(old)
    work.mkdir(parents=True, exist_ok=True)
    small = make_photos(work / f"photos-{args.images}", args.images, args.size)
    server, env = start_server(work)
    results: dict[str, dict] = {}
    try:
        pair = [("plain", PLAIN_CHILD, dict(flow_params(small, work, "plain"), in_flight=IN_FLIGHT), small,
                 args.images),
                ("threads", FLOW_CHILD, flow_params(small, work, "threads"), small, args.images)]
        runs = pair * max(1, args.repeat) + [
                ("dask", FLOW_CHILD, flow_params(small, work, "dask", runner="dask", dask_workers=2), small,
                 args.images)]
        if "large" in which:
            large = make_photos(work / f"photos-{args.large}", args.large, args.size)
            runs.append(("large", FLOW_CHILD, flow_params(large, work, "large"), large, args.large))
        for name, code, arg, _, n in runs:
            if name not in which:
                continue
            for old in (Path(arg["home"]), Path(arg["output_dir"])):  # a repeat starts afresh
                shutil.rmtree(old, ignore_errors=True)
            r = run_child(code, arg, env, work / f"{name}.log")
            r["images"] = n
            r["recorded"] = recorded_task_runs(env, r["run_id"]) if code is FLOW_CHILD else 0
            r["all_seconds"] = results.get(name, {}).get("all_seconds", []) + [round(r["seconds"], 1)]
            if name not in results or r["seconds"] < results[name]["seconds"]:
                results[name] = r
            results[name]["all_seconds"] = r["all_seconds"]
            print(f"{name:8} {n:6d} images: {r['seconds']:8.1f} s, {1000 * r['seconds'] / n:6.1f} ms/image, "
                  f"{r['images_ok']} ok, {r['images_error']} error, {r['accepted']} accepted of "
                  f"{r['attempts']} attempts, "
                  f"task runs sent {r['task_runs']}, recorded {r['recorded']}, peak RSS {r['peak_rss_mib']:.0f} MiB",
                  flush=True)
    finally:
        server.terminate()
        server.wait(30)
    report(results)
    (work / "results.json").write_text(json.dumps(results, indent=2))


def report(r: dict) -> None:
    def per_image(name):
        return r[name]["seconds"] / r[name]["images"]

    print()
    if "plain" in r and "threads" in r:
        print(f"orchestration overhead, threads vs plain loop: {per_image('threads') / per_image('plain') - 1:+.1%} "
              f"(goal <= +10%; fastest of plain {r['plain']['all_seconds']} s, "
              f"threads {r['threads']['all_seconds']} s)")
    for name in ("threads", "dask", "large"):
        if name in r:
            sent, kept = r[name]["task_runs"], r[name]["recorded"]
            print(f"{name}: task runs recorded / sent = {kept}/{sent} = {kept / sent if sent else float('nan'):.3f} "
                  f"(goal 1.000: nothing dropped)")
    if "large" in r and "threads" in r:
        print(f"peak RSS {r['large']['images']} / {r['threads']['images']} images: "
              f"{r['large']['peak_rss_mib'] / r['threads']['peak_rss_mib']:.2f} (goal <= 1.10); "
              f"time per image {per_image('large') / per_image('threads'):.2f}x")
    if "dask" in r and "threads" in r:
        print(f"dask (2 worker processes) vs threads: {per_image('threads') / per_image('dask'):.2f}x speed, "
              f"peak RSS {r['dask']['peak_rss_mib'] / r['threads']['peak_rss_mib']:.2f}x")
    if "dask" in r and r["dask"]["task_runs"]:
        # The two workers' wall-clock time not spent in an image's own stages, per chunk (the
        # cluster's start, transfers, task-run bookkeeping, idle at the end).
        d = r["dask"]
        extra = 2 * d["seconds"] - d["image_seconds"]
        print(f"dask cost per chunk beyond its images' work: {1000 * extra / d['task_runs']:.0f} ms "
              f"({d['task_runs']} chunks of {d['images'] / d['task_runs']:.1f} images)")


if __name__ == "__main__":
    main()
