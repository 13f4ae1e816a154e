"""The embedded default task store: one SQLite file in WAL mode, schema versioned by user_version.

Why the calls run on the event loop's thread, not a writer thread: each engine step is one small
transaction (update one task row, insert one check row). With `journal_mode=WAL` and
`synchronous=NORMAL` a commit does not fsync, and measured here it takes p50 18 us, p99 65 us, and
~3 ms at worst when an automatic WAL checkpoint runs (20,000 commits, sqlite 3.40). That is below
the ~200 us of client CPU one gRPC call costs, so a thread hop (~50-100 us plus a lock) would
cost more than it saves. Durability: WAL + NORMAL keeps every committed transaction across a
process crash (kill -9: the WAL is in the OS page cache); only an OS crash or power loss may roll
back the last few commits, never corrupt the file. Pass `synchronous="FULL"` (p50 ~125 us) to
survive power loss too.

Group commit: the steps whose answers arrive in the same event-loop turn (up to all the calls in
flight) are committed in ONE transaction at the start of the next turn, and each `record` call
returns only once its rows are committed, so every step is still recorded before its next call
is scheduled and before anyone is told about it. Each step's rows stay atomic: if any write of
a group fails, the group is rolled back and every write is redone in a transaction of its own,
so each caller gets exactly the outcome it would have had alone.

The schema and its migrations are in `sqlite_schema.py` (with why a task's history is linked,
not indexed), a step's write and the history reads in `sqlite_sql.py`, opening the file and
turning SQLite's errors into StoreError in `sqlite_connection.py`.

Failures: every SQLite error (a full disk, a read-only file, an I/O error, a corrupt file) is
raised as StoreError naming the file, the SQLite error code and what to do, whether it happens
while opening the file or later; the transaction that failed is rolled back whole, so the file
keeps exactly what was committed before. An engine's store is checked at `open` to be writable
(a write that is rolled back at once), so a read-only file is refused before any call is sent.

Readers (`asyncplugin tasks`) open the store with `read_only=True`: a `mode=ro` connection that
never creates the file, changes its journal mode or migrates its schema, and refuses a file
without a task store's schema. While an engine may be writing, SQLite keeps the `-wal` and
`-shm` files it needs beside the database (a reader may create them; it never changes the
database file). In a read-only folder without a `-wal` file no engine can be writing, and the
file is read as immutable.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from asyncplugin.protocol import TaskState

from ..errors import StoreError
from ..records import CheckRecord, TaskRecord
from .base import TaskStore
from .query import TaskCursor, TaskFilter
from .sqlite_connection import (
    Transaction,
    describe,
    flock_soon,
    open_reader,
    open_writer,
    read_note,
)
from .sqlite_schema import SCHEMA_VERSION, TASK_COLUMNS, TASK_COUNT, marks, task_from_row, task_row
from .sqlite_sql import apply_write, delete_task, read_history

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

_LAST_CHAR: Final = chr(0x10FFFF)
"""Above every character: `prefix <= id < prefix + _LAST_CHAR` selects ids starting with it."""


class SqliteStore(TaskStore):
    """Tasks in one SQLite file (created with mode 0600: payloads and remote state are private).

    Args:
        path: the database file; created if missing (unless `read_only`).
        synchronous: SQLite's `synchronous` pragma: "NORMAL" (default, crash-safe) or "FULL"
            (also power-loss-safe, slower).
        read_only: open for reading only, as `asyncplugin tasks` does: the file must exist and
            hold a task store's schema; nothing is created, migrated or written, and the store
            cannot be claimed by an engine.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        read_only: bool = False,
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.path = Path(path)
        self.read_only = read_only
        self._synchronous = synchronous.upper()
        self._db: sqlite3.Connection | None = None
        self._claim_fd: int | None = None
        self._group: list[_Write] = []

    async def claim(self) -> None:
        """Takes an exclusive advisory lock (flock) on `<file>.lock`, so a second engine on the
        same file fails at start instead of polling every task twice. The kernel drops the lock
        when the holder exits, kill -9 included, so a restarted engine claims it at once."""
        if self._claim_fd is not None:
            return
        if self.read_only:
            raise StoreError(
                f"{self.path}: the store was opened read-only; an engine needs "
                "SqliteStore(path) without read_only"
            )
        lock_path = self._lock_path
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            await flock_soon(fd)
        except BlockingIOError:
            note = read_note(fd)
            os.close(fd)
            address = note.removeprefix("engine-address=") if note else ""
            if address:
                raise StoreError(
                    f"{self.path}: the engine daemon serving at {address} holds this task "
                    f"store; submit through it with --engine {address} (or use another --store)"
                ) from None
            raise StoreError(
                f"{self.path}: another engine is using this task store (lock {lock_path}); "
                "run one engine per store: wait for it to finish, or give another --store; to "
                "share one store, run `asyncplugin engine serve` on it and submit with --engine"
            ) from None
        os.ftruncate(fd, 0)
        self._claim_fd = fd

    @property
    def _lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def holder(self) -> str | None:
        """Who drives this store now: None when no engine holds its claim, else the note the
        engine announced ("engine-address=HOST:PORT" for a daemon; "" if none).

        Readers (`asyncplugin tasks --store`) use it to tell an unfinished task that an engine
        will call again from one that nothing polls. It writes nothing and never takes the
        claim: it holds a shared lock for an instant, and `claim` waits a moment for readers.
        """
        try:
            fd = os.open(self._lock_path, os.O_RDONLY)
        except OSError:
            return None  # no lock file: no engine ever claimed this store
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return read_note(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    async def announce(self, note: str) -> None:
        """Writes `note` (one line) into the claim's lock file, for engines refused the claim."""
        fd = self._claim_fd
        if fd is None:
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.splitlines()[0].encode("utf-8") + b"\n", 0)

    async def open(self) -> None:
        """Opens the file. An engine's store: creates the file if missing, enables WAL, creates
        or migrates the schema, and checks that the file can be written. A read-only store:
        opens the existing file for reading and checks its schema, changing nothing.

        Raises:
            StoreError: the file cannot be used, naming it, the cause (with the SQLite error
                code) and what to do.
        """
        if self._db is not None:
            return
        if self.read_only:
            self._db = open_reader(self.path)
        else:
            self._db = open_writer(self.path, self._synchronous)

    async def close(self) -> None:
        """Commits the writes still waiting for their group, closes the file, releases the
        claim."""
        self._commit_group()
        db, self._db = self._db, None
        if db is not None:
            db.close()
        fd, self._claim_fd = self._claim_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: the store is not open")
        return self._db

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Raises any SQLite error in the block as StoreError naming the file and the cause."""
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as err:
            raise StoreError(describe(self.path, action, err)) from err

    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.path}: the store was opened read-only; it cannot be written")

    async def create(self, record: TaskRecord) -> None:
        """Adds a new task."""
        self._require_writable()
        try:
            with self._guard("record a new task"), Transaction(self._conn) as db:
                db.execute(
                    f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({marks(TASK_COUNT)})",
                    task_row(record),
                )
        except sqlite3.IntegrityError as err:
            if "request_id" in str(err):
                raise ValueError(
                    f"request id {record.options.request_id!r} is already used by another task"
                ) from err
            raise ValueError(f"task {record.task_id!r} already exists") from err

    async def record(self, record: TaskRecord | None, *checks: CheckRecord) -> None:
        """Updates the task's row and/or appends check rows, in one transaction; returns once
        they are committed (with the other writes of the same loop turn: see the module's
        docstring).

        Only the columns a change can alter are written (see `TaskStore.record`).

        Raises:
            KeyError: the task is not in the store. sqlite3.IntegrityError: a check names a task
            that is not in the store. StoreError: the file cannot be written.
        """
        self._require_writable()
        if self._db is None:
            raise StoreError(f"{self.path}: the store is not open")
        loop = asyncio.get_running_loop()
        write = _Write(record, checks, loop.create_future())
        if not self._group:
            loop.call_soon(self._commit_group)
        self._group.append(write)
        try:
            await write.done
        except asyncio.CancelledError:
            if write in self._group:  # not written yet: it never will be
                self._group.remove(write)
            raise

    def _commit_group(self) -> None:
        """Commits the writes queued since the last group, in one transaction if all succeed."""
        group, self._group = self._group, []
        writes = [write for write in group if not write.done.done()]
        if not writes:
            return
        if len(writes) > 1 and self._write_together(writes):
            return
        for write in writes:  # one write, or a group that failed: each in its own transaction
            try:
                with self._guard("record a task's progress"), Transaction(self._conn) as db:
                    apply_write(db, write.record, write.checks)
            except Exception as err:
                write.done.set_exception(err)
            else:
                write.done.set_result(None)

    def _write_together(self, writes: Sequence[_Write]) -> bool:
        """Commits every write in one transaction; False (nothing written) if any fails."""
        try:
            with self._guard("record a task's progress"), Transaction(self._conn) as db:
                for write in writes:
                    apply_write(db, write.record, write.checks)
        except Exception:
            return False  # rolled back whole: the caller redoes each write alone
        for write in writes:
            write.done.set_result(None)
        return True

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task's record, or None."""
        with self._guard("read a task"):
            row = self._conn.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
        return task_from_row(row) if row else None

    async def list(
        self, *, states: Collection[TaskState] | None = None, limit: int | None = None
    ) -> builtins.list[TaskRecord]:
        """Tasks in the given states, newest first."""
        sql = f"SELECT {TASK_COLUMNS} FROM tasks"
        params: list[Any] = []
        if states is not None:
            wanted = [int(state) for state in states]
            if not wanted:
                return []
            sql += f" WHERE state IN ({marks(len(wanted))})"
            params.extend(wanted)
        sql += " ORDER BY create_time DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._guard("list tasks"):
            return [task_from_row(row) for row in self._conn.execute(sql, params)]

    async def checks(self, task_id: str) -> builtins.list[CheckRecord]:
        """The task's check history, oldest first."""
        return await self.checks_after(task_id, -1)

    async def checks_after(self, task_id: str, revision: int) -> builtins.list[CheckRecord]:
        """The task's history entries recorded after `revision`, oldest first."""
        with self._guard("read a check history"):
            return read_history(self._conn, task_id, revision)

    async def query(
        self, where: TaskFilter, *, limit: int, after: TaskCursor | None = None
    ) -> builtins.list[TaskRecord]:
        """Tasks passing `where`, newest first (creation time, then id), after `after`."""
        clauses: list[str] = []
        params: list[Any] = []
        if where.states is not None:
            if not where.states:
                return []
            clauses.append(f"state IN ({marks(len(where.states))})")
            params.extend(sorted(int(state) for state in where.states))
        if where.target is not None:
            clauses.append("target = ?")
            params.append(where.target)
        if where.created_after is not None:
            clauses.append("create_time >= ?")
            params.append(where.created_after)
        if where.created_before is not None:
            clauses.append("create_time < ?")
            params.append(where.created_before)
        for key, value in where.labels:
            clauses.append(
                "EXISTS (SELECT 1 FROM json_each(tasks.labels) WHERE key = ? AND value = ?)"
            )
            params.extend((key, value))
        if after is not None:
            clauses.append("(create_time < ? OR (create_time = ? AND task_id < ?))")
            params.extend((after.create_time, after.create_time, after.task_id))
        sql = f"SELECT {TASK_COLUMNS} FROM tasks"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY create_time DESC, task_id DESC LIMIT ?"
        params.append(limit)
        with self._guard("list tasks"):
            return [task_from_row(row) for row in self._conn.execute(sql, params)]

    async def find_ids(self, prefix: str, *, limit: int) -> builtins.list[str]:
        """Ids of tasks starting with `prefix`, sorted, at most `limit` (an index range scan)."""
        with self._guard("look up task ids"):
            rows = self._conn.execute(
                "SELECT task_id FROM tasks WHERE task_id >= ? AND task_id < ? "
                "ORDER BY task_id LIMIT ?",
                (prefix, prefix + _LAST_CHAR, limit),
            )
            return [row[0] for row in rows]

    async def find_request(self, request_id: str) -> TaskRecord | None:
        """The task submitted with this request id, or None."""
        if not request_id:
            return None
        with self._guard("look up a request id"):
            row = self._conn.execute(
                f"SELECT {TASK_COLUMNS} FROM tasks WHERE request_id = ?", (request_id,)
            ).fetchone()
        return task_from_row(row) if row else None

    async def delete(self, task_id: str) -> bool:
        """Removes a task and its history, in one transaction."""
        self._require_writable()
        with self._guard("delete a task"), Transaction(self._conn) as db:
            return delete_task(db, task_id)


@dataclass(frozen=True, slots=True, eq=False)
class _Write:
    """One `record` call waiting for its group's commit."""

    record: TaskRecord | None
    checks: Sequence[CheckRecord]
    done: asyncio.Future[None]
