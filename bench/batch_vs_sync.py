"""The same folder through ``--backend gemini`` and ``--backend gemini-batch`` against the fake
Gemini server (tests/fake_gemini.py): what each records and what it costs, side by side.

    .venv/bin/python bench/batch_vs_sync.py [--photos N] [--count C]

Prints, per backend, the images finished, variations judged and accepted, generation rows and
their recorded cost, which columns of ``variations`` and ``attempts`` are filled, and the cost
ratio batch / synchronous (the Batch API's price is half: expect 0.50).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")


def filled(store, table: str, run_ids: list[str]) -> set[str]:
    cols = [r["column_name"] for r in store.query(f"SELECT column_name FROM (DESCRIBE {table})")]
    ids = ",".join(f"'{r}'" for r in run_ids)
    row = store.query(f"SELECT {', '.join(f'count({c}) AS {c}' for c in cols)} FROM {table} WHERE run_id IN ({ids})")[0]
    return {c for c, n in row.items() if n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--count", type=int, default=3)
    args = ap.parse_args()

    from conftest import skimage_photo
    from fake_gemini import FakeGemini
    from prefect.testing.utilities import prefect_test_harness
    from varflow.flows.collect_flow import batch_collect
    from varflow.flows.parameters import RunParameters
    from varflow.flows.variation_flow import run_local
    from varflow.storage import Store

    base = Path(tempfile.mkdtemp(prefix="varflow-batch-bench-"))
    (base / "photos").mkdir()
    for name in PHOTOS[: args.photos]:
        shutil.copy(skimage_photo(name), base / "photos" / name)
    results = {}
    with FakeGemini(api_key="bench-key") as fake, prefect_test_harness(server_startup_timeout=120):
        os.environ.update(GEMINI_API_KEY="bench-key", GOOGLE_GEMINI_BASE_URL=fake.base_url,
                          NO_PROXY="127.0.0.1,localhost")
        for backend in ("gemini", "gemini-batch"):
            p = RunParameters(input_dir=str(base / "photos"), output_dir=str(base / f"out-{backend}"),
                              home=str(base / f"home-{backend}"), backend=backend, count=args.count, level="medium",
                              adaptive=False)
            t0 = time.perf_counter()
            runs = [run_local(p)]
            while backend == "gemini-batch" and Store(p.home).batch_jobs(states=("submitted", "pending", "running")):
                runs += batch_collect(home=p.home)["runs"]
            store = Store(p.home)
            ids = [r["run_id"] for r in runs]
            q = lambda sql: store.query(sql.replace("IDS", ",".join(f"'{i}'" for i in ids)))[0]  # noqa: B023
            results[backend] = {
                "wall_s": time.perf_counter() - t0,
                "images_ok": q("SELECT count(*) AS n FROM images WHERE status = 'ok' AND run_id IN (IDS)")["n"],
                "judged": q("SELECT count(*) AS n FROM variations WHERE run_id IN (IDS)")["n"],
                "accepted": q("SELECT count(*) AS n FROM variations WHERE accepted AND run_id IN (IDS)")["n"],
                "calls": q("SELECT count(*) AS n FROM attempts WHERE NOT cache_hit AND run_id IN (IDS)")["n"],
                "cost_usd": q("SELECT sum(cost_usd) AS c FROM attempts WHERE run_id IN (IDS)")["c"] or 0.0,
                "variations_cols": filled(store, "variations", ids), "attempts_cols": filled(store, "attempts", ids),
            }
    shutil.rmtree(base, ignore_errors=True)
    sync, batch = results["gemini"], results["gemini-batch"]
    print(f"{args.photos} photos x count {args.count}, level medium, fake Gemini server")
    print(f"{'':14}{'images ok':>10}{'judged':>8}{'accepted':>9}{'calls':>7}{'cost USD':>10}{'wall s':>8}")
    for name, r in results.items():
        print(f"{name:14}{r['images_ok']:>10}{r['judged']:>8}{r['accepted']:>9}{r['calls']:>7}{r['cost_usd']:>10.4f}"
              f"{r['wall_s']:>8.1f}")
    print(f"cost ratio batch / synchronous: {batch['cost_usd'] / sync['cost_usd']:.3f}")
    print(f"cost per call ratio: {(batch['cost_usd'] / batch['calls']) / (sync['cost_usd'] / sync['calls']):.3f}")
    print(f"variations columns filled only by one: sync {sorted(sync['variations_cols'] - batch['variations_cols'])}, "
          f"batch {sorted(batch['variations_cols'] - sync['variations_cols'])}")
    print(f"attempts columns filled only by one: sync {sorted(sync['attempts_cols'] - batch['attempts_cols'])}, "
          f"batch {sorted(batch['attempts_cols'] - sync['attempts_cols'])}")


if __name__ == "__main__":
    main()
