"""What the engine service asks of every store: filters, newest-first pages with cursors, id
prefixes, request ids, history after a revision, deletion; and SQLite's v1 -> v2 migration."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asyncplugin.engine import (
    AmbiguousTaskId,
    MemoryStore,
    SqliteStore,
    TaskCursor,
    TaskFilter,
    TaskNotFound,
    TaskOptions,
    TaskStore,
)
from asyncplugin.engine.store.sqlite_schema import _SCHEMA_V1, SCHEMA_VERSION
from asyncplugin.protocol import TaskState
from tests.engine.test_store import _check, _record


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    """Each test runs against every store (PostgreSQL: a fresh schema, tests/conftest.py)."""
    made: TaskStore
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SqliteStore(tmp_path / "t.db")
    else:
        from asyncplugin.engine import open_store

        made = open_store(request.getfixturevalue("pg_database"))
    await made.open()
    yield made
    await made.close()


async def _fill(store: TaskStore) -> list[str]:
    """Ten tasks, two per creation time, on two targets, with labels and states."""
    ids = []
    for number in range(10):
        task_id = f"{number % 3:x}{number:x}" + "0" * 30
        options = TaskOptions(
            labels=(("n", str(number)), ("parity", "even" if number % 2 == 0 else "odd")),
            request_id=f"req-{number}",
        )
        record = _record(
            task_id,
            create_time=100.0 + number // 2,
            target=f"127.0.0.1:{1 + number % 2}",
            state=TaskState.RUNNING if number < 5 else TaskState.SUCCEEDED,
            options=options,
            revision=1,
        )
        await store.create(record)
        ids.append(task_id)
    return ids


def _newest_first(store_ids: list[str]) -> list[str]:
    """Ids made by `_fill` in the stores' order: creation time, then id, descending."""
    return sorted(store_ids, key=lambda i: (100.0 + int(i[1], 16) // 2, i), reverse=True)


async def test_pages_walk_every_task_newest_first_exactly_once(store: TaskStore) -> None:
    ids = await _fill(store)
    seen: list[str] = []
    cursor: TaskCursor | None = None
    while True:
        page = await store.query(TaskFilter(), limit=3, after=cursor)
        seen.extend(record.task_id for record in page)
        if len(page) < 3:
            break
        cursor = TaskCursor.of(page[-1])
    assert seen == _newest_first(ids)


async def test_filters_combine(store: TaskStore) -> None:
    ids = await _fill(store)
    where = TaskFilter.of(
        states=[TaskState.RUNNING], target="127.0.0.1:1", labels={"parity": "even"}
    )
    found = [r.task_id for r in await store.query(where, limit=100)]
    assert found == _newest_first([ids[0], ids[2], ids[4]])
    window = TaskFilter.of(created_after=101.0, created_before=103.0)
    assert sorted(r.task_id for r in await store.query(window, limit=100)) == sorted(ids[2:6])
    assert await store.query(TaskFilter.of(labels={"n": "nope"}), limit=10) == []


async def test_prefixes_and_request_ids(store: TaskStore) -> None:
    ids = await _fill(store)
    assert await store.resolve(ids[1][:2]) == ids[1]
    with pytest.raises(AmbiguousTaskId) as ambiguous:
        await store.resolve("0")
    assert ambiguous.value.candidates == tuple(sorted(i for i in ids if i.startswith("0")))
    with pytest.raises(TaskNotFound):
        await store.resolve("f")
    found = await store.find_request("req-7")
    assert found is not None
    assert found.task_id == ids[7]
    assert await store.find_request("req-x") is None


async def test_history_after_a_revision_and_deletion(store: TaskStore) -> None:
    ids = await _fill(store)
    task_id = ids[0]
    record = await store.get(task_id)
    assert record is not None
    for revision in (2, 3, 4):
        changed = dataclasses.replace(record, revision=revision)
        await store.record(changed, _check(task_id, revision - 1, revision=revision))
    assert [c.check_number for c in await store.checks_after(task_id, 2)] == [2, 3]
    assert len(await store.checks(task_id)) == 3
    got = await store.get(task_id)
    assert got is not None
    assert got.revision == 4
    assert await store.delete(task_id)
    assert await store.get(task_id) is None
    assert await store.checks(task_id) == []
    assert not await store.delete(task_id)


async def test_history_after_every_revision_of_a_long_interleaved_history(
    store: TaskStore,
) -> None:
    """Reading after a revision returns exactly the newer entries, whichever revision is asked,
    with two tasks' writes interleaved (SQLite stops its walk at the first older entry)."""
    ids = await _fill(store)
    records = {}
    for task_id in ids[:2]:
        got = await store.get(task_id)
        assert got is not None
        records[task_id] = got
    for revision in range(2, 42):
        for task_id in ids[:2]:
            changed = dataclasses.replace(records[task_id], revision=revision)
            await store.record(changed, _check(task_id, revision - 1, revision=revision))
    for task_id in ids[:2]:
        everything = await store.checks(task_id)
        assert [c.revision for c in everything] == list(range(2, 42))
        for revision in range(0, 43):
            expected = [c for c in everything if c.revision > revision]
            assert await store.checks_after(task_id, revision) == expected, revision


async def test_sqlite_refuses_a_second_task_with_the_same_request_id(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    try:
        options = TaskOptions(request_id="same")
        await store.create(_record("a", options=options))
        with pytest.raises(ValueError, match="request id 'same'"):
            await store.create(_record("b", options=options))
    finally:
        await store.close()


async def test_a_version_1_file_is_migrated_with_its_tasks(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_V1)
        db.execute(
            "INSERT INTO tasks VALUES ('old1', '127.0.0.1:1', '/a.B/C', 2, x'00', 'k', '{}', "
            "100, 101, 100.5, NULL, 110, NULL, 1, 0, NULL, NULL, NULL)"
        )
        db.execute(
            "INSERT INTO checks (task_id, kind, check_number, started_time, finished_time, "
            "outcome, grpc_code, message, interval_s, reason, next_check_time) VALUES "
            "('old1', 'INITIATE', 0, 100, 100.5, 'RUNNING', '', '', 1.0, 'backoff', 101.5)"
        )
        db.execute("PRAGMA user_version = 1")
    store = SqliteStore(path)
    await store.open()
    try:
        record = await store.get("old1")
        assert record is not None
        assert record.revision == 1
        assert record.options.labels == ()
        assert [c.revision for c in await store.checks_after("old1", 0)] == [1]
        assert [r.task_id for r in await store.query(TaskFilter(), limit=5)] == ["old1"]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3


def test_open_store_reads_paths_and_urls(tmp_path: Path) -> None:
    from asyncplugin.engine import open_store

    plain = open_store(str(tmp_path / "a.db"))
    assert isinstance(plain, SqliteStore)
    assert plain.path == tmp_path / "a.db"
    url = open_store(f"sqlite:///{tmp_path}/b.db")
    assert isinstance(url, SqliteStore)
    assert url.path == tmp_path / "b.db"
    assert isinstance(open_store("memory:"), MemoryStore)
    from asyncplugin.engine.store.postgres import PostgresStore

    assert isinstance(open_store("postgresql://host/db"), PostgresStore)
    assert isinstance(open_store("postgres://host/db"), PostgresStore)
    with pytest.raises(ValueError, match="unknown kind 'mysql'"):
        open_store("mysql://host/db")
    with pytest.raises(ValueError, match="no task store at"):
        open_store(str(tmp_path / "missing.db"), read_only=True)
    (tmp_path / "a.db").touch()
    reader = open_store(str(tmp_path / "a.db"), read_only=True)
    assert isinstance(reader, SqliteStore)
    assert reader.read_only
