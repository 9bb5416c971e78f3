"""score, dedup: look at image files without a run."""

from __future__ import annotations

import json
import sys

from varflow.safety.escaping import for_log, for_terminal
from varflow.settings import DEFAULT_PROFILE, PROFILES


def add_commands(sub) -> None:
    p = sub.add_parser("score", help="score variations against their original, as a run would (exit 1 if any fails)")
    p.add_argument("original")
    p.add_argument("variations", nargs="+", help="V1 V2 ...: diversity of Vi is measured against V1..V(i-1)")
    p.add_argument("--level", default="medium", choices=("high", "medium", "low"),
                   help="level for the gate (default medium)")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES,
                   help=f"quality model that decides (default {DEFAULT_PROFILE}); both are printed")
    p.add_argument("--max-side", type=int, default=None,
                   help="fit images within this size first, as a run's optimize does")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("dedup", help="find near-duplicate groups among a folder's images")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true", help="print a list of groups, each a list of file paths")
    p.set_defaults(func=cmd_dedup)


def cmd_score(args) -> int:
    from varflow.images.imageio import ImageReadError
    from varflow.quality.profiles import calibrated_parts
    from varflow.reports.inspect import score_files

    try:
        rows = score_files(args.original, args.variations, profile=args.profile, level=args.level,
                           max_side=args.max_side)
    except ImageReadError as exc:
        print(f"varflow: {exc}", file=sys.stderr)
        return 2
    verdict_code = 0 if all(r["accepted"] for r in rows) else 1  # like a linter: 1 when any fails the gate
    if args.json:
        print(json.dumps(rows, indent=2))
        return verdict_code
    print(f"against {for_terminal(args.original)} (profile {args.profile}, level {args.level}; the diversity of "
          f"each variation "
          "is against the ones before it)")
    num = lambda v: "n/a (first)" if v is None else f"{v:.4f}"
    for r in rows:
        verdict = "accepted" if r["accepted"] else "rejected: " + ", ".join(r["reasons"])
        print(f"V{r['index']} {for_terminal(r['path'])}  {verdict}")
        print(f"   {args.profile:<10}  similarity {num(r['similarity'])}  diversity {num(r['diversity'])}  "
              f"aesthetic {num(r['aesthetic'])}  integrity {num(r['object_integrity'])}  "
              f"overall {num(r['overall_quality'])} (level needs {r['level_threshold']:.2f})")
        print("   calibrated parts  " + "  ".join(f"{k.replace('_', ' ')} {num(r[k])}" for k in calibrated_parts()))
        print(f"   seed        similarity {num(r['seed_similarity'])}  diversity {num(r['seed_diversity'])}  "
              f"aesthetic {num(r['seed_aesthetic'])}  integrity {num(r['seed_object_integrity'])}  "
              f"overall {num(r['seed_overall_quality'])}")
        print(f"   hashes a {r['ahash']} p {r['phash']} d {r['dhash']}")
    return verdict_code

def cmd_dedup(args) -> int:
    from varflow.reports.inspect import copy_groups_in

    errors: list[tuple[str, str]] = []
    try:
        groups, looked_at = copy_groups_in(args.dir, errors=errors)
    except FileNotFoundError as exc:
        print(f"varflow: {for_log(exc)}", file=sys.stderr)
        return 2
    for _path, message in errors:
        print(f"varflow: skipped {for_log(message)}", file=sys.stderr)
    if args.json:
        print(json.dumps(groups, indent=2))
    else:
        print(f"{len(groups)} near-duplicate groups among {looked_at} images")
        for g in groups:
            print("  " + "\n    ".join(for_terminal(path) for path in g))
    return 0
