"""Composition changes: a tighter crop around the subject, a gentle perspective change or tilt,
a mirror image, and combinations of them.

The output keeps the source's size and aspect ratio: a crop or a warped region is resampled to
the full frame, and every warp samples only inside the source (the region is shrunk until its
corners fit), so there are never empty or smeared corners.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .imaging import Op

CROP_SIDE = (0.75, 0.9)  # a recrop keeps this share of each side (10-25% cut away)
KEYSTONE = (0.04, 0.09)  # how much one edge of the frame narrows in a perspective change
TILT_DEGREES = (1.5, 4.0)


def recrop(img, rng, subject_box, subject_centre):
    """A crop of 75-90% of each side that contains the subject's box (when it fits), with the
    subject's centre on a third or the centre line, resampled to the full size."""
    H, W = img.shape[:2]
    side = float(rng.uniform(*CROP_SIDE))
    # widen the crop (up to the largest allowed) rather than cut into the subject
    need = max(subject_box[2] / W, subject_box[3] / H) * 1.04
    side = max(side, min(need, CROP_SIDE[1]))
    cw, ch = max(8, round(W * side)), max(8, round(H * side))
    place_x = float(rng.choice([1 / 3, 0.5, 2 / 3]))
    place_y = float(rng.choice([0.38, 0.45, 0.5]))
    x0 = _place(subject_centre[0], place_x, cw, W, subject_box[0], subject_box[2])
    y0 = _place(subject_centre[1], place_y, ch, H, subject_box[1], subject_box[3])
    crop = img[y0:y0 + ch, x0:x0 + cw]
    out = cv2.resize(crop, (W, H), interpolation=cv2.INTER_CUBIC)
    return out, Op("recrop", {"box": [x0, y0, cw, ch], "side": side, "subject_at": [place_x, place_y]})


def _place(centre, at, size, full, box_start, box_len):
    """Start of a window of ``size`` in [0, full) putting ``centre`` at fraction ``at`` of it,
    moved as little as needed to contain [box_start, box_start + box_len) when that fits."""
    start = centre - at * size
    lo, hi = 0, full - size
    if box_len <= size:  # the whole subject fits: keep it inside
        lo = max(lo, box_start + box_len - size)
        hi = min(hi, box_start)
        if lo > hi:
            lo = hi = min(max(0, box_start + box_len / 2 - size / 2), full - size)
    return int(round(min(max(start, lo), hi)))


def perspective(img, rng, subject_centre, *, kind: str | None = None):
    """A gentle keystone (one edge of the frame narrower: the camera turned or tilted) or a
    small rotation, applied to the largest region that fits inside the picture."""
    H, W = img.shape[:2]
    kind = kind or str(rng.choice(["keystone_vertical", "keystone_horizontal", "tilt"], p=[0.4, 0.3, 0.3]))
    # corners of the output frame in centred units (x right, y down), as a source quadrilateral
    quad = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    params: dict = {"kind": kind}
    if kind == "tilt":
        deg = float(rng.uniform(*TILT_DEGREES)) * float(rng.choice([-1, 1]))
        a = math.radians(deg)
        pts = quad * [W / 2, H / 2]
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        pts = pts @ rot.T
        params["degrees"] = deg
    else:
        k = float(rng.uniform(*KEYSTONE))
        narrow = int(rng.integers(0, 2))  # which of the two edges narrows
        pts = quad.copy()
        if kind == "keystone_vertical":  # top or bottom edge narrower
            rows = [0, 1] if narrow == 0 else [2, 3]
            pts[rows, 0] *= 1 - 2 * k
            params["narrow_edge"] = "top" if narrow == 0 else "bottom"
        else:  # left or right edge shorter
            rows = [0, 3] if narrow == 0 else [1, 2]
            pts[rows, 1] *= 1 - 2 * k
            params["narrow_edge"] = "left" if narrow == 0 else "right"
        pts = pts * [W / 2, H / 2]
        params["amount"] = k
    # shrink the quadrilateral until it fits inside the picture, then place it near the subject
    ext_x = pts[:, 0].max() - pts[:, 0].min()
    ext_y = pts[:, 1].max() - pts[:, 1].min()
    f = min(1.0, (W - 1) / ext_x, (H - 1) / ext_y)
    pts = pts * f
    cx_lo, cx_hi = -pts[:, 0].min(), (W - 1) - pts[:, 0].max()
    cy_lo, cy_hi = -pts[:, 1].min(), (H - 1) - pts[:, 1].max()
    cx = min(max(0.5 * (W - 1) + 0.5 * (subject_centre[0] - W / 2), cx_lo), cx_hi)
    cy = min(max(0.5 * (H - 1) + 0.5 * (subject_centre[1] - H / 2), cy_lo), cy_hi)
    src = (pts + [cx, cy]).astype(np.float32)
    dst = np.array([[0, 0], [W - 1, 0], [W - 1, H - 1], [0, H - 1]], np.float32)
    M = cv2.getPerspectiveTransform(src, dst)
    out = cv2.warpPerspective(img, M, (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    params["kept_scale"] = f
    params["corners"] = src.round(1).tolist()
    return out, Op("perspective", params)


def mirror(img):
    return np.ascontiguousarray(img[:, ::-1]), Op("mirror", {"axis": "horizontal"})


# plans: (name, probability); each is a sequence of the operations above
PLANS = (
    ("recrop", 0.3),
    ("perspective", 0.25),
    ("mirror", 0.1),
    ("mirror+recrop", 0.15),
    ("mirror+perspective", 0.1),
    ("perspective+recrop", 0.1),
)


def compose(img, rng, subject_box, subject_centre, *, plan: str | None = None):
    """One composition plan chosen by ``rng``; returns the image, its ops and a description."""
    H, W = img.shape[:2]
    names = [p for p, _ in PLANS]
    probs = np.array([w for _, w in PLANS])
    plan = plan or str(rng.choice(names, p=probs / probs.sum()))
    out, ops, words = img, [], []
    box, centre = subject_box, subject_centre
    for step in plan.split("+"):
        if step == "mirror":
            out, op = mirror(out)
            x, y, w, h = box
            box, centre = (W - x - w, y, w, h), (W - centre[0], centre[1])
            words.append("mirrored left to right")
        elif step == "recrop":
            out, op = recrop(out, rng, box, centre)
            side = op.params["side"]
            where = {1 / 3: "on the left third", 0.5: "centred", 2 / 3: "on the right third"}
            words.append(f"recropped to {round(side * 100)}% of each side with the subject "
                         f"{where[op.params['subject_at'][0]]}")
        else:
            out, op = perspective(out, rng, centre)
            k = op.params["kind"]
            if k == "tilt":
                words.append(f"tilted the frame by {abs(op.params['degrees']):.1f} degrees")
            else:
                words.append(f"changed the perspective (the {op.params['narrow_edge']} edge "
                             f"{round(op.params['amount'] * 100)}% narrower)")
        ops.append(op)
    return out, ops, ", then ".join(words)
