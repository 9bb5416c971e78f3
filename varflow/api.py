"""varflow from Python: ``run``, ``score``, ``find_duplicates``, ``open_store`` (docs/api.md).

A facade over the entries the command line uses, so a call and a command make the same run,
records and files: ``run`` is ``varflow run`` (flows/cli/run.py's ``check_backend`` and
``start_run``: the preflight, then the flow on the Prefect server the CLI would use), ``score``
is ``varflow score`` (``score_files``), ``find_duplicates`` is ``varflow dedup``. Prefect and
DuckDB load when a function is called, never on ``import varflow``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from varflow.errors import ConfigurationError, InputError
from varflow.settings import DEFAULT_PROFILE

if TYPE_CHECKING:
    from varflow.flows.report import RunSummary
    from varflow.storage.lens import Lens

__all__ = ["Assessment", "Lens", "RunSummary", "find_duplicates", "open_store", "run", "score"]

log = logging.getLogger("varflow")


def __getattr__(name: str):
    """``RunSummary`` and ``Lens`` are the flow's and the store's own classes, loaded on first use."""
    if name == "RunSummary":
        from varflow.flows.report import RunSummary

        return RunSummary
    if name == "Lens":
        from varflow.storage.lens import Lens

        return Lens
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(input_dir: str | Path, output_dir: str | Path | None = None, **settings: Any) -> RunSummary:
    """Vary every image of ``input_dir``: the run ``varflow run`` makes, with the same records.

    ``settings`` are the run's parameters (``RunParameters`` in flows/parameters.py: ``count``,
    ``seed``, ``backend``, ``home``, ...); ``output_dir`` defaults to ``./variations``, as the CLI's
    ``--out``. Returns the summary whatever the outcome (``status`` is ``failed`` when no image
    succeeded); raises ``VarflowError`` only for settings that cannot run (an unknown or invalid
    setting, a missing folder, no room, a refused key), before anything is paid for.
    """
    from varflow.flows.cli import check_backend, start_run
    from varflow.flows.report import RunSummary
    from varflow.runtime.preflight import check_not_input

    params = run_parameters(input_dir, output_dir, settings)
    if not Path(params.input_dir).exists():
        raise InputError(f"input folder {params.input_dir} does not exist; pass a folder of images")
    check_not_input(Path(params.input_dir), Path(params.output_dir).expanduser())
    check_backend(params)
    summary = start_run(params, warn=log.warning)
    return RunSummary.from_dict(summary)


def run_parameters(input_dir: str | Path, output_dir: str | Path | None, settings: dict):
    """``RunParameters`` from ``run``'s arguments; a ConfigurationError names what is wrong."""
    from pydantic import ValidationError

    from varflow.flows.parameters import RunParameters

    valid = [n for n in RunParameters.model_fields if n not in ("input_dir", "output_dir")]
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise ConfigurationError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                                 f"the settings are {', '.join(valid)}")
    paths = {"input_dir": str(input_dir)} | ({} if output_dir is None else {"output_dir": str(output_dir)})
    try:
        return RunParameters(**paths, **settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid settings: {problems}") from None


@dataclass(frozen=True)
class Assessment:
    """One variation scored against its original, as ``varflow score`` prints it.

    ``accepted`` and ``reasons`` are the verdict of ``profile`` at ``level``; ``metrics`` holds
    every value both profiles measure (the judging profile's five, ``seed_*``, the seed's aesthetic
    parts and the calibrated parts: storage/SCHEMA.md names each); the judging profile's five are
    also attributes. ``to_dict()`` is the row of ``varflow score --json``.
    """

    index: int
    path: Path
    accepted: bool
    reasons: list[str]
    profile: str
    level: str
    level_threshold: float
    similarity: float | None
    diversity: float | None  # None for the first variation (nothing before it to differ from)
    aesthetic: float | None
    object_integrity: float | None
    overall_quality: float | None
    metrics: dict[str, float | None] = field(repr=False)
    width: int = 0
    height: int = 0
    hashes: dict[str, str] = field(default_factory=dict, repr=False)  # ahash, phash, dhash (16 hex digits)

    _HEAD = ("index", "path", "width", "height", "profile")
    _TAIL = ("accepted", "reasons", "level", "level_threshold", "ahash", "phash", "dhash")

    @classmethod
    def from_row(cls, row: dict) -> Assessment:
        metrics = {k: v for k, v in row.items() if k not in cls._HEAD + cls._TAIL}
        return cls(index=row["index"], path=Path(row["path"]), accepted=row["accepted"], reasons=list(row["reasons"]),
                   profile=row["profile"], level=row["level"], level_threshold=row["level_threshold"],
                   **{k: metrics[k] for k in ("similarity", "diversity", "aesthetic", "object_integrity",
                                              "overall_quality")},
                   metrics=metrics, width=row["width"], height=row["height"],
                   hashes={k: row[k] for k in ("ahash", "phash", "dhash")})

    def to_dict(self) -> dict:
        return {"index": self.index, "path": str(self.path), "width": self.width, "height": self.height,
                "profile": self.profile, **self.metrics, "accepted": self.accepted, "reasons": list(self.reasons),
                "level": self.level, "level_threshold": self.level_threshold, **self.hashes}


def score(original: str | Path, *variations: str | Path, profile: str = DEFAULT_PROFILE, level: str = "medium",
          max_side: int | None = None) -> list[Assessment]:
    """Score ``variations`` against ``original`` as a run judges them (``varflow score``): variation
    i's diversity is measured against variations 1..i-1. ``max_side`` fits the images within that
    many pixels first, as a run's optimize does. An unreadable file raises ``InputError`` naming it."""
    from varflow.reports.inspect import score_files

    if not variations:
        raise InputError("score needs at least one variation after the original")
    return [Assessment.from_row(r) for r in score_files(original, variations, profile=profile, level=level,
                                                            max_side=max_side)]


def find_duplicates(folder: str | Path, *, follow_links: bool = False) -> list[list[Path]]:
    """Groups of copies of one picture in ``folder`` (walked as ``varflow dedup`` walks it: crops,
    mirrors, borders, rotations and re-encodings count), each sorted, groups by their first path.
    A file that cannot be read, or may not be (a FIFO; a link leaving the folder unless
    ``follow_links``), is left out with a warning."""
    from varflow.reports.inspect import copy_groups_in
    from varflow.safety.escaping import for_log

    errors: list[tuple[str, str]] = []
    try:
        groups, _ = copy_groups_in(folder, errors=errors, follow_links=follow_links)
    except FileNotFoundError as exc:
        raise InputError(for_log(exc)) from None
    for _path, message in errors:
        log.warning("skipped %s", for_log(message))  # a name never forges a log line, in a script too
    return [[Path(p) for p in group] for group in groups]


def open_store(home: str | Path | None = None) -> Lens:
    """The store of the data directory ``home`` (default ``$VARFLOW_HOME`` or
    ``~/.local/share/varflow``) as your own in-memory DuckDB connection over its views: ``.sql(query)``
    and ``.table(name)`` return DuckDB relations. It takes no lock and writes nothing to the store;
    a folder with no store yet reads as empty tables."""
    from varflow.storage.lens import Lens

    return Lens(home)
