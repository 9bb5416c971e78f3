"""Object edits: find distinct objects, then remove one, add a copy of one, or move one.

An *object* here is a compact region that stands out from a calm surround (a galaxy on black, a
reflection on a saucer, a pole against the sky, a model on a plain backdrop): its colour differs
from the ring of pixels around it, it is small to medium, it does not touch the frame, its
surround is calm and goes on around it (the same surface), and it is not part of the photo's
main subject or a face (an eye, a handle, a cup's contents: removing those mutilates the
subject rather than editing the scene). Only such a region can be edited plausibly, because its
surround shows what lies behind it; a photo without one gets ``NoObject`` (the generator's
``no_object`` outcome) rather than a smeared edit.

* **remove**: the hole (the object grown a little, to take its soft edge and contact shadow)
  is filled by patch-based completion (:mod:`.fill`).
* **add**: a copy of the object is cloned (``cv2.seamlessClone``, a Poisson blend, so its edge
  takes the new surroundings' colours without a seam) beside it on the same base line, where
  every side of the copy's surround looks like the object's own and nothing salient is covered.
  Tall thin objects (poles, towers) are never copied or moved: they stand on something, and a
  copy would float.
* **move**: remove, then clone the object from the original photo into such a spot.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from . import fill, regions
from .imaging import Op, resize_long
from .saliency import Saliency, Subject

OBJECT_AREA = (0.002, 0.06)  # an editable object covers this share of the picture
HOLE_GROW = 0.1  # a removal mask grows by this share of the object's size (edges, shadows)
SEGMENT_SIDE = 200  # long side of the copy the proposals are computed on
MAX_OBJECTS = 6
MAX_CONTINUES = 0.15  # share of the ring that may look like the object itself (part of more)
MIN_SCORE = 0.12  # weaker candidates are not objects worth editing
RING_SPREAD, MIN_RING_SPREAD = 0.9, 12.0  # the surround's colour spread may reach this x contrast
MAX_RING_GRADIENT = 2.0  # the surround's mean gradient may reach this x the picture's median
MAX_IN_SUBJECT = 0.5  # share of a region that may lie in the main subject's core
MIN_SURFACE = 0.5  # share of a wider ring that must look like the near ring (the same surface)
ELONGATED = 2.5  # a longer side this many times the shorter: a pole or a tower, not free-standing
COVERS = 0.03  # a copy's spot may hold at most this share of pixels unlike the surface around it ...
UNLIKE = 25.0  # ... unlike: this many Lab units (8-bit scale) from it, or 3x its spread


class NoObject(Exception):
    """The photo has no distinct object that can be edited plausibly."""


@dataclass
class Region:
    """An object: its full-size box, its mask inside the box (uint8 0/255) and how good a
    candidate it is (higher is better)."""

    x: int
    y: int
    w: int
    h: int
    mask: np.ndarray
    score: float
    area: float  # share of the picture
    small_box: tuple = ()  # the box on the proposals' small copy
    free_standing: bool = True  # not tall and thin (a copy can stand on its own)

    @property
    def box(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]

    def full_mask(self, shape) -> np.ndarray:
        m = np.zeros(shape[:2], np.uint8)
        m[self.y:self.y + self.h, self.x:self.x + self.w] = self.mask
        return m


def where(box, shape) -> str:
    """'top left', 'centre', 'bottom right', ... for a box in a picture of ``shape``."""
    H, W = shape[:2]
    x, y, w, h = box
    cx, cy = (x + w / 2) / W, (y + h / 2) / H
    v = "top" if cy < 0.36 else ("bottom" if cy > 0.64 else "middle")
    hz = "left" if cx < 0.36 else ("right" if cx > 0.64 else "centre")
    if (v, hz) == ("middle", "centre"):
        return "centre"
    return f"{v} {hz}" if v != "middle" else f"{hz} side" if hz != "centre" else "centre"


# ----------------------------------------------------------------------------------------------
# finding objects


def find_objects(img: np.ndarray, sal: Saliency, subj: Subject, *, area=OBJECT_AREA) -> list[Region]:
    """Distinct objects, best first (see the module docstring for what counts).

    Proposals come from hierarchical grouping (:mod:`.regions`); each is scored by how much its
    colour differs from the ring of pixels around it, how calm that ring is, how solid the
    region is, how close its size is to a typical object, and how little of it lies in the main
    subject's core. Regions that touch the frame, are lights or highlights, continue past
    their ring (only part of something larger) or overlap a face are skipped.
    """
    small, s = resize_long(sal.small, SEGMENT_SIDE)
    small = np.ascontiguousarray(small)
    scene = _scene(small, subj)
    scored = [c for p in regions.proposals(small, scene.seg) if (c := _candidate(p, scene, area)) is not None]
    scored.sort(key=lambda t: -t[0])
    return _distinct(img, small, scored, sal.scale * s)


@dataclass
class _Scene:
    """What every proposal of one image is scored against, at the segmentation's size."""

    seg: np.ndarray
    lab: np.ndarray
    grad: np.ndarray
    calm_ref: float
    core: np.ndarray
    labels: int
    w: int
    h: int


def _scene(small: np.ndarray, subj: Subject) -> _Scene:
    h, w = small.shape[:2]
    grad, seg = _gradient(small), regions.segment(small)
    return _Scene(seg=seg, lab=cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32),
                  grad=grad, calm_ref=float(np.median(grad)) + 1.0,
                  core=cv2.resize(subj.core.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0,
                  labels=int(seg.max()) + 1, w=w, h=h)


def _candidate(p, sc: _Scene, area) -> tuple | None:
    """(score, proposal, mask, window origin, area fraction, free-standing) of a proposal that
    may be an object, or None."""
    w, h = sc.w, sc.h
    frac = p.size / float(h * w)
    x0, y0, x1, y1 = p.box
    if not area[0] <= frac <= area[1]:
        return None
    if x0 <= 1 or y0 <= 1 or x1 >= w - 1 or y1 >= h - 1:
        return None  # touches the frame: what lies behind it is unknown on one side
    bw, bh = x1 - x0, y1 - y0
    if max(bw, bh) > 0.45 * max(w, h) or min(bw, bh) < 3:
        return None
    m = max(4, int(0.6 * max(bw, bh)))
    window = (max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m))
    gx0, gy0, gx1, gy1 = window
    lut = np.zeros(sc.labels, bool)
    lut[p.members] = True
    mask = lut[sc.seg[gy0:gy1, gx0:gx1]].astype(np.uint8)
    surround = _surround(sc, window, mask, m)
    if surround is None:
        return None
    stand_out, calm, in_subject = surround
    solidity = p.size / float(bw * bh)
    size_pref = math.exp(-((math.log(frac / 0.01)) ** 2) / 6.0)
    score = stand_out * calm * min(1.0, 2.0 * solidity) * (0.4 + 0.6 * size_pref) * (1.0 - 0.8 * in_subject)
    if score < MIN_SCORE:
        return None
    # tall thin things (poles, towers, bottles) stand on something even when the ring hides it:
    # a copy of one would float
    free = max(bw, bh) <= ELONGATED * min(bw, bh)
    return score, p, mask, (gx0, gy0), frac, free


def _surround(sc: _Scene, window: tuple, mask: np.ndarray, m: int) -> tuple[float, float, float] | None:
    """How the region sits on the surface around it: (its contrast over the ring's spread, the
    ring's calm, its share of the main subject), or None when it is a light, part of something
    larger, on a busy or mixed surround, or part of the main subject."""
    gx0, gy0, gx1, gy1 = window
    # distance of every pixel of the window to the region: rings are bands of it
    dist = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, 3)
    ring = (dist > 0) & (dist <= 2.5)
    roi = sc.lab[gy0:gy1, gx0:gx1]
    inside, outside = roi[mask > 0], roi[ring]
    if len(outside) < 8:
        return None
    colour = inside.mean(0)
    contrast = float(np.linalg.norm(colour - outside.mean(0)))
    chroma = float(np.hypot(colour[1] - 128, colour[2] - 128))
    if colour[0] >= 240 or (colour[0] >= 190 and chroma < 14 and colour[0] > outside.mean(0)[0] + 60):
        return None  # a light or a specular highlight, not an object
    continues = float((np.linalg.norm(outside - colour, axis=1) < 0.4 * contrast).mean())
    if continues > MAX_CONTINUES:
        return None
    ring_std = float(np.sqrt(outside.var(0).sum()))
    if ring_std > max(MIN_RING_SPREAD, RING_SPREAD * contrast):
        return None  # a busy or mixed surround: the region is part of a scene, not on a surface
    # the surface goes on around the object (a spoon on a saucer), rather than being a thin
    # band that encloses it (coffee in a cup)
    far = (dist > max(2, m // 3)) & (dist <= max(3, m - 1))
    if far.any():
        near_far = np.linalg.norm(roi[far] - outside.mean(0), axis=1) < max(12.0, 1.5 * ring_std)
        if float(near_far.mean()) < MIN_SURFACE:
            return None
    ring_grad = float(sc.grad[gy0:gy1, gx0:gx1][ring].mean())
    if ring_grad > MAX_RING_GRADIENT * sc.calm_ref:
        return None  # a busy surround (clutter, fur): a fill there shows
    calm = 1.0 / (1.0 + ring_grad / (2.0 * sc.calm_ref))
    in_subject = float(sc.core[gy0:gy1, gx0:gx1][mask > 0].mean())
    if in_subject > MAX_IN_SUBJECT:
        return None  # a part of the main subject (an eye, a handle, a cup's contents)
    return contrast / (10.0 + ring_std), calm, in_subject


def _distinct(img: np.ndarray, small: np.ndarray, scored: list, scale: float) -> list[Region]:
    """The best candidates that overlap neither a better one nor a face, as full-size regions."""
    faces = _faces(small) if scored else []
    found: list[Region] = []
    for score, p, mask, origin, frac, free in scored:
        box = (p.box[0], p.box[1], p.box[2] - p.box[0], p.box[3] - p.box[1])
        if any(_overlap(box, r.small_box) > 0.3 for r in found):
            continue
        if any(_overlap(box, f) > 0.05 for f in faces):
            continue
        reg = _to_full(img, mask, origin, scale, score, frac)
        if reg is not None:
            reg.small_box = box
            reg.free_standing = bool(free)
            found.append(reg)
        if len(found) >= MAX_OBJECTS:
            break
    return found


def best_first(found: list[Region]) -> list[Region]:
    """The regions, most distinct first: the order attempts walk through (attempt k starts at the k-th)."""
    return sorted(found, key=lambda r: -r.score)


def _to_full(img, mask, origin, scale, score, frac) -> Region | None:
    """The small mask (at ``origin`` in the small image) as a full-size box and mask."""
    H, W = img.shape[:2]
    mx, my, mw, mh = cv2.boundingRect(mask)
    ax, ay = origin[0] + mx, origin[1] + my
    fx0, fy0 = int(math.floor(ax / scale)), int(math.floor(ay / scale))
    fx1, fy1 = min(W, int(math.ceil((ax + mw) / scale))), min(H, int(math.ceil((ay + mh) / scale)))
    if fx1 - fx0 < 3 or fy1 - fy0 < 3:
        return None
    m = cv2.resize(mask[my:my + mh, mx:mx + mw].astype(np.float32), (fx1 - fx0, fy1 - fy0),
                   interpolation=cv2.INTER_LINEAR)
    full = (m >= 0.5).astype(np.uint8) * 255
    if not full.any():
        return None
    return Region(fx0, fy0, fx1 - fx0, fy1 - fy0, full, float(score), float(frac))


def _overlap(a, b) -> float:
    """Intersection over the smaller box."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy / max(1, min(aw * ah, bw * bh))


def _gradient(small: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))


_FACE_DETECTOR = None
_FACE_LOCK = threading.Lock()  # one detector object, generators may run in several threads


def _faces(small) -> list[tuple[int, int, int, int]]:
    """Face boxes (grown to take in hair and chin) from scikit-image's bundled frontal-face
    cascade: a face is never an object to remove, copy or move."""
    global _FACE_DETECTOR
    side = max(small.shape[:2])
    with _FACE_LOCK:
        if _FACE_DETECTOR is None:
            import os

            import skimage.data
            from skimage.feature import Cascade

            _FACE_DETECTOR = Cascade(os.path.join(os.path.dirname(skimage.data.__file__),
                                                  "lbpcascade_frontalface_opencv.xml"))
        hits = _FACE_DETECTOR.detect_multi_scale(img=small, scale_factor=1.2, step_ratio=1, min_size=(20, 20),
                                                 max_size=(side, side), min_neighbor_number=4)
    boxes = []
    for d in hits:
        x, y, w, h = d["c"], d["r"], d["width"], d["height"]
        g = 0.35
        boxes.append((int(x - g * w), int(y - g * h), int(w * (1 + 2 * g)), int(h * (1 + 2 * g))))
    return boxes


# ----------------------------------------------------------------------------------------------
# edits


def _grow(mask: np.ndarray, radius: float) -> np.ndarray:
    """``mask`` (uint8 0/255) grown by ``radius`` px (a distance transform: any radius, one pass)."""
    if radius <= 0:
        return mask
    dist = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, 3)
    return (dist <= radius).astype(np.uint8) * 255


def hole_mask(img: np.ndarray, region: Region) -> np.ndarray:
    """The region's mask grown to cover its soft edges and contact shadow (full size)."""
    H, W = img.shape[:2]
    grow = int(round(HOLE_GROW * max(region.w, region.h) + 0.004 * max(H, W))) + 1
    return _grow(region.full_mask(img.shape), grow)


def remove(img: np.ndarray, region: Region, rng: np.random.Generator):
    """The photo without ``region``: its (grown) hole filled by patch-based completion."""
    hole = hole_mask(img, region)
    out = fill.fill_hole(img, hole, rng)
    return out, Op("remove_object", {"box": region.box, "area": region.area, "fill": "patch_completion"})


def free_spot(img, region: Region, sal: Saliency, rng: np.random.Generator, *, avoid=(), scale_range=(0.9, 1.05)):
    """Where a copy of ``region`` could sit: a box (full size) beside the object at nearly the
    same height (so it rests on the same level: a second tower on the same ground, a second box
    on the same shelf), on the same kind of surface on every side, clear of salient content, the
    object and ``avoid`` boxes. Returns (x, y, scale) or None."""
    H, W = img.shape[:2]
    lab, smap = sal.lab, sal.map
    h, w = smap.shape
    s = sal.scale
    ox, oy, ow, oh = (v * s for v in region.box)
    own = _ring_colour(lab, (ox, oy, ow, oh))
    if own is None:
        return None
    cands = []
    for _ in range(60):
        sc = float(rng.uniform(*scale_range))
        bw, bh = ow * sc, oh * sc
        if bw >= w - 4 or bh >= h - 4:
            continue
        x = float(rng.uniform(2, w - bw - 2))
        y = float(np.clip(oy + oh - bh + rng.uniform(-0.04, 0.04) * h, 2, h - bh - 2))  # same base line
        box = (x, y, bw, bh)
        if _overlap_f(box, (ox - ow * 0.3, oy - oh * 0.3, ow * 1.6, oh * 1.6)) > 0:
            continue
        if any(_overlap_f(box, tuple(v * s for v in a)) > 0 for a in avoid):
            continue
        ring = _ring_colour(lab, box)
        if ring is None or _covers_something(lab, box, ring):
            continue
        xi, yi = int(x), int(y)
        busy = float(smap[yi:yi + int(bh) + 1, xi:xi + int(bw) + 1].mean())
        surface = float(np.linalg.norm(ring - own, axis=1).max())  # every side must match
        cost = surface + 60.0 * busy
        cands.append((cost, x / s, y / s, sc))
    if not cands:
        return None
    cands.sort(key=lambda c: c[0])
    best = cands[: 3]
    cost, x, y, sc = best[int(rng.integers(0, len(best)))]
    if cost > 45.0:
        return None
    return int(round(x)), int(round(y)), sc


def _covers_something(lab, box, ring) -> bool:
    """Would a copy at ``box`` (small-map units) cover something: pixels inside unlike the
    surface around it (a window's reflection on a visor, a label on a wall)? The ring alone
    matched the astronaut's black visor around its white window reflection, and the copy of the
    haze covered the window but for a bright sliver at its edge."""
    h, w = lab.shape[:2]
    x, y, bw, bh = box
    inside = lab[max(0, int(y)):min(h, int(y + bh) + 1), max(0, int(x)):min(w, int(x + bw) + 1)].reshape(-1, 3)
    if inside.size == 0:
        return True
    mean, spread = ring[:, :3].mean(0), float(np.linalg.norm(ring[:, 3:].mean(0)))
    unlike = np.linalg.norm(inside - mean, axis=1) > max(UNLIKE, 3.0 * spread)
    return float(unlike.mean()) > COVERS


def _ring_colour(lab, box):
    """The ring around ``box`` (small-map units) on each of its four sides (top, bottom, left,
    right): mean and standard deviation of its Lab colour, a 4 x 6 array; None when the ring is
    off the map."""
    h, w = lab.shape[:2]
    x, y, bw, bh = box
    m = max(2.0, 0.3 * max(bw, bh))
    x0, y0 = int(max(0, x - m)), int(max(0, y - m))
    x1, y1 = int(min(w, x + bw + m)), int(min(h, y + bh + m))
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    ix0, iy0 = int(x - x0), int(y - y0)
    ix1, iy1 = int(x - x0 + bw) + 1, int(y - y0 + bh) + 1
    win = lab[y0:y1, x0:x1]
    sides = [win[:iy0], win[iy1:], win[:, :ix0], win[:, ix1:]]
    if any(s.size < 6 for s in sides):
        return None
    # per side: mean colour and spread (a lattice, a shelf edge or a table top below an object
    # shows in the spread even when the mean colour is the sky's or the wall's)
    return np.array([np.concatenate([s.reshape(-1, 3).mean(0), s.reshape(-1, 3).std(0)]) for s in sides])


def _overlap_f(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return max(0.0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0.0, min(ay + ah, by + bh) - max(ay, by))


def paste(dst: np.ndarray, src: np.ndarray, region: Region, x: int, y: int, scale: float, *, flip: bool = False):
    """``dst`` with the object of ``src`` (``region``) cloned at (x, y), scaled, maybe mirrored:
    a Poisson blend (``cv2.seamlessClone``) over the object's mask grown by a few pixels, so the
    edge is solved from the new surroundings."""
    H, W = dst.shape[:2]
    grow = max(2, int(round(0.06 * max(region.w, region.h))))
    m = grow + 2
    sx0, sy0 = max(0, region.x - m), max(0, region.y - m)
    sx1, sy1 = min(W, region.x + region.w + m), min(H, region.y + region.h + m)
    patch = src[sy0:sy1, sx0:sx1]
    mask = np.zeros(patch.shape[:2], np.uint8)
    mask[region.y - sy0:region.y - sy0 + region.h, region.x - sx0:region.x - sx0 + region.w] = region.mask
    mask = _grow(mask, grow)
    if flip:
        patch, mask = patch[:, ::-1], mask[:, ::-1]
    if abs(scale - 1.0) > 1e-3:
        size = (max(3, round(patch.shape[1] * scale)), max(3, round(patch.shape[0] * scale)))
        patch = cv2.resize(np.ascontiguousarray(patch), size,
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        mask = cv2.resize(np.ascontiguousarray(mask), size, interpolation=cv2.INTER_LINEAR)
        mask = (mask > 127).astype(np.uint8) * 255
    patch, mask = np.ascontiguousarray(patch), np.ascontiguousarray(mask)
    # (x, y) is where the object's box goes; the patch has a margin around it
    px, py = x - round((region.x - sx0) * scale), y - round((region.y - sy0) * scale)
    mx, my, mw, mh = cv2.boundingRect(mask)
    # keep the blended area inside the picture, with a pixel to spare
    px = int(min(max(px, 1 - mx), W - 1 - (mx + mw)))
    py = int(min(max(py, 1 - my), H - 1 - (my + mh)))
    centre = (px + mx + mw // 2, py + my + mh // 2)
    return cv2.seamlessClone(patch, dst, mask, centre, cv2.NORMAL_CLONE), (px + mx, py + my, mw, mh)


def add(img, region: Region, sal: Saliency, rng: np.random.Generator):
    """A copy of ``region`` in a free spot (or two copies). Raises NoObject when no spot fits."""
    if not region.free_standing:
        raise NoObject("the object is tall and thin (it stands on something); a copy would float")
    copies = 1 if rng.random() < 0.7 else 2
    out = img
    ops, placed = [], []
    for _ in range(copies):
        spot = free_spot(img, region, sal, rng, avoid=placed)
        if spot is None:
            break
        x, y, sc = spot
        flip = bool(rng.random() < 0.5)
        out, box = paste(out, img, region, x, y, sc, flip=flip)
        placed.append(box)
        ops.append(Op("add_object", {"from": region.box, "to": list(box), "scale": sc, "mirrored": flip}))
    if not ops:
        raise NoObject("no free spot on a matching surface for a copy of the object")
    return out, ops


def move(img, region: Region, sal: Saliency, rng: np.random.Generator):
    """``region`` moved to a free spot: its old place filled, the object cloned at the new one."""
    if not region.free_standing:
        raise NoObject("the object is tall and thin (it stands on something); moved, it would float")
    spot = free_spot(img, region, sal, rng, scale_range=(0.95, 1.05))
    if spot is None:
        raise NoObject("no free spot on a matching surface to move the object to")
    x, y, sc = spot
    filled, _ = remove(img, region, rng)
    out, box = paste(filled, img, region, x, y, sc)
    return out, Op("move_object", {"from": region.box, "to": list(box), "scale": sc, "fill": "patch_completion"})
