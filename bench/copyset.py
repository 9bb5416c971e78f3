"""Evaluation sets for copy-finding: distinct procedural pictures, and copies made with hard and easy edits.

Nothing is downloaded. ``procedural(rng)`` draws a picture from random parts: a gradient, a
band-limited colour texture, shapes (ellipses, rectangles, polygons, lines) and random text, so
no two are alike; ``copy_of(im, kind, rng)`` makes one copy of a picture with one edit.
Shared by bench/dedup_quality.py and bench/dedup_scale.py.
"""

from __future__ import annotations

import io
import string

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

HARD = ("crop", "mirror", "border", "letterbox", "rotate")
EASY = ("jpeg", "resize", "colour", "text", "noise", "blur")
KINDS = HARD + EASY


def procedural(rng: np.random.Generator, size: tuple[int, int] | None = None) -> Image.Image:
    """A random picture (RGB): gradient + texture + 6-20 shapes + 1-3 random strings."""
    w, h = size or (int(rng.integers(560, 900)), int(rng.integers(420, 700)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = (c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None])
    scale = float(rng.uniform(4, 40))  # texture: low-pass noise of a random grain, random strength
    small = rng.normal(0, 1, (max(2, int(h / scale)), max(2, int(w / scale)), 3)).astype(np.float32)
    tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img += tex * rng.uniform(5, 40)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(6, 21))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        thick = -1 if rng.random() < 0.6 else int(rng.integers(1, 6))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        if kind == 0:
            axes = (int(rng.integers(5, w // 4)), int(rng.integers(5, h // 4)))
            cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, thick, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (cx, cy), (cx + int(rng.integers(10, w // 3)), cy + int(rng.integers(10, h // 3))),
                          colour, thick, cv2.LINE_AA)
        elif kind == 2:
            pts = rng.integers(0, [w, h], (int(rng.integers(3, 7)), 2)).astype(np.int32)
            if thick < 0:
                cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
            else:
                cv2.polylines(img, [pts], True, colour, thick, cv2.LINE_AA)
        else:
            cv2.line(img, (cx, cy), (int(rng.integers(0, w)), int(rng.integers(0, h))), colour,
                     int(rng.integers(1, 8)), cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 4))):
        text = "".join(rng.choice(list(string.ascii_letters + string.digits), int(rng.integers(4, 12))))
        cv2.putText(img, text, (int(rng.integers(0, w // 2)), int(rng.integers(30, h))), int(rng.integers(0, 8)),
                    float(rng.uniform(0.8, 3.0)), tuple(int(v) for v in rng.integers(0, 256, 3)),
                    int(rng.integers(1, 5)), cv2.LINE_AA)
    return Image.fromarray(img)


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def copy_of(im: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One copy of ``im`` with one edit: crop 60-80% of the area at a random place, mirror, a
    5-12% border of one colour, letterboxing to 16:9 or 4:3, rotation by 3-15 degrees (with the
    corners filled, or the canvas grown), or the easy ones (JPEG q25-50, resize 40-70%, colour
    grade, a caption, noise, blur)."""
    w, h = im.size
    if kind == "crop":
        area = rng.uniform(0.6, 0.8)
        aspect = rng.uniform(0.85, 1.15)
        cw, ch = min(w, int(w * np.sqrt(area) * aspect)), min(h, int(h * np.sqrt(area) / aspect))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return im.crop((x, y, x + cw, y + ch))
    if kind == "mirror":
        return ImageOps.mirror(im)
    if kind == "border":
        b = int(rng.uniform(0.05, 0.12) * max(w, h))
        return ImageOps.expand(im, b, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    if kind == "letterbox":
        ratio = 16 / 9 if rng.random() < 0.5 else 4 / 3
        if w / h < ratio:
            cw, ch = int(round(h * ratio)), h
        else:
            cw, ch = w, int(round(w / ratio))
        cw, ch = cw + 2 * int(rng.integers(0, 20)), ch + 2 * int(rng.integers(0, 20))
        canvas = Image.new("RGB", (cw, ch), (0, 0, 0) if rng.random() < 0.7 else (255, 255, 255))
        canvas.paste(im, ((cw - w) // 2, (ch - h) // 2))
        return canvas
    if kind == "rotate":
        angle = float(rng.uniform(3, 15)) * (1 if rng.random() < 0.5 else -1)
        return im.rotate(angle, resample=Image.Resampling.BICUBIC, expand=bool(rng.random() < 0.5))
    if kind == "jpeg":
        return _jpeg(im, int(rng.integers(25, 51)))
    if kind == "resize":
        f = rng.uniform(0.4, 0.7)
        return im.resize((max(8, int(w * f)), max(8, int(h * f))), Image.Resampling.LANCZOS)
    if kind == "colour":
        im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.25))
        return ImageEnhance.Color(im).enhance(rng.uniform(0.0, 1.8))
    if kind == "text":
        im = im.copy()
        d = ImageDraw.Draw(im)
        caption = "".join(rng.choice(list(string.ascii_uppercase + " "), 14))
        d.text((int(w * rng.uniform(0.02, 0.3)), int(h * rng.uniform(0.1, 0.85))), caption,
               fill=tuple(int(v) for v in rng.integers(0, 256, 3)), font_size=max(12, h // 14))
        return im
    if kind == "noise":
        a = np.asarray(im).astype(np.float32)
        return Image.fromarray(np.clip(a + rng.normal(0, rng.uniform(4, 12), a.shape), 0, 255).astype(np.uint8))
    if kind == "blur":
        return Image.fromarray(cv2.GaussianBlur(np.asarray(im), (0, 0), float(rng.uniform(1.0, 2.5))))
    raise ValueError(f"unknown copy kind {kind!r}; one of {', '.join(KINDS)}")
