"""Thin Prefect tasks over the core, one module per stage: optimize, generate, score, dedup."""

from tasks import prefect_defaults

prefect_defaults.apply()
