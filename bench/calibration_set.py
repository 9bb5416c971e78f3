"""A labeled calibration set: real photos and the edits a person would keep or throw away.

Built from code, not stored blobs: the photos are the ones scikit-image ships (``skimage/data``),
the edits are implemented here with OpenCV and numpy, each with random parameter draws. The
edits are deliberately independent of varflow's own generators, so a gate fitted to this set is
not fitted to what our generator happens to make.

Every sample carries the photo's name, the edit's kind, the draw number and a label: ``good``
(a variation a person would keep) or ``bad`` (one they would throw away). Kinds and why:

good: ``warm_grade``, ``cool_grade`` (colour grades), ``lut_look`` (per-channel tone curves, a
film/LUT look), ``black_and_white``, ``stylisation`` (cv2.stylization), ``detail_enhance``
(cv2.detailEnhance), ``cartoon`` (bilateral smoothing, quantised colours, ink lines),
``recrop`` (10-25% of the area cut away, scaled back), ``perspective`` (a keystone change:
filling the frame, or the whole photo tilted inside it with black wedges beside),
``rotate_crop`` (3-8 degrees, cropped to fill), ``mirror``, ``object_removal`` (a textured
region inpainted away), ``object_addition`` (a patch of another photo seamlessly cloned in),
``vignette``.

bad: ``near_copy`` (re-encode, 2-4% brightness, a down-up resize or a faint blur),
``solid_colour``, ``pure_noise``, ``noise`` (heavy noise over the photo), ``heavy_blur``,
``unrelated_photo``, ``grid_lines`` (dark lines drawn over the photo), ``jpeg_q3``,
``half_black``, ``over_exposure``, ``thumbnail_upscaled`` (16 px thumbnail scaled back up),
``corner_crop`` (a corner holding 10% of the area, scaled up), ``inversion``.

    .venv/bin/python bench/calibration_set.py --out /tmp/calib [--draws 2] [--sheet sheet.png]
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# Real photographs shipped in scikit-image (colour, plus three grey photos read as RGB).
# motorcycle_left/right are one stereo pair: always in the same split, never each other's
# "unrelated photo".
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "camera.png",
    "coins.png",
    "moon.png",
)
# More real photos that ship inside packages from PyPI (installed with the test extra; nothing is
# downloaded): scikit-image's texture photos, matplotlib's portrait, PyWavelets' aerial and stairs
# photos, mahotas' demo photos. Name -> (package, path inside it); ".npz" holds one array.
MORE_PHOTOS = {
    "brick.png": ("skimage.data", "brick.png"),
    "grass.png": ("skimage.data", "grass.png"),
    "gravel.png": ("skimage.data", "gravel.png"),
    "grace_hopper.jpg": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "aero.npz": ("pywt.data", "aero.npz"),
    "ascent.npz": ("pywt.data", "ascent.npz"),
    "DepartmentStore.jpg": ("mahotas", "demos/data/DepartmentStore.jpg"),
    "luispedro.jpg": ("mahotas", "demos/data/luispedro.jpg"),
}
PHOTOS = PHOTOS + tuple(MORE_PHOTOS)
PAIRS = {"motorcycle_left.png": "motorcycle_right.png", "motorcycle_right.png": "motorcycle_left.png"}
# Split by photo (pairs stay together), 10 photos each: thresholds are chosen on A, reported on B.
SPLIT_A = ("astronaut.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png",
           "retina.jpg", "camera.png", "grace_hopper.jpg", "aero.npz", "brick.png",
           "DepartmentStore.jpg")
MAX_SIDE = 1024  # large photos are brought down to this long side (speed of the bench only)

GOOD_KINDS = (
    "warm_grade", "cool_grade", "lut_look", "black_and_white", "stylisation", "detail_enhance",
    "cartoon", "recrop", "perspective", "rotate_crop", "mirror", "object_removal",
    "object_addition", "vignette",
    # the ordinary edits of issue 22
    "tone_curve", "gamma", "local_contrast", "sepia", "hue_saturation", "flip", "crop",
)
BAD_KINDS = (
    "near_copy", "solid_colour", "pure_noise", "noise", "heavy_blur", "unrelated_photo",
    "grid_lines", "jpeg_q3", "half_black", "over_exposure", "thumbnail_upscaled", "corner_crop",
    "inversion",
    # ruined variations of issue 22: optical blur, things on the lens, heavy coding, sensor noise,
    # and local artefacts (under 1% of the picture)
    "motion_blur", "zoom_blur", "defocus", "frost", "spatter", "heavy_jpeg", "strong_noise",
    "flat_blob", "smear",
)


@dataclass
class Sample:
    photo: str
    kind: str
    label: str  # "good" or "bad"
    draw: int
    image: np.ndarray = field(repr=False)  # uint8 RGB

    @property
    def good(self) -> bool:
        return self.label == "good"


def photo_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def photo_path(name: str) -> Path:
    if name not in MORE_PHOTOS:
        return photo_dir() / name
    import importlib

    package, inside = MORE_PHOTOS[name]
    return Path(importlib.import_module(package).__file__).parent / inside


def load_photo(name: str, *, max_side: int = MAX_SIDE, side: int | None = None) -> np.ndarray:
    """A photo as uint8 RGB: shrunk to ``max_side``, or resized (either way) to ``side``."""
    path = photo_path(name)
    if path.suffix == ".npz":
        with np.load(path) as z:
            rgb = Image.fromarray(np.asarray(z[z.files[0]], np.uint8)).convert("RGB")
    else:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
    w, h = rgb.size
    if side is not None:
        s = side / max(w, h)
        rgb = rgb.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS)
    elif max(w, h) > max_side:
        s = max_side / max(w, h)
        rgb = rgb.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS)
    return np.asarray(rgb)


# ---- helpers --------------------------------------------------------------------------------

def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _resize(a: np.ndarray, w: int, h: int) -> np.ndarray:
    shrink = w < a.shape[1] or h < a.shape[0]
    return cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def _jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def _saturate(a: np.ndarray, factor: float) -> np.ndarray:
    f = a.astype(np.float32)
    grey = f @ np.array([0.299, 0.587, 0.114], np.float32)
    return grey[..., None] + (f - grey[..., None]) * factor


def _crop_scaled(a: np.ndarray, x0: int, y0: int, cw: int, ch: int) -> np.ndarray:
    h, w = a.shape[:2]
    return _resize(a[y0 : y0 + ch, x0 : x0 + cw], w, h)


def _scale(a: np.ndarray) -> float:
    """Pixel lengths are drawn for a 512 px image and scaled to this one."""
    return max(a.shape[:2]) / 512.0


# ---- good edits -----------------------------------------------------------------------------

def warm_grade(a, rng, **_):
    gains = np.array([rng.uniform(1.05, 1.2), rng.uniform(0.98, 1.04), rng.uniform(0.75, 0.92)])
    f = _saturate(a, rng.uniform(0.95, 1.3)) * gains
    return _u8(255.0 * (np.clip(f, 0, 255) / 255.0) ** rng.uniform(0.85, 1.1))


def cool_grade(a, rng, **_):
    gains = np.array([rng.uniform(0.75, 0.93), rng.uniform(0.96, 1.04), rng.uniform(1.05, 1.22)])
    f = _saturate(a, rng.uniform(0.8, 1.15)) * gains
    return _u8(255.0 * (np.clip(f, 0, 255) / 255.0) ** rng.uniform(0.9, 1.15))


def lut_look(a, rng, **_):
    """Per-channel tone curves (an S-curve or fade with a tint), applied as a 256-entry LUT."""
    x = np.linspace(0.0, 1.0, 256)
    luts = []
    for _c in range(3):
        k = rng.uniform(2.0, 7.0)  # S-curve steepness
        s = 1.0 / (1.0 + np.exp(-k * (x - rng.uniform(0.4, 0.6))))
        s = (s - s[0]) / (s[-1] - s[0])
        lift, top = rng.uniform(0.0, 0.15), rng.uniform(0.85, 1.0)
        luts.append(np.clip(255 * (lift + (top - lift) * s), 0, 255).astype(np.uint8))
    lut = np.stack(luts, axis=1)[:, None, :]  # 256 x 1 x 3
    return cv2.LUT(np.ascontiguousarray(a), lut)


def black_and_white(a, rng, **_):
    grey = a.astype(np.float32) @ np.array(rng.dirichlet([4, 6, 2]), np.float32)
    g = 255.0 * (grey / 255.0) ** rng.uniform(0.8, 1.25)
    g = (g - 128) * rng.uniform(1.0, 1.3) + 128
    tint = np.array([1.0, 1.0, 1.0]) if rng.random() < 0.5 else np.array([1.07, 1.0, 0.86])
    return _u8(g[..., None] * tint)


def stylisation(a, rng, **_):
    return cv2.stylization(np.ascontiguousarray(a), sigma_s=rng.uniform(30, 80),
                           sigma_r=rng.uniform(0.25, 0.5))


def detail_enhance(a, rng, **_):
    return cv2.detailEnhance(np.ascontiguousarray(a), sigma_s=rng.uniform(8, 20),
                             sigma_r=rng.uniform(0.1, 0.2))


def cartoon(a, rng, **_):
    h, w = a.shape[:2]
    s = _scale(a)
    small = _resize(a, max(8, w // 2), max(8, h // 2))
    for _ in range(int(rng.integers(3, 6))):
        small = cv2.bilateralFilter(small, 9, 40, 7)
    smooth = _resize(small, w, h).astype(np.float32)
    levels = float(rng.integers(6, 11))
    step = 256.0 / levels
    flat = (np.floor(smooth / step) + 0.5) * step
    grey = cv2.medianBlur(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), 7)
    block = int(9 * s) | 1
    ink = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY,
                                max(3, block), rng.uniform(4, 8))
    return _u8(flat * (ink[..., None] / 255.0))


def recrop(a, rng, **_):
    h, w = a.shape[:2]
    keep = math.sqrt(1.0 - rng.uniform(0.10, 0.25))  # cut 10-25% of the area
    cw, ch = round(w * keep), round(h * keep)
    return _crop_scaled(a, int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)), cw, ch)


def perspective(a, rng, **_):
    h, w = a.shape[:2]
    d = rng.uniform(0.04, 0.10)
    # a keystone: one side of the source quad is pulled in, mapped to the full frame
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    side = int(rng.integers(0, 4))
    pull = np.zeros((4, 2), np.float32)
    for i, j in [(side, (side + 1) % 4)]:
        for k in (i, j):
            pull[k] = (np.float32([w / 2, h / 2]) - src[k]) * d * 2
    jitter = rng.uniform(-0.015, 0.015, (4, 2)) * np.float32([w, h])
    quad = src + pull + (np.float32([w / 2, h / 2]) - src) * 0.03 + jitter.astype(np.float32)
    if rng.random() < 0.5:  # the whole photo kept, tilted inside the frame, black wedges beside
        m = cv2.getPerspectiveTransform(src, quad.astype(np.float32))
        return cv2.warpPerspective(a, m, (w, h), flags=cv2.INTER_CUBIC)
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), src)
    return cv2.warpPerspective(a, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def rotate_crop(a, rng, **_):
    h, w = a.shape[:2]
    ang = rng.uniform(3, 8) * (1 if rng.random() < 0.5 else -1)
    t = math.radians(abs(ang))
    # scale so the rotated frame covers the whole output
    zoom = math.cos(t) + math.sin(t) * max(w / h, h / w)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, zoom)
    return cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def mirror(a, rng, **_):
    return np.ascontiguousarray(a[:, ::-1])


def _busiest_point(a: np.ndarray, rng) -> tuple[int, int]:
    """A point in a textured (object-like) region, not in flat sky: where edges are dense."""
    grey = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(grey, 60, 160).astype(np.float32)
    k = max(9, int(max(a.shape[:2]) / 8)) | 1
    dens = cv2.blur(edges, (k, k))
    h, w = dens.shape
    m = int(min(h, w) * 0.15)
    inner = dens[m : h - m, m : w - m]
    flat = inner.ravel()
    top = np.argsort(flat)[-max(1, flat.size // 50):]
    idx = int(rng.choice(top))
    return m + idx // inner.shape[1], m + idx % inner.shape[1]


def _ellipse_mask(h, w, cy, cx, area, rng) -> np.ndarray:
    ratio = rng.uniform(0.6, 1.6)
    ry = math.sqrt(area / math.pi / ratio)
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy)), (max(1, int(ry * ratio)), max(1, int(ry))),
                rng.uniform(0, 180), 0, 360, 255, -1)
    return mask


def object_removal(a, rng, **_):
    """A retoucher's clone stamp: a region (1-3% of the picture, where edges are dense) covered by
    a feathered copy of the picture beside it, the source placed where the seam matches best
    (the copied ring continues the ring around the hole: texture, edges and colour)."""
    h, w = a.shape[:2]
    f = a.astype(np.float32)
    area = rng.uniform(0.01, 0.03) * h * w
    r = math.sqrt(area / math.pi)
    best = None
    for _ in range(6):  # a few candidate spots, each with candidate sources
        cy, cx = _busiest_point(a, rng)
        mask = _ellipse_mask(h, w, cy, cx, area, rng)
        ring = (cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=max(2, int(r / 4))) > 0) & (mask == 0)
        ry, rx = np.nonzero(ring)
        for _ in range(25):
            ang = rng.uniform(0, 2 * math.pi)
            d = rng.uniform(2.2, 4.0) * r
            dx, dy = int(d * math.cos(ang)), int(d * math.sin(ang))
            sy, sx = ry + dy, rx + dx
            if sy.min() < 0 or sx.min() < 0 or sy.max() >= h or sx.max() >= w:
                continue
            cost = float(np.abs(f[sy, sx] - f[ry, rx]).mean())  # the seam's mismatch
            if best is None or cost < best[0]:
                best = (cost, mask, dx, dy)
    if best is None:  # nowhere to clone from: a plain shift of the picture's centre
        best = (0.0, _ellipse_mask(h, w, h // 2, w // 2, area, rng), int(3 * r), 0)
    _, mask, dx, dy = best
    shift = np.float32([[1, 0, dx], [0, 1, dy]])  # output pixel p takes source pixel p + (dx, dy)
    src = cv2.warpAffine(a, shift, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(1.0, 0.15 * r))
    alpha = np.maximum(alpha, mask / 255.0)[..., None]
    return _u8(a * (1 - alpha) + src * alpha)


def object_addition(a, rng, *, donor: np.ndarray, **_):
    h, w = a.shape[:2]
    side = int(min(h, w) * rng.uniform(0.22, 0.35))
    dh, dw = donor.shape[:2]
    dy, dx = _busiest_point(donor, rng)
    half = min(side // 2, dy, dx, dh - dy - 1, dw - dx - 1)
    half = max(half, 8)
    patch = donor[max(0, dy - half): dy + half, max(0, dx - half): dx + half]
    patch = _resize(np.ascontiguousarray(patch), 2 * half, 2 * half)
    if 2 * half + 4 >= min(h, w):
        half = min(h, w) // 4
        patch = _resize(patch, 2 * half, 2 * half)
    mask = np.zeros(patch.shape[:2], np.uint8)
    cv2.ellipse(mask, (half, half), (half - 3, half - 3), 0, 0, 360, 255, -1)
    cy = int(rng.integers(half + 2, h - half - 2))
    cx = int(rng.integers(half + 2, w - half - 2))
    return cv2.seamlessClone(np.ascontiguousarray(patch), np.ascontiguousarray(a), mask, (cx, cy),
                             cv2.NORMAL_CLONE)


def vignette(a, rng, **_):
    h, w = a.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2
    strength = rng.uniform(0.3, 0.7)
    fall = 1.0 - strength * np.clip(r2 / 2.0, 0, 1) ** rng.uniform(0.8, 1.5)
    return _u8(a.astype(np.float32) * fall[..., None])


# ---- bad edits ------------------------------------------------------------------------------

def near_copy(a, rng, **_):
    h, w = a.shape[:2]
    way = int(rng.integers(0, 5))
    if way == 0:
        return _jpeg(a, int(rng.integers(50, 96)))
    if way == 1:
        return _u8(a.astype(np.float32) * rng.choice([0.95, 0.97, 1.03, 1.05]))
    if way == 2:
        s = rng.uniform(0.5, 0.9)
        return _resize(_resize(a, round(w * s), round(h * s)), w, h)
    if way == 3:
        return _u8(a.astype(np.float32) + rng.choice([-8, -5, 5, 8]))
    return cv2.GaussianBlur(a, (0, 0), rng.uniform(0.4, 0.8))


def solid_colour(a, rng, **_):
    colour = a.reshape(-1, 3).mean(axis=0) if rng.random() < 0.5 else rng.integers(0, 256, 3)
    return np.broadcast_to(_u8(colour), a.shape).copy()


def pure_noise(a, rng, **_):
    if rng.random() < 0.5:
        return rng.integers(0, 256, a.shape, dtype=np.uint8)
    return _u8(rng.normal(128, 50, a.shape))


def noise(a, rng, **_):
    sigma = rng.uniform(20, 60)
    if rng.random() < 0.5:
        n = rng.normal(0, sigma, a.shape)  # colour noise
    else:
        n = rng.normal(0, sigma, a.shape[:2])[..., None]  # luminance noise
    return _u8(a.astype(np.float32) + n)


def heavy_blur(a, rng, **_):
    return cv2.GaussianBlur(a, (0, 0), rng.uniform(0.015, 0.045) * max(a.shape[:2]))


def unrelated_photo(a, rng, *, donor: np.ndarray, **_):
    h, w = a.shape[:2]
    dh, dw = donor.shape[:2]
    s = max(w / dw, h / dh)
    big = _resize(donor, max(w, math.ceil(dw * s)), max(h, math.ceil(dh * s)))
    y0, x0 = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[y0 : y0 + h, x0 : x0 + w])


def grid_lines(a, rng, **_):
    h, w = a.shape[:2]
    s = _scale(a)
    out = a.copy()
    step = int(max(h, w) * rng.uniform(0.05, 0.15))
    thick = max(1, int(round(rng.uniform(1.5, 4) * s)))
    colour = (0, 0, 0) if rng.random() < 0.7 else tuple(int(v) for v in rng.integers(0, 60, 3))
    for x in range(step // 2, w, step):
        cv2.line(out, (x, 0), (x, h - 1), colour, thick)
    for y in range(step // 2, h, step):
        cv2.line(out, (0, y), (w - 1, y), colour, thick)
    return out


def jpeg_q3(a, rng, **_):
    return _jpeg(a, int(rng.integers(2, 5)))


def half_black(a, rng, **_):
    h, w = a.shape[:2]
    out = a.copy()
    side = int(rng.integers(0, 4))
    if side == 0:
        out[:, : w // 2] = 0
    elif side == 1:
        out[:, w // 2 :] = 0
    elif side == 2:
        out[: h // 2] = 0
    else:
        out[h // 2 :] = 0
    return out


def over_exposure(a, rng, **_):
    if rng.random() < 0.5:
        return _u8(a.astype(np.float32) * rng.uniform(2.0, 4.0))
    return _u8(a.astype(np.float32) + rng.uniform(90, 170))


def thumbnail_upscaled(a, rng, **_):
    h, w = a.shape[:2]
    s = 16 / max(h, w)
    thumb = cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    interp = cv2.INTER_LINEAR if rng.random() < 0.5 else cv2.INTER_CUBIC
    return cv2.resize(thumb, (w, h), interpolation=interp)


def corner_crop(a, rng, **_):
    h, w = a.shape[:2]
    k = math.sqrt(rng.uniform(0.07, 0.13))  # a corner holding ~10% of the area
    cw, ch = round(w * k), round(h * k)
    corner = int(rng.integers(0, 4))
    x0 = 0 if corner in (0, 3) else w - cw
    y0 = 0 if corner in (0, 1) else h - ch
    return _crop_scaled(a, x0, y0, cw, ch)


def inversion(a, rng, **_):
    return 255 - a


# ---- ordinary edits (issue 22) ------------------------------------------------------------

def tone_curve(a, rng, **_):
    """A global monotone tone curve through jittered control points (a curves adjustment)."""
    xs = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    # a visible adjustment: the mid-tones move by 0.08-0.18 (lifted or lowered, or an S-curve)
    move = rng.uniform(0.08, 0.18, 5) * rng.choice([-1, 1], 5) * np.array([0.3, 1, 1, 1, 0.3])
    ys = np.sort(np.clip(xs + move, 0, 1))
    lut = np.interp(np.linspace(0, 1, 256), xs, ys)
    lut = np.convolve(np.pad(lut, 8, mode="edge"), np.ones(17) / 17, mode="valid")  # smooth knees
    return cv2.LUT(np.ascontiguousarray(a), _u8(255 * lut))


def gamma(a, rng, **_):
    g = rng.uniform(0.6, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 1.6)
    return cv2.LUT(np.ascontiguousarray(a), _u8(255 * np.linspace(0, 1, 256) ** g))


def local_contrast(a, rng, **_):
    """Local contrast: CLAHE on lightness, or a large-radius unsharp mask ("clarity")."""
    lab = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2LAB)
    if rng.random() < 0.5:
        clahe = cv2.createCLAHE(clipLimit=rng.uniform(1.5, 3.0), tileGridSize=(8, 8))
        lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    else:
        L = lab[..., 0].astype(np.float32)
        blur = cv2.GaussianBlur(L, (0, 0), rng.uniform(0.02, 0.05) * max(a.shape[:2]))
        lab[..., 0] = _u8(L + rng.uniform(0.3, 0.8) * (L - blur))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def sepia(a, rng, **_):
    m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
    f = a.astype(np.float32)
    k = rng.uniform(0.6, 1.0)
    return _u8(f * (1 - k) + (f @ m.T) * k)


def hue_saturation(a, rng, **_):
    hsv = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(6, 18) * rng.choice([-1, 1])) % 256  # 8-25 degrees
    hsv[..., 1] *= rng.uniform(0.6, 0.8) if rng.random() < 0.5 else rng.uniform(1.2, 1.5)
    return cv2.cvtColor(_u8(hsv), cv2.COLOR_HSV2RGB_FULL)


def flip(a, rng, **_):
    """Upside down (a vertical flip) or turned half round (a flip both ways)."""
    return np.ascontiguousarray(a[::-1] if rng.random() < 0.5 else a[::-1, ::-1])


def crop(a, rng, **_):
    """A crop to another shape, not scaled back (the output is smaller than the original)."""
    h, w = a.shape[:2]
    kw, kh = rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.95)
    kh = max(kh, 0.65 / kw)  # at least 65% of the area stays
    cw, ch = round(w * kw), round(h * min(1.0, kh))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return np.ascontiguousarray(a[y0:y0 + ch, x0:x0 + cw])


# ---- ruined variations (issue 22), each from the physics of its artefact ----------------------

def _linear(a):
    return (a.astype(np.float32) / 255.0) ** 2.2  # blur happens to light, not to sRGB codes


def _srgb(lin):
    return _u8(255.0 * np.clip(lin, 0, 1) ** (1 / 2.2))


def motion_blur(a, rng, **_):
    """Camera shake along a line during the exposure: the PSF is a segment of 2-6% of the long
    side at any angle (an anti-aliased line, drawn 4x supersampled)."""
    length = rng.uniform(0.02, 0.06) * max(a.shape[:2])
    k = int(math.ceil(length)) | 1
    big = np.zeros((4 * k, 4 * k), np.float32)
    ang = rng.uniform(0, math.pi)
    c, d = 2 * k - 0.5, 2 * length
    p0 = (int(round(c - d * math.cos(ang))), int(round(c - d * math.sin(ang))))
    p1 = (int(round(c + d * math.cos(ang))), int(round(c + d * math.sin(ang))))
    cv2.line(big, p0, p1, 1.0, 4, cv2.LINE_AA)
    psf = cv2.resize(big, (k, k), interpolation=cv2.INTER_AREA)
    return _srgb(cv2.filter2D(_linear(a), -1, psf / psf.sum(), borderType=cv2.BORDER_REFLECT))


def zoom_blur(a, rng, **_):
    """A zoom during the exposure: the mean of the picture scaled by 1 .. 1 + z about a centre
    (blur along rays from the centre, growing with the distance from it)."""
    h, w = a.shape[:2]
    cx = w / 2 + rng.uniform(-0.15, 0.15) * w
    cy = h / 2 + rng.uniform(-0.15, 0.15) * h
    z = rng.uniform(0.08, 0.25)
    lin = _linear(a)
    acc = np.zeros_like(lin)
    n = 16
    for i in range(n):
        m = cv2.getRotationMatrix2D((cx, cy), 0, 1 + z * i / (n - 1))
        acc += cv2.warpAffine(lin, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return _srgb(acc / n)


def defocus(a, rng, **_):
    """Out of focus: the PSF is the aperture's disc (radius 0.8-2.5% of the long side)."""
    r = rng.uniform(0.008, 0.025) * max(a.shape[:2])
    k = 2 * int(math.ceil(r)) + 1
    big = np.zeros((8 * k, 8 * k), np.float32)
    cv2.circle(big, (4 * k, 4 * k), int(round(8 * r)), 1.0, -1, cv2.LINE_AA)
    psf = cv2.resize(big, (k, k), interpolation=cv2.INTER_AREA)
    return _srgb(cv2.filter2D(_linear(a), -1, psf / psf.sum(), borderType=cv2.BORDER_REFLECT))


def _value_noise(h, w, rng, octaves=5, base=4):
    """Multi-octave smooth noise in [0, 1] (fog, grime)."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = base * 2 ** o
        g = rng.random((n, max(2, round(n * w / h)))).astype(np.float32)
        out += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.55
    out /= total
    return (out - out.min()) / (out.max() - out.min() + 1e-6)


def frost(a, rng, **_):
    """Ice on the glass in front of the lens: hexagonal needle crystals growing from seeds and a
    frosted haze, both scattering white light over the photo (and blurring what is behind)."""
    h, w = a.shape[:2]
    side = max(h, w)
    crystals = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(60, 160))):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        base = rng.uniform(0, math.pi / 3)
        for arm in range(6):
            ang = base + arm * math.pi / 3 + rng.normal(0, 0.08)
            length = rng.uniform(0.01, 0.06) * side
            x1, y1 = x + length * math.cos(ang), y + length * math.sin(ang)
            cv2.line(crystals, (int(x), int(y)), (int(x1), int(y1)), float(rng.uniform(0.5, 1.0)),
                     max(1, int(side / 700)), cv2.LINE_AA)
            for _ in range(int(rng.integers(1, 4))):  # side branches at 60 degrees
                t = rng.uniform(0.3, 0.9)
                bx, by = x + t * (x1 - x), y + t * (y1 - y)
                bang = ang + rng.choice([-1, 1]) * math.pi / 3
                bl = length * rng.uniform(0.2, 0.4)
                cv2.line(crystals, (int(bx), int(by)), (int(bx + bl * math.cos(bang)),
                         int(by + bl * math.sin(bang))), float(rng.uniform(0.4, 0.9)), 1, cv2.LINE_AA)
    haze = _value_noise(h, w, rng) ** 1.5
    layer = np.clip(rng.uniform(0.5, 0.9) * crystals + rng.uniform(0.3, 0.6) * haze, 0, 1)
    behind = cv2.GaussianBlur(a, (0, 0), 0.004 * side + 0.5)  # the ice scatters what lies behind
    t = (rng.uniform(0.5, 0.85) * layer)[..., None]
    return _u8(behind * (1 - t) + rng.uniform(220, 255) * t)


def spatter(a, rng, **_):
    """Drops on the lens: mud (opaque, brown-grey) or water (each drop a small lens: a blurred,
    brightened picture inside, a dark rim), sizes from a power law, covering 6-20%."""
    h, w = a.shape[:2]
    side = max(h, w)
    mask = np.zeros((h, w), np.uint8)
    target = rng.uniform(0.06, 0.2)
    while np.count_nonzero(mask) < target * h * w:
        r = side * 0.004 * (1 - rng.random()) ** -0.9  # many small drops, a few big ones
        r = min(r, 0.05 * side)
        cv2.ellipse(mask, (int(rng.uniform(0, w)), int(rng.uniform(0, h))),
                    (max(1, int(r * rng.uniform(0.7, 1.3))), max(1, int(r * rng.uniform(0.7, 1.3)))),
                    rng.uniform(0, 180), 0, 360, 255, -1)
    m = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.6)[..., None]
    f = a.astype(np.float32)
    if rng.random() < 0.5:  # mud
        colour = np.array([rng.uniform(60, 110), rng.uniform(45, 85), rng.uniform(30, 60)], np.float32)
        shade = colour * (0.8 + 0.4 * _value_noise(h, w, rng, octaves=3, base=16)[..., None])
        return _u8(f * (1 - rng.uniform(0.75, 1.0) * m) + shade * rng.uniform(0.75, 1.0) * m)
    inside = cv2.GaussianBlur(a, (0, 0), 0.01 * side).astype(np.float32) * 0.85 + 40
    rim = (cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0) & (cv2.erode(mask, np.ones((3, 3), np.uint8)) == 0)
    out = f * (1 - m) + inside * m
    out[rim] *= 0.55
    return _u8(out)


def heavy_jpeg(a, rng, **_):
    return _jpeg(a, int(rng.integers(6, 15)))


def strong_noise(a, rng, **_):
    """Sensor noise of several kinds: photon shot noise at a low light level, multiplicative
    speckle, salt and pepper (dead and hot pixels), or high-ISO colour noise (correlated)."""
    way = int(rng.integers(0, 4))
    f = a.astype(np.float32)
    if way == 0:
        peak = rng.uniform(6, 25)  # photons at white
        return _srgb(rng.poisson(_linear(a) * peak) / peak)
    if way == 1:
        return _u8(f * (1 + rng.normal(0, rng.uniform(0.25, 0.5), a.shape[:2])[..., None]))
    if way == 2:
        out = a.copy()
        u = rng.random(a.shape[:2])
        d = rng.uniform(0.04, 0.12)
        out[u < d / 2] = 0
        out[u > 1 - d / 2] = 255
        return out
    n = rng.normal(0, rng.uniform(40, 80), a.shape).astype(np.float32)
    return _u8(f + cv2.GaussianBlur(n, (0, 0), 0.8))


def flat_blob(a, rng, **_):
    """A local artefact: a textured patch (0.3-1% of the picture) blown flat (white, or its own
    mean colour), as a failed fill or a clipped highlight leaves it."""
    h, w = a.shape[:2]
    cy, cx = _busiest_point(a, rng)
    mask = _ellipse_mask(h, w, cy, cx, rng.uniform(0.003, 0.01) * h * w, rng)
    colour = (np.full(3, rng.uniform(245, 255)) if rng.random() < 0.5
              else a[mask > 0].reshape(-1, 3).mean(0))
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 1.0)[..., None]
    return _u8(a * (1 - alpha) + colour * alpha)


def smear(a, rng, **_):
    """A local artefact: a textured patch (0.4-1.5% of the picture) smeared by diffusion
    (cv2.inpaint), as a fill that could not find texture leaves it."""
    h, w = a.shape[:2]
    cy, cx = _busiest_point(a, rng)
    mask = _ellipse_mask(h, w, cy, cx, rng.uniform(0.004, 0.015) * h * w, rng)
    method = cv2.INPAINT_TELEA if rng.random() < 0.5 else cv2.INPAINT_NS
    return cv2.inpaint(np.ascontiguousarray(a), mask, max(3, int(5 * _scale(a))), method)


EDITS = {name: globals()[name] for name in GOOD_KINDS + BAD_KINDS}
NEEDS_DONOR = ("object_addition", "unrelated_photo")
# texture tiles hold no object to add (a patch of brick pasted on a cup is not an added object)
NOT_DONORS = ("brick.png", "grass.png", "gravel.png")
# colour-only edits do nothing to a grey photo (the result is a copy, not a variation)
COLOUR_ONLY = ("hue_saturation",)


def _is_grey(a: np.ndarray) -> bool:
    f = a.astype(np.int16)
    return int(np.abs(f[..., 0] - f[..., 1]).max()) <= 2 and int(np.abs(f[..., 1] - f[..., 2]).max()) <= 2


def _donor_for(photo: str, photos: list[str], rng) -> str:
    choices = [p for p in photos if p != photo and PAIRS.get(photo) != p and p not in NOT_DONORS]
    return choices[int(rng.integers(0, len(choices)))]


def build_set(*, photos=PHOTOS, kinds=GOOD_KINDS + BAD_KINDS, draws: int = 2, seed: int = 0,
              max_side: int = MAX_SIDE, side: int | None = None):
    """Yield ``(original_name, original_rgb, [Sample, ...])`` per photo, deterministic in ``seed``.

    ``side`` resizes every photo to that long side first (to test other resolutions).
    """
    unknown = [k for k in kinds if k not in EDITS]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; choose from {sorted(EDITS)}")
    cache = {p: load_photo(p, max_side=max_side, side=side) for p in PHOTOS}
    for pi, photo in enumerate(photos):
        original = cache[photo]
        samples = []
        for ki, kind in enumerate(kinds):
            if kind in COLOUR_ONLY and _is_grey(original):
                continue
            for d in range(draws):
                rng = np.random.default_rng([seed, pi, ki, d])
                extra = {}
                if kind in NEEDS_DONOR:
                    extra["donor"] = cache[_donor_for(photo, list(PHOTOS), rng)]
                img = EDITS[kind](original, rng, **extra)
                assert img.dtype == np.uint8 and img.ndim == 3, (kind, img.shape)
                assert img.shape == original.shape or kind == "crop", (kind, img.shape)
                samples.append(Sample(photo, kind, "good" if kind in GOOD_KINDS else "bad", d, img))
        yield photo, original, samples


def contact_sheet(images: list[np.ndarray], labels: list[str], *, cols: int = 6, cell: int = 200):
    """A grid of thumbnails with their labels (for looking at the set)."""
    rows = math.ceil(len(images) / cols)
    sheet = np.full((rows * (cell + 18), cols * cell, 3), 255, np.uint8)
    for i, (img, text) in enumerate(zip(images, labels)):
        h, w = img.shape[:2]
        s = cell / max(h, w)
        t = _resize(img, max(1, round(w * s)), max(1, round(h * s)))
        r, c = divmod(i, cols)
        y, x = r * (cell + 18), c * cell
        sheet[y : y + t.shape[0], x : x + t.shape[1]] = t
        cv2.putText(sheet, text[:30], (x + 2, y + cell + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write originals, variations and labels.csv here")
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sheet", type=Path, help="write a contact sheet (PNG) of one photo's set")
    ap.add_argument("--sheet-photo", default="astronaut.png")
    args = ap.parse_args()
    rows = []
    for photo, original, samples in build_set(draws=args.draws, seed=args.seed):
        stem = Path(photo).stem
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(original).save(args.out / f"{stem}__original.png")
        for s in samples:
            name = f"{stem}__{s.kind}__{s.draw}.png"
            if args.out:
                Image.fromarray(s.image).save(args.out / name)
            rows.append((name, photo, s.kind, s.label, s.draw))
        if args.sheet and photo == args.sheet_photo:
            picked = [original] + [s.image for s in samples if s.draw == 0]
            labels = ["original"] + [f"{s.label}: {s.kind}" for s in samples if s.draw == 0]
            Image.fromarray(contact_sheet(picked, labels)).save(args.sheet)
    if args.out:
        with open(args.out / "labels.csv", "w", newline="") as f:
            csv.writer(f).writerows([("file", "photo", "kind", "label", "draw"), *rows])
    good = sum(r[3] == "good" for r in rows)
    print(f"{len(rows)} variations ({good} good, {len(rows) - good} bad) of {len(PHOTOS)} photos, "
          f"{len(GOOD_KINDS)} good kinds, {len(BAD_KINDS)} bad kinds, {args.draws} draws each")


if __name__ == "__main__":
    main()
