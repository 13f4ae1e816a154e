"""Every task store keeps every field of every record and check, atomically; SQLite is versioned.

The PostgreSQL store runs the same contract tests (on a real server: see tests/conftest.py);
its own behaviour (leases, fencing, migrations, faults) is in tests/engine/test_postgres_*.py.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asyncplugin.engine import (
    BearerTokens,
    CallKind,
    CheckOutcome,
    CheckRecord,
    Engine,
    GrpcTransport,
    MemoryStore,
    PollingPolicy,
    SqliteStore,
    StoreError,
    TaskOptions,
    TaskRecord,
    TaskStore,
    TransportRetryPolicy,
)
from asyncplugin.engine.store import open_store
from asyncplugin.engine.store.sqlite import SCHEMA_VERSION
from asyncplugin.protocol import TaskState
from tests.engine.conftest import MakeEngine, Serve
from tests.engine.plugins import Job


def _record(task_id: str = "t1", *, create_time: float = 100.0, **changes: object) -> TaskRecord:
    record = TaskRecord(
        task_id=task_id,
        target="127.0.0.1:1",
        method="/asyncplugin.v1.PluginService/Invoke",
        state=TaskState.WAITING,
        payload=b"\x00payload\xff",
        idempotency_key="key-1",
        options=TaskOptions(
            policy=PollingPolicy(initial_interval_s=2.0, max_checks=None),
            retry_policy=TransportRetryPolicy(max_retries=3),
            deadline_s=60.0,
            plugin_id="transcriber",
            plugin_instance_id="eu-1",
            metadata=(("x-team", "a"),),
        ),
        create_time=create_time,
        update_time=create_time,
        next_check_time=create_time,
        deadline=create_time + 60.0,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def _check(task_id: str = "t1", number: int = 1, **changes: object) -> CheckRecord:
    check = CheckRecord(
        task_id=task_id,
        kind=CallKind.CHECK,
        check_number=number,
        started_time=101.0,
        finished_time=101.5,
        outcome=CheckOutcome.RUNNING,
        grpc_code="",
        message="40% done",
        interval_s=2.5,
        reason="backoff 2*1.6^0=2s jitter +25% -> 2.5s",
        next_check_time=104.0,
    )
    return dataclasses.replace(check, **changes)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    """Each contract test runs against every store."""
    made: TaskStore
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SqliteStore(tmp_path / "t.db")
    else:
        made = open_store(request.getfixturevalue("pg_database"))
    await made.open()
    yield made
    await made.close()


async def test_create_and_get_round_trip_every_field(store: TaskStore) -> None:
    """A created record reads back equal, options and bytes included."""
    record = _record()
    await store.create(record)
    assert await store.get("t1") == record
    assert await store.get("nope") is None


async def test_duplicate_id_is_refused(store: TaskStore) -> None:
    """Creating a task id twice is an error, not an overwrite."""
    await store.create(_record())
    with pytest.raises(ValueError, match="already exists"):
        await store.create(_record())


async def test_record_replaces_task_and_appends_checks_in_order(store: TaskStore) -> None:
    """record() stores the new task state and its history entries; checks() keeps order."""
    await store.create(_record())
    running = _record(
        state=TaskState.RUNNING,
        status=b"\x10\x02",
        check_count=1,
        retries=2,
        start_time=100.5,
        update_time=101.5,
        next_check_time=104.0,
    )
    first = _check(number=0, kind=CallKind.INITIATE, interval_s=None, next_check_time=None)
    second = _check(number=1, outcome=CheckOutcome.TRANSPORT_RETRY, grpc_code="UNAVAILABLE")
    await store.record(running, first, second)
    await store.record(None, _check(number=2))
    assert await store.get("t1") == running
    assert await store.checks("t1") == [first, second, _check(number=2)]
    assert await store.checks("unknown") == []


async def test_terminal_record_keeps_result_and_error(store: TaskStore) -> None:
    """Result bytes and error envelope bytes survive exactly."""
    await store.create(_record())
    finished = _record(
        state=TaskState.FAILED,
        result=b"",
        error=b"\x0a\x03bad",
        end_time=110.0,
        next_check_time=None,
    )
    await store.record(finished)
    got = await store.get("t1")
    assert got == finished
    assert got is not None
    assert got.result == b""


async def test_list_filters_by_state_newest_first(store: TaskStore) -> None:
    """list() returns newest first, filtered by states, cut at limit; unfinished() finds work."""
    await store.create(_record("a", create_time=1.0))
    await store.create(_record("b", create_time=2.0, state=TaskState.RUNNING))
    await store.create(_record("c", create_time=3.0, state=TaskState.SUCCEEDED))
    assert [r.task_id for r in await store.list()] == ["c", "b", "a"]
    assert [r.task_id for r in await store.list(limit=2)] == ["c", "b"]
    assert [r.task_id for r in await store.list(states=[TaskState.SUCCEEDED])] == ["c"]
    assert [r.task_id for r in await store.list(states=[])] == []
    assert sorted(r.task_id for r in await store.unfinished()) == ["a", "b"]
    await store.create(_record("0-same-time", create_time=3.0))
    assert [r.task_id for r in await store.list(limit=2)] == ["0-same-time", "c"]


async def test_record_for_unknown_task_fails(store: TaskStore) -> None:
    """Recording against a task that was never created is an error, not a silent insert."""
    with pytest.raises((KeyError, sqlite3.IntegrityError)):
        await store.record(_record("ghost"))
    with pytest.raises((KeyError, sqlite3.IntegrityError)):
        await store.record(None, _check("ghost"))


async def test_sqlite_survives_reopen_with_wal_and_version(tmp_path: Path) -> None:
    """The SQLite file uses WAL, carries the schema version, is private, and keeps data."""
    path = tmp_path / "tasks.db"
    store = SqliteStore(path)
    await store.open()
    await store.create(_record())
    await store.record(_record(state=TaskState.RUNNING), _check())
    await store.close()
    reopened = SqliteStore(path)
    await reopened.open()
    assert (await reopened.get("t1")) == _record(state=TaskState.RUNNING)
    assert await reopened.checks("t1") == [_check()]
    await reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    """A file written by a newer schema version is refused with a clear error."""
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer asyncplugin"):
        await SqliteStore(path).open()


async def test_sqlite_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    """A random file is reported as not a usable task store."""
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable task store"):
        await SqliteStore(path).open()


async def test_sqlite_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    """record() is atomic: if the check insert fails, the task update is rolled back too."""
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    await store.create(_record())
    with pytest.raises(sqlite3.IntegrityError):
        await store.record(_record(state=TaskState.RUNNING), _check("ghost"))
    got = await store.get("t1")
    assert got is not None
    assert got.state is TaskState.WAITING
    await store.close()


async def test_sqlite_unopened_store_says_so(tmp_path: Path) -> None:
    """Using a store before open() raises StoreError, not an AttributeError."""
    with pytest.raises(StoreError, match="not open"):
        await SqliteStore(tmp_path / "t.db").get("x")


async def test_sqlite_never_writes_the_bearer_token(
    tmp_path: Path, make_engine: MakeEngine, serve: Serve
) -> None:
    """The bearer token a task is called with stays in the transport's memory: the plugin gets
    it, and the SQLite files never hold it."""
    plugin = await serve(Job(checks=2))
    secret = "tok-" + "s3cr3t" * 4
    transport = GrpcTransport(metadata_provider=BearerTokens({plugin.target: secret}))
    engine = await make_engine(store=SqliteStore(tmp_path / "t.db"), transport=transport)
    options = TaskOptions(metadata=(("x-team", "a"),))
    record = await engine.invoke(plugin.target, options=options)
    await engine.stop()
    await transport.close()
    assert record.state is TaskState.SUCCEEDED
    assert [m["authorization"] for m in plugin.metadata] == [f"Bearer {secret}"] * 3
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    loaded = await store.get(record.task_id)
    await store.close()
    assert loaded is not None
    assert loaded.options.metadata == (("x-team", "a"),)
    assert secret not in repr(record)
    assert secret not in repr(transport)
    assert _files_containing(tmp_path, secret.encode()) == []


def _files_containing(folder: Path, needle: bytes) -> list[str]:
    return [file.name for file in folder.iterdir() if needle in file.read_bytes()]


async def test_second_engine_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    """Two engines on one store would poll every task twice: the second fails at start, naming
    the file; once the first stops, the file can be claimed again. Readers never claim."""
    path = tmp_path / "t.db"
    first = Engine(store=SqliteStore(path))
    await first.start()
    try:
        second = Engine(store=SqliteStore(path))
        with pytest.raises(StoreError, match="another engine is using this task store"):
            await second.start()
        assert not second.running
        reader = SqliteStore(path)
        await reader.open()  # `asyncplugin tasks` reads while an engine runs
        assert await reader.list() == []
        await reader.close()
    finally:
        await first.stop()
    again = Engine(store=SqliteStore(path))
    await again.start()
    await again.stop()
