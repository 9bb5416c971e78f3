"""How often the local generator's variations pass the acceptance gate, per quality level.

Loop semantics (the seed's "enhanced" loop): for each image, attempts continue until ``count``
variations are accepted or ``count * max_attempts_per_variation`` attempts are spent. Each attempt
is a ``random`` variation type resolved from its seed (``derive_seed(run_seed, image_id,
attempt)``); diversity is measured against the variations already accepted for that image, and
the verdict is ``varflow.acceptance.judge`` with the default thresholds and the level.

Photos: scikit-image's bundled photos at native size (the pipeline never upscales), written as
PNG sources. A variation depends only on (source, type, prompt, seed), so each is rendered once
and judged for every level. A second pass times generation at 1024 px (retina.jpg downscaled).

    .venv/bin/python bench/acceptance_rate.py [--seeds 3] [--count 4] [--prompt ""]
        [--mixed-prompts] [--type random] [--options '{"max_refinements": 0}'] [--verbose]

Runs in about a minute with the defaults on a 2-core machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from varflow import metrics  # noqa: E402
from varflow.acceptance import judge  # noqa: E402
from varflow.generators.base import (  # noqa: E402
    CONCRETE_TYPES,
    VariationRequest,
    derive_seed,
    resolve_variation_type,
)
from varflow.generators.local import LocalGenerator  # noqa: E402
from varflow.samples import SAMPLE_FILES, sample_dir  # noqa: E402
from varflow.settings import LEVEL_ORDER, QUALITY_LEVELS, QualityThresholds  # noqa: E402

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
    ap.add_argument("--options", default="{}",
                    help='LocalGenerator options as JSON, e.g. \'{"max_refinements": 0}\'')
    ap.add_argument("--verbose", action="store_true", help="one line per attempt")
    args = ap.parse_args(argv)

    options = json.loads(args.options)
    for key in ("similarity_range", "similarity_target", "texture_amplitude"):
        if key in options:
            options[key] = tuple(options[key])
    gen = LocalGenerator(**options)
    thresholds = QualityThresholds()

    with tempfile.TemporaryDirectory(prefix="varflow-bench-") as tmp:
        tmpdir = Path(tmp)
        sources = prepare_sources(tmpdir)
        cache: dict[tuple, tuple] = {}
        gen_ms: list[float] = []
        renders: Counter = Counter()
        t_start = time.perf_counter()

        def attempt(name, path, image_id, orig_grey, run_seed, i):
            key = (name, run_seed, i)
            if key not in cache:
                seed = derive_seed(run_seed, image_id, i)
                vtype = resolve_variation_type(args.type, seed)
                prompt = PROMPTS[(run_seed + i) % len(PROMPTS)] if args.mixed_prompts else args.prompt
                req = VariationRequest(image_id=image_id, source_path=str(path), variation_type=vtype,
                                       prompt=prompt, seed=seed, attempt=i,
                                       output_path=str(tmpdir / f"{Path(name).stem}_{run_seed}_{i}.png"))
                t0 = time.perf_counter()
                res = gen.generate(req)
                gen_ms.append((time.perf_counter() - t0) * 1000)
                ops = json.loads(res.detail)
                renders[next((o["renders"] for o in ops if o["op"] == "self_check"), 1)] += 1
                style = next((o["op"][6:] for o in ops if o["op"].startswith("style_")), "?")
                with Image.open(res.output_path) as im:
                    var = np.asarray(im.convert("RGB"))
                vgrey = metrics.GreyImage.from_image(var)
                base = metrics.score_variation(orig_grey, var, variation_grey=vgrey)
                cache[key] = (vtype, style, vgrey, base)
            return cache[key]

        per_level = {}
        for level_name in LEVEL_ORDER:
            level = QUALITY_LEVELS[level_name]
            budget = args.count * level.max_attempts_per_variation
            attempts = accepted = filled = 0
            reasons: Counter = Counter()
            by_type: Counter = Counter()
            by_type_ok: Counter = Counter()
            for name, path, image_id in sources:
                with Image.open(path) as im:
                    orig_grey = metrics.GreyImage.from_image(np.asarray(im.convert("RGB")))
                for run_seed in range(args.seeds):
                    acc: list[metrics.GreyImage] = []
                    for i in range(budget):
                        if len(acc) >= args.count:
                            break
                        vtype, style, vgrey, base = attempt(name, path, image_id, orig_grey, run_seed, i)
                        div = metrics.diversity(vgrey, acc)
                        overall = metrics.overall_quality(
                            similarity=base.similarity, diversity=div,
                            aesthetic=base.aesthetic.total, object_integrity=base.object_integrity)
                        scores = metrics.VariationScores(base.similarity, div, base.aesthetic,
                                                         base.object_integrity, overall)
                        verdict = judge(scores, thresholds=thresholds, level=level)
                        attempts += 1
                        by_type[vtype] += 1
                        if verdict.accepted:
                            accepted += 1
                            by_type_ok[vtype] += 1
                            acc.append(vgrey)
                        else:
                            reasons.update(verdict.reasons)
                        if args.verbose:
                            print(f"{level_name:6} {name[:12]:12} s{run_seed} a{i:2} {vtype:16} {style:10} "
                                  f"sim={scores.similarity:.2f} div={'-' if div is None else f'{div:.2f}'} "
                                  f"aes={scores.aesthetic.total:.2f} int={scores.object_integrity:.1f} "
                                  f"ov={overall:.2f} {'OK' if verdict.accepted else verdict.reason_text}")
                    filled += len(acc) >= args.count
            per_level[level_name] = (attempts, accepted, filled, reasons, by_type, by_type_ok)
        loop_s = time.perf_counter() - t_start
        timing = timing_pass(gen, tmpdir)

    n_runs = len(sources) * args.seeds
    print(f"local generator acceptance: {len(sources)} photos x {args.seeds} run seeds, count={args.count}, "
          f"type={args.type}, prompts={'mixed' if args.mixed_prompts else repr(args.prompt)}")
    for level_name in LEVEL_ORDER:
        attempts, accepted, filled, reasons, by_type, by_type_ok = per_level[level_name]
        lv = QUALITY_LEVELS[level_name]
        print(f"\n[{level_name}] quality_threshold={lv.quality_threshold} "
              f"budget={args.count * lv.max_attempts_per_variation} attempts/image")
        print(f"  attempts={attempts} accepted={accepted} acceptance rate={accepted / max(attempts, 1):.1%} "
              f"fill rate={filled}/{n_runs} ({filled / n_runs:.0%})")
        print("  reject reasons: " + (", ".join(f"{k}={v}" for k, v in reasons.most_common()) or "none"))
        print("  by type (accepted/attempts): "
              + ", ".join(f"{t}={by_type_ok[t]}/{by_type[t]}" for t in sorted(by_type)))
    print(f"\ngeneration at native sizes (512-1411 px): {len(gen_ms)} renders, mean {np.mean(gen_ms):.0f} ms "
          f"(median {np.median(gen_ms):.0f}, max {np.max(gen_ms):.0f}); renders per generation "
          + ", ".join(f"{k}: {v}" for k, v in sorted(renders.items())))
    print(f"generation at 1024 x 1024 px: mean {np.mean(timing):.0f} ms, median {np.median(timing):.0f} ms, "
          f"min {np.min(timing):.0f} ms over {len(timing)}")
    print(f"wall: {loop_s:.1f} s for the loop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
