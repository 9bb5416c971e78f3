"""Prefect-free functions behind ``varflow score`` and ``varflow dedup``.

``score_files`` scores variations the way the seed's enhanced loop sees them: each against the
original, and variation i's diversity against variations 1..i-1. ``copy_groups_in`` finds the
copy groups of a folder's images (a user cleaning an input folder before a paid run) with
varflow/duplicates/copies.py; ``find_duplicate_groups``, the older hash-and-SSIM finder, stays
as the benches' baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from varflow.duplicates.copies import UnionFind
from varflow.duplicates.dedup import HASH_KINDS, appearance_signature, confirmation_ssim, same_appearance
from varflow.duplicates.hashindex import HashIndex
from varflow.duplicates.hashing import ImageHashes, compute_hashes, hash_distances
from varflow.images.imageio import ImageReadError, load_grey, load_rgb, resize_to_fit
from varflow.quality.metrics import GreyImage, to_grey
from varflow.quality.profiles import VariationJudge
from varflow.settings import (
    COPY_FINDING,
    DEFAULT_PROFILE,
    CalibratedThresholds,
    DedupSettings,
    LevelSettings,
    LoadLimits,
    QualityThresholds,
    level_settings,
)


def _load(path: str | Path, max_side: int | None, limits: LoadLimits):
    rgb = load_rgb(path, limits=limits)
    if max_side:
        rgb = resize_to_fit(rgb, max_side)
    return rgb


def score_files(
    original: str | Path,
    variations: Sequence[str | Path],
    *,
    profile: str = DEFAULT_PROFILE,
    thresholds: QualityThresholds = QualityThresholds(),
    calibrated_thresholds: CalibratedThresholds = CalibratedThresholds(),
    level: LevelSettings | str = "high",
    max_side: int | None = None,
    limits: LoadLimits = LoadLimits(),
) -> list[dict]:
    """Every metric of both profiles, the verdict of ``profile`` and its reasons, one dict per variation.

    Variation i is scored against the original (its similarity) and against variations
    1..i-1 (its diversity; None for the first, which the acceptance gate then skips). Images
    are scored as they are on disk (RGBA composited on white, EXIF orientation applied), or
    first fitted within ``max_side`` pixels, as a run's optimizer would. Unreadable files raise
    ``ImageReadError`` naming the file.
    """
    if isinstance(level, str):
        level = level_settings(level)
    judge = VariationJudge(_load(original, max_side, limits), level=level, profile=profile,
                           thresholds=thresholds, calibrated_thresholds=calibrated_thresholds)
    threshold = level.quality_threshold if profile == "seed" else calibrated_thresholds.overall_for(level.name)
    out = []
    for i, path in enumerate(variations, start=1):
        rgb = _load(path, max_side, limits)
        assessment = judge.assess(rgb)
        hashes = compute_hashes(assessment.grey)
        out.append(
            {
                "index": i,
                "path": str(path),
                "width": rgb.width,
                "height": rgb.height,
                "profile": profile,
                **assessment.scores(),
                "accepted": assessment.verdict.accepted,
                "reasons": list(assessment.verdict.reasons),
                "level": level.name,
                "level_threshold": threshold,
                "ahash": hashes.ahash,
                "phash": hashes.phash,
                "dhash": hashes.dhash,
            }
        )
        judge.accept(assessment)  # the next one's diversity counts it, as the run's loop would
    return out



def _signatures(paths, settings: DedupSettings, limits: LoadLimits, errors: list | None) -> tuple:
    """(names, hashes, SSIM thumbnails, aligned thumbnails, appearance signatures) of the readable
    images; the others go to ``errors`` (path, message)."""
    names: list[str] = []
    hashes: list[ImageHashes] = []
    thumbs: list[GreyImage | None] = []
    looks: list = []
    aligned: list[GreyImage] = []  # what same_appearance's alignment test compares
    for path in paths:
        try:
            rgb = load_rgb(path, limits=limits)
            grey = GreyImage(to_grey(rgb))
        except ImageReadError as exc:
            if errors is not None:
                errors.append((str(path), str(exc)))
            continue
        names.append(str(path))
        hashes.append(compute_hashes(grey))
        thumbs.append(grey.thumbnail(settings.ssim_size) if settings.ssim_size else None)
        aligned.append(grey.thumbnail(settings.aligned_size))
        looks.append(appearance_signature(rgb))
    return names, hashes, thumbs, aligned, looks


def find_duplicate_groups(
    paths: Sequence[str | Path],
    *,
    settings: DedupSettings = COPY_FINDING,
    limits: LoadLimits = LoadLimits(),
    errors: list[tuple[str, str]] | None = None,
) -> list[list[str]]:
    """Groups of near-duplicate images among ``paths``, each group sorted, groups by first path.

    A pair is linked when ``varflow.duplicates.dedup.find_duplicate`` would call it a duplicate (a hash
    within ``settings.max_hamming`` bits, found with the hash index; SSIM above the threshold);
    groups are the connected components of those links (so A~B and B~C group A, B and C).
    Files that cannot be read are left out, and listed in ``errors`` (path, message) if given.
    Memory stays small: only each image's hashes and its SSIM thumbnail are kept.
    """
    names, hashes, thumbs, aligned, looks = _signatures(paths, settings, limits, errors)
    indexes = {kind: HashIndex() for kind in HASH_KINDS}
    for kind in HASH_KINDS:
        indexes[kind].add(range(len(names)), [getattr(h, kind) for h in hashes])

    def grey_of(i: int) -> GreyImage:
        if thumbs[i] is not None:
            return thumbs[i]
        return load_grey(names[i])

    uf = UnionFind(len(names))
    for i, h in enumerate(hashes):
        cands: set[int] = set()
        for kind in HASH_KINDS:
            cands.update(j for j, _ in indexes[kind].query(getattr(h, kind), settings.max_hamming))
        for j in sorted(c for c in cands if c > i):
            if uf.find(i) == uf.find(j):
                continue
            if min(hash_distances(h, hashes[j])) > settings.max_hamming:
                continue
            value = confirmation_ssim(grey_of(i), grey_of(j), settings)
            if value > settings.ssim_threshold and same_appearance(
                    aligned[i], aligned[j], looks[i], looks[j], settings):
                uf.union(i, j)
    groups: dict[int, list[str]] = {}
    for i, name in enumerate(names):
        groups.setdefault(uf.find(i), []).append(name)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def copy_groups_in(folder: str | Path, *, errors: list[tuple[str, str]],
                   follow_links: bool = False) -> tuple[list[list[str]], int]:
    """``varflow dedup`` and ``varflow.find_duplicates``: the copy groups of ``folder``'s images
    (varflow/duplicates/copies.py) and how many images were looked at. A path the input rules
    refuse (a FIFO, a device, a link leaving the folder: varflow/images/inputs.py) is never
    opened; it goes to ``errors`` as (path, reason)."""
    from varflow.duplicates.copies import find_copy_groups
    from varflow.images.inputs import input_problem
    from varflow.processing.discovery import discover_images

    readable = []
    for path in discover_images(folder, follow_links=follow_links):
        problem = input_problem(path, folder, follow_links=follow_links)
        if problem is None:
            readable.append(path)
        else:
            errors.append((str(path), problem))
    return find_copy_groups(readable, errors=errors), len(readable)
