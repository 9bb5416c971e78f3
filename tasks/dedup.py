"""Stage 4: perceptual hashes of a variation and the accepted variation it duplicates, if any."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NONE

from varflow.dedup import DuplicateMatch, KnownImage, LibraryView, find_duplicate, load_colour_signature
from varflow.hashing import ImageHashes, compute_hashes
from varflow.imageio import load_grey
from varflow.settings import DedupSettings


@dataclass(frozen=True)
class DedupResult:
    hashes: ImageHashes
    duplicate: DuplicateMatch | None


@task(name="dedup", cache_policy=NONE)
def dedup_variation(variation_path: str, known: list[KnownImage], settings: DedupSettings,
                    library: LibraryView | None = None) -> DedupResult:
    """``known``: this source's accepted variations (this run's and earlier runs'); ``library``:
    with ``--dedup-library``, every variation ever accepted, from any source."""
    grey = load_grey(variation_path)  # one decode, kept for scoring; the hashes are the grey's
    hashes = compute_hashes(grey)
    sets = (known,) if library is None else (known, library)
    match = find_duplicate(hashes, grey, *sets, settings=settings, load_grey=load_grey,
                           candidate_colours=load_colour_signature(variation_path))
    return DedupResult(hashes, match)
