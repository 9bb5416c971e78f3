"""review: a person's keep or reject of variations (flows/review.py does the work)."""

from __future__ import annotations

import sys

from varflow.errors import VarflowError
from varflow.kinds import Verdict
from varflow.safety.escaping import for_log


def add_commands(sub) -> None:
    review = sub.add_parser("review", help="keep or reject variations; the files follow and the gate learns")
    commands = review.add_subparsers(dest="review_command", required=True)
    p = commands.add_parser("mark", help="record a keep or reject of one variation and move its file to match")
    p.add_argument("variation_id", help="the variation's id (or its first 6+ hex digits), as the gallery shows it")
    p.add_argument("verdict", choices=[v.value for v in Verdict], help="keep: into the output folder; "
                   "reject: to its _rejected/ folder")
    p.add_argument("--note", default=None, help="why, for whoever reads the reviews later")
    p.add_argument("--reviewer", default=None, help="who decides (default $VARFLOW_REVIEWER or the login name)")
    p.add_argument("--home", default=None, help="data directory (default $VARFLOW_HOME or ~/.local/share/varflow)")
    p.set_defaults(func=cmd_mark)


def cmd_mark(args) -> int:
    from varflow.flows.cli.data import _home
    from varflow.flows.review import apply_review, reviewer_name
    from varflow.storage import Store

    try:
        home = _home(args)
        outcome = apply_review(Store(home).initialize(), args.variation_id, args.verdict,
                               reviewer=reviewer_name(args.reviewer), note=args.note)
    except VarflowError as exc:
        print(f"varflow review mark: {for_log(exc)}", file=sys.stderr)
        return 2
    print(for_log(outcome.message))
    return 0
