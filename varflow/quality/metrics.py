"""The seed's quality metrics (VariationQualityAnalyzer) as pure functions, computed fast.

Definitions, ranges and every deviation from the seed are in docs/quality-model.md; the tests in
tests/test_metrics_fidelity.py pin every value against a plain formulation of the seed's code
(tests/seed_reference.py). Inputs are uint8 numpy arrays (H x W grey, H x W x 3 RGB, H x W x 4
RGBA) or Pillow images; RGBA is composited on white first, exactly as ``imageio.load_rgb`` does.

Where the speed comes from (bench/score_speed.py measures it):

* ``GreyImage`` computes each image's grey and its SSIM window statistics once; a pair then costs
  one product, one 7x7 box sum and a dozen float32 operations, in row strips that stay in cache;
* window sums and the covariance term are exact integers (int32), so no float64 plane is needed
  and float32 only rounds results;
* work arrays are per-thread and reused, and the statistics planes of dead images are recycled:
  a fresh multi-megabyte array costs a page fault per 4 KiB, more than the arithmetic;
* aesthetic and integrity use integer OpenCV kernels (a CV_16S Laplacian is exact), and integrity
  skips the component labelling when there are too few edge pixels for any component to count;
* ``score_variation`` computes the single-image metrics on a helper thread meanwhile.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from varflow.quality.pixels import flatten_to_rgb

# structural_similarity(a, b) with skimage's defaults on uint8: 7x7 uniform window, sample
# covariance (N / (N - 1)), K1=0.01, K2=0.03, data_range=255, mean over the image less a
# 3-pixel border. Written with window *sums* (S = N * mean) the constants scale by N^2 and
# N (N - 1); see _ssim_strip.
_WIN = 7
_PAD = (_WIN - 1) // 2
_N = _WIN * _WIN
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_K1 = _C1 * _N * _N
_K2 = _C2 * _N * (_N - 1)
_STRIP_PIXELS = 1 << 17  # rows per strip so that a strip's float32 planes stay in cache

# The seed's weights.
AESTHETIC_WEIGHTS = {
    "color_variance": 0.25,
    "contrast": 0.25,
    "brightness_balance": 0.25,
    "sharpness": 0.25,
}
OVERALL_WEIGHTS = {"similarity": 0.2, "diversity": 0.3, "aesthetic": 0.3, "object_integrity": 0.2}
NEUTRAL_DIVERSITY = 0.5  # the seed's stand-in for a diversity it could not measure
MIN_SIDE = _WIN  # SSIM's window: smaller images cannot be scored


def _check_uint8(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what} must be a numpy array or a PIL image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(
            f"{what} has dtype {image.dtype}; pass uint8 pixels (0-255), e.g. "
            "np.asarray(pil_image.convert('RGB'))"
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"{what} has shape {image.shape}; pass H x W grey, H x W x 3 RGB or H x W x 4 RGBA"
        )


def _flatten_pil(im: Image.Image) -> Image.Image:
    """RGB or L with any transparency composited on white (imageio's rule for every input)."""
    if im.mode in ("L", "RGB"):
        return im
    return flatten_to_rgb(im)


def to_rgb(image: np.ndarray | Image.Image) -> np.ndarray:
    """H x W x 3 (or H x W grey) uint8; RGBA is composited on white, like ``load_rgb``."""
    if isinstance(image, Image.Image):
        return np.asarray(_flatten_pil(image))
    _check_uint8(image, "image")
    if image.ndim == 2 or image.shape[2] == 1:
        return image.reshape(image.shape[:2])
    if image.shape[2] == 4:
        return np.asarray(_flatten_pil(Image.fromarray(np.ascontiguousarray(image), "RGBA")))
    return image


def to_grey(image: np.ndarray | Image.Image) -> np.ndarray:
    """ITU-R 601-2 luma exactly as Pillow's ``convert('L')`` computes it (the seed's grey).

    RGBA is composited on white first (see the module docstring).
    """
    if isinstance(image, Image.Image):
        return np.asarray(_flatten_pil(image).convert("L"))
    rgb = to_rgb(image)
    if rgb.ndim == 2:
        return rgb
    # Pillow's own conversion (L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16) is the
    # reference and the fastest exact one available.
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb), "RGB").convert("L"))


class _PlanePool:
    """Recycles the statistics planes of dead ``GreyImage``s (bounded, thread safe).

    A fresh multi-megabyte array costs one page fault per 4 KiB the first time it is written,
    which on a 1024 px image is more than the SSIM arithmetic itself. Planes are carved out of
    flat byte buffers and handed on by size (best fit, up to twice the size asked for), so
    images of different shapes but similar sizes reuse each other's memory.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._free: list[np.ndarray] = []  # flat uint8 buffers, owners of their memory
        self._bytes = 0
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, int], dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        need = int(np.prod(shape)) * dtype.itemsize
        with self._lock:
            best = None
            for i, buf in enumerate(self._free):
                if need <= buf.nbytes <= 2 * need and (best is None or buf.nbytes < self._free[best].nbytes):
                    best = i
            if best is not None:
                buf = self._free.pop(best)
                self._bytes -= buf.nbytes
            else:
                buf = None
        if buf is None:
            buf = np.empty(need, np.uint8)
        return buf[:need].view(dtype).reshape(shape)

    def give(self, arrays) -> None:
        with self._lock:
            for arr in arrays:
                buf = arr.base if arr.base is not None else arr
                if buf.dtype != np.uint8 or buf.ndim != 1:
                    continue
                self._free.append(buf)
                self._bytes += buf.nbytes
            while self._bytes > self.max_bytes and self._free:
                dropped = self._free.pop(0)  # oldest first
                self._bytes -= dropped.nbytes


_POOL = _PlanePool(max_bytes=192 * 2**20)


class GreyImage:
    """A grey image with its SSIM statistics, computed once and reused for every pair.

    The statistics are window sums over the 7x7 windows that lie inside the image (the only ones
    SSIM's mean uses): ``S`` = sum of pixels (uint16, exact: at most 49 * 255), ``P`` =
    S^2 + K1/2 and ``R`` = N sum(x^2) - S^2 + K2/2 (float32 of exact integers). With them a
    pair needs only the window sums of the product of the two images. Memory once computed:
    11 bytes per pixel (with the pixels).
    """

    __slots__ = ("pixels", "_S", "_P", "_R", "_resized", "__weakref__")

    def __init__(self, pixels: np.ndarray | Image.Image):
        if isinstance(pixels, Image.Image):
            pixels = to_grey(pixels)
        _check_uint8(pixels, "grey image")
        if pixels.ndim != 2:
            pixels = to_grey(pixels)
        h, w = pixels.shape
        if h < MIN_SIDE or w < MIN_SIDE:
            raise ValueError(
                f"image of {w}x{h} px is smaller than SSIM's 7x7 window; "
                "varflow needs images of at least 7x7 pixels"
            )
        self.pixels = np.ascontiguousarray(pixels)
        self._S = None
        self._P = None
        self._R = None
        self._resized: dict[tuple, GreyImage] = {}

    @classmethod
    def from_image(cls, image: np.ndarray | Image.Image) -> GreyImage:
        return cls(to_grey(image))

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape

    def _stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._R is None:
            g = self.pixels
            h, w = g.shape
            inner = (h - 2 * _PAD, w - 2 * _PAD)
            s = _POOL.take(inner, np.uint16)
            p = _POOL.take(inner, np.float32)
            r = _POOL.take(inner, np.float32)
            step = _strip_rows(inner[1])
            scratch = _scratch(step, w)
            for r0 in range(0, inner[0], step):
                r1 = min(r0 + step, inner[0])
                n = r1 - r0
                rows = slice(r0, r1 + 2 * _PAD)
                box = scratch.box[: n + 2 * _PAD]
                cv2.boxFilter(g[rows], cv2.CV_32S, (_WIN, _WIN), dst=box, normalize=False)
                np.copyto(s[r0:r1], box[_PAD:-_PAD, _PAD:-_PAD], casting="unsafe")  # <= 12495
                sq = np.multiply(g[rows], g[rows], out=scratch.prod[: n + 2 * _PAD], dtype=np.uint16)
                cv2.boxFilter(sq, cv2.CV_32S, (_WIN, _WIN), dst=box, normalize=False)
                ss = np.multiply(s[r0:r1], s[r0:r1], out=scratch.m[:n], dtype=np.int32)  # exact
                np.copyto(p[r0:r1], ss, casting="unsafe")  # exact int -> nearest float32
                p[r0:r1] += np.float32(_K1 / 2)
                v = np.multiply(box[_PAD:-_PAD, _PAD:-_PAD], _N, out=scratch.cov[:n])
                np.subtract(v, ss, out=v)  # N sum(x^2) - S^2: exact in int32
                np.copyto(r[r0:r1], v, casting="unsafe")
                r[r0:r1] += np.float32(_K2 / 2)
            self._S, self._P = s, p
            self._R = r
            weakref.finalize(self, _POOL.give, (s, p, r))
        return self.pixels, self._S, self._P, self._R

    def resized_to(self, shape: tuple[int, int]) -> GreyImage:
        """This image resized to ``shape`` (H, W) as the seed does: cv2.resize, bilinear."""
        if shape == self.shape:
            return self
        if shape not in self._resized:
            self._resized[shape] = GreyImage(cv2.resize(self.pixels, (shape[1], shape[0])))
        return self._resized[shape]

    def thumbnail(self, side: int) -> GreyImage:
        """This image area-averaged to ``side`` x ``side`` (aspect ratio not kept), cached.

        Near-duplicate confirmation compares thumbnails: at 20 px a 2-degree rotation or a 4%
        crop moves content by a fraction of a pixel, so SSIM measures the picture rather than
        the alignment (docs/quality-model.md gives the measurement).
        """
        if self.shape == (side, side):
            return self
        key = ("area", side)
        hit = self._resized.get(key)
        if hit is None:
            small = cv2.resize(self.pixels, (side, side), interpolation=cv2.INTER_AREA)
            hit = self._resized[key] = GreyImage(small)
        return hit

    def nbytes(self) -> int:
        """Bytes held now (pixels plus any statistics computed so far)."""
        planes = (self.pixels, self._S, self._P, self._R)
        return sum(p.nbytes for p in planes if p is not None)


def _strip_rows(width: int) -> int:
    return max(16, _STRIP_PIXELS // max(width, 1))


class _Scratch:
    """Per-thread work planes for one strip shape, reused so that no call faults in pages."""

    def __init__(self, rows: int, width: int):
        inner_w = width - 2 * _PAD
        self.prod = np.empty((rows + 2 * _PAD, width), np.uint16)
        self.box = np.empty((rows + 2 * _PAD, width), np.int32)
        self.m = np.empty((rows, inner_w), np.int32)
        self.cov = np.empty((rows, inner_w), np.int32)
        self.num = np.empty((rows, inner_w), np.float32)
        self.a1 = np.empty((rows, inner_w), np.float32)
        self.den = np.empty((rows, inner_w), np.float32)


_LOCAL = threading.local()


def _scratch(rows: int, width: int) -> _Scratch:
    cache = getattr(_LOCAL, "scratch", None)
    if cache is None:
        cache = _LOCAL.scratch = {}
    key = (rows, width)
    hit = cache.pop(key, None)
    if hit is None:
        hit = _Scratch(rows, width)
    cache[key] = hit  # most recently used last
    while len(cache) > 4:
        cache.pop(next(iter(cache)))
    return hit


def _buffer(name: str, shape: tuple, dtype) -> np.ndarray:
    """A per-thread work array, kept for the next call of the same shape (no page faults)."""
    bufs = getattr(_LOCAL, "buffers", None)
    if bufs is None:
        bufs = _LOCAL.buffers = {}
    arr = bufs.get(name)
    if arr is None or arr.shape != shape or arr.dtype != dtype:
        arr = bufs[name] = np.empty(shape, dtype)
    return arr


def _ssim_strip(ua, ub, sa, sb, pa, pb, ra, rb, r0: int, r1: int, t: _Scratch) -> float:
    """Sum of the SSIM map over interior rows [r0, r1).

    In window sums (S_a, S_b, S_ab = sum of a*b, V = N sum(x^2) - S^2) skimage's map is
      (2 S_a S_b + K1) (2 (N S_ab - S_a S_b) + K2) / ((S_a^2 + S_b^2 + K1) (V_a + V_b + K2))
    with K1 = C1 N^2 and K2 = C2 N (N-1): its own formula with numerator and denominator both
    multiplied by N^2 * N (N - 1). The covariance term N S_ab - S_a S_b is a difference of two
    large, nearly equal numbers; it is formed exactly in int32, so float32 only rounds results.
    """
    n = r1 - r0
    rows = slice(r0, r1 + 2 * _PAD)
    prod = np.multiply(ua[rows], ub[rows], out=t.prod[: n + 2 * _PAD], dtype=np.uint16)  # exact
    box = t.box[: n + 2 * _PAD]
    cv2.boxFilter(prod, cv2.CV_32S, (_WIN, _WIN), dst=box, normalize=False)
    m, cov, num, a1, den = t.m[:n], t.cov[:n], t.num[:n], t.a1[:n], t.den[:n]
    np.multiply(sa[r0:r1], sb[r0:r1], out=m, dtype=np.int32)  # S_a S_b, exact
    np.multiply(box[_PAD:-_PAD, _PAD:-_PAD], _N, out=cov)
    np.subtract(cov, m, out=cov)  # N S_ab - S_a S_b, exact
    # with A = S_a S_b + K1/2 and B = (N S_ab - S_a S_b) + K2/2 the map is 4 A B / (den)
    np.copyto(num, cov, casting="unsafe")  # exact int32 -> nearest float32
    num += np.float32(_K2 / 2)
    np.copyto(a1, m, casting="unsafe")
    a1 += np.float32(_K1 / 2)
    cv2.multiply(num, a1, dst=num)
    cv2.add(pa[r0:r1], pb[r0:r1], dst=den)
    cv2.add(ra[r0:r1], rb[r0:r1], dst=a1)
    cv2.multiply(den, a1, dst=den)
    np.divide(num, den, out=num)
    return 4.0 * cv2.sumElems(num)[0]


def ssim_many(reference: GreyImage, others: list[GreyImage]) -> list[float]:
    """``[ssim(reference, o) for o in others]`` in one pass over the reference's rows.

    Each strip of the reference's statistics is read from memory once and used for every
    other image while it is in cache (the pair arithmetic is bound by memory traffic).
    """
    if not others:
        return []
    others = [o.resized_to(reference.shape) for o in others]
    ua, sa, pa, ra = reference._stats()
    stats = [o._stats() for o in others]
    h, w = sa.shape
    step = _strip_rows(w)
    scratch = _scratch(step, w + 2 * _PAD)
    totals = [0.0] * len(others)
    for r0 in range(0, h, step):
        r1 = min(r0 + step, h)
        for k, (ub, sb, pb, rb) in enumerate(stats):
            totals[k] += _ssim_strip(ua, ub, sa, sb, pa, pb, ra, rb, r0, r1, scratch)
    return [t / (h * w) for t in totals]


def ssim(reference: GreyImage, other: GreyImage) -> float:
    """SSIM of ``other`` (resized to ``reference`` when sizes differ) against ``reference``.

    Equal to ``skimage.metrics.structural_similarity(ref, cv2.resize(other, ref_size))`` on
    the uint8 grey images (tests pin it within 1e-6; docs/quality-model.md gives the measured difference).
    """
    return ssim_many(reference, [other])[0]


def _window_sums(x: np.ndarray) -> np.ndarray:
    """Sums of every 7x7 window inside each image of a stack [m, h, w] (uint8 or uint16; exact
    int32): one box filter over the images stacked as one tall image, keeping the windows that
    lie inside one image."""
    m, h, w = x.shape
    box = cv2.boxFilter(np.ascontiguousarray(x).reshape(m * h, w), cv2.CV_32S, (_WIN, _WIN), normalize=False,
                        borderType=cv2.BORDER_CONSTANT)
    return box.reshape(m, h, w)[:, _PAD:h - _PAD, _PAD:w - _PAD].astype(np.int64)


def ssim_stack(a: np.ndarray, b: np.ndarray, *, chunk: int = 4096) -> np.ndarray:
    """``ssim(a[k], b[k])`` for every k of two stacks of equal-size small grey images (uint8
    [m, h, w]), in a few array operations instead of m calls: copy-finding confirms tens of
    thousands of 20 px thumbnail pairs. Window sums are exact integers, the map float64."""
    for stack, what in ((a, "first stack"), (b, "second stack")):
        if not isinstance(stack, np.ndarray) or stack.dtype != np.uint8:
            raise TypeError(f"{what} must be a uint8 numpy array [m, h, w] of grey pixels")
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"stacks of shape {a.shape} and {b.shape}: pass two [m, h, w] stacks of one shape")
    if a.shape[1] < MIN_SIDE or a.shape[2] < MIN_SIDE:
        raise ValueError(f"images of {a.shape[2]}x{a.shape[1]} px are smaller than SSIM's 7x7 window")
    out = np.empty(a.shape[0], np.float64)
    for k0 in range(0, a.shape[0], chunk):
        x, y = a[k0:k0 + chunk].astype(np.uint16), b[k0:k0 + chunk].astype(np.uint16)
        sa, sb = _window_sums(x), _window_sums(y)
        m = sa * sb
        va = _N * _window_sums(x * x) - sa * sa  # products of uint8 fit uint16
        vb = _N * _window_sums(y * y) - sb * sb
        cov = _N * _window_sums(x * y) - m
        num = (2.0 * m + _K1) * (2.0 * cov + _K2)
        den = (sa * sa + sb * sb + _K1) * (va + vb + _K2)
        out[k0:k0 + chunk] = (num / den).mean(axis=(1, 2))
    return out


def similarity(
    original: np.ndarray | Image.Image | GreyImage, variation: np.ndarray | Image.Image | GreyImage
) -> float:
    """The seed's similarity: SSIM on grey, the variation resized to the original's size."""
    a = original if isinstance(original, GreyImage) else GreyImage.from_image(original)
    b = variation if isinstance(variation, GreyImage) else GreyImage.from_image(variation)
    return ssim(a, b)


def diversity(
    variation: np.ndarray | Image.Image | GreyImage,
    others: list[np.ndarray | Image.Image | GreyImage],
) -> float | None:
    """Mean of (1 - SSIM) against each of ``others`` (each resized to the variation's size).

    ``None`` when there is nothing to compare with; the seed then skipped the metric, which its
    acceptance check read as 0 and rejected every first variation (see the model doc).
    """
    if not others:
        return None
    target = variation if isinstance(variation, GreyImage) else GreyImage.from_image(variation)
    greys = [o if isinstance(o, GreyImage) else GreyImage.from_image(o) for o in others]
    return _diversity_of(ssim_many(target, greys))


def _diversity_of(similarities: list[float]) -> float | None:
    if not similarities:
        return None
    return sum(1.0 - v for v in similarities) / len(similarities)


@dataclass(frozen=True)
class AestheticScore:
    color_variance: float
    contrast: float
    brightness_balance: float
    sharpness: float

    @property
    def total(self) -> float:
        return sum(getattr(self, k) * w for k, w in AESTHETIC_WEIGHTS.items())


def aesthetic(
    image: np.ndarray | Image.Image, *, grey: np.ndarray | None = None
) -> AestheticScore:
    """The seed's four-part aesthetic score of an RGB (or grey, or RGBA) image.

    colour variance: variance of the per-band variances (Pillow ImageStat), / 10000, capped at 1;
    contrast: 2 * std(grey) / 255, capped; brightness balance: 1 - 2 |mean(grey)/255 - 0.5|;
    sharpness: var(Laplacian(grey)) / 1000, capped. A grey image has one band, so its colour
    variance is 0 (as with the seed's ImageStat on an 'L' image).
    """
    rgb = to_rgb(image)
    if grey is None:
        grey = to_grey(rgb)
    if rgb.ndim == 3:
        # ImageStat's variance: (sum(x^2) - sum(x)^2 / n) / n per band, from exact sums
        n = rgb.shape[0] * rgb.shape[1]
        band_vars = []
        planes = [_buffer(f"band{c}", rgb.shape[:2], np.uint8) for c in range(3)]
        for band in cv2.split(rgb, planes):
            total = cv2.sumElems(band)[0]
            band_vars.append((cv2.norm(band, cv2.NORM_L2SQR) - total * total / n) / n)
    else:
        band_vars = [0.0]  # one band: the variance of a single value is 0
    color_variance = min(float(np.var(band_vars)) / 10000.0, 1.0)
    mean, std = cv2.meanStdDev(grey)
    contrast = min(float(std[0, 0]) / 255.0 * 2.0, 1.0)
    brightness_balance = 1.0 - abs(float(mean[0, 0]) / 255.0 - 0.5) * 2.0
    lap = cv2.Laplacian(grey, cv2.CV_16S, dst=_buffer("lap", grey.shape, np.int16))  # exact
    n = lap.size
    lap_mean = cv2.sumElems(lap)[0] / n
    sharpness = min((cv2.norm(lap, cv2.NORM_L2SQR) / n - lap_mean * lap_mean) / 1000.0, 1.0)
    return AestheticScore(color_variance, contrast, brightness_balance, sharpness)


def object_integrity(grey: np.ndarray) -> float:
    """The seed's edge-based object integrity of a grey uint8 image.

    Canny(50, 150) edges, 8-connected components; the number of components larger than 1% of
    the image's area, / 10, capped at 1. No edges at all scores 0.1, edges of which none is large
    score 0 (both the seed's values; see the model doc for why that ordering is odd).
    """
    if isinstance(grey, GreyImage):
        grey = grey.pixels
    grey = to_grey(grey)
    edges = cv2.Canny(grey, 50, 150, edges=_buffer("edges", grey.shape, np.uint8))
    n_edge = cv2.countNonZero(edges)
    if n_edge == 0:
        return 0.1
    limit = grey.shape[0] * grey.shape[1] * 0.01
    if n_edge <= limit:
        return 0.0  # no component can hold more pixels than there are edge pixels
    # labels <= n_edge + 1, so 16-bit labels are exact while n_edge < 65535 (and faster)
    small = n_edge < 65535
    ltype = cv2.CV_16U if small else cv2.CV_32S
    labels = _buffer("labels16" if small else "labels32", grey.shape, np.uint16 if small else np.int32)
    _, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(
        edges, 8, ltype, cv2.CCL_DEFAULT, labels=labels
    )
    large = int(np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] > limit))
    return min(large / 10.0, 1.0)


def similarity_weight(similarity_value: float) -> float:
    """The seed's preference for a middling similarity: 1 at 0.6, falling to 0 at 0.3 and 0.9."""
    if 0.3 <= similarity_value <= 0.9:
        return 1.0 - abs(similarity_value - 0.6) / 0.3
    return 0.1


def overall_quality(
    *, similarity: float, diversity: float | None, aesthetic: float, object_integrity: float
) -> float:
    """The seed's weighted overall score (0.2 / 0.3 / 0.3 / 0.2)."""
    parts = {
        "similarity": similarity_weight(similarity),
        "diversity": NEUTRAL_DIVERSITY if diversity is None else diversity,
        "aesthetic": aesthetic,
        "object_integrity": object_integrity,
    }
    return sum(parts[k] * w for k, w in OVERALL_WEIGHTS.items())


@dataclass(frozen=True)
class VariationScores:
    similarity: float
    diversity: float | None
    aesthetic: AestheticScore
    object_integrity: float
    overall_quality: float

    def as_dict(self) -> dict[str, float | None]:
        return {
            "similarity": self.similarity,
            "diversity": self.diversity,
            "aesthetic": self.aesthetic.total,
            "color_variance": self.aesthetic.color_variance,
            "contrast": self.aesthetic.contrast,
            "brightness_balance": self.aesthetic.brightness_balance,
            "sharpness": self.aesthetic.sharpness,
            "object_integrity": self.object_integrity,
            "overall_quality": self.overall_quality,
        }


_HELPER: list = []
_HELPER_LOCK = threading.Lock()
_HELPER_NAME = "varflow-metrics"


def helper_pool():
    """One background thread for work that overlaps the SSIM pairs (OpenCV releases the GIL).

    A single worker: on a two-core machine one more thread is what there is room for, and a
    queue in front of it keeps concurrent callers (a flow scoring two images) from piling up.
    """
    if not _HELPER:
        with _HELPER_LOCK:
            if not _HELPER:
                from concurrent.futures import ThreadPoolExecutor

                _HELPER.append(ThreadPoolExecutor(1, thread_name_prefix=_HELPER_NAME))
    return _HELPER[0]


def score_variation(
    original: GreyImage,
    variation: np.ndarray | Image.Image,
    *,
    variation_grey: GreyImage | None = None,
    accepted: list[GreyImage] = (),
    parallel: bool = True,
) -> VariationScores:
    """Every metric of one variation: against the original and the already accepted ones.

    With ``parallel`` the single-image metrics (aesthetic, and the edge detection behind object
    integrity) run on a helper thread while this one computes the SSIM pairs (OpenCV and numpy
    release the GIL); the values are the same.
    """
    if variation_grey is None:
        variation_grey = GreyImage(to_grey(variation))
    vgrey = variation_grey
    others = list(accepted)

    def single_image() -> tuple[AestheticScore, float]:
        return aesthetic(variation, grey=vgrey.pixels), object_integrity(vgrey.pixels)

    if parallel and threading.current_thread().name.startswith(_HELPER_NAME):
        parallel = False  # called from the helper itself: waiting on it would deadlock
    pending = helper_pool().submit(single_image) if parallel else None
    if vgrey.shape == original.shape:
        # same size: SSIM is symmetric, so the similarity joins the diversity pass
        values = ssim_many(vgrey, [original, *others])
        sim, div = values[0], _diversity_of(values[1:])
    else:
        sim = ssim(original, vgrey)  # the variation resized to the original, as the seed does
        div = _diversity_of(ssim_many(vgrey, others))
    aes, integ = pending.result() if pending is not None else single_image()
    overall = overall_quality(
        similarity=sim, diversity=div, aesthetic=aes.total, object_integrity=integ
    )
    return VariationScores(sim, div, aes, integ, overall)
