"""Opening a store: a failed start releases everything, readers never write, every open error
names its SQLite code and what to do."""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from asyncplugin.engine import Engine, FakeClock, MemoryStore, SqliteStore, StoreError, TaskRecord
from asyncplugin.engine.store.sqlite import SCHEMA_VERSION
from asyncplugin.protocol import TaskState

PAGE = 4096


def _record(number: int) -> TaskRecord:
    return TaskRecord(
        task_id=f"task-{number:04d}",
        target="127.0.0.1:1",
        method="/asyncplugin.v1.PluginService/Invoke",
        state=TaskState.RUNNING,
        payload=b"x" * 2000,
        idempotency_key=f"key-{number}",
        create_time=100.0 + number,
        update_time=100.0 + number,
        next_check_time=1e12,  # far away: nothing is due while a test runs an engine
    )


async def _store_with_tasks(path: Path, count: int) -> None:
    store = SqliteStore(path)
    await store.open()
    for number in range(count):
        await store.create(_record(number))
    await store.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def _lock_is_free(path: Path) -> bool:
    """True if this process can take the engine's claim on `<file>.lock` right now."""
    fd = os.open(path.with_name(path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing the descriptor drops the lock again
    return True


async def test_a_failed_start_releases_the_connection_and_the_claim(tmp_path: Path) -> None:
    """A store whose task pages are corrupt opens (its header is fine) and is claimed, then
    reading the unfinished tasks fails SQLITE_CORRUPT: the engine releases the connection and
    the `<file>.lock` claim, so the same engine starts on the repaired file in this process."""
    path = tmp_path / "tasks.db"
    await _store_with_tasks(path, 60)
    good = path.read_bytes()
    assert len(good) > 20 * PAGE
    path.write_bytes(good[:PAGE] + b"\xa5" * (len(good) - PAGE))  # page 1 (header, schema) intact
    store = SqliteStore(path)
    engine = Engine(store=store, clock=FakeClock())
    with pytest.raises(StoreError) as failed:
        await engine.start()
    assert str(path) in str(failed.value)
    assert "SQLITE_CORRUPT" in str(failed.value)
    assert "restore it from a backup" in str(failed.value)
    assert not engine.running
    assert _lock_is_free(path)
    with pytest.raises(StoreError, match="not open"):
        await store.get("task-0000")  # the connection is closed too
    path.write_bytes(good)  # repaired
    await engine.start()
    try:
        assert engine.running
        assert len(await engine.list(limit=None)) == 60
        assert not _lock_is_free(path)
    finally:
        await engine.stop()
    assert _lock_is_free(path)


class _UnreadableStore(MemoryStore):
    """A store that opens and claims, then fails to list its unfinished tasks (once)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.fail = True

    async def open(self) -> None:
        self.events.append("open")

    async def claim(self) -> None:
        self.events.append("claim")

    async def close(self) -> None:
        self.events.append("close")

    async def unfinished(self) -> list[TaskRecord]:
        if self.fail:
            self.fail = False
            raise RuntimeError("a row that cannot be decoded")
        return await super().unfinished()


async def test_a_start_failing_for_any_reason_closes_the_store() -> None:
    """Not only StoreError: whatever fails after the claim closes the store, and the engine
    can be started again."""
    store = _UnreadableStore()
    engine = Engine(store=store, clock=FakeClock())
    with pytest.raises(RuntimeError, match="cannot be decoded"):
        await engine.start()
    assert store.events == ["open", "claim", "close"]
    assert not engine.running
    await engine.start()
    assert engine.running
    await engine.stop()
    assert store.events == ["open", "claim", "close", "open", "claim", "close"]


async def test_open_errors_carry_the_sqlite_code_and_what_to_do(tmp_path: Path) -> None:
    """An error while opening says which file, the cause with its SQLite code, and the hint
    every other store error carries."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    for store in (SqliteStore(junk), SqliteStore(junk, read_only=True)):
        with pytest.raises(StoreError) as failed:
            await store.open()
        assert str(failed.value) == (
            f"{junk}: not a usable task store: file is not a database (SQLITE_NOTADB); the file "
            "is not an SQLite database"
        )
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    with pytest.raises(StoreError) as failed:
        await SqliteStore(folder).open()
    assert str(folder) in str(failed.value)
    assert "(SQLITE_CANTOPEN); the file cannot be opened; check that its folder exists" in str(
        failed.value
    )
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(StoreError) as failed:
        await SqliteStore(blocked / "tasks.db").open()
    assert str(failed.value) == (
        f"{blocked / 'tasks.db'}: cannot create the task store: File exists: {blocked}; check "
        "that its folder exists and can be written"
    )


async def test_a_reader_reads_and_changes_nothing(tmp_path: Path) -> None:
    """A read-only store reads what an engine wrote; the file's bytes, journal mode and schema
    version stay as they were; it refuses to write or to be claimed."""
    path = tmp_path / "tasks.db"
    await _store_with_tasks(path, 3)
    before = _digest(path)
    reader = SqliteStore(path, read_only=True)
    await reader.open()
    try:
        assert [r.task_id for r in await reader.list()] == ["task-0002", "task-0001", "task-0000"]
        assert await reader.get("task-0001") == _record(1)
        assert await reader.checks("task-0001") == []
        with pytest.raises(StoreError, match="opened read-only; it cannot be written"):
            await reader.create(_record(9))
        with pytest.raises(StoreError, match="opened read-only; it cannot be written"):
            await reader.record(_record(1))
        with pytest.raises(StoreError, match="opened read-only; an engine needs"):
            await reader.claim()
    finally:
        await reader.close()
    assert _digest(path) == before
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert [r.task_id for r in await _read_all(path)] == ["task-0002", "task-0001", "task-0000"]


async def _read_all(path: Path) -> list[TaskRecord]:
    store = SqliteStore(path)
    await store.open()
    try:
        return await store.list()
    finally:
        await store.close()


@pytest.mark.parametrize("content", ["empty", "other database"])
async def test_a_reader_refuses_a_file_without_a_schema_and_leaves_it_alone(
    tmp_path: Path, content: str
) -> None:
    """An empty file, or an SQLite file that is not a task store, is refused in one line and
    gains nothing: no schema, no WAL, no new file beside it."""
    path = tmp_path / "maybe.db"
    if content == "empty":
        path.write_bytes(b"")
    else:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE notes (text TEXT)")
    before = _digest(path)
    with pytest.raises(StoreError) as failed:
        await SqliteStore(path, read_only=True).open()
    assert str(failed.value) == (
        f"{path}: not a task store: no task store schema (an engine or 'asyncplugin invoke' "
        "creates it)"
    )
    assert _digest(path) == before
    assert _files(tmp_path) == ["maybe.db"]
    if content != "empty":
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            assert db.execute("PRAGMA user_version").fetchone()[0] == 0


async def test_a_reader_refuses_a_missing_file_a_folder_and_a_newer_schema(
    tmp_path: Path,
) -> None:
    """Nothing is created where nothing was; a schema from a newer version is not read."""
    missing = tmp_path / "nowhere" / "tasks.db"
    with pytest.raises(StoreError, match=r"no task store here \(the file does not exist\)"):
        await SqliteStore(missing, read_only=True).open()
    assert not missing.parent.exists()
    with pytest.raises(StoreError, match=r"no task store here \(a folder, not a file\)"):
        await SqliteStore(tmp_path, read_only=True).open()
    future = tmp_path / "future.db"
    with sqlite3.connect(future) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="written by a newer asyncplugin"):
        await SqliteStore(future, read_only=True).open()


async def test_an_engine_on_a_read_only_store_fails_at_start_and_releases_it(
    tmp_path: Path,
) -> None:
    """An engine cannot drive a store opened read-only: it says so at start and closes it."""
    path = tmp_path / "tasks.db"
    await _store_with_tasks(path, 1)
    store = SqliteStore(path, read_only=True)
    engine = Engine(store=store, clock=FakeClock())
    with pytest.raises(StoreError, match="opened read-only; an engine needs SqliteStore"):
        await engine.start()
    assert not engine.running
    with pytest.raises(StoreError, match="not open"):
        await store.list()
