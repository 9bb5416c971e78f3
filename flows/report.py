"""The run summary: printed by the CLI, published as a Prefect artifact, returned by the flow."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean

SCORE_KEYS = ("similarity", "diversity", "aesthetic", "object_integrity", "overall_quality")


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

    @property
    def acceptance_rate(self) -> float | None:
        return self.variations_accepted / self.attempts if self.attempts else None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["acceptance_rate"] = self.acceptance_rate
        return d

    @classmethod
    def from_outcomes(cls, outcomes, **head) -> "RunSummary":
        s = cls(**head)
        reasons: Counter = Counter()
        stage: dict[str, list[float]] = {}
        scores: dict[str, list[float]] = {k: [] for k in SCORE_KEYS}
        for o in outcomes:
            s.images_total += 1
            if o.status == "ok":
                s.images_ok += 1
            elif o.status == "skipped":
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
            f"  images       {self.images_total} found: {self.images_ok} ok, {self.images_error} error, {self.images_skipped} skipped",
            f"  variations   {self.variations_accepted} accepted of {self.variations_requested} requested; "
            f"{self.attempts} attempts ({rate} accepted), {self.variations_rejected} rejected, "
            f"{self.duplicates} duplicates, {self.generation_failures} generation failures",
            f"  calls        {self.calls} generation calls (retries included) for {self.attempts - self.cache_hits} "
            f"attempts, {self.cache_hits} cache hits (no call)",
        ]
        if self.rejected_by_reason:
            lines.append("  rejected by  " + ", ".join(f"{k} {v}" for k, v in self.rejected_by_reason.items()))
        ms = {k: v for k, v in self.mean_scores.items() if v is not None}
        if ms:
            lines.append("  mean scores  " + ", ".join(f"{k} {v:.3f}" for k, v in ms.items()) + " (accepted)")
        if self.mean_stage_ms:
            lines.append("  ms per image " + ", ".join(f"{k} {v:.0f}" for k, v in self.mean_stage_ms.items()))
        lines.append(f"  level        ends at {self.final_level} ({self.level_changes} changes)")
        lines.append(f"  wall time    {self.wall_seconds:.1f} s")
        lines.append(f"  output       {self.output_dir}")
        lines.append(f"  records      {self.duckdb_path} (tables runs, images, variations, attempts, quality_level_changes)")
        if self.gallery_path:
            lines.append(f"  gallery      {self.gallery_path} (open it in a browser)")
        for e in self.errors[:10]:
            lines.append(f"  error        {e}")
        if len(self.errors) > 10:
            lines.append(f"  ...and {len(self.errors) - 10} more errors (SELECT path, error FROM images WHERE status = 'error')")
        if self.message:
            lines.append(f"  note         {self.message}")
        return "\n".join(lines)

    def render_markdown(self) -> str:
        rate = f"{self.acceptance_rate:.0%}" if self.acceptance_rate is not None else "n/a"
        rows = [
            ("status", self.status), ("backend / model", f"{self.backend} / {self.model}"),
            ("images", f"{self.images_ok} ok, {self.images_error} error, {self.images_skipped} skipped of {self.images_total}"),
            ("variations accepted", f"{self.variations_accepted} of {self.variations_requested} requested"),
            ("attempts", f"{self.attempts} ({rate} accepted)"),
            ("generation calls (retries included) / attempts that called / cache hits",
             f"{self.calls} / {self.attempts - self.cache_hits} / {self.cache_hits}"),
            ("duplicates", str(self.duplicates)), ("generation failures", str(self.generation_failures)),
            ("final quality level", f"{self.final_level} ({self.level_changes} changes)"),
            ("wall time", f"{self.wall_seconds:.1f} s"), ("records", f"`{self.duckdb_path}`"),
        ]
        if self.gallery_path:
            rows.append(("gallery", f"[{Path(self.gallery_path).name}]({Path(self.gallery_path).as_uri()}) "
                                    f"(`{self.gallery_path}`)"))
        if self.message:
            rows.insert(1, ("note", self.message.replace("|", "\\|")))
        md = [f"# varflow run `{self.run_id}`", "", "| | |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in rows]
        if self.rejected_by_reason:
            md += ["", "## Rejections", "", "| reason | count |", "|---|---|"]
            md += [f"| {k} | {v} |" for k, v in self.rejected_by_reason.items()]
        ms = {k: v for k, v in self.mean_scores.items() if v is not None}
        if ms:
            md += ["", "## Mean scores of accepted variations", "", "| metric | mean |", "|---|---|"]
            md += [f"| {k} | {v:.3f} |" for k, v in ms.items()]
        if self.errors:
            md += ["", "## Errors", ""] + [f"- {e}" for e in self.errors[:50]]
        return "\n".join(md)
