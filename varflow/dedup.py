"""The seed's DuplicationPreventer, done right.

The seed joined the three hash strings and tested the joined string for set membership, which
finds only pixel-exact copies. Here each hash is compared by Hamming distance; a pair within
``max_hamming`` bits on any of them is a candidate, and SSIM above ``ssim_threshold`` (the
seed's 0.95) confirms it, so a recoloured or reframed variation is not called a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from varflow.hashing import ImageHashes, hash_distances
from varflow.metrics import GreyImage, ssim
from varflow.settings import DedupSettings


@dataclass(frozen=True)
class KnownImage:
    """An already accepted image a candidate is checked against."""

    key: str  # its variation_id
    hashes: ImageHashes
    path: str  # where its pixels are, for the SSIM confirmation


@dataclass(frozen=True)
class DuplicateMatch:
    duplicate_of: str
    hamming: tuple[int, int, int]  # ahash, phash, dhash distances
    ssim: float


def find_duplicate(
    candidate_hashes: ImageHashes,
    candidate_grey: GreyImage,
    known: Sequence[KnownImage],
    *,
    settings: DedupSettings,
    load_grey: Callable[[str], GreyImage],
) -> DuplicateMatch | None:
    """The closest confirmed duplicate among ``known``, or None.

    Candidates are confirmed in order of their smallest hash distance, so the first confirmed
    one is the nearest; SSIM (the expensive part) runs only on the shortlist.
    """
    shortlist = []
    for item in known:
        d = hash_distances(candidate_hashes, item.hashes)
        if min(d) <= settings.max_hamming:
            shortlist.append((min(d), sum(d), d, item))
    shortlist.sort(key=lambda t: (t[0], t[1]))
    for _, _, d, item in shortlist:
        value = ssim(candidate_grey, load_grey(item.path))
        if value > settings.ssim_threshold:
            return DuplicateMatch(item.key, d, value)
    return None
