"""The CLI with a full disk injected at one write site: ``python tests/enospc_child.py SITE N varflow-args...``.

The N-th write at SITE fails with ENOSPC, as a full disk would: ``parts`` (an image row's Parquet
part), ``output`` (an accepted variation moved to the output folder), ``cache`` (a generation
kept in the cache), ``claims`` (an image's claim file)."""

import errno
import os
import shutil
import sys

site, nth, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
seen = {"n": 0}


def full(*where) -> None:
    seen["n"] += 1
    if seen["n"] == nth:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def when(test, fn, position=1):
    def wrapper(*args, **kwargs):
        if test(str(args[position] if len(args) > position else kwargs.get("dst", ""))):
            full()
        return fn(*args, **kwargs)
    return wrapper


if site == "parts":
    import pyarrow.parquet as pq
    pq.write_table = when(lambda p: "/tables/images/run-" in p and "/parts/" in p, pq.write_table)
elif site == "output":
    shutil.move = when(lambda p: "/out/" in p and "/_rejected/" not in p, shutil.move)
elif site == "cache":
    shutil.copyfile = when(lambda p: "/cache/" in p, shutil.copyfile)
elif site == "claims":  # the claim file's write, in varflow/runtime/claims.py only
    import types

    import varflow.runtime.claims

    def write(fd, data):
        full()
        return os.write(fd, data)

    varflow.runtime.claims.os = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    varflow.runtime.claims.os.write = write
else:
    raise SystemExit(f"unknown site {site}")

from varflow.flows.cli import main  # noqa: E402 - after the injection

sys.exit(main(argv))
