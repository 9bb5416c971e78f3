"""The seed's quality metrics (VariationQualityAnalyzer) as pure functions.

Definitions, ranges and every deviation from the seed are in docs/quality-model.md. All
functions take uint8 numpy arrays (H x W x 3 RGB, or H x W grey) and options keyword-only.
Per-image work (grey conversion, local means and variances) is done once in ``GreyImage`` and
reused for every pair, so a pair costs one extra box filter for the covariance.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# structural_similarity(a, b) with skimage's defaults on uint8: 7x7 uniform window, sample
# covariance (N / (N - 1)), K1=0.01, K2=0.03, data_range=255, mean over the image less a
# 3-pixel border.
_WIN = 7
_PAD = (_WIN - 1) // 2
_COV_NORM = (_WIN * _WIN) / (_WIN * _WIN - 1)
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2

# The seed's weights.
AESTHETIC_WEIGHTS = {
    "color_variance": 0.25,
    "contrast": 0.25,
    "brightness_balance": 0.25,
    "sharpness": 0.25,
}
OVERALL_WEIGHTS = {"similarity": 0.2, "diversity": 0.3, "aesthetic": 0.3, "object_integrity": 0.2}
NEUTRAL_DIVERSITY = 0.5  # the seed's stand-in for a diversity it could not measure


def _check_uint8(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(
            f"{what} has dtype {image.dtype}; pass uint8 pixels (0-255), e.g. "
            "np.asarray(pil_image.convert('RGB'))"
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"{what} has shape {image.shape}; pass H x W grey or H x W x 3 RGB (or RGBA)"
        )


def to_grey(image: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma exactly as Pillow's ``convert('L')`` computes it (the seed's grey)."""
    _check_uint8(image, "image")
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    rgb = image[:, :, :3].astype(np.uint32)
    # Pillow: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
    grey = (rgb[:, :, 0] * 19595 + rgb[:, :, 1] * 38470 + rgb[:, :, 2] * 7471 + 0x8000) >> 16
    return grey.astype(np.uint8)


class GreyImage:
    """A grey image with its SSIM statistics, computed once and reused for every pair."""

    __slots__ = ("pixels", "_f", "_mu", "_mu_sq", "_var", "_resized")

    def __init__(self, pixels: np.ndarray):
        _check_uint8(pixels, "grey image")
        if pixels.ndim != 2:
            pixels = to_grey(pixels)
        h, w = pixels.shape
        if h < _WIN or w < _WIN:
            raise ValueError(
                f"image of {w}x{h} px is smaller than SSIM's 7x7 window; "
                "varflow needs images of at least 7x7 pixels"
            )
        self.pixels = pixels
        self._f = None
        self._mu = None
        self._mu_sq = None
        self._var = None
        self._resized: dict[tuple[int, int], GreyImage] = {}

    @classmethod
    def from_image(cls, image: np.ndarray) -> "GreyImage":
        return cls(to_grey(image))

    @property
    def shape(self) -> tuple[int, int]:
        return self.pixels.shape

    def _stats(self):
        if self._f is None:
            f = self.pixels.astype(np.float32)
            mu = cv2.blur(f, (_WIN, _WIN))
            mu_sq = mu * mu
            var = cv2.blur(f * f, (_WIN, _WIN))
            var -= mu_sq
            var *= _COV_NORM
            self._f, self._mu, self._mu_sq, self._var = f, mu, mu_sq, var
        return self._f, self._mu, self._mu_sq, self._var

    def resized_to(self, shape: tuple[int, int]) -> "GreyImage":
        """This image resized to ``shape`` (H, W) as the seed does: cv2.resize, bilinear."""
        if shape == self.shape:
            return self
        if shape not in self._resized:
            self._resized[shape] = GreyImage(cv2.resize(self.pixels, (shape[1], shape[0])))
        return self._resized[shape]


def ssim(reference: GreyImage, other: GreyImage) -> float:
    """SSIM of ``other`` (resized to ``reference`` when sizes differ) against ``reference``.

    Equal to ``skimage.metrics.structural_similarity(ref, cv2.resize(other, ref_size))`` on
    the uint8 grey images (tests pin it within 1e-4).
    """
    other = other.resized_to(reference.shape)
    fa, mua, mua_sq, vara = reference._stats()
    fb, mub, mub_sq, varb = other._stats()
    cross = cv2.blur(fa * fb, (_WIN, _WIN))
    mu_ab = mua * mub
    cross -= mu_ab
    cross *= 2.0 * _COV_NORM
    cross += _C2  # 2*cov + C2
    mu_ab *= 2.0
    mu_ab += _C1  # 2*mu_a*mu_b + C1
    num = mu_ab * cross
    den = (mua_sq + mub_sq + _C1) * (vara + varb + _C2)
    s = num / den
    return float(s[_PAD:-_PAD, _PAD:-_PAD].mean(dtype=np.float64))


def similarity(original: np.ndarray | GreyImage, variation: np.ndarray | GreyImage) -> float:
    """The seed's similarity: SSIM on grey, the variation resized to the original's size."""
    a = original if isinstance(original, GreyImage) else GreyImage.from_image(original)
    b = variation if isinstance(variation, GreyImage) else GreyImage.from_image(variation)
    return ssim(a, b)


def diversity(
    variation: np.ndarray | GreyImage, others: list[np.ndarray | GreyImage]
) -> float | None:
    """Mean of (1 - SSIM) against each of ``others`` (each resized to the variation's size).

    ``None`` when there is nothing to compare with; the seed then skipped the metric, which its
    acceptance check read as 0 and rejected every first variation (see the model doc).
    """
    if not others:
        return None
    target = variation if isinstance(variation, GreyImage) else GreyImage.from_image(variation)
    diffs = [
        1.0 - ssim(target, o if isinstance(o, GreyImage) else GreyImage.from_image(o))
        for o in others
    ]
    return sum(diffs) / len(diffs)


@dataclass(frozen=True)
class AestheticScore:
    color_variance: float
    contrast: float
    brightness_balance: float
    sharpness: float

    @property
    def total(self) -> float:
        return sum(getattr(self, k) * w for k, w in AESTHETIC_WEIGHTS.items())


def aesthetic(image: np.ndarray, *, grey: np.ndarray | None = None) -> AestheticScore:
    """The seed's four-part aesthetic score of an RGB (or grey) uint8 image.

    colour variance: variance of the per-band variances (Pillow ImageStat), / 10000, capped at 1;
    contrast: 2 * std(grey) / 255, capped; brightness balance: 1 - 2 |mean(grey)/255 - 0.5|;
    sharpness: var(Laplacian(grey)) / 1000, capped.
    """
    _check_uint8(image, "image")
    if grey is None:
        grey = to_grey(image)
    if image.ndim == 3 and image.shape[2] >= 3:
        bands = image[:, :, :3] if image.shape[2] == 3 else np.ascontiguousarray(image[:, :, :3])
        _, std = cv2.meanStdDev(bands)
        band_vars = (std.ravel() ** 2).tolist()
    else:
        band_vars = [float(np.var(grey, dtype=np.float64))]
    color_variance = min(float(np.var(band_vars)) / 10000.0, 1.0)
    mean, std = cv2.meanStdDev(grey)
    contrast = min(float(std[0, 0]) / 255.0 * 2.0, 1.0)
    brightness_balance = 1.0 - abs(float(mean[0, 0]) / 255.0 - 0.5) * 2.0
    lap = cv2.Laplacian(grey, cv2.CV_16S)  # exact: |values| <= 4 * 255
    _, lap_std = cv2.meanStdDev(lap)
    sharpness = min(float(lap_std[0, 0]) ** 2 / 1000.0, 1.0)
    return AestheticScore(color_variance, contrast, brightness_balance, sharpness)


def object_integrity(grey: np.ndarray) -> float:
    """The seed's edge-based object integrity of a grey uint8 image.

    Canny(50, 150) edges, 8-connected components; the number of components larger than 1% of
    the image's area, / 10, capped at 1. No edges at all scores 0.1 (the seed's value).
    """
    _check_uint8(grey, "grey image")
    if grey.ndim != 2:
        grey = to_grey(grey)
    edges = cv2.Canny(grey, 50, 150)
    num_labels, _, stats, _ = cv2.connectedComponentsWithStats(edges)
    if num_labels <= 1:
        return 0.1
    areas = stats[1:, cv2.CC_STAT_AREA]
    total_area = grey.shape[0] * grey.shape[1]
    large = int(np.count_nonzero(areas > total_area * 0.01))
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


def score_variation(
    original: GreyImage,
    variation: np.ndarray,
    *,
    variation_grey: GreyImage | None = None,
    accepted: list[GreyImage] = (),
) -> VariationScores:
    """Every metric of one variation: against the original and the already accepted ones."""
    vgrey = variation_grey if variation_grey is not None else GreyImage.from_image(variation)
    sim = ssim(original, vgrey)
    div = diversity(vgrey, list(accepted))
    aes = aesthetic(variation, grey=vgrey.pixels)
    integ = object_integrity(vgrey.pixels)
    overall = overall_quality(
        similarity=sim, diversity=div, aesthetic=aes.total, object_integrity=integ
    )
    return VariationScores(sim, div, aes, integ, overall)
