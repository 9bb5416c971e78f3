"""Peak memory must stay flat as the folder grows.

Runs the local backend over 30 and over 300 photos of 3000 x 2000 px (real photos, upscaled,
flipped and tinted so every file is distinct), each run in its own process, and prints each
run's peak RSS (the flow process itself; Prefect's temporary server is a separate process) and
the ratio. Goal: the 300-image peak within 10% of the 30-image peak, and under 1 GiB.

    python bench/memory_flat.py [--sizes 30,300] [--workdir /tmp/varflow-bench-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from varflow.images.samples import sample_paths  # noqa: E402

CHILD = r"""
import json, resource, sys, time
from varflow.flows.parameters import RunParameters
from varflow.flows.variation_flow import run_local
params = RunParameters.model_validate_json(sys.argv[1])
t = time.perf_counter()
summary = run_local(params)
print("RESULT " + json.dumps({
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "seconds": time.perf_counter() - t,
    "images_ok": summary["images_ok"], "attempts": summary["attempts"],
    "accepted": summary["variations_accepted"],
}), flush=True)
"""


def make_photos(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = [Image.open(p).convert("RGB") for p in sample_paths()]
    out = []
    for i in range(n):
        path = folder / f"photo-{i:04d}.jpg"
        out.append(path)
        if path.exists():
            continue
        im = sources[i % len(sources)]
        if (i // len(sources)) % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        big = im.resize((3000, 2000), Image.Resampling.BICUBIC)
        arr = np.asarray(big, dtype=np.int16)
        rng = np.random.default_rng(i)  # sensor-like noise: every file distinct
        arr = arr + rng.integers(-12, 13, size=3, dtype=np.int16) + rng.integers(-4, 5, size=arr.shape, dtype=np.int16)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=90)
    return out


def run(photos: list[Path], workdir: Path, label: str) -> dict:
    folder = workdir / f"in-{label}"
    folder.mkdir(parents=True, exist_ok=True)
    for p in photos:
        link = folder / p.name
        if not link.exists():
            link.symlink_to(p)
    params = {
        "input_dir": str(folder), "output_dir": str(workdir / f"out-{label}"),
        "home": str(workdir / f"home-{label}-{time.time_ns()}"), "count": 2, "level": "medium",
        "adaptive": False, "images_in_flight": 2, "generation_concurrency": 2, "max_memory_mb": 2048,
    }
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(params)], env=env,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"run {label} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="30,300")
    ap.add_argument("--workdir", default="/tmp/varflow-bench-memory")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(args.workdir)
    photos = make_photos(workdir / "photos", max(sizes))
    results = {}
    for n in sizes:
        r = run(photos[:n], workdir, str(n))
        results[n] = r
        print(f"{n:4d} images of 3000x2000: peak RSS {r['peak_rss_mib']:7.1f} MiB, {r['seconds']:6.1f} s, "
              f"{r['images_ok']} ok, {r['attempts']} attempts, {r['accepted']} accepted", flush=True)
    small, large = results[min(sizes)], results[max(sizes)]
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    print(f"peak RSS ratio {max(sizes)}/{min(sizes)} images: {ratio:.3f} "
          f"(goal <= 1.10); largest peak {large['peak_rss_mib']:.0f} MiB (goal < 1024)")


if __name__ == "__main__":
    main()
