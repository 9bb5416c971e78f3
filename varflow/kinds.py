"""varflow's vocabularies as types: every status, outcome and level name, spelled once.

Each is a ``StrEnum``: a member *is* its string (it compares equal to it, formats as it, and is
written to DuckDB, Parquet, JSON and Prefect's records as it), so the stored values and the
tests that read them stay as they were; code names the member instead of retyping the string.
"""

from enum import StrEnum


class ImageStatus(StrEnum):
    """How one image of a run ended (the ``images`` table's ``status``)."""

    OK = "ok"  # processed; its accepted variations are recorded
    ERROR = "error"  # could not be processed (unreadable, or every attempt failed); ``error`` says why
    SKIPPED = "skipped"  # not processed by this run (it stopped first, or another run holds the image)


class RunStatus(StrEnum):
    """How a run ended (the ``runs`` table's ``status``; the summary and the exit code agree)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    NO_IMAGES = "no_images"  # the folder holds no image to process
    INTERRUPTED = "interrupted"  # its process died; a later run closed its record
    CANCELLED = "cancelled"  # Prefect cancelled its flow run (a hook closed its record)
    CRASHED = "crashed"  # its flow run crashed (a hook closed its record)


class ScanStatus(StrEnum):
    """What a run's scan found an image of its folder to be (varflow/processing/scan.py)."""

    PENDING = "todo"  # to be processed by this run
    UNREADABLE = "unreadable"
    SAME_CONTENT = "same_content"  # the same bytes as another image of the folder, processed once
    COPY = "copy"  # the same picture as another image of the folder (cropped, mirrored, ...), processed once
    DONE = "done"  # processed by an earlier run with the same settings


class Verdict(StrEnum):
    """A person's decision on a variation (the ``reviews`` table's ``verdict``; the latest one is in force)."""

    KEEP = "keep"  # the file belongs in the output folder, whatever the gate said
    REJECT = "reject"  # the file goes to ``_rejected/``, whatever the gate said


class QualityLevel(StrEnum):
    """The adaptive quality levels, best first (varflow.settings.QUALITY_LEVELS holds their numbers)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class CallOutcome(StrEnum):
    """How one generation attempt ended (the ``attempts`` table's ``outcome``; docs/gemini.md)."""

    OK = "ok"
    # no call made, or its end unknown
    CANCELLED = "cancelled"  # the run had stopped, or the budget refused it
    IN_FLIGHT = "in_flight"  # sent and not ended (or its process died: see INTERRUPTED)
    INTERRUPTED = "interrupted"  # a recovered run's in-flight call: maybe answered and billed
    DEFERRED = "deferred"  # waits for a batch job (varflow/processing/batch.py)
    # the backend's answers (GenerationError.outcome)
    RATE_LIMITED = "rate_limited"
    QUOTA_DAY = "quota_day"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    INVALID_REQUEST = "invalid_request"
    BLOCKED = "blocked"
    NO_IMAGE = "no_image"
    BAD_IMAGE = "bad_image"
    BAD_SOURCE = "bad_source"  # the source image cannot be used (local backend)
    NO_OBJECT = "no_object"  # no object to move, add or remove (local backend)
    ERROR = "error"  # anything else (a bug until proven otherwise)
