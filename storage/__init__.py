"""The only package that knows DuckDB and Parquet. See SCHEMA.md for every table and column."""

from varflow.storage.schema import SCHEMA_VERSION, SCHEMAS, TABLES
from varflow.storage.store import DUCKDB_FILE, Store

__all__ = ["DUCKDB_FILE", "SCHEMAS", "SCHEMA_VERSION", "Store", "TABLES"]
