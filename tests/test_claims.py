"""Claims' finished markers: how a run tells, from one file, that another run finished an image meanwhile."""

from __future__ import annotations

import os
import time

from varflow.runtime.claims import ImageClaims


def test_a_finished_image_leaves_a_marker_that_a_later_claim_sees(tmp_path):
    first, second = ImageClaims(tmp_path, "run-a"), ImageClaims(tmp_path, "run-b")
    since = time.time()
    assert first.claim("img") and not second.claim("img")
    first.release("img", finished_job="job-1")
    assert second.claim("img")
    assert second.finished_since("job-1", since)
    assert not second.finished_since("job-1", time.time() + 60)  # finished before that run started
    assert not second.finished_since("job-2", since)  # other parameters: not finished


def test_an_unfinished_image_leaves_no_marker_and_old_markers_are_pruned(tmp_path):
    claims = ImageClaims(tmp_path, "run-a")
    assert claims.claim("img")
    claims.release("img")
    assert not (tmp_path / "done").exists() or not any((tmp_path / "done").iterdir())
    assert claims.claim("img")
    claims.release("img", finished_job="old")
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(claims.done_path("old"), (week_ago, week_ago))
    claims.claim("img2")
    claims.release("img2", finished_job="new")
    assert claims.prune_done() == 1
    assert not claims.done_path("old").exists() and claims.done_path("new").exists()
