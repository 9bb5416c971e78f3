"""Copy-finding at scale: time, CPU, peak memory and pairs found, against `varflow dedup` as it was and PHash.

Builds a folder of N procedural JPEGs (bench/copyset.py: distinct pictures, none a copy of
another; the bench checks that no two of them lie within 10 bits of pHash), of which a known
share (--copy-rate) are copies of another with one edit each, the hard ones (crop to 60-80% of
the area, mirror, border, letterbox, rotation by 3-15 degrees) and the easy ones (JPEG, resize,
colour, caption, noise, blur) in equal numbers. Then, each in its own process (honest peak RSS),
in the same run, --repeat times in turn (the best wall time is kept: the machine is shared):

* new: ``varflow.duplicates.copies.find_copy_groups``, what `varflow dedup` runs now;
* baseline: the same module as it was at commit ``BASELINE`` (read with ``git show`` into a
  temporary file and imported from there: copy-finding before the speed work of issue 22);
* phash: imagededup's ``PHash().find_duplicates`` with its defaults (Hamming <= 10; a pool of
  every core). It lives in a virtual environment of its own, never in varflow's (--phash-venv,
  default ~/.cache/varflow-bench/imagededup-venv; the bench creates it when missing with
  ``python -m venv`` + ``pip install --no-deps imagededup`` + PHASH_PACKAGES).
  Its CNN module needs torch, which PHash never uses, so the bench stands in an empty module for it;
* inspect (only when asked with --methods): ``varflow.reports.inspect.find_duplicate_groups``,
  the rule before copy-finding (hashes + 20 px SSIM).

Prints, per size: wall time, CPU time (the process and its pool), peak RSS (the process's, plus
its largest worker's), recall (original-copy pairs found) and precision over every pair a
detector links (two files of one group are a pair), ratios against PHash and the baseline, and
pairs found per edit. With --stages, one more run of `varflow dedup` times each of its stages
(features, hash route, words and shortlist, verification), wall and CPU.

    .venv/bin/python bench/dedup_scale.py --n 1000 [--n 10000] [--copy-rate 0.2] [--workers 2] [--repeat 2] [--stages]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JPEG_QUALITY = 90
BASELINE = "1b5ebb7a586da5d570f2c0cbd517c9fb44a18897"  # main when the speed work began: copies.py as it was
PHASH_VENV = Path.home() / ".cache" / "varflow-bench" / "imagededup-venv"
# its search imports scikit-learn and its utils matplotlib, even for PHash
PHASH_PACKAGES = ("numpy", "Pillow", "PyWavelets", "scipy", "scikit-learn", "matplotlib", "tqdm")


def _bench_imports() -> None:
    """varflow and the copy set (numpy, OpenCV): not for the PHash child, which runs in its own venv."""
    for p in (str(ROOT), str(ROOT / "bench")):
        if p not in sys.path:
            sys.path.insert(0, p)


def _make(args) -> tuple[str, int, str, int]:
    """Write one file: a base picture (kind 'orig') or a copy of base ``b``."""
    import numpy as np
    from copyset import copy_of, procedural

    folder, index, kind, base, seed = args
    name = f"{index:06d}.jpg"  # names say nothing of what a file is
    if (Path(folder) / name).exists():  # a kept folder (--keep) is reused: the same seed makes the same files
        return name, base, kind, index
    rng = np.random.default_rng(seed)
    im = procedural(np.random.default_rng(1_000_003 * base + 17))
    if kind != "orig":
        im = copy_of(im, kind, rng)
    im.save(Path(folder) / name, "JPEG", quality=JPEG_QUALITY)
    return name, base, kind, index


def build(folder: Path, n: int, copy_rate: float, workers: int, seed: int = 0) -> list[tuple[str, int, str]]:
    _bench_imports()
    import numpy as np
    from copyset import KINDS

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_copies = int(round(n * copy_rate))
    n_bases = n - n_copies
    jobs = [(str(folder), i, "orig", i, 0) for i in range(n_bases)]
    copy_bases = rng.integers(0, n_bases, n_copies)
    for k in range(n_copies):
        jobs.append((str(folder), n_bases + k, KINDS[k % len(KINDS)], int(copy_bases[k]), seed * 7919 + k))
    order = rng.permutation(len(jobs))  # shuffle file names against bases
    jobs = [(f, int(order[i]), kind, b, s) for i, (f, _, kind, b, s) in enumerate(jobs)]
    with ProcessPoolExecutor(workers) as pool:
        made = list(pool.map(_make, jobs, chunksize=16))
    return [(str(folder / name), base, kind) for name, base, kind, _ in sorted(made, key=lambda t: t[3])]


def distinct_check(items) -> int:
    """Smallest pHash distance between two different base pictures (imagededup calls <= 10 a duplicate)."""
    import numpy as np

    from varflow.duplicates.copies import features_of_file
    from varflow.duplicates.hashindex import popcount64

    bases = [p for p, _, k in items if k == "orig"]
    h = np.array([features_of_file(p).hashes[0, 0] for p in bases], np.uint64)
    best = 64
    for i in range(0, len(h), 512):
        d = popcount64(h[i:i + 512, None] ^ h[None, :])
        for r in range(d.shape[0]):
            d[r, i + r] = 64
        best = min(best, int(d.min()))
    return best


# --- children: one detector each ------------------------------------------------------------

def _stub_torch_modules() -> None:
    import types

    for name, attr in (("imagededup.utils.models", "CustomModel"), ("imagededup.methods.cnn", "CNN")):
        if name not in sys.modules:
            m = types.ModuleType(name)
            setattr(m, attr, None)
            sys.modules[name] = m


def _baseline_module():
    """copies.py as it was at BASELINE, imported from a temporary file (its imports resolve to today's
    varflow: hashindex, imageio and settings, which the speed work did not change)."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE}:varflow/duplicates/copies.py"],
                          check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "copies_baseline.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("copies_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["copies_baseline"] = module
    spec.loader.exec_module(module)
    return module


def _phash_groups(folder: str) -> list[list[str]]:
    import logging
    import warnings

    _stub_torch_modules()
    from imagededup.methods import PHash

    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dups = PHash(verbose=False).find_duplicates(image_dir=folder)
    return [[str(Path(folder) / a), *(str(Path(folder) / b) for b in bs)] for a, bs in dups.items() if bs]


STAGES = (("features (decode, SIFT, hashes)", "extract_all"), ("hash route", "global_links"),
          ("words and shortlist", "word_candidates"), ("linking in all", "link_features"))


def stage_times(paths: list[str], workers: int) -> list[tuple[str, float, float]]:
    """(stage, wall s, CPU s of every thread) of ``find_copy_groups``, its module's stage
    functions wrapped with timers; verification is what linking spends besides the hash route
    and the words."""
    from varflow.duplicates import copies

    spent: dict[str, list[float]] = {}

    def timed(name, fn):
        def run(*a, **kw):
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                w, c = spent.setdefault(name, [0.0, 0.0])
                spent[name] = [w + time.perf_counter() - w0, c + time.process_time() - c0]
        return run

    for name, attr in STAGES:
        setattr(copies, attr, timed(name, getattr(copies, attr)))
    w0, c0 = time.perf_counter(), time.process_time()
    copies.find_copy_groups(paths, workers=workers)
    total = [time.perf_counter() - w0, time.process_time() - c0]
    linking = spent.pop("linking in all")
    verify = [linking[k] - spent["hash route"][k] - spent["words and shortlist"][k] for k in range(2)]
    rows = [*((name, *spent[name]) for name, _ in STAGES[:3]), ("verification", *verify), ("all", *total)]
    return [(name, round(w, 2), round(c, 2)) for name, w, c in rows]


def child(method: str, folder: str, out: str, workers: int) -> None:
    paths = sorted(str(p) for p in Path(folder).iterdir())
    if method == "stages":
        _bench_imports()
        Path(out).write_text(json.dumps({"stages": stage_times(paths, workers)}))
        return
    t0 = time.perf_counter()
    if method == "phash":
        groups = _phash_groups(folder)
    else:
        _bench_imports()
        if method == "new":
            from varflow.duplicates.copies import find_copy_groups

            groups = find_copy_groups(paths, workers=workers)
        elif method == "baseline":
            groups = _baseline_module().find_copy_groups(paths, workers=workers)
        else:
            from varflow.reports.inspect import find_duplicate_groups

            groups = find_duplicate_groups(paths)
    wall = time.perf_counter() - t0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (me.ru_utime + me.ru_stime) + (kids.ru_utime + kids.ru_stime)
    Path(out).write_text(json.dumps({"wall": wall, "cpu": cpu, "self_rss_mib": me.ru_maxrss / 1024,
                                     "worker_rss_mib": kids.ru_maxrss / 1024, "groups": groups}))


def phash_python(venv: Path) -> str:
    """The interpreter of imagededup's own environment, created on first use (never varflow's)."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} for imagededup (python -m venv; pip install --no-deps imagededup "
              f"{' '.join(PHASH_PACKAGES)})", flush=True)
        base = Path(sys.base_prefix) / "bin" / "python3"
        subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--no-deps", "imagededup"], check=True)
        subprocess.run([*pip, *PHASH_PACKAGES], check=True)
    return str(python)


def run_child(method: str, folder: Path, workers: int, python: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        subprocess.run([python, __file__, "--child", method, "--dir", str(folder), "--out", out,
                        "--workers", str(workers)], check=True)
        return json.loads(Path(out).read_text())
    finally:
        os.unlink(out)


def pairs_of(groups) -> set[tuple[str, str]]:
    out = set()
    for g in groups:
        g = sorted(set(g))
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                out.add((g[i], g[j]))
    return out


def score(items, groups, kinds) -> tuple[dict[str, tuple[int, int]], int, int]:
    """Per edit (found, of); then true and false pairs among all linked pairs."""
    base = {p: b for p, b, _ in items}
    orig = {b: p for p, b, k in items if k == "orig"}
    linked = pairs_of(groups)
    per = {}
    for kind in kinds:
        want = [tuple(sorted((orig[b], p))) for p, b, k in items if k == kind]
        per[kind] = (sum(w in linked for w in want), len(want))
    true = sum(base[a] == base[b] for a, b in linked)
    return per, true, len(linked) - true


LABEL = {"new": "varflow dedup now (copies.py)", "baseline": "varflow dedup baseline (copies.py@1b5ebb7)",
         "phash": "imagededup PHash (<= 10 bits)", "inspect": "older rule (inspect.py: hashes + SSIM)"}


def measure(n: int, args, methods: list[str], pythons: dict[str, str]) -> None:
    from copyset import KINDS

    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.keep or Path(tmp)) / f"copies-{n}"
        t0 = time.perf_counter()
        items = build(folder, n, args.copy_rate, args.workers)
        n_copies = sum(k != "orig" for _, _, k in items)
        closest = distinct_check(items)
        print(f"\n== {n} images: {n - n_copies} distinct pictures + {n_copies} copies "
              f"({n_copies // len(KINDS)} per edit), JPEG q{JPEG_QUALITY}, ~560-900 x 420-700 px; "
              f"built in {time.perf_counter() - t0:.0f} s; closest two distinct pictures: {closest} bits of pHash",
              flush=True)
        rows: dict[str, dict] = {}
        for _ in range(args.repeat):  # in turn, so a burst of other work on the machine hits each alike
            for m in methods:
                r = run_child(m, folder, args.workers, pythons.get(m, sys.executable))
                if m not in rows or r["wall"] < rows[m]["wall"]:
                    rows[m] = r
        report(n, items, rows, KINDS)
        if args.stages:
            print(f"where `varflow dedup` spends its time ({n} images, {args.workers} threads, one run)")
            print(f"{'stage':<32} {'wall s':>7} {'CPU s':>7}")
            for name, wall, cpu in run_child("stages", folder, args.workers, sys.executable)["stages"]:
                print(f"{name:<32} {wall:>7.2f} {cpu:>7.2f}")


def report(n: int, items, rows: dict[str, dict], kinds) -> None:
    print(f"{'images':>7} {'contender':<44} {'wall s':>7} {'CPU s':>7} {'peak MiB':>14} {'recall':>14} "
          f"{'precision':>9}")
    per_all = {}
    for m, r in rows.items():
        per, tp, fp = score(items, r["groups"], kinds)
        per_all[m] = per
        found, total = sum(f for f, _ in per.values()), sum(t for _, t in per.values())
        mem = f"{r['self_rss_mib']:.0f} + {r['worker_rss_mib']:.0f}"
        print(f"{n:>7} {LABEL[m]:<44} {r['wall']:>7.1f} {r['cpu']:>7.1f} {mem:>14} "
              f"{found:>5}/{total:<5} {found / max(total, 1):>4.0%} {tp / max(tp + fp, 1):>9.4f}")
    for ref in ("phash", "baseline"):
        for m in rows:
            if m != ref and ref in rows:
                print(f"{m} / {ref}: wall {rows[m]['wall'] / rows[ref]['wall']:.2f}x, "
                      f"CPU {rows[m]['cpu'] / rows[ref]['cpu']:.2f}x")
    print("original-copy pairs found, by edit")
    print(f"{'edit':<10}" + "".join(f"{m:>10}" for m in rows))
    for kind in kinds:
        print(f"{kind:<10}" + "".join(f"{per_all[m][kind][0]:>6}/{per_all[m][kind][1]:<3}" for m in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, action="append", help="images in the folder (repeat for several sizes)")
    ap.add_argument("--copy-rate", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each contender, in turn; the best wall is kept")
    ap.add_argument("--keep", type=Path, help="build the folders here and keep them (reused when there)")
    ap.add_argument("--methods", default="new,baseline,phash", help="of new, baseline, phash, inspect")
    ap.add_argument("--phash-venv", type=Path, default=PHASH_VENV, help="imagededup's own environment")
    ap.add_argument("--stages", action="store_true", help="then time each stage of `varflow dedup` in one more run")
    ap.add_argument("--child", choices=(*LABEL, "stages"), help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.dir, args.out, args.workers)
        return
    _bench_imports()
    methods = args.methods.split(",")
    pythons = {"phash": phash_python(args.phash_venv)} if "phash" in methods else {}
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start (other work on the "
          "machine slows every contender alike: compare within a size, not across runs)")
    for n in args.n or [1000]:
        measure(n, args, methods, pythons)


if __name__ == "__main__":
    main()
