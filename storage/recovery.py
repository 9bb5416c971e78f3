"""The store's recovery: what a killed run leaves (its ``running`` row, half-written parts, calls in
flight) closed by the process that finds it; damaged files set aside."""

from __future__ import annotations

import logging

from varflow.storage.integrity import (
    quarantine,
    unreadable_parts,
)

from varflow.runtime.calls import IN_FLIGHT, INTERRUPTED
from varflow.runtime.records import (
    AttemptRecord,
    RunRecord,
)

log = logging.getLogger(__name__)


class StoreRecovery:
    """Closing what a killed run left (a part of ``Store``)."""

    def quarantine_unreadable(self) -> int:
        """Move every Parquet file whose footer cannot be read to ``quarantine/``; how many."""
        damaged = unreadable_parts(self.tables_dir)
        for path, reason in damaged:
            quarantine(self.home, path, reason)
        return len(damaged)

    def running_runs(self) -> list[dict]:
        return self.query("SELECT * FROM runs WHERE status = 'running'")

    def recover_interrupted(self, run: dict, *, status: str = "interrupted", message: str | None = None) -> int:
        """Close a run that was killed: drop its half-written images, compact, mark it ``status``
        (``interrupted``; ``cancelled`` or ``crashed`` from Prefect's hooks, flows/lifecycle.py).

        An image's rows are written variations-first, image-row-last, so variations without an
        image row belong to an image that was in flight when the process died; that image is
        redone by the next run, so those rows are removed. Returns how many parts were removed.
        """
        run_id, execution = run["run_id"], run.get("execution") or 1
        image_parts = self._run_dir("images", run_id, execution) / "parts"
        done = {p.stem for p in image_parts.glob("*.parquet")} if image_parts.exists() else set()
        removed = 0
        parts = self._run_dir("variations", run_id, execution) / "parts"
        for part in parts.glob("*.parquet") if parts.exists() else []:
            if part.stem not in done:
                part.unlink(missing_ok=True)
                removed += 1
        counts = self.query(
            "SELECT count(*) AS total, count(*) FILTER (status = 'ok') AS ok, "
            "count(*) FILTER (status = 'error') AS err, count(*) FILTER (status = 'skipped') AS skipped, "
            "coalesce(sum(accepted), 0) AS accepted, coalesce(sum(attempts), 0) AS attempts FROM images "
            "WHERE run_id = ? AND coalesce(execution, 1) = ?", [run_id, execution])[0]
        interrupted = self.close_in_flight_calls(run_id, execution)
        fields = {k: run[k] for k in RunRecord.columns() if k in run}
        fields.update(status=status, finished_at=run.get("finished_at"), images_ok=counts["ok"],
                      images_error=counts["err"], images_skipped=counts["skipped"],
                      variations_accepted=counts["accepted"], attempts=counts["attempts"],
                      message=message or "the process stopped before the run finished; its finished images are kept")
        self.write_run(RunRecord(**fields), execution=execution)
        self.compact_run(run_id, execution=execution)
        if interrupted:
            log.warning("run %s: %d calls were in flight when it was killed; recorded as interrupted, their "
                        "estimated cost counted (an answer that reached the cache is reused)", run_id, interrupted)
        return removed

    def close_in_flight_calls(self, run_id: str, execution: int = 1) -> int:
        """A killed run's ``in_flight`` calls become ``interrupted``, keeping their estimated cost
        (they may have been answered and billed). Returns how many."""
        rows = self.query("SELECT * FROM attempts WHERE run_id = ? AND outcome = ? AND coalesce(execution, 1) = ?",
                          [run_id, IN_FLIGHT, execution])
        for row in rows:
            fields = {k: row[k] for k in AttemptRecord.columns() if k in row}
            fields.update(outcome=INTERRUPTED, error="the run was killed while this call was in flight: it may "
                                                     "have been answered and billed; its estimated cost is counted")
            self.write_attempt(AttemptRecord(**fields), execution=execution)
        return len(rows)
