"""What a run shows in Prefect while it goes and when it ends: progress, log lines, artifacts, an event.

Publishing never fails a run: the records in the store are the truth, these are views of them
(a failure to publish is logged as a warning).
"""

from __future__ import annotations

import time

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.events import emit_event
from varflow.flows.report import RunSummary, image_line

PROGRESS_KEY = "varflow-run-progress"
TABLE_KEY = "varflow-run-images"
REPORT_KEY = "varflow-run-report"
FINISHED_EVENT = "varflow.run.finished"
PROGRESS_EVERY_S = 2.0  # one update per image was an HTTP call per image (bench/scale_out.py)


class RunPublisher:
    """The run's face in Prefect: a progress artifact, a line per image, the table, the report, an event."""

    def __init__(self, run_id: str, flow_run_id: str | None, logger):
        self.run_id, self.flow_run_id, self.logger = run_id, flow_run_id, logger
        self.total, self.done, self.progress_id = 0, 0, None
        self.shown_at = 0.0  # time.monotonic() of the last progress update

    def _safely(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a view must never fail a recorded run
            self.logger.warning("could not publish the run's %s: %s", what, exc)
            return None

    def start(self, total: int) -> None:
        self.total = total
        self.progress_id = self._safely("progress", create_progress_artifact, progress=0.0 if total else 100.0,
                                        key=PROGRESS_KEY, description=self._progress_text())

    def _progress_text(self) -> str:
        return f"varflow run {self.run_id}: {self.done} of {self.total} images done"

    def image_done(self, row: dict, *, processed: bool = True) -> None:
        """One image finished (or was skipped): its log line, and the progress figure."""
        self.done += 1
        if processed:
            self.logger.info(image_line(row))
        now = time.monotonic()
        if self.progress_id is not None and (self.done >= self.total or now - self.shown_at >= PROGRESS_EVERY_S):
            self.shown_at = now
            self._safely("progress", update_progress_artifact, self.progress_id,
                         progress=100.0 * self.done / max(self.total, 1), description=self._progress_text())

    def close(self, summary: RunSummary, stop_outcome: str | None) -> None:
        """The end of the run: the table, the report, the warning if any, and the event."""
        if summary.images:
            self._safely("table", create_table_artifact, key=TABLE_KEY, table=summary.images,
                         description=f"varflow run {self.run_id}: one row per image")
        self._safely("report", create_markdown_artifact, key=REPORT_KEY, markdown=summary.render_markdown(),
                     description=f"varflow run {self.run_id}")
        if summary.warning:
            self.logger.warning("run %s %s", self.run_id, summary.warning)
        self._safely("event", emit_event, **finished_event(summary, stop_outcome, self.flow_run_id))


def warning_label(summary: RunSummary) -> str:
    """The warning as a resource label an automation can match: none, nothing-accepted or low-acceptance."""
    if summary.warning is None:
        return "none"
    return "nothing-accepted" if summary.variations_accepted == 0 else "low-acceptance"


def finished_event(summary: RunSummary, stop_outcome: str | None, flow_run_id: str | None) -> dict:
    """emit_event's arguments for the end of a run; its labels are what automations match on."""
    related = []
    if flow_run_id:
        related.append({"prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                        "prefect.resource.role": "flow-run"})
    return dict(
        event=FINISHED_EVENT,
        resource={
            "prefect.resource.id": f"varflow.run.{summary.run_id}",
            "prefect.resource.name": f"varflow run {summary.run_id}",
            "varflow.status": summary.status,
            "varflow.warning": warning_label(summary),
            "varflow.stop": stop_outcome or "none",
            "varflow.backend": summary.backend,
        },
        related=related,
        payload={
            "images_total": summary.images_total, "images_ok": summary.images_ok,
            "images_error": summary.images_error, "images_skipped": summary.images_skipped,
            "variations_requested": summary.variations_requested,
            "variations_accepted": summary.variations_accepted, "attempts": summary.attempts,
            "acceptance_rate": summary.acceptance_rate, "cost_usd": summary.cost_usd, "calls": summary.calls,
            "warning": summary.warning, "message": summary.message, "gallery_path": summary.gallery_path,
        },
    )
