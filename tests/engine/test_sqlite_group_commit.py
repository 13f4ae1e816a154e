"""SqliteStore's group commit: the writes of one loop turn share a transaction, and nothing is
reported before it is committed.

Each `record` call still returns only once its own rows are in the file (read here through a
second connection), a write that fails fails alone, a write whose caller gave up is never
written, and `close` commits what is still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asyncplugin.engine import (
    CallKind,
    CheckOutcome,
    CheckRecord,
    SqliteStore,
    StoreError,
    TaskRecord,
    TaskUpdate,
)
from asyncplugin.protocol import TaskState
from tests.engine.conftest import MakeEngine, Serve
from tests.engine.plugins import Job


def _task(task_id: str) -> TaskRecord:
    return TaskRecord(
        task_id=task_id,
        target="127.0.0.1:1",
        method="/asyncplugin.v1.PluginService/Invoke",
        state=TaskState.WAITING,
        payload=b"payload",
        idempotency_key=f"key-{task_id}",
        create_time=100.0,
        update_time=100.0,
        next_check_time=100.0,
        revision=1,
    )


def _running(task_id: str, count: int = 1) -> TaskRecord:
    return dataclasses.replace(
        _task(task_id),
        state=TaskState.RUNNING,
        check_count=count,
        update_time=100.0 + count,
        next_check_time=102.0 + count,
        status=b"\x10\x02",
        revision=1 + count,
    )


def _check(task_id: str, number: int = 1) -> CheckRecord:
    return CheckRecord(
        task_id=task_id,
        kind=CallKind.CHECK,
        check_number=number,
        started_time=101.0,
        finished_time=101.5,
        outcome=CheckOutcome.RUNNING,
        revision=1 + number,
    )


def _committed(path: Path, task_id: str) -> tuple[int, int, int] | None:
    """(state, check_count, checks rows) of the task as another connection reads the file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        row = db.execute(
            "SELECT state, check_count FROM tasks WHERE task_id = ?", (task_id,)
        ).fetchone()
        if row is None:
            return None
        (checks,) = db.execute(
            "SELECT count(*) FROM checks WHERE task_id = ?", (task_id,)
        ).fetchone()
    return int(row[0]), int(row[1]), int(checks)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    made = SqliteStore(tmp_path / "tasks.db")
    await made.open()
    yield made
    await made.close()


def _count_transactions(store: SqliteStore) -> list[str]:
    """The BEGIN statements the store's connection runs from now on."""
    begun: list[str] = []
    store._conn.set_trace_callback(  # the store's own connection: count its transactions
        lambda sql: begun.append(sql) if sql.startswith("BEGIN") else None
    )
    return begun


async def test_writes_of_one_turn_share_one_transaction_and_return_once_committed(
    store: SqliteStore,
) -> None:
    """Twenty steps recorded in the same loop turn are one transaction; each caller resumes
    only when its rows can be read from the file by another connection."""
    ids = [f"t{n:02d}" for n in range(20)]
    for task_id in ids:
        await store.create(_task(task_id))
    begun = _count_transactions(store)
    seen: dict[str, tuple[int, int, int] | None] = {}

    async def step(task_id: str) -> None:
        await store.record(_running(task_id), _check(task_id))
        seen[task_id] = _committed(store.path, task_id)

    await asyncio.gather(*(step(task_id) for task_id in ids))
    assert len(begun) == 1
    assert seen == {task_id: (int(TaskState.RUNNING), 1, 1) for task_id in ids}
    for task_id in ids:
        assert await store.get(task_id) == _running(task_id)
        assert await store.checks(task_id) == [_check(task_id)]


async def test_writes_of_later_turns_get_their_own_transaction(store: SqliteStore) -> None:
    """A write awaited alone is committed alone, in order with the next one."""
    await store.create(_task("t1"))
    begun = _count_transactions(store)
    await store.record(_running("t1", 1), _check("t1", 1))
    await store.record(_running("t1", 2), _check("t1", 2))
    assert len(begun) == 2
    assert await store.get("t1") == _running("t1", 2)
    assert [c.check_number for c in await store.checks("t1")] == [1, 2]


async def test_a_failing_write_fails_alone(store: SqliteStore) -> None:
    """In a group with writes for unknown tasks, those raise as they would alone, nothing of
    them is written, and every other write of the group is committed."""
    for task_id in ("a", "b", "c"):
        await store.create(_task(task_id))
    results = await asyncio.gather(
        store.record(_running("a"), _check("a")),
        store.record(_running("ghost")),
        store.record(_running("b"), _check("b")),
        store.record(_running("c"), _check("ghost")),  # the task row exists, the check's not
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], KeyError)
    assert results[2] is None
    assert isinstance(results[3], sqlite3.IntegrityError)
    assert await store.get("a") == _running("a")
    assert await store.get("b") == _running("b")
    assert await store.get("c") == _task("c")  # its write was atomic: rolled back whole
    assert await store.get("ghost") is None
    assert await store.checks("ghost") == []
    assert await store.checks("c") == []


async def test_a_write_whose_caller_is_cancelled_before_the_commit_is_not_written(
    store: SqliteStore,
) -> None:
    """A caller cancelled while its write waits for the group gets CancelledError and the
    write never reaches the file; the other writes of the group do."""
    await store.create(_task("kept"))
    await store.create(_task("dropped"))
    kept = asyncio.create_task(store.record(_running("kept"), _check("kept")))
    dropped = asyncio.create_task(store.record(_running("dropped"), _check("dropped")))
    await asyncio.sleep(0)  # both writes are queued, the group not committed yet
    dropped.cancel()
    await kept
    with pytest.raises(asyncio.CancelledError):
        await dropped
    assert await store.get("kept") == _running("kept")
    assert await store.get("dropped") == _task("dropped")
    assert await store.checks("dropped") == []


async def test_close_commits_the_writes_still_queued(tmp_path: Path) -> None:
    """Closing the store with a write queued commits it first; the caller sees it succeed."""
    path = tmp_path / "tasks.db"
    store = SqliteStore(path)
    await store.open()
    await store.create(_task("t1"))
    pending = asyncio.create_task(store.record(_running("t1"), _check("t1")))
    await asyncio.sleep(0)  # queued, not committed
    assert _committed(path, "t1") == (int(TaskState.WAITING), 0, 0)
    await store.close()
    await pending
    assert _committed(path, "t1") == (int(TaskState.RUNNING), 1, 1)


async def test_a_write_after_close_is_refused(store: SqliteStore) -> None:
    """A closed store refuses a write at once, with StoreError naming the file."""
    await store.create(_task("t1"))
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.record(_running("t1"))


async def test_every_change_is_committed_before_listeners_hear_of_it(
    tmp_path: Path, make_engine: MakeEngine, serve: Serve
) -> None:
    """With many tasks stepping at once, every update an on_change hook receives is already in
    the file: its revision and its history entries, read through another connection."""
    path = tmp_path / "tasks.db"
    plugin = await serve(Job(checks=3))
    behind: list[str] = []
    updates = 0

    def on_change(update: TaskUpdate) -> None:
        nonlocal updates
        updates += 1
        with contextlib.closing(sqlite3.connect(path)) as db:
            row = db.execute(
                "SELECT revision FROM tasks WHERE task_id = ?", (update.record.task_id,)
            ).fetchone()
            (entries,) = db.execute(
                "SELECT count(*) FROM checks WHERE task_id = ? AND revision = ?",
                (update.record.task_id, update.record.revision),
            ).fetchone()
        if row is None or row[0] != update.record.revision or entries != len(update.checks):
            behind.append(f"{update.record.task_id} r{update.record.revision}: file has {row}")

    engine = await make_engine(store=SqliteStore(path), on_change=on_change)
    ids = [await engine.submit(plugin.target) for _ in range(24)]
    finished = await asyncio.gather(*(engine.wait(task_id) for task_id in ids))
    assert [record.state for record in finished] == [TaskState.SUCCEEDED] * len(ids)
    assert updates >= 5 * len(ids)  # created, initiated, three checks each
    assert behind == []
