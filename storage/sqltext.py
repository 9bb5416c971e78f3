"""Paths and names as DuckDB data: a string literal by DuckDB's quoting rule, a path with its
glob characters escaped.

A ``CREATE VIEW`` cannot take bound parameters, so a path that goes into a view's SQL is quoted
here (a single quote doubled: DuckDB's string literals have no other escape). DuckDB globs every
path it is given to read, bound or not (``read_parquet(?)`` included), so ``*``, ``?`` and ``[``
in a data directory's name are escaped as one-character classes (``[*]``, ``[?]``, ``[[]``;
DuckDB has no backslash escape in a glob: measured with duckdb 2.0.1).
"""

from __future__ import annotations

import re
from pathlib import Path

_GLOB_CHARS = re.compile(r"([*?\[])")


def sql_literal(text: str) -> str:
    """``text`` as a DuckDB string literal."""
    if "\x00" in text:
        raise ValueError("a NUL character cannot be part of a DuckDB string")
    return "'" + text.replace("'", "''") + "'"


def glob_literal(path: str | Path) -> str:
    """``path`` (POSIX form) as a DuckDB glob pattern that matches exactly that path."""
    text = path.as_posix() if isinstance(path, Path) else str(path)
    return _GLOB_CHARS.sub(r"[\1]", text)

