"""Real Prefect servers for tests: ``prefect server start`` on loopback, on SQLite or PostgreSQL.

One way to start a server, wait until it answers and stop it (``running_server``); the fixtures
in conftest.py choose its database and options. The PostgreSQL variant is a fresh database on
127.0.0.1:5432 (trust auth, user postgres), created and dropped around the server
(``postgres_database``): the server migrates it on start, as a production one does.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER_START_TIMEOUT_S = 120  # healthy in 5-15 s alone; a loaded 2-core machine takes longer
SERVER_STOP_TIMEOUT_S = 20
HEALTH_POLL_S = 0.5

POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER = "127.0.0.1", 5432, "postgres"
POSTGRES_CONNECT_TIMEOUT_S = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quiet_env(prefect_home: Path) -> dict:
    """The environment of a test server and its clients: its own PREFECT_HOME, no telemetry, no
    UI, shutdown noise silenced (docs: REFERENCE.md, Prefect), no outside server."""
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_LOGGING_LEVEL": "WARNING", "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
    env.pop("PREFECT_SERVER_DATABASE_CONNECTION_URL", None)
    return env


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def running_server(prefect_home: Path, *, ui: bool = False, server_env: dict | None = None) -> Iterator[dict]:
    """``prefect server start`` on a free loopback port, until the block ends.

    ``server_env`` goes to the server only (its database URL, server settings). With ``ui`` the
    UI is served and PREFECT_API_URL is in the server's own environment: on a port other than
    4200 the UI is blank without it. Yields url, api, env (for clients: PREFECT_API_URL set),
    log (the server's output) and start_s (seconds until it answered /health).
    """
    url = f"http://127.0.0.1:{free_port()}"
    api = f"{url}/api"
    env = quiet_env(prefect_home)
    if ui:
        env.update(PREFECT_UI_ENABLED="true", PREFECT_API_URL=api)
    log_path = prefect_home / "server.log"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
             url.rsplit(":", 1)[1]],
            env={**env, **(server_env or {})}, stdout=log, stderr=subprocess.STDOUT)
        try:
            while not _healthy(api):
                if proc.poll() is not None or time.perf_counter() - t0 > SERVER_START_TIMEOUT_S:
                    raise RuntimeError(f"prefect server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(HEALTH_POLL_S)
            yield {"url": url, "api": api, "env": {**env, "PREFECT_API_URL": api}, "log": log_path,
                   "start_s": round(time.perf_counter() - t0, 1)}
        finally:
            proc.terminate()
            try:
                proc.wait(SERVER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def postgres_url(database: str) -> str:
    return f"postgresql+asyncpg://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database}"


async def _admin(sql: str) -> None:
    import asyncpg  # installed with Prefect (its PostgreSQL driver)

    con = await asyncpg.connect(host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, database="postgres",
                                timeout=POSTGRES_CONNECT_TIMEOUT_S)
    try:
        await con.execute(sql)
    finally:
        await con.close()


async def query_postgres(database: str, sql: str, *args) -> list[dict]:
    """Rows of ``sql`` in ``database``: what the server really wrote there."""
    import asyncpg

    con = await asyncpg.connect(host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, database=database,
                                timeout=POSTGRES_CONNECT_TIMEOUT_S)
    try:
        return [dict(r) for r in await con.fetch(sql, *args)]
    finally:
        await con.close()


def postgres_unavailable() -> str | None:
    """Why PostgreSQL on 127.0.0.1:5432 cannot be used (a one-line reason), or None."""
    try:
        asyncio.run(_admin("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the reason
        return (f"PostgreSQL at {POSTGRES_HOST}:{POSTGRES_PORT} (user {POSTGRES_USER}, trust auth) is not "
                f"usable ({type(exc).__name__}: {exc}); start it to run the PostgreSQL server tests")
    return None


@contextmanager
def postgres_database(prefix: str = "varflow_test") -> Iterator[str]:
    """A fresh, uniquely named database for the block; dropped after, even with clients still on it."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
