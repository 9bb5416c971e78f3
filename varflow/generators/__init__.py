"""Generator backends. ``make_backend`` is the one place that chooses one by name."""

from __future__ import annotations

from varflow.generators.base import (
    GeneratedVariation,
    GenerationError,
    GeneratorBackend,
    TokenUsage,
    VariationRequest,
    derive_seed,
    resolve_variation_type,
)

BACKENDS = ("local", "gemini")


def make_backend(name: str, **options) -> GeneratorBackend:
    if name == "local":
        from varflow.generators.local import LocalGenerator

        return LocalGenerator(**options)
    if name == "gemini":
        from varflow.generators.gemini import GeminiGenerator

        return GeminiGenerator(**options)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "GeneratedVariation",
    "GenerationError",
    "GeneratorBackend",
    "TokenUsage",
    "VariationRequest",
    "derive_seed",
    "make_backend",
    "resolve_variation_type",
]
