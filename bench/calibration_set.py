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
``recrop`` (10-25% of the area cut away, scaled back), ``perspective`` (a keystone change),
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
PAIRS = {"motorcycle_left.png": "motorcycle_right.png", "motorcycle_right.png": "motorcycle_left.png"}
# Held-out split by photo (pairs stay together): thresholds are chosen on A, reported on both.
SPLIT_A = ("astronaut.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png",
           "retina.jpg", "camera.png")
MAX_SIDE = 1024  # large photos are brought down to this long side (speed of the bench only)

GOOD_KINDS = (
    "warm_grade", "cool_grade", "lut_look", "black_and_white", "stylisation", "detail_enhance",
    "cartoon", "recrop", "perspective", "rotate_crop", "mirror", "object_removal",
    "object_addition", "vignette",
)
BAD_KINDS = (
    "near_copy", "solid_colour", "pure_noise", "noise", "heavy_blur", "unrelated_photo",
    "grid_lines", "jpeg_q3", "half_black", "over_exposure", "thumbnail_upscaled", "corner_crop",
    "inversion",
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


def load_photo(name: str, *, max_side: int = MAX_SIDE) -> np.ndarray:
    with Image.open(photo_dir() / name) as im:
        rgb = im.convert("RGB")
    w, h = rgb.size
    if max(w, h) > max_side:
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


def object_removal(a, rng, **_):
    h, w = a.shape[:2]
    cy, cx = _busiest_point(a, rng)
    area = rng.uniform(0.02, 0.06) * h * w
    ratio = rng.uniform(0.6, 1.6)
    ry = math.sqrt(area / math.pi / ratio)
    rx = ry * ratio
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(rx), int(ry)), rng.uniform(0, 180), 0, 360, 255, -1)
    return cv2.inpaint(np.ascontiguousarray(a), mask, max(3, int(5 * _scale(a))), cv2.INPAINT_TELEA)


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


EDITS = {name: globals()[name] for name in GOOD_KINDS + BAD_KINDS}
NEEDS_DONOR = ("object_addition", "unrelated_photo")


def _donor_for(photo: str, photos: list[str], rng) -> str:
    choices = [p for p in photos if p != photo and PAIRS.get(photo) != p]
    return choices[int(rng.integers(0, len(choices)))]


def build_set(*, photos=PHOTOS, kinds=GOOD_KINDS + BAD_KINDS, draws: int = 2, seed: int = 0,
              max_side: int = MAX_SIDE):
    """Yield ``(original_name, original_rgb, [Sample, ...])`` per photo, deterministic in ``seed``."""
    unknown = [k for k in kinds if k not in EDITS]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; choose from {sorted(EDITS)}")
    cache = {p: load_photo(p, max_side=max_side) for p in PHOTOS}
    for pi, photo in enumerate(photos):
        original = cache[photo]
        samples = []
        for ki, kind in enumerate(kinds):
            for d in range(draws):
                rng = np.random.default_rng([seed, pi, ki, d])
                extra = {}
                if kind in NEEDS_DONOR:
                    extra["donor"] = cache[_donor_for(photo, list(PHOTOS), rng)]
                img = EDITS[kind](original, rng, **extra)
                assert img.shape == original.shape and img.dtype == np.uint8, (kind, img.shape)
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
