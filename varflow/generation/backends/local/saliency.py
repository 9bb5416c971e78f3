"""Where the subject and the distinct objects of a photo are, from classical saliency cues.

No model: a region stands out when its colour differs from its surroundings (centre-surround
contrast in Lab at several scales) and from the colours along the picture's border (the border
is mostly background), with a mild preference for the centre. The map is computed on a small
copy (``WORK_SIDE`` px on the long side); boxes are returned in full-size pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .imaging import resize_long

WORK_SIDE = 256  # long side of the copy the maps are computed on


@dataclass(frozen=True)
class Saliency:
    """A saliency map in [0, 1] at the working size, and the working copy it was computed on."""

    map: np.ndarray  # float32, h x w
    small: np.ndarray  # uint8 RGB, h x w
    lab: np.ndarray  # float32 Lab of ``small`` (OpenCV's 8-bit scaling)
    contrast: np.ndarray  # centre-surround contrast alone, [0, 1]
    scale: float  # small = full x scale

    def to_full(self, box) -> tuple[int, int, int, int]:
        x, y, w, h = box
        s = self.scale
        return (int(round(x / s)), int(round(y / s)), max(1, int(round(w / s))), max(1, int(round(h / s))))


def _norm(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(a, np.float32)


def saliency(img: np.ndarray) -> Saliency:
    small, scale = resize_long(img, WORK_SIDE)
    small = np.ascontiguousarray(small)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    h, w = small.shape[:2]
    L = max(h, w)
    contrast = np.zeros((h, w), np.float32)
    for centre, surround in ((1.0, L / 40), (1.5, L / 20), (2.5, L / 10)):
        c = cv2.GaussianBlur(lab, (0, 0), centre)
        s = cv2.GaussianBlur(lab, (0, 0), surround)
        contrast += np.sqrt(((c - s) ** 2).sum(-1))
    contrast = _norm(contrast)
    # unlike the border: distance to the nearest of a few dozen border colours
    b = max(2, L // 40)
    border = np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3),
                             lab[:, :b].reshape(-1, 3), lab[:, -b:].reshape(-1, 3)])
    border = border[:: max(1, len(border) // 40)]
    blur = cv2.GaussianBlur(lab, (0, 0), 2.0)
    coarse = cv2.resize(blur, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    d = np.full(coarse.shape[:2], np.inf, np.float32)
    for colour in border:
        d = np.minimum(d, ((coarse - colour) ** 2).sum(-1))
    unlike = cv2.resize(_norm(np.sqrt(d)), (w, h), interpolation=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    centre_prior = np.exp(-(((xx / w - 0.5) ** 2) + ((yy / h - 0.5) ** 2)) / 0.25)
    sal = _norm(contrast * (0.35 + 0.65 * unlike) * (0.5 + 0.5 * centre_prior))
    sal = cv2.GaussianBlur(sal, (0, 0), max(1.0, L / 128))
    return Saliency(_norm(sal), small, lab, contrast, scale)


@dataclass(frozen=True)
class Subject:
    """The photo's main subject: a full-size box, its weighted centre, and its core on the
    saliency map's grid (the most salient regions that make up the subject)."""

    box: tuple[int, int, int, int]
    centre: tuple[float, float]
    core: np.ndarray  # bool, the saliency map's size


def subject(sal: Saliency, *, mass: float = 0.75) -> Subject:
    """The union of the most salient connected regions that together hold ``mass`` of the
    saliency above the 80th percentile (a subject in several parts stays one subject)."""
    m = sal.map
    h, w = m.shape
    thr = float(np.quantile(m, 0.8))
    binm = (m >= thr).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(binm, connectivity=8)
    weights = np.bincount(lab.ravel(), weights=(m * binm).ravel(), minlength=n)
    order = np.argsort(-weights[1:]) + 1
    total = float(weights[1:].sum()) or 1.0
    keep, acc = [], 0.0
    for i in order:
        keep.append(int(i))
        acc += float(weights[i])
        if acc >= mass * total:
            break
    if keep:
        xs0 = min(stats[i, 0] for i in keep)
        ys0 = min(stats[i, 1] for i in keep)
        xs1 = max(stats[i, 0] + stats[i, 2] for i in keep)
        ys1 = max(stats[i, 1] + stats[i, 3] for i in keep)
        box = (int(xs0), int(ys0), int(xs1 - xs0), int(ys1 - ys0))
        core = np.isin(lab, keep)
    else:
        box = (w // 4, h // 4, w // 2, h // 2)
        core = np.zeros((h, w), bool)
        core[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = True
    wts = m * core
    tot = float(wts.sum()) or 1.0
    yy, xx = np.mgrid[:h, :w]
    cx = float((wts * (xx + 0.5)).sum() / tot) / sal.scale
    cy = float((wts * (yy + 0.5)).sum() / tot) / sal.scale
    return Subject(sal.to_full(box), (cx, cy), core)
