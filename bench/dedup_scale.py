"""Copy-finding at scale: time, peak memory and pairs found, against the older `varflow dedup` and imagededup's PHash.

Builds a folder of N procedural JPEGs (bench/copyset.py: distinct pictures, none a copy of
another; the bench checks that no two of them lie within 10 bits of pHash), of which a known
share (--copy-rate) are copies of another with one edit each, the hard ones (crop to 60-80% of
the area, mirror, border, letterbox, rotation by 3-15 degrees) and the easy ones (JPEG, resize,
colour, caption, noise, blur) in equal numbers. Then, each in its own process, in the same run:

* new: ``varflow.duplicates.copies.find_copy_groups`` (what `varflow dedup` runs now; a pool of --workers);
* old: ``varflow.reports.inspect.find_duplicate_groups`` (what `varflow dedup` ran before: one process);
* phash: imagededup's ``PHash().find_duplicates`` with its defaults (Hamming <= 10; a pool of
  every core). Installed here alone (``pip install --no-deps imagededup``: varflow does not
  depend on it); its CNN module needs torch, which PHash never uses, so the bench stands in an
  empty module for it rather than install torch.

Prints wall time, CPU time (the process and its pool), peak RSS (the process's, plus its largest
worker's), original-copy pairs found per edit, and precision over every pair a detector links
(two files of one group are a pair).

    .venv/bin/python bench/dedup_scale.py --n 1000 [--n 10000] [--copy-rate 0.2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from copyset import KINDS, copy_of, procedural  # noqa: E402

JPEG_QUALITY = 90


def _make(args) -> tuple[str, int, str, int]:
    """Write one file: a base picture (kind 'orig') or a copy of base ``b``."""
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


def child(method: str, folder: str, out: str, workers: int) -> None:
    paths = sorted(str(p) for p in Path(folder).iterdir())
    t0, c0 = time.perf_counter(), time.process_time()
    if method == "new":
        from varflow.duplicates.copies import find_copy_groups

        groups = find_copy_groups(paths, workers=workers)
    elif method == "old":
        from varflow.reports.inspect import find_duplicate_groups

        groups = find_duplicate_groups(paths)
    else:
        import logging
        import warnings

        _stub_torch_modules()
        from imagededup.methods import PHash

        logging.disable(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dups = PHash(verbose=False).find_duplicates(image_dir=folder)
        groups = [[str(Path(folder) / a), *(str(Path(folder) / b) for b in bs)] for a, bs in dups.items() if bs]
    wall = time.perf_counter() - t0
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (me.ru_utime + me.ru_stime) + (kids.ru_utime + kids.ru_stime)
    Path(out).write_text(json.dumps({"wall": wall, "cpu": cpu, "self_rss_mib": me.ru_maxrss / 1024,
                                     "worker_rss_mib": kids.ru_maxrss / 1024, "groups": groups,
                                     "cpu_main": time.process_time() - c0}))


def run_child(method: str, folder: Path, workers: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        subprocess.run([sys.executable, __file__, "--child", method, "--dir", str(folder), "--out", out,
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


def score(items, groups) -> tuple[dict[str, tuple[int, int]], int, int]:
    """Per edit (found, of); then true and false pairs among all linked pairs."""
    base = {p: b for p, b, _ in items}
    orig = {b: p for p, b, k in items if k == "orig"}
    linked = pairs_of(groups)
    per = {}
    for kind in KINDS:
        want = [tuple(sorted((orig[b], p))) for p, b, k in items if k == kind]
        per[kind] = (sum(w in linked for w in want), len(want))
    true = sum(base[a] == base[b] for a, b in linked)
    return per, true, len(linked) - true


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, action="append", help="images in the folder (repeat for several sizes)")
    ap.add_argument("--copy-rate", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="build the folders here and keep them")
    ap.add_argument("--methods", default="new,old,phash")
    ap.add_argument("--child", choices=("new", "old", "phash"), help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.dir, args.out, args.workers)
        return
    methods = args.methods.split(",")
    if "phash" in methods:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "imagededup", "tqdm",
                        "PyWavelets", "scikit-learn"], check=True)
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the start (other work on the "
          "machine slows every detector alike: compare within a size, not across runs)")
    for n in args.n or [1000]:
        with tempfile.TemporaryDirectory() as tmp:
            folder = (args.keep or Path(tmp)) / f"copies-{n}"
            t0 = time.perf_counter()
            items = build(folder, n, args.copy_rate, args.workers)
            n_copies = sum(k != "orig" for _, _, k in items)
            closest = distinct_check(items)
            print(f"\n== {n} images: {n - n_copies} distinct pictures + {n_copies} copies "
                  f"({n_copies // len(KINDS)} per edit), JPEG q{JPEG_QUALITY}, ~560-900 x 420-700 px; "
                  f"built in {time.perf_counter() - t0:.0f} s; closest two distinct pictures: {closest} bits of pHash")
            rows = {}
            for m in methods:
                rows[m] = run_child(m, folder, args.workers)
            print(f"{'detector':<34} {'wall s':>7} {'CPU s':>7} {'peak MiB':>16} {'pairs found':>12} {'precision':>9}")
            label = {"new": "varflow dedup (copies.py)", "old": "varflow dedup before (inspect.py)",
                     "phash": "imagededup PHash (<= 10 bits)"}
            per_all = {}
            for m, r in rows.items():
                per, tp, fp = score(items, r["groups"])
                per_all[m] = per
                found = sum(f for f, _ in per.values())
                total = sum(t for _, t in per.values())
                mem = f"{r['self_rss_mib']:.0f} + {r['worker_rss_mib']:.0f}"
                print(f"{label[m]:<34} {r['wall']:>7.1f} {r['cpu']:>7.1f} {mem:>16} "
                      f"{found:>5}/{total:<6} {tp / max(tp + fp, 1):>9.4f}")
            if "new" in rows:
                for m in rows:
                    if m != "new":
                        print(f"new / {m}: wall {rows['new']['wall'] / rows[m]['wall']:.2f}x, "
                              f"CPU {rows['new']['cpu'] / rows[m]['cpu']:.2f}x")
            print("\noriginal-copy pairs found, by edit")
            print(f"{'edit':<10}" + "".join(f"{m:>10}" for m in rows))
            for kind in KINDS:
                print(f"{kind:<10}" + "".join(f"{per_all[m][kind][0]:>6}/{per_all[m][kind][1]:<3}" for m in rows))


if __name__ == "__main__":
    main()
