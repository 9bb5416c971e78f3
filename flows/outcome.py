"""What a finished run says to the world: one rule for the exit code, Prefect's state and its message.

Whoever reads the result (the CLI's exit code, the Prefect UI, an automation on ``Failed``, the
``runs`` row) reads the same verdict, made here from the run's summary:

======  =========  ===========================================================================
 exit    state      when
======  =========  ===========================================================================
 0       Completed  the run went through its folder and at least one image succeeded, or
                    nothing needed doing (every image unchanged since a finished run)
 1       Failed     no image succeeded (images failed, the folder holds no images), or an
                    answer stopped the run (a refused key, an unknown model)
 3       Failed     stopped early by the spending cap (``--max-cost``) or the daily quota,
                    whatever succeeded before: the message says how far it got
 143     Crashed    SIGTERM (systemd, Kubernetes, a worker stopping it): Prefect ends the flow
                    run within seconds; its ``on_crashed`` hook closes the run's rows
                    ``interrupted`` and frees its claims (flows/lifecycle.py)
======  =========  ===========================================================================

A run cancelled from the UI ends ``Cancelled``, its rows ``cancelled``; any other crash
``Crashed``, its rows ``crashed``. (2, a wrong argument, is the CLI's own and never reaches a run.)
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3

# Stops that leave work for a later run (money or quota runs out): exit 3, the message says how far.
STOPPED_EARLY = {"budget": "the spending cap", "quota_day": "the daily quota"}
OTHER_STOPS = {"no_workers": "the runner (no worker could run its task runs)"}


@dataclass(frozen=True)
class Verdict:
    exit_code: int
    failed: bool
    message: str


def stop_message(stop_outcome: str, detail: str, *, processed: int, to_do: int, ok: int) -> str:
    """How far a stopped run got: 'stopped by the spending cap after 3 of 10 images (3 succeeded); ...'."""
    what = STOPPED_EARLY.get(stop_outcome) or OTHER_STOPS.get(stop_outcome) or f"an answer ({stop_outcome})"
    return f"stopped by {what} after {processed} of {to_do} images ({ok} succeeded): {detail}"


def verdict(summary: dict) -> Verdict:
    """The exit code and whether Prefect's state is Failed, from a run's summary (the table above)."""
    stop, ok = summary.get("stop_outcome"), summary.get("images_ok") or 0
    message = summary.get("message") or f"{ok} of {summary.get('images_total') or 0} images succeeded"
    if stop in STOPPED_EARLY:
        return Verdict(EXIT_STOPPED, True, message)
    if stop or (ok == 0 and (summary.get("images_error") or not summary.get("images_skipped"))):
        return Verdict(EXIT_FAILED, True, message)
    return Verdict(EXIT_OK, False, message)


def final_state(summary: dict):
    """The flow run's state: Completed or Failed, its message the verdict's, its data the summary
    (run_local reads it back with ``summary_from``)."""
    from prefect.states import Completed, Failed

    v = verdict(summary)
    return (Failed if v.failed else Completed)(message=v.message, data=summary)


def summary_from(state) -> dict:
    """The summary a flow run's final state carries; the run's own exception when it raised."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, dict):
        raise RuntimeError(f"the flow run ended {state.name} without a summary: {state.message}")
    return result


def collector_verdict(runs: list[dict]) -> Verdict:
    """The collector's verdict: its worst folder run's (exit 3 before 1), Completed when all are."""
    verdicts = [verdict(r) for r in runs]
    failed = [v for v in verdicts if v.failed]
    if not failed:
        return Verdict(EXIT_OK, False, f"{len(runs)} folder run(s) completed")
    worst = max(failed, key=lambda v: (v.exit_code == EXIT_STOPPED, v.exit_code))
    return Verdict(worst.exit_code, True, f"{len(failed)} of {len(runs)} folder run(s) failed: {worst.message}")
