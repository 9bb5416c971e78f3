"""How many images one task run takes, and whether each stage is a task run of its own.

A task run has a fixed cost in the flow's process and on the orchestrator's server, and the server
keeps only so many task-run records per flow run (docs/scale-out.md gives the measured figures:
on small photos, a task run per stage doubled the time per image). So:

* a paid (remote) backend on a small folder in one process gets one task run per image, with
  optimize and each generation call as task runs of their own: a call takes seconds and costs
  money, and the UI shows each one with Prefect's retries and cache;
* everything else gets chunks: one task run per chunk of images, each generation call made in the
  chunk's process (varflow/processing/direct.py). Chunks are large enough that the task run's cost is small
  beside the work, few enough that the server records every one, and small enough that every
  parallel slot gets several (the last chunks do not leave workers idle).

Core module: no Prefect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Task runs a flow run may send: well under the ~2,000 per flow run that a Prefect server was
# measured to keep (past ~5,000 it drops them; docs/scale-out.md).
TASK_RUNS_PER_FLOW = 500
# Task runs an image costs when each stage is one: the image, optimize, and about two generation
# calls per wanted variation (retries and rejected attempts).
TASK_RUNS_PER_VARIATION = 2
TASK_RUNS_PER_IMAGE_BASE = 2
# The most images a chunk needs for its task run's cost to be small beside its work
# (bench/scale_out.py measures the cost per chunk); smaller folders get smaller chunks.
FULL_CHUNK = 16
# Chunks each parallel slot should get at least, so the last ones balance out.
CHUNKS_PER_SLOT = 4
# A folder up to this size in one process gets a task run per image: the quality level then
# adapts image by image, as the seed's rule says (a chunk's images share the level it started at).
PER_IMAGE_FOLDER = 100


@dataclass(frozen=True)
class TaskPlan:
    """``images_per_task``: images in one task run. ``stage_tasks``: optimize and every
    generation call are task runs of their own (only with one image per task run, in-process)."""

    images_per_task: int
    stage_tasks: bool

    def describe(self) -> str:
        if self.stage_tasks:
            return "one task run per image, with a task run per stage and per generation call"
        return f"chunks of {self.images_per_task} image{'s' if self.images_per_task != 1 else ''} per task run"


def stage_task_runs(images: int, *, count: int) -> int:
    """Task runs a folder of ``images`` costs with one per image and per stage."""
    return images * (TASK_RUNS_PER_IMAGE_BASE + TASK_RUNS_PER_VARIATION * count)


def plan_tasks(images: int, *, count: int, parallel: int, remote_runner: bool, remote_backend: bool,
               requested: int = 0) -> TaskPlan:
    """The task plan for a folder of ``images`` to do.

    ``parallel``: task runs that run at once; ``remote_runner``: task runs travel to other
    processes; ``remote_backend``: a generation call is a paid request over the network;
    ``requested``: images per task run asked for by the user (0: chosen here).
    """
    if images < 0 or count < 1 or parallel < 1 or requested < 0:
        raise ValueError(f"plan_tasks needs images >= 0, count >= 1, parallel >= 1, requested >= 0 "
                         f"(got {images}, {count}, {parallel}, {requested})")
    stages_worth_it = remote_backend and not remote_runner
    if requested:
        return TaskPlan(requested, stage_tasks=requested == 1 and stages_worth_it)
    if stages_worth_it and stage_task_runs(images, count=count) <= TASK_RUNS_PER_FLOW:
        return TaskPlan(1, stage_tasks=True)
    if not remote_runner and images <= PER_IMAGE_FOLDER:
        return TaskPlan(1, stage_tasks=False)
    few_enough = math.ceil(images / TASK_RUNS_PER_FLOW)  # the server keeps every record
    balanced = max(1, math.ceil(images / (CHUNKS_PER_SLOT * parallel)))  # every slot gets several
    return TaskPlan(max(few_enough, min(FULL_CHUNK, balanced)), stage_tasks=False)


def chunk_label(names: list[str]) -> str:
    """A chunk's task-run name: its first and last image, and how many."""
    if not names:
        return "(none)"
    if len(names) == 1:
        return names[0]
    return f"{names[0]} .. {names[-1]} ({len(names)})"
