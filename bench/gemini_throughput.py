"""Gemini throughput through the real flow: is the client side ever the bottleneck?

Against the fake Gemini server (tests/fake_gemini.py, run as its own process so its image work
does not share our GIL, answering JPEG after 0.5 s), ``varflow run --backend gemini`` generates
200 variations (50 images x count 4 at level low: one attempt per variation, so exactly 200
calls) with 16 calls in flight. The goal: >= 90% of the ideal throughput

    ideal = min(concurrency / latency, rpm / 60)   calls per second

for two settings: no requests-per-minute limit (ideal 32/s) and ``--rpm 1200`` (ideal 20/s).
Throughput is measured over the generation window (first call started -> last call ended, from
the ``attempts`` table), which includes every per-task Prefect cost (submission, state changes,
result persistence, retries machinery) and every per-call varflow cost (rate limiter, budget,
records, cache); the flow's fixed start and exit costs (~1-2 s whatever the size of the run) are
printed separately as the whole run's wall time.

Then the cross-process rate limiter alone (varflow/runtime/ratelimit.py): 3 processes share one limit;
the achieved rate and the busiest window are compared with the configured rpm. And, for the
record, Prefect's own global rate limit (``prefect.concurrency.sync.rate_limit``) at the same
rate, which is why varflow does not use it for pacing.

    .venv/bin/python bench/gemini_throughput.py [--quick] [--no-prefect-limit]

Also measured first, for context: the bare backend (SDK + fake, 16 plain threads, no Prefect)
on this machine at this moment, the ceiling of the client side. With 200 calls on 16 slots
(13 rounds of 0.5 s for 12.5 rounds of work) even a perfect client reaches at most ~96%.

Exits 1 if a generate-task setting is below 90% of its ideal.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

KEY = "bench-fake-key-0123456789"
LATENCY = 0.5
CONCURRENCY = 16
IMAGES, COUNT = 50, 4  # 200 variations


def start_fake(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_gemini.py"), "--key", KEY, "--latency", str(latency),
         "--image-format", "JPEG"],
        stdout=subprocess.PIPE, text=True,
    )
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"the fake Gemini server did not start (said {url!r})")
    return proc, url


def make_photos(dest: Path, n: int, size: int = 256) -> None:
    from PIL import Image

    from varflow.images.samples import sample_paths

    dest.mkdir(parents=True, exist_ok=True)
    sources = sample_paths()
    ops = [None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.ROTATE_180,
           Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
           Image.Transpose.TRANSVERSE]
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as im:
            im = im.convert("RGB")
            op = ops[(i // len(sources)) % len(ops)]
            if op is not None:
                im = im.transpose(op)
            scale = size / max(im.size)
            im = im.resize((round(im.width * scale), round(im.height * scale)))
            if i >= len(sources) * len(ops):  # more images than variants: make each one distinct
                im.putpixel((0, 0), (i % 256, i // 256 % 256, 7))
            im.save(dest / f"photo-{i:03d}.png")


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by this process and by each child process (by command)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    out = {"varflow (this process)": me.ru_utime + me.ru_stime}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != os.getpid():
                continue
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        name = "fake Gemini" if "fake_gemini" in cmd else "Prefect server" if "uvicorn" in cmd else cmd[:40]
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def measure(home: Path, rpm: float | None, wall: float, cpu0: dict, cpu1: dict, load0: float, status: str) -> dict:
    from varflow.storage import Store

    rows = Store(home).query(
        "SELECT epoch(started_at) AS s, latency_ms, outcome FROM attempts WHERE NOT cache_hit ORDER BY s")
    calls = len(rows)
    begin = min(r["s"] for r in rows)
    end = max(r["s"] + r["latency_ms"] / 1000 for r in rows)
    events = sorted([(r["s"], 1) for r in rows] + [(r["s"] + r["latency_ms"] / 1000, -1) for r in rows])
    level = peak = 0
    for _, d in events:
        level += d
        peak = max(peak, level)
    ideal = min(CONCURRENCY / LATENCY, rpm / 60 if rpm else float("inf"))
    achieved = calls / (end - begin)
    return {"rpm": rpm, "calls": calls, "ok": sum(r["outcome"] == "ok" for r in rows), "window_s": end - begin,
            "achieved_per_s": achieved, "ideal_per_s": ideal, "ratio": achieved / ideal, "peak_in_flight": peak,
            "flow_wall_s": wall, "status": status,
            "mean_latency_s": sum(r["latency_ms"] for r in rows) / calls / 1000,
            # achieved / (concurrency / latency) = slots busy x latency / mean call time
            "slots_busy": sum(r["latency_ms"] for r in rows) / 1000 / (end - begin) / CONCURRENCY,
            "ramp_s": sorted(r["s"] for r in rows)[min(CONCURRENCY, calls) - 1] - begin,
            "cpu_ms_per_call": {k: (cpu1[k] - cpu0.get(k, 0.0)) * 1000 / calls for k in cpu1},
            "cpu_cores_busy": sum(cpu1[k] - cpu0.get(k, 0.0) for k in cpu1) / wall,
            "load_before": load0, "load_after": os.getloadavg()[0], "cores": os.cpu_count()}


def raw_sdk_bench(tmp: Path, images: int, count: int) -> dict:
    """The ceiling of this machine at this moment: the bare backend (SDK + fake, no Prefect, no
    records) from ``CONCURRENCY`` plain threads."""
    from concurrent.futures import ThreadPoolExecutor

    from varflow.generation.backends.base import VariationRequest
    from varflow.generation.backends.gemini import GeminiGenerator

    gen = GeminiGenerator(timeout_s=60)
    photos = sorted((tmp / "photos").glob("*.png"))[:images]
    work = tmp / "raw-work"
    work.mkdir(exist_ok=True)
    latencies: list[float] = []

    def one(i: int) -> None:
        t = time.perf_counter()
        gen.generate(VariationRequest("raw", str(photos[i % len(photos)]), "object_add", "", i, i,
                                      str(work / f"{i}.png")))
        latencies.append(time.perf_counter() - t)

    one(-1)
    latencies.clear()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(one, range(images * count)))
    wall = time.perf_counter() - t0
    gen.close()
    return {"calls": images * count, "achieved_per_s": images * count / wall,
            "mean_latency_s": sum(latencies) / len(latencies)}


def generation_bench(tmp: Path, rpm: float | None, images: int, count: int) -> dict:
    """The generate task inside a flow: 200 submissions of the real task (real SDK, Prefect
    retries and result persistence, the cross-process limiter, the budget tracker, the attempts
    records and the variation cache), ``CONCURRENCY`` call slots; no scoring."""
    import uuid

    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner
    from varflow.flows.resources import open_resources
    from varflow.flows.variation_flow import pool_size
    from varflow.storage import Store
    from varflow.tasks.generate import generate_variation, retry_options

    from varflow.generation.backends import VariationRequest, derive_seed
    from varflow.generation.cache import generation_key
    from varflow.runtime.calls import AttemptContext
    from varflow.runtime.resources import CallPolicy, ResourceSpec

    home = tmp / f"gen-home-{rpm or 'nolimit'}"
    Store(home).initialize()
    policy = CallPolicy(retries=4, rpm=rpm, rate_dir=str(home / "ratelimit"), concurrency=CONCURRENCY)
    photos = sorted((tmp / "photos").glob("*.png"))[:images]

    # as in the flow: more task threads than call slots, so Prefect's bookkeeping of a task
    # entering or leaving its call never holds one of the CONCURRENCY slots
    @flow(name="gemini-generation-bench", task_runner=ThreadPoolTaskRunner(max_workers=pool_size(CONCURRENCY)),
          persist_result=False)
    def generation_only() -> int:
        run_id = str(uuid.uuid4())
        res = open_resources(ResourceSpec(run_id, str(home), "gemini", timeout_s=60.0, policy=policy,
                                          cache_max_bytes=2**30))
        task = generate_variation.with_options(result_storage=res.result_storage, **retry_options(policy))
        futures = []
        for i, path in enumerate(photos):
            for a in range(count):
                seed = derive_seed(0, path.name, a)
                request = VariationRequest(image_id=path.name, source_path=str(path), variation_type="object_add",
                                           prompt="", seed=seed, attempt=a,
                                           output_path=str(tmp / "gen-work" / f"{i}-{a}.png"))
                key = generation_key(image_id=f"{run_id}{path.name}", backend="gemini", model="bench",
                                     variation_type="object_add", prompt="", seed=seed, max_image_size=1024)
                futures.append(task.submit(request, AttemptContext(f"{i}-{a}", "low", key), res))
        ok = sum(1 for f in futures if f.result().ok)
        res.close()
        return ok

    (tmp / "gen-work").mkdir(exist_ok=True)
    cpu0, load0 = cpu_seconds(), os.getloadavg()[0]
    t0 = time.perf_counter()
    ok = generation_only()
    wall = time.perf_counter() - t0
    return measure(home, rpm, wall, cpu0, cpu_seconds(), load0, f"{ok} ok")


def flow_bench(tmp: Path, rpm: float | None, images: int, count: int) -> dict:
    from varflow.flows.parameters import RunParameters, Thresholds
    from varflow.flows.variation_flow import run_local

    home = tmp / f"home-{rpm or 'nolimit'}"
    params = RunParameters(
        input_dir=str(tmp / "photos"), output_dir=str(tmp / f"out-{rpm or 'nolimit'}"), home=str(home),
        backend="gemini", count=count, level="low", adaptive=False, images_in_flight=8,
        generation_concurrency=CONCURRENCY, requests_per_minute=rpm, retries=4, max_memory_mb=4096,
        thresholds=Thresholds(similarity_min=0, similarity_max=1, diversity_min=0, aesthetic_min=0,
                              object_integrity_min=0, overall_min=0),
    )
    cpu0, load0 = cpu_seconds(), os.getloadavg()[0]
    t0 = time.perf_counter()
    summary = run_local(params)
    wall = time.perf_counter() - t0
    return measure(home, rpm, wall, cpu0, cpu_seconds(), load0, summary["status"])


def limiter_bench(tmp: Path, rpm: float, per_process: int, procs: int = 3) -> dict:
    from limiter_child import slot_times

    starts = slot_times(tmp / "limiter" / "state.json", rpm, per_process, procs, start_in=1.0, timeout=300)
    interval = 60 / rpm
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    window = 1.0  # the busiest 1 s window vs the rpm's per-second share
    busiest = max(sum(1 for t in starts if s <= t < s + window) for s in starts)
    return {"rpm": rpm, "processes": procs, "calls": len(starts),
            "achieved_per_min": (len(starts) - 1) / (starts[-1] - starts[0]) * 60,
            "min_gap_ms": min(gaps) * 1000, "max_gap_ms": max(gaps) * 1000, "interval_ms": interval * 1000,
            "busiest_1s": busiest, "allowed_1s": rpm / 60}


def prefect_limit_bench(rate_per_s: float, calls: int) -> dict:
    """Prefect's global rate limit (server-side, polled) at the same rate, from 16 threads."""
    from concurrent.futures import ThreadPoolExecutor

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import rate_limit

    name = f"varflow-bench-{os.getpid()}"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
            name=name, limit=max(1, int(rate_per_s)), slot_decay_per_second=rate_per_s, active=True))
    starts: list[float] = []

    def one(_):
        rate_limit(name, occupy=1)
        starts.append(time.time())

    t0 = time.time()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(calls)))
    starts.sort()
    return {"rate_per_s": rate_per_s, "calls": calls, "elapsed_s": starts[-1] - t0,
            "ideal_s": (calls - max(1, int(rate_per_s))) / rate_per_s,
            "achieved_per_s": calls / (starts[-1] - t0)}


def report(title: str, results: list[dict], gate: bool, ceiling: float) -> bool:
    """Print; with ``gate``, fail when a setting is below 90% of its ideal,
    min(concurrency / latency, rpm / 60)."""
    print(f"  {title}")
    failed = False
    for r in results:
        bound = min(r["ideal_per_s"], ceiling)
        ok = r["achieved_per_s"] >= 0.9 * r["ideal_per_s"]
        failed |= gate and not ok
        verdict = ("ok" if ok else "BELOW 90%") if gate else "reported"
        print(f"    rpm {str(r['rpm'] or 'none'):>5}: {r['calls']} calls ({r['status']}) in {r['window_s']:.2f} s -> "
              f"{r['achieved_per_s']:.1f}/s achieved vs {r['ideal_per_s']:.1f}/s ideal = {r['ratio']:.0%}, "
              f"{r['achieved_per_s'] / bound:.0%} of min(ideal, bare SDK) [{verdict}]; peak {r['peak_in_flight']} "
              f"in flight, mean call {r['mean_latency_s']:.3f} s; flow wall {r['flow_wall_s']:.1f} s")
        print(f"      slots busy {r['slots_busy']:.0%} of the window; the first {CONCURRENCY} calls started within "
              f"{r['ramp_s'] * 1000:.0f} ms")
        print("      CPU per call: " + ", ".join(f"{k} {v:.0f} ms" for k, v in r["cpu_ms_per_call"].items())
              + f"; {r['cpu_cores_busy']:.1f} of {r['cores']} cores busy with this bench; machine load "
              f"{r['load_before']:.1f} -> {r['load_after']:.1f}")
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 variations instead of 200")
    parser.add_argument("--no-full-run", action="store_true", help="skip the whole-pipeline runs (reported only)")
    parser.add_argument("--no-prefect-limit", action="store_true", help="skip the Prefect rate-limit comparison")
    args = parser.parse_args()
    images = IMAGES // 2 if args.quick else IMAGES

    tmp = Path(tempfile.mkdtemp(prefix="varflow-gemini-bench-"))
    make_photos(tmp / "photos", images)
    fake, url = start_fake(LATENCY)
    for k in ("GOOGLE_API_KEY", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(k, None)
    os.environ.update(GEMINI_API_KEY=KEY, GOOGLE_GEMINI_BASE_URL=url, NO_PROXY="127.0.0.1,localhost")
    import varflow.tasks.prefect_defaults

    varflow.tasks.prefect_defaults.apply()
    from prefect.testing.utilities import prefect_test_harness

    try:
        with prefect_test_harness(server_startup_timeout=120):
            raw = raw_sdk_bench(tmp, images, COUNT)
            generation = [generation_bench(tmp, rpm, images, COUNT) for rpm in (None, 1200)]
            full = [] if args.no_full_run else [flow_bench(tmp, rpm, images, COUNT) for rpm in (None, 1200)]
            prefect = None if args.no_prefect_limit else prefect_limit_bench(20.0, 60)
    finally:
        fake.kill()
        fake.wait()
    limiter = limiter_bench(tmp, 1200, 20)

    print(f"\ngemini throughput: {images * COUNT} variations, {CONCURRENCY} calls in flight, fake latency {LATENCY} s "
          f"(JPEG answers, fake in its own process), Prefect test server; ideal = min({CONCURRENCY}/{LATENCY}, rpm/60)")
    print(f"  bare SDK ceiling here and now (16 plain threads, no Prefect, no records): "
          f"{raw['achieved_per_s']:.1f}/s = {raw['achieved_per_s'] / (CONCURRENCY / LATENCY):.0%} of "
          f"{CONCURRENCY / LATENCY:.0f}/s, mean call {raw['mean_latency_s']:.2f} s")
    failed = report("generate task inside a flow (real task, retries machinery, limiter, budget, records, cache):",
                    generation, gate=True, ceiling=raw["achieved_per_s"])
    if full:
        report("whole `varflow run` (also optimize, dedup and score each variation; a task run per call and "
               "two per image):",
               full, gate=False, ceiling=raw["achieved_per_s"])
    print(f"  cross-process limiter: {limiter['processes']} processes, {limiter['calls']} acquisitions at "
          f"{limiter['rpm']:.0f}/min -> {limiter['achieved_per_min']:.0f}/min achieved; gaps "
          f"{limiter['min_gap_ms']:.1f}-{limiter['max_gap_ms']:.1f} ms (interval {limiter['interval_ms']:.1f} ms); "
          f"busiest 1 s window {limiter['busiest_1s']} starts (rate allows {limiter['allowed_1s']:.0f})")
    if prefect:
        print(f"  Prefect global rate limit at {prefect['rate_per_s']:.0f}/s: {prefect['calls']} acquisitions in "
              f"{prefect['elapsed_s']:.1f} s (ideal ~{prefect['ideal_s']:.1f} s) -> "
              f"{prefect['achieved_per_s']:.1f}/s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
