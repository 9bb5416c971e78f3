"""Perceptual hashes (average, perceptual, difference; 64 bits each) and Hamming distance."""

from __future__ import annotations

from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImageHashes:
    ahash: str  # 16 hex digits, imagehash's str() form
    phash: str
    dhash: str

    def as_ints(self) -> tuple[int, int, int]:
        return int(self.ahash, 16), int(self.phash, 16), int(self.dhash, 16)


def compute_hashes(image: Image.Image | np.ndarray) -> ImageHashes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    # imagehash converts to grey and resizes itself; one grey conversion is shared here.
    grey = image.convert("L")
    return ImageHashes(
        str(imagehash.average_hash(grey)), str(imagehash.phash(grey)), str(imagehash.dhash(grey))
    )


def hamming(a: str | int, b: str | int) -> int:
    a = int(a, 16) if isinstance(a, str) else a
    b = int(b, 16) if isinstance(b, str) else b
    return (a ^ b).bit_count()


def hash_distances(a: ImageHashes, b: ImageHashes) -> tuple[int, int, int]:
    return tuple(hamming(x, y) for x, y in zip(a.as_ints(), b.as_ints()))
