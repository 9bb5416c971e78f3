"""review: a person's keep or reject of variations (flows/review.py does the work)."""

from __future__ import annotations

import sys

from varflow.flows.cli.options import positive_int

from varflow.errors import VarflowError
from varflow.kinds import Verdict
from varflow.safety.escaping import for_log, for_terminal
from varflow.settings import GALLERY, REVIEW_SERVER


def add_commands(sub) -> None:
    review = sub.add_parser("review", help="keep or reject variations; the files follow and the gate learns")
    commands = review.add_subparsers(dest="review_command", required=True)
    p = commands.add_parser("mark", help="record a keep or reject of one variation and move its file to match")
    p.add_argument("variation_id", help="the variation's id (or its first 6+ hex digits), as the gallery shows it")
    p.add_argument("verdict", choices=[v.value for v in Verdict], help="keep: into the output folder; "
                   "reject: to its _rejected/ folder")
    p.add_argument("--note", default=None, help="why, for whoever reads the reviews later")
    p.add_argument("--run", default=None, help="the run (or a prefix of its id) whose variation this is: needed only "
                   "when several runs over the same photos made it")
    p.add_argument("--reviewer", default=None, help="who decides (default $VARFLOW_REVIEWER or the login name)")
    p.add_argument("--home", default=None, help="data directory (default $VARFLOW_HOME or ~/.local/share/varflow)")
    p.set_defaults(func=cmd_mark)

    p = commands.add_parser("serve", help="serve a run's gallery with Keep / Reject on each card (and keys to go "
                            "through it fast); every run is a click away")
    p.add_argument("run_id", nargs="?", default=None, help="run id or a unique prefix (default: the latest run)")
    p.add_argument("--host", default=REVIEW_SERVER.host,
                   help=f"address to listen on (default {REVIEW_SERVER.host}: this machine only); any other asks "
                        "every request for the token printed at start")
    p.add_argument("--port", type=int, default=REVIEW_SERVER.port,
                   help=f"port (default {REVIEW_SERVER.port}; 0 takes a free one)")
    p.add_argument("--reviewer", default=None, help="who decides (default $VARFLOW_REVIEWER or the login name)")
    p.add_argument("--max-images", type=positive_int, default=GALLERY.max_images,
                   help=f"most source images on a page (default {GALLERY.max_images})")
    p.add_argument("--home", default=None, help="data directory (default $VARFLOW_HOME or ~/.local/share/varflow)")
    p.set_defaults(func=cmd_serve)


def cmd_mark(args) -> int:
    from varflow.flows.cli.data import _home
    from varflow.flows.review import apply_review, reviewer_name
    from varflow.storage import Store

    try:
        home = _home(args)
        outcome = apply_review(Store(home).initialize(), args.variation_id, args.verdict,
                               reviewer=reviewer_name(args.reviewer), note=args.note, run_id=args.run)
    except VarflowError as exc:
        print(f"varflow review mark: {for_log(exc)}", file=sys.stderr)
        return 2
    print(for_log(outcome.message))
    return 0


def cmd_serve(args) -> int:
    from varflow.flows.cli.data import _home
    from varflow.flows.review import reviewer_name
    from varflow.flows.review_server import ReviewApp

    if not 0 <= args.port <= 65535:
        print(f"varflow review serve: --port {args.port} is not a port (0-65535; 0 takes a free one)", file=sys.stderr)
        return 2
    try:
        app = ReviewApp(_home(args), run_id=args.run_id, reviewer=reviewer_name(args.reviewer), host=args.host,
                        port=args.port, max_images=args.max_images)
    except (VarflowError, LookupError) as exc:
        print(f"varflow review serve: {for_log(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"varflow review serve: cannot listen on {for_log(args.host)}:{args.port}: {exc.strerror or exc}; "
              "pass another --port (0 takes a free one)", file=sys.stderr)
        return 2
    print(f"reviewing run {app.default_run[:12]} as {for_terminal(app.reviewer)} at {app.url}", flush=True)
    if app.remote:
        print(f"served beyond this machine: every request needs the token; open {app.url}?token={app.token}",
              flush=True)
    print("decisions move the files; Ctrl-C stops", flush=True)
    try:
        app.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.httpd.server_close()
    return 0
