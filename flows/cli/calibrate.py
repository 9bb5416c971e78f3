"""calibrate: how the gate agrees with people's reviews, and thresholds plus a graded overall fitted on them.

The fitting is varflow/quality/fitting.py's (split by source photo: fitted on some, measured on the
others); ``--apply`` saves the proposal as the data directory's calibrated profile (storage/profiles.py),
which later runs of that data directory use (flows/resources.py ``run_settings``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from varflow.errors import InputError, VarflowError
from varflow.safety.escaping import for_log
from varflow.settings import CalibratedThresholds


def add_commands(sub) -> None:
    p = sub.add_parser("calibrate", help="the gate's agreement with people's reviews; thresholds and a graded "
                       "overall fitted on them (--apply: later runs use them)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--apply", action="store_true", help="save the proposal as this data directory's calibrated "
                   "profile (a new version; runs of this data directory use it from then on)")
    p.add_argument("--home", default=None, help="data directory (default $VARFLOW_HOME or ~/.local/share/varflow)")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> int:
    from varflow.flows.cli.data import _home
    from varflow.storage.profiles import load_profile

    from varflow.quality.fitting import calibrate

    home = _home(args)
    try:
        in_force = load_profile(home)
        base = in_force.thresholds if in_force is not None else CalibratedThresholds()
        result = calibrate(_decisions(home), base=base)
        applied = _apply(home, result, base, in_force) if args.apply else None
    except VarflowError as exc:
        print(f"varflow calibrate: {for_log(exc)}", file=sys.stderr)
        return 2
    report = calibration_report(result, base=base, in_force=in_force, applied=applied)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def _decisions(home) -> list[dict]:
    from varflow.storage import Store
    from varflow.storage.analysis import has_store

    return Store(home).initialize().review_decisions() if has_store(home) else []


def _apply(home, result, base: CalibratedThresholds, in_force) -> dict:
    """Save the proposal (fitted on the fit split, exactly as measured) as the next version, in force."""
    from varflow.storage.profiles import save_profile

    from varflow.runtime.records import utcnow

    if result.thresholds is None:
        raise InputError(f"nothing applied: {result.needed} more reviews are needed first (varflow review mark, "
                         "or the review page)")
    figures = calibration_report(result, base=base, in_force=in_force, applied=None)
    document = {"thresholds": asdict(result.thresholds), "graded_overall": asdict(result.graded),
                "created_at": utcnow().isoformat(), "based_on": in_force.version if in_force else None,
                "figures": {k: figures[k] for k in ("reviewed", "scored", "agreement", "held_out_agreement",
                                                    "splits", "ranking")}}
    version, path = save_profile(home, document)
    return {"version": version, "path": str(path)}


def _round(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value


def calibration_report(result, *, base: CalibratedThresholds, in_force, applied: dict | None) -> dict:
    """``varflow calibrate --json``: the figures, rounded to 4 digits."""
    from varflow.quality.fitting import ENOUGH

    return _round({
        "reviewed": result.reviewed, "scored": result.scored, "needed": result.needed,
        "minimum": asdict(ENOUGH), "agreement": result.agreement,
        "in_force": {"version": in_force.version if in_force else None},
        "proposed": result.proposed(base), "held_out_agreement": result.held_out_agreement,
        "splits": result.splits, "ranking": result.ranking, "applied": applied,
    })


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _auc(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def render(r: dict) -> str:
    """The report for a person."""
    version = r["in_force"]["version"]
    gate = f"calibrated profile v{version}" if version else "the default thresholds"
    if r["scored"]:
        lines = [f"{r['reviewed']} reviewed variations, {r['scored']} scored by the calibrated profile; the gate "
                 f"({gate}) agrees with people on {_pct(r['agreement'])} of them"]
    else:
        lines = [f"{r['reviewed']} reviewed variations, none scored by the calibrated profile (the gate in force: "
                 f"{gate}); review some with `varflow review mark ID keep|reject` or the review page"]
    if r["needed"]:
        m = r["minimum"]
        lines.append(f"too few reviews to fit on: {r['needed']} more needed (at least {m['reviews']} scored "
                     f"reviews, both keep and reject among them, from at least {m['sources']} source photos)")
        return "\n".join(lines)
    fit, held = r["splits"]["fit"], r["splits"]["held_out"]
    lines.append(f"split by source photo: fitted on {fit['photos']} photos ({fit['reviewed']} reviews: "
                 f"{fit['kept']} kept, {fit['rejected']} rejected), measured on {held['photos']} others "
                 f"({held['reviewed']}: {held['kept']} kept, {held['rejected']} rejected)")
    p = r["proposed"]
    moves = [f"{k} {p['in_force'][k]:g} -> {v:g}" for k, v in p["thresholds"].items() if v != p["in_force"][k]]
    lines.append("proposed thresholds: " + (", ".join(moves) if moves else "as in force (no change wins enough)"))
    lines.append(f"held-out photos: the gate in force agrees on {_pct(held['agreement'])}, the proposal on "
                 f"{_pct(r['held_out_agreement'])}")
    k = r["ranking"]
    lines.append(f"ranking kept above rejected on held-out photos (AUC; 0.5 is chance): overall quality "
                 f"{_auc(k['overall_auc'])}, graded overall {_auc(k['graded_auc'])}; among the {k['accepted']} "
                 f"the run accepted: {_auc(k['overall_auc_accepted'])} and {_auc(k['graded_auc_accepted'])}")
    if r["held_out_agreement"] is not None and held["agreement"] is not None \
            and r["held_out_agreement"] < held["agreement"]:
        lines.append("note: the proposal agrees less than the gate in force on the held-out photos")
    if r["applied"]:
        lines.append(f"applied: calibrated profile v{r['applied']['version']} ({r['applied']['path']}) is in force "
                     "for the next runs of this data directory")
    else:
        lines.append("varflow calibrate --apply puts the proposal in force for the next runs")
    return "\n".join(lines)
