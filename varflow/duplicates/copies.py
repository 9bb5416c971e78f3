"""Copies of one picture among many files, through crops, mirrors, borders and rotations.

``varflow dedup`` and a run's input scan ask whether two files are the same picture. The older
rule (``varflow.reports.inspect.find_duplicate_groups``: grey hashes shortlist, SSIM of 20 px thumbnails
confirms) finds re-encodings, rescalings, colour changes, overlays, noise and blur, but not a
mirror (pHash moves ~31 bits), nor a crop, border or rotation that moves the content by more
than a few percent. Here each image gives, from one reduced decode (``FEATURE_SIDE`` px):

* content hashes (pHash and dHash of a 32 px thumbnail) of the image with uniform borders
  trimmed (letterboxing, frames) and of its mirror; a pair within ``MAX_HAMMING`` bits on
  either is confirmed by SSIM of 20 px content thumbnails, as before (whole frames are never
  compared: two photos letterboxed alike would look alike);
* up to ``KEYPOINTS`` SIFT keypoints (RootSIFT descriptors, kept as uint8 in a spill file, so
  memory holds only their visual words). Visual words (product-quantised: k-means centres per
  slice of the descriptor, trained on a sample of the folder's own descriptors) index the
  images; each image's nearest ``SHORTLIST`` images by tf-idf cosine, of its words and of its
  mirrored descriptors' words, are candidates, verified by matching descriptors (ratio test)
  and fitting a similarity transform with RANSAC: enough inliers, a plausible scale, a rotation
  within ``MAX_ROTATION``, and the overlap, warped into one frame, must agree pixel by pixel
  (normalised cross-correlation), so a shared texture or shared letters do not make two
  pictures one.

Every stage runs in ``workers`` threads of the calling process: decoding and features, visual
words, the shortlist and the verification (Pillow, OpenCV, numpy's BLAS and scipy's sparse products
release the GIL; a spawn pool re-imported an unguarded script's ``__main__`` and broke, and an
OOM-killed worker took the pool with it). BLAS is held to one thread meanwhile: its own threads
spin on a busy machine (a 160 x 160 match took 20x its CPU time in wall time under load).
A folder of at most ``ALL_PAIRS`` images verifies every pair: there, idf cannot tell a shared word
from a common one (with two images, every shared word has idf 0).
Numbers: bench/dedup_quality.py (accuracy per transform, thresholds chosen on one split of photos
and reported on the other) and bench/dedup_scale.py (time and memory).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from varflow.duplicates.hashindex import HashIndex
from varflow.images.imageio import ImageReadError, load_small_grey
from varflow.settings import LoadLimits

FEATURE_SIDE = 128  # long side of the grey image every feature is taken from
KEYPOINTS = 100  # strongest SIFT keypoints kept per image (split A: 160 128 100 80 found 128 127 129 128 of 132)
SIFT_CONTRAST = 0.02  # half OpenCV's default: low-contrast photos (cells, fundus) still get keypoints
SIFT_LAYERS = 3  # OpenCV's default layers per octave
SIFT_SIGMA = 1.6  # OpenCV's default base blur
THUMB = 20  # SSIM thumbnail side (the older rule's 20 px)
MAX_HAMMING = 12  # global hash shortlist radius (bits of 64)
SSIM_MIN = 0.72  # thumbnail SSIM that confirms a global candidate (the older rule's)
SHORTLIST = (3, 1)  # nearest images by visual words verified per image, and per its mirror
MIN_WORD_SCORE = 0.04  # tf-idf cosine below which a word neighbour is not a candidate
RATIO = 0.8  # Lowe's ratio test
MIN_INLIERS = 6  # RANSAC inliers of a similarity transform that make a match (split A, bench/dedup_quality.py)
RANSAC_PX = 2.5  # reprojection threshold at FEATURE_SIDE px
MIN_NCC = 0.9  # correlation of the warped overlap that confirms a match (split A: <= 0.8 lets the stereo pair in)
MAX_ROTATION = 30.0  # degrees: a picture turned further (sideways, upside down) is a deliberate re-orientation
MIN_OVERLAP = 0.35  # share of the smaller image the overlap must cover
BORDER_TOLERANCE = 10  # grey levels a uniform border may vary by
VERIFY_BATCH = 512  # candidates verified between two looks at the groups (shared by the workers)
WORD_BLOCK = 256  # images whose descriptors get their words (or whose shortlist is taken) in one step
VOCAB_PARTS = 4  # visual words: a descriptor's 128 dimensions quantised in 4 slices of 32 ...
VOCAB_CENTRES = 32  # ... each the nearest of 32 k-means centres, 32^4 words (split A: 16 24 32: 129 128 129 of 132)
VOCAB_PER_CENTRE = 40  # descriptors sampled per centre to train on (one an image where the folder has enough)
ALL_PAIRS = 16  # a folder this small verifies every pair (both ways round) instead of a word shortlist


@dataclass
class CopyFeatures:
    """What one file contributes: hashes, thumbnails, keypoints (descriptors spilled to disk)."""

    size: tuple[int, int]  # (width, height) of the feature image
    hashes: np.ndarray  # uint64 [2 x 2]: (content, its mirror) x (phash, dhash)
    thumb: np.ndarray  # uint8 [THUMB, THUMB] of the content (borders trimmed)
    points: np.ndarray  # float32 [n, 2] keypoint x, y at FEATURE_SIDE
    descriptors: np.ndarray | None  # uint8 [n, 128] RootSIFT * 255 (None once spilled)
    small: np.ndarray | None = None  # uint8 grey at 64 px long side, for the overlap check


_SIFT = None


def _sift():
    global _SIFT
    if _SIFT is None:
        _SIFT = cv2.SIFT_create(nfeatures=KEYPOINTS, nOctaveLayers=SIFT_LAYERS, contrastThreshold=SIFT_CONTRAST,
                                sigma=SIFT_SIGMA)
    return _SIFT


def keypoints(grey: np.ndarray) -> tuple[list, np.ndarray | None]:
    """SIFT keypoints as OpenCV finds them (on the image doubled), described on the image itself.

    OpenCV's detectAndCompute describes the keypoints of its doubled first octave on the doubled
    image, which holds nothing the image does not, at four times the pixels (most of its time).
    Here each keypoint is described at the layer of its own scale in a pyramid that starts at
    the image; the finest (under SIFT's base blur) at the base layer, over the window their size
    gives."""
    sift = _sift()
    found = sift.detect(grey, None)
    if not found:
        return [], None
    sizes = np.array([k.size for k in found], np.float64)
    x = np.log2(sizes / (2 * SIFT_SIGMA))  # size = 2 sigma 2^(octave + layer / layers)
    octave = np.floor(x).astype(int)
    layer = np.rint((x - octave) * SIFT_LAYERS).astype(int)
    octave, layer = np.where(layer == SIFT_LAYERS, octave + 1, octave), np.where(layer == SIFT_LAYERS, 0, layer)
    fine = octave < 0
    octave, layer = np.where(fine, 0, octave), np.where(fine, 0, layer)
    for k, o, la in zip(found, octave.tolist(), layer.tolist(), strict=True):
        k.octave = (o & 255) | (la << 8)
    return sift.compute(grey, found)


def _dct_hashes(grey: np.ndarray) -> tuple[int, int]:
    """pHash (8 x 8 lowest DCT coefficients of a 32 px thumbnail above their median) and dHash."""
    t32 = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(t32)[:8, :8]
    phash = np.packbits((low > np.median(low)).ravel())
    t98 = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    dhash = np.packbits((t98[:, 1:] > t98[:, :-1]).ravel())
    return int.from_bytes(phash.tobytes(), "big"), int.from_bytes(dhash.tobytes(), "big")


def trim_borders(grey: np.ndarray) -> np.ndarray:
    """The image without uniform rows/columns at its edges (letterboxing, a frame, padding)."""
    h, w = grey.shape
    g = grey.astype(np.int16)

    def uniform(lines: np.ndarray) -> np.ndarray:
        return (lines.max(axis=1) - lines.min(axis=1)) <= BORDER_TOLERANCE

    rows, cols = uniform(g), uniform(g.T)
    top = int(np.argmin(rows)) if not rows.all() else 0
    bottom = h - int(np.argmin(rows[::-1])) if not rows.all() else h
    left = int(np.argmin(cols)) if not cols.all() else 0
    right = w - int(np.argmin(cols[::-1])) if not cols.all() else w
    if bottom - top < h // 4 or right - left < w // 4:
        return grey  # mostly uniform: no content frame to speak of
    return grey[top:bottom, left:right]


def _mirror_permutation() -> np.ndarray:
    """Index permutation taking a SIFT descriptor to its mirror image's (4 x 4 cells x 8 bins:
    rows reversed, orientation bin b to -b mod 8); checked on photos in tests/test_copies.py."""
    idx = np.arange(128).reshape(4, 4, 8)
    return idx[::-1, :, :][..., (-np.arange(8)) % 8].reshape(-1)


MIRROR = _mirror_permutation()


def features_of_grey(grey: np.ndarray) -> CopyFeatures:
    """Every feature of a grey uint8 image (any size: it is reduced to FEATURE_SIDE first)."""
    h, w = grey.shape
    scale = FEATURE_SIDE / max(h, w)
    if scale < 1:
        grey = cv2.resize(grey, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    trimmed = trim_borders(grey)
    hashes = np.array([_dct_hashes(x) for x in (trimmed, trimmed[:, ::-1])], dtype=np.uint64)
    thumb = cv2.resize(trimmed, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    kp, desc = keypoints(grey)
    if desc is None or not kp:
        points, root = np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8)
    else:
        points = np.array([k.pt for k in kp], dtype=np.float32)
        d = desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-6)
        root = np.round(np.sqrt(d) * 255).astype(np.uint8)
    gh, gw = grey.shape
    s = 64 / max(gh, gw)
    small = cv2.resize(grey, (max(4, round(gw * s)), max(4, round(gh * s))), interpolation=cv2.INTER_AREA)
    return CopyFeatures((gw, gh), hashes, thumb, points, root, small)


def features_of_file(path: str, limits: LoadLimits = LoadLimits()) -> CopyFeatures:
    return features_of_grey(load_small_grey(path, limits=limits, max_side=FEATURE_SIDE))


CACHE_KEEP = 20_000  # cached feature files kept (~25 KB each); the least recently used go first
CACHE_VERSION = f"v2-{FEATURE_SIDE}-{KEYPOINTS}-{SIFT_CONTRAST}"  # features change when these do


class FeatureCache:
    """Each image's features by its content (SHA-256, the scan's image_id), as .npz files under
    ``folder``: a nightly run decodes only the new images. Bounded by ``CACHE_KEEP`` files."""

    def __init__(self, folder: Path, ids: dict[str, str]):
        self.folder = Path(folder) / CACHE_VERSION
        self.ids = ids  # path -> image_id

    def _file(self, path: str) -> Path | None:
        image_id = self.ids.get(path)
        return self.folder / image_id[:2] / f"{image_id}.npz" if image_id else None

    def has(self, path: str) -> bool:
        file = self._file(path)
        return file is not None and file.is_file()

    def get(self, path: str) -> CopyFeatures | None:
        file = self._file(path)
        try:
            with np.load(file) as z:
                f = CopyFeatures((int(z["size"][0]), int(z["size"][1])), z["hashes"], z["thumb"], z["points"],
                                 z["descriptors"], z["small"])
            os.utime(file)  # recently used
            return f
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, or a torn file: computed again

    def put(self, path: str, f: CopyFeatures) -> None:
        file = self._file(path)
        if file is None:
            return
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
            with open(tmp, "wb") as out:
                np.savez(out, size=np.array(f.size), hashes=f.hashes, thumb=f.thumb, points=f.points,
                         descriptors=f.descriptors, small=f.small)
            os.replace(tmp, file)
        except OSError:
            pass  # a full disk costs the saving, not the run

    def prune(self, keep: int) -> None:
        try:
            files = sorted(self.folder.glob("*/*.npz"), key=lambda x: x.stat().st_mtime)
            for file in files[:max(0, len(files) - max(keep, CACHE_KEEP))]:
                file.unlink(missing_ok=True)
        except OSError:
            pass


def _worker(args) -> tuple[int, CopyFeatures | None, str | None]:
    i, path, limits, cache = args
    try:
        f = cache.get(path) if cache is not None else None
        if f is None:
            f = features_of_file(path, limits)
            if cache is not None:
                cache.put(path, f)
        return i, f, None
    except ImageReadError as exc:
        return i, None, str(exc)
    except (OSError, ValueError, cv2.error) as exc:  # one odd file never costs the others
        return i, None, f"{path}: cannot be compared ({type(exc).__name__}: {exc}); check the file"


# --- visual words ---------------------------------------------------------------------------

class Vocabulary:
    """Product-quantised visual words over RootSIFT descriptors: each of VOCAB_PARTS slices of a
    descriptor takes the nearest of ``centres`` k-means centres, and its word is the tuple.

    32^4 = 1,048,576 words for 128 distances in 32 dimensions a descriptor, where a two-level
    k-means tree gave 3,600 words for 128 distances in 128: a word's list of images is short, so
    the shortlist's sparse product (its cost is the sum over words of their images squared) is
    cheap, and unrelated pictures rarely share enough words to be shortlisted (bench/dedup_scale.py)."""

    def __init__(self, sample: np.ndarray, centres: int = VOCAB_CENTRES, seed: int = 0,
                 pool: ThreadPoolExecutor | None = None):
        x = sample.astype(np.float32)
        if len(x) > centres * VOCAB_PER_CENTRE:
            x = x[np.random.default_rng(seed).permutation(len(x))[:centres * VOCAB_PER_CENTRE]]
        self.k = int(max(2, min(centres, len(x) // 4)))  # a small sample: fewer centres, 4 descriptors each
        width = x.shape[1] // VOCAB_PARTS
        self.parts = [slice(width * p, width * (p + 1)) for p in range(VOCAB_PARTS)]

        def train(part: slice) -> np.ndarray:
            return _kmeans(np.ascontiguousarray(x[:, part]), self.k, seed)

        self.centres = list(pool.map(train, self.parts) if pool is not None else map(train, self.parts))
        self.size = self.k ** VOCAB_PARTS

    def words(self, desc: np.ndarray) -> np.ndarray:
        x = desc.astype(np.float32)
        out = np.zeros(len(x), np.int64)
        for part, centres in zip(self.parts, self.centres, strict=True):
            out = out * self.k + _nearest(x[:, part], centres)
        return out


def _kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 8, 0.5)
    _, _, centres = cv2.kmeans(x, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return centres


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d = (centres * centres).sum(axis=1)[None, :] - 2.0 * (x @ centres.T)
    return np.argmin(d, axis=1)


# --- verification ---------------------------------------------------------------------------

def ratio_matches(query: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (query, train) of descriptor matches passing Lowe's ratio test, by L2 distance
    (one small matrix product: OpenCV's brute-force matcher cost twice the CPU here)."""
    return ratio_matches_many([(query, train)])[0]


def ratio_matches_many(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``ratio_matches`` of each (query, train) pair, in one stacked product: a call per pair
    cost more in overhead than in arithmetic, and two threads taking turns at small products
    spent more CPU than one."""
    if not pairs:
        return []
    kq, kt = max(len(q) for q, _ in pairs), max(len(t) for _, t in pairs)
    q = np.zeros((len(pairs), max(kq, 1), 128), np.float32)
    t = np.zeros((len(pairs), max(kt, 2), 128), np.float32)
    for b, (qb, tb) in enumerate(pairs):
        q[b, :len(qb)] = qb
        t[b, :len(tb)] = tb
    tn = np.einsum("bij,bij->bi", t, t)  # no squared copy of the batch (a 512-pair batch peaked ~100 MB)
    for b, (_, tb) in enumerate(pairs):
        tn[b, len(tb):] = np.inf  # padding is never anyone's nearest
    d = np.matmul(q, t.transpose(0, 2, 1))  # squared distance less |q|^2, built in place
    d *= -2.0
    d += tn[:, None, :]
    qn = np.einsum("bij,bij->bi", q, q)
    nearest = np.argmin(d, axis=2)  # two argmin passes: argpartition cost 10x on rows this short
    best = np.maximum(np.take_along_axis(d, nearest[:, :, None], axis=2)[:, :, 0] + qn, 0.0)
    np.put_along_axis(d, nearest[:, :, None], np.inf, axis=2)
    second = np.maximum(d.min(axis=2) + qn, 0.0)
    keep = best < (RATIO * RATIO) * second
    out = []
    for b, (qb, tb) in enumerate(pairs):
        if len(tb) < 2:
            out.append((np.zeros(0, np.intp), np.zeros(0, np.intp)))
            continue
        rows = np.flatnonzero(keep[b, :len(qb)])
        out.append((rows, nearest[b, rows]))
    return out


@dataclass(frozen=True)
class LocalMatch:
    inliers: int
    ncc: float
    scale: float
    mirrored: bool


def verify_matches(a: CopyFeatures, b: CopyFeatures, query: np.ndarray, train: np.ndarray,
                   mirrored: bool, overlap: bool = True) -> LocalMatch | None:
    """Whether b (mirrored where asked) shows a's picture under a similarity transform fitted to
    b's keypoints ``query`` matched to a's ``train`` (and, with ``overlap``, whether the two agree
    pixel by pixel where they overlap). Callers pass pictures with MIN_INLIERS keypoints or more
    (fewer cannot judge: the hash route decides for them)."""
    if len(query) < MIN_INLIERS:
        return None
    pb = b.points.copy()
    if mirrored:
        pb[:, 0] = b.size[0] - pb[:, 0]
    src, dst = pb[query], a.points[train]
    model, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                             maxIters=2000, confidence=0.995)
    if model is None:
        return None
    n_in = int(inl.sum())
    scale = float(np.hypot(model[0, 0], model[1, 0]))
    angle = float(np.degrees(np.arctan2(model[1, 0], model[0, 0])))
    if n_in < MIN_INLIERS or not 0.25 <= scale <= 4.0 or abs(angle) > MAX_ROTATION:
        return None
    if not overlap:
        return LocalMatch(n_in, 0.0, scale, mirrored)
    ncc = overlap_ncc(a, b, model, mirrored)
    if ncc is None or ncc < MIN_NCC:
        return None
    return LocalMatch(n_in, ncc, scale, mirrored)


def overlap_ncc(a: CopyFeatures, b: CopyFeatures, model: np.ndarray, mirrored: bool) -> float | None:
    """Correlation of a and b warped into a's frame, over their overlap, at 64 px (None: too little overlap)."""
    sa = a.small.astype(np.float32)
    sb = b.small.astype(np.float32)
    if mirrored:
        sb = sb[:, ::-1]
    fa = sa.shape[1] / a.size[0]
    fb = sb.shape[1] / b.size[0]
    m = model.astype(np.float64).copy()  # b's feature px -> a's feature px; rescale both ends
    m[:, :2] *= fa / fb
    m[:, 2] *= fa
    h, w = sa.shape
    warped = cv2.warpAffine(sb, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=-1.0)
    mask = cv2.warpAffine(np.ones_like(sb), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0.0) > 0.5
    mask = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    area_b = sb.shape[0] * sb.shape[1] * (fa / fb) ** 2
    if mask.sum() < MIN_OVERLAP * min(h * w, area_b) or mask.sum() < 64:
        return None
    x, y = sa[mask], warped[mask]
    x, y = x - x.mean(), y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 1e-6 else None


# --- the whole search -----------------------------------------------------------------------

class _Spill:
    """Descriptors on disk, read back per verified pair: memory holds words, not descriptors."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - held open across calls; close() ends it
        self.where: dict[int, tuple[int, int]] = {}
        self.end = 0

    def put(self, i: int, d: np.ndarray) -> None:
        self.file.seek(self.end)
        self.file.write(np.ascontiguousarray(d, np.uint8).tobytes())
        self.file.flush()  # get() reads with pread, past Python's buffer
        self.where[i] = (self.end, len(d))
        self.end += d.nbytes

    def get(self, i: int) -> np.ndarray:
        off, n = self.where[i]
        return np.frombuffer(os.pread(self.file.fileno(), n * 128, off), np.uint8).reshape(n, 128)

    def close(self) -> None:
        self.file.close()


class Route(StrEnum):
    """How a pair was found and confirmed."""

    HASHES = "hashes"  # content hashes + thumbnail SSIM
    HASHES_MIRROR = "hashes-mirror"  # the same, one side mirrored
    KEYPOINTS = "keypoints"  # visual words + RANSAC similarity + overlap correlation
    KEYPOINTS_MIRROR = "keypoints-mirror"  # the same, one side's descriptors mirrored


@dataclass(frozen=True)
class CopyLink:
    a: int
    b: int
    how: Route
    inliers: int = 0  # keypoints: RANSAC inliers
    ncc: float = 0.0  # keypoints: correlation of the warped overlap


class UnionFind:
    """Groups of indices joined pair by pair; a group's root is its smallest index (its first file)."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def extract_all(paths: Sequence[str], workers: int, limits: LoadLimits, errors: list | None,
                cache: FeatureCache | None = None):
    """Features of every readable path, in order (None where unreadable), spilled as they come."""
    feats: list[CopyFeatures | None] = [None] * len(paths)
    spill = _Spill()
    jobs = [(i, str(p), limits, cache) for i, p in enumerate(paths)]
    if workers > 1 and len(paths) > 8:
        # threads, not processes: no __main__ re-import (an unguarded script works), no worker to lose
        with ThreadPoolExecutor(workers) as pool:
            for i, f, err in pool.map(_worker, jobs):
                _keep(i, f, err, feats, spill, errors, paths)
    else:
        for job in jobs:
            _keep(*_worker(job), feats, spill, errors, paths)
    if cache is not None:
        cache.prune(len(paths))  # never this folder's own
    return feats, spill


def _keep(i, f, err, feats, spill, errors, paths) -> None:
    if f is None:
        if errors is not None:
            errors.append((str(paths[i]), err))
        return
    spill.put(i, f.descriptors)
    f.descriptors = None
    feats[i] = f


def global_links(feats: list[CopyFeatures | None], spill: _Spill | None = None) -> list[CopyLink]:
    """Pairs whose content hashes (plain or mirrored; borders trimmed) are close and whose
    content thumbnails agree (SSIM at THUMB px); where both pictures have keypoints (and
    ``spill`` holds their descriptors), the keypoints must agree too (``verify_matches``): among
    10,000 procedural pictures, 24 pairs of different gradients with a few shapes passed the
    hashes and the 20 px SSIM, and merged groups (precision 0.967). Every hash candidate's SSIM
    is taken in one stack (``ssim_stack``): there were ~60,000 of them among 10,000 pictures."""
    from varflow.quality.metrics import ssim_stack

    ids = [i for i, f in enumerate(feats) if f is not None]
    index = {k: HashIndex() for k in range(2)}  # phash, dhash of the content
    for k in range(2):
        index[k].add(ids, np.array([feats[i].hashes[0, k] for i in ids], np.uint64))
    found: dict[tuple[int, int, bool], list[int]] = {}  # the query images that found the pair
    for mirrored in (False, True):
        for k in range(2):
            rows, keys = index[k].query_many(np.array([feats[i].hashes[int(mirrored), k] for i in ids], np.uint64),
                                             MAX_HAMMING)
            for r, j in zip(rows.tolist(), keys.tolist(), strict=True):
                i = ids[r]
                if j != i and i not in (seen := found.setdefault((min(i, j), max(i, j), mirrored), [])):
                    seen.append(i)
    if not found:
        return []
    # SSIM is unchanged by mirroring both thumbnails, so (i mirrored, j) scores as (j mirrored, i)
    pairs = [(a, b) for a, b, _ in found]
    flip = np.array([m for _, _, m in found], bool)
    first = np.stack([feats[i].thumb for i, _ in pairs])
    first[flip] = first[flip][:, :, ::-1]
    similar = ssim_stack(first, np.stack([feats[j].thumb for _, j in pairs])) > SSIM_MIN
    # the keypoint check is not symmetric: each side that found the pair may confirm it, the
    # second asked only where the first did not
    pending = [(pair, queries) for (pair, queries), ok in zip(found.items(), similar, strict=True) if ok]
    agreed: set[tuple[int, int, bool]] = set()
    for turn in range(2):
        asked = [(pair, queries[turn]) for pair, queries in pending if len(queries) > turn and pair not in agreed]
        checks = [(i, a + b - i, mirrored) for (a, b, mirrored), i in asked]
        agreed.update(pair for (pair, _), ok in zip(asked, _keypoints_agree_many(feats, spill, checks), strict=True)
                      if ok)
    links = []
    done: set[tuple[int, int]] = set()
    for a, b, mirrored in found:
        if (a, b, mirrored) in agreed and (a, b) not in done:
            done.add((a, b))
            links.append(CopyLink(a, b, Route.HASHES_MIRROR if mirrored else Route.HASHES))
    return links


def _keypoints_agree(feats, spill: _Spill | None, i: int, j: int, mirrored: bool) -> bool:
    """Whether i and j's keypoints confirm a hash match: yes when either has too few to judge (a
    nearly featureless photo keeps its hash route), else a similarity transform with MIN_INLIERS
    inliers. Not the overlap correlation: the hashes and SSIM have judged the look, and letterboxed
    copies correlate at 0.73-0.89 (13-83 inliers), while the false hash pairs had at most 4
    ratio-test matches and no transform (bench/dedup_scale.py --n 10000)."""
    return _keypoints_agree_many(feats, spill, [(i, j, mirrored)])[0]


def _keypoints_agree_many(feats, spill: _Spill | None, checks: list[tuple[int, int, bool]]) -> list[bool]:
    """``_keypoints_agree`` of each (i, j, mirrored), matched a batch at a time."""
    out = [True] * len(checks)
    if spill is None:
        return out
    judged = [k for k, (i, j, _) in enumerate(checks) if min(len(feats[i].points), len(feats[j].points)) >= MIN_INLIERS]
    for c0 in range(0, len(judged), VERIFY_BATCH):
        part = judged[c0:c0 + VERIFY_BATCH]
        found = _verify_many(feats, spill, [(checks[k][1], checks[k][0], checks[k][2]) for k in part], overlap=False)
        for k, m in zip(part, found, strict=True):
            out[k] = m is not None
    return out


def _verify_many(feats, spill: _Spill, pairs: Sequence[tuple[int, int, bool]],
                 overlap: bool = True) -> list[LocalMatch | None]:
    """``verify_matches`` of feats[i] and feats[j] for each (i, j, mirrored), their descriptors
    matched in one stacked product (feats[j]'s mirrored where asked)."""
    matches = ratio_matches_many([(spill.get(j)[:, MIRROR] if mirrored else spill.get(j), spill.get(i))
                                  for i, j, mirrored in pairs])
    return [verify_matches(feats[i], feats[j], query, train, mirrored, overlap)
            for (i, j, mirrored), (query, train) in zip(pairs, matches, strict=True)]


def word_candidates(feats, spill: _Spill, groups: UnionFind, pool: ThreadPoolExecutor) -> list[tuple[int, int, bool]]:
    """(i, j, mirrored) pairs to verify: each image's nearest images by tf-idf of visual words,
    among those not already known to be its copies (``groups``)."""
    from scipy import sparse

    ids = [i for i, f in enumerate(feats) if f is not None and len(f.points) >= MIN_INLIERS]
    if len(ids) < 2:
        return []
    if len(ids) <= ALL_PAIRS:
        return [(i, j, m) for i in ids for j in ids if i < j and groups.find(i) != groups.find(j)
                for m in (False, True)]
    rng = np.random.default_rng(0)
    want = VOCAB_CENTRES * VOCAB_PER_CENTRE
    per = -(-want // len(ids))
    sample = np.concatenate([spill.get(i)[rng.permutation(spill.where[i][1])[:per]]
                             for i in sorted(rng.permutation(ids)[:want].tolist())])
    vocab = Vocabulary(sample, pool=pool)
    n, v = len(ids), vocab.size

    def block_words(r0: int) -> tuple[np.ndarray, np.ndarray]:
        """(image, word) keys of WORD_BLOCK images' descriptors, and of their mirrors."""
        block = [spill.get(i) for i in ids[r0:r0 + WORD_BLOCK]]
        d = np.concatenate(block)
        owner = np.repeat(np.arange(r0, r0 + len(block), dtype=np.int64), [len(x) for x in block])
        return np.unique(owner * v + vocab.words(d)), np.unique(owner * v + vocab.words(d[:, MIRROR]))

    keys = list(pool.map(block_words, range(0, n, WORD_BLOCK)))

    def matrix(parts):
        k = np.concatenate(parts)
        return sparse.csr_matrix((np.ones(len(k), np.float32), (k // v, k % v)), shape=(n, v))

    x, xm = matrix([k for k, _ in keys]), matrix([k for _, k in keys])
    df = np.asarray((x > 0).sum(axis=0)).ravel()
    idf = np.log((n + 1) / (df + 1)).astype(np.float32)
    weight = sparse.diags(idf)

    def normalised(m):
        m = m @ weight
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return (sparse.diags(1 / np.maximum(norms, 1e-9)) @ m).tocsr()

    return _shortlist(normalised(x), normalised(xm), ids, groups, pool)


def _nearest_rows(q, xt, r0: int, want: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """For WORD_BLOCK rows of ``q`` from r0: (row, columns, scores) of its 4 x ``want`` best
    columns other than itself, best first (a partial sort: a row is as long as the folder)."""
    s = (q[r0:r0 + WORD_BLOCK] @ xt).toarray()
    out = []
    k = min(4 * want, s.shape[1] - 1)
    for rr in range(s.shape[0]):
        row = s[rr]
        row[r0 + rr] = -1  # not itself
        top = np.argpartition(-row, k)[:k] if k < len(row) else np.arange(len(row))
        top = top[np.argsort(-row[top], kind="stable")]
        out.append((r0 + rr, top, row[top]))
    return out


def _shortlist(x, xm, ids: list[int], groups: UnionFind, pool: ThreadPoolExecutor) -> list[tuple[int, int, bool]]:
    """Each image's nearest images by cosine of its (and its mirror's) normalised word vector,
    above MIN_WORD_SCORE, skipping those already in its group."""
    xt = x.T.tocsr()  # as CSC, scipy converted it again for every block: with 2^20 words, 3x the product
    out: set[tuple[int, int, bool]] = set()
    for mirrored, q, want in ((False, x, SHORTLIST[0]), (True, xm, SHORTLIST[1])):
        blocks = pool.map(lambda r0, q=q, want=want: _nearest_rows(q, xt, r0, want), range(0, len(ids), WORD_BLOCK))
        for rows in blocks:
            for r, cols, scores in rows:
                i, taken = ids[r], 0
                for c, score in zip(cols, scores, strict=True):
                    if score < MIN_WORD_SCORE or taken == want:
                        break
                    j = ids[int(c)]
                    if groups.find(i) == groups.find(j):
                        continue  # already one picture: spend the shortlist on the others
                    taken += 1
                    out.add((min(i, j), max(i, j), mirrored))
    return sorted(out)


class _OpenCVThreads:
    """OpenCV's own thread pool held to one thread while any copy search runs (the setting is the
    process's: the first search in saves it, the last out restores it). Our worker threads share
    the work out; OpenCV's pool beside them cost a quarter more CPU and wall time in SIFT on
    2 cores (bench/dedup_scale.py), as BLAS's spinning threads did in the matching."""

    def __init__(self):
        self.lock = threading.Lock()
        self.inside = 0
        self.saved = 0

    def __enter__(self):
        with self.lock:
            if self.inside == 0:
                self.saved = cv2.getNumThreads()
                cv2.setNumThreads(1)
            self.inside += 1

    def __exit__(self, *exc):
        with self.lock:
            self.inside -= 1
            if self.inside == 0:
                cv2.setNumThreads(self.saved)


_OPENCV_THREADS = _OpenCVThreads()


def _opencv_single_threaded() -> _OpenCVThreads:
    return _OPENCV_THREADS


def find_copy_links(paths: Sequence[str | Path], *, workers: int | None = None, limits: LoadLimits = LoadLimits(),
                    errors: list | None = None, cache: FeatureCache | None = None) -> tuple[list[str], list[CopyLink]]:
    """Every confirmed copy pair among ``paths`` (indexes into the returned readable names)."""
    paths = [str(p) for p in paths]
    workers = workers or min(2, os.cpu_count() or 1)
    with threadpool_limits(1, user_api="blas"), _opencv_single_threaded():
        feats, spill = extract_all(paths, workers, limits, errors, cache)
        try:
            return paths, link_features(feats, spill, workers)
        finally:
            spill.close()


def link_features(feats: list[CopyFeatures | None], spill: _Spill, workers: int = 2) -> list[CopyLink]:
    """The confirmed pairs among extracted features (the module's thresholds as they are now:
    bench/dedup_quality.py sweeps them on features extracted once)."""
    links = global_links(feats, spill)
    groups = UnionFind(len(feats))
    for link in links:
        groups.union(link.a, link.b)

    def verify(batch: list[tuple[int, int, bool]]) -> list[tuple[tuple[int, int, bool], LocalMatch | None]]:
        return list(zip(batch, _verify_many(feats, spill, batch), strict=True))

    # products, RANSAC and warping release the GIL: ``workers`` threads verify a share of each
    # batch side by side; pairs joined through another copy meanwhile are skipped
    with ThreadPoolExecutor(workers) as pool:
        candidates = word_candidates(feats, spill, groups, pool)
        for b0 in range(0, len(candidates), VERIFY_BATCH):
            batch = [c for c in candidates[b0:b0 + VERIFY_BATCH] if groups.find(c[0]) != groups.find(c[1])]
            share = max(1, -(-len(batch) // workers))
            for verified in pool.map(verify, [batch[k:k + share] for k in range(0, len(batch), share)]):
                for (i, j, mirrored), m in verified:
                    if m is not None and groups.find(i) != groups.find(j):
                        groups.union(i, j)
                        links.append(CopyLink(i, j, Route.KEYPOINTS_MIRROR if mirrored else Route.KEYPOINTS,
                                              m.inliers, m.ncc))
    return links


def find_copy_groups(paths: Sequence[str | Path], *, workers: int | None = None,
                     limits: LoadLimits = LoadLimits(), errors: list | None = None) -> list[list[str]]:
    """Groups of copies of one picture among ``paths``, each sorted, groups by first path."""
    names, links = find_copy_links(paths, workers=workers, limits=limits, errors=errors)
    uf = UnionFind(len(names))
    for link in links:
        uf.union(link.a, link.b)
    groups: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        groups.setdefault(uf.find(i), []).append(name)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def copies_in_folder(paths: Sequence[Path], *, limits: LoadLimits = LoadLimits(),
                     done: frozenset[Path] | set[Path] = frozenset(),
                     cache: FeatureCache | None = None) -> dict[Path, Path]:
    """Each input that is a copy of another in ``paths`` -> the input that stands for its group:
    the first one in ``done`` (its variations are already paid for), else the group's first in the
    folder's order. A small folder is read by one thread; a large one by two."""
    workers = 1 if len(paths) <= 64 else min(2, os.cpu_count() or 1)
    names, links = find_copy_links(paths, workers=workers, limits=limits, cache=cache)
    uf = UnionFind(len(names))
    for link in links:
        uf.union(link.a, link.b)  # the root is the group's smallest index: its first file
    stands: dict[int, int] = {}
    for i in range(len(names)):
        if Path(paths[i]) in done:
            stands.setdefault(uf.find(i), i)
    rep_of = [stands.get(uf.find(i), uf.find(i)) for i in range(len(names))]
    return {Path(paths[i]): Path(paths[rep_of[i]]) for i in range(len(names)) if rep_of[i] != i}
