"""The run's parameters: typed, with defaults and descriptions (the Prefect UI renders a form)."""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Annotated, Literal, NamedTuple, get_args, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from varflow.flows.addresses import ADDRESS_FIELDS, NO_CREDENTIALS, SECRET_NAME, credential_problem, secret_name_problem

from varflow.generation.backends import BACKENDS, DEFAULT_BACKEND
from varflow.images.locations import is_url, url_problem
from varflow.processing.discovery import normalize_extensions
from varflow.settings import (
    DEFAULT_PROFILE,
    IMAGE_EXTENSIONS,
    PROFILES,
    VARIATION_TYPES,
    CalibratedProfile,
    CalibratedThresholds,
    DedupSettings,
    LoadLimits,
    QualityThresholds,
    Settings,
)

VariationType = Literal["random", "object_rearrange", "object_add", "object_remove", "style_change", "composition"]
Profile = Literal["calibrated", "seed"]
Level = Literal["auto", "high", "medium", "low"]
Runner = Literal["threads", "dask"]
assert set(get_args(VariationType)) == set(VARIATION_TYPES) and set(get_args(Profile)) == set(PROFILES)

_DEDUP = DedupSettings()
_LIMITS = LoadLimits()


def with_bounds(description: str | None, *, ge=None, le=None, gt=None) -> str | None:
    """The description with the value's bounds in words: the UI's form shows descriptions, not bounds."""
    low = f"at least {ge:g}" if ge is not None else f"above {gt:g}" if gt is not None else None
    if low is None and le is None:
        return description
    bounds = f"{ge:g} to {le:g}" if ge is not None and le is not None else \
        ", ".join(b for b in (low, f"at most {le:g}" if le is not None else None) if b)
    return f"{(description or '').rstrip('.')} ({bounds})."


def _bounds_of(metadata) -> dict:
    out = {}
    for m in metadata:
        for key in ("ge", "le", "gt"):
            if getattr(m, key, None) is not None:
                out[key] = getattr(m, key)
    return out


def form_of(name: str, settings_class: type, description: str) -> type[BaseModel]:
    """A pydantic model (a UI form section) of a core settings dataclass.

    Defaults, meanings and bounds come from the dataclass's fields, and the dataclass's own
    validation runs on every value, so each number and each rule has one home: varflow/settings.py.
    """
    defaults = settings_class()
    hints = get_type_hints(settings_class)
    specs = {}
    for f in fields(settings_class):
        meta = f.metadata
        bounds = {k: meta[k] for k in ("ge", "le", "gt") if meta.get(k) is not None}
        specs[f.name] = (hints[f.name], Field(getattr(defaults, f.name),
                                              description=with_bounds(meta.get("help"), **bounds), **bounds))

    def to_core(self):
        return settings_class(**self.model_dump())

    def _validated(self):
        self.to_core()  # the dataclass's __post_init__ (its ValueError becomes a validation error)
        return self

    model = create_model(
        name, __module__=__name__, __config__=ConfigDict(extra="forbid", frozen=True), __doc__=description,
        __validators__={"_core_rules": model_validator(mode="after")(_validated)}, **specs,
    )
    model.to_core = to_core
    return model


Thresholds = form_of("Thresholds", QualityThresholds,
                     "The seed profile's acceptance thresholds (the seed document's values).")
CalibratedForm = form_of("CalibratedForm", CalibratedThresholds,
                         "The calibrated profile's thresholds, scales and weights (docs/quality-model.md).")


def _refusing(problem):
    """A before-validator raising ``problem(field, value)``'s message; the value is never in it."""
    def check(cls, v, info):
        message = problem(info.field_name, v) if isinstance(v, str) else None
        if message:
            raise ValueError(message)
        return v
    return check


class RunParameters(BaseModel):
    """Everything a run of ``varflow run`` (or a deployment's run from the UI) takes."""

    # A refused value is never repeated in the error (it may be a URL holding a password).
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    input_dir: str = Field(..., description="Folder of images to vary (walked recursively), or a bucket prefix "
                                            "(s3://bucket/prefix; credentials from the AWS configuration).")
    output_dir: str = Field("variations", description="Where accepted variations are written: a folder or a bucket "
                                                      "prefix (s3://bucket/prefix).")
    count: int = Field(4, ge=1, le=64, description="Accepted variations wanted per image.")
    variation_type: VariationType = Field("random", description="What kind of change to make.")
    prompt: str = Field("", max_length=2000, description="What the variations should look like.")
    seed: int = Field(0, ge=0, description="Same seed, same variations.")
    backend: Literal[BACKENDS] = Field(DEFAULT_BACKEND, description=f"Generator backend: {' or '.join(BACKENDS)} "
                                                                    f"(docs/architecture.md).")
    model: str = Field("", description="Model name for the backend; empty for its default.")
    level: Level = Field(
        "auto",
        description="Quality level to start at; auto: where the last run of this backend/model left it (high at first)."
    )
    adaptive: bool = Field(True, description="Let the success rate move the quality level (the seed's rules).")
    keep_rejected: bool = Field(False, description="Keep rejected variations under OUTPUT/_rejected for review.")
    force: bool = Field(False, description="Redo finished images and regenerate cached variations.")
    cache_max_mb: int = Field(2048, ge=1,
                              description="Size limit of the variation cache (MiB); least recently used go first.")
    home: str = Field("", description="varflow data directory; empty: $VARFLOW_HOME or ~/.local/share/varflow.")
    extensions: list[str] = Field(
        default_factory=lambda: [e.lstrip(".") for e in IMAGE_EXTENSIONS],
        description="File extensions treated as images.",
    )
    follow_links: bool = Field(
        False, description="Also read images through links that lead outside the input folder (links inside it "
                           "are always followed); off: such a link is recorded as an error and not read.",
    )
    images_in_flight: int = Field(2, ge=1, le=64, description="Most images processed at once.")
    generation_concurrency: int = Field(2, ge=1, le=256, description="Most generation calls in flight at once.")
    max_memory_mb: int = Field(2048, ge=64, description="Memory budget for images in flight (MiB).")
    profile: Profile = Field(DEFAULT_PROFILE, description="Which quality model decides: calibrated (agrees with a "
                                                          "person on real photos) or seed (the seed document's "
                                                          "formulas, exact). Both are recorded.")
    thresholds: Thresholds = Field(default_factory=Thresholds, description="The seed profile's acceptance thresholds.")
    calibrated_thresholds: CalibratedForm = Field(
        default_factory=CalibratedForm, description="The calibrated profile's thresholds, scales and weights.")
    dedup_max_hamming: int = Field(_DEDUP.max_hamming, ge=0, le=64,
                                   description="Hash distance (bits) that makes a duplicate candidate.")
    dedup_ssim: float = Field(_DEDUP.ssim_threshold, ge=-1, le=1,
                              description="SSIM of small thumbnails above which a candidate is a duplicate.")
    dedup_library: bool = Field(
        False, description="Also check each new variation against every variation ever accepted in this data "
                           "directory, from any source image (default: only those of its own source).",
    )
    keep_copies: bool = Field(
        False, description="Also process an input that is a copy of another input of the folder (cropped, mirrored, "
                           "framed, rotated or re-encoded); by default it is skipped as 'copy of' the other.",
    )
    max_pixels: int = Field(_LIMITS.max_pixels, ge=1, description="Larger images are refused (decompression bombs).")
    # Where and how the run executes (docs/scale-out.md). None of these change the output.
    runner: Runner = Field("threads", description="threads: one process; dask: image chunks on a Dask cluster (a local "
                                                  "cluster of processes, or dask_address).")
    dask_address: str = Field("", pattern=NO_CREDENTIALS, description="Address of an existing Dask scheduler "
                                                                      "(tcp://host:8786) for runner dask; empty: a "
                                                                      "local cluster of dask_workers processes.")
    dask_workers: int = Field(2, ge=1, le=256, description="Worker processes of the local Dask cluster (runner dask "
                                                           "without dask_address).")
    dask_worker_wait_s: float = Field(120.0, gt=0, le=86400, description="Runner dask: how long the run waits while "
                                      "its cluster has no worker (workers that cannot import varflow's tasks exit at "
                                      "once) before it ends the images in flight with an error and stops.")
    chunk_size: int = Field(0, ge=0, le=10000, description="Images per task run; 0: chosen from the folder's size and "
                                                           "the runner (docs/scale-out.md).")
    shared_limits: str = Field("", pattern=NO_CREDENTIALS, description="Where call slots, spend and the RPM limit are "
                                                                       "shared: empty: this process (threads) or the "
                                                                       "data directory (dask); redis://host:port/db: "
                                                                       "every process and machine using that Redis.")
    # Paid backends (gemini): retries, pacing, budget, key. None of these change the output.
    retries: int = Field(4, ge=0, le=20, description="Retries of a failed call that may succeed on another try "
                                                     "(gemini; local: 0). Worst case per variation: the level's max "
                                                     "attempts x (1 + retries) calls.")
    retry_backoff_s: float = Field(2.0, ge=0, le=300, description="First retry delay (s); doubles per retry, plus up "
                                                                  "to 50% jitter. A 429's retryDelay wins when longer.")
    requests_per_minute: float | None = Field(None, gt=0, description="Most generation calls started per minute, "
                                                                      "shared by every run using the same data "
                                                                      "directory (empty: no limit).")
    request_timeout_s: float = Field(120.0, gt=0, le=3600, description="Timeout of one API request (s).")
    max_cost_usd: float | None = Field(None, gt=0, description="Estimated-spend cap for the run (USD): no call starts "
                                                               "that would pass it (empty: no cap; a cap of 0 would "
                                                               "allow no call).")
    api_key_secret: str = Field("", pattern=SECRET_NAME, description="Name of a Prefect Secret block holding the API "
                                                                     "key; empty: GEMINI_API_KEY or GOOGLE_API_KEY.")

    # Before the patterns: messages that say where a password or key goes (flows/addresses.py).
    _no_credentials = field_validator(*ADDRESS_FIELDS, mode="before")(_refusing(credential_problem))
    _a_name_not_a_key = field_validator("api_key_secret", mode="before")(_refusing(secret_name_problem))
    # A bucket URL: no credential in it, a scheme varflow supports, no hostile prefix (varflow/images/locations.py).
    _folder_urls = field_validator("input_dir", "output_dir", mode="before")(_refusing(url_problem))

    @model_validator(mode="after")
    def _library_is_local(self):
        if self.dedup_library and is_url(self.output_dir):
            raise ValueError("dedup_library is not available with an output bucket (every candidate would be "
                             "fetched from it): use a local --out for a library-wide dedup")
        return self

    @field_validator("extensions")
    @classmethod
    def _exts(cls, v: list[str]) -> list[str]:
        return [e.lstrip(".") for e in normalize_extensions(v)]

    @property
    def start_level(self) -> str | None:
        """The level the run starts at, or None to go on from where the last run left it."""
        return None if self.level == "auto" else self.level

    def job_fingerprint(self) -> dict:
        """What makes a finished image's result still valid: the parameters that change it."""
        return self.model_dump(include={
            "output_dir", "count", "variation_type", "prompt", "seed", "backend", "model",
            "profile", "thresholds", "calibrated_thresholds", "dedup_max_hamming", "dedup_ssim",
        })

    def settings(self, applied: CalibratedProfile | None = None) -> Settings:
        """The core settings. ``applied``: the data directory's calibrated profile in force (``varflow
        calibrate --apply``); it judges when the calibrated profile decides and the run leaves its
        thresholds at the defaults (thresholds a run names are the run's own choice)."""
        calibrated, version, graded = self.calibrated_thresholds.to_core(), None, None
        if applied is not None and self.profile == "calibrated" and calibrated == CalibratedThresholds():
            calibrated, version, graded = applied.thresholds, applied.version, applied.graded
        return Settings(
            profile=self.profile,
            thresholds=self.thresholds.to_core(),
            calibrated=calibrated,
            dedup=DedupSettings(max_hamming=self.dedup_max_hamming, ssim_threshold=self.dedup_ssim),
            limits=LoadLimits(max_pixels=self.max_pixels),
            profile_version=version,
            graded=graded,
        )


# --- The command line: each field's option (varflow run, demo, serve; flows/cli/options.py builds them) ---

class Flag(NamedTuple):
    """A field's command-line option. Its help is the field's description, its default the field's,
    its choices the field's Literal; ``scale``: the option's ``unit`` in the field's (megapixels)."""

    name: str
    metavar: str | None = None
    section: str = ""
    scale: int = 1
    unit: str = ""


RUNNER_SECTION = "beyond one machine (docs/scale-out.md)"
PAID_SECTION = "paid backends (gemini)"

CLI_FLAGS: dict[str, Flag] = {
    "count": Flag("--count", "N"),
    "variation_type": Flag("--type", "T"),
    "prompt": Flag("--prompt", "TEXT"),
    "seed": Flag("--seed", "N"),
    "backend": Flag("--backend", "B"),
    "model": Flag("--model", "NAME"),
    "level": Flag("--level", "L"),
    "adaptive": Flag("--no-adapt"),
    "keep_rejected": Flag("--keep-rejected"),
    "force": Flag("--force"),
    "cache_max_mb": Flag("--cache-max-mb", "N"),
    "home": Flag("--home", "DIR"),
    "extensions": Flag("--ext", "EXT,EXT"),
    "follow_links": Flag("--follow-links"),
    "images_in_flight": Flag("--images-in-flight", "N"),
    "generation_concurrency": Flag("--concurrency", "N"),
    "max_memory_mb": Flag("--max-memory-mb", "N"),
    "profile": Flag("--profile", "P"),
    "dedup_max_hamming": Flag("--dedup-max-hamming", "BITS"),
    "dedup_ssim": Flag("--dedup-ssim", "SSIM"),
    "dedup_library": Flag("--dedup-library"),
    "keep_copies": Flag("--keep-copies"),
    "max_pixels": Flag("--max-megapixels", "M", scale=1_000_000, unit="megapixels"),
    "runner": Flag("--runner", "R", RUNNER_SECTION),
    "dask_address": Flag("--dask-address", "ADDRESS", RUNNER_SECTION),
    "dask_workers": Flag("--dask-workers", "N", RUNNER_SECTION),
    "dask_worker_wait_s": Flag("--dask-worker-wait", "S", RUNNER_SECTION),
    "chunk_size": Flag("--chunk-size", "N", RUNNER_SECTION),
    "shared_limits": Flag("--shared-limits", "URL", RUNNER_SECTION),
    "retries": Flag("--retries", "N", PAID_SECTION),
    "retry_backoff_s": Flag("--retry-backoff", "S", PAID_SECTION),
    "requests_per_minute": Flag("--rpm", "N", PAID_SECTION),
    "request_timeout_s": Flag("--timeout", "S", PAID_SECTION),
    "max_cost_usd": Flag("--max-cost", "USD", PAID_SECTION),
    "api_key_secret": Flag("--api-key-secret", "BLOCK", PAID_SECTION),
}
# The fields without an option of their own, and why (every other field has one: tests/test_parameters.py).
NOT_FLAGS = {
    "input_dir": "the command's positional folder (demo: under --dir)",
    "output_dir": "--out (demo: under --dir)",
    "thresholds": "six numbers: the UI's form or a deployment's parameters",
    "calibrated_thresholds": "41 numbers: the UI's form or a deployment's parameters",
}


# --- The flow's form: one top-level parameter per setting, the paid backends' own in one group ---

PAID_GROUP = "paid_backend"  # the form's group of settings only a paid (remote) backend uses

PAID_FIELDS = ("retries", "retry_backoff_s", "requests_per_minute", "request_timeout_s", "max_cost_usd",
                 "api_key_secret")
# Optional numbers become 0 in the form (a "number or None" field renders as a type switch):
_ZERO_IS_NONE = {
    "requests_per_minute": "Most generation calls started per minute, shared by every run using the same "
                           "data directory; 0: no limit.",
    "max_cost_usd": "Estimated-spend cap for the run (USD): no call starts that would pass it; 0: no cap.",
}


def _field(name: str) -> tuple:
    """(annotation, FieldInfo) of a RunParameters field, with its bounds, pattern and description."""
    if name in _ZERO_IS_NONE:
        return float, Field(0.0, ge=0, title=name, description=_ZERO_IS_NONE[name])
    f = RunParameters.model_fields[name]
    patterns = [m.pattern for m in f.metadata if getattr(m, "pattern", None)]
    patterns = {"pattern": patterns[-1]} if patterns else {}
    return f.annotation, Field(f.default, title=name, description=with_bounds(f.description, **_bounds_of(f.metadata)),
                               **_bounds_of(f.metadata), **patterns)


PaidBackendOptions = create_model(
    "PaidBackendOptions", __module__=__name__,
    __config__=ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True),
    __validators__={"_a_name_not_a_key": field_validator("api_key_secret", mode="before")(
        _refusing(secret_name_problem))},
    __doc__="Paid backends only: retries, pacing, budget and key. None of these change the output.",
    **{name: _field(name) for name in PAID_FIELDS},
)
_PAID_HELP = "Settings only paid backends use (gemini): retries, pacing, spending cap, key."
FORM_FIELDS = tuple(n for n in RunParameters.model_fields if n not in PAID_FIELDS) + (PAID_GROUP,)


def form_signature() -> inspect.Signature:
    """The flow's signature: RunParameters' fields, each a keyword with its type, bounds and default."""
    out = []
    for name in FORM_FIELDS:
        if name == PAID_GROUP:
            annotation, default, description = PaidBackendOptions, PaidBackendOptions(), _PAID_HELP
            metadata = []
        else:
            f = RunParameters.model_fields[name]
            annotation, metadata = f.annotation, list(f.metadata)
            description = with_bounds(f.description, **_bounds_of(f.metadata))
            default = inspect.Parameter.empty if f.is_required() else f.get_default(call_default_factory=True)
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                     annotation=Annotated[annotation, *metadata, Field(description=description)]))
    return inspect.Signature(out, return_annotation=dict)


def form_docstring(summary: str) -> str:
    """``summary`` with an Args section (Prefect reads the form's descriptions from it)."""
    lines = [summary, "", "Args:"]
    for name in FORM_FIELDS:
        f = RunParameters.model_fields.get(name)
        text = _PAID_HELP if f is None else with_bounds(f.description, **_bounds_of(f.metadata))
        lines.append(f"    {name}: {text}")
    return "\n".join(lines)


def run_parameters(form: dict) -> RunParameters:
    """The run's parameters from the form's values (a flow run's keyword arguments)."""
    values = dict(form)
    paid = values.pop(PAID_GROUP, None) or {}
    paid = (paid if isinstance(paid, PaidBackendOptions) else PaidBackendOptions(**paid)).model_dump()
    for name in _ZERO_IS_NONE:
        paid[name] = paid[name] or None
    return RunParameters(**values, **paid)


def form_values(params: RunParameters, *, json: bool = False, exclude_defaults: bool = False) -> dict:
    """The form's values of ``params`` (the flow's keyword arguments; JSON for a deployment)."""
    mode = "json" if json else "python"
    top = params.model_dump(mode=mode, exclude=set(PAID_FIELDS), exclude_defaults=exclude_defaults)
    if not json:  # keep the sub-models as models
        top.update({k: getattr(params, k) for k in ("thresholds", "calibrated_thresholds") if k in top})
    paid = PaidBackendOptions(**{k: (getattr(params, k) or 0) if k in _ZERO_IS_NONE else getattr(params, k)
                              for k in PAID_FIELDS})
    g = paid.model_dump(mode=mode, exclude_defaults=exclude_defaults)
    if g or not exclude_defaults:
        top[PAID_GROUP] = g if json else paid
    return top
