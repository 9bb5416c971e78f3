"""``python -m varflow.flows.cli``: the same as the ``varflow`` command."""

import sys

from varflow.flows.cli import main

sys.exit(main())
