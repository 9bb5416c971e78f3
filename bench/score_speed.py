"""Scoring speed: varflow's metrics against the plain seed formulation, in one process.

Workload per image, 4 variations: for each variation its similarity to the original, its
diversity, its aesthetic score and four parts, object integrity, overall quality and the three
perceptual hashes. Diversity is measured two ways (both formulations compute the same values):

* ``previous`` (the seed's enhanced loop, and varflow's flow): V_i against V_1..V_(i-1);
  10 SSIM pairs per image (4 similarities + 0+1+2+3);
* ``others``: V_i against the three other variations (16 SSIM pairs per image in the seed's
  code; varflow computes each unordered pair once, SSIM being symmetric for equal sizes: 10).

Formulations:

* seed: tests/seed_reference.py, the seed's code written plainly (Pillow images in, a Pillow grey
  conversion per call, skimage SSIM, ImageStat, CV_64F Laplacian, Canny + connected components,
  imagehash for each hash);
* ours: varflow.quality.metrics + varflow.duplicates.hashing on the same Pillow images, as varflow runs them
  (edge detection and hashes on one helper thread while the main thread computes SSIM);
* ours, one thread: the same with the helper thread off;
* calibrated: the calibrated profile (varflow.quality.calibrated) on the same images: the original's
  ImageFeatures once per image, each variation's once, then score_calibrated with diversity
  against the same other variations (its own measures; the perceptual hashes, which dedup
  computes whatever the profile, are not part of it). Its ratio is against the seed formulation
  timed in the same rounds.

Photos: scikit-image's bundled photos resized to 1024 and 2048 px on the long side; the
variations are real edits (colour grade, blur, crop-and-rescale, noise). Every value is checked
to agree (similarity and diversity within 1e-4, the rest within 1e-6, hashes equal) before
anything is timed. Each image's workload then runs in every formulation in turn, for several
rounds; the figures are medians over rounds (best round in brackets), and ratios are taken
within the same run, so a busy machine slows both sides alike.

    .venv/bin/python bench/score_speed.py [--rounds 3] [--sizes 1024 2048] [--diversity previous others]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import seed_reference as seed  # noqa: E402

from varflow.duplicates.hashing import compute_hashes  # noqa: E402
from varflow.images.samples import SAMPLE_FILES, sample_dir  # noqa: E402
from varflow.quality import calibrated, metrics  # noqa: E402

VARIATIONS = 4


def load_photo(name: str, size: int) -> Image.Image:
    with Image.open(sample_dir() / name) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    scale = size / max(w, h)
    return rgb.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)


def make_variations(original: Image.Image, seed_value: int) -> list[Image.Image]:
    """Four real edits of the original: a warm grade, a blur, a crop rescaled, noise."""
    rng = np.random.default_rng(seed_value)
    a = np.asarray(original).astype(np.float32)
    h, w = a.shape[:2]
    warm = np.clip(a * np.array([1.12, 1.0, 0.85], np.float32) + 8, 0, 255)
    blur = cv2.GaussianBlur(a, (0, 0), 2.5)
    y0, x0 = int(h * 0.06), int(w * 0.06)
    crop = cv2.resize(a[y0 : h - y0, x0 : w - x0], (w, h), interpolation=cv2.INTER_LINEAR)
    noise = np.clip(a + rng.normal(0, 12, a.shape).astype(np.float32), 0, 255)
    return [Image.fromarray(v.astype(np.uint8)) for v in (warm, blur, crop, noise)]


def others_of(variations: list, i: int, mode: str) -> list:
    return variations[:i] if mode == "previous" else variations[:i] + variations[i + 1 :]


def run_seed(original: Image.Image, variations: list[Image.Image], mode: str) -> list[dict]:
    out = []
    for i, v in enumerate(variations):
        scores = seed.seed_score(original, v, others_of(variations, i, mode))
        scores["hashes"] = seed.seed_hashes(v)
        out.append(scores)
    return out


def run_ours(
    original: Image.Image, variations: list[Image.Image], mode: str, parallel: bool
) -> list[dict]:
    pool = metrics.helper_pool() if parallel else None
    og = metrics.GreyImage.from_image(original)
    greys = [metrics.GreyImage(metrics.to_grey(v)) for v in variations]
    out, hashes = [], []
    if mode == "previous":
        for i, (v, g) in enumerate(zip(variations, greys)):
            # the helper thread hashes and scores the single-image metrics while this one
            # computes the SSIM pairs
            hashes.append(pool.submit(compute_hashes, g) if pool else compute_hashes(g))
            s = metrics.score_variation(og, v, variation_grey=g, accepted=greys[:i],
                                        parallel=parallel)
            out.append(s.as_dict())
    else:
        def single(i):
            g = greys[i]
            return compute_hashes(g), metrics.aesthetic(variations[i], grey=g.pixels), \
                metrics.object_integrity(g.pixels)

        singles = [pool.submit(single, i) for i in range(len(greys))] if pool else None
        pair = {}
        for i in range(len(greys)):
            for j in range(i + 1, len(greys)):  # SSIM is symmetric: each pair once
                pair[i, j] = pair[j, i] = metrics.ssim(greys[i], greys[j])
        for i, g in enumerate(greys):
            sim = metrics.ssim(og, g)
            div = statistics.fmean(1.0 - pair[i, j] for j in range(len(greys)) if j != i)
            h, aes, integrity = singles[i].result() if singles else single(i)
            hashes.append(h)
            overall = metrics.overall_quality(similarity=sim, diversity=div,
                                              aesthetic=aes.total, object_integrity=integrity)
            out.append(metrics.VariationScores(sim, div, aes, integrity, overall).as_dict())
    for i, h in enumerate(hashes):
        h = h.result() if hasattr(h, "result") else h
        out[i]["hashes"] = (h.ahash, h.phash, h.dhash)
    return out


def run_calibrated(original: Image.Image, variations: list[Image.Image], mode: str) -> list:
    of = calibrated.ImageFeatures.from_image(original)
    feats = [calibrated.ImageFeatures.from_image(v) for v in variations]
    return [calibrated.score_calibrated(of, v, variation_features=feats[i],
                                        accepted=others_of(feats, i, mode))
            for i, v in enumerate(variations)]


def check_agree(a: list[dict], b: list[dict], where: str) -> float:
    worst = 0.0
    for sa, sb in zip(a, b):
        for key, va in sa.items():
            vb = sb[key]
            if key == "hashes":
                if va != vb:
                    raise SystemExit(f"{where}: hashes differ: seed {va} ours {vb}")
                continue
            if va is None or vb is None:
                if va is not vb:
                    raise SystemExit(f"{where}: {key} seed {va} ours {vb}")
                continue
            tol = 1e-4 if key in ("similarity", "diversity") else 1e-6
            if abs(va - vb) > tol:
                raise SystemExit(f"{where}: {key} differs: seed {va} ours {vb}")
            worst = max(worst, abs(va - vb))
    return worst


def new_parts_cost(cases) -> tuple[float, float, float]:
    """ms per variation of the parts added for issue 22 (directional detail, local patches, detail
    in place: ``_local_parts``; impulses: ``_impulses``; colour noise: ``_colour_noise``), timed
    alone on the same pairs."""
    t_local = t_imp = t_col = 0.0
    n = 0
    for _, original, variations in cases:
        of = calibrated.ImageFeatures.from_image(original)
        for v in variations:
            vf = calibrated.ImageFeatures.from_image(v)
            al = calibrated._align(of, vf)
            inner = calibrated._integrity_parts(of, al)[3]
            t0 = time.perf_counter()
            calibrated._local_parts(of, vf, al, inner)
            t1 = time.perf_counter()
            rgb = calibrated._shrink(np.asarray(v.convert("RGB")), calibrated.NOISE_SIDE)
            grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            t2 = time.perf_counter()
            calibrated._impulses(grey)
            t3 = time.perf_counter()
            calibrated._colour_noise(rgb)
            t4 = time.perf_counter()
            t_local += t1 - t0
            t_imp += t3 - t2
            t_col += t4 - t3
            n += 1
    return t_local / n * 1000, t_imp / n * 1000, t_col / n * 1000


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--diversity", nargs="+", default=["previous", "others"],
                    choices=["previous", "others"])
    args = ap.parse_args()
    try:
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    print(f"{os.cpu_count()} CPUs (load average {load}); OpenCV threads {cv2.getNumThreads()}; "
          f"{len(SAMPLE_FILES)} photos x {VARIATIONS} variations; {args.rounds} rounds; "
          "ms per variation, median [best round]\n")
    print(f"{'size':>5} {'diversity':>9} {'seed':>16} {'ours':>14} {'ratio':>13} "
          f"{'ours, 1 thread':>15} {'ratio':>13} {'max |diff|':>10} {'calibrated':>14} {'ratio':>13}")
    for size in args.sizes:
        cases = []
        for i, name in enumerate(SAMPLE_FILES):
            original = load_photo(name, size)
            cases.append((name, original, make_variations(original, i)))
        for mode in args.diversity:
            worst = 0.0
            for name, original, variations in cases:  # agreement first (also warms up)
                ref = run_seed(original, variations, mode)
                run_calibrated(original, variations, mode)  # warms it up too
                for parallel in (True, False):
                    worst = max(worst, check_agree(ref, run_ours(original, variations, mode, parallel),
                                                   f"{name}@{size}/{mode}"))
            rounds = {"seed": [], "ours": [], "serial": [], "cal": []}
            n = len(cases) * VARIATIONS
            for _ in range(args.rounds):
                t = {"seed": 0.0, "ours": 0.0, "serial": 0.0, "cal": 0.0}
                for _, original, variations in cases:
                    t["seed"] += timed(run_seed, original, variations, mode)
                    t["ours"] += timed(run_ours, original, variations, mode, True)
                    t["serial"] += timed(run_ours, original, variations, mode, False)
                    t["cal"] += timed(run_calibrated, original, variations, mode)
                for k in t:
                    rounds[k].append(t[k] / n * 1000)
            med = {k: statistics.median(v) for k, v in rounds.items()}
            best = {k: min(v) for k, v in rounds.items()}
            print(f"{size:>5} {mode:>9} {med['seed']:>7.1f} [{best['seed']:>6.1f}] "
                  f"{med['ours']:>5.1f} [{best['ours']:>5.1f}] "
                  f"{med['seed'] / med['ours']:>5.1f}x [{best['seed'] / best['ours']:>4.1f}x] "
                  f"{med['serial']:>6.1f} [{best['serial']:>5.1f}] "
                  f"{med['seed'] / med['serial']:>5.1f}x [{best['seed'] / best['serial']:>4.1f}x] "
                  f"{worst:>10.1e} "
                  f"{med['cal']:>5.1f} [{best['cal']:>5.1f}] "
                  f"{med['seed'] / med['cal']:>5.1f}x [{best['seed'] / best['cal']:>4.1f}x]")
        local_ms, imp_ms, col_ms = new_parts_cost(cases)
        print(f"{size:>5} of calibrated's time, the parts of issue 22: directional detail + local "
              f"patches + detail in place {local_ms:.1f} ms, impulse noise {imp_ms:.1f} ms, colour noise "
              f"{col_ms:.1f} ms per variation")


if __name__ == "__main__":
    main()
