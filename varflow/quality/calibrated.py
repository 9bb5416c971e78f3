"""The calibrated quality profile: the seed's five notions, measured so they hold on real photos.

The seed's gate (``varflow.quality.metrics`` + ``varflow.quality.acceptance``) rejects every natural variation of a
real photo: its similarity is grey SSIM (a colour grade looks like a copy, a mirror like another
photo), its integrity counts long Canny edges (0 on real photos), its aesthetic rewards noise.
This profile keeps the same notions and roles and measures each for what its name says, at a
fixed working size (long side 512, never upscaled) so values do not depend on resolution:

* similarity: is it the original's picture (relatedness: gradient correlation at a coarse scale
  after the best of three alignments: none, an ORB + RANSAC homography, the same on the mirror
  image), and how visibly has it changed where it stands (colour, structure, the most changed
  cell, fine detail added)? ``similarity = structure_match * (1 - visible_change / 2)``: 1 is a
  copy, about 0.5 the same picture entirely changed, 0 an unrelated picture;
* diversity: the visible change between this variation and the nearest accepted one;
* aesthetic: no defect a person would call ugly, each measured against the original
  (naturalness: added noise, impulses and JPEG blocking; detail_sharpness: detail kept, in
  every direction, so a motion or zoom blur counts; exposure: highlights blown, washed out),
  lightly weighted by colourfulness (Hasler and Suesstrunk 2003);
* object integrity: does the original's content survive (how much of its frame the variation
  shows, how much of it was flattened away, how widely foreign structure was drawn over it,
  and whether one patch was smeared, pasted over flat or blown white where it had texture);
* overall: a weighted mean of the four against the quality level's threshold.

Every threshold, scale and weight is a field of ``varflow.settings.CalibratedThresholds``;
docs/calibrated-profile.md gives the definitions and the calibration (bench/calibration.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np
from PIL import Image

from varflow.quality.acceptance import Verdict, gate
from varflow.quality.metrics import to_rgb
from varflow.settings import CalibratedThresholds, LevelSettings

WORK_SIDE = 512  # working size: long side in pixels (images are only ever shrunk to it)
NOISE_SIDE = 2048  # noise is estimated at up to this long side (a large photo's noise survives)
COMPARE_SIDE = 256  # in-place comparisons (copy or changed?) at this long side, both images alike
COARSE_SIDE = 128  # the scale at which "is it the same picture" is asked
CELLS = 16  # local comparisons on a CELLS x CELLS grid over the frame
MIN_SIDE = 16
_SMOOTH_SIGMA = 1.5  # working-size pre-blur: tolerance for resampling and sub-pixel shifts
_ORB_FEATURES = 500
_MIN_INLIERS = 12  # a homography with fewer RANSAC inliers is not trusted
_RANSAC_PX = 4.0
_IN_PLACE_ENOUGH = 0.97  # in-place coarse correlation above which no alignment is sought
_DETAIL_SLACK = 0.15  # detail gained by resampling alone (a copy at another size) is not an edit
_EDGE_BAND = 0.03  # share of the long side along the frame left out of the integrity parts
_ADDED_GAIN = 2.5  # a variation gradient this many times the original's nearby one is new ...
_ADDED_FLOOR = 8.0  # ... and above this many grey levels per pixel
_ADDED_CELL = 0.2  # a cell is "drawn over" when that much of its gradient energy is new
_FLAT_FRACTION = 0.1  # a cell is flattened when its grey-level spread falls below 10% of the
_FLAT_STD = 0.5  # original's plus half a grey level, ...
_FILL_CHANGE = 15.0  # ... and its mean moved by this many grey levels (a fill, not a smoothing)
_IMPULSE_STEP = 60  # grey levels from the 3 x 3 median that make a pixel an impulse
_FINE_SIGMA = 1.0  # fine-scale gradients (directional detail, new structure) after this blur
_TENSOR_CELLS = 4  # directional detail: gradient structure tensors on a 4 x 4 grid of sectors
_LOCAL_CELLS = 64  # local artefacts: cells of 1/64 of the long side (8 px at working size)
_TEXTURED = 2.0  # a cell has texture when its mean fine detail reaches this many grey levels
_FLAT_KEPT = 0.2  # ... and is flattened when it keeps less than this share of the detail the
#                    rest of the picture kept (after the global tone curve's slope there)
_BLOWN = 250  # grey level of a clipped highlight
_BLOB_STEP = 40.0  # grey levels between a flat patch and its surround that make it a blob
_TEXTURE_KEPT_SPREAD = 2.0  # texture kept alike elsewhere: 75th / 25th percentile of the ratio
_DETAIL_TOP = 75  # detail in place: the variation's cells above this percentile of fine detail
_NO_DETAIL = 1e-6  # a cell's fine detail at or below this is none (flat: a clipped or painted ground)
_RANK_KEPT = 0.875  # ... hold on average this rank of the original's detail when kept (1.0 - 0.25 / 2)


def _unit(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def _ramp(x: float, good: float, bad: float) -> float:
    """1 at or before ``good``, 0 at or beyond ``bad``, linear between (either direction)."""
    return _unit((bad - x) / (bad - good))


def _shrink(a: np.ndarray, side: int) -> np.ndarray:
    h, w = a.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return a
    return cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _cells(a: np.ndarray) -> np.ndarray:
    return cv2.resize(a, (CELLS, CELLS), interpolation=cv2.INTER_AREA)


def _gradients(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)


def _grad_corr(ax, ay, bx, by, mask=None) -> float:
    """Correlation of two gradient fields: 1 same structure, 0 unrelated, -1 inverted."""
    dot = cv2.add(cv2.multiply(ax, bx), cv2.multiply(ay, by))
    na = cv2.add(cv2.multiply(ax, ax), cv2.multiply(ay, ay))
    nb = cv2.add(cv2.multiply(bx, bx), cv2.multiply(by, by))
    if mask is not None:
        s_dot, s_a, s_b = (float(x[mask].sum()) for x in (dot, na, nb))
    else:
        s_dot, s_a, s_b = (cv2.sumElems(x)[0] for x in (dot, na, nb))
    den = math.sqrt(max(s_a, 0.0) * max(s_b, 0.0))
    return float(s_dot / den) if den > 0 else 0.0


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally long samples (0 when either is constant)."""
    if a.size < 2:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def _blockiness(grey: np.ndarray) -> float:
    """JPEG blocking at native resolution: mean step across 8-px block borders / elsewhere."""
    out = []
    for axis in (1, 0):
        d = np.abs(np.diff(grey.astype(np.int16), axis=axis)).mean(axis=1 - axis)
        n = (len(d) // 8) * 8
        if n < 16:
            continue
        per = d[:n].reshape(-1, 8).mean(axis=0)  # index 7: the step from pixel 8k+7 to 8k+8
        out.append(per[7] / (np.delete(per, 7).mean() + 1.0))
    return float(np.mean(out)) if out else 1.0


def _noise_sigma(grey: np.ndarray, step: int = 2) -> float:
    """Immerkaer's noise estimate (1996) with a median, so texture and edges weigh little (the
    median over every ``step``-th pixel in each direction: a robust statistic needs no more)."""
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = np.abs(cv2.filter2D(grey, cv2.CV_32F, k)[1:-1:step, 1:-1:step])
    return float(math.sqrt(math.pi / 2) / 6 * np.median(r))


def _impulses(grey: np.ndarray) -> float:
    """Share of pixels that stand alone far from their 3 x 3 median (salt and pepper, dead or hot
    pixels): Immerkaer's median-based estimate does not see sparse impulses by design."""
    return float(np.count_nonzero(cv2.absdiff(grey, cv2.medianBlur(grey, 3)) > _IMPULSE_STEP)) / grey.size


def _colour_noise(rgb: np.ndarray) -> float:
    """Immerkaer's estimate on the two opponent colour channels (R - G, (R + G) / 2 - B), the
    larger, at half the size the grey noise is measured at: high-ISO colour noise is blurred over
    a pixel or so at capture (so the grey estimate at full size barely sees it; halved, it is
    per-pixel again at any resolution) and lives in colour, where tone and detail edits (which
    work on lightness) put none."""
    half = cv2.resize(rgb, (max(1, rgb.shape[1] // 2), max(1, rgb.shape[0] // 2)), interpolation=cv2.INTER_AREA)
    r, g, b = cv2.split(half)
    rg = cv2.subtract(r, g, dtype=cv2.CV_32F)
    yb = cv2.subtract(cv2.addWeighted(r, 0.5, g, 0.5, 0.0, dtype=cv2.CV_32F), b.astype(np.float32))
    return max(_noise_sigma(rg, step=4), _noise_sigma(yb, step=4))  # every 4th: ~16k samples at 1024 px


def _colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk (2003): ~0 grey, ~33 moderately, ~59 quite, ~109 extremely colourful."""
    f = rgb.astype(np.float32)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    (m_rg,), (s_rg,) = (v.ravel() for v in cv2.meanStdDev(rg))
    (m_yb,), (s_yb,) = (v.ravel() for v in cv2.meanStdDev(yb))
    return float(math.hypot(s_rg, s_yb) + 0.3 * math.hypot(m_rg, m_yb))


class ImageFeatures:
    """Everything the profile reuses about one image, computed once (original or variation).

    Working-size grey and its smoothed version, the 256 px comparison grey and 128 px coarse
    grey with their gradients, 16 x 16 cell means (Lab, grey) and spreads, single-image
    statistics (noise, blocking, lightness, highlights, colourfulness); the gradient magnitude,
    detail and ORB keypoints (and the mirror image's) are computed on first use. About 2.4 MB
    for a variation, 3.4 MB for an original once scored (a 1024 px photo).
    """

    def __init__(self, rgb: np.ndarray):
        if rgb.ndim == 2:
            rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB)
        h, w = rgb.shape[:2]
        if h < MIN_SIDE or w < MIN_SIDE:
            raise ValueError(
                f"image of {w}x{h} px is too small for the calibrated profile; pass at least "
                f"{MIN_SIDE}x{MIN_SIDE} pixels"
            )
        rgb = np.ascontiguousarray(rgb)
        self.native_shape = (h, w)
        grey_native = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        self.blockiness = _blockiness(grey_native)
        noise_grey = _shrink(grey_native, NOISE_SIDE)
        self.noise = _noise_sigma(noise_grey)
        self.impulses = _impulses(noise_grey)
        self.colour_noise = _colour_noise(_shrink(rgb, NOISE_SIDE))
        small = _shrink(rgb, WORK_SIDE)
        self.shape = small.shape[:2]
        lab = cv2.cvtColor(small.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2Lab)
        self.grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        gf = self.grey.astype(np.float32)
        self.smooth = cv2.GaussianBlur(gf, (0, 0), _SMOOTH_SIGMA)
        self._gmag: np.ndarray | None = None
        self._fine: tuple | None = None
        self.compare = cv2.GaussianBlur(_shrink(gf, COMPARE_SIDE), (0, 0), 1.0)
        self.sgx, self.sgy = _gradients(self.compare)
        self.coarse = cv2.GaussianBlur(_shrink(gf, COARSE_SIDE), (0, 0), 1.0)
        self.cgx, self.cgy = _gradients(self.coarse)
        self.cmag = cv2.magnitude(self.cgx, self.cgy)
        self.cell_lab = _cells(lab)
        m = self.cell_mean = _cells(self.smooth)
        self.cell_std = np.sqrt(np.maximum(0.0, _cells(self.smooth * self.smooth) - m * m))
        # single-image statistics
        self._detail: dict[int, float] = {}
        L = lab[..., 0]
        self.lightness = float(cv2.mean(L)[0])
        self.highlights = float(np.count_nonzero(L >= 95.0)) / L.size
        self.colourfulness = _colourfulness(small)
        self._orb: dict[bool, tuple[np.ndarray, np.ndarray | None]] = {}

    @property
    def gmag(self) -> np.ndarray:
        """Gradient magnitude of the smoothed working-size grey (needed of originals only)."""
        if self._gmag is None:
            self._gmag = cv2.magnitude(*_gradients(self.smooth))
        return self._gmag

    def detail_at(self, side: int) -> float:
        """Mean fine detail (|grey - its 2 px blur|) at a long side of ``side`` (cached)."""
        if side not in self._detail:
            g = _shrink(self.grey, side).astype(np.float32)
            self._detail[side] = float(cv2.mean(cv2.absdiff(g, cv2.GaussianBlur(g, (0, 0), 2.0)))[0])
        return self._detail[side]

    def fine(self):
        """The original's side of the local measures (cached): working grey, its fine-scale
        gradients, its fine detail per 1/64-side cell and each cell's grey level bin."""
        if self._fine is None:
            h, w = self.shape
            s = _LOCAL_CELLS / max(h, w)
            cells = (max(4, round(w * s)), max(4, round(h * s)))
            g = self.grey.astype(np.float32)
            gx, gy = _gradients(cv2.GaussianBlur(g, (0, 0), _FINE_SIGMA))
            detail = _cell_sum(cv2.absdiff(g, cv2.GaussianBlur(g, (0, 0), 1.5)), cells)
            level = np.clip(_cell_sum(g, cells) / 8.0, 0, 31).astype(np.int32)
            self._fine = (g, gx, gy, detail, level)
        return self._fine

    @classmethod
    def from_image(cls, image: np.ndarray | Image.Image) -> ImageFeatures:
        """From a uint8 RGB, RGBA (composited on white) or grey array, or a PIL image."""
        return cls(to_rgb(image))

    def keypoints(self, *, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """ORB keypoints (N x 2, in this image's working coordinates) and descriptors.

        ``mirrored``: detected on the left-right mirror image, in its coordinates (robust
        homography estimators reject orientation-reversing fits, so the flip is composed after).
        """
        if mirrored not in self._orb:
            grey = np.ascontiguousarray(self.grey[:, ::-1]) if mirrored else self.grey
            orb = cv2.ORB_create(nfeatures=_ORB_FEATURES, fastThreshold=10, edgeThreshold=15,
                                 patchSize=15)
            kps, desc = orb.detectAndCompute(grey, None)
            pts = np.float32([k.pt for k in kps]).reshape(-1, 2)
            self._orb[mirrored] = (pts, desc)
        return self._orb[mirrored]


@dataclass(frozen=True)
class CalibratedScores:
    """The calibrated profile's scores of one variation (docs/calibrated-profile.md).

    Headline values (in [0, 1]): ``similarity``, ``diversity`` (None for an image's first
    variation), ``aesthetic``, ``object_integrity``, ``overall_quality``. Named parts:

    * ``structure_match``: coarse gradient correlation with the original after the best
      alignment (1 same picture, 0 unrelated; inversion is negative and counts as 0);
    * ``geometric_match``: RANSAC inliers of the chosen homography / the original's keypoints
      (0 when the variation is compared in place);
    * ``mirrored``: 1.0 when the best alignment is the mirror image;
    * ``colour_change``: mean CIE76 colour difference of 16x16 cell means, in place;
    * ``local_change``: the largest change of one cell (colour or structure), in [0, 1];
    * ``visible_change``: how changed the variation looks in place (colour, structure, the most
      changed cell, fine detail added), in [0, 1];
    * ``coverage``: share of the original's frame the variation shows;
    * ``structure_lost``: share of the original's contrast in cells the variation replaced by a
      flat fill (flattened and their brightness moved: a black frame, not a smoothing);
    * ``structure_added``: share of cells drawn over with structure the original lacks;
    * ``noise_excess``: noise added (grey levels at working size, Immerkaer estimate);
    * ``blockiness``: JPEG block-border step ratio at native size (1 none; the aesthetic counts
      only what exceeds the original's own);
    * ``detail_ratio``: fine detail kept relative to the original (1 same, 0 blurred away);
    * ``highlight_clipping``: share of newly blown highlights (Lab L >= 95);
    * ``brightening``: mean Lab lightness gained over the original;
    * ``colourfulness``: Hasler and Suesstrunk's M of the variation;
    * ``naturalness``, ``detail_sharpness``, ``exposure``: the aesthetic's defect scores (1 clean);
    * ``directional_detail``: detail kept in the direction that lost the most (median over 4 x 4
      sectors, after the alignment): a blur along a line (motion) or along rays (zoom) < 0.55;
    * ``impulse_noise``: share of new impulse pixels (salt and pepper, dead and hot pixels);
    * ``flat_patch``: share of the frame in the largest patch flattened or smeared where the
      original had texture (a smear, a flat paste), when the rest kept its texture;
    * ``blown_patch``: share of the frame in the largest patch newly blown to white that the
      global tone curve does not explain (a highlight pasted into a hole);
    * ``colour_noise``: noise added in the opponent colour channels (colour levels at 256 px);
    * ``detail_in_place``: is the fine detail where the original's was (1 in place, 0 anywhere:
      a layer of crystals, dirt or texture laid over a blurred photo).
    """

    similarity: float
    diversity: float | None
    aesthetic: float
    object_integrity: float
    overall_quality: float
    structure_match: float
    geometric_match: float
    mirrored: float
    colour_change: float
    local_change: float
    visible_change: float
    coverage: float
    structure_lost: float
    structure_added: float
    noise_excess: float
    blockiness: float
    detail_ratio: float
    highlight_clipping: float
    brightening: float
    colourfulness: float
    naturalness: float
    detail_sharpness: float
    exposure: float
    directional_detail: float
    impulse_noise: float
    flat_patch: float
    blown_patch: float
    colour_noise: float
    detail_in_place: float

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


FIELDS = tuple(f.name for f in fields(CalibratedScores))


# ---- pair measurements ----------------------------------------------------------------------

def _change_in_place(a: ImageFeatures, b: ImageFeatures, t: CalibratedThresholds):
    """How changed ``b`` looks against ``a`` where it stands: (visible, colour ΔE, local)."""
    de = np.linalg.norm(a.cell_lab - b.cell_lab, axis=2)
    colour = float(de.mean())
    if b.compare.shape == a.compare.shape:
        bgx, bgy = b.sgx, b.sgy
    else:  # another size or aspect: b resampled onto a's comparison grid, then differentiated
        h, w = a.compare.shape
        bgx, bgy = _gradients(cv2.resize(b.compare, (w, h), interpolation=cv2.INTER_AREA))
    agx, agy = a.sgx, a.sgy
    structure = 1.0 - _grad_corr(agx, agy, bgx, bgy)
    diff = _cells(cv2.add(cv2.pow(cv2.subtract(agx, bgx), 2), cv2.pow(cv2.subtract(agy, bgy), 2)))
    energy = _cells(cv2.add(cv2.multiply(agx, agx), cv2.multiply(agy, agy))) + \
        _cells(cv2.add(cv2.multiply(bgx, bgx), cv2.multiply(bgy, bgy)))
    cell_structure = float((diff / (energy + 25.0)).max())
    local = _unit(max(float(de.max()) / t.local_change_full, cell_structure))
    # fine detail added (sharpening, detail enhancement) is a visible edit even when the 256 px
    # grid cannot see it; detail lost is what re-encoding and resizing do to copies, so only
    # a gain counts
    side = min(max(a.shape), max(b.shape))
    gain = b.detail_at(side) / max(a.detail_at(side), 0.05) - 1.0 - _DETAIL_SLACK
    visible = _unit(max(colour / t.colour_change_full, structure, local, gain / t.detail_gain_full))
    return visible, colour, local


def _match(o: ImageFeatures, v: ImageFeatures, mirrored: bool):
    po, do = o.keypoints()
    pv, dv = v.keypoints(mirrored=mirrored)
    if do is None or dv is None or len(po) < 8 or len(pv) < 8:
        return None, 0
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(dv, do, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.85 * p[1].distance]
    if len(good) < _MIN_INLIERS:
        return None, 0
    src = np.float32([pv[m.queryIdx] for m in good])
    dst = np.float32([po[m.trainIdx] for m in good])
    H, mask = cv2.findHomography(src, dst, cv2.USAC_FAST, _RANSAC_PX)
    if H is None:
        return None, 0
    if mirrored:  # variation -> its mirror image -> original
        flip = np.array([[-1.0, 0.0, v.shape[1] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        H = H @ flip
    return H, int(mask.sum())


@dataclass
class _Aligned:
    H: np.ndarray
    inliers: int
    mirrored: bool
    coarse: float  # coarse gradient correlation in the overlap
    cover: np.ndarray  # bool, the original's pixels the variation covers
    warped: np.ndarray  # the variation's smoothed grey in the original's frame


def _try_alignment(o: ImageFeatures, v: ImageFeatures, H, inliers, mirrored):
    h, w = o.shape
    cover = cv2.warpPerspective(np.ones(v.shape, np.uint8), H, (w, h), flags=cv2.INTER_NEAREST)
    if cv2.countNonZero(cover) < 0.04 * h * w:
        return None
    ws = cv2.warpPerspective(v.smooth, H, (w, h), flags=cv2.INTER_LINEAR)
    ch, cw = o.coarse.shape
    cs = cv2.GaussianBlur(cv2.resize(ws, (cw, ch), interpolation=cv2.INTER_AREA), (0, 0), 1.0)
    cmask = cv2.resize(cover, (cw, ch), interpolation=cv2.INTER_NEAREST)
    cmask = cv2.erode(cmask, np.ones((5, 5), np.uint8)) > 0
    if np.count_nonzero(cmask) < 16:
        return None
    cgx, cgy = _gradients(cs)
    signed = _grad_corr(o.cgx, o.cgy, cgx, cgy, cmask)
    magnitude = _pearson(o.cmag[cmask], cv2.magnitude(cgx, cgy)[cmask])
    # the same picture: its structure in the same places, and not reversed (an inversion's
    # gradients all point the other way; a sketch's lines or a false-colour map's are neither)
    coarse = max(signed, magnitude * (1.0 + signed) / 2.0)
    return _Aligned(H, inliers, mirrored, coarse, cover > 0, ws)


def _align(o: ImageFeatures, v: ImageFeatures) -> _Aligned:
    """The best of: in place (stretched to the original's frame), the homography, the mirror's.

    Best = the highest coarse structure correlation; a homography must beat in-place by a margin,
    so a few chance matches between unrelated textures cannot win.
    """
    h, w = o.shape
    stretch = np.array([[w / v.shape[1], 0, 0], [0, h / v.shape[0], 0], [0, 0, 1]], np.float64)
    best = _try_alignment(o, v, stretch, 0, False)
    if best is not None and best.coarse >= _IN_PLACE_ENOUGH:
        return best  # already in place: no homography could win by the margin that counts
    for mirrored in (False, True):
        H, n = _match(o, v, mirrored)
        if H is not None and n >= _MIN_INLIERS:
            cand = _try_alignment(o, v, H, n, mirrored)
            if cand is not None and (best is None or cand.coarse > best.coarse + 0.02):
                best = cand
            if not mirrored and cand is not None and n >= 60 and cand.coarse > 0.8:
                break  # a clear direct match: the mirror image cannot do better
    assert best is not None  # in place always covers the whole frame
    return best


def _integrity_parts(o: ImageFeatures, al: _Aligned):
    """(coverage, structure_lost, structure_added, inner) of the aligned variation; ``inner`` is
    the covered part of the original's frame, less an edge band (uint8 0/1)."""
    coverage = float(np.count_nonzero(al.cover)) / al.cover.size
    inner = cv2.erode(al.cover.astype(np.uint8), np.ones((5, 5), np.uint8))
    # a band along the frame's edges is left out: an aligned variation's own frame edge (or a
    # warp's black wedge beside it) lands there, and no object of the original lives in it
    h, w = inner.shape
    m = max(2, round(_EDGE_BAND * max(h, w)))
    inner[:m] = 0
    inner[-m:] = 0
    inner[:, :m] = 0
    inner[:, -m:] = 0
    wgx, wgy = _gradients(al.warped)
    wgm = cv2.magnitude(wgx, wgy)
    near = cv2.dilate(o.gmag, np.ones((5, 5), np.uint8))
    new = np.maximum(0.0, wgm - _ADDED_GAIN * near - _ADDED_FLOOR)
    inner_f = inner.astype(np.float32)
    cell_new = _cells(new * new * inner_f)
    cell_all = _cells(wgm * wgm * inner_f) + 1.0
    added = float(np.mean(cell_new / cell_all > _ADDED_CELL))
    m = _cells(al.warped)
    std_v = np.sqrt(np.maximum(0.0, _cells(al.warped * al.warped) - m * m))
    covered = _cells(inner_f) > 0.5
    refilled = np.abs(m - o.cell_mean) >= _FILL_CHANGE
    flattened = (std_v < _FLAT_FRACTION * o.cell_std + _FLAT_STD) & refilled & covered
    content = float((o.cell_std * covered).sum())
    lost = float((o.cell_std * flattened).sum()) / content if content > 0 else 0.0
    return coverage, lost, added, inner


def _cell_sum(a: np.ndarray, cells: tuple[int, int]) -> np.ndarray:
    return cv2.resize(a, cells, interpolation=cv2.INTER_AREA)


def _directional_detail(ogx, ogy, vgx, vgy, inner) -> float:
    """Fine detail kept in the direction that lost the most, per sector, median over sectors.

    Per sector, the gradient structure tensors J_o and J_v of the original and the aligned
    variation; the eigenvalues of J_o^-1 J_v are the gradient energy kept along the directions
    that lost the least and the most. A blur along a line (motion) or along rays (zoom) keeps
    detail across its direction and loses it along it, so sqrt(lambda_min) falls while the mean
    detail ratio stays high; grades, resampling, flips and small rotations keep it near 1
    (sharpening and noise above 1), defocus lowers it in every direction.
    """
    h, w = inner.shape
    cells = (_TENSOR_CELLS, _TENSOR_CELLS)
    m = inner.astype(np.float32)
    jo = [_cell_sum(x * m, cells) for x in (ogx * ogx, ogx * ogy, ogy * ogy)]
    jv = [_cell_sum(x * m, cells) for x in (vgx * vgx, vgx * vgy, vgy * vgy)]
    cover = _cell_sum(m, cells)
    a, b, c = (x.astype(np.float64) for x in jo)
    floor = 0.05 * float(np.median(a + c)) + 1e-3
    use = (cover >= 0.5) & (a + c >= floor)  # sectors with structure to lose (not sky, a wall)
    if not use.any():
        return 1.0
    reg = 0.02 * (a + c)  # a one-directional original texture: do not divide by ~0
    a, b, c = a + reg, b, c + reg
    p, q, r = (x.astype(np.float64) for x in jv)
    det_o = np.maximum(a * c - b * b, 1e-12)  # 0 only in unused sectors (no structure)
    # M = J_o^-1 J_v, in closed form per sector; its eigenvalues are real (both symmetric,
    # J_o positive definite)
    m00, m01 = (c * p - b * q) / det_o, (c * q - b * r) / det_o
    m10, m11 = (a * q - b * p) / det_o, (a * r - b * q) / det_o
    half_tr = (m00 + m11) / 2
    disc = np.sqrt(np.maximum(half_tr * half_tr - (m00 * m11 - m01 * m10), 0.0))
    lam_min = np.maximum(half_tr - disc, 0.0)
    out = np.sqrt(lam_min[use & (half_tr + disc > 0)])
    return float(np.median(out)) if out.size else 1.0


def _artefact_patch(flat, dv, vm, covered) -> float:
    """Share of the frame in the largest flattened patch that looks out of place: inside
    texture (the surround kept its detail: a smear, a flat paste) or of another brightness than
    its surround (a blob). A removed object's place filled like the flat surface around it is
    an edit, not an artefact."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(flat.astype(np.uint8), connectivity=8)
    ring_k = np.ones((5, 5), np.uint8)
    for i in np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1:
        patch = lab == i
        ring = (cv2.dilate(patch.astype(np.uint8), ring_k) > 0) & ~patch & covered
        if not ring.any():
            continue
        textured_ring = np.median(dv[ring]) >= max(_TEXTURED / 2, 2.0 * np.median(dv[patch]))
        blob = abs(float(vm[patch].mean()) - float(np.median(vm[ring]))) >= _BLOB_STEP
        if textured_ring or blob:
            return float(stats[i, cv2.CC_STAT_AREA]) / flat.size
    return 0.0


def _local_parts(o: ImageFeatures, v: ImageFeatures, al: _Aligned, inner: np.ndarray):
    """(directional_detail, flat_patch, blown_patch, detail_in_place) of the variation.

    On the working-size greys (the variation warped onto the original's frame; ``inner`` the
    covered part less the edge band): ``directional_detail`` (see ``_directional_detail``), and
    ``flat_patch``, the share of the frame in the largest connected patch of 1/64-side cells
    where the original had texture and the variation lost it (flattened, smeared, pasted over
    with something flat): kept less than ``_FLAT_KEPT`` of what the rest of the picture kept,
    after the slope of the global tone curve at the cell's level (a curve that crushes shadows
    or clips highlights flattens them everywhere, not in one patch). Counted only where the rest
    of the picture kept its texture alike (a stylisation changes texture everywhere);
    ``blown_patch``, the share of the frame in the largest patch newly clipped to white that
    the global tone curve does not explain (a highlight pasted or blown into a blob);
    ``detail_in_place`` (see ``_detail_in_place``).
    """
    h, w = o.shape
    s = _LOCAL_CELLS / max(h, w)
    cells = (max(4, round(w * s)), max(4, round(h * s)))
    og, ogx, ogy, do, level_of_cell = o.fine()
    vg = cv2.warpPerspective(v.grey.astype(np.float32), al.H, (w, h), flags=cv2.INTER_LINEAR)
    vgx, vgy = _gradients(cv2.GaussianBlur(vg, (0, 0), _FINE_SIGMA))
    directional = _directional_detail(ogx, ogy, vgx, vgy, inner)
    covered = _cell_sum(inner.astype(np.float32), cells) > 0.99
    centres, curve, slope = _tone_curve(og, vg, inner)
    dv = _cell_sum(cv2.absdiff(vg, cv2.GaussianBlur(vg, (0, 0), 1.5)), cells)  # fine detail per cell
    flat_patch = _flat_patch(vg, dv, do, slope[level_of_cell], covered, cells)
    in_place = _detail_in_place(do, dv, covered)
    # blown flat: a patch newly clipped to white that the tone curve does not explain (the
    # demo's visor blob: a highlight pasted into a hole)
    blown = (vg >= _BLOWN) & (inner > 0)
    if blown.any():  # newly blown, where the curve does not clip that level
        blown[blown] = np.interp(og[blown], centres, curve) < _BLOWN - 15
    blown_cells = _cell_sum(blown.astype(np.float32), cells) >= 0.5
    blown_patch = 0.0
    if blown_cells.any():
        n, lab, stats, _ = cv2.connectedComponentsWithStats(blown_cells.astype(np.uint8), connectivity=8)
        blown_patch = float(stats[1:, cv2.CC_STAT_AREA].max()) / blown_cells.size
    return directional, flat_patch, blown_patch, in_place


def _detail_in_place(do: np.ndarray, dv: np.ndarray, covered: np.ndarray) -> float:
    """Is the variation's fine detail where the original's was? The cells holding the top quarter
    of the variation's detail, ranked by the original's detail (0 least, 1 most): their mean
    rank is 0.875 when the detail stayed in place (a grade, a tone curve, sharpening, a recrop:
    any edit that scales detail keeps the ranks) and 0.5 when it lies anywhere (a layer of
    crystals, dirt or a texture laid over a blurred photo). Mapped to 1 in place, 0 anywhere.
    Edge-preserving simplifications (cartoon, stylisation) keep the strongest detail, so rank
    high; only on pure textures, whose detail is the same everywhere, do they fall."""
    o, v = do[covered], dv[covered]
    # Only cells where either picture has detail: a product on a flat white (or black) ground has most
    # cells at exactly 0 in both, which would fill the "top quarter" and rank by raster order.
    active = (o > _NO_DETAIL) | (v > _NO_DETAIL)
    o, v = o[active], v[active]
    if o.size < 16:
        return 1.0
    rank = _average_ranks(o) / (o.size - 1.0)
    top = v >= np.percentile(v, _DETAIL_TOP)
    return float((rank[top].mean() - 0.5) / (_RANK_KEPT - 0.5))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """0-based ranks, equal values sharing their mean rank (a raster order must not rank ties)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2.0)[inverse]


def _tone_curve(og: np.ndarray, vg: np.ndarray, inner: np.ndarray):
    """(level centres, curve, slope): the global tone curve (mean variation grey per original
    grey level) and its slope: a curve that crushes shadows or clips highlights flattens them
    everywhere, not in one patch."""
    sel = inner > 0
    bins = np.clip(og[sel] / 8.0, 0, 31).astype(np.int32)
    cnt = np.bincount(bins, minlength=32).astype(np.float64)
    curve = np.bincount(bins, weights=vg[sel], minlength=32) / np.maximum(cnt, 1)
    have = cnt >= max(20, 1e-4 * sel.sum())
    centres = np.arange(32) * 8.0 + 4.0
    if have.sum() >= 2:
        curve = np.interp(centres, centres[have], curve[have])
        slope = np.abs(np.gradient(curve, 8.0))
    else:
        curve, slope = centres.copy(), np.ones(32)
    return centres, curve, slope


def _flat_patch(vg: np.ndarray, dv: np.ndarray, do: np.ndarray, cell_slope: np.ndarray, covered: np.ndarray,
                cells) -> float:
    """The share of the frame in the largest patch of cells that lost the texture the original
    had (after the tone curve's slope at each cell's level), when the rest kept theirs alike
    (``dv``, ``do``: fine detail on cells of 1/64 of the long side)."""
    expected = do * np.clip(cell_slope, 0.0, 2.0)
    textured = covered & (do >= _TEXTURED) & (expected >= 0.5 * _TEXTURED)
    if textured.sum() < 8:
        return 0.0
    kept = dv / np.maximum(expected, 1e-3)
    typical = float(np.median(kept[textured]))
    flat = textured & (kept < _FLAT_KEPT * min(1.0, typical))
    q25, q75 = np.percentile(kept[textured], (25, 75))
    # a patch is a local artefact where the rest of the picture kept its texture as it was
    # (a rendering, a cartoon or a stylisation, changes texture everywhere: the detail
    # ratio and the other parts judge it as a whole)
    if flat.any() and q75 <= _TEXTURE_KEPT_SPREAD * q25:
        return _artefact_patch(flat, dv, _cell_sum(vg, cells), covered)
    return 0.0


# ---- scoring ----------------------------------------------------------------------------------

def score_calibrated(
    original: ImageFeatures,
    variation: np.ndarray | Image.Image | None,
    *,
    variation_features: ImageFeatures | None = None,
    accepted: Sequence[ImageFeatures] = (),
    thresholds: CalibratedThresholds | None = None,
) -> CalibratedScores:
    """Every calibrated score of one variation against its original and the accepted ones.

    Pass ``variation_features`` when the variation's features are already computed (they are
    then reused, e.g. by adding them to ``accepted`` if it is kept); ``variation`` may then be
    None. ``thresholds`` supplies the scales and weights (defaults: ``CalibratedThresholds()``).
    """
    t = thresholds if thresholds is not None else CalibratedThresholds()
    o, v = original, _features_of(original, variation, variation_features)

    # similarity
    visible, colour, local = _change_in_place(o, v, t)
    al = _align(o, v)
    relatedness = _unit(al.coarse)
    similarity = relatedness * (1.0 - visible / 2.0)
    n_kp = len(o.keypoints()[0])
    geometric = _unit(al.inliers / max(n_kp, _MIN_INLIERS)) if al.inliers else 0.0

    # diversity: the visible change from the nearest accepted variation
    diversity = min((_change_in_place(a, v, t)[0] for a in accepted), default=None)

    # measured against the original in its frame (after the alignment)
    coverage, lost, added, inner = _integrity_parts(o, al)
    directional, flat_patch, blown_patch, in_place = _local_parts(o, v, al, inner)
    look = _aesthetic_parts(o, v, t, directional)
    # object integrity
    integrity = (_ramp(coverage, t.coverage_ok, t.coverage_bad)
                 * _ramp(lost, 0.0, t.structure_lost_bad)
                 * _ramp(added, 0.0, t.structure_added_bad)
                 * _ramp(flat_patch, t.flat_patch_ok, t.flat_patch_bad)
                 * _ramp(blown_patch, t.blown_patch_ok, t.blown_patch_bad)
                 * _ramp(in_place, t.detail_in_place_ok, t.detail_in_place_bad))

    overall = overall_calibrated(similarity=similarity, diversity=diversity, aesthetic=look["aesthetic"],
                                 object_integrity=integrity, thresholds=t)
    return CalibratedScores(
        similarity=similarity, diversity=diversity, object_integrity=integrity, overall_quality=overall,
        structure_match=relatedness, geometric_match=geometric, mirrored=float(al.mirrored),
        colour_change=colour, local_change=local, visible_change=visible,
        coverage=coverage, structure_lost=lost, structure_added=added,
        directional_detail=directional, flat_patch=flat_patch, blown_patch=blown_patch,
        detail_in_place=in_place, **look,
    )


def _features_of(original, variation, variation_features) -> ImageFeatures:
    """The variation's features (given, or computed from its image); the original's checked."""
    if not isinstance(original, ImageFeatures):
        raise TypeError(
            f"original must be ImageFeatures, got {type(original).__name__}; build it once per "
            "original with ImageFeatures.from_image(image)"
        )
    if variation_features is not None:
        return variation_features
    if variation is None:
        raise ValueError("pass the variation image or its variation_features")
    return ImageFeatures.from_image(variation)


def _aesthetic_parts(o: ImageFeatures, v: ImageFeatures, t: CalibratedThresholds, directional: float) -> dict:
    """The aesthetic score and its parts (named as CalibratedScores' fields): naturalness (noise,
    impulses, blocks), detail and sharpness, exposure, colourfulness."""
    impulses = max(0.0, v.impulses - o.impulses)
    noise_excess = math.sqrt(max(0.0, v.noise ** 2 - o.noise ** 2))
    colour_noise = math.sqrt(max(0.0, v.colour_noise ** 2 - o.colour_noise ** 2))
    naturalness = (_ramp(noise_excess, t.noise_excess_ok, t.noise_excess_bad)
                   * _ramp(colour_noise, t.colour_noise_ok, t.colour_noise_bad)
                   * _ramp(impulses, t.impulse_noise_ok, t.impulse_noise_bad)
                   * _ramp(v.blockiness - max(0.0, o.blockiness - 1.0), t.blockiness_ok,
                           t.blockiness_bad))
    side = min(max(o.shape), max(v.shape))  # detail compared at the smaller working size
    detail_ratio = v.detail_at(side) / max(o.detail_at(side), 0.05)
    detail_sharpness = (_ramp(detail_ratio, t.detail_ratio_ok, t.detail_ratio_bad)
                        * _ramp(directional, t.directional_detail_ok, t.directional_detail_bad))
    clipping = max(0.0, v.highlights - o.highlights)
    brightening = v.lightness - o.lightness
    exposure = _ramp(clipping, t.highlight_clipping_ok, t.highlight_clipping_bad) * _ramp(
        brightening, t.brightening_ok, t.brightening_bad)
    colour_score = _unit(v.colourfulness / t.colourfulness_full)
    w_c = t.colourfulness_weight
    aesthetic = naturalness * detail_sharpness * exposure * (1.0 - w_c + w_c * colour_score)
    return dict(aesthetic=aesthetic, noise_excess=noise_excess, blockiness=v.blockiness, detail_ratio=detail_ratio,
                highlight_clipping=clipping, brightening=brightening, colourfulness=v.colourfulness,
                naturalness=naturalness, detail_sharpness=detail_sharpness, exposure=exposure,
                impulse_noise=impulses, colour_noise=colour_noise)


def similarity_fit(similarity: float, *, thresholds: CalibratedThresholds) -> float:
    """1 well inside the similarity band, falling to 0 at its edges (over ``band_margin``)."""
    t = thresholds
    inside = min(similarity - t.similarity_min, t.similarity_max - similarity)
    return _unit(inside / t.band_margin)


def overall_calibrated(
    *, similarity: float, diversity: float | None, aesthetic: float, object_integrity: float,
    thresholds: CalibratedThresholds,
) -> float:
    """Weighted mean of the band fit, diversity, aesthetic and integrity.

    A first variation has no diversity: its weight is left out (the rest renormalised) rather
    than filled with a made-up value.
    """
    t = thresholds
    parts = [(t.weight_similarity, similarity_fit(similarity, thresholds=t)),
             (t.weight_aesthetic, aesthetic), (t.weight_object_integrity, object_integrity)]
    if diversity is not None:
        parts.append((t.weight_diversity, _unit(diversity)))
    total = sum(w for w, _ in parts)
    return sum(w * x for w, x in parts) / total


def judge_calibrated(
    scores: CalibratedScores, *, thresholds: CalibratedThresholds, level: LevelSettings
) -> Verdict:
    """Every failed check, with the same checks and stable reason codes as the seed's gate."""
    return gate(similarity=scores.similarity, diversity=scores.diversity, aesthetic=scores.aesthetic,
                object_integrity=scores.object_integrity, overall_quality=scores.overall_quality,
                thresholds=thresholds, level_min=thresholds.overall_for(level.name))
