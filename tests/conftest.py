"""Fixtures shared by every suite: a real PostgreSQL for the PostgreSQL store's tests.

`pg_url` starts ONE throwaway server for the whole test run (on first use only, so runs that
need no PostgreSQL start none), from the machine's binaries, installing Debian's package when
they are missing and the run is root (see tests/pg_server.py); `DATABASE_URL` points the tests
at an existing server instead (its user must be allowed to create databases). The tests never
skip because PostgreSQL is missing: the fixture fails, saying how to fix it.

`pg_database` gives each test a fresh, empty namespace (schema) of its own on that server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.pg_server import PgServer, PgServerError

# The variables through which the environment the tests run in would reach the code under test
# (and every process the tests start, which inherit os.environ): a developer's shell with
# $ASYNCPLUGIN_ENGINE or $ASYNCPLUGIN_TOKEN set, a CI runner with OpenTelemetry or a proxy
# configured. Removed before any test module (or fixture that copies os.environ) is imported;
# the tests that exercise one set it themselves (monkeypatch, or the env of the process started).
_KEPT = {
    "ASYNCPLUGIN_REQUIRE_BENCH",  # how the run is made, not an input of the code under test
    "ASYNCPLUGIN_REQUIRE_NODE",
    "ASYNCPLUGIN_SCREENSHOTS_DIR",
}
_PROXIES = {"grpc_proxy", "http_proxy", "https_proxy", "all_proxy"}  # gRPC honours them
for _name in list(os.environ):
    if _name in _KEPT:
        continue
    if _name.startswith(("ASYNCPLUGIN_", "OTEL_")) or _name.lower() in _PROXIES:
        del os.environ[_name]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The URL of a PostgreSQL server's maintenance database, for the whole run."""
    existing = os.environ.get("DATABASE_URL")
    if existing:
        yield existing
        return
    try:
        server = PgServer.start()
    except PgServerError as err:
        pytest.fail(f"the PostgreSQL store's tests need a PostgreSQL server: {err}", pytrace=False)
    try:
        yield server.url()
    finally:
        server.stop()


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    """The URL of a fresh, empty namespace on the run's server (dropped after the test).

    A schema of its own, made the connection's search_path through the URL, rather than a
    database: creating a database costs ~0.5 s (it copies and checkpoints), a schema ~10 ms.
    """
    import psycopg

    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"'.encode())
    joiner = "&" if "?" in pg_url else "?"
    yield f"{pg_url}{joiner}options=-csearch_path%3D{name}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'.encode())
