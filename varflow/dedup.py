"""The seed's DuplicationPreventer, done right.

The seed joined the three hash strings and tested the joined string for set membership, which
finds only copies whose three hashes are all bit-identical. Here each hash is compared by
Hamming distance: a pair within ``max_hamming`` bits on any of the three is a candidate, and
SSIM above ``ssim_threshold`` confirms it. The SSIM is taken on both images area-averaged to
``ssim_size`` x ``ssim_size`` pixels (20 by default), where a resize, re-encode, small crop or
rotation leaves the picture intact but a different photo that merely looks alike does not match.
The defaults come from bench/dedup_quality.py; docs/quality-model.md records the measurement.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
from PIL import Image

from varflow.hashindex import HashIndex
from varflow.hashing import ImageHashes, hash_distances
from varflow.imageio import load_rgb
from varflow.metrics import GreyImage, ssim, to_rgb
from varflow.settings import DedupSettings

HASH_KINDS = ("ahash", "phash", "dhash")


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


def confirmation_ssim(a: GreyImage, b: GreyImage, settings: DedupSettings) -> float:
    """The SSIM that confirms a candidate pair, as ``settings`` define it."""
    if settings.ssim_size:
        return ssim(a.thumbnail(settings.ssim_size), b.thumbnail(settings.ssim_size))
    return ssim(a, b)  # the seed's way: the second resized to the first's full size


COLOUR_GRID = 8  # cells per side of the colour signature


def colour_signature(image: np.ndarray | Image.Image) -> np.ndarray:
    """CIELAB a*, b* of an image area-averaged to an 8 x 8 grid (8 x 8 x 2 float32).

    What grey hashes and grey SSIM cannot see: a grade, a tint, colour against black and white.
    """
    rgb = to_rgb(image)
    if rgb.ndim == 2:
        return np.zeros((COLOUR_GRID, COLOUR_GRID, 2), np.float32)  # grey has no chroma
    small = cv2.resize(rgb, (COLOUR_GRID, COLOUR_GRID), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return np.ascontiguousarray(lab[..., 1:])


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIELAB chroma distance between two colour signatures, cell by cell."""
    return float(np.sqrt(((a - b) ** 2).sum(axis=-1)).mean())


_SIGNATURES: OrderedDict[tuple, np.ndarray] = OrderedDict()
_SIGNATURES_LOCK = threading.Lock()
_SIGNATURES_MAX = 4096  # 512 bytes each


def load_colour_signature(path: str) -> np.ndarray:
    """The colour signature of a file (upright, flattened), cached by file identity."""
    st = os.stat(path)
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _SIGNATURES_LOCK:
        hit = _SIGNATURES.get(key)
    if hit is None:
        hit = colour_signature(np.asarray(load_rgb(path)))
        with _SIGNATURES_LOCK:
            _SIGNATURES[key] = hit
            while len(_SIGNATURES) > _SIGNATURES_MAX:
                _SIGNATURES.popitem(last=False)
    return hit


def is_candidate(a: ImageHashes, b: ImageHashes, settings: DedupSettings) -> bool:
    return min(hash_distances(a, b)) <= settings.max_hamming


def same_colours(a: np.ndarray | None, b: np.ndarray | None, settings: DedupSettings) -> bool:
    """True unless both signatures are known and lie further apart than the settings allow."""
    if settings.max_colour_distance is None or a is None or b is None:
        return True
    return colour_distance(a, b) <= settings.max_colour_distance


class KnownImageIndex:
    """Known images indexed by their three hashes, for candidate lookup among many.

    ``find_duplicate`` accepts it in place of a list: the candidates then come from three
    Hamming-radius queries (one per hash) instead of a comparison with every known image.
    """

    def __init__(self, known: Iterable[KnownImage] = ()):
        self._items: dict[str, KnownImage] = {}
        self._indexes = {kind: HashIndex() for kind in HASH_KINDS}
        self._lock = threading.Lock()
        self.add(known)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(list(self._items.values()))

    def add(self, known: Iterable[KnownImage]) -> None:
        with self._lock:
            fresh = [k for k in known if k.key not in self._items]
            for k in fresh:
                self._items[k.key] = k
            if fresh:
                keys = [k.key for k in fresh]
                for kind in HASH_KINDS:
                    self._indexes[kind].add(keys, [getattr(k.hashes, kind) for k in fresh])

    def candidates(self, hashes: ImageHashes, max_hamming: int) -> list[KnownImage]:
        keys: set[str] = set()
        for kind in HASH_KINDS:
            keys.update(k for k, _ in self._indexes[kind].query(getattr(hashes, kind), max_hamming))
        return [self._items[k] for k in sorted(keys)]


@dataclass(frozen=True)
class LibraryView:
    """The whole library's index as one image's job sees it (``varflow run --dedup-library``).

    Leaves out the files that job itself (re)writes (``skip_prefix``: a forced re-run replaces
    them) and files deleted since they were accepted (nothing left to confirm against). The
    index is shared by every job of the run, which adds what it accepts (``add``), so images of
    one run are checked against each other too.
    """

    index: KnownImageIndex
    skip_prefix: str = ""

    def candidates(self, hashes: ImageHashes, max_hamming: int) -> list[KnownImage]:
        return [k for k in self.index.candidates(hashes, max_hamming)
                if not (self.skip_prefix and k.path.startswith(self.skip_prefix)) and os.path.isfile(k.path)]

    def add(self, known: Iterable[KnownImage]) -> None:
        self.index.add(known)


KnownSet = Sequence[KnownImage] | KnownImageIndex | LibraryView


def find_duplicate(
    candidate_hashes: ImageHashes,
    candidate_grey: GreyImage,
    *known: KnownSet,
    settings: DedupSettings,
    load_grey: Callable[[str], GreyImage],
    candidate_colours: np.ndarray | None = None,
    load_colours: Callable[[str], np.ndarray] = load_colour_signature,
) -> DuplicateMatch | None:
    """The closest confirmed duplicate among the ``known`` sets, or None.

    Each set is a plain sequence (every item is a candidate) or an index (candidates come from
    its Hamming-radius queries). Candidates are confirmed in order of their smallest hash
    distance, so the first confirmed one is the nearest; SSIM (the expensive part) runs only on
    the shortlist. With ``candidate_colours`` (``colour_signature``) a confirmed pair must
    also share its colours, so two grades of one photo are two variations.
    """
    seen: set[str] = set()
    shortlist = []
    for known_set in known:
        pool = known_set.candidates(candidate_hashes, settings.max_hamming) \
            if isinstance(known_set, (KnownImageIndex, LibraryView)) else known_set
        for item in pool:
            if item.key in seen:
                continue
            seen.add(item.key)
            d = hash_distances(candidate_hashes, item.hashes)
            if min(d) <= settings.max_hamming:
                shortlist.append((min(d), sum(d), d, item))
    shortlist.sort(key=lambda t: (t[0], t[1]))
    for _, _, d, item in shortlist:
        value = confirmation_ssim(candidate_grey, load_grey(item.path), settings)
        if value > settings.ssim_threshold and (
                candidate_colours is None or same_colours(candidate_colours, load_colours(item.path), settings)):
            return DuplicateMatch(item.key, d, value)
    return None
