"""The store from Python: ``varflow.open_store(home)`` (docs/api.md).

The connection is the analyst's own: an in-memory DuckDB database holding the store's views
(``Store.lens``), with every DuckDB feature (their own tables, ATTACH, COPY, extensions). It is
not the sandboxed connection of ``varflow sql``, which runs one query typed at a terminal: this
one is code the analyst writes and runs as themselves. It never opens ``varflow.duckdb``, so it
takes no lock (a run, a notebook and the ``duckdb`` CLI go on reading and writing) and nothing
it does reaches the store's records: the views read the Parquet files, which it does not write.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from varflow.storage.analysis import has_store, open_lens
from varflow.storage.schema import TABLES

from varflow.errors import InputError
from varflow.settings import default_home


class Lens:
    """An open view of one data directory: ``sql`` and ``table`` return DuckDB relations
    (``.df()``, ``.pl()``, ``.arrow()``, ``.fetchall()``, or more SQL on top)."""

    def __init__(self, home: str | Path | None = None):
        self.home = Path(home).expanduser().resolve() if home is not None else default_home().resolve()
        self.connection: duckdb.DuckDBPyConnection = open_lens(self.home)
        self.tables = TABLES
        self.empty = not has_store(self.home)  # no run has written here yet: every table has no rows

    def sql(self, query: str, params: list | dict | None = None) -> duckdb.DuckDBPyRelation:
        """The query as a relation; ``params`` binds ``?`` or ``$name`` placeholders (never format values in)."""
        return self.connection.sql(query, params=params)

    def table(self, name: str) -> duckdb.DuckDBPyRelation:
        """One of the store's tables (``runs``, ``images``, ``variations``, ...) as a relation."""
        if name not in self.tables:
            raise InputError(f"the store has no table {name!r}; its tables are {', '.join(self.tables)}")
        return self.connection.table(name)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Lens:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<varflow store {self.home}{' (empty)' if self.empty else ''}>"
