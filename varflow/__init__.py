"""varflow: folders of images in, scored and de-duplicated variations out.

This package's core (its subpackages but flows, tasks, storage and deployments) imports neither
Prefect nor DuckDB nor pyarrow (tests/test_layering.py checks it): flows and tasks compose it,
storage records what it produced. ``import varflow`` loads only the errors below.
"""

from varflow.errors import BackendError, ConfigurationError, InputError, StoreError, VarflowError

__version__ = "0.1.0"
__all__ = ["BackendError", "ConfigurationError", "InputError", "StoreError", "VarflowError", "__version__"]
