"""Query rows as text: an aligned table for the terminal, CSV, JSON, and an HTML table for notebooks."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import numbers
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from varflow.safety.escaping import for_terminal

MAX_CELL = 60  # characters of one cell in a table; the CSV and JSON forms are never cut


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value == 0 or abs(value) >= 1:  # at most 3 decimals, none that say nothing
            return f"{value:.3f}".rstrip("0").rstrip(".")
        return f"{value:.4g}"  # four significant digits: a cost of 0.0388 stays 0.0388
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_cell: int = MAX_CELL,
                 row_count: bool = True) -> str:
    """An aligned plain-text table; numbers right-aligned, long cells cut with an ellipsis."""
    texts = [[_cut(cell_text(v), max_cell) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in texts)]) for i, c in enumerate(columns)]
    numeric = [bool(rows) and all(_is_number(r[i]) for r in rows if r[i] is not None) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in texts]
    if row_count:
        out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def format_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(["" if v is None else (v.isoformat() if isinstance(v, date) else v) for v in row])
    return buf.getvalue()


def format_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return json.dumps([dict(zip(columns, row)) for row in rows], indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def _cut(text: str, n: int) -> str:
    text = for_terminal(text)  # a table is for the terminal: no control character reaches it raw
    return text if len(text) <= n else text[: n - 1] + "…"


def html_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, max_rows: int = 50) -> str:
    """An escaped HTML table of the first ``max_rows`` rows (a notebook's rich display)."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td style=\"text-align:{'right' if _is_number(v) else 'left'}\">{esc(cell_text(v))}</td>"
                         for v in row) + "</tr>"
        for row in rows[:max_rows])
    more = (f"<p>… {len(rows) - max_rows} more rows</p>" if len(rows) > max_rows else "")
    return (f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p style=\"color:#666\">{len(rows)} row{'s' if len(rows) != 1 else ''}</p>{more}")


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Number) and not isinstance(v, bool)
