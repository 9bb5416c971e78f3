"""Every tunable number of the quality model, in one place.

The defaults are the seed document's ("Phase 4"); docs/quality-model.md says where they come
from and where varflow deviates. Everything is a frozen dataclass so a setting can be logged,
hashed into a cache key and compared, but never mutated half-way through a run.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from varflow.errors import ConfigurationError
from varflow.kinds import QualityLevel

VARIATION_TYPES = (
    "random",
    "object_rearrange",
    "object_add",
    "object_remove",
    "style_change",
    "composition",
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# Quality profiles (varflow.quality.profiles): the calibrated one judges by default; the seed's formulas
# stay available, exact, and are recorded beside it for every variation.
PROFILES = ("calibrated", "seed")
DEFAULT_PROFILE = "calibrated"


def _unit(help: str) -> dict:
    """Field metadata of a setting in [0, 1]: what it means and its bounds (the UI form shows both)."""
    return {"help": help, "ge": 0.0, "le": 1.0}


@dataclass(frozen=True)
class QualityThresholds:
    """The seed's acceptance thresholds (VariationQualityAnalyzer.quality_thresholds)."""

    similarity_min: float = field(default=0.3, metadata=_unit("Lowest SSIM to the original a variation may have."))
    similarity_max: float = field(default=0.9,
                                  metadata=_unit("Highest SSIM to the original (above: too close a copy)."))
    diversity_min: float = field(default=0.2,
                                 metadata=_unit("Lowest mean (1 - SSIM) to the image's accepted variations."))
    aesthetic_min: float = field(default=0.6, metadata=_unit("Lowest aesthetic score."))
    object_integrity_min: float = field(default=0.7, metadata=_unit("Lowest object-integrity score."))
    overall_min: float = field(default=0.6,
                               metadata=_unit("Lowest overall quality (the level's threshold applies too)."))

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 1.0:
                raise ConfigurationError(
                    f"quality threshold {name}={value!r} is outside [0, 1]; every score it "
                    "gates lies in [0, 1], so pass a value between 0 and 1"
                )
        if self.similarity_min > self.similarity_max:
            raise ConfigurationError(
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
    QualityLevel.HIGH: LevelSettings(QualityLevel.HIGH, 2048, 0.8, 3),
    QualityLevel.MEDIUM: LevelSettings(QualityLevel.MEDIUM, 1536, 0.6, 2),
    QualityLevel.LOW: LevelSettings(QualityLevel.LOW, 1024, 0.4, 1),
}
LEVEL_ORDER = tuple(QualityLevel)


def level_settings(name: str) -> LevelSettings:
    try:
        return QUALITY_LEVELS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown quality level {name!r}; choose one of {', '.join(LEVEL_ORDER)}"
        ) from None


@dataclass(frozen=True)
class DedupSettings:
    """Near-duplicate detection: perceptual hashes shortlist, SSIM confirms.

    A pair is a candidate when any of the three 64-bit hashes (average, perceptual, difference)
    differ in at most ``max_hamming`` bits; it is a duplicate when the SSIM of the two grey
    images, both area-averaged to ``ssim_size`` x ``ssim_size`` pixels, is above
    ``ssim_threshold``. ``ssim_size=0`` compares at full size instead (the second image resized
    to the first, the seed's way; its 0.95 then applies). The defaults come from
    bench/dedup_quality.py; docs/quality-model.md records the measurement.
    """

    max_hamming: int = 16
    ssim_threshold: float = 0.72
    ssim_size: int = 20
    # Appearance (varflow.duplicates.dedup.same_appearance): copy-finding semantics call a grade, a 10%
    # recrop or an object removed in one place "the same picture", yet a person sees another
    # variation. In a run a confirmed pair is a duplicate only when it is also aligned (SSIM at
    # aligned_size px >= aligned_ssim: same framing), its mean CIELAB chroma distance (8 x 8
    # cells) is within max_colour_distance, and no 16 x 16 cell stands out by more than
    # max_local_difference (dE, max - median). Re-encoded, resized, noisy, blurred or +20%
    # brightened copies pass all three. None turns a check off (COPY_FINDING: all off).
    max_colour_distance: float | None = 7.0
    max_local_difference: float | None = 8.0
    aligned_ssim: float | None = 0.9
    aligned_size: int = 64

    def __post_init__(self) -> None:
        if not 0 <= self.max_hamming <= 64:
            raise ConfigurationError(
                f"max_hamming={self.max_hamming} must be between 0 and 64 (bits of a 64-bit hash)"
            )
        if not -1.0 <= self.ssim_threshold <= 1.0:
            raise ConfigurationError(f"ssim_threshold={self.ssim_threshold} must be within [-1, 1]")
        for name in ("max_colour_distance", "max_local_difference"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"{name}={value} must be >= 0 (or None: no such check)")
        if self.ssim_size != 0 and self.ssim_size < 7:
            raise ConfigurationError(
                f"ssim_size={self.ssim_size} is below SSIM's 7x7 window; use 0 (full size) "
                "or at least 7 pixels"
            )


# ``varflow dedup``: copies of one picture in a folder (resized, re-encoded, cropped, rotated,
# brightened, turned grey) are one picture: the grey hashes and thumbnail alone decide. A run
# judges variations, where a grade or an object moved makes another one: DedupSettings().
COPY_FINDING = DedupSettings(max_colour_distance=None, max_local_difference=None, aligned_ssim=None)


@dataclass(frozen=True)
class LoadLimits:
    """Guards against files that would exhaust memory before a single pixel is useful."""

    max_pixels: int = 100_000_000  # ~ 10000 x 10000; Pillow's own warning starts at 89.5 MP
    max_file_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class GradedOverall:
    """A graded overall score, fitted by ``varflow calibrate`` on people's keep/reject decisions
    (varflow.quality.fitting): a regularised logistic model over a few calibrated parts, each
    centred and scaled as on the reviews it was fitted on. Its value is the fitted chance that a
    person keeps the variation, so it ranks what the gate accepts (the overall quality of accepted
    variations sits at 0.97-0.99 and cannot). It is recorded (``graded_overall``), never gates.
    A part missing from a variation (a first variation's diversity) counts as its centre."""

    parts: tuple[str, ...]
    centre: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    intercept: float

    def __post_init__(self) -> None:
        n = len(self.parts)
        if not n or not len(self.centre) == len(self.scale) == len(self.weights) == n:
            raise ConfigurationError(f"graded overall: {n} parts need as many centres, scales and weights, got "
                                     f"{len(self.centre)}, {len(self.scale)} and {len(self.weights)}")
        numbers = (*self.centre, *self.scale, *self.weights, self.intercept)
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in numbers) or min(self.scale) <= 0:
            raise ConfigurationError("graded overall: centres, weights and the intercept must be finite numbers "
                                     "and every scale positive; fit it again with `varflow calibrate`")

    def grade(self, values) -> float:
        """The graded overall in (0, 1) of one variation's named values (a mapping)."""
        z = self.intercept
        for part, c, s, w in zip(self.parts, self.centre, self.scale, self.weights):
            x = values.get(part)
            z += w * ((c if x is None or x != x else float(x)) - c) / s
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass(frozen=True)
class CalibratedProfile:
    """A data directory's calibrated profile, fitted on people's reviews (``varflow calibrate --apply``
    saves it as ``<home>/profiles/calibrated-v<version>.json``): the gate's thresholds and the graded
    overall. ``document`` / ``from_document``: its JSON form (the file's other keys are figures)."""

    version: int
    thresholds: CalibratedThresholds
    graded: GradedOverall

    def document(self) -> dict:
        return {"version": self.version, "thresholds": asdict(self.thresholds), "graded_overall": asdict(self.graded)}

    @classmethod
    def from_document(cls, doc: dict) -> CalibratedProfile:
        """Raises ``ConfigurationError`` (or KeyError/TypeError/ValueError for a malformed document)."""
        version = doc["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ConfigurationError(f"profile version {version!r} is not a positive whole number")
        g = doc["graded_overall"]
        graded = GradedOverall(parts=tuple(map(str, g["parts"])), centre=tuple(map(float, g["centre"])),
                               scale=tuple(map(float, g["scale"])), weights=tuple(map(float, g["weights"])),
                               intercept=float(g["intercept"]))
        return cls(version, CalibratedThresholds(**doc["thresholds"]), graded)


@dataclass(frozen=True)
class Settings:
    """What a run needs beyond its parameters; one object so tasks get it in one piece.

    ``profile_version`` and ``graded``: the data directory's calibrated profile in force (saved by
    ``varflow calibrate --apply``; its thresholds are then ``calibrated``), or None: the defaults."""

    profile: str = DEFAULT_PROFILE
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)  # the seed profile's
    calibrated: CalibratedThresholds = field(default_factory=lambda: CalibratedThresholds())
    dedup: DedupSettings = field(default_factory=DedupSettings)
    limits: LoadLimits = field(default_factory=LoadLimits)
    profile_version: int | None = None
    graded: GradedOverall | None = None


def default_home() -> Path:
    """Where all of varflow's data lives: ``$VARFLOW_HOME``, else the XDG data directory."""
    env = os.environ.get("VARFLOW_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "varflow"


def _scale(help: str) -> dict:
    """Field metadata of a positive measurement scale (units in the help text)."""
    return {"help": help, "gt": 0.0}


CALIBRATED_LEVELS = ("high", "medium", "low")


@dataclass(frozen=True)
class CalibratedThresholds:
    """Every threshold, scale and weight of the calibrated profile (varflow.quality.calibrated).

    Chosen as round numbers on bench/calibration.py's labeled set of real photos and edits
    (docs/calibrated-profile.md has the table). ``*_ok`` / ``*_bad`` pairs are the ends of a
    linear ramp from a part score of 1 (no defect) to 0.
    """

    similarity_min: float = field(default=0.1, metadata=_unit("Lowest similarity: below, the variation is not the "
                                                              "original's picture."))
    similarity_max: float = field(default=0.92, metadata=_unit("Highest similarity: above, the variation is a copy."))
    diversity_min: float = field(default=0.15, metadata=_unit("Lowest visible change from the nearest accepted "
                                                              "variation of the image."))
    aesthetic_min: float = field(default=0.5,
                                 metadata=_unit("Lowest aesthetic score (noise, blocking, blur, blown exposure)."))
    object_integrity_min: float = field(default=0.5, metadata=_unit("Lowest object-integrity score (original's content "
                                                                    "shown, not flattened or drawn over)."))
    overall_min: float = field(default=0.5, metadata=_unit("Lowest overall quality at any level."))
    overall_high: float = field(default=0.8, metadata=_unit("Overall quality the level 'high' requires."))
    overall_medium: float = field(default=0.65, metadata=_unit("Overall quality the level 'medium' requires."))
    overall_low: float = field(default=0.5, metadata=_unit("Overall quality the level 'low' requires."))
    weight_similarity: float = field(default=0.2,
                                     metadata=_unit("Overall weight of how well similarity sits inside its band."))
    weight_diversity: float = field(default=0.2,
                                    metadata=_unit("Overall weight of diversity (left out for a first variation)."))
    weight_aesthetic: float = field(default=0.3, metadata=_unit("Overall weight of the aesthetic score."))
    weight_object_integrity: float = field(default=0.3, metadata=_unit("Overall weight of object integrity."))
    band_margin: float = field(default=0.1,
                               metadata=_unit("Similarity distance from a band edge at which the band fit reaches 1."))
    colour_change_full: float = field(default=20.0, metadata=_scale("Mean cell colour difference (CIE76 dE) that alone "
                                                                    "counts as fully changed."))
    local_change_full: float = field(default=40.0, metadata=_scale("One cell's colour difference (CIE76 dE) that alone "
                                                                   "counts as fully changed."))
    detail_gain_full: float = field(default=1.0, metadata=_scale("Fine detail gained (detail ratio - 1) that alone "
                                                                 "counts as fully changed."))
    noise_excess_ok: float = field(default=6.0, metadata=_scale("Added noise (grey levels, measured at up to 2048 "
                                                                "px) still natural."))
    noise_excess_bad: float = field(default=10.0, metadata=_scale("Added noise (grey levels, measured at up to 2048 "
                                                                  "px) that is ugly."))
    blockiness_ok: float = field(default=1.45,
                                 metadata=_scale("JPEG block-border step ratio still natural (1: no blocking)."))
    blockiness_bad: float = field(default=1.9, metadata=_scale("JPEG block-border step ratio that is ugly."))
    impulse_noise_ok: float = field(default=0.035,
                                    metadata=_unit("Share of new impulse pixels (salt and pepper) still natural."))
    impulse_noise_bad: float = field(default=0.06,
                                     metadata=_unit("Share of new impulse pixels (salt and pepper) that is ugly."))
    colour_noise_ok: float = field(default=6.0, metadata=_scale("Added colour noise (opponent channels, measured at "
                                                                "256 px) still natural."))
    colour_noise_bad: float = field(default=10.0, metadata=_scale("Added colour noise (opponent channels, measured at "
                                                                  "256 px) that is ugly."))
    detail_in_place_ok: float = field(default=0.5, metadata=_scale("Fine detail still where the original's was (1 in "
                                                                   "place, 0 anywhere), still the photo's own."))
    detail_in_place_bad: float = field(default=0.4, metadata=_scale("Fine detail so far from where the original's was "
                                                                    "that a layer was laid over the photo."))
    directional_detail_ok: float = field(default=0.75, metadata=_scale("Detail kept in the worst direction (median "
                                                                       "over sectors) that is sharp enough."))
    directional_detail_bad: float = field(default=0.55, metadata=_scale("Detail kept in the worst direction that is "
                                                                        "blurred along a line or rays (motion, zoom)."))
    flat_patch_ok: float = field(default=0.0015, metadata=_unit("Share of the frame in one patch flattened or smeared "
                                                                "where the original had texture, still unseen."))
    flat_patch_bad: float = field(default=0.0025, metadata=_unit("Share of the frame in one flattened or smeared patch "
                                                                 "that a person sees at once."))
    blown_patch_ok: float = field(default=0.0005, metadata=_unit("Share of the frame in one patch newly blown to white "
                                                                 "(not by the tone curve), still unseen."))
    blown_patch_bad: float = field(default=0.001, metadata=_unit("Share of the frame in one patch newly blown to white "
                                                                 "that is a blob."))
    detail_ratio_ok: float = field(default=0.32,
                                   metadata=_scale("Share of the original's fine detail kept that is sharp enough."))
    detail_ratio_bad: float = field(default=0.12,
                                    metadata=_scale("Share of the original's fine detail kept that is blurred away."))
    highlight_clipping_ok: float = field(default=0.1,
                                         metadata=_unit("Share of newly blown highlights still acceptable."))
    highlight_clipping_bad: float = field(default=0.35,
                                          metadata=_unit("Share of newly blown highlights that is over-exposed."))
    brightening_ok: float = field(default=20.0, metadata=_scale("Mean lightness gain (Lab L, 0-100) still a grade."))
    brightening_bad: float = field(default=35.0,
                                   metadata=_scale("Mean lightness gain (Lab L, 0-100) that is washed out."))
    colourfulness_full: float = field(default=100.0, metadata=_scale("Hasler-Suesstrunk colourfulness counted as fully "
                                                                     "colourful (~109: extremely)."))
    colourfulness_weight: float = field(default=0.1, metadata=_unit("Share of the aesthetic score that "
                                                                    "colourfulness can take away."))
    coverage_ok: float = field(default=0.7,
                               metadata=_unit("Share of the original's frame shown that keeps its objects."))
    coverage_bad: float = field(default=0.3,
                                metadata=_unit("Share of the original's frame shown that has lost its objects."))
    structure_lost_bad: float = field(default=0.25,
                                      metadata=_unit("Share of the frame flattened away at which integrity is 0."))
    structure_added_bad: float = field(default=0.25, metadata=_unit("Share of the frame drawn over with foreign "
                                                                    "structure at which integrity is 0."))

    def __post_init__(self) -> None:
        from dataclasses import fields  # (this section is appended; the file's imports stay as they are)

        for f in fields(self):
            value = getattr(self, f.name)
            lo, hi = f.metadata.get("ge"), f.metadata.get("le")
            if not isinstance(value, (int, float)) or value != value:
                raise ConfigurationError(f"calibrated threshold {f.name}={value!r} must be a number")
            if lo is not None and not lo <= value <= hi:
                raise ConfigurationError(
                    f"calibrated threshold {f.name}={value!r} is outside [0, 1]; it gates or "
                    "weighs a score in [0, 1], so pass a value between 0 and 1"
                )
            if "gt" in f.metadata and not value > 0:
                raise ConfigurationError(f"calibrated scale {f.name}={value!r} must be positive")
        if not self.similarity_min < self.similarity_max:
            raise ConfigurationError(
                f"similarity_min={self.similarity_min} is not below similarity_max="
                f"{self.similarity_max}: no variation could pass; swap or widen them"
            )
        if not self.overall_high > self.overall_medium > self.overall_low:
            raise ConfigurationError(
                f"level thresholds must be strictly ordered high > medium > low, got high="
                f"{self.overall_high}, medium={self.overall_medium}, low={self.overall_low}"
            )
        for ok, bad, rising in (("noise_excess_ok", "noise_excess_bad", True),
                                ("blockiness_ok", "blockiness_bad", True),
                                ("impulse_noise_ok", "impulse_noise_bad", True),
                                ("colour_noise_ok", "colour_noise_bad", True),
                                ("detail_in_place_ok", "detail_in_place_bad", False),
                                ("directional_detail_ok", "directional_detail_bad", False),
                                ("flat_patch_ok", "flat_patch_bad", True),
                                ("blown_patch_ok", "blown_patch_bad", True),
                                ("detail_ratio_ok", "detail_ratio_bad", False),
                                ("highlight_clipping_ok", "highlight_clipping_bad", True),
                                ("brightening_ok", "brightening_bad", True),
                                ("coverage_ok", "coverage_bad", False)):
            a, b = getattr(self, ok), getattr(self, bad)
            if (a >= b) if rising else (a <= b):
                raise ConfigurationError(
                    f"{ok}={a} must be {'below' if rising else 'above'} {bad}={b}: the ramp runs "
                    "from the acceptable value to the bad one"
                )
        if self.weight_similarity + self.weight_aesthetic + self.weight_object_integrity <= 0:
            raise ConfigurationError("the overall weights of similarity, aesthetic and integrity are all 0; "
                             "give at least one a positive weight")

    def overall_for(self, level: str) -> float:
        """The overall threshold of a quality level by name (high, medium, low)."""
        if level not in CALIBRATED_LEVELS:
            raise ConfigurationError(
                f"unknown quality level {level!r}; choose one of {', '.join(CALIBRATED_LEVELS)}"
            )
        return getattr(self, f"overall_{level}")


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


@dataclass(frozen=True)
class ReviewServerSettings:
    """``varflow review serve``: the gallery with Keep / Reject, served on one machine's loopback by default.

    Its pages link their pictures instead of embedding them (a page of 200 images stays light and loads
    them as they scroll into view); the thumbnails made for them are kept in memory, a bounded number.
    """

    host: str = "127.0.0.1"  # only this machine; --host beyond it asks every request for the printed token
    port: int = 8765  # --port 0 takes a free one
    max_body_bytes: int = 16_384  # a decision is a few hundred bytes of JSON
    thumbnails_cached: int = 600  # ~25 KB each: ~15 MB, a full page's cards
    runs_listed: int = 20  # the page's list of other runs to review


REVIEW_SERVER = ReviewServerSettings()


@dataclass(frozen=True)
class BatchLimits:
    """How a batch run's requests are split into Gemini Batch API jobs (the documented limits)."""

    inline_max_bytes: int = field(default=20_000_000, metadata={
        "help": "Largest total request size sent inline in batches.create (the API's limit: 20 MB).", "ge": 1})
    file_max_bytes: int = field(default=2_000_000_000, metadata={
        "help": "Largest JSONL input file of one job (the API's limit: 2 GB).", "ge": 1})
    poll_seconds: float = field(default=300.0, metadata={
        "help": "How often a scheduled collector looks at open jobs (the API's target turnaround is 24 h).",
        "gt": 0})

    def __post_init__(self) -> None:
        if self.inline_max_bytes > self.file_max_bytes:
            raise ConfigurationError("inline_max_bytes must not exceed file_max_bytes")


BATCH = BatchLimits()
