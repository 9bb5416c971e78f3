"""Thin Prefect tasks over the core: retries, cache policy, names. One module per task:
``optimize``, ``generate`` (one generation attempt) and ``image`` (one image's pipeline)."""

from varflow.tasks import prefect_defaults

prefect_defaults.apply()
