"""Run the flow in a child process with parameters the CLI does not expose (e.g. an open
quality gate): ``python tests/flow_child.py '<RunParameters as JSON>'``. Prints the summary as
one JSON line after ``SUMMARY``. With ``PREFECT_API_URL`` set (the session's ``prefect_api``),
the child skips starting a temporary Prefect server."""

import json
import sys

from varflow.flows.parameters import RunParameters
from varflow.flows.variation_flow import run_local

if __name__ == "__main__":
    summary = run_local(RunParameters(**json.loads(sys.argv[1])))
    print("SUMMARY " + json.dumps(summary, default=str), flush=True)
