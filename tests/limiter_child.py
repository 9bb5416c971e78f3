"""Processes that share one RateLimiter: each takes N slots from a common start time.

``slot_times`` starts them and returns every slot's start time, sorted; it is used by
tests/test_gemini_flow.py and bench/gemini_throughput.py. Run as a script (what each child is):
``python limiter_child.py ROOT STATE RPM N START`` prints that child's slot times as JSON.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def slot_times(state: Path, rpm: float, per_process: int, procs: int, *, start_in: float,
               timeout: float) -> list[float]:
    go = time.time() + start_in
    children = [subprocess.Popen([sys.executable, __file__, str(ROOT), str(state), str(rpm),
                                  str(per_process), str(go)], stdout=subprocess.PIPE, text=True)
                for _ in range(procs)]
    return sorted(t for c in children for t in json.loads(c.communicate(timeout=timeout)[0]))


def _child(root: str, state: str, rpm: str, n: str, start: str) -> None:
    sys.path.insert(0, root)
    from varflow.runtime.ratelimit import RateLimiter

    lim = RateLimiter(state, rpm=float(rpm))
    go = float(start)
    while time.time() < go:
        time.sleep(0.001)
    out = []
    for _ in range(int(n)):
        lim.acquire()
        out.append(time.time())
    print(json.dumps(out))


if __name__ == "__main__":
    _child(*sys.argv[1:6])
