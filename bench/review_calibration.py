"""varflow calibrate on seeded synthetic decisions: how much a proposal fitted on half the photos gains on
the other half, over many seeds (the pinned seed 0 is tests/test_calibrate.py's).

The decisions (``decisions``): scores drawn at random per variation; people reject the ugly (aesthetic
below about 0.6) and near copies (similarity above 0.88), and keep colourful, visibly changed ones more
often, with noise; the run's ``accepted`` and ``overall_quality`` are the default gate's. Real people's
reviews are what ``varflow calibrate`` measures; this only checks that the fitting finds what is there
and does not chase noise.

    .venv/bin/python bench/review_calibration.py [--seeds 20] [--photos 16] [--per-photo 10] [--noise 0.5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from varflow.quality import fitting  # noqa: E402
from varflow.settings import CalibratedThresholds  # noqa: E402


def decisions(*, seed: int = 0, photos: int = 16, per_photo: int = 10, noise: float = 0.5) -> list[dict]:
    """A seeded set of reviewed variations: scores drawn at random; people reject the ugly (aesthetic below
    about 0.6) and near copies (similarity above 0.88), and keep colourful, visibly changed ones more often;
    the run's ``accepted`` and ``overall_quality`` are the default gate's."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(photos):
        for k in range(per_photo):
            r = {"image_id": f"{p + 1:064x}", "variation_id": f"{p + 1:04x}{k:04x}" + "0" * 24,
                 "profile": "calibrated", "quality_level": "medium",
                 "similarity": rng.uniform(0.05, 0.97), "diversity": None if k == 0 else rng.uniform(0.0, 0.8),
                 "aesthetic": rng.uniform(0.35, 1.0), "object_integrity": rng.uniform(0.45, 1.0),
                 "structure_match": rng.uniform(0.3, 1.0), "visible_change": rng.uniform(0.0, 1.0),
                 "detail_ratio": rng.uniform(0.3, 1.5), "noise_excess": rng.uniform(0, 8),
                 "colourfulness": rng.uniform(5, 90)}
            like = (4.0 * (r["aesthetic"] - 0.6) / 0.4 - 4.0 * (r["similarity"] > 0.88)
                    + (r["colourfulness"] - 45) / 45 + 0.5 * (r["visible_change"] - 0.5) + rng.normal(0, noise))
            r = {k: float(v) if isinstance(v, np.floating) else v for k, v in r.items()}
            r["verdict"] = "keep" if like > 0 else "reject"
            rows.append(r)
    s = fitting.Scores(rows)
    for r, accepted, overall in zip(rows, fitting.gate_accepts(s, CalibratedThresholds()),
                                    fitting.overall(s, CalibratedThresholds())):
        r["accepted"], r["overall_quality"] = bool(accepted), float(overall)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--per-photo", type=int, default=10)
    ap.add_argument("--noise", type=float, default=0.5)
    args = ap.parse_args()
    gain, auc_gain, auc_acc_gain = [], [], []
    for seed in range(args.seeds):
        c = fitting.calibrate(decisions(seed=seed, photos=args.photos, per_photo=args.per_photo, noise=args.noise),
                              base=CalibratedThresholds())
        held, r = c.splits["held_out"], c.ranking
        gain.append(c.held_out_agreement - held["agreement"])
        auc_gain.append(r["graded_auc"] - r["overall_auc"])
        if r["graded_auc_accepted"] is not None and r["overall_auc_accepted"] is not None:
            auc_acc_gain.append(r["graded_auc_accepted"] - r["overall_auc_accepted"])
        moved = {k: v for k, v in c.proposed(CalibratedThresholds())["thresholds"].items()
                 if v != getattr(CalibratedThresholds(), k)}
        print(f"seed {seed:2d}: held-out agreement {held['agreement']:.3f} -> {c.held_out_agreement:.3f}; AUC "
              f"overall {r['overall_auc']:.3f}, graded {r['graded_auc']:.3f}; moved {moved}")
    for name, xs in (("held-out agreement gain", gain), ("held-out AUC gain (graded - overall)", auc_gain),
                     ("the same among the run's accepted", auc_acc_gain)):
        xs = np.array(xs)
        print(f"{name}: mean {xs.mean():+.3f}, min {xs.min():+.3f}, max {xs.max():+.3f}, "
              f"positive in {int((xs > 0).sum())} of {len(xs)}")


if __name__ == "__main__":
    main()
