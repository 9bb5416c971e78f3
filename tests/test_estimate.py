"""The dry run's estimate from history: the arithmetic, the store's history, the plan and its words."""

import itertools
import json
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image
from varflow.storage import Store

from varflow.processing.estimate import AttemptHistory, estimate_calls, expected_attempts, history_for, rates
from varflow.runtime.records import AttemptRecord, ImageRecord, VariationRecord

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
GEMINI, MODEL = "gemini", "gemini-2.5-flash-image"


def waves(outcomes, count, budget):
    """The pipeline's loop, as written: each wave asks for the variations still missing."""
    accepted = attempt = 0
    it = iter(outcomes)
    while accepted < count and attempt < budget:
        wave = min(count - accepted, budget - attempt)
        accepted += sum(next(it) for _ in range(wave))
        attempt += wave
    return attempt


@pytest.mark.parametrize("count,budget,p", [(1, 3, 0.5), (2, 4, 0.3), (3, 9, 0.8), (4, 12, 0.62), (2, 6, 0.0)])
def test_expected_attempts_equals_the_waves_of_the_pipeline_over_every_outcome(count, budget, p):
    exact = 0.0
    for seq in itertools.product((0, 1), repeat=budget):  # every outcome sequence, with its probability
        weight = np.prod([p if s else 1 - p for s in seq])
        exact += weight * waves(seq, count, budget)
    assert expected_attempts(count, p, budget) == pytest.approx(exact, rel=1e-9)


def test_expected_attempts_at_the_edges():
    assert expected_attempts(4, 1.0, 12) == 4  # every attempt accepted: count attempts
    assert expected_attempts(4, 0.0, 12) == 12  # none: the whole budget
    assert expected_attempts(1, 0.5, 3) == pytest.approx(1 + 0.5 + 0.25)


def test_the_prior_without_history_is_stated_and_used():
    acceptance, per_attempt = rates(AttemptHistory())
    assert (acceptance, per_attempt) == (0.5, 1.0)
    est = estimate_calls(AttemptHistory(), images=3, count=2, budget_per_image=4, price=0.039, level="medium")
    assert est.attempts_per_image == pytest.approx(1 + 1 + 0.75 + 0.5)  # 2 of 2 at 1/2, budget 4
    assert est.calls == pytest.approx(3 * 3.25) and est.cost_usd == pytest.approx(3 * 3.25 * 0.039)
    assert est.basis.startswith("prior, no history at level medium")


def test_a_level_without_history_borrows_every_levels_and_says_so():
    by_level = {"medium": AttemptHistory(10, 5, 10, 12, 0.3, "medium"), "low": AttemptHistory(4, 4, 4, 4, 0.1, "low")}
    assert history_for("medium", by_level) is by_level["medium"]
    pooled = history_for("high", by_level)
    assert (pooled.attempts, pooled.accepted, pooled.calls, pooled.level) == (14, 9, 16, None)
    est = estimate_calls(pooled, images=1, count=1, budget_per_image=3, price=0.039, level="high")
    assert est.basis == "from 14 earlier attempts at every level (none at level high yet)"
    assert est.usd_per_call == pytest.approx(0.4 / 16)  # the history's mean price, not the list price


# ---------------------------------------------------------------------------------------------
# A seeded history in a real store (real Parquet), read back by the dry run
# ---------------------------------------------------------------------------------------------


def call(run, image, attempt, try_number, outcome, level="high", model=MODEL, cache_hit=False):
    ok = outcome == "ok" and not cache_hit
    return AttemptRecord(run, image, f"{run}-{image}-{attempt}", attempt, try_number, GEMINI, model, "p", outcome,
                         None if outcome == "ok" else outcome, 10.0, level, NOW,
                         cost_usd=0.039 if ok else (0.001 if outcome == "no_image" else 0.0), cache_hit=cache_hit)


def judged(run, image, attempt, accepted, level="high", model=MODEL):
    return VariationRecord(run, image, f"{run}-{image}-{attempt}", attempt, "style_change", accepted,
                           None if accepted else "overall_low", None, None, None, None, None, GEMINI, model, "p", 0,
                           level, NOW)


def seed_history(store: Store) -> None:
    """Run r1 at high: 10 attempts made, 6 accepted, 12 calls; noise the estimate must leave out."""
    calls, variations = [], []
    for a in range(8):  # 8 attempts answered at once; attempts 0-5 accepted, 6-7 rejected
        calls.append(call("r1", "img1", a, 1, "ok"))
        variations.append(judged("r1", "img1", a, a < 6))
    for a in (8, 9):  # 2 attempts whose first call failed and whose retry gave no image: no variation
        calls += [call("r1", "img2", a, 1, "server_error"), call("r1", "img2", a, 2, "no_image")]
    calls.append(call("r1", "img2", 10, 1, "cancelled"))  # never made: not an attempt
    calls.append(call("r2", "img3", 0, 1, "in_flight"))  # a live run's call: not yet on record
    for a in range(3):  # another level, and another model: other histories
        calls.append(call("r1", "img3", a, 1, "ok", level="medium"))
        variations.append(judged("r1", "img3", a, True, level="medium"))
        calls.append(call("r3", "img4", a, 1, "ok", model="gemini-3-pro-image"))
    for c in calls:
        store.write_attempt(c)
    for image in ("img1", "img3"):
        store.write_image_result(ImageRecord("r1", image, f"/in/{image}.png", 64, 64, "ok", None),
                                 [v for v in variations if v.image_id == image])


def test_the_store_gives_each_levels_history(tmp_path):
    store = Store(tmp_path).initialize()
    seed_history(store)
    by_level = store.attempt_history(GEMINI, MODEL)
    assert by_level == {
        "high": AttemptHistory(attempts=10, accepted=6, called=10, calls=12, cost_usd=pytest.approx(8 * 0.039 + 0.002),
                               level="high"),
        "medium": AttemptHistory(attempts=3, accepted=3, called=3, calls=3, cost_usd=pytest.approx(3 * 0.039),
                                 level="medium"),
    }
    assert store.attempt_history("local", "local-v1") == {}


def test_a_cache_hit_counts_toward_acceptance_not_toward_calls(tmp_path):
    store = Store(tmp_path).initialize()
    store.write_attempt(call("r1", "img1", 0, 0, "ok", cache_hit=True))
    store.write_image_result(ImageRecord("r1", "img1", "/in/img1.png", 64, 64, "ok", None),
                             [judged("r1", "img1", 0, True)])
    assert store.attempt_history(GEMINI, MODEL)["high"] == AttemptHistory(1, 1, 0, 0, 0.0, "high")


def photos(folder, n):
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_the_dry_run_plans_from_the_recorded_history_and_names_its_basis(tmp_path, capsys):
    from varflow.flows.cli import main

    store = Store(tmp_path / "home").initialize()
    seed_history(store)
    folder = photos(tmp_path / "photos", 3)
    args = ["run", str(folder), "--home", str(tmp_path / "home"), "--backend", "gemini", "--count", "2", "--dry-run"]
    assert main(args + ["--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    p, per_attempt = 6.5 / 11, 13 / 11  # (6 + 1/2) / (10 + 1) accepted, (12 + 1) / (10 + 1) calls per attempt
    assert plan["level"] == "high" and plan["history_attempts"] == 10
    assert plan["acceptance_rate"] == pytest.approx(p, abs=1e-4)
    assert plan["calls_per_attempt"] == pytest.approx(per_attempt, abs=1e-4)
    calls = 3 * expected_attempts(2, p, 2 * 3) * per_attempt  # high: 3 attempts per variation
    assert plan["calls_expected"] == pytest.approx(calls, abs=0.05)
    assert plan["cost_expected_usd"] == pytest.approx(calls * (8 * 0.039 + 0.002) / 12, rel=1e-4)
    assert plan["calls_worst_case"] == 3 * 2 * 3 * 5  # unchanged: count x attempts x tries
    assert plan["basis"] == "from 10 earlier attempts at level high"
    assert calls > 3 * 2  # more than images x count, the old estimate
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"expected {calls:.0f}: " in text and "basis        from 10 earlier attempts at level high" in text
    assert "(59% accepted) x 1.18 calls per attempt" in text


def test_the_history_of_real_gemini_runs_agrees_with_their_summaries(gemini_calls_store):
    """Two real runs against the fake server (conftest: a retried 500, a safety block, a text-only
    answer retried, and in the second run a cache hit): what the estimate reads is what they did."""
    first, second = gemini_calls_store["summaries"]
    by_level = Store(gemini_calls_store["home"]).attempt_history(GEMINI, MODEL)
    assert set(by_level) == {"low"}
    low = by_level["low"]
    assert low.calls == first["calls"] + second["calls"] == 9  # 8, then the blocked attempt again
    assert (low.attempts, low.called) == (8, 7)  # 3 images x 2, the 2 redone; one of those from the cache
    assert low.accepted == first["variations_accepted"] + second["variations_accepted"]
    assert low.cost_usd == pytest.approx(first["cost_usd"] + second["cost_usd"])
