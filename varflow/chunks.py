"""How many images one task run takes, and whether each stage is a task run of its own.

A task run has a fixed cost (a few milliseconds on threads, about a tenth of a second when it
travels to another process) and the orchestrator's server keeps only so many task-run records per
flow run (docs/scale-out.md gives the measured figures). So:

* a small folder on threads gets one task run per image, with optimize and each generation call
  as task runs of their own (the UI shows every stage and call; Prefect retries and caches calls);
* a large folder, or tasks sent to other processes, gets chunks: one task run per chunk of images
  run one after another, each generation call made in the chunk's process
  (varflow/direct.py). Chunks are large enough that the task run's cost is small beside the work
  and few enough that the server records every one, and small enough that every worker gets
  several (the last chunks do not leave workers idle).

Core module: no Prefect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Task runs a flow run may send: well under the ~2,000 per flow run that a Prefect server was
# measured to keep (past ~5,000 it drops them; REFERENCE facts in docs/scale-out.md).
TASK_RUNS_PER_FLOW = 500
# Task runs an image costs when each stage is one: the image, optimize, and about two generation
# calls per wanted variation (retries and rejected attempts).
TASK_RUNS_PER_VARIATION = 2
TASK_RUNS_PER_IMAGE_BASE = 2
# The fewest images per chunk when a chunk travels to another process (bench/scale_out.py:
# the per-chunk cost against a small image's work).
MIN_REMOTE_CHUNK = 8
# Chunks each parallel slot should get at least, so the last ones balance out.
CHUNKS_PER_SLOT = 4


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


def plan_tasks(images: int, *, count: int, parallel: int, remote: bool, requested: int = 0) -> TaskPlan:
    """The task plan for a folder of ``images`` to do.

    ``parallel``: task runs that run at once; ``remote``: task runs travel to other processes;
    ``requested``: images per task run asked for by the user (0: chosen here).
    """
    if images < 0 or count < 1 or parallel < 1:
        raise ValueError(f"plan_tasks needs images >= 0, count >= 1, parallel >= 1 "
                         f"(got {images}, {count}, {parallel})")
    if requested:
        return TaskPlan(requested, stage_tasks=requested == 1 and not remote)
    if not remote and stage_task_runs(images, count=count) <= TASK_RUNS_PER_FLOW:
        return TaskPlan(1, stage_tasks=True)
    few_enough = math.ceil(images / TASK_RUNS_PER_FLOW)  # the server keeps every record
    balanced = max(1, math.ceil(images / (CHUNKS_PER_SLOT * parallel)))  # every slot gets several
    large_enough = MIN_REMOTE_CHUNK if remote else 1
    return TaskPlan(max(few_enough, min(large_enough, balanced), 1), stage_tasks=False)


def chunk_label(names: list[str]) -> str:
    """A chunk's task-run name: its first and last image, and how many."""
    if not names:
        return "(none)"
    if len(names) == 1:
        return names[0]
    return f"{names[0]} .. {names[-1]} ({len(names)})"
