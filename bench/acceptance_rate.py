"""How often the local generator's variations are kept, per quality profile and level.

Loop semantics (the seed's "enhanced" loop, as a run does it): for each image, attempts continue
until ``count`` variations are accepted or ``count * max_attempts_per_variation`` attempts are
spent. Each attempt is a ``random`` variation type resolved from its seed (``derive_seed(run_seed,
image_id, attempt)``); a duplicate of an accepted variation (hashes, thumbnail SSIM and colours,
as the run's dedup) is rejected, the rest judged by ``varflow.quality.profiles.VariationJudge`` with
diversity against the variations accepted so far.

Photos: the demo's sample photos plus retina.jpg, at native size (the pipeline never upscales),
written as PNG sources. A variation depends only on (source, type, prompt, seed), so each is
rendered once and judged for every profile and level. A second pass times generation at 1024 px.

    .venv/bin/python bench/acceptance_rate.py [--seeds 3] [--count 4] [--prompt ""]
        [--mixed-prompts] [--type random] [--profiles calibrated,seed] [--verbose]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from varflow.duplicates.dedup import KnownImage, find_duplicate, load_appearance  # noqa: E402
from varflow.duplicates.hashing import compute_hashes  # noqa: E402
from varflow.generation.backends.base import (  # noqa: E402
    CONCRETE_TYPES,
    GenerationError,
    VariationRequest,
    derive_seed,
    resolve_variation_type,
)
from varflow.generation.backends.local import LocalGenerator  # noqa: E402
from varflow.images.imageio import load_grey, load_rgb  # noqa: E402
from varflow.images.samples import SAMPLE_FILES, sample_dir  # noqa: E402
from varflow.quality.metrics import GreyImage  # noqa: E402
from varflow.quality.profiles import HEADLINE, VariationJudge  # noqa: E402
from varflow.settings import LEVEL_ORDER, PROFILES, QUALITY_LEVELS, DedupSettings  # noqa: E402

PHOTOS = SAMPLE_FILES + ("retina.jpg",)  # the demo photos plus a large one
PROMPTS = ("", "golden hour", "cool winter morning", "vintage film", "vivid colours",
           "black and white", "watercolor", "cartoon")


def prepare_sources(workdir: Path) -> list[tuple[str, Path, str]]:
    out = []
    for name in PHOTOS:
        with Image.open(sample_dir() / name) as im:
            arr = np.asarray(im.convert("RGB"))
        path = workdir / (Path(name).stem + ".png")
        Image.fromarray(arr).save(path)
        out.append((name, path, hashlib.sha256(path.read_bytes()).hexdigest()))
    return out


def timing_pass(gen: LocalGenerator, workdir: Path, n: int = 10) -> list[float]:
    """Wall-clock ms per generation at 1024 px (retina.jpg, 1411 px, downscaled like the
    pipeline's optimize step would), one attempt of each type in turn."""
    with Image.open(sample_dir() / "retina.jpg") as im:
        small = im.convert("RGB").resize((1024, 1024), Image.Resampling.LANCZOS)
    src = workdir / "retina_1024.png"
    small.save(src)
    times = []
    for i in range(n):
        seed = derive_seed(99, "timing", i)
        req = VariationRequest("timing", str(src), CONCRETE_TYPES[i % len(CONCRETE_TYPES)], "",
                               seed, i, str(workdir / f"timing_{i}.png"))
        t0 = time.perf_counter()
        gen.generate(req)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="run seeds 0..N-1 (default 3)")
    ap.add_argument("--count", type=int, default=4, help="variations wanted per image (default 4)")
    ap.add_argument("--prompt", default="", help="prompt for every attempt (default empty)")
    ap.add_argument("--mixed-prompts", action="store_true",
                    help="cycle through a few prompts (grades and styles) instead")
    ap.add_argument("--type", default="random", help="variation type (default random)")
    ap.add_argument("--profiles", default=",".join(PROFILES), help="profiles to judge with (default all)")
    ap.add_argument("--verbose", action="store_true", help="one line per attempt")
    args = ap.parse_args(argv)

    gen = LocalGenerator()
    dedup = DedupSettings()
    with tempfile.TemporaryDirectory(prefix="varflow-bench-") as tmp:
        tmpdir = Path(tmp)
        sources = prepare_sources(tmpdir)
        cache: dict[tuple, tuple] = {}
        gen_ms: list[float] = []
        t_start = time.perf_counter()

        def attempt(name, path, image_id, run_seed, i):
            key = (name, run_seed, i)
            if key not in cache:
                seed = derive_seed(run_seed, image_id, i)
                vtype = resolve_variation_type(args.type, seed, among=gen.variation_types_for(str(path)))
                prompt = PROMPTS[(run_seed + i) % len(PROMPTS)] if args.mixed_prompts else args.prompt
                req = VariationRequest(image_id=image_id, source_path=str(path), variation_type=vtype,
                                       prompt=prompt, seed=seed, attempt=i,
                                       output_path=str(tmpdir / f"{Path(name).stem}_{run_seed}_{i}.png"))
                t0 = time.perf_counter()
                try:
                    res = gen.generate(req)
                except GenerationError as exc:  # the run records it as a failed attempt
                    cache[key] = (vtype, None, exc.outcome, None, None)
                    return cache[key]
                gen_ms.append((time.perf_counter() - t0) * 1000)
                var = np.asarray(load_rgb(res.output_path))
                grey = GreyImage.from_image(var)
                cache[key] = (vtype, res.output_path, var, grey, compute_hashes(grey))
            return cache[key]

        per = {}
        for profile in args.profiles.split(","):
            for level_name in LEVEL_ORDER:
                level = QUALITY_LEVELS[level_name]
                budget = args.count * level.max_attempts_per_variation
                attempts = accepted = filled = 0
                reasons: Counter = Counter()
                by_type: Counter = Counter()
                by_type_ok: Counter = Counter()
                for name, path, image_id in sources:
                    original = np.asarray(load_rgb(path))
                    for run_seed in range(args.seeds):
                        judge = VariationJudge(original, level=level, profile=profile)
                        known: list[KnownImage] = []
                        for i in range(budget):
                            if len(known) >= args.count:
                                break
                            vtype, out, var, grey, hashes = attempt(name, path, image_id, run_seed, i)
                            attempts += 1
                            by_type[vtype] += 1
                            if out is None:
                                reasons[f"generation_{var}"] += 1
                                continue
                            match = find_duplicate(hashes, grey, known, settings=dedup, load_grey=load_grey,
                                                   candidate_appearance=load_appearance(out))
                            if match is not None:
                                reasons["duplicate"] += 1
                                if args.verbose:
                                    print(f"{profile:10} {level_name:6} {name[:12]:12} s{run_seed} a{i:2} {vtype:16} "
                                          f"duplicate of {match.duplicate_of}")
                                continue
                            a = judge.assess(var, grey=grey)
                            if a.verdict.accepted:
                                accepted += 1
                                by_type_ok[vtype] += 1
                                judge.accept(a)
                                known.append(KnownImage(f"a{i} {vtype}", hashes, out))
                            else:
                                reasons.update(a.verdict.reasons)
                            if args.verbose:
                                sc = a.scores()
                                print(f"{profile:10} {level_name:6} {name[:12]:12} s{run_seed} a{i:2} {vtype:16} "
                                      + " ".join(f"{k[:4]}={'-' if sc[k] is None else f'{sc[k]:.2f}'}"
                                                 for k in HEADLINE)
                                      + f" {'OK' if a.verdict.accepted else a.verdict.reason_text}")
                        filled += len(known) >= args.count
                per[profile, level_name] = (attempts, accepted, filled, reasons, by_type, by_type_ok)
        loop_s = time.perf_counter() - t_start
        timing = timing_pass(gen, tmpdir)

    n_runs = len(sources) * args.seeds
    print(f"local generator acceptance: {len(sources)} photos x {args.seeds} run seeds, count={args.count}, "
          f"type={args.type}, prompts={'mixed' if args.mixed_prompts else repr(args.prompt)}")
    for (profile, level_name), (attempts, accepted, filled, reasons, by_type, by_type_ok) in per.items():
        print(f"\n[{profile} / {level_name}] "
              f"budget={args.count * QUALITY_LEVELS[level_name].max_attempts_per_variation}"
              " attempts/image")
        print(f"  attempts={attempts} accepted={accepted} acceptance rate={accepted / max(attempts, 1):.1%} "
              f"fill rate={filled}/{n_runs} ({filled / n_runs:.0%})")
        print("  reject reasons: " + (", ".join(f"{k}={v}" for k, v in reasons.most_common()) or "none"))
        print("  by type (accepted/attempts): "
              + ", ".join(f"{t}={by_type_ok[t]}/{by_type[t]}" for t in sorted(by_type)))
    print(f"\ngeneration at native sizes (512-1411 px): {len(gen_ms)} renders, mean {np.mean(gen_ms):.0f} ms "
          f"(median {np.median(gen_ms):.0f}, max {np.max(gen_ms):.0f})")
    print(f"generation at 1024 x 1024 px: mean {np.mean(timing):.0f} ms, median {np.median(timing):.0f} ms, "
          f"min {np.min(timing):.0f} ms over {len(timing)}")
    print(f"wall: {loop_s:.1f} s for the loop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
