"""Prefect deployments of varflow's flow (scheduled folder runs, runs started from the UI)."""
