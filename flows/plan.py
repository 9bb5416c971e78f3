"""``varflow run --dry-run``: what a run would call and spend, computed without running anything."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from varflow.flows.parameters import RunParameters
from varflow.flows.resources import data_home
from varflow.storage import Store

from varflow.generation.backends import backend_class, model_name
from varflow.images.locations import address, folder_at
from varflow.processing.discovery import discover_images
from varflow.processing.estimate import CallEstimate, estimate_calls, history_for
from varflow.processing.outnames import held_stems
from varflow.processing.scan import COPY, DONE, PENDING, SAME_CONTENT, input_copies, scan_images, short_jobs
from varflow.quality.adaptive import WINDOW
from varflow.settings import QUALITY_LEVELS, level_settings


def plan_run(params: RunParameters) -> dict:
    """No flow run, no Prefect server, no API call and no key: the images are discovered and
    hashed, those an earlier run finished with the same parameters are left out (as the run
    would), and the calls are estimated from what the store recorded (varflow/processing/estimate.py):

    * expected = images to do x the attempts an image makes at the recorded acceptance rate of
      this backend, model and level (within its budget) x the recorded calls per attempt, at the
      recorded cost per call; with no history, a stated prior (``basis`` says which);
    * worst case = images to do x count x the level's max attempts per variation x (1 + retries).

    An image people's reviews left below count (``short_jobs``) is to do for its missing variations only,
    in both figures.

    Generations already in the variation cache would be free; the plan does not subtract them,
    so it errs high.
    """
    home = data_home(params)
    input_dir, output_dir = address(params.input_dir), address(params.output_dir)
    folder = folder_at(input_dir, ids_dir=home / "cache" / "objects")  # a bucket's: the hashes the runs keep
    backend = backend_class(params.backend)
    model = model_name(params.backend, params.model)
    store = Store(home).initialize() if (home / "tables").exists() else None
    finished = {} if (params.force or store is None) else store.finished_jobs()
    saved_level = store.quality_state(f"{params.backend}/{model}", window=WINDOW)[0] if store is not None else None
    level = level_settings(params.start_level or saved_level or "high")
    earlier_outputs = store.output_dirs_inside(input_dir) if store is not None else []
    paths = discover_images(input_dir, extensions=params.extensions, exclude=[output_dir, home, *earlier_outputs],
                            follow_links=params.follow_links, folder=folder if folder.remote else None)
    held = held_stems(store.accepted_by_source(output_dir), output_dir) if store is not None else None
    copies = {} if params.keep_copies else input_copies(paths, input_dir, follow_links=params.follow_links,
                                                        limits=params.settings().limits, finished=finished, held=held,
                                                        fingerprint={**params.job_fingerprint(), "model": model},
                                                        cache_dir=None if store is None else home / "cache" / "copies",
                                                        folder=folder)
    top_ups = {} if (params.force or store is None) else short_jobs(store.reviewed_short(), params.count)
    scanned = list(scan_images(paths, input_dir, finished=finished, copies=copies, follow_links=params.follow_links,
                               held=held, fingerprint={**params.job_fingerprint(), "model": model}, top_ups=top_ups,
                               folder=folder))
    found = [image.status for image in scanned]
    missing = [top_ups[i.job_key]["missing"] for i in scanned if i.status == PENDING and i.job_key in top_ups]
    todo, done, same = found.count(PENDING), found.count(DONE), found.count(SAME_CONTENT)
    retries = params.retries if backend.remote and not backend.can_batch else 0  # a batch answers once
    # The adaptive policy may move back up to high during the run: its attempts bound the worst case.
    max_attempts = max(QUALITY_LEVELS["high"].max_attempts_per_variation, level.max_attempts_per_variation) \
        if params.adaptive else level.max_attempts_per_variation
    history = history_for(level.name, store.attempt_history(params.backend, model) if store is not None else {})
    estimate = _estimate(history, params.count, todo - len(missing), missing, level, backend.estimate_cost(model))
    variations = (todo - len(missing)) * params.count + sum(missing)
    worst = variations * max_attempts * (1 + retries)
    return {
        "backend": params.backend, "model": model, "level": level.name, "images_found": len(paths),
        "images_to_do": todo, "images_already_done": done, "images_same_content": same,
        "images_copies": found.count(COPY), "images_topped_up": len(missing), "variations_to_do": variations,
        "count": params.count, "max_attempts_per_variation": max_attempts,
        "max_tries_per_attempt": 1 + retries, "calls_worst_case": worst,
        "max_cost_usd": params.max_cost_usd, "batch": backend.can_batch,
        **_expected(estimate, history.attempts, backend, model, worst),
    }


def _estimate(history, count: int, full: int, missing: list[int], level, price: float | None) -> CallEstimate:
    """``estimate_calls`` for ``full`` images of ``count`` variations and, summed, the top-ups (images
    people's reviews left short, asking for their ``missing`` ones); the rates are the history's either way."""
    groups = Counter({count: full}) + Counter(missing)
    parts = [estimate_calls(history, images=n, count=k, level=level.name, price=price,
                            budget_per_image=k * level.max_attempts_per_variation)
             for k, n in {count: full, **groups}.items()]
    if not missing:
        return parts[0]
    calls = sum(p.calls for p in parts)
    cost = None if any(p.cost_usd is None for p in parts) else round(sum(p.cost_usd for p in parts), 6)
    per_image = calls / parts[0].calls_per_attempt / (full + len(missing))
    return replace(parts[0], calls=calls, cost_usd=cost, attempts_per_image=per_image)


def _expected(estimate: CallEstimate, history_attempts: int, backend, model: str, worst: int) -> dict:
    """The plan's expected figures: calls, cost, and the rates and basis they come from."""
    per_call, per_call_sync = backend.estimate_cost(model), backend.synchronous_cost(model)
    cost = (lambda n, price=per_call: round(n * price, 6) if price is not None else None)
    # The synchronous price of the same calls: the expected cost scaled by the prices' ratio.
    sync = (round(estimate.cost_usd * per_call_sync / per_call, 6)
            if estimate.cost_usd is not None and per_call and per_call_sync is not None
            else cost(estimate.calls, per_call_sync))
    return {
        "calls_expected": round(estimate.calls, 1), "basis": estimate.basis, "history_attempts": history_attempts,
        "acceptance_rate": round(estimate.acceptance_rate, 4),
        "calls_per_attempt": round(estimate.calls_per_attempt, 4),
        "attempts_per_image": round(estimate.attempts_per_image, 3),
        "usd_per_call": per_call, "usd_per_call_expected": estimate.usd_per_call,
        "cost_expected_usd": estimate.cost_usd, "cost_worst_case_usd": cost(worst),
        "usd_per_call_synchronous": per_call_sync, "cost_expected_synchronous_usd": sync,
    }
