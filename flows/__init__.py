"""Prefect flows composing the tasks, and the ``varflow`` command line."""

from varflow.tasks import prefect_defaults

prefect_defaults.apply()
