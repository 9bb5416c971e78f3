"""The generator backend interface: what the local generator and Gemini both implement."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from varflow.settings import VARIATION_TYPES

CONCRETE_TYPES = tuple(t for t in VARIATION_TYPES if t != "random")


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


class GenerationError(Exception):
    """A generation attempt that produced no usable image.

    ``outcome`` is a stable code recorded in ``attempts.outcome``; ``retryable`` says whether
    trying the same request again can help. Messages must never contain secrets.
    """

    def __init__(self, message: str, *, outcome: str = "error", retryable: bool = False,
                 http_status: int | None = None, retry_after_s: float | None = None,
                 usage: "TokenUsage | None" = None):
        super().__init__(message)
        self.outcome = outcome
        self.retryable = retryable
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.usage = usage  # token usage of an answer that came back without a usable image


@runtime_checkable
class GeneratorBackend(Protocol):
    name: str  # "local", "gemini"
    model: str  # what the records call the model ("local-v1", "gemini-2.5-flash-image", ...)

    def generate(self, request: VariationRequest) -> GeneratedVariation: ...


def derive_seed(run_seed: int, image_id: str, attempt: int) -> int:
    """A per-attempt seed: stable for the same run seed, image and attempt; spread otherwise."""
    digest = hashlib.sha256(f"{run_seed}:{image_id}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def resolve_variation_type(variation_type: str, seed: int, *, among: tuple[str, ...] = CONCRETE_TYPES) -> str:
    """``random`` picks one of ``among`` (the types that apply to the photo: a backend's
    ``variation_types_for``) from the seed; other types pass through."""
    if variation_type not in VARIATION_TYPES:
        raise ValueError(
            f"unknown variation type {variation_type!r}; choose one of {', '.join(VARIATION_TYPES)}"
        )
    if variation_type != "random":
        return variation_type
    return among[seed % len(among)]


def variation_types_for(backend: object, source_path: str) -> tuple[str, ...]:
    """The concrete types ``backend`` can make of this photo (all of them unless the backend
    says otherwise: the local generator cannot remove an object a photo does not have)."""
    ask = getattr(backend, "variation_types_for", None)
    return tuple(ask(source_path)) if ask is not None else CONCRETE_TYPES
