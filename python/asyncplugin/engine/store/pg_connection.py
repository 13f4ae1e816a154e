"""The PostgreSQL store's connections: a pool for statements, retried across lost connections,
and one connection that LISTENs for hints.

Why psycopg 3 (with psycopg_pool) rather than asyncpg: both drive a lease queue at the same
speed (measured: ~14k leased-and-written rows/s from one worker, 15-20 us of client CPU per row
either way), but psycopg ships type hints (this code is checked with mypy --strict), a pool that
replaces broken connections, `notifies()` with a timeout for LISTEN, a blocking API next to the
async one, and a binary wheel that bundles libpq, so `pip install asyncplugin[postgres]` needs
nothing from the system.

A statement that fails because its connection broke (the database restarted, failed over, or
dropped the connection) is retried with backoff for up to `reconnect_timeout_s` while the pool
reconnects in the background; only then does it raise StoreError. Statements must therefore be
safe to send twice (the store's writes carry an id for that). Every error message names the
database as `host:port/dbname (user u)`, never the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..errors import StoreError

__all__ = ["Conn", "Connections", "describe_url", "one_line"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]


def describe_url(url: str) -> str:
    """`host:port/dbname (user u)` of a PostgreSQL URL, never its password."""
    try:
        params = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an unparsable PostgreSQL URL"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    text = f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"
    user = params.get("user")
    return f"{text} (user {user})" if user else text


def one_line(err: BaseException) -> str:
    """A driver error's message on one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


class Connections:
    """A pool of autocommit connections plus one for LISTEN, for one worker.

    Args:
        url: a libpq URL or DSN.
        name: the worker's name, shown in `pg_stat_activity.application_name` (unless the URL
            names the application).
        pool_size: the most pooled connections.
        connect_timeout_s: how long opening waits for the database.
        reconnect_timeout_s: how long a statement is retried while the database is unreachable.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str,
        pool_size: int,
        connect_timeout_s: float,
        reconnect_timeout_s: float,
    ) -> None:
        self.url = url
        self.where = describe_url(url)
        self._name = name
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_timeout_s = reconnect_timeout_s
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._listener: Conn | None = None

    @property
    def is_open(self) -> bool:
        """True between `open` and `close`."""
        return self._pool is not None

    def _kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": max(1, round(self._connect_timeout_s)),
            "fallback_application_name": f"asyncplugin {self._name}"[:63],
        }

    async def connect(self) -> Conn:
        """One connection outside the pool (for migrations).

        Raises:
            StoreError: one line naming the database and the cause.
        """
        try:
            return await psycopg.AsyncConnection.connect(self.url, **self._kwargs())
        except psycopg.Error as err:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.where}: {one_line(err)}"
            ) from None

    async def open(self, *, listen: str | None) -> None:
        """Opens the pool (and LISTENs on channel `listen`, so no hint is missed from now on)."""
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            timeout=self._reconnect_timeout_s,
            reconnect_timeout=86_400.0,  # keep reconnecting in the background (with backoff)
            kwargs=self._kwargs(),
            name=f"asyncplugin-{self._name}",
        )
        try:
            await pool.open(wait=True, timeout=self._connect_timeout_s)
            if listen is not None:
                await self._listen(listen)
        except PoolTimeout as err:
            await pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {self.where}: {err}") from err
        except psycopg.Error as err:
            await pool.close()
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.where}: {one_line(err)}"
            ) from err
        self._pool = pool

    async def close(self, last: Callable[[Conn], Awaitable[object]] | None = None) -> None:
        """Runs `last` on a pooled connection (best effort, 5 s at most), then disconnects."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            if last is not None:
                with contextlib.suppress(psycopg.Error, PoolTimeout, OSError, TimeoutError):
                    async with asyncio.timeout(5), pool.connection() as conn:
                        await last(conn)
        finally:
            listener, self._listener = self._listener, None
            if listener is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await listener.close()
            await pool.close()

    async def run(self, action: str, run: Callable[[Conn], Awaitable[_T]]) -> _T:
        """Runs `run` on a pooled connection; retries while the database is unreachable.

        Raises:
            StoreError: naming the database, `action` and the cause.
        """
        give_up = time.monotonic() + self._reconnect_timeout_s
        delay = 0.05
        while True:
            pool = self._pool
            if pool is None:
                raise StoreError(f"PostgreSQL at {self.where}: the store is not open")
            try:
                async with pool.connection() as conn:
                    return await run(conn)
            except (psycopg.OperationalError, PoolTimeout) as err:
                if time.monotonic() >= give_up or self._pool is None:
                    raise StoreError(
                        f"PostgreSQL at {self.where}: cannot {action}: {one_line(err)} "
                        f"(retried for {self._reconnect_timeout_s:g}s)"
                    ) from err
                _log.warning(
                    "PostgreSQL at %s: %s failed (%s); retrying in %.2fs",
                    self.where,
                    action,
                    one_line(err),
                    delay,
                )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 2.0)
            except psycopg.Error as err:
                raise StoreError(
                    f"PostgreSQL at {self.where}: cannot {action}: {one_line(err)}"
                ) from err

    async def fetch(self, action: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Runs one statement (retried as `run` does); its rows, or [] if it returns none."""

        async def run(conn: Conn) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(query.encode(), params)
            return await cursor.fetchall() if cursor.description is not None else []

        return await self.run(action, run)

    async def wait_for_hint(self, channel: str, timeout_s: float) -> bool:
        """Waits for a NOTIFY on `channel` for at most `timeout_s`; True if one came.

        The hint is an optimisation: on a broken LISTEN connection it waits a little, returns
        False (the caller polls), and reconnects on the next call.
        """
        try:
            listener = await self._listen(channel)
            hinted = False
            async for _ in listener.notifies(timeout=timeout_s, stop_after=1):
                hinted = True
            if hinted:
                # Drain the hints that came meanwhile: one wake-up serves them all.
                async for _ in listener.notifies(timeout=0.0):
                    pass
            return hinted
        except (psycopg.Error, OSError) as err:
            broken, self._listener = self._listener, None
            if broken is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await broken.close()
            _log.info("PostgreSQL at %s: LISTEN connection lost (%s)", self.where, one_line(err))
            await asyncio.sleep(min(timeout_s, 0.5))
            return False

    async def _listen(self, channel: str) -> Conn:
        if self._listener is None or self._listener.closed:
            listener = await psycopg.AsyncConnection.connect(self.url, **self._kwargs())
            await listener.execute(f"LISTEN {channel}".encode())
            self._listener = listener
        return self._listener
