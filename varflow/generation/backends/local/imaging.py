"""Small image helpers shared by the local generator's modules (uint8 RGB arrays in and out)."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

RAMP = np.arange(256, dtype=np.float32)  # the input axis of every tone curve


@dataclass
class Op:
    """One operation as recorded in ``GeneratedVariation.detail``."""

    name: str
    params: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"op": self.name, **{k: _round(v) for k, v in self.params.items()}}


def _round(v):
    if isinstance(v, (float, np.floating)):
        return round(float(v), 3)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (list, tuple)):
        return [_round(x) for x in v]
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


def to_u8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def resize_long(img: np.ndarray, long_side: int, interp=cv2.INTER_AREA) -> tuple[np.ndarray, float]:
    """``img`` shrunk so its long side is at most ``long_side``; returns it and the scale."""
    h, w = img.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    if scale >= 1.0:
        return img, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=interp), scale


def resize_to(img: np.ndarray, shape: tuple[int, int], interp=cv2.INTER_CUBIC) -> np.ndarray:
    """``img`` resized to ``shape`` (H, W); unchanged when it already has that size."""
    h, w = shape[:2]
    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=interp)


def sample(img: np.ndarray, target: int = 256) -> np.ndarray:
    """Every k-th pixel, about ``target`` along the long side: enough for image statistics."""
    k = max(1, max(img.shape[:2]) // target)
    return img[::k, ::k]


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma as uint8."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def apply_curves(img: np.ndarray, curves) -> np.ndarray:
    """Tone curves (256-entry arrays, values 0-255): one for all channels or one per channel."""
    if isinstance(curves, np.ndarray) and curves.ndim == 1:
        return cv2.LUT(img, to_u8(curves))
    table = np.stack([to_u8(c) for c in curves], axis=1).reshape(256, 1, 3)
    return cv2.LUT(img, table)


def gamma_curve(gamma: float, lo: float = 0.0, hi: float = 255.0) -> np.ndarray:
    """A power curve from ``lo`` (at 0) to ``hi`` (at 255): monotone, so it never clips."""
    return lo + (hi - lo) * np.power(RAMP / 255.0, gamma)


def s_curve(k: float, pivot: float = 0.5) -> np.ndarray:
    """Contrast around ``pivot`` (0-1) with fixed end points; ``k`` in [0, 1), 0 is identity.

    A blend of the identity with a smoothstep through the pivot: monotone for k < 1, so black
    stays black and white stays white.
    """
    t = RAMP / 255.0
    p = min(max(pivot, 0.05), 0.95)
    u = np.where(t < p, t / p * 0.5, 0.5 + (t - p) / (1 - p) * 0.5)
    smooth = u * u * (3 - 2 * u)
    v = np.where(smooth < 0.5, smooth * 2 * p, p + (smooth - 0.5) * 2 * (1 - p))
    return 255.0 * ((1 - k) * t + k * v)


def saturation(img: np.ndarray, factor: float, *, vibrance: bool = False) -> np.ndarray:
    """Chroma scaled by ``factor`` around neutral in YCrCb (luma kept).

    ``vibrance``: scale muted colours more than saturated ones (a saturated red does not clip).
    """
    if abs(factor - 1.0) < 1e-3:
        return img
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    d = RAMP - 128.0
    if vibrance and factor > 1:
        # the gain falls from factor at neutral to 1 at full chroma
        g = 1 + (factor - 1) * np.clip(1 - np.abs(d) / 64.0, 0, 1) ** 1.5
        lut = 128 + d * g
    else:
        lut = 128 + d * factor
    lut = to_u8(np.clip(lut, 0, 255))
    ycc[:, :, 1] = cv2.LUT(ycc[:, :, 1], lut)
    ycc[:, :, 2] = cv2.LUT(ycc[:, :, 2], lut)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def blend(dst: np.ndarray, src: np.ndarray, alpha) -> np.ndarray:
    """``dst`` + (``src`` - ``dst``) x ``alpha`` (a number or an H x W map), as uint8."""
    if np.isscalar(alpha):
        return cv2.addWeighted(dst, 1.0 - float(alpha), src, float(alpha), 0.0)
    a = alpha[..., None] if alpha.ndim == 2 and dst.ndim == 3 else alpha
    out = dst.astype(np.float32)
    out += (src.astype(np.float32) - out) * a
    return to_u8(out)


def box_mean(a: np.ndarray, radius: int) -> np.ndarray:
    k = 2 * radius + 1
    return cv2.boxFilter(a, -1, (k, k), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey ``guide`` (float32, 0-1): edge-aware smoothing in a
    few box filters, so it runs at full resolution."""
    mean_i = box_mean(guide, radius)
    mean_p = box_mean(src, radius)
    corr_ip = box_mean(guide * src, radius)
    var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    a = (corr_ip - mean_i * mean_p) / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)


def vignette(img: np.ndarray, amount: float, *, roundness: float = 0.6) -> np.ndarray:
    """Darken the corners by up to ``amount`` (0-1) with a smooth elliptic fall-off."""
    if amount <= 0:
        return img
    H, W = img.shape[:2]
    yy = np.linspace(-1, 1, H, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, W, dtype=np.float32)[None, :]
    r2 = xx * xx + yy * yy
    v = 1 - amount * np.clip((r2 - 0.25) * roundness, 0, 1) ** 1.5
    return to_u8(img.astype(np.float32) * v[..., None])
