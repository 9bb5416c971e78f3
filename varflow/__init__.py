"""varflow's Prefect-free core: image I/O, generator backends, metrics, hashing, dedup, policy.

Nothing in this package imports Prefect, DuckDB or pyarrow (a test enforces it): flows and tasks
compose the core, storage records what it produced.
"""

__version__ = "0.1.0"
