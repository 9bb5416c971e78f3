"""The seed's quality model written plainly, the way the seed document computes it.

An independent formulation for the fidelity tests and the speed bench: Pillow ``convert('L')``
for grey, ``skimage.metrics.structural_similarity`` with its defaults on uint8 grey, the
variation ``cv2.resize``d to the original's size, Pillow ``ImageStat`` for the band variances,
``cv2.Laplacian(CV_64F).var()`` for sharpness, Canny + ``connectedComponentsWithStats`` for
integrity and imagehash for the three hashes. Inputs are Pillow images, as in the seed.

It follows the seed's formulas and thresholds, not its bugs: the missing ``cv2`` import in
``calculate_similarity`` is supplied, and a variation without others to differ from gets no
diversity (None) instead of the 0 its acceptance check read (see docs/quality-model.md).
Nothing here imports varflow.
"""

from __future__ import annotations

import cv2
import imagehash
import numpy as np
from PIL import Image, ImageStat
from skimage.metrics import structural_similarity

SEED_THRESHOLDS = {
    "similarity_min": 0.3,
    "similarity_max": 0.9,
    "diversity_min": 0.2,
    "aesthetic_min": 0.6,
    "object_integrity": 0.7,
}


def seed_similarity(img1: Image.Image, img2: Image.Image) -> float:
    """SSIM of the two grey images, the second resized to the first's size."""
    grey1 = np.array(img1.convert("L"))
    grey2 = np.array(img2.convert("L"))
    if grey1.shape != grey2.shape:
        grey2 = cv2.resize(grey2, (grey1.shape[1], grey1.shape[0]))
    return float(structural_similarity(grey1, grey2))


def seed_diversity(target: Image.Image, others: list[Image.Image]) -> float | None:
    """Mean of 1 - similarity(target, other); None when there is no other."""
    if not others:
        return None
    diffs = [1.0 - seed_similarity(target, other) for other in others]
    return sum(diffs) / len(diffs)


def seed_aesthetic_parts(image: Image.Image) -> dict[str, float]:
    stat = ImageStat.Stat(image)
    band_variances = [stat.var[i] for i in range(min(3, len(stat.var)))]
    parts = {"color_variance": min(float(np.var(band_variances)) / 10000, 1.0)}
    grey = np.array(image.convert("L"))
    parts["contrast"] = min(float(np.std(grey)) / 255.0 * 2, 1.0)
    parts["brightness_balance"] = 1.0 - abs(float(np.mean(grey)) / 255.0 - 0.5) * 2
    parts["sharpness"] = min(float(cv2.Laplacian(grey, cv2.CV_64F).var()) / 1000, 1.0)
    return parts


def seed_aesthetic(image: Image.Image) -> float:
    return sum(0.25 * v for v in seed_aesthetic_parts(image).values())


def seed_object_integrity(image: Image.Image) -> float:
    grey = np.array(image.convert("L"))
    edges = cv2.Canny(grey, 50, 150)
    count, _, stats, _ = cv2.connectedComponentsWithStats(edges)
    if count <= 1:
        return 0.1
    areas = stats[1:, cv2.CC_STAT_AREA]
    total = image.size[0] * image.size[1]
    return min(len(areas[areas > total * 0.01]) / 10, 1.0)


def seed_overall(metrics: dict[str, float | None]) -> float:
    sim = metrics.get("similarity", 0.5)
    sim_part = 1.0 - abs(sim - 0.6) / 0.3 if 0.3 <= sim <= 0.9 else 0.1
    div = metrics.get("diversity")
    parts = {
        "similarity": sim_part,
        "diversity": 0.5 if div is None else div,
        "aesthetic": metrics.get("aesthetic", 0.5),
        "object_integrity": metrics.get("object_integrity", 0.5),
    }
    weights = {"similarity": 0.2, "diversity": 0.3, "aesthetic": 0.3, "object_integrity": 0.2}
    return sum(parts[k] * weights[k] for k in weights)


def seed_hashes(image: Image.Image) -> tuple[str, str, str]:
    return (
        str(imagehash.average_hash(image)),
        str(imagehash.phash(image)),
        str(imagehash.dhash(image)),
    )


def seed_score(
    original: Image.Image, variation: Image.Image, others: list[Image.Image] = ()
) -> dict[str, float | None]:
    """Every metric of one variation, as the seed's analyze_variation_quality computes them."""
    metrics: dict[str, float | None] = {"similarity": seed_similarity(original, variation)}
    metrics["diversity"] = seed_diversity(variation, list(others))
    parts = seed_aesthetic_parts(variation)
    metrics.update(parts)
    metrics["aesthetic"] = sum(0.25 * v for v in parts.values())
    metrics["object_integrity"] = seed_object_integrity(variation)
    metrics["overall_quality"] = seed_overall(metrics)
    return metrics
