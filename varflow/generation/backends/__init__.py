"""Generator backends and their registry: the one place that maps a name to a backend.

Adding a backend is one module in this package (a class deriving from ``base.Backend``) and one
line in ``REGISTRY``. Nothing outside this package names a backend: runs, the CLI and the
parameters ask the registry (``BACKENDS``, ``backend_class``) and the class's capabilities.
"""

from __future__ import annotations

from importlib import import_module

from varflow.errors import ConfigurationError
from varflow.generation.backends.base import (
    FATAL_OUTCOMES,
    PROMPT_CHANGE_OUTCOMES,
    Backend,
    GeneratedVariation,
    GenerationError,
    GeneratorBackend,
    ModelInfo,
    TokenUsage,
    VariationRequest,
    derive_seed,
    resolve_variation_type,
)

# name -> "module:Class", imported on first use (a local run never imports the Gemini SDK).
REGISTRY: dict[str, str] = {
    "local": "varflow.generation.backends.local:LocalGenerator",
    "gemini": "varflow.generation.backends.gemini:GeminiGenerator",
    "gemini-batch": "varflow.generation.backends.gemini_batch:GeminiBatchGenerator",
}
BACKENDS = tuple(REGISTRY)
DEFAULT_BACKEND = BACKENDS[0]


def backend_class(name: str) -> type[GeneratorBackend]:
    """The class registered as ``name``: its capabilities, without building it."""
    try:
        module, cls = REGISTRY[name].split(":")
    except KeyError:
        raise ConfigurationError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}") from None
    return getattr(import_module(module), cls)


def make_backend(name: str, **options) -> GeneratorBackend:
    return backend_class(name)(**options)


def model_name(name: str, model: str | None = None) -> str:
    """The model a run of backend ``name`` records: ``model`` as the backend spells it, else its default."""
    if model:
        return model.strip().removeprefix("models/")
    return backend_class(name).default_model


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "FATAL_OUTCOMES",
    "PROMPT_CHANGE_OUTCOMES",
    "REGISTRY",
    "Backend",
    "GeneratedVariation",
    "GenerationError",
    "GeneratorBackend",
    "ModelInfo",
    "TokenUsage",
    "VariationRequest",
    "backend_class",
    "derive_seed",
    "make_backend",
    "model_name",
    "resolve_variation_type",
]
