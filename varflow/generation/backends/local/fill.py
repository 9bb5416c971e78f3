"""Filling a hole with what plausibly lies behind it: patch-based completion.

The method of Wexler, Shechtman and Irani (2007) with PatchMatch (Barnes et al. 2009), the one
behind "content-aware fill": coarse to fine, every patch that touches the hole is matched to the
most similar patch of the known picture around it, and each hole pixel becomes the weighted vote
of the matched patches that cover it; a few rounds of match-and-vote per scale converge to a
fill made of the picture's own texture and structure (a table's grain, a sky's gradient, a
saucer's rim), where diffusion (``cv2.inpaint``) smears.

It runs on a small window around the hole (the hole about ``HOLE_SIDE`` px across), so its cost
does not grow with the photo. Full resolution comes back in two layers: the small fill,
upscaled, gives the colours; the full-size pixels at the matched source positions give the fine
texture (their high frequencies), so the fill is as sharp as the photo around it.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

HOLE_SIDE = 40  # the hole's long side on the working window (px)
PATCH = 7  # patch size (odd)
CONTEXT = 1.3  # source patches come from this many hole sizes around the hole
VOTE_SLACK = 1.25  # a vote counts when its patch distance is within this factor of the best
RING = 4  # px (working window) of known picture around the hole whose colours it may take
COLOUR_MARGIN = 12.0  # Lab units a source may lie outside the ring's colour range (5th-95th pct) ...
MARGIN_OF_SPREAD = 0.5  # ... at most, and at most this share of the range's width (a calm surround:
MIN_MARGIN = 3.0  # a black visor's sources stay black) but at least this many
MIN_SOURCES = 50  # fewer patches of the surround's colours than this: any patch may serve


def fill_hole(img: np.ndarray, hole: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``img`` (uint8 RGB) with the pixels under ``hole`` (uint8, non-zero = fill) replaced."""
    H, W = img.shape[:2]
    mx, my, mw, mh = cv2.boundingRect((hole > 0).astype(np.uint8))
    if mw == 0:
        return img
    pad = int(CONTEXT * max(mw, mh)) + 2 * PATCH
    x0, y0 = max(0, mx - pad), max(0, my - pad)
    x1, y1 = min(W, mx + mw + pad), min(H, my + mh + pad)
    win = img[y0:y1, x0:x1]
    mwin = hole[y0:y1, x0:x1] > 0
    scale = min(1.0, HOLE_SIDE / max(mw, mh))
    if scale < 1:
        sw, sh = max(2 * PATCH, round(win.shape[1] * scale)), max(2 * PATCH, round(win.shape[0] * scale))
        small = cv2.resize(win, (sw, sh), interpolation=cv2.INTER_AREA)
        msmall = cv2.resize(mwin.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_AREA) > 0
    else:
        small, msmall = win, mwin
    filled, offsets = complete(small, msmall, rng, allowed=surround_colours(small, msmall))
    out_win = _upscale_fill(win, filled, offsets, scale)
    # feather the fill into the picture over a pixel or two
    alpha = cv2.GaussianBlur(mwin.astype(np.float32), (0, 0), 1.0)  # small kernel: cheap
    alpha = np.maximum(alpha, mwin.astype(np.float32))
    out = img.copy()
    blended = win.astype(np.float32) + (out_win.astype(np.float32) - win.astype(np.float32)) * alpha[..., None]
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def surround_colours(img: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Pixels whose colour lies within the range of the ring around the hole (bool).

    What lies behind a removed object is the surface around it; patches of other colours (a
    specular highlight beside a visor's reflection, a white window on a dark wall) matched by
    shape alone would paste a blob of them into the hole, so they are not sources.
    """
    lab = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    ring = (cv2.dilate(hole.astype(np.uint8), np.ones((2 * RING + 1, 2 * RING + 1), np.uint8)) > 0) & ~hole
    if ring.sum() < 8:
        return np.ones(hole.shape, bool)
    lo, hi = np.percentile(lab[ring], (5, 95), axis=0)
    # a calm surround (a black visor) allows only its own narrow range: a margin of 12 Lab units
    # let the visor's dark red reflections and dust lit by the removed haze fill the hole with a
    # mottle; a varied surround (grass, wood) keeps the full margin
    margin = np.clip(MARGIN_OF_SPREAD * (hi - lo), MIN_MARGIN, COLOUR_MARGIN)
    return np.all((lab >= lo - margin) & (lab <= hi + margin), axis=2)


def _upscale_fill(win, filled_small, offsets, scale):
    """Full-size fill: the small fill's colours plus the fine texture of the full-size source
    pixels at the matched offsets (their detail above the small fill's resolution), faded where
    neighbouring offsets disagree (patch seams)."""
    h, w = win.shape[:2]
    sh, sw = filled_small.shape[:2]
    low = cv2.resize(filled_small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    off = cv2.resize(offsets.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST) / scale
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    mapx = np.clip(xx + off[:, :, 0], 0, w - 1)
    mapy = np.clip(yy + off[:, :, 1], 0, h - 1)
    fetched = cv2.remap(win, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # the fetched pixels' detail: themselves minus their own version at the small fill's size
    coarse = cv2.resize(cv2.resize(fetched, (sw, sh), interpolation=cv2.INTER_AREA), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    detail = fetched.astype(np.float32) - coarse.astype(np.float32)
    # seams: where the (small) offsets change between neighbours
    jump = np.zeros((sh, sw), np.float32)
    for c in range(2):
        o = np.ascontiguousarray(offsets[:, :, c].astype(np.float32))
        jump = np.maximum(jump, np.abs(cv2.Sobel(o, cv2.CV_32F, 1, 0, ksize=1)))
        jump = np.maximum(jump, np.abs(cv2.Sobel(o, cv2.CV_32F, 0, 1, ksize=1)))
    seam = cv2.GaussianBlur((jump > 0.5).astype(np.float32), (0, 0), 1.0)
    keep = np.clip(1.0 - seam, 0.6, 1.0)
    keep = cv2.resize(keep, (w, h), interpolation=cv2.INTER_LINEAR)
    out = low + detail * keep[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# multi-scale completion


def complete(img: np.ndarray, hole: np.ndarray, rng: np.random.Generator, allowed=None):
    """Fill ``hole`` (bool) of ``img`` (small uint8 RGB). Returns the filled image and, per
    pixel, the (dx, dy) offset of the source patch matched to it (0 outside the hole).
    ``allowed`` (bool, optional): the only pixels source patches may be made of."""
    allowed = np.ones(hole.shape, bool) if allowed is None else allowed
    levels = [(img.astype(np.float32), hole, allowed)]
    while True:
        f, m, _a = levels[-1]
        h, w = m.shape
        ys, xs = np.nonzero(m)
        if len(ys) == 0 or max(ys.max() - ys.min(), xs.max() - xs.min()) < 10 or min(h, w) < 4 * PATCH:
            break
        nf = cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        nm = cv2.resize(m.astype(np.uint8), (w // 2, h // 2), interpolation=cv2.INTER_AREA) > 0
        na = cv2.resize(_a.astype(np.uint8), (w // 2, h // 2), interpolation=cv2.INTER_NEAREST) > 0
        levels.append((nf, nm, na))
    levels.reverse()
    est = None
    off = None
    for li, (f, m, a) in enumerate(levels):
        h, w = m.shape
        cur = f.copy()
        if est is None:
            cur = _peel(f, m, a)
        else:
            up = cv2.resize(est, (w, h), interpolation=cv2.INTER_LINEAR)
            cur[m] = up[m]
            off = np.repeat(np.repeat(off, 2, axis=0), 2, axis=1)[:h, :w] * 2
            if off.shape[:2] != (h, w):
                off = np.pad(off, ((0, h - off.shape[0]), (0, w - off.shape[1]), (0, 0)), mode="edge")
        rounds = 4 if li == 0 else 2
        cur, off = _em(cur, m, off, rng, rounds=rounds, pm_iters=2, allowed=a)
        est = cur
    out = np.clip(np.rint(est), 0, 255).astype(np.uint8)
    off = off.astype(np.int32)
    off[~levels[-1][1]] = 0
    return out, off


def _sources(hole: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Centres of patches made only of known pixels of allowed colours (of any known pixels
    when too few are allowed)."""
    h, w = hole.shape
    r = PATCH // 2
    kernel = np.ones((PATCH, PATCH), np.uint8)
    known = cv2.erode((~hole).astype(np.uint8), kernel) > 0
    known[:r], known[h - r:], known[:, :r], known[:, w - r:] = False, False, False, False
    ok = known & (cv2.erode(allowed.astype(np.uint8), kernel) > 0)
    return ok if ok.sum() >= MIN_SOURCES else known


def _peel(f: np.ndarray, hole: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The coarsest scale's starting fill, from the edge inwards ("onion peel"): each ring of
    hole pixels takes the centre of the known patch that best matches its known neighbours
    (exhaustive search: the coarsest scale is tiny)."""
    h, w = hole.shape
    r = PATCH // 2
    cur = f.copy()
    known = ~hole
    src_ok = _sources(hole, allowed)
    sy, sx = np.nonzero(src_ok)
    if len(sy) == 0:
        return cv2.inpaint(np.clip(f, 0, 255).astype(np.uint8), hole.astype(np.uint8) * 255, 3,
                           cv2.INPAINT_TELEA).astype(np.float32)
    pad = cv2.copyMakeBorder(cur, r, r, r, r, cv2.BORDER_REFLECT)
    src_vec = sliding_window_view(pad, (PATCH, PATCH), axis=(0, 1))[sy, sx].reshape(len(sy), -1)
    while not known.all():
        front = ~known & (cv2.dilate(known.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
        fy, fx = np.nonzero(front)
        if len(fy) == 0:
            break
        pad = cv2.copyMakeBorder(cur, r, r, r, r, cv2.BORDER_REFLECT)
        kpad = cv2.copyMakeBorder(known.astype(np.float32), r, r, r, r, cv2.BORDER_CONSTANT, value=0)
        tvec = sliding_window_view(pad, (PATCH, PATCH), axis=(0, 1))[fy, fx].reshape(len(fy), -1)
        tmask = np.repeat(sliding_window_view(kpad, (PATCH, PATCH))[fy, fx][:, None], 3, axis=1).reshape(len(fy), -1)
        # masked SSD = sum m s^2 - 2 sum m s t + sum m t^2, for every (front, source) pair
        d = (tmask @ (src_vec * src_vec).T) - 2 * ((tmask * tvec) @ src_vec.T)
        best = d.argmin(1)
        cur[fy, fx] = f[sy[best], sx[best]]
        known[fy, fx] = True
    return cur


class _Match:
    """PatchMatch's state at one scale: each target patch's offset to its source and the distance;
    the steps change ``ox``, ``oy`` and ``best_d`` in place."""

    def __init__(self, patches, tvec, tx, ty, ox, oy, best_d, src_ok):
        self.patches, self.tvec, self.tx, self.ty, self.src_ok = patches, tvec, tx, ty, src_ok
        self.ox, self.oy, self.best_d = ox, oy, best_d

    def take(self, cx, cy, d) -> None:
        better = d < self.best_d
        self.ox[better], self.oy[better], self.best_d[better] = cx[better], cy[better], d[better]

    def propagate(self, step: int, index: np.ndarray) -> None:
        """Try the offsets of the targets ``step`` pixels away in each direction."""
        tx, ty, ox, oy = self.tx, self.ty, self.ox, self.oy
        h, w = index.shape
        for dx, dy in ((step, 0), (-step, 0), (0, step), (0, -step)):
            nx, ny = tx + dx, ty + dy
            ok = (nx >= 0) & (nx < w) & (ny >= 0) & (ny < h)
            j = np.full(len(tx), -1)
            j[ok] = index[ny[ok], nx[ok]]
            has = j >= 0
            if not has.any():
                continue
            cx, cy = ox.copy(), oy.copy()
            cx[has], cy[has] = ox[j[has]], oy[j[has]]
            d = np.full(len(tx), np.inf, np.float32)
            d[has] = _dist(self.patches, self.tvec[has], tx[has] + cx[has], ty[has] + cy[has], self.src_ok)
            self.take(cx, cy, d)

    def random_search(self, radius: int, rng) -> None:
        """Random offsets around the current match, the radius halving."""
        tx, ty = self.tx, self.ty
        while radius >= 1:
            cx = self.ox + rng.integers(-radius, radius + 1, size=len(tx))
            cy = self.oy + rng.integers(-radius, radius + 1, size=len(tx))
            self.take(cx, cy, _dist(self.patches, self.tvec, tx + cx, ty + cy, self.src_ok))
            radius //= 2


def _em(cur, hole, off, rng, *, rounds, pm_iters, allowed):
    """Match-and-vote rounds at one scale."""
    h, w = hole.shape
    r = PATCH // 2
    # targets: centres of patches that overlap the hole (and lie inside the window)
    near = cv2.dilate(hole.astype(np.uint8), np.ones((PATCH, PATCH), np.uint8)) > 0
    inner = np.zeros((h, w), bool)
    inner[r:h - r, r:w - r] = True
    targets = near & inner
    ty, tx = np.nonzero(targets)
    # sources: centres of patches entirely on known pixels
    src_ok = _sources(hole, allowed) & inner
    sy_all, sx_all = np.nonzero(src_ok)
    if len(ty) == 0 or len(sy_all) == 0:
        return cur, np.zeros((h, w, 2), np.int32) if off is None else off
    if off is None or off.shape[:2] != (h, w):
        off = np.zeros((h, w, 2), np.int32)
        pick = rng.integers(0, len(sy_all), size=len(ty))
        off[ty, tx, 0] = sx_all[pick] - tx
        off[ty, tx, 1] = sy_all[pick] - ty
    off = off.astype(np.int32)
    for rnd in range(rounds):
        # every patch of the window as a contiguous row (fast gathers)
        patches = np.ascontiguousarray(sliding_window_view(cur, (PATCH, PATCH), axis=(0, 1)))
        patches = patches.reshape(patches.shape[0], patches.shape[1], -1)
        tvec = patches[ty - r, tx - r]
        ox, oy = off[ty, tx, 0], off[ty, tx, 1]
        best_d = _dist(patches, tvec, tx + ox, ty + oy, src_ok)
        # invalid starting matches: take random valid ones
        bad = ~np.isfinite(best_d)
        if bad.any():
            pick = rng.integers(0, len(sy_all), size=int(bad.sum()))
            ox[bad], oy[bad] = sx_all[pick] - tx[bad], sy_all[pick] - ty[bad]
            best_d[bad] = _dist(patches, tvec[bad], tx[bad] + ox[bad], ty[bad] + oy[bad], src_ok)
        index = -np.ones((h, w), np.int64)
        index[ty, tx] = np.arange(len(ty))
        match = _Match(patches, tvec, tx, ty, ox, oy, best_d, src_ok)
        for it in range(pm_iters):
            # propagation (parallel, jump-flood style): try each neighbour's offset
            for step in ((4, 2, 1) if rnd == 0 and it == 0 else (1,)):
                match.propagate(step, index)
            match.random_search(max(h, w), rng)
        off[ty, tx, 0], off[ty, tx, 1] = ox, oy
        cur = _vote(cur, hole, tx, ty, ox, oy, best_d)
    return cur, off


def _dist(patches, tvec, sx, sy, src_ok) -> np.ndarray:
    """Sum of squared differences between target patch vectors and the source patches centred
    at (sx, sy); inf where the source is not a valid patch centre."""
    h, w = src_ok.shape
    r = PATCH // 2
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    valid = np.zeros(len(sx), bool)
    valid[inside] = src_ok[sy[inside], sx[inside]]
    d = np.full(len(sx), np.inf, np.float32)
    if valid.any():
        diff = patches[sy[valid] - r, sx[valid] - r] - tvec[valid]
        d[valid] = np.einsum("ij,ij->i", diff, diff)
    return d


def _vote(cur, hole, tx, ty, ox, oy, dist):
    """Each hole pixel becomes the mean of what the best-matching patches covering it say:
    the votes of patches within ``VOTE_SLACK`` of the best one (a plain weighted mean of all
    votes blurs a texture away)."""
    h, w = hole.shape
    r = PATCH // 2
    finite = np.isfinite(dist)
    best = np.full((h, w), np.inf, np.float32)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            py, px = ty + dy, tx + dx
            sel = hole[py, px] & finite
            best[py[sel], px[sel]] = np.minimum(best[py[sel], px[sel]], dist[sel])  # distinct pixels
    acc = np.zeros((h, w, 3), np.float32)
    wsum = np.zeros((h, w), np.float32)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            py, px = ty + dy, tx + dx
            sel = hole[py, px] & finite
            sel[sel] = dist[sel] <= best[py[sel], px[sel]] * VOTE_SLACK + 1e-3
            if not sel.any():
                continue
            sy, sx = py[sel] + oy[sel], px[sel] + ox[sel]
            acc[py[sel], px[sel]] += cur[sy, sx]
            wsum[py[sel], px[sel]] += 1.0
    out = cur.copy()
    ok = hole & (wsum > 0)
    out[ok] = acc[ok] / wsum[ok, None]
    return out
