"""The generator backend interface: what every backend implements, and what a run may ask of it.

A backend is one class (usually deriving from :class:`Backend`) in one module of this package,
named in the registry of ``varflow/generation/backends/__init__.py``. Its capabilities are class
attributes and classmethods, so a run can ask them before building it (no key needed): the
default model, whether calls go to a service (then they are retried, paced and pre-flight
checked), the estimated price of a call, and whether it can batch. Outcome classification is the
backend's too: every failure is a :class:`GenerationError` whose ``outcome`` is one of the codes
of docs/gemini.md's decision table and whose ``retryable`` says whether another try can help.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from varflow.errors import BackendError, ConfigurationError
from varflow.kinds import CallOutcome
from varflow.settings import VARIATION_TYPES

CONCRETE_TYPES = tuple(t for t in VARIATION_TYPES if t != "random")

# Outcome codes every backend classifies into (``attempts.outcome``), grouped by what the run does.
FATAL_OUTCOMES = frozenset({CallOutcome.AUTH, CallOutcome.NOT_FOUND,
                            CallOutcome.QUOTA_DAY})  # no further call can succeed: stop
PROMPT_CHANGE_OUTCOMES = frozenset({CallOutcome.NO_IMAGE, CallOutcome.BAD_IMAGE})  # retried with ``retry_prompt``


@dataclass(frozen=True)
class VariationRequest:
    """One generation attempt. Small and path-based so it can cross a Prefect task boundary."""

    image_id: str  # SHA-256 of the source file's bytes
    source_path: str  # the optimized image to vary (never the full-size original)
    variation_type: str  # a concrete type: "random" is resolved before a request is made
    prompt: str  # the user's prompt; the local backend reads keywords from it
    seed: int  # per-attempt seed (derive_seed): same seed, same output
    attempt: int  # 0-based attempt index within the image
    output_path: str  # where to write; a backend may change only the suffix


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True)
class GeneratedVariation:
    output_path: str
    prompt_sent: str
    model: str
    width: int
    height: int
    detail: str = ""  # what was done (the local backend lists its operations)
    usage: TokenUsage | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str  # what ``model=`` takes
    display_name: str
    description: str = ""
    supported_actions: tuple[str, ...] = ()


class GenerationError(BackendError):
    """A generation attempt that produced no usable image.

    ``outcome`` is a stable code recorded in ``attempts.outcome``; ``retryable`` says whether
    trying the same request again can help. Messages must never contain secrets.
    """

    def __init__(self, message: str, *, outcome: str = "error", retryable: bool = False,
                 http_status: int | None = None, retry_after_s: float | None = None,
                 usage: TokenUsage | None = None):
        super().__init__(message)
        self.outcome = outcome
        self.retryable = retryable
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.usage = usage  # token usage of an answer that came back without a usable image


@runtime_checkable
class GeneratorBackend(Protocol):
    """What a run uses of a backend; :class:`Backend` gives every member but ``generate`` a default."""

    name: str  # the registry's name
    model: str  # what the records call the model
    default_model: str  # the model used when a run names none
    remote: bool  # calls go to a service: retried, paced by the shared rate limiter, pre-flight checked
    can_batch: bool  # takes many requests as one job (a batch API)

    def generate(self, request: VariationRequest) -> GeneratedVariation: ...

    @classmethod
    def estimate_cost(cls, model: str, usage: TokenUsage | None = None) -> float | None: ...

    def check(self) -> None: ...

    def retry_prompt(self, prompt: str, retry_number: int) -> str: ...

    def sent_prompt(self, request: VariationRequest) -> str: ...

    def variation_types_for(self, source_path: str) -> tuple[str, ...]: ...

    def list_models(self) -> list[ModelInfo]: ...

    def close(self) -> None: ...


@runtime_checkable
class BatchingBackend(GeneratorBackend, Protocol):
    """What a backend with ``can_batch`` adds (varflow/processing/batch.py uses it; docs/batch.md).

    ``batch_line(request, key)`` -> one JSONL line ``{"key", "request"}``; ``submit(lines, *,
    display_name, as_file, work_dir)`` -> (job name, input file or None); ``status(name)`` ->
    (an object with ``state`` in submitted/pending/running/succeeded/failed/cancelled/expired
    and ``message``, the job); ``answers(job)`` -> answers with ``index``, ``key``;
    ``answer_variation(answer, request, *, prompt)`` -> a GeneratedVariation or raises the
    classified GenerationError; ``resubmits(outcome)`` -> whether a request answered so is
    worth sending again; ``cancel(name)``.
    """

    def batch_line(self, request: VariationRequest, key: str) -> dict: ...

    def submit(self, lines: list[dict], *, display_name: str, as_file: bool, work_dir) -> tuple[str, str | None]: ...

    def status(self, name: str): ...

    def answers(self, job) -> list: ...

    def answer_variation(self, answer, request: VariationRequest, *,
                         prompt: str | None = None) -> GeneratedVariation: ...

    def resubmits(self, outcome: str) -> bool: ...

    def cancel(self, name: str) -> None: ...


class Backend:
    """A backend's defaults: offline, free, nothing to check, a retry sends the same prompt."""

    name: ClassVar[str]
    default_model: ClassVar[str]
    remote: ClassVar[bool] = False
    can_batch: ClassVar[bool] = False

    @classmethod
    def estimate_cost(cls, model: str, usage: TokenUsage | None = None) -> float | None:
        """Estimated USD of one call of ``model`` (``usage``: its tokens, when known); None when
        no price is known, so a spend cap cannot be enforced."""
        return 0.0

    @classmethod
    def synchronous_cost(cls, model: str, usage: TokenUsage | None = None) -> float | None:
        """What the call costs made on its own, not in a batch (a batch backend's discount
        shows beside it in the dry run)."""
        return cls.estimate_cost(model, usage)

    def check(self) -> None:
        """A free pre-flight check before any paid call; raises the classified GenerationError."""

    def retry_prompt(self, prompt: str, retry_number: int) -> str:
        """The prompt of retry ``retry_number`` after an outcome in PROMPT_CHANGE_OUTCOMES."""
        return prompt

    def sent_prompt(self, request: VariationRequest) -> str:
        """The text a call for ``request`` sends (recorded when the call fails)."""
        return request.prompt

    def variation_types_for(self, source_path: str) -> tuple[str, ...]:
        """The concrete types this backend can make of the photo (what ``random`` chooses among)."""
        return CONCRETE_TYPES

    def list_models(self) -> list[ModelInfo]:
        """The models this backend can use (a remote one: those its key can use)."""
        return [ModelInfo(self.model, self.model)]

    def close(self) -> None:
        """Release connections (a run's end)."""


def derive_seed(run_seed: int, image_id: str, attempt: int) -> int:
    """A per-attempt seed: stable for the same run seed, image and attempt; spread otherwise."""
    digest = hashlib.sha256(f"{run_seed}:{image_id}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def resolve_variation_type(variation_type: str, seed: int, *, among: tuple[str, ...] = CONCRETE_TYPES) -> str:
    """``random`` picks one of ``among`` (the types that apply to the photo: a backend's
    ``variation_types_for``) from the seed; other types pass through."""
    if variation_type not in VARIATION_TYPES:
        raise ConfigurationError(
            f"unknown variation type {variation_type!r}; choose one of {', '.join(VARIATION_TYPES)}"
        )
    if variation_type != "random":
        return variation_type
    return among[seed % len(among)]

