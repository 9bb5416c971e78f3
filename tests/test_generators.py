"""The backend registry and the capabilities a run asks of a backend before building it."""

from __future__ import annotations

import json

import pytest

from varflow.generation.backends import (
    BACKENDS,
    DEFAULT_BACKEND,
    REGISTRY,
    Backend,
    TokenUsage,
    VariationRequest,
    backend_class,
    gemini,
    make_backend,
    model_name,
)


@pytest.mark.parametrize("name", BACKENDS)
def test_every_registered_backend_declares_its_capabilities(name):
    cls = backend_class(name)
    assert issubclass(cls, Backend) and cls.name == name
    assert isinstance(cls.default_model, str) and cls.default_model
    assert isinstance(cls.remote, bool) and isinstance(cls.can_batch, bool)
    assert cls.estimate_cost(cls.default_model) is not None  # a default model has a price
    assert model_name(name) == cls.default_model
    assert model_name(name, " models/x ") == "x"


def test_the_registry_is_the_one_list_of_backends():
    assert tuple(REGISTRY) == BACKENDS and DEFAULT_BACKEND == BACKENDS[0] == "local"
    with pytest.raises(ValueError, match="unknown backend 'dall-e'; choose one of local, gemini"):
        make_backend("dall-e")


def test_the_local_backend_is_offline_and_free():
    local = make_backend("local")
    assert (local.remote, local.can_batch, local.model) == (False, False, "local-v1")
    assert local.estimate_cost("local-v1", TokenUsage(10, 10, 20)) == 0.0
    local.check()  # nothing to check
    req = VariationRequest("i", "s.png", "style_change", "warm", 3, 0, "o.png")
    assert local.retry_prompt("warm", 2) == "warm" and local.sent_prompt(req) == "warm"


def test_the_gemini_backend_is_remote_priced_and_rewords(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "AIza" + "x" * 35)
    g = make_backend("gemini")
    assert (g.remote, g.can_batch, g.model) == (True, False, gemini.DEFAULT_MODEL)
    usage = TokenUsage(258, 1290, 1548)
    assert g.estimate_cost("gemini-3-pro-image") == gemini.estimate_cost("gemini-3-pro-image")
    assert g.estimate_cost(g.model, usage) == gemini.estimate_cost(g.model, usage)
    assert g.estimate_cost("unknown-model") is None
    req = VariationRequest("i", "s.png", "style_change", "snow", 3, 0, "o.png")
    assert g.sent_prompt(req) == gemini.build_prompt("style_change", "snow", 3)
    assert g.retry_prompt("snow", 1) == gemini.retry_prompt("snow", 1) != "snow"


def test_the_cli_offers_the_registered_backends():
    from varflow.flows.cli import build_parser
    from varflow.flows.parameters import RunParameters

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    (backend,) = [a for a in run._actions if a.dest == "backend"]
    assert tuple(backend.choices) == BACKENDS
    assert RunParameters(input_dir="x").backend == DEFAULT_BACKEND


def test_varflow_models_asks_the_backend(capsys):
    from varflow.flows.cli import main

    assert main(["models", "--backend", "local", "--json"]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["local-v1"]
