"""Whether a prompt's attempts are different variations: each keyword of the local generator's
vocabulary, as a style change, on sample photos, with the run's loop and the run's dedup rule.

Loop semantics (as a run at level high does it, without the quality gate): for each photo,
attempts go on until ``count`` variations are kept or ``count * 3`` attempts are spent; attempt
``a`` has seed ``derive_seed(seed, image_id, a)`` and index ``a``; a variation that
``varflow.duplicates.dedup.dedup_file`` calls a duplicate of one kept before it (the run's
``DedupSettings()``) is rejected. Printed per keyword: kept of requested and duplicates of
attempts, for the generator as it is ("takes": attempt ``a`` is take ``a``) and, as the baseline
in the same run, with every attempt rendered as take 0 (only the seed moves the look).

    .venv/bin/python bench/prompt_takes.py [--photos astronaut.png,chelsea.png] [--count 4]
        [--seed 7] [--keywords "golden hour,sepia"]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from varflow.duplicates.dedup import KnownImage, dedup_file  # noqa: E402
from varflow.generation.backends.base import VariationRequest, derive_seed  # noqa: E402
from varflow.generation.backends.local import LocalGenerator  # noqa: E402
from varflow.generation.backends.local.vocabulary import GRADE_KEYWORDS, STYLE_KEYWORDS  # noqa: E402
from varflow.images.samples import sample_dir  # noqa: E402
from varflow.settings import QUALITY_LEVELS, DedupSettings  # noqa: E402


class OneTake(LocalGenerator):
    """The baseline: every attempt rendered as take 0 (the seed still differs per attempt)."""

    def render(self, src, vtype, prompt, rng, *, take=0):
        return super().render(src, vtype, prompt, rng, take=0)


def loop(gen, photos, prompt, count, seed, work: Path) -> tuple[int, int, int]:
    """(kept, duplicates, attempts) over ``photos``."""
    budget = count * QUALITY_LEVELS["high"].max_attempts_per_variation
    kept_all = dups = attempts = 0
    for photo in photos:
        image_id = hashlib.sha256(photo.read_bytes()).hexdigest()
        kept: list[KnownImage] = []
        a = 0
        while len(kept) < count and a < budget:
            out = work / f"{photo.stem}-{a:03d}.png"
            res = gen.generate(VariationRequest(image_id, str(photo), "style_change", prompt,
                                                derive_seed(seed, image_id, a), a, str(out)))
            d = dedup_file(res.output_path, kept, DedupSettings())
            if d.duplicate is None:
                kept.append(KnownImage(f"{photo.stem}-{a}", d.hashes, res.output_path))
            else:
                dups += 1
            a += 1
        kept_all += len(kept)
        attempts += a
    return kept_all, dups, attempts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", default="astronaut.png,chelsea.png")
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keywords", default="", help="comma-separated; default: the first word of every entry")
    args = ap.parse_args()
    photos = [sample_dir() / n for n in args.photos.split(",")]
    keywords = [k.strip() for k in args.keywords.split(",") if k.strip()] or \
        [v[0] for v in GRADE_KEYWORDS.values()] + [v[0] for v in STYLE_KEYWORDS.values()]
    requested = args.count * len(photos)
    print(f"{len(photos)} photos ({args.photos}), count {args.count}, seed {args.seed}, style_change")
    print(f"{'keyword':18} {'takes: kept':>12} {'duplicates':>11}   {'one take: kept':>15} {'duplicates':>11}")
    totals = [0, 0, 0, 0, 0, 0]
    with tempfile.TemporaryDirectory() as tmp:
        for kw in keywords:
            row = []
            for name, gen in (("takes", LocalGenerator()), ("one", OneTake())):
                work = Path(tmp) / f"{name}-{kw.replace(' ', '_')}"
                work.mkdir()
                row += loop(gen, photos, kw, args.count, args.seed, work)
            for i, v in enumerate(row):
                totals[i] += v
            k, d, n, k1, d1, n1 = row
            print(f"{kw:18} {f'{k}/{requested}':>12} {f'{d}/{n}':>11}   {f'{k1}/{requested}':>15} {f'{d1}/{n1}':>11}",
                  flush=True)
    k, d, n, k1, d1, n1 = totals
    req = requested * len(keywords)
    print(f"{'all':18} {f'{k}/{req}':>12} {f'{d}/{n}':>11}   {f'{k1}/{req}':>15} {f'{d1}/{n1}':>11}")
    print(f"kept: takes {k / req:.0%} vs one take {k1 / req:.0%}; duplicates per attempt: "
          f"{d / n:.0%} vs {d1 / n1:.0%}")


if __name__ == "__main__":
    main()
