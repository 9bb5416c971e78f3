"""The task plan: per-image stage task runs only where they pay, chunks sized by the rules."""

from __future__ import annotations

import pytest

from varflow.processing.chunks import (
    FULL_CHUNK,
    PER_IMAGE_FOLDER,
    TASK_RUNS_PER_FLOW,
    TaskPlan,
    chunk_label,
    plan_tasks,
    stage_task_runs,
)


def plan(images, *, count=1, parallel=2, remote_runner=False, remote_backend=False, requested=0) -> TaskPlan:
    return plan_tasks(images, count=count, parallel=parallel, remote_runner=remote_runner,
                      remote_backend=remote_backend, requested=requested)


def test_a_paid_backend_on_a_small_folder_gets_a_task_run_per_image_and_per_call():
    assert plan(24, count=4, remote_backend=True) == TaskPlan(1, stage_tasks=True)
    assert stage_task_runs(50, count=4) == 500 == TASK_RUNS_PER_FLOW
    assert plan(50, count=4, remote_backend=True).stage_tasks
    assert not plan(51, count=4, remote_backend=True).stage_tasks  # one more image would pass the budget


def test_the_local_backend_and_dask_never_get_stage_tasks_and_a_small_folder_goes_image_by_image():
    assert plan(24, count=4) == TaskPlan(1, stage_tasks=False)  # the level adapts image by image
    assert plan(PER_IMAGE_FOLDER) == TaskPlan(1, stage_tasks=False)
    assert plan(PER_IMAGE_FOLDER + 4) == TaskPlan(13, stage_tasks=False)  # 104 / (4 chunks x 2 slots)
    assert plan(24, count=4, remote_backend=True, remote_runner=True) == TaskPlan(3, stage_tasks=False)
    assert plan(3, remote_runner=True) == TaskPlan(1, stage_tasks=False)


@pytest.mark.parametrize("images, parallel, expected", [
    (2000, 2, FULL_CHUNK),       # full chunks: 125 task runs
    (10000, 2, 20),              # few enough for the server: 500 task runs
    (100000, 8, 200),
    (64, 2, 8),                  # every slot gets 4 chunks
    (2000, 64, 8),               # a big cluster: smaller chunks so every worker has work
])
def test_chunks_are_full_few_enough_for_the_server_and_balanced(images, parallel, expected):
    p = plan(images, parallel=parallel, remote_runner=True)
    assert p.images_per_task == expected
    assert -(-images // p.images_per_task) <= TASK_RUNS_PER_FLOW


def test_a_requested_size_wins_and_only_a_paid_backend_in_process_gets_stage_tasks_at_one():
    assert plan(10000, requested=3) == TaskPlan(3, stage_tasks=False)
    assert plan(10, requested=1) == TaskPlan(1, stage_tasks=False)
    assert plan(10, requested=1, remote_backend=True) == TaskPlan(1, stage_tasks=True)
    assert plan(10, requested=1, remote_backend=True, remote_runner=True) == TaskPlan(1, stage_tasks=False)


def test_bad_arguments_say_which():
    with pytest.raises(ValueError, match="parallel >= 1"):
        plan(10, parallel=0)


def test_chunk_labels_name_the_first_and_last_image():
    assert chunk_label(["a.png"]) == "a.png"
    assert chunk_label(["a.png", "b.png", "c.png"]) == "a.png .. c.png (3)"
    assert TaskPlan(4, False).describe() == "chunks of 4 images per task run"
    assert TaskPlan(1, True).describe().startswith("one task run per image")
