"""report, runs, stats, sql, doctor: reading (and repairing) what runs recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from varflow.flows.cli.options import positive_int

from varflow.reports.tabular import cell_text, format_table
from varflow.safety.escaping import for_log, for_terminal
from varflow.settings import GALLERY


def add_commands(sub) -> None:
    """report, runs, stats, sql: reading what runs recorded."""
    home_help = "data directory (default $VARFLOW_HOME or ~/.local/share/varflow)"
    p = sub.add_parser("report",
                       help="write a run's gallery: originals, accepted and rejected variations, one HTML page")
    p.add_argument("run_id", nargs="?", default=None, help="run id or a unique prefix (default: the latest run)")
    p.add_argument("--out", default="report.html", help="the page to write (default ./report.html); an existing "
                   "folder gets report.html inside it")
    p.add_argument("--max-images", type=positive_int, default=GALLERY.max_images,
                   help=f"most source images on the page (default {GALLERY.max_images})")
    p.add_argument("--execution", type=positive_int, default=None,
                   help="which execution of a retried flow run (default: its latest; `varflow runs` shows them as #n)")
    p.add_argument("--home", default=None, help=home_help)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("runs", help="list recent runs with their counts")
    p.add_argument("--limit", type=positive_int, default=20, help="how many runs, newest first (default 20)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.add_argument("--home", default=None, help=home_help)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("stats", help="a run's quality summary: scores, reasons, acceptance by type, level changes")
    p.add_argument("run_id", nargs="?", default=None, help="run id or a unique prefix (default: the latest run)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--execution", type=positive_int, default=None,
                   help="which execution of a retried flow run (default: its latest; `varflow runs` shows them as #n)")
    p.add_argument("--home", default=None, help=home_help)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("sql", help="run one read-only SQL query against the store and print the rows")
    p.add_argument("query", help='e.g. "SELECT reject_reason, count(*) FROM variations GROUP BY ALL"')
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="print CSV")
    fmt.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.add_argument("--home", default=None, help=home_help)
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("doctor",
                       help="check the data directory (damaged files, killed runs, leftovers); --repair fixes it")
    p.add_argument("--repair", action="store_true", help="do what each problem line says")
    p.add_argument("--home", default=None, help=home_help)
    p.set_defaults(func=cmd_doctor)


RUN_ID_SHOWN = 8  # characters of a run id in `varflow runs`; any unique prefix names a run

def _home(args) -> Path:
    from varflow.settings import default_home

    home = Path(args.home).expanduser() if args.home else default_home()
    if home.exists() and not home.is_dir():
        print(f"varflow: the data directory {home} is a file, not a folder; pass another --home (or VARFLOW_HOME)",
              file=sys.stderr)
        raise SystemExit(2)
    return home

def cmd_report(args) -> int:
    from varflow.flows.gallery import write_gallery

    out = Path(args.out)
    if out.is_dir():  # like cp: a folder receives the page under its default name
        out = out / "report.html"
    try:
        out = write_gallery(_home(args), out, args.run_id, execution=args.execution, max_images=args.max_images)
    except LookupError as exc:
        print(f"varflow report: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0

def cmd_runs(args) -> int:
    from varflow.storage.analysis import recent_runs

    from varflow.reports.tabular import format_json

    result = recent_runs(_home(args), limit=args.limit)
    if args.json:
        print(format_json(result.columns, result.rows))
        return 0
    if not result.rows:
        print(f"no runs yet in {_home(args)}: run `varflow demo` or `varflow run DIR` (or pass --home)")
        return 0
    pct = lambda v: "" if v is None else f"{v:.0%}"
    # A retried flow run has a row per execution: "<id> #2" tells them apart (--execution 2 names it).
    run = lambda r: r["run_id"][:RUN_ID_SHOWN] + (f" #{r['execution']}" if r["executions"] > 1 else "")
    rows = [[run(r), r["started_at"].strftime("%Y-%m-%d %H:%M") if r["started_at"] else "",
             r["status"], f"{r['backend']}/{r['model']}", r["images"], r["ok"], r["error"], r["skipped"],
             r["accepted"], r["rejected"], r["duplicates"], r["attempts"], pct(r["acceptance"]),
             r["reviewed"], r["accepted_after_review"],
             r["mean_overall"], None if r["wall_seconds"] is None else round(r["wall_seconds"], 1)]
            for r in result.records()]
    # "accepted" is the gate's decision as the run made it; "after review" what stands once people decided
    # (kept ones in, rejected ones out: the variation_status view), "reviewed" how many they decided on.
    print(format_table(["run", "started (UTC)", "status", "backend/model", "images", "ok", "error", "skipped",
                        "accepted", "rejected", "dup", "attempts", "accepted %", "reviewed", "after review",
                        "overall", "wall s"], rows, row_count=False))
    print(f"(a run id prefix is enough: varflow stats {result.rows[0][0][:RUN_ID_SHOWN]}; --json gives full ids)")
    return 0

def cmd_stats(args) -> int:
    from varflow.storage.analysis import as_jsonable, quality_summary, resolve_run

    try:
        run = resolve_run(_home(args), args.run_id, args.execution)
    except LookupError as exc:
        print(f"varflow stats: {exc}", file=sys.stderr)
        return 1
    summary = quality_summary(_home(args), run["run_id"], run["execution"])
    if args.json:
        print(json.dumps(as_jsonable(summary), indent=2))
    else:
        print(for_terminal(render_stats(summary), keep_newlines=True))
    return 0

def cmd_sql(args) -> int:
    from varflow.storage.analysis import QueryFailed, ReadOnlyQueryError, read_only_query

    from varflow.reports.tabular import format_csv, format_json

    try:
        result = read_only_query(_home(args), args.query)
    except ReadOnlyQueryError as exc:
        print(f"varflow sql: {for_log(exc)}", file=sys.stderr)
        return 2
    except QueryFailed as exc:
        print(f"varflow sql: {for_terminal(exc, keep_newlines=True)}\n(tables and columns: storage/SCHEMA.md, or "
              "varflow sql \"DESCRIBE variations\")", file=sys.stderr)
        return 1
    if args.csv:  # exact values for a pipe; a terminal gets control characters escaped
        text = format_csv(result.columns, result.rows)
        sys.stdout.write(for_terminal(text, keep_newlines=True) if sys.stdout.isatty() else text)
    elif args.json:
        print(format_json(result.columns, result.rows))
    else:
        print(format_table(result.columns, result.rows))
    return 0

def cmd_doctor(args) -> int:
    """Check the data directory; with --repair, fix it. Exit 0 when healthy (or repaired), 1 when
    problems remain (the lines say what --repair would do)."""
    from varflow.storage.doctor import diagnose, repair
    from varflow.storage.integrity import quarantined

    home = _home(args)
    if not home.exists():
        print(f"varflow doctor: {home} does not exist; nothing to check (pass --home DIR)", file=sys.stderr)
        return 2
    problems = diagnose(home)
    for p in problems:
        print(p.line())
    earlier = quarantined(home)
    if earlier:
        print(f"{len(earlier)} file(s) set aside in {home / 'quarantine'} (listed in quarantine.jsonl): a Parquet "
              "part's rows are not in the store until a good copy is restored to its old place")
    if not problems:
        print(f"varflow doctor: {home} is healthy")
        return 0
    if not args.repair:
        print(f"varflow doctor: {len(problems)} problem(s); run `varflow doctor --repair` to do what each line says")
        return 1
    for line in repair(home, problems):
        print(f"repaired: {line}")
    left = diagnose(home)
    for p in left:
        print(f"still wrong: {p.line()}", file=sys.stderr)
    return 1 if left else 0

def render_stats(summary: dict) -> str:
    """``varflow stats``: one run's quality summary (``varflow.storage.analysis.quality_summary``) as text."""
    run = summary["run"]
    rate = summary["acceptance_rate"]
    lines = [
        f"varflow run {run['run_id']} ({run['status']}, {run['backend']} / {run['model']}, "
        f"started {cell_text(run['started_at'])})",
        f"  images      {run['images_total']} found: {run['images_ok']} ok, {run['images_error']} error, "
        f"{run['images_skipped']} skipped",
        f"  variations  {summary['judged']} judged: {summary['accepted']} accepted, {summary['rejected']} rejected "
        f"(of which duplicates: {summary['duplicates']}); {'n/a' if rate is None else f'{rate:.0%}'} "
        f"of {summary['attempts']} attempts accepted",
    ]
    reviews = summary.get("reviews") or {}
    if reviews.get("reviewed"):
        lines.append(f"  reviewed    {reviews['reviewed']} by people: {reviews['kept_by_people']} kept that the gate "
                     f"rejected, {reviews['rejected_by_people']} rejected that it accepted; "
                     f"{reviews['accepted_after_review']} accepted after review")
    if summary["levels"]:
        lines.append("  levels      " + ", ".join(f"{k} {v} images" for k, v in summary["levels"].items()))
    lines.append("")
    metrics = summary["metrics"]
    if metrics:
        cols = ["metric", "accepted", "min", "p50", "mean", "max", "rejected", "p50", "mean"]
        rows = [[m["metric"], m["accepted_n"], m["accepted_min"], m["accepted_p50"], m["accepted_mean"],
                 m["accepted_max"], m["rejected_n"], m["rejected_p50"], m["rejected_mean"]] for m in metrics]
        lines.append("scores: accepted (count, min, p50, mean, max) | rejected (count, p50, mean); "
                     "duplicates are not scored")
        lines.append(_indent(format_table(cols, rows, row_count=False)))
        lines.append("")
    if summary["reasons"]:
        lines.append("rejected by reason (a variation can fail several checks)")
        lines.append(_indent(format_table(["reason", "variations"], list(summary["reasons"].items()), row_count=False)))
        lines.append("")
    if summary["by_type"]:
        lines.append("acceptance by variation type")
        lines.append(_indent(format_table(["variation_type", "judged", "accepted", "acceptance"],
                                          [[r["variation_type"], r["judged"], r["accepted"], r["acceptance"]]
                                           for r in summary["by_type"]], row_count=False)))
        lines.append("")
    if summary["level_changes"]:
        lines.append("quality level changes")
        lines.append(_indent(format_table(["changed_at", "from", "to", "window_average", "reason"],
                                          [[c["changed_at"], c["from_level"], c["to_level"], c["window_average"],
                                            c["reason"]] for c in summary["level_changes"]], row_count=False)))
    return "\n".join(lines).rstrip()

def _indent(table: str) -> str:
    return "\n".join("  " + line for line in table.splitlines())
