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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from varflow.duplicates.hashindex import HashIndex
from varflow.duplicates.hashing import ImageHashes, compute_hashes, hash_distances
from varflow.images.imageio import load_grey, load_rgb
from varflow.quality.metrics import GreyImage, ssim, to_rgb
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


APPEARANCE_GRID = 16  # cells per side of the appearance signature


def appearance_signature(image: np.ndarray | Image.Image) -> np.ndarray:
    """CIELAB of an image area-averaged to a 16 x 16 grid (16 x 16 x 3 float32).

    What grey hashes and grey SSIM on a thumbnail cannot see: a grade, a tint, colour against
    black and white, and an object removed or added in one place.
    """
    rgb = to_rgb(image)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    small = cv2.resize(rgb, (APPEARANCE_GRID, APPEARANCE_GRID), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIELAB chroma (a*, b*) distance of two signatures, on 8 x 8 cells."""
    pa, pb = (cv2.resize(x[..., 1:], (8, 8), interpolation=cv2.INTER_AREA) for x in (a, b))
    return float(np.sqrt(((pa - pb) ** 2).sum(axis=-1)).mean())


def local_difference(a: np.ndarray, b: np.ndarray) -> float:
    """How far the most changed cell stands out from the typical one (CIE76 dE, max - median):
    large for an edit in one place, small for a copy changed evenly (re-encode, grade, noise)."""
    d = np.sqrt(((a - b) ** 2).sum(axis=-1))
    return float(d.max() - np.median(d))


_SIGNATURES: OrderedDict[tuple, np.ndarray] = OrderedDict()
_SIGNATURES_LOCK = threading.Lock()
_SIGNATURES_MAX = 4096  # 3 KiB each


def load_appearance(path: str) -> np.ndarray:
    """The appearance signature of a file (upright, flattened), cached by file identity."""
    st = os.stat(path)
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _SIGNATURES_LOCK:
        hit = _SIGNATURES.get(key)
    if hit is None:
        hit = appearance_signature(np.asarray(load_rgb(path)))
        with _SIGNATURES_LOCK:
            _SIGNATURES[key] = hit
            while len(_SIGNATURES) > _SIGNATURES_MAX:
                _SIGNATURES.popitem(last=False)
    return hit


def same_appearance(a: GreyImage, b: GreyImage, look_a: np.ndarray | None, look_b: np.ndarray | None,
                    settings: DedupSettings) -> bool:
    """Whether a pair the thumbnails confirm is the same variation: aligned (SSIM at
    ``aligned_size`` px at least ``aligned_ssim``: not another framing), the same colours, and
    no place changed on its own. Off (True) where the settings turn a check off or a signature
    is unknown (None)."""
    if look_a is None or look_b is None:
        return True
    if settings.max_colour_distance is not None and colour_distance(look_a, look_b) > settings.max_colour_distance:
        return False
    if settings.aligned_ssim is not None and \
            ssim(a.thumbnail(settings.aligned_size), b.thumbnail(settings.aligned_size)) < settings.aligned_ssim:
        return False  # a recrop, a tilt, a rendering that moved the structure: another variation
    return settings.max_local_difference is None or local_difference(look_a, look_b) <= settings.max_local_difference


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
    candidate_appearance: np.ndarray | None = None,
    load_appearance: Callable[[str], np.ndarray] = load_appearance,
) -> DuplicateMatch | None:
    """The closest confirmed duplicate among the ``known`` sets, or None.

    Each set is a plain sequence (every item is a candidate) or an index (candidates come from
    its Hamming-radius queries). Candidates are confirmed in order of their smallest hash
    distance, so the first confirmed one is the nearest; SSIM (the expensive part) runs only on
    the shortlist. With ``candidate_appearance`` (``appearance_signature``) a confirmed pair
    must also look the same (``same_appearance``), so two grades of one photo, or two different
    objects removed from it, are two variations.
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
        known_grey = load_grey(item.path)
        value = confirmation_ssim(candidate_grey, known_grey, settings)
        if value > settings.ssim_threshold and (candidate_appearance is None or same_appearance(
                candidate_grey, known_grey, candidate_appearance, load_appearance(item.path), settings)):
            return DuplicateMatch(item.key, d, value)
    return None


@dataclass(frozen=True)
class DedupResult:
    hashes: ImageHashes
    duplicate: DuplicateMatch | None


def dedup_file(path: str, known: Sequence[KnownImage], settings: DedupSettings,
               library: LibraryView | None = None) -> DedupResult:
    """The hashes of the image at ``path`` and the known image it duplicates, if any.

    ``known``: its source's accepted variations (this run's and earlier runs'); ``library``:
    with ``--dedup-library``, every variation ever accepted, from any source.
    """
    grey = load_grey(path)  # one decode, kept for scoring; the hashes are the grey's
    hashes = compute_hashes(grey)
    sets = (known,) if library is None else (known, library)
    match = find_duplicate(hashes, grey, *sets, settings=settings, load_grey=load_grey,
                           candidate_appearance=load_appearance(path))
    return DedupResult(hashes, match)
