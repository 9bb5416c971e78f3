"""The per-image pipeline without Prefect: waves, dedup, judging, files, records, caching, stops.

A scripted backend (colour tints of the source, so every variation is a distinct picture) and
scripted judges drive ``ImagePipeline`` through plain calls of ``varflow.runtime.calls.run_attempt``;
records go to an in-memory sink.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import load_photo
from PIL import Image

from varflow.generation.backends import Backend, GeneratedVariation, GenerationError
from varflow.generation.cache import GenerationCache
from varflow.images.imageio import optimize_image
from varflow.processing.pipeline import ImageJob, ImagePipeline, JobSpec
from varflow.runtime.calls import GenerationFailed, run_attempt
from varflow.runtime.resources import CallPolicy, ResourceSpec, RunControl, RunResources
from varflow.settings import QUALITY_LEVELS

TINTS = [(1.35, 1.0, 0.7), (0.7, 1.0, 1.35), (1.0, 1.3, 0.7), (0.75, 0.85, 1.3), (1.2, 0.8, 1.2), (0.9, 1.2, 1.1)]
MEDIUM = QUALITY_LEVELS["medium"]  # 2 attempts per variation


class TintBackend(Backend):
    """Writes the source tinted by the attempt's colour (or always the first, with ``same``);
    ``script`` gives an outcome per call (``"ok"`` or a GenerationError outcome)."""

    name = "tint"
    default_model = "tint-1"
    price = 0.0

    def __init__(self, *, same: bool = False, script: list[str] | None = None, model: str = "tint-1"):
        self.model = model
        self.same = same
        self.script = list(script or [])
        self.calls: list = []

    @classmethod
    def estimate_cost(cls, model, usage=None):
        return cls.price

    def generate(self, request):
        self.calls.append(request)
        outcome = self.script.pop(0) if self.script else "ok"
        if outcome != "ok":
            raise GenerationError(f"scripted {outcome}", outcome=outcome, retryable=outcome == "server_error")
        rgb = np.asarray(Image.open(request.source_path).convert("RGB"), dtype=np.float64)
        tint = TINTS[0 if self.same else request.attempt % len(TINTS)]
        Image.fromarray(np.clip(rgb * np.array(tint), 0, 255).astype(np.uint8)).save(request.output_path)
        return GeneratedVariation(request.output_path, request.prompt, self.model, rgb.shape[1], rgb.shape[0])


class PaidTint(TintBackend):
    remote = True
    price = 0.5


@dataclass
class Sink:
    attempts: list = field(default_factory=list)
    images: list = field(default_factory=list)
    variations: list = field(default_factory=list)

    def write_attempt(self, attempt):
        # as the store does: a call's final row replaces its write-ahead (in_flight) row
        self.attempts = [a for a in self.attempts if a.attempt_key != attempt.attempt_key] + [attempt]

    def write_image_result(self, image, variations=(), *, key=None):
        self.images.append(image)
        self.variations.extend(variations)


@dataclass
class Verdict:
    reasons: tuple = ()

    @property
    def reason_text(self):
        return ";".join(self.reasons) or None


@dataclass
class Assessment:
    verdict: Verdict
    profile: str = "scripted"

    def scores(self):
        return {"similarity": 0.5, "overall_quality": 0.9}


class ScriptedJudge:
    """Accepts, or rejects with ``reasons``; counts what it saw and kept."""

    def __init__(self, reasons: tuple = ()):
        self.reasons = reasons
        self.assessed = 0
        self.kept = 0

    def assess(self, rgb, *, grey=None):
        assert rgb.ndim == 3 and grey is not None
        self.assessed += 1
        return Assessment(Verdict(self.reasons))

    def accept(self, assessment):
        self.kept += 1


def plain_generate(res):
    """The pipeline's Generate without an orchestrator: one try per attempt, in order."""
    def generate(attempts, *, refresh):
        out = []
        for a in attempts:
            try:
                out.append((run_attempt(a.request, a.context, res), False))
            except GenerationFailed as exc:
                out.append((exc.result, False))
        return out
    return generate


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "coffee.png"
    Image.fromarray(load_photo("coffee.png")).resize((150, 100)).save(path)
    return path


def resources(tmp_path, backend, *, policy=CallPolicy(), sink=None, run_id="run-1") -> RunResources:
    spec = ResourceSpec(run_id, str(tmp_path / "home"), backend.name, policy=policy)
    return RunResources(spec, records=sink or Sink(), backend=backend,
                        cache=GenerationCache(tmp_path / "home" / "cache", max_bytes=2**30),
                        control=RunControl(run_id, policy.max_cost_usd, policy.concurrency))


def run_image(tmp_path, source, res, *, count=2, judge=None, force=False, generate=None, image_id="img"):
    judge = judge or ScriptedJudge()
    pipeline = ImagePipeline(res, generate or plain_generate(res), work_root=tmp_path / "work",
                             judge_for=lambda path, level, settings: judge)
    spec = JobSpec(count=count, variation_type="style_change", prompt="p", seed=7, backend=res.backend.name,
                   model=res.backend.model, backend_options=(), output_dir=str(tmp_path / "out"), name_tag="tag00000",
                   force=force)
    job = ImageJob(spec, str(source), image_id * 8, "coffee", job_key=f"key-{image_id}", level=MEDIUM)
    return pipeline.run(job), judge


def test_accepted_variations_fill_the_count_in_one_wave(tmp_path, source):
    backend = TintBackend()
    res = resources(tmp_path, backend)
    outcome, judge = run_image(tmp_path, source, res, count=3)
    assert (outcome.status, outcome.accepted, outcome.attempts) == ("ok", 3, 3)
    assert len(backend.calls) == 3 and judge.kept == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"coffee-tag00000-v0{i}.png" for i in (1, 2, 3)]
    sink = res.records
    assert [a.outcome for a in sink.attempts] == ["ok"] * 3 and not any(a.cache_hit for a in sink.attempts)
    (image,) = sink.images
    assert image.job_key == "key-img" and image.accepted == 3 and image.success_rate == 1.0
    assert all(v.accepted and v.scores["similarity"] == 0.5 for v in sink.variations)
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_rejections_spend_the_attempt_budget_in_waves(tmp_path, source):
    backend = TintBackend()
    res = resources(tmp_path, backend)
    outcome, judge = run_image(tmp_path, source, res, count=2, judge=ScriptedJudge(("aesthetic_low",)))
    # medium: 2 attempts per variation, so 4 attempts: a wave of 2, then another of 2
    assert [r.attempt for r in backend.calls] == [0, 1, 2, 3]
    assert (outcome.accepted, outcome.attempts, outcome.rejected) == (0, 4, {"aesthetic_low": 4})
    assert not (tmp_path / "out").exists()
    # every attempt was judged and none failed: the image is finished
    assert res.records.images[0].job_key == "key-img"


def test_a_duplicate_is_rejected_without_being_scored(tmp_path, source):
    res = resources(tmp_path, TintBackend(same=True))
    outcome, judge = run_image(tmp_path, source, res, count=2)
    assert outcome.accepted == 1 and outcome.duplicates == 3 and outcome.rejected == {"duplicate": 3}
    assert judge.assessed == 1  # duplicates are never scored
    dups = [v for v in res.records.variations if v.reject_reason == "duplicate"]
    assert len(dups) == 3 and all(v.duplicate_of and v.scores == {} and v.profile is None for v in dups)


def test_a_second_run_pays_nothing_and_records_cache_hits(tmp_path, source):
    first = TintBackend()
    run_image(tmp_path, source, resources(tmp_path, first), count=2)
    again = TintBackend()
    res = resources(tmp_path, again, run_id="run-2")
    outcome, _ = run_image(tmp_path, source, res, count=2)
    assert again.calls == [] and outcome.accepted == 2 and outcome.cache_hits == 2
    assert [(a.cache_hit, a.cost_usd, a.try_number) for a in res.records.attempts] == [(True, 0.0, 0)] * 2
    forced = TintBackend()
    outcome, _ = run_image(tmp_path, source, resources(tmp_path, forced, run_id="run-3"), count=2, force=True)
    assert len(forced.calls) == 2 and outcome.cache_hits == 0


def test_a_result_served_from_an_evicted_cache_is_generated_again(tmp_path, source):
    backend = TintBackend()
    res = resources(tmp_path, backend)
    plain = plain_generate(res)
    seen = []

    def orchestrator(attempts, *, refresh):
        seen.append((len(attempts), refresh, [a.context.force for a in attempts]))
        if refresh:
            return plain(attempts, refresh=refresh)
        results = plain(attempts, refresh=refresh)
        for a in attempts:  # the orchestrator serves a stored result; its file is gone since
            res.cache.served(a.context.cache_key).path.unlink()
        return [(r, True) for r, _ in results]

    outcome, _ = run_image(tmp_path, source, res, count=1, generate=orchestrator)
    assert seen == [(1, False, [False]), (1, True, [True])]
    assert outcome.accepted == 1 and outcome.cache_hits == 0 and len(backend.calls) == 2


def test_a_fatal_answer_stops_the_run_and_the_image_is_not_finished(tmp_path, source):
    res = resources(tmp_path, TintBackend(script=["auth"]))
    outcome, _ = run_image(tmp_path, source, res, count=2)
    assert res.control.stopped and res.control.stop_outcome == "auth"
    assert outcome.fatal_outcome == "auth" and outcome.status == "error" and "not finished" in outcome.error
    # the wave's second attempt never started: recorded as cancelled, not counted as an attempt
    assert [a.outcome for a in res.records.attempts] == ["auth", "cancelled"] and outcome.attempts == 1
    assert res.records.images[0].job_key is None
    # the next image makes no call at all and is skipped, to be redone by the next run
    later, _ = run_image(tmp_path, source, res, count=2, image_id="two")
    assert later.status == "skipped" and later.attempts == 0 and len(res.backend.calls) == 1


def test_failed_calls_leave_the_image_unfinished(tmp_path, source):
    res = resources(tmp_path, TintBackend(script=["server_error", "blocked"]))
    outcome, _ = run_image(tmp_path, source, res, count=2)
    assert outcome.status == "ok" and outcome.generation_failures == 2 and outcome.accepted == 2
    assert [a.outcome for a in res.records.attempts] == ["server_error", "blocked", "ok", "ok"]
    assert res.records.images[0].job_key is not None  # all accepted: finished despite the failures
    res = resources(tmp_path, TintBackend(script=["blocked"] * 4), run_id="run-2")
    outcome, _ = run_image(tmp_path, source, res, count=2, image_id="two")
    assert outcome.accepted == 0 and res.records.images[0].job_key is None  # redone by the next run


def test_the_budget_cap_stops_calls_before_they_start(tmp_path, source):
    backend = PaidTint()
    res = resources(tmp_path, backend, policy=CallPolicy(max_cost_usd=1.0))
    outcome, _ = run_image(tmp_path, source, res, count=3)
    assert len(backend.calls) == 2 and res.control.spent_usd == pytest.approx(1.0)
    assert res.control.stop_outcome == "budget"
    assert [a.outcome for a in res.records.attempts] == ["ok", "ok", "cancelled"]
    assert outcome.attempts == 2 and outcome.stopped and res.records.images[0].job_key is None


def test_an_unreadable_source_is_an_error_without_any_call(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    res = resources(tmp_path, TintBackend())
    outcome, _ = run_image(tmp_path, bad, res)
    assert outcome.status == "error" and "bad.png" in outcome.error and res.backend.calls == []
    assert res.records.images[0].status == "error"


def test_the_default_judge_records_both_profiles_and_the_calibrated_one_decides(tmp_path, source):
    res = resources(tmp_path, TintBackend())
    pipeline = ImagePipeline(res, plain_generate(res), work_root=tmp_path / "work", optimize=optimize_image)
    spec = JobSpec(count=1, variation_type="style_change", prompt="", seed=0, backend="tint", model="tint-1",
                   backend_options=(), output_dir=str(tmp_path / "out"), name_tag="t")
    outcome = pipeline.run(ImageJob(spec, str(source), "a" * 64, "coffee", "k", MEDIUM))
    (v, *_) = res.records.variations
    # a tint keeps the structure: the seed's grey SSIM calls it a copy, the calibrated profile sees
    # the colour change; the calibrated one decides
    assert v.profile == "calibrated" and v.scores["seed_similarity"] > 0.9
    assert v.scores["similarity"] < 0.9 and v.scores["colour_change"] > 5
    assert "similarity_high" not in (v.reject_reason or "") and outcome.accepted == int(v.accepted)


BUILT: list = []


def rebuild(spec: ResourceSpec) -> RunResources:
    BUILT.append(spec)
    return RunResources(spec, records=Sink(), backend=TintBackend(), control=RunControl(spec.run_id),
                        cache=GenerationCache(Path(spec.home) / "cache", max_bytes=2**20), rebuild=rebuild)


def test_resources_travel_to_another_process_as_their_spec(tmp_path):
    BUILT.clear()
    res = rebuild(ResourceSpec("r", str(tmp_path), "tint", api_key_secret="block-name"))
    clone = pickle.loads(pickle.dumps(res))
    assert clone is not res and clone.spec == res.spec and [res.spec, res.spec] == BUILT
    with pytest.raises(TypeError, match="no builder"):
        pickle.dumps(RunResources(res.spec, records=Sink(), backend=TintBackend(), control=RunControl("r"),
                                  cache=res.cache))
