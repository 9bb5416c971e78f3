"""What a run will probably call and spend, from what earlier runs recorded (the dry run's figures).

An image's loop (varflow/processing/pipeline.py) makes attempts until ``count`` are accepted or its budget of
``count x max attempts per variation`` is spent; each wave asks for exactly the variations still
missing, so the attempts an image makes are those of a sequence of independent tries stopped at
the ``count``-th success or at the budget: ``E[min(T, budget)]`` with ``T`` negative-binomial.
Each attempt costs its calls (a retried attempt makes several) and each call its price.

The two rates come from the store's history for the backend, model and level
(``Store.attempt_history``), smoothed by a stated prior so that no history, or very little, still
gives a figure: acceptance has Jeffreys' prior (``(accepted + 0.5) / (attempts + 1)``: one in two
with no history; the weaker of the usual uninformed priors, so a short history of a backend that
accepts most attempts stays close to its record), calls per attempt a prior of one call
(``(calls + 1) / (attempts + 1)``). With a hundred
attempts on record the priors move the rates by under one percent. The price of a call is the history's mean cost per
call, else the backend's
estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

PRIOR_ACCEPTED, PRIOR_REJECTED = 0.5, 0.5  # Jeffreys' prior on the acceptance rate (Beta(1/2, 1/2))
PRIOR_CALLS, PRIOR_ATTEMPTS = 1, 1  # one call per attempt until calls are on record


@dataclass(frozen=True)
class AttemptHistory:
    """What earlier runs recorded for one backend/model at one level (or at every level)."""

    attempts: int = 0  # variation attempts that were made (cancelled ones left out)
    accepted: int = 0  # of those, accepted
    called: int = 0  # attempts that made at least one call (not served from the cache)
    calls: int = 0  # calls they made, retries included
    cost_usd: float = 0.0  # what those calls cost (estimated)
    level: str | None = None  # the level it covers; None: every level of the backend/model


@dataclass(frozen=True)
class CallEstimate:
    acceptance_rate: float  # per attempt, prior included
    calls_per_attempt: float  # prior included
    usd_per_call: float | None  # the history's mean, else the backend's price; None: unknown
    attempts_per_image: float  # expected, budget included
    calls: float  # expected for the run
    cost_usd: float | None
    basis: str  # where the rates come from, in words


def expected_attempts(count: int, acceptance: float, budget: int) -> float:
    """``E[min(T, budget)]``, ``T`` the tries until ``count`` successes of probability ``acceptance``.

    ``E[min(T, m)] = sum over t < m of P(T > t)``, and ``T > t`` means fewer than ``count``
    successes in the first ``t`` tries (a binomial tail).
    """
    if count <= 0 or budget <= 0:
        return 0.0
    p = min(max(acceptance, 0.0), 1.0)
    total = 0.0
    for t in range(budget):
        total += sum(comb(t, k) * p ** k * (1 - p) ** (t - k) for k in range(min(count, t + 1)))
    return total


def rates(history: AttemptHistory) -> tuple[float, float]:
    """(acceptance per attempt, calls per attempt), each smoothed by its stated prior."""
    acceptance = (history.accepted + PRIOR_ACCEPTED) / (history.attempts + PRIOR_ACCEPTED + PRIOR_REJECTED)
    calls = (history.calls + PRIOR_CALLS) / (history.called + PRIOR_ATTEMPTS)
    return acceptance, calls


def history_for(level: str, by_level: dict[str, AttemptHistory]) -> AttemptHistory:
    """The level's own history; without one, every level's together (calls per attempt are the
    backend's, and any acceptance on record beats the prior); without any, none."""
    if by_level.get(level) and by_level[level].attempts:
        return by_level[level]
    rows = list(by_level.values())
    return AttemptHistory(attempts=sum(h.attempts for h in rows), accepted=sum(h.accepted for h in rows),
                          called=sum(h.called for h in rows), calls=sum(h.calls for h in rows),
                          cost_usd=sum(h.cost_usd for h in rows), level=None)


def basis_text(history: AttemptHistory, level: str) -> str:
    if history.attempts == 0:
        return (f"prior, no history at level {level}: 1 in 2 attempts accepted, 1 call per attempt "
                "(a guess: run once to replace it)")
    where = f"at level {history.level}" if history.level else f"at every level (none at level {level} yet)"
    plural = "attempt" if history.attempts == 1 else "attempts"
    return f"from {history.attempts} earlier {plural} {where}"


def estimate_calls(history: AttemptHistory, *, images: int, count: int, budget_per_image: int,
                   price: float | None, level: str) -> CallEstimate:
    """The run's expected calls and cost for ``images`` images of ``count`` variations each."""
    acceptance, per_attempt = rates(history)
    per_image = expected_attempts(count, acceptance, budget_per_image)
    calls = images * per_image * per_attempt
    usd_per_call = history.cost_usd / history.calls if history.calls else price
    cost = round(calls * usd_per_call, 6) if usd_per_call is not None else None
    return CallEstimate(acceptance_rate=acceptance, calls_per_attempt=per_attempt, usd_per_call=usd_per_call,
                        attempts_per_image=per_image, calls=calls, cost_usd=cost,
                        basis=basis_text(history, level))
