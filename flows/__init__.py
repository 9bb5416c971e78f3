"""Prefect flows composing the tasks, and the ``varflow`` command line."""

from tasks import prefect_defaults

prefect_defaults.apply()
