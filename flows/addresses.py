"""Parameters that could carry a credential or make the worker connect somewhere: the addresses
(``dask_address``, ``shared_limits``) hold no credential and are the operator's; the API key's
Secret block (``api_key_secret``) is a block's name, never the key.

Three rules, all checked before anything is recorded or connects:

1. No credential in a URL. A flow run's parameters are recorded by Prefect (its database, the
   UI, ``varflow serve --dry-run``), so a password typed into one is already kept by the time a
   run reads it. The fields carry ``NO_CREDENTIALS`` as a pattern in the flow's parameter schema
   (Prefect's server answers 409 naming the field to a run created from the UI or the API), the
   parameter model refuses one with a message saying where a password goes (the CLI and
   ``varflow serve`` refuse it before creating a flow run), and so does the flow itself.
2. The operator chooses where a worker connects: the worker's client would talk to, and unpickle
   results from, a Dask scheduler, and would send the run's limits to a Redis. A deployment's run
   may use the address its deployment pins (the deployment's own parameters) or one the worker's
   environment allows (``VARFLOW_ALLOWED_ADDRESSES``, comma-separated); another one, set by
   whoever created the run, is refused. A run that is not a deployment's (``varflow run``, a
   flow called from Python) is started by whoever runs the code: theirs to choose. Buckets go by
   the same rule (``input_dir``/``output_dir`` as ``s3://bucket/...``): a deployment's run reads and
   writes only the buckets its deployment names or the worker allows (``s3://bucket`` in
   ``VARFLOW_ALLOWED_ADDRESSES``), so nobody can send another bucket's photos to a paid backend,
   or write into one, by creating a run.
3. ``api_key_secret`` names a Prefect Secret block, so it takes Prefect's rule for block names
   (lowercase letters, digits, dashes): a key pasted there (``AIza...``) is refused, not recorded.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from varflow.images.locations import bucket_root, is_url

ADDRESS_FIELDS = ("dask_address", "shared_limits")
BUCKET_FIELDS = ("input_dir", "output_dir")  # a bucket URL there is read or written by the worker
ALLOW_ENV = "VARFLOW_ALLOWED_ADDRESSES"
# No user info (user:password@) and no query (redis://host/0?password=...): JSON Schema's pattern
# (Prefect's server) and pydantic's both read it; no look-around, which pydantic's engine lacks.
NO_CREDENTIALS = r"^[^@?]*$"
HOW_TO_PASS = ("give scheme://host:port[/db] only and put the password in the worker's environment "
               "(VARFLOW_REDIS_PASSWORD for Redis) or a Prefect Secret block")


SECRET_NAME = r"^[a-z0-9-]*$"  # Prefect's rule for a block's name


def secret_name_problem(field: str, value: str) -> str | None:
    """Why ``value`` cannot name a Secret block (it may be the key itself), or None."""
    import re

    if re.fullmatch(SECRET_NAME, value or ""):
        return None
    return (f"{field}: give the name of a Prefect Secret block (lowercase letters, digits, dashes), not the key: "
            "a run's parameters are recorded by Prefect; keep the key in the block, or in GEMINI_API_KEY on the worker")


def credential_problem(field: str, value: str) -> str | None:
    """Why ``value`` cannot be ``field``'s value (it carries a credential), or None. The value
    itself is never part of the message."""
    text = (value or "").strip()
    if not text or ("@" not in text and "?" not in text):
        return None
    parts = urlsplit(text)
    where = parts.hostname or "the address"
    return (f"{field}: the URL for {where} carries a user, password or query, and a run's parameters are "
            f"recorded by Prefect: {HOW_TO_PASS}")


def allowed_addresses() -> set[str]:
    """The addresses this worker's operator allows any run to use (``VARFLOW_ALLOWED_ADDRESSES``)."""
    return {a.strip() for a in os.environ.get(ALLOW_ENV, "").replace("\n", ",").split(",") if a.strip()}


def deployment_pins() -> dict[str, set[str]] | None:
    """The addresses the current flow run's deployment pins, by field: its parameters' and its
    schedules' (both set by whoever made the deployment); None when the run is not a
    deployment's (``varflow run``, a flow called from Python). Read from the API: the runtime's
    ``deployment.parameters`` are the run's own."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.runtime import deployment

    if not deployment.id:
        return None
    with get_client(sync_client=True) as client:
        d = client.read_deployment(UUID(str(deployment.id)))
    sets = [d.parameters or {}] + [s.parameters or {} for s in (d.schedules or [])]
    return {field: {str(p[field]).strip() for p in sets if p.get(field)} for field in ADDRESS_FIELDS + BUCKET_FIELDS}


def refuse_unpinned_addresses(params, pins: dict[str, set[str]] | None, allowed: set[str]) -> None:
    """Raise ValueError when a deployment's run (``pins`` not None) asks for an address that its
    deployment does not pin and the worker does not allow."""
    if pins is None:
        return
    for field in ADDRESS_FIELDS:
        value = (getattr(params, field) or "").strip()
        if not value or "://" not in value:  # empty, or "file": nothing to connect to
            continue
        if value in pins.get(field, set()) or value in allowed:
            continue
        raise ValueError(f"{field}: a flow run may connect only where its deployment pins ({field} in the "
                         f"deployment's parameters) or where the worker allows ({ALLOW_ENV}); "
                         f"{urlsplit(value).hostname or value!r} is neither, so the run is refused")
    refuse_unpinned_buckets(params, pins, allowed)


def _buckets(values) -> set[str]:
    return {bucket_root(v) for v in values if is_url(v) and not v.lower().startswith("file:")}


def refuse_unpinned_buckets(params, pins: dict[str, set[str]], allowed: set[str]) -> None:
    """Raise ValueError when a deployment's run names a bucket its deployment does not name (as
    its input or output) and the worker does not allow."""
    known = _buckets(v for field in BUCKET_FIELDS for v in pins.get(field, set())) | _buckets(allowed)
    for field in BUCKET_FIELDS:
        for bucket in _buckets([(getattr(params, field) or "").strip()]) - known:
            raise ValueError(f"{field}: a flow run may read and write only the buckets its deployment names "
                             f"(input_dir or output_dir in the deployment's parameters) or the worker allows "
                             f"({bucket} in {ALLOW_ENV}); {bucket} is neither, so the run is refused")


def check_run_addresses(params) -> None:
    """The flow's check: refuse an address the operator did not choose (the deployment is read
    from the API only when the run asks to connect somewhere)."""
    if any("://" in (getattr(params, field) or "") for field in ADDRESS_FIELDS + BUCKET_FIELDS):
        refuse_unpinned_addresses(params, deployment_pins(), allowed_addresses())
