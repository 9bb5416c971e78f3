"""Prefect settings varflow needs offline, applied before Prefect is imported.

Set only where the user has not: telemetry off (there is no network to send it to), shutdown
tracebacks of the temporary server silenced, and a generous start-up timeout so a cold start
of the temporary server on a slow machine (docs/architecture.md) does not fail the run.
"""

import os

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "1",
}


def apply() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
