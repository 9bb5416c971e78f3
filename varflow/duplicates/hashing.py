"""Perceptual hashes (average, perceptual, difference; 64 bits each) and Hamming distance.

The values are imagehash's (``average_hash``, ``phash``, ``dhash`` with their defaults), bit for
bit: tests/test_hashing.py compares them on photos and on random shapes. What differs is the
cost. imagehash converts the image to grey three times and lets Pillow run a Lanczos resize of
the full image for each hash; here one grey image is shared and Pillow's resize is reproduced
exactly as matrix products:

Pillow's 8-bit Lanczos resize is separable. Each pass computes, per output pixel,
``clip8((sum(pixel * k) + 2**21) >> 22)`` with integer coefficients ``k`` (the normalised
Lanczos-3 weights times 2**22, rounded half away from zero), rounding to uint8 between the two
passes. The sums are integers below 2**31, so a float64 matrix product computes them exactly;
the horizontal pass for all three hash sizes (8, 32 and 9 columns) is one product per block of
rows. Pillow 13
runs the vertical pass first when the height shrinks by more than twice as many pixels as the
width; the pass order is detected from the installed Pillow once (a tiny probe resize), and if
neither order reproduces it the hashes fall back to Pillow's own resize.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

_PRECISION_BITS = 22  # Pillow: 32 - 8 - 2
_HALF = float(1 << (_PRECISION_BITS - 1))
_SCALE = float(1 << _PRECISION_BITS)
_ROW_CHUNK = 256  # rows per float64 block of the horizontal pass (bounded scratch memory)
HASH_SIZES = {"ahash": (8, 8), "phash": (32, 32), "dhash": (9, 8)}  # (width, height)


@dataclass(frozen=True)
class ImageHashes:
    ahash: str  # 16 hex digits, imagehash's str() form
    phash: str
    dhash: str

    def as_ints(self) -> tuple[int, int, int]:
        return int(self.ahash, 16), int(self.phash, 16), int(self.dhash, 16)


def _lanczos(x: float) -> float:
    if -3.0 <= x < 3.0:
        return _sinc(x) * _sinc(x / 3.0)
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


@lru_cache(maxsize=512)
def _coefficients(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's fixed-point Lanczos coefficients as a dense (out_size x in_size) float64 matrix."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    inv = 1.0 / filterscale
    k = np.zeros((out_size, in_size), np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [_lanczos((x + xmin - center + 0.5) * inv) for x in range(xmax)]
        total = sum(weights)
        for x, w in enumerate(weights):
            if total != 0.0:
                w /= total
            k[xx, xmin + x] = int(w * _SCALE - 0.5) if w < 0 else int(w * _SCALE + 0.5)
    k.setflags(write=False)
    return k


def _clip8(sums: np.ndarray) -> np.ndarray:
    """Pillow's clip8 of fixed-point sums that already include the rounding half."""
    np.floor_divide(sums, _SCALE, out=sums)
    np.clip(sums, 0.0, 255.0, out=sums)
    return sums


@lru_cache(maxsize=64)
def _horizontal_plan(in_w: int, widths: tuple[int, ...]) -> tuple:
    """Products that make the horizontal pass: ((c0, c1, k_block, [(width, g0, g1)]), ...).

    Lanczos coefficients are zero outside each output's support, so the outputs of a width are
    split into groups that each read only their own span of the row (pHash's 32 narrow supports
    cost a third of a dense product that way); groups over the same span (the 8 and 9 columns
    of aHash and dHash both read the whole row) share one product.
    """
    chosen = []  # (c0, c1, width, g0, g1)
    for ow in widths:
        k = _coefficients(in_w, ow)
        spans = []
        for row in k:
            nz = np.flatnonzero(row)
            spans.append((int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 1))
        best = None
        for groups in (1, 2, 4, 8):
            if groups > ow:
                break
            bounds = np.linspace(0, ow, groups + 1).round().astype(int)
            cand = []
            for g0, g1 in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                c0 = min(sp[0] for sp in spans[g0:g1])
                c1 = max(sp[1] for sp in spans[g0:g1])
                cand.append((c0, c1, ow, g0, g1))
            # a product reads its span of every row; fewer than ~8 outputs do not make it cheaper
            cost = sum((c1 - c0) * max(g1 - g0, 8) for c0, c1, _, g0, g1 in cand)
            if best is None or cost < best[0]:
                best = (cost, cand)
        chosen.extend(best[1])
    merged: dict[tuple[int, int], list] = {}
    for c0, c1, ow, g0, g1 in chosen:
        merged.setdefault((c0, c1), []).append((ow, g0, g1))
    plan = []
    for (c0, c1), targets in merged.items():
        kb = np.concatenate([_coefficients(in_w, ow)[g0:g1, c0:c1] for ow, g0, g1 in targets])
        plan.append((c0, c1, np.ascontiguousarray(kb.T), tuple(targets)))
    return tuple(plan)


# OpenBLAS runs a product on one thread when m*n*k is below this (2 * 4 * 65536): its worker
# threads spin after each call and, on a busy machine, take the core OpenCV needs next.
_SINGLE_THREAD_MNK = 524_287


def _matmul_rows(src: np.ndarray, k: np.ndarray, out: np.ndarray) -> None:
    """out = src @ k (float64, exact), as a stack of products small enough for one thread."""
    rows, inner = src.shape
    step = max(1, min(rows, _SINGLE_THREAD_MNK // max(inner * k.shape[1], 1)))
    full = rows - rows % step
    if full:
        np.matmul(
            src[:full].reshape(full // step, step, inner),
            k,
            out=out[:full].reshape(full // step, step, k.shape[1]),
        )
    if full < rows:
        np.matmul(src[full:], k, out=out[full:])


_LOCAL = threading.local()


def _block_buffer(rows: int, width: int) -> np.ndarray:
    """A per-thread float64 block, kept between calls (a fresh one costs page faults)."""
    buf = getattr(_LOCAL, "block", None)
    if buf is None or buf.size < rows * width:
        buf = _LOCAL.block = np.empty(rows * width, np.float64)
    return buf[: rows * width].reshape(rows, width)


def _horizontal(grey: np.ndarray, widths: list[int]) -> list[np.ndarray]:
    """The horizontal pass of every width, as exact float64 products over row blocks."""
    h, w = grey.shape
    plan = _horizontal_plan(w, tuple(widths))
    outs = [np.empty((h, kb.shape[1]), np.float64) for _, _, kb, _ in plan]
    block = _block_buffer(min(_ROW_CHUNK, h), w)
    for r0 in range(0, h, _ROW_CHUNK):
        r1 = min(r0 + _ROW_CHUNK, h)
        b = block[: r1 - r0]
        np.copyto(b, grey[r0:r1])
        for (c0, c1, kb, _), out in zip(plan, outs):
            _matmul_rows(b[:, c0:c1], kb, out[r0:r1])
    columns: dict[int, list] = {ow: [] for ow in widths}
    for (_, _, _, targets), out in zip(plan, outs):
        col = 0
        for ow, g0, g1 in targets:
            columns[ow].append((g0, out[:, col : col + g1 - g0]))
            col += g1 - g0
    parts = []
    for ow in widths:
        pieces = [p for _, p in sorted(columns[ow], key=lambda t: t[0])]
        part = pieces[0].copy() if len(pieces) == 1 else np.concatenate(pieces, axis=1)
        part += _HALF
        parts.append(_clip8(part))
    return parts


def _vertical(img: np.ndarray, height: int) -> np.ndarray:
    k = _coefficients(img.shape[0], height)
    out = np.empty((height, img.shape[1]), np.float64)
    _matmul_rows(k, img, out)
    out += _HALF
    return _clip8(out)


def _vertical_first(in_w: int, in_h: int, out_w: int, out_h: int, rule: str) -> bool:
    if rule == "pillow13":
        shrink_h = in_h - out_h
        return shrink_h > 0 and shrink_h > (in_w - out_w) * 2
    return False


def _resize_all(grey: np.ndarray, sizes: list[tuple[int, int]], rule: str) -> list[np.ndarray]:
    """``Image.fromarray(grey).resize(size, LANCZOS)`` for every size, as uint8 arrays."""
    h, w = grey.shape
    results: dict[tuple[int, int], np.ndarray] = {}
    h_first = [
        s for s in sizes if s[0] != w and not _vertical_first(w, h, s[0], s[1], rule)
    ]
    if h_first:
        widths = sorted({s[0] for s in h_first})
        for ow, part in zip(widths, _horizontal(grey, widths)):
            for s in h_first:
                if s[0] == ow:
                    results[s] = part if s[1] == h else _vertical(part, s[1])
    for s in sizes:
        if s in results:
            continue
        ow, oh = s
        img = grey.astype(np.float64)
        if oh != h:
            img = _vertical(img, oh)
        if ow != w:
            img = _horizontal(img, [ow])[0]
        results[s] = img
    return [results[s].astype(np.uint8) for s in sizes]


_RULE_LOCK = threading.Lock()
_RULE: list[str] = []


def _pass_order_rule() -> str:
    """Which pass order the installed Pillow uses: 'pillow13', 'horizontal' or 'pillow'."""
    if _RULE:
        return _RULE[0]
    with _RULE_LOCK:
        if not _RULE:
            rng = np.random.default_rng(12345)
            probes = [rng.integers(0, 256, (60, 9), dtype=np.uint8),
                      rng.integers(0, 256, (23, 41), dtype=np.uint8)]
            sizes = [(2, 5), (7, 3), (8, 8)]
            found = "pillow"
            for rule in ("pillow13", "horizontal"):
                if all(
                    np.array_equal(
                        np.asarray(Image.fromarray(p).resize(s, Image.Resampling.LANCZOS)),
                        _resize_all(p, [s], rule)[0],
                    )
                    for p in probes
                    for s in sizes
                ):
                    found = rule
                    break
            _RULE.append(found)
    return _RULE[0]


def _small_images(grey: np.ndarray) -> list[np.ndarray]:
    sizes = list(HASH_SIZES.values())
    rule = _pass_order_rule()
    if rule == "pillow":  # an unknown Pillow resampler: use it directly (slower, same values)
        im = Image.fromarray(grey)
        return [np.asarray(im.resize(s, Image.Resampling.LANCZOS)) for s in sizes]
    return _resize_all(grey, sizes, rule)


def _hex(bits: np.ndarray) -> str:
    """imagehash's str(): the flattened bits, most significant first, as 16 hex digits."""
    return np.packbits(bits.ravel()).tobytes().hex()


def grey_for_hashing(image) -> np.ndarray:
    """The grey uint8 image imagehash would hash (Pillow's convert('L')); RGBA on white."""
    from varflow.quality.metrics import GreyImage, to_grey

    if isinstance(image, GreyImage):
        return image.pixels
    if isinstance(image, np.ndarray) and image.ndim == 2:
        if image.dtype != np.uint8:
            raise TypeError(f"grey image has dtype {image.dtype}; pass uint8 pixels")
        return image
    return to_grey(image)


def compute_hashes(image) -> ImageHashes:
    """imagehash's average_hash, phash and dhash of ``image`` (PIL image, uint8 array or
    ``GreyImage``), as 16-digit hex strings, from one shared grey image.

    RGBA (array or image) is composited on white first, like every other input of varflow;
    imagehash itself would drop the alpha channel instead.
    """
    import scipy.fftpack

    grey = grey_for_hashing(image)
    small8, small32, small98 = _small_images(grey)
    ahash = small8 > small8.mean()
    dct = scipy.fftpack.dct(scipy.fftpack.dct(small32, axis=0), axis=1)
    low = dct[:8, :8]
    phash = low > np.median(low)
    dhash = small98[:, 1:] > small98[:, :-1]
    return ImageHashes(_hex(ahash), _hex(phash), _hex(dhash))


def hash_to_int(value: str | int) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def hamming(a: str | int, b: str | int) -> int:
    return (hash_to_int(a) ^ hash_to_int(b)).bit_count()


def hash_distances(a: ImageHashes, b: ImageHashes) -> tuple[int, int, int]:
    return tuple(hamming(x, y) for x, y in zip(a.as_ints(), b.as_ints()))
