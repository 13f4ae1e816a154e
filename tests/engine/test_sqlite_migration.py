"""SQLite schema v2 -> v3 (each task's history linked instead of indexed): nothing recorded is
lost or reordered, a failed migration leaves the v2 file usable, a newer file is left alone."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from pathlib import Path

import pytest

from asyncplugin.engine import (
    CheckOutcome,
    CheckRecord,
    SqliteStore,
    StoreError,
    TaskOptions,
    TaskRecord,
)
from asyncplugin.engine.store import sqlite_schema
from asyncplugin.engine.store.sqlite_schema import (
    _SCHEMA_V1,
    _SCHEMA_V2,
    _SCHEMA_V3,
    CHECK_COLUMNS,
    SCHEMA_VERSION,
    TASK_COLUMNS,
    check_from_row,
    check_row,
    marks,
    task_from_row,
    task_row,
)
from asyncplugin.protocol import TaskState
from tests.engine.test_store import _check, _record

_TASKS = [f"task-{n}" for n in range(6)]

Contents = tuple[dict[str, TaskRecord], dict[str, list[CheckRecord]], list[str]]
"""Every task by id, every history by task id, the listing's order."""


def _write_version_2(path: Path) -> None:
    """A version 2 file as the version 2 store wrote it (its DDL, its statements): six tasks,
    one without history, the others' entries interleaved (ids alternate between tasks), one
    write with two entries, absent and non-ASCII values."""
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_V1 + _SCHEMA_V2)
        for n, task_id in enumerate(_TASKS):
            options = TaskOptions(labels=(("n", str(n)),), request_id=f"req-{n}" if n % 2 else "")
            record = _record(task_id, create_time=100.0 + n // 2, options=options, revision=1)
            db.execute(f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({marks(21)})", task_row(record))
        insert = f"INSERT INTO checks ({CHECK_COLUMNS}) VALUES ({marks(12)})"
        for number in range(1, 8):
            for n, task_id in enumerate(_TASKS[1:], start=1):
                if number > 2 * n:
                    continue  # histories of different lengths
                check = _check(
                    task_id,
                    number,
                    revision=number + 1,
                    message=f"étape {number} ✓",
                    interval_s=None if number == 1 else 2.0 * number,
                    next_check_time=None if number == 7 else 110.0 + number,
                )
                db.execute(insert, check_row(check))
        # One write that recorded two entries with one revision (a retry, then its answer).
        two = [
            _check("task-3", 8, outcome=CheckOutcome.TRANSPORT_RETRY, revision=9),
            _check("task-3", 8, outcome=CheckOutcome.SUCCEEDED, revision=9, grpc_code="OK"),
        ]
        db.executemany(insert, [check_row(check) for check in two])
        db.execute(
            "UPDATE tasks SET state = ?, revision = 9 WHERE task_id = 'task-3'",
            (int(TaskState.SUCCEEDED),),
        )
        db.execute("PRAGMA user_version = 2")
    db.close()


def _read_version_2(path: Path) -> Contents:
    """What the version 2 store read from the file: every task, every history (its query:
    by task, in id order), and the listing order."""
    with sqlite3.connect(path) as db:
        tasks = {
            row[0]: task_from_row(row) for row in db.execute(f"SELECT {TASK_COLUMNS} FROM tasks")
        }
        histories = {
            task_id: [
                check_from_row(row)
                for row in db.execute(
                    f"SELECT {CHECK_COLUMNS} FROM checks WHERE task_id = ? ORDER BY id",
                    (task_id,),
                )
            ]
            for task_id in tasks
        }
        listed = [
            row[0]
            for row in db.execute("SELECT task_id FROM tasks ORDER BY create_time DESC, rowid DESC")
        ]
    db.close()
    return tasks, histories, listed


async def _assert_reads_back(path: Path, expected: Contents) -> None:
    tasks, histories, listed = expected
    store = SqliteStore(path)
    await store.open()
    try:
        assert [record.task_id for record in await store.list()] == listed
        for task_id, record in tasks.items():
            assert await store.get(task_id) == record
            assert await store.checks(task_id) == histories[task_id]
            for revision in range(0, 11):
                assert await store.checks_after(task_id, revision) == [
                    check for check in histories[task_id] if check.revision > revision
                ]
    finally:
        await store.close()


def _dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        lines = list(db.iterdump())
    db.close()
    return lines


async def test_a_version_2_file_is_migrated_keeping_every_task_and_entry_in_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    _write_version_2(path)
    before = _read_version_2(path)
    assert sum(len(history) for history in before[1].values()) == 28
    assert before[1]["task-0"] == []
    await _assert_reads_back(path, before)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert "checks_by_task" not in indexes
        (count,) = db.execute("SELECT count(*) FROM checks").fetchone()
        assert count == 28
    db.close()
    # The migrated histories go on: a new entry follows the migrated ones.
    store = SqliteStore(path)
    await store.open()
    try:
        record = dataclasses.replace(before[0]["task-2"], revision=7, check_count=5)
        new = _check("task-2", 5, revision=7, message="after the migration")
        await store.record(record, new)
        assert await store.checks("task-2") == [*before[1]["task-2"], new]
        assert await store.checks("task-1") == before[1]["task-1"]
        assert await store.delete("task-2")
        assert await store.checks("task-2") == []
        assert await store.checks("task-4") == before[1]["task-4"]
    finally:
        await store.close()


def _statements(script: str) -> list[str]:
    return [part.strip() + ";" for part in script.split(";") if part.strip()]


@pytest.mark.parametrize("done", range(len(_statements(_SCHEMA_V3)) + 1))
async def test_a_migration_that_fails_midway_leaves_the_version_2_file_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, done: int
) -> None:
    """The v3 migration fails after `done` of its statements (all of them: just before its
    commit): the file is still version 2 with every byte of content, and migrates whole the
    next time."""
    path = tmp_path / "v2.db"
    _write_version_2(path)
    before = _read_version_2(path)
    content = _dump(path)
    failing = " ".join(_statements(_SCHEMA_V3)[:done]) + " INSERT INTO no_such_table VALUES (1);"
    monkeypatch.setitem(sqlite_schema._MIGRATIONS, 2, failing)
    with pytest.raises(StoreError, match=f"{path}: not a usable task store: no such table"):
        await SqliteStore(path).open()
    assert _dump(path) == content
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    db.close()
    assert _read_version_2(path) == before
    monkeypatch.setitem(sqlite_schema._MIGRATIONS, 2, _SCHEMA_V3)
    await _assert_reads_back(path, before)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_an_engine_refuses_a_newer_file_naming_it_and_its_version_and_leaves_it_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tasks (task_id TEXT PRIMARY KEY, later TEXT)")
        db.execute("INSERT INTO tasks VALUES ('a', 'b')")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = _digest(path)
    with pytest.raises(StoreError) as refused:
        await SqliteStore(path).open()
    assert str(refused.value) == (
        f"{path}: schema version {SCHEMA_VERSION + 1} was written by a newer asyncplugin "
        f"(this one reads up to {SCHEMA_VERSION}); upgrade asyncplugin to use this file"
    )
    assert _digest(path) == before
    assert _files(tmp_path) == ["future.db"]  # no -wal, no -shm
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    db.close()


async def test_history_links_keep_each_task_apart_whatever_the_write(tmp_path: Path) -> None:
    """Entries of interleaved tasks, written by a step, alone (no record), several at once, or
    for a task that is not the record's, each read back in their task's order."""
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    try:
        for task_id in ("a", "b"):
            await store.create(_record(task_id))
        await store.record(_record("a", revision=2), _check("a", 1, revision=2))
        await store.record(None, _check("b", 1, revision=2))
        await store.record(
            _record("a", revision=3), _check("a", 2, revision=3), _check("a", 3, revision=3)
        )
        await store.record(_record("a", revision=4), _check("b", 2, revision=4))
        await store.record(_record("b", revision=5), _check("b", 3, revision=5))
        assert [c.check_number for c in await store.checks("a")] == [1, 2, 3]
        assert [c.check_number for c in await store.checks("b")] == [1, 2, 3]
        assert [c.check_number for c in await store.checks_after("a", 2)] == [2, 3]
        with pytest.raises(KeyError, match="'nobody' is not in the store"):
            await store.record(_record("nobody", revision=2), _check("nobody", 1))
        with pytest.raises(sqlite3.IntegrityError):
            await store.record(None, _check("nobody", 1))
        assert await store.checks("nobody") == []
        assert [c.check_number for c in await store.checks("a")] == [1, 2, 3]
    finally:
        await store.close()
