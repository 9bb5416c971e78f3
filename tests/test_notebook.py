"""Every query cell of the SQL notebook runs against a real store and returns rows."""

import json
import re
from pathlib import Path

import duckdb
import pytest

from storage import Store

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quality.ipynb"


def query_cells() -> list[str]:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    out = []
    for c in cells:
        src = "".join(c["source"])
        m = re.match(r'sql\((?:"""|")(.*?)(?:"""|")\)\s*$', src.strip(), re.DOTALL)
        if c["cell_type"] == "code" and m:
            out.append(m.group(1))
    return out


def test_notebook_is_committed_without_outputs():
    for c in json.loads(NOTEBOOK.read_text())["cells"]:
        assert c.get("outputs", []) == [] and c.get("execution_count") is None


def test_every_query_runs_on_a_real_runs_store(tmp_path):
    from test_storage import image, variation  # real rows through the real store

    store = Store(tmp_path).initialize()
    store.write_image_result(image("r1", "a"), [variation("r1", "a", 0), variation("r1", "a", 1, accepted=False)])
    queries = query_cells()
    assert len(queries) >= 8
    con = duckdb.connect(str(store.duckdb_path), read_only=True)
    for q in queries:
        con.execute(q).fetchall()  # raises on a wrong table or column name
