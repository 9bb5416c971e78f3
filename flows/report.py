"""The run summary: printed by the CLI, published as a Prefect artifact, returned by the flow."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from statistics import fmean

from varflow.kinds import ImageStatus
from varflow.safety.escaping import for_log, for_markdown

SCORE_KEYS = ("similarity", "diversity", "aesthetic", "object_integrity", "overall_quality")
# A run that accepted under this share of the variations it asked for is flagged in its report,
# its log and its end-of-run event (an automation can notify on it: docs/operating.md).
LOW_ACCEPTANCE_SHARE = 0.2


def image_row(outcome, seconds: float) -> dict:
    """One image's line of the run's table artifact and report."""
    rejected = outcome.attempts - outcome.accepted - outcome.generation_failures
    return {
        "image": Path(outcome.path).name, "status": outcome.status, "level": outcome.quality_level or "",
        "accepted": outcome.accepted, "attempts": outcome.attempts, "rejected": rejected,
        "why rejected": ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(
            outcome.rejected.items(), key=lambda kv: -kv[1])),
        "generation failures": outcome.generation_failures, "cache hits": outcome.cache_hits,
        "seconds": round(seconds, 1), "note": outcome.error or outcome.stopped or "",
    }


def image_line(row: dict) -> str:
    """The log line of a finished image: 'astronaut.png: 4 accepted of 6 attempts, 2 below level threshold, 3.1 s'."""
    if row["status"] != ImageStatus.OK:
        return f"{row['image']}: {row['status']}" + (f" ({row['note']})" if row["note"] else "")
    parts = [f"{row['image']}: {row['accepted']} accepted of {row['attempts']} "
             f"attempt{'' if row['attempts'] == 1 else 's'}"]
    if row["why rejected"]:
        parts.append(row["why rejected"])
    if row["generation failures"]:
        parts.append(f"{row['generation failures']} without an image")
    parts.append(f"{row['seconds']:.1f} s")
    return ", ".join(parts)


@dataclass
class RunSummary:
    run_id: str
    status: str
    input_dir: str
    output_dir: str
    home: str
    duckdb_path: str
    backend: str
    model: str
    images_total: int = 0
    images_ok: int = 0
    images_error: int = 0
    images_skipped: int = 0
    variations_requested: int = 0
    images_topped_up: int = 0  # images people's reviews left below count, asked only for the missing ones
    variations_accepted: int = 0
    variations_rejected: int = 0
    duplicates: int = 0
    generation_failures: int = 0
    attempts: int = 0
    cache_hits: int = 0
    calls: int = 0  # generation calls made, retries included (an attempt may take several)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    mean_scores: dict[str, float | None] = field(default_factory=dict)
    mean_stage_ms: dict[str, float] = field(default_factory=dict)
    final_level: str = ""
    level_changes: int = 0
    wall_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    message: str | None = None
    gallery_path: str | None = None  # the run's HTML gallery (flows/gallery.py)
    cost_usd: float = 0.0  # estimated spend of the run's calls
    execution: int = 1  # which execution of the flow run this summary is (a retried run has several)
    images: list[dict] = field(default_factory=list)  # image_row of each image, in finishing order
    level_history: list[str] = field(default_factory=list)  # "high -> medium (reason)"
    # Set as the flow returns (FolderRun.close): why the run stopped, how many task runs, the batch jobs' answers.
    stop_outcome: str | None = None
    task_runs: int = 0
    batch: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, summary: dict) -> RunSummary:
        """The summary the flow returns (a dict, as Prefect records it) as this class; the derived
        values (``acceptance_rate``, ``warning``) are computed again."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in summary.items() if k in names})

    @property
    def accepted(self) -> int:
        """Variations accepted (``variations_accepted``): the figure a caller looks at first."""
        return self.variations_accepted

    @property
    def warning(self) -> str | None:
        """Why a run that asked for variations should be looked at, or None."""
        if not self.variations_requested:
            return None
        if self.variations_accepted == 0:
            return f"accepted nothing of {self.variations_requested} variations asked for ({self.attempts} attempts)"
        if self.variations_accepted < LOW_ACCEPTANCE_SHARE * self.variations_requested:
            return (f"accepted only {self.variations_accepted} of {self.variations_requested} variations asked for "
                    f"(under {LOW_ACCEPTANCE_SHARE:.0%})")
        return None

    @property
    def acceptance_rate(self) -> float | None:
        return self.variations_accepted / self.attempts if self.attempts else None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["acceptance_rate"] = self.acceptance_rate
        d["warning"] = self.warning
        return d

    to_dict = as_dict  # the name pandas and the Python API's readers expect; `varflow run --json` prints it

    @classmethod
    def from_outcomes(cls, outcomes, **head) -> RunSummary:
        s = cls(**head)
        reasons: Counter = Counter()
        stage: dict[str, list[float]] = {}
        scores: dict[str, list[float]] = {k: [] for k in SCORE_KEYS}
        for o in outcomes:
            s.images_total += 1
            if o.status == ImageStatus.OK:
                s.images_ok += 1
                s.variations_requested += o.requested
                s.images_topped_up += o.top_up
            elif o.status == ImageStatus.SKIPPED:
                s.images_skipped += 1
            else:
                s.images_error += 1
                if o.error:
                    s.errors.append(o.error)
            s.variations_accepted += o.accepted
            s.attempts += o.attempts
            s.duplicates += o.duplicates
            s.generation_failures += o.generation_failures
            s.cache_hits += o.cache_hits
            reasons.update(o.rejected)
            for k, v in o.stage_ms.items():
                stage.setdefault(k, []).append(v)
            for sc in o.accepted_scores:
                for k in SCORE_KEYS:
                    if sc.get(k) is not None:
                        scores[k].append(sc[k])
        s.variations_rejected = s.attempts - s.variations_accepted - s.generation_failures
        s.rejected_by_reason = dict(reasons.most_common())
        s.mean_scores = {k: (fmean(v) if v else None) for k, v in scores.items()}
        s.mean_stage_ms = {k: fmean(v) for k, v in sorted(stage.items())}
        return s

    def render_text(self) -> str:
        rate = f"{self.acceptance_rate:.0%}" if self.acceptance_rate is not None else "n/a"
        lines = [
            f"varflow run {self.run_id}: {self.status}",
            f"  images       {self.images_total} found: {self.images_ok} ok, {self.images_error} error, "
            f"{self.images_skipped} skipped",
            f"  variations   {self.variations_accepted} accepted of {self.variations_requested} requested; "
            f"{self.attempts} attempts ({rate} accepted), {self.variations_rejected} rejected, "
            f"{self.duplicates} duplicates, {self.generation_failures} generation failures",
            f"  calls        {self.calls} generation calls (retries included) for {self.attempts - self.cache_hits} "
            f"attempts, {self.cache_hits} cache hits (no call)",
        ]
        if self.images_topped_up:
            lines.append(f"  topped up    {self.top_up_text()}")
        if self.rejected_by_reason:
            lines.append("  rejected by  " + ", ".join(f"{k} {v}" for k, v in self.rejected_by_reason.items()))
        ms = {k: v for k, v in self.mean_scores.items() if v is not None}
        if ms:
            lines.append("  mean scores  " + ", ".join(f"{k} {v:.3f}" for k, v in ms.items()) + " (accepted)")
        if self.mean_stage_ms:
            lines.append("  ms per image " + ", ".join(f"{k} {v:.0f}" for k, v in self.mean_stage_ms.items()))
        lines.append(f"  level        ends at {self.final_level} ({self.level_changes} changes)")
        lines.append(f"  wall time    {self.wall_seconds:.1f} s")
        lines.append(f"  output       {for_log(self.output_dir)}")
        lines.append(f"  records      {for_log(self.duckdb_path)} (tables runs, images, variations, attempts, "
                     f"quality_level_changes)")
        if self.gallery_path:
            lines.append(f"  gallery      {for_log(self.gallery_path)} (open it in a browser)")
        for e in self.errors[:10]:
            lines.append(f"  error        {for_log(e)}")
        if len(self.errors) > 10:
            lines.append(f"  ...and {len(self.errors) - 10} more errors (SELECT path, error FROM images WHERE "
                         f"status = 'error')")
        if self.message:
            lines.append(f"  note         {for_log(self.message)}")
        if self.warning:
            lines.append(f"  warning      this run {self.warning}")
        return "\n".join(lines)

    def top_up_text(self) -> str:
        """'2 images reviewed below count (their missing variations only)'."""
        n = self.images_topped_up
        return (f"{n} image{'' if n == 1 else 's'} people's reviews left below count "
                "(only the missing variations asked for; what people kept or rejected stays as it is)")

    def render_markdown(self) -> str:
        rate = f"{self.acceptance_rate:.0%}" if self.acceptance_rate is not None else "n/a"
        rows = [
            ("status", self.status), ("backend / model", f"{for_markdown(self.backend)} / {for_markdown(self.model)}"),
            ("images",
             f"{self.images_ok} ok, {self.images_error} error, {self.images_skipped} skipped of {self.images_total}"),
            ("variations accepted", f"{self.variations_accepted} of {self.variations_requested} requested"),
            ("attempts", f"{self.attempts} ({rate} accepted)"),
            ("generation calls (retries included) / attempts that called / cache hits",
             f"{self.calls} / {self.attempts - self.cache_hits} / {self.cache_hits}"),
            ("duplicates", str(self.duplicates)), ("generation failures", str(self.generation_failures)),
            ("final quality level", f"{self.final_level} ({self.level_changes} changes)"),
            ("estimated cost", f"${self.cost_usd:.4f} ({self.calls} calls)"),
            ("wall time", f"{self.wall_seconds:.1f} s"), ("records", for_markdown(self.duckdb_path)),
        ]
        if self.images_topped_up:
            rows.insert(4, ("topped up", self.top_up_text()))
        if self.gallery_path:  # as_uri percent-encodes every character Markdown would read
            rows.append(("gallery",
                         f"[{for_markdown(Path(self.gallery_path).name)}]({Path(self.gallery_path).as_uri()}) "
                                    f"({for_markdown(self.gallery_path)})"))
        if self.message:
            rows.insert(1, ("note", for_markdown(self.message)))
        md = [f"# varflow run `{self.run_id}`", ""]
        if self.warning:
            md += [f"> **Warning:** this run {self.warning}. Look at the rejections below and the gallery.", ""]
        md += ["| | |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in rows]
        if self.images:
            cols = ("image", "status", "level", "accepted", "attempts", "why rejected", "generation failures",
                    "seconds", "note")
            md += ["", "## Images", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            md += ["| " + " | ".join(for_markdown(r[c]) for c in cols) + " |" for r in self.images]
        if self.level_history:
            md += ["", "## Quality level changes", ""] + [f"- {for_markdown(h)}" for h in self.level_history]
        if self.rejected_by_reason:
            md += ["", "## Rejections", "", "| reason | count |", "|---|---|"]
            md += [f"| {for_markdown(k)} | {v} |" for k, v in self.rejected_by_reason.items()]
        ms = {k: v for k, v in self.mean_scores.items() if v is not None}
        if ms:
            md += ["", "## Mean scores of accepted variations", "", "| metric | mean |", "|---|---|"]
            md += [f"| {k} | {v:.3f} |" for k, v in ms.items()]
        if self.errors:
            md += ["", "## Errors", ""] + [f"- {for_markdown(e)}" for e in self.errors[:50]]
        return "\n".join(md)
