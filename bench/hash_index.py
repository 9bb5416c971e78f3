"""Hamming-radius lookup at library scale: varflow.duplicates.hashindex.HashIndex on 1,000,000 hashes.

Inserts 1,000,000 random 64-bit hashes plus, for each of 1,000 query hashes, planted near
neighbours at every distance 0..10 (random bit flips), then queries every query hash at radius
10 and prints the p50 and p99 query time and the recall of the planted neighbours. For
reference it also times a numpy XOR + popcount scan of all hashes (the exact brute force).

    .venv/bin/python bench/hash_index.py [--n 1000000] [--queries 1000] [--radius 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from varflow.duplicates.hashindex import HashIndex, popcount64  # noqa: E402


def flip_bits(value: int, k: int, rng: np.random.Generator) -> int:
    for b in rng.choice(64, size=k, replace=False):
        value ^= 1 << int(b)
    return value


def percentile_ms(times: list[float], p: float) -> float:
    return float(np.percentile(np.array(times) * 1000, p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--radius", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(2024)

    random_hashes = rng.integers(0, 2**63, size=args.n, dtype=np.int64).astype(np.uint64)
    random_hashes ^= rng.integers(0, 2, size=args.n, dtype=np.int64).astype(np.uint64) << np.uint64(63)
    queries = [int(x) for x in rng.integers(0, 2**63, size=args.queries, dtype=np.int64)]
    planted_keys, planted_hashes, expected = [], [], {}
    for qi, q in enumerate(queries):
        for d in range(args.radius + 1):
            key = f"planted-{qi}-{d}"
            planted_keys.append(key)
            planted_hashes.append(flip_bits(q, d, rng))
            expected.setdefault(qi, set()).add(key)

    index = HashIndex()
    t0 = time.perf_counter()
    index.add(range(args.n), random_hashes)
    index.add(planted_keys, planted_hashes)
    t_build = time.perf_counter() - t0
    print(f"{len(index):,} hashes indexed in {t_build:.2f} s "
          f"({os.cpu_count()} CPUs; radius {args.radius}; {args.queries} queries)")

    for q in queries[:20]:  # warm up
        index.query(q, args.radius)
    times, found, wanted = [], 0, 0
    for qi, q in enumerate(queries):
        t0 = time.perf_counter()
        hits = index.query(q, args.radius)
        times.append(time.perf_counter() - t0)
        keys = {k for k, _ in hits}
        found += len(expected[qi] & keys)
        wanted += len(expected[qi])
    print(f"HashIndex (multi-index hashing): p50 {percentile_ms(times, 50):.3f} ms  "
          f"p99 {percentile_ms(times, 99):.3f} ms  recall {found / wanted:.4f} "
          f"({found}/{wanted} planted neighbours)")

    allh = np.concatenate([random_hashes, np.array(planted_hashes, dtype=np.uint64)])
    scan_times = []
    for q in queries[:200]:
        qq = np.uint64(q)
        t0 = time.perf_counter()
        np.flatnonzero(popcount64(allh ^ qq) <= args.radius)
        scan_times.append(time.perf_counter() - t0)
    print(f"numpy XOR + popcount scan (reference): p50 {percentile_ms(scan_times, 50):.3f} ms  "
          f"p99 {percentile_ms(scan_times, 99):.3f} ms")


if __name__ == "__main__":
    main()
