"""How close the dry run's expected calls and cost come to what a run then makes and spends.

    .venv/bin/python bench/dry_run_accuracy.py [--photos N] [--count C] [--rounds R] [--bad 0.15]

One folder of sample photos runs through ``--backend gemini`` against the fake Gemini server
(tests/fake_gemini.py) with a fault mix: a share ``--bad`` of the answers are bad (a text-only
answer, retried with a reworded prompt; a safety block; an image that is not one), and 5% are
server errors (retried). The first run only builds history. Then, ``--rounds`` times: the dry run
plans the folder with a new seed (``varflow.flows.plan.plan_run``, what ``varflow run --dry-run`` prints),
the run with that seed goes through the folder, and the bench prints expected vs actual calls and
cost and their ratio (actual / expected). The goal: within 15% of the actual cost.

The same plan without history (the prior) is printed beside the first round, and so is the
old estimate (images x count, every first call accepted).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")


def fault_mix(bad: float, seed: int):
    """A script for the fake: each answer drawn independently (a seeded generator, one lock)."""
    rng, lock = random.Random(seed), threading.Lock()
    kinds = [("text_only", bad / 2), ("safety_block", bad / 4), ("garbage_image", bad / 4), ("server_500", 0.05)]

    def script(model: str, index: int, prompt: str) -> str | None:
        with lock:
            x = rng.random()
        for kind, share in kinds:
            if x < share:
                return kind
            x -= share
        return None

    return script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=6)
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bad", type=float, default=0.15, help="share of bad answers (default 0.15)")
    ap.add_argument("--seed", type=int, default=1, help="the fault mix's seed")
    args = ap.parse_args()

    from conftest import skimage_photo
    from fake_gemini import FakeGemini
    from prefect.testing.utilities import prefect_test_harness
    from varflow.flows.parameters import RunParameters
    from varflow.flows.plan import plan_run
    from varflow.flows.variation_flow import run_local
    from varflow.storage import Store

    from varflow.processing.estimate import AttemptHistory

    base = Path(tempfile.mkdtemp(prefix="varflow-dryrun-bench-"))
    (base / "photos").mkdir()
    for name in PHOTOS[: args.photos]:
        shutil.copy(skimage_photo(name), base / "photos" / name)

    def params(seed: int) -> RunParameters:
        return RunParameters(input_dir=str(base / "photos"), output_dir=str(base / "variations"),
                             home=str(base / "home"), backend="gemini", count=args.count, seed=seed,
                             retry_backoff_s=0.05, generation_concurrency=4)

    print(f"dry run accuracy: {args.photos} photos, count {args.count}, {args.bad:.0%} bad answers + 5% server "
          f"errors (fault seed {args.seed}), gemini against the fake server; data in {base}")
    rows = []
    with FakeGemini(api_key="bench-key") as fake, prefect_test_harness(server_startup_timeout=120):
        os.environ.update(GEMINI_API_KEY="bench-key", GOOGLE_GEMINI_BASE_URL=fake.base_url,
                          NO_PROXY="127.0.0.1,localhost")
        fake.script(fault_mix(args.bad, args.seed))
        prior = plan_run(params(100))
        first = run_local(params(100))
        print(f"  history run (seed 100): {first['calls']} calls, ${first['cost_usd']:.4f}; "
              f"without history the plan said {prior['calls_expected']:.0f} calls, ${prior['cost_expected_usd']:.4f} "
              f"({prior['basis']}); the old estimate (images x count): {prior['images_to_do'] * args.count} calls")
        store = Store(base / "home")
        for seed in range(101, 101 + args.rounds):
            plan = plan_run(params(seed))
            before = store.attempt_history("gemini", plan["model"]).get(plan["level"], AttemptHistory())
            summary = run_local(params(seed))
            after = store.attempt_history("gemini", plan["model"]).get(plan["level"], AttemptHistory())
            rows.append((seed, plan, summary))
            print(f"  seed {seed}: the run made {after.attempts - before.attempts} attempts, "
                  f"{after.accepted - before.accepted} accepted, {after.calls - before.calls} calls "
                  f"(the plan: {plan['attempts_per_image'] * plan['images_to_do']:.1f} attempts, "
                  f"{plan['acceptance_rate']:.0%} accepted, {plan['calls_per_attempt']:.2f} calls per attempt)")
            print(f"  seed {seed}: level {plan['level']}, {plan['basis']}: expected "
                  f"{plan['calls_expected']:.1f} calls, "
                  f"${plan['cost_expected_usd']:.4f}; actual {summary['calls']} calls, ${summary['cost_usd']:.4f}; "
                  f"ratio actual/expected: calls {summary['calls'] / plan['calls_expected']:.3f}, "
                  f"cost {summary['cost_usd'] / plan['cost_expected_usd']:.3f}")
    calls = sum(s["calls"] for _, _, s in rows) / sum(p["calls_expected"] for _, p, _ in rows)
    cost = sum(s["cost_usd"] for _, _, s in rows) / sum(p["cost_expected_usd"] for _, p, _ in rows)
    worst = max(abs(s["cost_usd"] / p["cost_expected_usd"] - 1) for _, p, s in rows)
    print(f"  over {len(rows)} rounds: actual/expected calls {calls:.3f}, cost {cost:.3f}; "
          f"largest cost error of a round {worst:.1%} (goal: within 15%)")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
