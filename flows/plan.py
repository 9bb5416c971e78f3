"""``varflow run --dry-run``: what a run would call and spend, computed without running anything."""

from __future__ import annotations

from pathlib import Path

from flows.parameters import RunParameters
from flows.resources import data_home
from storage import Store
from varflow.adaptive import WINDOW
from varflow.discovery import discover_images
from varflow.generators import backend_class, model_name
from varflow.copies import copies_in_folder
from varflow.scan import COPY, DONE, SAME_CONTENT, TODO, scan_images
from varflow.settings import QUALITY_LEVELS, level_settings


def plan_run(params: RunParameters) -> dict:
    """No flow run, no Prefect server, no API call and no key: the images are discovered and
    hashed, those an earlier run finished with the same parameters are left out (as the run
    would), and the number of calls is bounded from the enhanced loop and the retry policy:

    * expected = images to do x count (every first attempt accepted, no retry);
    * worst case = images to do x count x the level's max attempts per variation x (1 + retries).

    Generations already in the variation cache would be free; the plan does not subtract them,
    so it errs high.
    """
    home = data_home(params)
    input_dir = Path(params.input_dir).expanduser().resolve()
    output_dir = Path(params.output_dir).expanduser().resolve()
    backend = backend_class(params.backend)
    model = model_name(params.backend, params.model)
    store = Store(home).initialize() if (home / "tables").exists() else None
    finished = {} if (params.force or store is None) else store.finished_jobs()
    saved_level = store.quality_state(f"{params.backend}/{model}", window=WINDOW)[0] if store is not None else None
    level = level_settings(params.start_level or saved_level or "high")
    earlier_outputs = store.output_dirs_inside(input_dir) if store is not None else []
    paths = discover_images(input_dir, extensions=params.extensions, exclude=[output_dir, home, *earlier_outputs])
    copies = {} if params.keep_copies else copies_in_folder(paths, limits=params.settings().limits)
    found = [image.status for image in scan_images(paths, input_dir, finished=finished, copies=copies,
                                                   fingerprint={**params.job_fingerprint(), "model": model})]
    todo, done, same = found.count(TODO), found.count(DONE), found.count(SAME_CONTENT)
    retries = params.retries if backend.remote and not backend.can_batch else 0  # a batch answers once
    # The adaptive policy may move back up to high during the run: its attempts bound the worst case.
    max_attempts = max(QUALITY_LEVELS["high"].max_attempts_per_variation, level.max_attempts_per_variation) \
        if params.adaptive else level.max_attempts_per_variation
    expected = todo * params.count
    worst = expected * max_attempts * (1 + retries)
    per_call = backend.estimate_cost(model)
    per_call_sync = backend.synchronous_cost(model)
    cost = (lambda n, price=per_call: round(n * price, 6) if price is not None else None)
    return {
        "backend": params.backend, "model": model, "level": level.name, "images_found": len(paths),
        "images_to_do": todo, "images_already_done": done, "images_same_content": same,
        "images_copies": found.count(COPY),
        "count": params.count, "max_attempts_per_variation": max_attempts,
        "max_tries_per_attempt": 1 + retries, "calls_expected": expected, "calls_worst_case": worst,
        "usd_per_call": per_call, "cost_expected_usd": cost(expected), "cost_worst_case_usd": cost(worst),
        "max_cost_usd": params.max_cost_usd, "batch": backend.can_batch,
        "usd_per_call_synchronous": per_call_sync, "cost_expected_synchronous_usd": cost(expected, per_call_sync),
    }
