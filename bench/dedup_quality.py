"""Near-duplicate detection quality: varflow's detector against imagededup's PHash, same images.

Evaluation set (scikit-image's bundled files only, nothing downloaded):

* bases: 22 photos and pictures (astronaut, camera, cell, chelsea, coffee, coins, hubble, retina,
  rocket, text, page, ...), including the motorcycle stereo pair (two different photos of one
  scene); 12 texture tiles (4 non-overlapping 256 px tiles each of brick, grass and gravel: the
  same texture, different pixels); 12 faces from the LFW subset (aligned grey faces, upscaled to
  100 px): different pictures that look alike;
* each base also as 8 transformed copies: resize to 50%, JPEG quality 40, a 4% crop (2% off
  every side), a 2-degree rotation, brightness +20%, Gaussian noise (sigma 8), Gaussian blur
  (sigma 1.5) and an upscale to 150%.

Every pair of files is labelled: a duplicate when both come from the same base (including two
transformed copies of it), not one otherwise. Precision and recall are over pairs.

* varflow: ``varflow.duplicates.dedup`` semantics (a pair is a duplicate when one of the three hashes is
  within ``max_hamming`` bits and the confirmation SSIM exceeds ``ssim_threshold``) with the
  ``DedupSettings`` defaults, pair by pair; and ``varflow.reports.inspect.find_duplicate_groups`` (the
  index + SSIM + union-find that ``varflow dedup`` runs), counting every pair inside a group;
* imagededup: ``PHash().find_duplicates(image_dir=...)`` with its defaults (Hamming <= 10).

Then a sweep shows where the defaults come from, and a held-out set of harsher edits (8% crop,
4-degree rotation, JPEG 20, noise sigma 15, brightness +40%, 3% shift) shows how far the
detector reaches beyond what it was tuned on.

Copies through geometry (``varflow.duplicates.copies``, what `varflow dedup` runs now; ``--copies-only``
runs this part alone): the 22 photos are split in two (A: every other one, with the stereo
pair; B: the rest; the texture tiles and faces join both as look-alikes), each photo gets one
copy of every edit of bench/copyset.py (crop to 60-80% of the area, mirror, border, letterbox,
rotation by 3-15 degrees; JPEG, resize, colour, caption, noise, blur). The keypoint route's
two thresholds (RANSAC inliers, overlap correlation) are swept on split A, the loosest pair
with precision >= 0.99 is chosen there, and split B is reported with it, beside the module's
defaults, the older `varflow dedup` and imagededup's PHash; then the same on a procedural set
(distinct generated pictures with the same edits).

    .venv/bin/python bench/dedup_quality.py [--keep DIR] [--copies-only]
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from varflow.duplicates.dedup import appearance_signature, confirmation_ssim, same_appearance  # noqa: E402
from varflow.duplicates.hashindex import popcount64  # noqa: E402
from varflow.duplicates.hashing import compute_hashes  # noqa: E402
from varflow.images.imageio import load_rgb  # noqa: E402
from varflow.images.samples import sample_dir  # noqa: E402
from varflow.quality.metrics import GreyImage, to_grey  # noqa: E402
from varflow.reports.inspect import find_duplicate_groups  # noqa: E402
from varflow.settings import COPY_FINDING, DedupSettings  # noqa: E402

PHOTOS = (
    "astronaut.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
    "coins.png", "color.png", "horse.png", "hubble_deep_field.jpg", "ihc.png", "logo.png",
    "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png", "phantom.png",
    "retina.jpg", "rocket.jpg", "text.png", "chessboard_RGB.png", "microaneurysms.png",
)
TEXTURES = ("brick.png", "grass.png", "gravel.png")
FACES = tuple(range(0, 120, 10))
TRANSFORMS = ("resize50", "jpeg40", "crop4", "rot2", "bright", "noise", "blur", "upscale")
HELD_OUT = ("crop8", "rot4", "jpeg20", "noise15", "bright40", "shift3")


def bases() -> dict[str, Image.Image]:
    out = {}
    for name in PHOTOS:
        out[Path(name).stem] = load_rgb(sample_dir() / name)
    for name in TEXTURES:
        im = load_rgb(sample_dir() / name)
        for i, (x, y) in enumerate([(0, 0), (256, 0), (0, 256), (256, 256)]):
            out[f"{Path(name).stem}-tile{i}"] = im.crop((x, y, x + 256, y + 256))
    faces = np.load(sample_dir() / "lfw_subset.npy")
    for i in FACES:
        face = (faces[i] * 255).round().astype(np.uint8)
        big = cv2.resize(face, (100, 100), interpolation=cv2.INTER_CUBIC)
        out[f"face{i:03d}"] = Image.fromarray(big).convert("RGB")
    return out


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _crop(im: Image.Image, frac: float) -> Image.Image:
    w, h = im.size
    dx, dy = round(w * frac), round(h * frac)
    return im.crop((dx, dy, w - dx, h - dy))


def _noise(im: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    a = np.asarray(im).astype(np.float32)
    return Image.fromarray(np.clip(a + rng.normal(0, sigma, a.shape), 0, 255).astype(np.uint8))


def transform(im: Image.Image, name: str, rng: np.random.Generator) -> Image.Image:
    w, h = im.size
    lanczos, bicubic = Image.Resampling.LANCZOS, Image.Resampling.BICUBIC
    return {
        "resize50": lambda: im.resize((max(7, w // 2), max(7, h // 2)), lanczos),
        "jpeg40": lambda: _jpeg(im, 40),
        "crop4": lambda: _crop(im, 0.02),
        "rot2": lambda: im.rotate(2, resample=bicubic),
        "bright": lambda: ImageEnhance.Brightness(im).enhance(1.2),
        "noise": lambda: _noise(im, 8, rng),
        "blur": lambda: Image.fromarray(cv2.GaussianBlur(np.asarray(im), (0, 0), 1.5)),
        "upscale": lambda: im.resize((round(w * 1.5), round(h * 1.5)), lanczos),
        "crop8": lambda: _crop(im, 0.04),
        "rot4": lambda: im.rotate(4, resample=bicubic),
        "jpeg20": lambda: _jpeg(im, 20),
        "noise15": lambda: _noise(im, 15, rng),
        "bright40": lambda: ImageEnhance.Brightness(im).enhance(1.4),
        "shift3": lambda: im.crop((round(w * 0.03), 0, w, h)),
    }[name]()


def build_set(folder: Path, names: tuple[str, ...], seed: int) -> list[tuple[str, str, str]]:
    """Write every base and its transformed copies; (path, base, transform) per file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = []
    for base, im in bases().items():
        path = folder / f"{base}__orig.png"
        im.save(path)
        items.append((str(path), base, "orig"))
        for t in names:
            path = folder / f"{base}__{t}.png"
            transform(im, t, rng).save(path)
            items.append((str(path), base, t))
    return items


class Features:
    """Hashes (as uint64) and full-size grey of every file."""

    def __init__(self, items):
        self.items = items
        rgbs = [load_rgb(p) for p, _, _ in items]
        self.greys = [GreyImage(to_grey(rgb)) for rgb in rgbs]
        self.looks = [appearance_signature(rgb) for rgb in rgbs]
        hs = [compute_hashes(g) for g in self.greys]
        self.hashes = np.array([[int(x, 16) for x in (h.ahash, h.phash, h.dhash)] for h in hs],
                               dtype=np.uint64)
        n = len(items)
        self.i, self.j = np.triu_indices(n, 1)
        self.dist = np.stack(
            [popcount64(self.hashes[self.i, k] ^ self.hashes[self.j, k]).astype(np.int64)
             for k in range(3)], axis=1)
        self.min_dist = self.dist.min(axis=1)
        bases_ = np.array([b for _, b, _ in items])
        self.same = bases_[self.i] == bases_[self.j]

    def confirm(self, pairs: np.ndarray, settings: DedupSettings) -> np.ndarray:
        return np.array([confirmation_ssim(self.greys[self.i[k]], self.greys[self.j[k]], settings)
                         for k in pairs])


def prf(pred: np.ndarray, same: np.ndarray) -> tuple[int, int, int, float, float]:
    tp = int((pred & same).sum())
    fp = int((pred & ~same).sum())
    fn = int((~pred & same).sum())
    return tp, fp, fn, tp / max(tp + fp, 1), tp / max(tp + fn, 1)


def varflow_pairs(f: Features, settings: DedupSettings) -> np.ndarray:
    """find_duplicate's rule pair by pair: hash shortlist, thumbnail SSIM, then the appearance."""
    pred = np.zeros(len(f.i), dtype=bool)
    cand = np.flatnonzero(f.min_dist <= settings.max_hamming)
    pred[cand] = f.confirm(cand, settings) > settings.ssim_threshold
    for k in np.flatnonzero(pred):
        a, b = f.i[k], f.j[k]
        pred[k] = same_appearance(f.greys[a], f.greys[b], f.looks[a], f.looks[b], settings)
    return pred


def group_pairs(f: Features, groups: list[list[str]]) -> np.ndarray:
    where = {p: g for g, members in enumerate(groups) for p in members}
    gi = np.array([where.get(p, -1 - k) for k, (p, _, _) in enumerate(f.items)])
    return gi[f.i] == gi[f.j]


def _phash_linked(names: list[str], folder: Path, *, stub_torch: bool = False) -> set[tuple[int, int]] | None:
    """imagededup's PHash over ``folder``: the index pairs (into ``names``, file names) it calls duplicates;
    None when imagededup is not installed (a comparison, not a varflow dependency)."""
    try:
        if stub_torch:
            from dedup_scale import _stub_torch_modules

            _stub_torch_modules()
        from imagededup.methods import PHash
    except ImportError as exc:
        print(f"imagededup comparison skipped ({exc}): pip install imagededup to run it")
        return None
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("imagededup"):
            logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dups = PHash(verbose=False).find_duplicates(image_dir=str(folder))
    index = {name: k for k, name in enumerate(names)}
    return {(min(index[a], index[b]), max(index[a], index[b])) for a, others in dups.items() for b in others}


def imagededup_pairs(f: Features, folder: Path) -> np.ndarray:
    linked = _phash_linked([Path(p).name for p, _, _ in f.items], folder)
    if linked is None:
        return None
    return np.array([(int(a), int(b)) in linked for a, b in zip(f.i, f.j)])


def per_transform_recall(f: Features, pred: np.ndarray) -> dict[str, float]:
    kinds = np.array([t for _, _, t in f.items])
    out = {}
    for t in sorted(set(kinds) - {"orig"}):
        sel = f.same & (((kinds[f.i] == "orig") & (kinds[f.j] == t)) |
                        ((kinds[f.j] == "orig") & (kinds[f.i] == t)))
        out[t] = float(pred[sel].mean())
    return out


def sweep(f: Features, defaults: DedupSettings) -> None:
    pos = f.same
    print(f"\nhash shortlist: positives' smallest of the three distances reaches "
          f"{int(f.min_dist[pos].max())} bits (99th percentile {np.percentile(f.min_dist[pos], 99):.0f}); "
          f"different images come as close as {int(f.min_dist[~pos].min())} bits")
    print(f"\nconfirmation SSIM of positives vs look-alike negatives (hash within "
          f"{defaults.max_hamming} bits), by the size both images are averaged down to:")
    print(f"{'size':>6} {'pos min':>8} {'pos 1%':>7} {'neg max':>8} {'gap':>7}  best threshold")
    cand = np.flatnonzero(pos | (f.min_dist <= defaults.max_hamming))
    for size in (16, 20, 24, 32, 48, 64):
        s = np.full(len(f.i), -1.0)
        s[cand] = f.confirm(cand, DedupSettings(defaults.max_hamming, 0.0, size))
        pmin, p1 = s[pos].min(), np.percentile(s[pos], 1)
        negs = s[~pos & (f.min_dist <= defaults.max_hamming)]
        nmax = negs.max() if negs.size else -1.0
        mid = (pmin + nmax) / 2 if pmin > nmax else float("nan")
        mark = "  <- default" if size == defaults.ssim_size else ""
        print(f"{size:>6} {pmin:>8.3f} {p1:>7.3f} {nmax:>8.3f} {pmin - nmax:>7.3f}  "
              f"{f'{mid:.2f} (midpoint)' if mid == mid else 'none separates':<18}{mark}")
    full = f.confirm(np.flatnonzero(pos), DedupSettings(defaults.max_hamming, 0.0, 0))
    print(f"  full size, the seed's way (second image resized to the first): positives' SSIM "
          f"goes down to {full.min():.3f}; {np.mean(full > 0.95):.0%} of them pass the seed's 0.95")


def held_out(folder: Path, settings: DedupSettings) -> None:
    items = build_set(folder, HELD_OUT, seed=1)
    f = Features(items)
    ours = varflow_pairs(f, settings)
    theirs = imagededup_pairs(f, folder)
    if theirs is None:
        theirs = np.zeros(len(f.i), dtype=bool)  # not run: its column reads 0 (said above)
    r_ours, r_theirs = per_transform_recall(f, ours), per_transform_recall(f, theirs)
    print("\nheld-out harsher edits (not used to choose the defaults): recall against the original")
    print(f"{'edit':>10} {'varflow':>8} {'imagededup':>11}")
    for t in HELD_OUT:
        print(f"{t:>10} {r_ours[t]:>8.3f} {r_theirs[t]:>11.3f}")
    _, fp_o, _, p_o, _ = prf(ours, f.same)
    _, fp_t, _, p_t, _ = prf(theirs, f.same)
    print(f"{'precision':>10} {p_o:>8.4f} {p_t:>11.4f}   (false pairs: {fp_o} / {fp_t})")


# --- copies through geometry (varflow.duplicates.copies) -------------------------------------------------

SPLIT_A = PHOTOS[0::2] + ("motorcycle_left.png",)  # the stereo pair together, in A
SPLIT_B = tuple(p for p in PHOTOS if p not in SPLIT_A)


def build_copy_set(folder: Path, photos: tuple[str, ...], seed: int, procedural_n: int = 0):
    """(path, base, kind): originals, one copy per edit, look-alike distractors (kind 'other')."""
    from copyset import KINDS, copy_of, procedural

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    all_bases = bases()
    chosen = {Path(p).stem: all_bases[Path(p).stem] for p in photos}
    if procedural_n:
        chosen = {f"proc{k:03d}": procedural(np.random.default_rng(seed * 1000 + k)) for k in range(procedural_n)}
        if (folder / f"proc{procedural_n - 1:03d}__{KINDS[-1]}.png").exists():
            chosen = {name: None for name in chosen}  # kept from an earlier run: nothing to draw
    items = []
    for base, im in chosen.items():  # a kept folder (--keep) is reused: names carry the labels
        if not (folder / f"{base}__orig.png").exists():
            im.save(folder / f"{base}__orig.png")
        items.append((str(folder / f"{base}__orig.png"), base, "orig"))
        for kind in KINDS:
            if not (folder / f"{base}__{kind}.png").exists():
                copy_of(im, kind, rng).save(folder / f"{base}__{kind}.png")
            items.append((str(folder / f"{base}__{kind}.png"), base, kind))
    if not procedural_n:  # look-alikes: texture tiles and faces (different pictures of one kind)
        for base, im in all_bases.items():
            if "-tile" in base or base.startswith("face"):
                im.save(folder / f"{base}__other.png")
                items.append((str(folder / f"{base}__other.png"), base, "other"))
    return items


def _group_pairs(n: int, links) -> set[tuple[int, int]]:
    from varflow.duplicates.copies import UnionFind

    uf = UnionFind(n)
    for link in links:
        uf.union(link.a, link.b)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    return {(a, b) for g in members.values() for k, a in enumerate(g) for b in g[k + 1:]}


def copy_scores(items, pairs: set[tuple[int, int]]):
    """Per edit: (original-copy pairs found, of); overall (found, of, true pairs, false pairs)."""
    from copyset import KINDS

    base = [b for _, b, _ in items]
    orig = {b: i for i, (_, b, k) in enumerate(items) if k == "orig"}
    per = {}
    for kind in KINDS:
        want = [tuple(sorted((orig[b], i))) for i, (_, b, k) in enumerate(items) if k == kind]
        per[kind] = (sum(w in pairs for w in want), len(want))
    tp = sum(base[a] == base[b] for a, b in pairs)
    return per, tp, len(pairs) - tp


def links_with(feats, spill, inliers: int, ncc: float):
    import varflow.duplicates.copies as C

    saved = C.MIN_INLIERS, C.MIN_NCC
    C.MIN_INLIERS, C.MIN_NCC = inliers, ncc
    try:
        return C.link_features(feats, spill)
    finally:
        C.MIN_INLIERS, C.MIN_NCC = saved


def copies_section(root: Path) -> None:
    from copyset import KINDS

    import varflow.duplicates.copies as C

    print("\n== copies through geometry (varflow.duplicates.copies, what `varflow dedup` runs) ==")
    sets = {
        "A (photos)": build_copy_set(root / "copies-A", SPLIT_A, seed=11),
        "B (photos)": build_copy_set(root / "copies-B", SPLIT_B, seed=12),
        "procedural": build_copy_set(root / "copies-P", (), seed=13, procedural_n=40),
    }
    extracted = {}
    for name, items in sets.items():
        feats, spill = C.extract_all([p for p, _, _ in items], 2, C.LoadLimits(), None)
        extracted[name] = (feats, spill)
        n_orig = sum(k == "orig" for _, _, k in items)
        n_other = sum(k == "other" for _, _, k in items)
        print(f"split {name}: {n_orig} pictures x {len(KINDS)} edits = {len(items) - n_orig - n_other} copies, "
              f"+ {n_other} look-alikes (texture tiles, faces)" if n_other else
              f"split {name}: {n_orig} pictures x {len(KINDS)} edits = {len(items) - n_orig} copies")
    print(f"\nchoosing the keypoint route's thresholds on split A (defaults: inliers >= {C.MIN_INLIERS}, "
          f"correlation >= {C.MIN_NCC}):")
    print(f"{'inliers':>8} {'corr':>6} {'found':>10} {'false':>6} {'precision':>9}")
    items = sets["A (photos)"]
    best = None
    for inl in (6, 8, 10, 14, 20):
        for ncc in (0.95, 0.9, 0.85, 0.8, 0.7):  # on a tie, the stricter correlation (a wider margin) wins
            per, tp, fp = copy_scores(items, _group_pairs(len(items), links_with(*extracted["A (photos)"], inl, ncc)))
            found = sum(f for f, _ in per.values())
            total = sum(t for _, t in per.values())
            prec = tp / max(tp + fp, 1)
            print(f"{inl:>8} {ncc:>6.2f} {found:>4}/{total:<5} {fp:>6} {prec:>9.4f}")
            if prec >= 0.99 and (best is None or found > best[0]):
                best = (found, inl, ncc)
    chosen = (best[1], best[2]) if best else (C.MIN_INLIERS, C.MIN_NCC)
    print(f"chosen on A: inliers >= {chosen[0]}, correlation >= {chosen[1]} (the most pairs at precision >= 0.99; "
          "on a tie the fewer inliers and the higher correlation)")

    old = {}
    ph = {}
    for name, items in sets.items():
        paths = [p for p, _, _ in items]
        groups = find_duplicate_groups(paths, settings=COPY_FINDING)
        where = {p: g for g, members in enumerate(groups) for p in members}
        idx = {p: i for i, p in enumerate(paths)}
        old[name] = {(idx[a], idx[b]) for a in paths for b in paths if idx[a] < idx[b] and a in where
                     and where.get(b) == where[a]}
        ph[name] = _phash_pairs(paths, Path(paths[0]).parent)

    for name, items in sets.items():
        results = {
            "copies.py (chosen on A)": _group_pairs(len(items), links_with(*extracted[name], *chosen)),
            "copies.py (defaults)": _group_pairs(len(items), links_with(*extracted[name], C.MIN_INLIERS, C.MIN_NCC)),
            "older varflow dedup": old[name],
            **({"imagededup PHash": ph[name]} if ph[name] is not None else {}),
        }
        role = "the split thresholds were chosen on" if name.startswith("A") else "held out: not used to choose"
        n_orig = sum(k == "orig" for _, _, k in items)
        print(f"\nsplit {name} ({n_orig} pictures; {role}): original-copy pairs found per edit, "
              "and precision over every linked pair")
        print(f"{'edit':<10}" + "".join(f"{m:>26}" for m in results))
        scored = {m: copy_scores(items, pairs) for m, pairs in results.items()}
        for kind in KINDS:
            print(f"{kind:<10}" + "".join(f"{scored[m][0][kind][0]:>22}/{scored[m][0][kind][1]:<3}" for m in results))
        def tot(m, scored=scored):
            return sum(f for f, _ in scored[m][0].values()), sum(t for _, t in scored[m][0].values())

        print(f"{'all':<10}" + "".join(f"{tot(m)[0]:>18}/{tot(m)[1]:<3} {tot(m)[0] / tot(m)[1]:>4.0%}"
                                       for m in results))
        print(f"{'precision':<10}" + "".join(
            f"{scored[m][1] / max(scored[m][1] + scored[m][2], 1):>18.4f} ({scored[m][2]} false)"[-26:].rjust(26)
            for m in results))
    for _feats, spill in extracted.values():
        spill.close()


def _phash_pairs(paths, folder: Path):
    linked = _phash_linked([Path(p).name for p in paths], folder, stub_torch=True)
    if linked is None:
        return None
    return _group_pairs(len(paths), [type("L", (), {"a": a, "b": b})() for a, b in linked])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=Path, help="write the evaluation set here and keep it")
    ap.add_argument("--no-held-out", action="store_true")
    ap.add_argument("--copies-only", action="store_true", help="only the copies-through-geometry part")
    args = ap.parse_args()
    settings = COPY_FINDING  # what varflow dedup ran before varflow.duplicates.copies
    if args.copies_only:
        with tempfile.TemporaryDirectory() as tmp:
            copies_section(args.keep or Path(tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        folder = root / "dedup-eval"
        t0 = time.perf_counter()
        items = build_set(folder, TRANSFORMS, seed=0)
        f = Features(items)
        n_pos = int(f.same.sum())
        print(f"{len(items)} images ({len(items) // 9} bases x 9), {len(f.i):,} pairs, "
              f"{n_pos:,} duplicate pairs; built in {time.perf_counter() - t0:.1f} s")
        print(f"varflow defaults: {settings}\n")

        t0 = time.perf_counter()
        ours = varflow_pairs(f, settings)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        groups = find_duplicate_groups([p for p, _, _ in items], settings=settings)
        t_groups = time.perf_counter() - t0
        grouped = group_pairs(f, groups)
        t0 = time.perf_counter()
        theirs = imagededup_pairs(f, folder)
        t_theirs = time.perf_counter() - t0

        print(f"{'detector':<44} {'TP':>5} {'FP':>4} {'FN':>4} {'precision':>9} {'recall':>7}")
        for name, pred in (
            ("varflow (hash shortlist + SSIM), pairwise", ours),
            ("varflow dedup groups (index + union-find)", grouped),
            *((("imagededup PHash, defaults (Hamming <= 10)", theirs),) if theirs is not None else ()),
        ):
            tp, fp, fn, p, r = prf(pred, f.same)
            print(f"{name:<44} {tp:>5} {fp:>4} {fn:>4} {p:>9.4f} {r:>7.4f}")
        run = varflow_pairs(f, DedupSettings())
        tp, fp, fn, p, r = prf(run, f.same)
        print(f"{'a run (variations: colours and places too)':<44} {tp:>5} {fp:>4} {fn:>4} {p:>9.4f} {r:>7.4f}"
              "   <- copies that differ in colour or in one place count as other variations")
        print(f"(pairwise {t_ours:.1f} s incl. SSIM on the shortlist; find_duplicate_groups "
              f"{t_groups:.1f} s from files; imagededup {t_theirs:.1f} s from files)")

        r_ours = per_transform_recall(f, ours)
        r_theirs = per_transform_recall(f, theirs) if theirs is not None else {t: float("nan") for t in r_ours}
        print("\nrecall of each edit against its original")
        print(f"{'edit':>10} {'varflow':>8} {'imagededup':>11}")
        for t in TRANSFORMS:
            print(f"{t:>10} {r_ours[t]:>8.3f} {r_theirs[t]:>11.3f}")

        sweep(f, settings)
        if not args.no_held_out:
            held_out(root / "dedup-held-out", settings)
        copies_section(root)


if __name__ == "__main__":
    main()
