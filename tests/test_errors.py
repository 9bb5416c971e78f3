"""One base for the errors a user can act on; anything else is a bug and surfaces as one."""

import pytest
from varflow.flows import preflight, variation_flow
from varflow.flows.cli import run as cli_run
from varflow.storage.analysis import ReadOnlyQueryError

import varflow
from varflow.errors import BackendError, ConfigurationError, InputError, StoreError, VarflowError
from varflow.generation.backends import GenerationError, make_backend
from varflow.generation.backends.gemini import MissingApiKeyError
from varflow.images.imageio import ImageReadError
from varflow.settings import level_settings


def test_the_base_is_exported_and_every_kind_derives_from_it():
    assert varflow.VarflowError is VarflowError
    assert [issubclass(c, VarflowError) for c in (ConfigurationError, InputError, BackendError,
                                                  StoreError)] == [True] * 4
    # configuration and input errors stay ValueErrors: callers that caught ValueError keep working
    assert issubclass(ConfigurationError, ValueError) and issubclass(InputError, ValueError)
    assert issubclass(ImageReadError, InputError) and issubclass(ReadOnlyQueryError, InputError)
    assert issubclass(GenerationError, BackendError) and issubclass(MissingApiKeyError, ConfigurationError)


def test_configuration_problems_raise_configuration_errors():
    with pytest.raises(ConfigurationError, match="unknown quality level 'best'"):
        level_settings("best")
    with pytest.raises(ConfigurationError, match="unknown backend"):
        make_backend("no-such-backend")


@pytest.mark.parametrize("error, exits", [(ConfigurationError("no Prefect Secret block named 'k'"), True),
                                          (RuntimeError("a bug"), False), (ValueError("a bug too"), False)])
def test_the_cli_says_cannot_run_for_a_varflow_error_and_lets_a_bug_be_a_bug(monkeypatch, error, exits):
    def run_local(params):
        raise error

    monkeypatch.setattr(cli_run, "exit_unless_usable", lambda params: None)
    monkeypatch.setattr(preflight, "preflight", lambda params: None)
    monkeypatch.setattr(variation_flow, "run_local", run_local)
    if exits:
        with pytest.raises(SystemExit, match="varflow: cannot run: no Prefect Secret block named 'k'"):
            cli_run.execute(object(), as_json=True)
    else:
        with pytest.raises(type(error), match="a bug"):
            cli_run.execute(object(), as_json=True)
