"""Every tunable number of the quality model, in one place.

The defaults are the seed document's ("Phase 4"); docs/quality-model.md says where they come
from and where varflow deviates. Everything is a frozen dataclass so a setting can be logged,
hashed into a cache key and compared, but never mutated half-way through a run.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

VARIATION_TYPES = (
    "random",
    "object_rearrange",
    "object_add",
    "object_remove",
    "style_change",
    "composition",
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class QualityThresholds:
    """The seed's acceptance thresholds (VariationQualityAnalyzer.quality_thresholds)."""

    similarity_min: float = 0.3
    similarity_max: float = 0.9
    diversity_min: float = 0.2
    aesthetic_min: float = 0.6
    object_integrity_min: float = 0.7
    overall_min: float = 0.6

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"quality threshold {name}={value!r} is outside [0, 1]; every score it "
                    "gates lies in [0, 1], so pass a value between 0 and 1"
                )
        if self.similarity_min > self.similarity_max:
            raise ValueError(
                f"similarity_min={self.similarity_min} is above similarity_max="
                f"{self.similarity_max}: no variation could pass; swap or widen them"
            )


@dataclass(frozen=True)
class LevelSettings:
    """One adaptive quality level (the seed's AdaptiveQualityManager.quality_settings)."""

    name: str
    max_image_size: int
    quality_threshold: float
    max_attempts_per_variation: int


QUALITY_LEVELS: dict[str, LevelSettings] = {
    "high": LevelSettings("high", 2048, 0.8, 3),
    "medium": LevelSettings("medium", 1536, 0.6, 2),
    "low": LevelSettings("low", 1024, 0.4, 1),
}
LEVEL_ORDER = ("high", "medium", "low")


def level_settings(name: str) -> LevelSettings:
    try:
        return QUALITY_LEVELS[name]
    except KeyError:
        raise ValueError(
            f"unknown quality level {name!r}; choose one of {', '.join(LEVEL_ORDER)}"
        ) from None


@dataclass(frozen=True)
class DedupSettings:
    """Near-duplicate detection: perceptual hashes shortlist, SSIM confirms.

    A pair is a candidate when any of the three 64-bit hashes (average, perceptual, difference)
    differ in at most ``max_hamming`` bits; it is a duplicate when the SSIM of the two grey
    images, both area-averaged to ``ssim_size`` x ``ssim_size`` pixels, is above
    ``ssim_threshold``. ``ssim_size=0`` compares at full size instead (the second image resized
    to the first, the seed's way; its 0.95 then applies). The defaults are measured by
    bench/dedup_quality.py (precision 1.0, recall 1.0 on its evaluation set; see
    docs/quality-model.md): positives' hash distance reaches 12 bits, look-alike photos' 20 px
    SSIM reaches 0.63 while true copies' stays above 0.80.
    """

    max_hamming: int = 16
    ssim_threshold: float = 0.72
    ssim_size: int = 20

    def __post_init__(self) -> None:
        if not 0 <= self.max_hamming <= 64:
            raise ValueError(
                f"max_hamming={self.max_hamming} must be between 0 and 64 (bits of a 64-bit hash)"
            )
        if not -1.0 <= self.ssim_threshold <= 1.0:
            raise ValueError(f"ssim_threshold={self.ssim_threshold} must be within [-1, 1]")
        if self.ssim_size != 0 and self.ssim_size < 7:
            raise ValueError(
                f"ssim_size={self.ssim_size} is below SSIM's 7x7 window; use 0 (full size) "
                "or at least 7 pixels"
            )


@dataclass(frozen=True)
class LoadLimits:
    """Guards against files that would exhaust memory before a single pixel is useful."""

    max_pixels: int = 100_000_000  # ~ 10000 x 10000; Pillow's own warning starts at 89.5 MP
    max_file_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """What a run needs beyond its parameters; one object so tasks get it in one piece."""

    thresholds: QualityThresholds = field(default_factory=QualityThresholds)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    limits: LoadLimits = field(default_factory=LoadLimits)

    def replace(self, **changes) -> "Settings":
        return replace(self, **changes)


def default_home() -> Path:
    """Where all of varflow's data lives: ``$VARFLOW_HOME``, else the XDG data directory."""
    env = os.environ.get("VARFLOW_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "varflow"


@dataclass(frozen=True)
class GallerySettings:
    """The run gallery (``varflow report``): thumbnail size and how much one page holds.

    Thumbnails are embedded in the page, so its size grows with the images it shows; past
    ``max_images`` source images the page shows the first ones and says how to see more.
    Rejected variations' files are deleted (unless ``--keep-rejected``); a small thumbnail of
    each is kept under the data directory for the gallery, for the latest ``keep_runs`` runs.
    """

    thumbnail_px: int = 320  # long side; shown at up to 240 CSS px, sharp on 1.3x screens
    jpeg_quality: int = 82
    max_images: int = 200
    keep_runs: int = 20


GALLERY = GallerySettings()
