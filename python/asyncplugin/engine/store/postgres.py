"""The PostgreSQL task store: several engine workers, on one or many machines, share its tasks.

    store = PostgresStore("postgresql://asyncplugin@db.internal/asyncplugin")
    async with Engine(store=store) as engine: ...       # in every worker process

Why psycopg 3 (with psycopg_pool) rather than asyncpg: both drive a lease queue at the same
speed (measured: ~14k leased-and-written rows/s from one worker, 15-20 us of client CPU per row
either way), but psycopg ships type hints (this code is checked with mypy --strict), a pool
that replaces broken connections, `notifies()` with a timeout for LISTEN, a blocking API next to
the async one, and a binary wheel that bundles libpq, so `pip install asyncplugin[postgres]`
needs nothing from the system.

What it adds to the `TaskStore` contract (see `SharedStore`):
  - leases: `lease_due` hands each due task to one worker with a token one greater than the
    task's last, and every write is fenced by that token (`pg_sql.WRITE`); a refused write
    raises LeaseLost, writes nothing, and is logged as a warning naming both tokens;
  - group commit: the `record` calls of concurrent steps that arrive while a write is in flight
    go to the database together in the next statement (one round trip for the batch), each
    still atomic on its own;
  - the database's clock: a record's `next_check_time - update_time` (the interval the engine
    chose) becomes `due_at = now() + interval`, so workers whose clocks disagree never make a
    task due early or twice;
  - reconnection: a statement that fails because the connection broke (a restart, a failover)
    is retried with backoff for up to `reconnect_timeout_s`; writes carry an id, so one retried
    after its first attempt was applied is recognised, not applied twice. Only after that time
    is StoreError raised (and the engine stops its work).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from asyncplugin.protocol import TaskState

from ..errors import LeaseLost, StoreError
from ..records import CheckRecord, TaskRecord
from . import pg_sql as sql
from .base import Lease, LeaseTerms, SharedStore
from .pg_batch import GroupCommit, Write, task_arrays, write_params
from .pg_schema import CREATE_VERSION_TABLE, LOCK_KEY, MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE
from .rows import check_from_row, task_from_row

__all__ = ["SCHEMA_VERSION", "PostgresStore", "describe_url"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Conn = psycopg.AsyncConnection[tuple[Any, ...]]
_PINNED: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "asyncplugin_pinned_lease", default=None
)


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


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


@dataclass(slots=True)
class _Held:
    token: int
    expires: float  # time.monotonic() by which the lease has surely expired on the database


class PostgresStore(SharedStore):
    """Tasks in a PostgreSQL database, shared by engine workers through leases.

    Args:
        url: a libpq URL or DSN, `postgresql://user[:password]@host[:port]/dbname[?...]`.
        terms: how this worker leases tasks (lease length, horizon, polling).
        read_only: for readers (`asyncplugin tasks`): apply no migration, and refuse a schema
            that is not exactly this version.
        pool_size: the most connections this worker opens (plus one for LISTEN).
        connect_timeout_s: how long opening the store waits for the database.
        reconnect_timeout_s: how long a statement is retried while the database is unreachable
            before the store fails with StoreError.
        owner: this worker's name in `lease_owner` (default host:pid:random).
    """

    def __init__(
        self,
        url: str,
        *,
        terms: LeaseTerms | None = None,
        read_only: bool = False,
        pool_size: int = 4,
        connect_timeout_s: float = 10.0,
        reconnect_timeout_s: float = 60.0,
        owner: str | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.url = url
        self.where = describe_url(url)
        self._terms = terms if terms is not None else LeaseTerms()
        self._read_only = read_only
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_timeout_s = reconnect_timeout_s
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._pool: AsyncConnectionPool[_Conn] | None = None
        self._listener: _Conn | None = None
        self._held: dict[str, _Held] = {}
        self._writes: GroupCommit = GroupCommit(self._flush_writes)
        self._creates: GroupCommit = GroupCommit(self._flush_creates)
        self.refused_writes = 0
        """Writes refused by the fence since open (for tests and metrics)."""

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r}, owner={self.owner!r})"

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def terms(self) -> LeaseTerms:
        """This worker's lease terms."""
        return self._terms

    async def open(self) -> None:
        """Connects, applies pending migrations (unless read-only), and opens the pool.

        Raises:
            StoreError: the database cannot be reached (one line naming host and cause), or its
                schema is newer than this code (both versions named).
        """
        if self._pool is not None:
            return
        conn = await self._connect()
        try:
            await self._migrate(conn)
        finally:
            await conn.close()
        pool: AsyncConnectionPool[_Conn] = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            timeout=self._reconnect_timeout_s,
            reconnect_timeout=86_400.0,  # keep reconnecting in the background (with backoff)
            kwargs=self._connect_kwargs(),
            name=f"asyncplugin-{self.owner}",
        )
        try:
            await pool.open(wait=True, timeout=self._connect_timeout_s)
            if not self._read_only:
                await self._listen()  # from now on, no hint is missed
        except PoolTimeout as err:
            await pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {self.where}: {err}") from err
        except psycopg.Error as err:
            await pool.close()
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.where}: {_one_line(err)}"
            ) from err
        self._pool = pool

    async def migrate(self) -> tuple[int, int]:
        """Applies pending migrations alone (`asyncplugin store migrate`); returns the schema
        version before and after."""
        conn = await self._connect()
        try:
            return await self._migrate(conn, force=True)
        finally:
            await conn.close()

    async def close(self) -> None:
        """Finishes pending writes, gives back every lease this worker holds, disconnects."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await self._writes.drain()
            await self._creates.drain()
            held, self._held = self._held, {}
            if held:
                with contextlib.suppress(StoreError, psycopg.Error, PoolTimeout, OSError):
                    async with asyncio.timeout(5):
                        async with pool.connection() as conn:
                            await conn.execute(
                                sql.RELEASE, [list(held), [h.token for h in held.values()]]
                            )
        finally:
            broken, self._listener = self._listener, None
            if broken is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await broken.close()
            await pool.close()

    def _connect_kwargs(self) -> dict[str, Any]:
        # The worker's name shows in pg_stat_activity (unless the URL names the application).
        return {
            "autocommit": True,
            "connect_timeout": max(1, round(self._connect_timeout_s)),
            "fallback_application_name": f"asyncplugin {self.owner}"[:63],
        }

    async def _connect(self) -> _Conn:
        try:
            return await psycopg.AsyncConnection.connect(self.url, **self._connect_kwargs())
        except psycopg.Error as err:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.where}: {_one_line(err)}"
            ) from None

    async def _migrate(self, conn: _Conn, *, force: bool = False) -> tuple[int, int]:
        read_only = self._read_only and not force
        try:
            async with conn.transaction():
                if not read_only:
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
                    await conn.execute(CREATE_VERSION_TABLE)
                found = await (
                    await conn.execute("SELECT to_regclass(%s) IS NOT NULL", [VERSION_TABLE])
                ).fetchone()
                row = None
                if found and found[0]:
                    row = await (
                        await conn.execute(f"SELECT version FROM {VERSION_TABLE}")
                    ).fetchone()
                before = version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"PostgreSQL at {self.where}: schema version {version} was written by a "
                        f"newer asyncplugin (this one reads up to {SCHEMA_VERSION}); upgrade "
                        "asyncplugin on this worker"
                    )
                if read_only and version != SCHEMA_VERSION:
                    raise StoreError(
                        f"PostgreSQL at {self.where}: schema version {version}, this asyncplugin "
                        f"needs {SCHEMA_VERSION}; run 'asyncplugin store migrate URL' first"
                    )
                while version < SCHEMA_VERSION:
                    await conn.execute(MIGRATIONS[version].encode())
                    version += 1
                if version != before:
                    await conn.execute(
                        f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s) "
                        "ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
                        [version],
                    )
                    _log.info(
                        "PostgreSQL at %s: schema migrated from version %d to %d",
                        self.where,
                        before,
                        version,
                    )
        except psycopg.Error as err:
            raise StoreError(
                f"PostgreSQL at {self.where}: cannot check or migrate the schema: {_one_line(err)}"
            ) from err
        return before, version

    # -- statements, retried across lost connections ------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Conn]:
        if self._pool is None:
            raise StoreError(f"PostgreSQL at {self.where}: the store is not open")
        async with self._pool.connection() as conn:
            yield conn

    async def _retrying(self, action: str, run: Callable[[_Conn], Awaitable[_T]]) -> _T:
        """Runs `run` on a pooled connection; retries while the database is unreachable."""
        give_up = time.monotonic() + self._reconnect_timeout_s
        delay = 0.05
        while True:
            try:
                async with self._connection() as conn:
                    return await run(conn)
            except (psycopg.OperationalError, PoolTimeout) as err:
                if time.monotonic() >= give_up or self._pool is None:
                    raise StoreError(
                        f"PostgreSQL at {self.where}: cannot {action}: {_one_line(err)} "
                        f"(retried for {self._reconnect_timeout_s:g}s)"
                    ) from err
                _log.warning(
                    "PostgreSQL at %s: %s failed (%s); retrying in %.2fs",
                    self.where,
                    action,
                    _one_line(err),
                    delay,
                )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 2.0)
            except psycopg.Error as err:
                raise StoreError(
                    f"PostgreSQL at {self.where}: cannot {action}: {_one_line(err)}"
                ) from err

    async def _fetch(self, action: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        async def run(conn: _Conn) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(query.encode(), params)
            return await cursor.fetchall() if cursor.description is not None else []

        return await self._retrying(action, run)

    # -- the TaskStore contract ---------------------------------------------------------------

    async def create(self, record: TaskRecord) -> None:
        """Adds a new task, unleased and due as recorded (a hint wakes idle workers).

        Raises:
            ValueError: a task with this id already exists.
        """
        write = self._new_write(record, (), token=None)
        await self._creates.submit(write)

    async def record(self, record: TaskRecord | None, *checks: CheckRecord) -> None:
        """Replaces the task's row and/or appends check rows, atomically, fenced by this
        worker's lease token.

        Raises:
            KeyError: the task is not in the store. LeaseLost: another worker holds it now.
        """
        ids = {check.task_id for check in checks}
        if record is not None:
            ids.add(record.task_id)
        if not ids:
            return
        if len(ids) > 1:
            # The engine never writes two tasks at once; split to keep one fence per write.
            for task_id in sorted(ids - ({record.task_id} if record else set())):
                await self.record(None, *(c for c in checks if c.task_id == task_id))
            if record is None:
                return
            checks = tuple(c for c in checks if c.task_id == record.task_id)
        task_id = record.task_id if record is not None else checks[0].task_id
        write = self._new_write(record, checks, token=self._token(task_id))
        await self._writes.submit(write)

    def _new_write(
        self, record: TaskRecord | None, checks: Sequence[CheckRecord], *, token: int | None
    ) -> Write:
        task_id = record.task_id if record is not None else checks[0].task_id
        due_in_s = keep_s = None
        if record is not None and not record.is_terminal:
            due = record.next_check_time
            due_in_s = max(0.0, due - record.update_time) if due is not None else 0.0
            if token is not None and due_in_s <= self._terms.horizon_s:
                keep_s = due_in_s + self._terms.lease_s
        loop = asyncio.get_running_loop()
        return Write(
            wid=uuid.uuid4(),
            task_id=task_id,
            token=token,
            record=record,
            checks=tuple(checks),
            due_in_s=due_in_s,
            keep_s=keep_s,
            future=loop.create_future(),
        )

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task's record, or None."""
        rows = await self._fetch("read a task", sql.GET, [task_id])
        return task_from_row(rows[0]) if rows else None

    async def list(
        self, *, states: Collection[TaskState] | None = None, limit: int | None = None
    ) -> builtins.list[TaskRecord]:
        """Tasks in the given states, newest first."""
        params: list[Any] = []
        if states is not None:
            wanted = sorted({int(state) for state in states})
            if not wanted:
                return []
            params.append(wanted)
        if limit is not None:
            params.append(limit)
        query = sql.list_tasks(by_state=states is not None, limited=limit is not None)
        rows = await self._fetch("list tasks", query, params)
        return [task_from_row(row) for row in rows]

    async def checks(self, task_id: str) -> builtins.list[CheckRecord]:
        """The task's check history, oldest first."""
        rows = await self._fetch("read a check history", sql.CHECKS, [task_id])
        return [check_from_row(row) for row in rows]

    # -- leases ---------------------------------------------------------------------------------

    def holds(self, task_id: str) -> bool:
        """True while this worker holds the task's lease (as far as it knows)."""
        return task_id in self._held

    @property
    def held(self) -> int:
        """How many leases this worker holds."""
        return len(self._held)

    async def lease_due(self, *, limit: int) -> builtins.list[Lease]:
        """Leases up to `limit` due tasks (see SharedStore.lease_due)."""
        if limit < 1:
            return []
        sent = time.monotonic()
        params = {
            "horizon_s": self._terms.horizon_s,
            "limit": min(limit, self._terms.batch),
            "owner": self.owner,
            "lease_s": self._terms.lease_s,
        }
        rows = await self._fetch("lease due tasks", sql.LEASE, params)
        leases = []
        for row in rows:
            record = task_from_row(row[:18])
            token, due_in_s, cancel = int(row[18]), float(row[19]), bool(row[20])
            self._held[record.task_id] = _Held(token, sent + due_in_s + self._terms.lease_s)
            leases.append(Lease(record=record, due_in_s=due_in_s, cancel_requested=cancel))
        leases.sort(key=lambda lease: lease.due_in_s)
        return leases

    @contextlib.contextmanager
    def pin(self, task_id: str) -> Iterator[None]:
        """Binds this asyncio task's writes about `task_id` to the lease held now."""
        held = self._held.get(task_id)
        if held is None:
            raise LeaseLost(task_id, "this worker does not hold the task's lease")
        reset = _PINNED.set((task_id, held.token))
        try:
            yield
        finally:
            _PINNED.reset(reset)

    def _token(self, task_id: str) -> int | None:
        """The token a write about the task carries: the pinned one, else the one held."""
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] == task_id:
            return pinned[1]
        held = self._held.get(task_id)
        return held.token if held is not None else None

    async def ensure_lease(self, task_id: str, *, need_s: float) -> None:
        """Extends the lease (fenced) unless `need_s` more seconds are surely left."""
        held = self._held.get(task_id)
        token = self._token(task_id)
        if held is None or held.token != token:
            raise LeaseLost(task_id, f"this worker no longer holds lease {token} of the task")
        sent = time.monotonic()
        if held.expires - sent >= need_s:
            return
        extend_s = need_s + self._terms.lease_s
        rows = await self._fetch("extend a lease", sql.EXTEND, [extend_s, task_id, held.token])
        if not rows:
            self._held.pop(task_id, None)
            self.refused_writes += 1
            _log.warning(
                "PostgreSQL at %s: task %s: lease token %d was superseded before it could be "
                "extended; another worker runs the task now",
                self.where,
                task_id,
                held.token,
            )
            raise LeaseLost(task_id, f"lease token {held.token} was superseded")
        held.expires = sent + extend_s

    async def release(self, task_ids: Collection[str]) -> None:
        """Gives the leases back (fenced by their tokens)."""
        mine = [(task_id, self._held.pop(task_id)) for task_id in task_ids if task_id in self._held]
        if mine:
            params = [[task_id for task_id, _ in mine], [held.token for _, held in mine]]
            await self._fetch("release leases", sql.RELEASE, params)

    async def request_cancel(self, task_id: str) -> bool:
        """Flags the task for cancellation and makes it due now; a hint wakes the workers."""
        rows = await self._fetch("request a cancel", sql.REQUEST_CANCEL, [task_id])
        return bool(rows)

    async def cancel_requests(self) -> builtins.list[str]:
        """Tasks this worker holds whose cancel was requested."""
        rows = await self._fetch("read cancel requests", sql.CANCEL_REQUESTS, [self.owner])
        return [
            task_id
            for task_id, token in rows
            if (held := self._held.get(task_id)) is not None and held.token == token
        ]

    async def wait_for_work(self, timeout_s: float) -> bool:
        """Waits for a NOTIFY hint (new work, a cancel request) for at most `timeout_s`."""
        try:
            listener = await self._listen()
            hinted = False
            async for _ in listener.notifies(timeout=timeout_s, stop_after=1):
                hinted = True
            if hinted:
                # Drain the hints that came meanwhile: one wake-up serves them all.
                async for _ in listener.notifies(timeout=0.0):
                    pass
            return hinted
        except (psycopg.Error, OSError) as err:
            # The hint is an optimisation: on a broken connection, fall back to polling and
            # reconnect on the next wait.
            broken, self._listener = self._listener, None
            if broken is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await broken.close()
            _log.info("PostgreSQL at %s: LISTEN connection lost (%s)", self.where, _one_line(err))
            await asyncio.sleep(min(timeout_s, 0.5))
            return False

    async def _listen(self) -> _Conn:
        if self._listener is None or self._listener.closed:
            listener = await psycopg.AsyncConnection.connect(self.url, **self._connect_kwargs())
            await listener.execute(f"LISTEN {sql.NOTIFY_CHANNEL}".encode())
            self._listener = listener
        return self._listener

    # -- group commit -----------------------------------------------------------------------------

    async def _flush_creates(self, batch: builtins.list[Write]) -> None:
        params: list[Any] = task_arrays([w.record for w in batch if w.record is not None])
        params += [[w.due_in_s for w in batch], [w.wid for w in batch]]

        async def run(conn: _Conn) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(sql.CREATE.encode(), params)
            return await cursor.fetchall()

        inserted = {row[0] for row in await self._retrying("record new tasks", run)}
        missing = [w for w in batch if w.task_id not in inserted]
        outcomes = await self._outcomes(missing) if missing else {}
        for write in batch:
            if write.task_id in inserted or outcomes.get(write.task_id, (None,))[0] == write.wid:
                write.future.set_result(None)
            else:
                write.future.set_exception(ValueError(f"task {write.task_id!r} already exists"))

    async def _flush_writes(self, batch: builtins.list[Write]) -> None:
        params = write_params(batch)
        sent = time.monotonic()

        async def run(conn: _Conn) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(sql.WRITE.encode(), params)
            return await cursor.fetchall()

        applied = {row[0] for row in await self._retrying("record tasks' progress", run)}
        skipped = [w for w in batch if w.wid not in applied]
        outcomes = await self._outcomes(skipped) if skipped else {}
        for write in batch:
            found = outcomes.get(write.task_id)
            if write.wid in applied or (found is not None and found[0] == write.wid):
                self._applied(write, sent)
                write.future.set_result(None)
            elif found is None:
                write.future.set_exception(KeyError(f"task {write.task_id!r} is not in the store"))
            else:
                write.future.set_exception(self._refused(write, found))

    def _applied(self, write: Write, sent: float) -> None:
        if write.record is None or write.token is None:
            return
        if write.keep_s is None:
            self._held.pop(write.task_id, None)  # finished, or due beyond the horizon
        else:
            held = self._held.get(write.task_id)
            if held is not None and held.token == write.token:
                held.expires = sent + write.keep_s

    def _refused(self, write: Write, found: tuple[Any, ...]) -> LeaseLost:
        _, token, owner, live = found
        held = self._held.get(write.task_id)
        if held is not None and held.token == write.token:
            del self._held[write.task_id]
        self.refused_writes += 1
        if write.token is None:
            reason = f"written without a lease while worker {owner} holds lease {token}"
        else:
            holder = f"held by {owner}" if live else "its lease has expired"
            reason = (
                f"late write refused: this worker's lease token {write.token} was superseded "
                f"by token {token} ({holder}); the task's record is the new holder's"
            )
        _log.warning("PostgreSQL at %s: task %s: %s", self.where, write.task_id, reason)
        return LeaseLost(write.task_id, reason)

    async def _outcomes(self, writes: Sequence[Write]) -> dict[str, tuple[Any, ...]]:
        ids = sorted({w.task_id for w in writes})
        rows = await self._fetch("read write outcomes", sql.WRITE_OUTCOMES, [ids])
        return {row[0]: row[1:] for row in rows}
