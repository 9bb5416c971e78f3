"""The calibrated profile corrected by people's decisions (``varflow calibrate``): pure functions over rows.

A row is one reviewed variation as the store holds it (the ``variation_status`` view): its source
``image_id``, the person's ``verdict`` (keep/reject), the run's ``accepted``, its ``quality_level`` and
the calibrated profile's scores. Only variations the calibrated profile scored count (a duplicate is
never scored; a seed-profile row does not record the calibrated headline values).

The reviews are split by source photo (as bench/calibration.py splits its set): the photos of the
``fit`` split choose the gate's thresholds (round values on a small grid, the most agreement with
people, ties to the values in force) and fit the graded overall (a ridge-regularised logistic
regression on a few calibrated parts); the ``held_out`` split's photos only measure them. No photo's
variations are in both, so the held-out figures say how the proposal does on photos it never saw.
docs/calibrated-profile.md describes it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from varflow.settings import CalibratedThresholds, GradedOverall


@dataclass(frozen=True)
class Enough:
    """The fewest reviews a proposal is fitted on: this many scored, reviewed variations, with both
    verdicts among them, from at least ``sources`` source photos (so each split has two)."""

    reviews: int = 30
    sources: int = 4


ENOUGH = Enough()

# The thresholds the proposal chooses, each among round values (the value in force is added).
GRID: dict[str, tuple[float, ...]] = {
    "similarity_min": (0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    "similarity_max": (0.86, 0.88, 0.9, 0.92, 0.94, 0.96),
    "diversity_min": (0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    "aesthetic_min": (0.3, 0.4, 0.5, 0.6, 0.7),
    "object_integrity_min": (0.3, 0.4, 0.5, 0.6, 0.7),
}
# The graded overall's inputs: the calibrated parts that still vary among accepted variations
# (naturalness, exposure, detail_sharpness and integrity sit at 1.0 for nearly all of them).
GRADED_PARTS = ("structure_match", "visible_change", "detail_ratio", "noise_excess", "colourfulness", "aesthetic")
RIDGE = 2.0  # L2 penalty on the standardised weights (the intercept is free): small sets stay near 0
_NEWTON_STEPS = 50
# A threshold moved one grid step from the value in force must win this many more agreements (less
# would be chasing the noise of a few reviews: a proposal then did worse on held-out photos)
STEP_COST = 0.5
HELD_OUT_SALT = "varflow-calibrate-split-1"  # changing it reshuffles which photos are held out


def _value(row: Mapping, key: str) -> float:
    v = row.get(key)
    return float("nan") if v is None else float(v)


def usable(rows: Sequence[Mapping]) -> list[Mapping]:
    """The reviewed variations the calibrated profile scored (the ones a proposal can be fitted on)."""
    return [r for r in rows if r.get("verdict") in ("keep", "reject") and r.get("profile") == "calibrated"
            and r.get("similarity") is not None]


def shortfall(rows: Sequence[Mapping], *, enough: Enough = ENOUGH) -> int:
    """How many more scored reviews are needed (0: enough): up to ``enough.reviews``, at least one more
    when a verdict is missing, and one per missing source photo."""
    rows = usable(rows)
    verdicts = {r["verdict"] for r in rows}
    photos = len({r["image_id"] for r in rows})
    return max(enough.reviews - len(rows), 0 if len(verdicts) == 2 else 1, enough.sources - photos, 0)


def held_out_photos(image_ids: Sequence[str]) -> set[str]:
    """The source photos held out: every other one in an order fixed by a hash of the id, so the split
    is the same each time for the same photos and a new photo does not reshuffle the rest much."""
    order = sorted(set(image_ids), key=lambda i: hashlib.sha256(f"{HELD_OUT_SALT}:{i}".encode()).hexdigest())
    return set(order[1::2])


class Scores:
    """The columns of a set of rows as arrays (missing: NaN), and what people decided (``kept``)."""

    def __init__(self, rows: Sequence[Mapping]):
        self.n = len(rows)
        self.kept = np.array([r["verdict"] == "keep" for r in rows], dtype=bool)
        self.accepted = np.array([bool(r.get("accepted")) for r in rows], dtype=bool)
        self.level = [str(r.get("quality_level") or "medium") for r in rows]
        self._rows = rows
        self._columns: dict[str, np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._columns:
            self._columns[key] = np.array([_value(r, key) for r in self._rows], dtype=float)
        return self._columns[key]

    def subset(self, mask: np.ndarray) -> Scores:
        return Scores([r for r, m in zip(self._rows, mask) if m])


def overall(s: Scores, t: CalibratedThresholds) -> np.ndarray:
    """``calibrated.overall_calibrated`` over arrays: the band fit depends on the similarity band, so a
    proposal's overall is computed again from the recorded headline values."""
    sim, div = s["similarity"], s["diversity"]
    band = np.clip(np.minimum(sim - t.similarity_min, t.similarity_max - sim) / t.band_margin, 0.0, 1.0)
    has_div = ~np.isnan(div)
    w_div = np.where(has_div, t.weight_diversity, 0.0)
    num = (t.weight_similarity * band + t.weight_aesthetic * s["aesthetic"]
           + t.weight_object_integrity * s["object_integrity"] + w_div * np.clip(np.nan_to_num(div), 0, 1))
    den = t.weight_similarity + t.weight_aesthetic + t.weight_object_integrity + w_div
    return num / den


def gate_accepts(s: Scores, t: CalibratedThresholds) -> np.ndarray:
    """``acceptance.gate`` over arrays with thresholds ``t`` at each row's quality level. Diversity is the
    recorded one (measured against what the run had accepted so far; a stricter gate would have accepted
    fewer, so a variation's true diversity could only be the same or larger)."""
    sim, div = s["similarity"], s["diversity"]
    level_min = np.array([t.overall_for(lv) for lv in s.level])
    o = overall(s, t)
    return ((sim >= t.similarity_min) & (sim <= t.similarity_max) & (np.isnan(div) | (div >= t.diversity_min))
            & (s["aesthetic"] >= t.aesthetic_min) & (s["object_integrity"] >= t.object_integrity_min)
            & (o >= t.overall_min) & (o >= level_min))


def agreement(kept: np.ndarray, accepted: np.ndarray) -> float | None:
    """Share of variations where the gate's decision is the person's (None: no variation)."""
    return float(np.mean(kept == accepted)) if len(kept) else None


def auc(scores: np.ndarray, kept: np.ndarray) -> float | None:
    """How well ``scores`` rank kept above rejected: the chance that a random kept variation scores
    higher than a random rejected one, ties counting half (Mann-Whitney, mid-ranks). 0.5 is chance;
    None when either verdict is missing or a score is."""
    scores, kept = np.asarray(scores, dtype=float), np.asarray(kept, dtype=bool)
    if np.isnan(scores).any():
        return None
    n_pos, n_neg = int(kept.sum()), int((~kept).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # mid-ranks for ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[kept].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _grid_values(name: str, base: float) -> tuple[float, ...]:
    return tuple(sorted({*GRID[name], base}))


def fit_thresholds(s: Scores, *, base: CalibratedThresholds) -> CalibratedThresholds:
    """The thresholds of ``GRID`` that agree most with people on ``s``, each grid step from ``base``
    counting ``STEP_COST`` disagreements (with no evidence, nothing moves). The rest of ``base`` is kept."""
    names = tuple(GRID)
    values = {n: _grid_values(n, getattr(base, n)) for n in names}
    start = {n: values[n].index(getattr(base, n)) for n in names}
    best_key, best = None, base
    for i_min, i_max in itertools.product(range(len(values["similarity_min"])), range(len(values["similarity_max"]))):
        band = replace(base, similarity_min=values["similarity_min"][i_min],
                       similarity_max=values["similarity_max"][i_max])
        if band.similarity_min >= band.similarity_max:
            continue
        fixed = gate_accepts(s, replace(band, diversity_min=0.0, aesthetic_min=0.0, object_integrity_min=0.0))
        div = s["diversity"]
        for idx in itertools.product(*(range(len(values[n])) for n in names[2:])):
            chosen = {n: values[n][i] for n, i in zip(names[2:], idx)}
            acc = (fixed & (np.isnan(div) | (div >= chosen["diversity_min"]))
                   & (s["aesthetic"] >= chosen["aesthetic_min"])
                   & (s["object_integrity"] >= chosen["object_integrity_min"]))
            steps = abs(i_min - start[names[0]]) + abs(i_max - start[names[1]]) + sum(
                abs(i - start[n]) for n, i in zip(names[2:], idx))
            key = (int(np.sum(acc != s.kept)) + STEP_COST * steps, steps)
            if best_key is None or key < best_key:
                best_key, best = key, replace(band, **chosen)
    return best


def fit_graded(s: Scores, *, parts: Sequence[str] = GRADED_PARTS, ridge: float = RIDGE) -> GradedOverall:
    """A logistic regression of keep on the standardised ``parts`` (missing values at the centre), with an
    L2 penalty ``ridge`` on the weights, by Newton's method. Its value is the fitted chance of a keep."""
    x = np.column_stack([s[p] for p in parts]) if s.n else np.zeros((0, len(parts)))
    centre = np.array([float(np.nanmean(c)) if np.isfinite(c).any() else 0.0 for c in x.T])
    x = np.where(np.isnan(x), centre, x)
    spread = x.std(axis=0) if s.n else np.ones(len(parts))
    scale = np.where(spread > 1e-9, spread, 1.0)
    z = np.column_stack([np.ones(s.n), (x - centre) / scale])
    y = s.kept.astype(float)
    penalty = np.diag([0.0] + [ridge] * len(parts))
    beta = np.zeros(len(parts) + 1)
    for _ in range(_NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -30, 30)))
        grad = z.T @ (p - y) + penalty @ beta
        hess = z.T @ (z * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return GradedOverall(parts=tuple(parts), centre=tuple(round(float(c), 6) for c in centre),
                         scale=tuple(round(float(c), 6) for c in scale),
                         weights=tuple(round(float(w), 6) for w in beta[1:]), intercept=round(float(beta[0]), 6))


def graded_scores(s: Scores, graded: GradedOverall) -> np.ndarray:
    """The graded overall of every row (as ``GradedOverall.grade`` gives it to a run's variations)."""
    return np.array([graded.grade(r) for r in s._rows], dtype=float)


@dataclass(frozen=True)
class Calibration:
    """What ``calibrate`` found; ``report()`` is its JSON form (``varflow calibrate --json``)."""

    reviewed: int  # reviewed variations (latest row of each), scored or not
    scored: int  # of which the calibrated profile scored (the ones fitted on and measured)
    needed: int  # more scored reviews needed before a proposal (0: there is one)
    agreement: float | None  # the gate as it ran (the rows' ``accepted``) against people, every scored review
    splits: dict | None = None
    thresholds: CalibratedThresholds | None = None  # the proposal (None: too few reviews)
    graded: GradedOverall | None = None
    held_out_agreement: float | None = None
    ranking: dict | None = None

    def proposed(self, base: CalibratedThresholds) -> dict | None:
        """The proposed thresholds (every fitted one, with the value in force) and the graded overall."""
        if self.thresholds is None:
            return None
        return {"thresholds": {n: getattr(self.thresholds, n) for n in GRID},
                "in_force": {n: getattr(base, n) for n in GRID}, "graded_overall": asdict(self.graded)}


def _split_figures(s: Scores, photos: int, proposed: np.ndarray | None = None) -> dict:
    out = {"photos": photos, "reviewed": s.n, "kept": int(s.kept.sum()), "rejected": int((~s.kept).sum()),
           "agreement": agreement(s.kept, s.accepted)}
    if proposed is not None:
        out["proposal_agreement"] = agreement(s.kept, proposed)
    return out


def _ranking(s: Scores, graded: np.ndarray) -> dict:
    """AUC of the run's overall quality and of the graded overall on ``s``; and among the variations the
    run accepted, where a ranking is what a person uses."""
    acc = s.accepted
    return {"overall_auc": auc(s["overall_quality"], s.kept), "graded_auc": auc(graded, s.kept),
            "overall_auc_accepted": auc(s["overall_quality"][acc], s.kept[acc]),
            "graded_auc_accepted": auc(graded[acc], s.kept[acc]), "accepted": int(acc.sum())}


def calibrate(rows: Sequence[Mapping], *, base: CalibratedThresholds, enough: Enough = ENOUGH) -> Calibration:
    """The gate's agreement with people's reviews ``rows``, and (with enough of them) a proposal fitted on
    the fit split's photos, measured on the held-out photos. ``base``: the thresholds in force."""
    scored = usable(rows)
    s = Scores(scored)
    needed = shortfall(rows, enough=enough)
    common = dict(reviewed=len(rows), scored=len(scored), needed=needed, agreement=agreement(s.kept, s.accepted))
    if needed:
        return Calibration(**common)
    ids = [r["image_id"] for r in scored]
    out = held_out_photos(ids)
    held = np.array([i in out for i in ids])
    fit, test = s.subset(~held), s.subset(held)
    thresholds = fit_thresholds(fit, base=base)
    graded = fit_graded(fit)
    proposed_fit, proposed_test = gate_accepts(fit, thresholds), gate_accepts(test, thresholds)
    splits = {"fit": _split_figures(fit, len(set(ids)) - len(out), proposed_fit),
              "held_out": _split_figures(test, len(out), proposed_test)}
    return Calibration(**common, splits=splits, thresholds=thresholds, graded=graded,
                       held_out_agreement=agreement(test.kept, proposed_test),
                       ranking=_ranking(test, graded_scores(test, graded)))
