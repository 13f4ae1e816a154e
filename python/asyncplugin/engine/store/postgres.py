"""The PostgreSQL task store: several engine workers, on one or many machines, share its tasks.

    store = PostgresStore("postgresql://asyncplugin@db.internal/asyncplugin")
    async with Engine(store=store) as engine: ...       # in every worker process

Modules: `pg_schema` (tables, migrations), `pg_sql` (the statements), `pg_batch` (group
commit), `pg_connection` (the pool, retries, LISTEN; why psycopg).

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
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from asyncplugin.protocol import TaskState

from ..errors import LeaseLost
from ..records import CheckRecord, TaskRecord
from . import pg_sql as sql
from .base import Lease, LeaseTerms, SharedStore
from .pg_batch import GroupCommit, Write, task_arrays, write_params
from .pg_connection import Conn, Connections, describe_url
from .pg_schema import SCHEMA_VERSION, migrate
from .query import TaskCursor, TaskFilter
from .rows import check_from_row, task_from_row

__all__ = ["SCHEMA_VERSION", "PostgresStore", "describe_url"]

_log = logging.getLogger(__name__)

_PINNED: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "asyncplugin_pinned_lease", default=None
)


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
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._db = Connections(
            url,
            name=self.owner,
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            reconnect_timeout_s=reconnect_timeout_s,
        )
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
        if self._db.is_open:
            return
        conn = await self._db.connect()
        try:
            await migrate(conn, where=self.where, read_only=self._read_only)
        finally:
            await conn.close()
        await self._db.open(listen=None if self._read_only else sql.NOTIFY_CHANNEL)

    async def migrate(self) -> tuple[int, int]:
        """Applies pending migrations alone (`asyncplugin store migrate`); returns the schema
        version before and after."""
        conn = await self._db.connect()
        try:
            return await migrate(conn, where=self.where, read_only=False)
        finally:
            await conn.close()

    async def close(self) -> None:
        """Finishes pending writes, gives back every lease this worker holds, disconnects."""
        if not self._db.is_open:
            return
        await self._writes.drain()
        await self._creates.drain()
        held, self._held = self._held, {}

        async def release(conn: Conn) -> None:
            await conn.execute(sql.RELEASE, [list(held), [h.token for h in held.values()]])

        await self._db.close(release if held else None)

    async def _fetch(self, action: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        return await self._db.fetch(action, query, params)

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

    async def query(
        self, where: TaskFilter, *, limit: int, after: TaskCursor | None = None
    ) -> builtins.list[TaskRecord]:
        """Tasks passing `where`, newest first (creation time, then id), after `after`."""
        params: list[Any] = []
        if where.states is not None:
            if not where.states:
                return []
            params.append(sorted(int(state) for state in where.states))
        if where.target is not None:
            params.append(where.target)
        if where.created_after is not None:
            params.append(where.created_after)
        if where.created_before is not None:
            params.append(where.created_before)
        if where.labels:
            params.append(json.dumps(dict(where.labels)))
        if after is not None:
            params.extend((after.create_time, after.task_id))
        params.append(limit)
        query = sql.query_tasks(
            states=where.states is not None,
            target=where.target is not None,
            after=where.created_after is not None,
            before=where.created_before is not None,
            labels=bool(where.labels),
            cursor=after is not None,
        )
        rows = await self._fetch("list tasks", query, params)
        return [task_from_row(row) for row in rows]

    async def find_ids(self, prefix: str, *, limit: int) -> builtins.list[str]:
        """Ids of tasks starting with `prefix`, sorted, at most `limit` (an index range scan)."""
        params = [prefix, prefix + chr(0x10FFFF), limit]  # task ids sort byte-wise (C)
        rows = await self._fetch("look up task ids", sql.FIND_IDS, params)
        return [row[0] for row in rows]

    async def find_request(self, request_id: str) -> TaskRecord | None:
        """The task submitted with this request id, or None."""
        if not request_id:
            return None
        rows = await self._fetch("look up a request id", sql.FIND_REQUEST, [request_id])
        return task_from_row(rows[0]) if rows else None

    async def checks_after(self, task_id: str, revision: int) -> builtins.list[CheckRecord]:
        """The task's history entries recorded after `revision`, oldest first."""
        rows = await self._fetch("read a check history", sql.CHECKS_AFTER, [task_id, revision])
        return [check_from_row(row) for row in rows]

    async def delete(self, task_id: str) -> bool:
        """Removes a task and its history (engines delete finished tasks only)."""
        return bool(await self._fetch("delete a task", sql.DELETE, [task_id]))

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
        leases = [self._leased(row, sent) for row in rows]
        return sorted(leases, key=lambda lease: lease.due_in_s)

    def _leased(self, row: Sequence[Any], sent: float) -> Lease:
        """A LEASE or TAKE_OVER row: the record, then token, due_in_s, cancel_requested."""
        count = sql.TASK_COUNT
        record = task_from_row(row[:count])
        token, due_in_s, cancel = int(row[count]), float(row[count + 1]), bool(row[count + 2])
        self._held[record.task_id] = _Held(token, sent + due_in_s + self._terms.lease_s)
        return Lease(record=record, due_in_s=due_in_s, cancel_requested=cancel)

    async def take_over(self, task_id: str) -> Lease | None:
        """Leases the task to this worker whoever holds it (see pg_sql.TAKE_OVER); None if it
        has ended."""
        sent = time.monotonic()
        params = {"task_id": task_id, "owner": self.owner, "lease_s": self._terms.lease_s}
        rows = await self._fetch("take a task over", sql.TAKE_OVER, params)
        return self._leased(rows[0], sent) if rows else None

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
        return await self._db.wait_for_hint(sql.NOTIFY_CHANNEL, timeout_s)

    # -- group commit -----------------------------------------------------------------------------

    async def _flush_creates(self, batch: builtins.list[Write]) -> None:
        params: list[Any] = task_arrays([w.record for w in batch if w.record is not None])
        params += [[w.due_in_s for w in batch], [w.wid for w in batch]]

        async def run(conn: Conn) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(sql.CREATE.encode(), params)
            return await cursor.fetchall()

        inserted = {row[0] for row in await self._db.run("record new tasks", run)}
        missing = [w for w in batch if w.task_id not in inserted]
        outcomes = await self._outcomes(missing) if missing else {}
        for write in batch:
            found = outcomes.get(write.task_id)
            if write.task_id in inserted or (found is not None and found[0] == write.wid):
                write.future.set_result(None)
            elif found is not None:
                write.future.set_exception(ValueError(f"task {write.task_id!r} already exists"))
            else:
                assert write.record is not None
                request_id = write.record.options.request_id
                write.future.set_exception(
                    ValueError(f"request id {request_id!r} is already used by another task")
                )

    async def _flush_writes(self, batch: builtins.list[Write]) -> None:
        params = write_params(batch)
        sent = time.monotonic()

        async def run(conn: Conn) -> list[tuple[Any, ...]]:
            cursor = await conn.execute(sql.WRITE.encode(), params)
            return await cursor.fetchall()

        applied = {row[0] for row in await self._db.run("record tasks' progress", run)}
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
