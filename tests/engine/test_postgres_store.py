"""The PostgreSQL store's own rules: leases, the fence, the database's clock, hints, migrations.

Every test runs on a real PostgreSQL (a fresh database per test, see tests/conftest.py). Lease
expiry is simulated by moving `lease_until` into the past in the database, not by waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest

from asyncplugin.engine import StoreError, TaskOptions, TaskRecord
from asyncplugin.engine.errors import LeaseLost
from asyncplugin.engine.store import LeaseTerms, open_store
from asyncplugin.engine.store.pg_batch import Write
from asyncplugin.engine.store.pg_schema import SCHEMA_VERSION
from asyncplugin.engine.store.postgres import PostgresStore, describe_url
from asyncplugin.protocol import TaskState
from tests.engine.test_store import _check, _record
from tests.pg_server import free_port

TERMS = LeaseTerms(lease_s=30.0, horizon_s=2.0, poll_interval_s=0.5)

Workers = Callable[..., Awaitable[PostgresStore]]


@pytest.fixture
async def workers(pg_database: str) -> AsyncIterator[Workers]:
    """Opens PostgresStores (one per simulated worker) on the test's database."""
    opened: list[PostgresStore] = []

    async def make(**kwargs: object) -> PostgresStore:
        kwargs.setdefault("terms", TERMS)
        store = PostgresStore(pg_database, **kwargs)  # type: ignore[arg-type]
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


def _sql(url: str, query: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query.encode(), params or None)
        return cursor.fetchall() if cursor.description else []


def _expire(url: str, task_id: str) -> None:
    """The lease's time has passed (on the database's clock), as if its holder had paused."""
    _sql(url, "UPDATE tasks SET lease_until = now() - interval '1 s' WHERE task_id = %s", task_id)


def _due_now(task_id: str, now: float, **changes: object) -> TaskRecord:
    """A task created at `now` and due then (unless `changes` say otherwise)."""
    fields: dict[str, object] = {"update_time": now, "next_check_time": now, **changes}
    return _record(task_id, create_time=now, **fields)


async def test_each_due_task_is_leased_to_one_worker(workers: Workers) -> None:
    """Two workers leasing at once share out the due tasks: none twice, none left, token 1."""
    a, b = await workers(), await workers()
    now = time.time()
    for i in range(150):
        await a.create(_due_now(f"t{i:03}", now))
    got_a, got_b = await asyncio.gather(a.lease_due(limit=100), b.lease_due(limit=100))
    more_a, more_b = await asyncio.gather(a.lease_due(limit=100), b.lease_due(limit=100))
    ids_a = {lease.record.task_id for lease in got_a + more_a}
    ids_b = {lease.record.task_id for lease in got_b + more_b}
    assert not ids_a & ids_b
    assert len(ids_a | ids_b) == 150
    assert all(0 <= lease.due_in_s < 0.5 for lease in got_a + got_b)
    assert await a.lease_due(limit=10) == []
    assert await b.lease_due(limit=10) == []
    tokens = {row[0] for row in _sql(a.url, "SELECT DISTINCT lease_token FROM tasks")}
    assert tokens == {1}


async def test_late_write_is_refused_by_the_fence_and_logged(
    workers: Workers, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker whose lease expired and was taken over writes nothing: LeaseLost, a warning
    naming both tokens, and the new holder's record stays. Same check number for both."""
    a, b = await workers(), await workers()
    now = time.time()
    await a.create(_due_now("t1", now))
    (lease_a,) = await a.lease_due(limit=1)
    _expire(a.url, "t1")
    (lease_b,) = await b.lease_due(limit=1)
    assert lease_b.record == lease_a.record  # same record: same check number and key
    mine = dataclasses.replace(lease_b.record, state=TaskState.RUNNING, check_count=1)
    await b.record(mine, _check("t1", 1, message="by b"))
    stale = dataclasses.replace(lease_a.record, state=TaskState.FAILED, next_check_time=None)
    with caplog.at_level(logging.WARNING), pytest.raises(LeaseLost, match="token 1"):
        await a.record(stale, _check("t1", 1, message="by a"))
    assert "late write refused" in caplog.text
    assert "token 2" in caplog.text
    assert await a.get("t1") == mine
    assert [c.message for c in await a.checks("t1")] == ["by b"]
    assert not a.holds("t1")
    assert b.holds("t1")
    assert a.refused_writes == 1


async def test_tokens_grow_with_every_lease(workers: Workers) -> None:
    """Each lease of a task gets the next token; an expired lease lets another worker lease."""
    a, b = await workers(), await workers()
    await a.create(_due_now("t1", time.time()))
    seen = []
    for worker in (a, b, a, b):
        (lease,) = await worker.lease_due(limit=1)
        seen.append(_sql(a.url, "SELECT lease_token, lease_owner FROM tasks")[0])
        assert await worker.lease_due(limit=1) == []  # a live lease is never given out again
        assert lease.record.task_id == "t1"
        _expire(a.url, "t1")
    assert [token for token, _ in seen] == [1, 2, 3, 4]
    assert [owner for _, owner in seen] == [a.owner, b.owner, a.owner, b.owner]


async def test_due_times_are_decided_on_the_databases_clock(workers: Workers) -> None:
    """A worker whose clock is a day off still schedules the interval it chose from the
    database's now(): the task is due in 1 s, not a day early or late."""
    a, b = await workers(), await workers()
    skewed = time.time() - 86_400.0  # this worker's clock is a day behind
    await a.create(_due_now("t1", skewed))
    (lease,) = await a.lease_due(limit=1)
    assert lease.due_in_s < 0.5  # due now, whatever the recorded epoch says
    later = dataclasses.replace(
        lease.record, state=TaskState.RUNNING, update_time=skewed, next_check_time=skewed + 1.0
    )
    await a.record(later)
    (delta,) = _sql(a.url, "SELECT extract(epoch FROM due_at - now())::float8 FROM tasks")[0]
    assert 0.5 < float(delta) <= 1.0  # type: ignore[arg-type]
    assert a.holds("t1")  # due within the horizon: the lease is kept
    assert await b.lease_due(limit=1) == []


async def test_a_task_due_beyond_the_horizon_is_given_back(workers: Workers) -> None:
    """A write whose next call is due after the horizon releases the lease; a finished task
    leaves the scheduling index (due_at NULL) and its lease ends."""
    a, b = await workers(), await workers()
    now = time.time()
    await a.create(_due_now("far", now))
    await a.create(_due_now("done", now))
    assert len(await a.lease_due(limit=5)) == 2
    far = _due_now("far", now, state=TaskState.RUNNING, next_check_time=now + 60.0)
    await a.record(far)
    done = _due_now("done", now, state=TaskState.SUCCEEDED, next_check_time=None, end_time=now)
    await a.record(done)
    assert not a.holds("far")
    assert not a.holds("done")
    rows = dict(
        (row[0], row[1:])
        for row in _sql(a.url, "SELECT task_id, lease_owner, due_at IS NULL FROM tasks")
    )
    assert rows == {"far": (None, False), "done": (None, True)}
    assert await b.lease_due(limit=5) == []  # far is not due within b's horizon either


async def test_finished_tasks_are_not_in_the_scheduling_index(workers: Workers) -> None:
    """The scheduling index is partial (unfinished tasks only) and the lease uses it."""
    a = await workers()
    (definition,) = _sql(a.url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'tasks_due'")
    assert "WHERE (due_at IS NOT NULL)" in str(definition[0])
    now = time.time()
    for i in range(20):
        state = TaskState.SUCCEEDED if i % 2 else TaskState.WAITING
        next_time = None if i % 2 else now + 3600.0
        await a.create(_due_now(f"t{i}", now, state=state, next_check_time=next_time))
    with psycopg.connect(a.url, autocommit=True) as conn:
        conn.execute(b"SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                b"EXPLAIN SELECT task_id FROM tasks WHERE due_at <= now() ORDER BY due_at"
            )
        )
        indexed = conn.execute(b"SELECT count(*) FROM tasks WHERE due_at IS NOT NULL").fetchone()
    assert "tasks_due" in plan
    assert indexed == (10,)


async def test_ensure_lease_extends_under_the_fence(workers: Workers) -> None:
    """A lease too short for the next call is extended (one statement); once another worker
    took the task, extending fails with LeaseLost and the worker forgets it."""
    short = LeaseTerms(lease_s=1.0, horizon_s=1.0, poll_interval_s=0.5)
    a, b = await workers(terms=short), await workers(terms=short)
    await a.create(_due_now("t1", time.time()))
    await a.lease_due(limit=1)
    await a.ensure_lease("t1", need_s=20.0)
    (left,) = _sql(a.url, "SELECT extract(epoch FROM lease_until - now())::float8 FROM tasks")[0]
    assert float(left) > 20.0  # type: ignore[arg-type]
    await a.ensure_lease("t1", need_s=5.0)  # enough left: nothing to do
    _expire(a.url, "t1")
    await b.lease_due(limit=1)
    with pytest.raises(LeaseLost):
        await a.ensure_lease("t1", need_s=30.0)
    assert not a.holds("t1")


async def test_a_pinned_step_cannot_write_under_a_newer_lease_of_its_own_worker(
    workers: Workers,
) -> None:
    """A step pinned to token 1 is refused after its worker leased the task again (token 2);
    a write outside the pin uses the new lease."""
    a = await workers()
    now = time.time()
    await a.create(_due_now("t1", now))
    (lease,) = await a.lease_due(limit=1)
    running = dataclasses.replace(lease.record, state=TaskState.RUNNING)
    with a.pin("t1"):
        _expire(a.url, "t1")
        assert len(await a.lease_due(limit=1)) == 1  # the same worker, a new lease
        with pytest.raises(LeaseLost, match="superseded by token 2"):
            await a.record(running)
    assert a.holds("t1")  # the newer lease stands
    await a.record(running)
    assert await a.get("t1") == running
    with pytest.raises(LeaseLost):
        a.pin("never-leased").__enter__()


async def test_close_gives_leases_back(workers: Workers) -> None:
    """A worker that stops releases its leases, so another leases them at once."""
    a, b = await workers(), await workers()
    await a.create(_due_now("t1", time.time()))
    assert len(await a.lease_due(limit=1)) == 1
    assert await b.lease_due(limit=1) == []
    await a.close()
    assert [lease.record.task_id for lease in await b.lease_due(limit=1)] == ["t1"]


async def test_unleased_writes_only_while_nobody_holds_the_task(workers: Workers) -> None:
    """A worker that never leased a task cannot overwrite the holder's record; a finished
    task's history can still be appended to (the cancel request sent after the end)."""
    a, b = await workers(), await workers()
    now = time.time()
    await a.create(_due_now("t1", now))
    await b.lease_due(limit=1)
    with pytest.raises(LeaseLost, match="without a lease"):
        await a.record(_due_now("t1", now, state=TaskState.FAILED, next_check_time=None))
    done = _due_now("t1", now, state=TaskState.CANCELLED, next_check_time=None, end_time=now)
    await b.record(done)
    await a.record(None, _check("t1", 2, message="cancel request answered"))
    assert [c.message for c in await a.checks("t1")] == ["cancel request answered"]


async def test_cancel_request_wakes_workers_and_reaches_the_holder(workers: Workers) -> None:
    """A cancel asked through another worker sets the flag, makes the task due, and wakes an
    idle worker at once (NOTIFY); the holder finds it among its cancel requests."""
    a, b = await workers(), await workers()
    await a.create(_due_now("t1", time.time() + 0.0))
    (lease,) = await a.lease_due(limit=1)
    later = dataclasses.replace(lease.record, state=TaskState.RUNNING, next_check_time=None)
    await a.record(dataclasses.replace(later, next_check_time=later.update_time + 1.0))
    assert await b.wait_for_work(0.01) in (True, False)  # settle: drain the create's hint
    waiter = asyncio.ensure_future(b.wait_for_work(10.0))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    assert await b.request_cancel("t1")
    assert await waiter is True
    assert time.monotonic() - started < 2.0
    assert await a.cancel_requests() == ["t1"]
    assert await b.cancel_requests() == []
    assert not await b.request_cancel("missing")


async def test_one_hint_per_batch_of_new_tasks(workers: Workers) -> None:
    """Tasks created together go in one statement with ONE notification, not one per row."""
    a = await workers()
    with psycopg.connect(a.url, autocommit=True) as listener:
        listener.execute(b"LISTEN asyncplugin_work")
        now = time.time()
        await asyncio.gather(*(a.create(_due_now(f"t{i}", now)) for i in range(50)))
        hints = list(listener.notifies(timeout=0.5))
    assert len(await a.list()) == 50
    assert len(hints) == 1


async def test_a_second_task_with_the_same_request_id_is_refused(workers: Workers) -> None:
    """Request ids name one task across workers: the second create is refused, naming it."""
    a, b = await workers(), await workers()
    options = TaskOptions(request_id="same")
    await a.create(_record("a", options=options))
    with pytest.raises(ValueError, match="request id 'same'"):
        await b.create(_record("b", options=options))
    assert await b.get("b") is None
    found = await b.find_request("same")
    assert found is not None
    assert found.task_id == "a"


async def test_a_report_through_another_worker_takes_the_task_over(workers: Workers) -> None:
    """take_over gives the task a new token whoever holds it (the holder's writes are refused
    from then on) and makes the next call wait for what was left of the old lease."""
    a, b = await workers(), await workers()
    now = time.time()
    await a.create(_due_now("t1", now))
    (lease,) = await a.lease_due(limit=1)
    taken = await b.take_over("t1")
    assert taken is not None
    assert taken.due_in_s > TERMS.lease_s - 5.0  # a's lease had ~30 s left
    assert b.holds("t1")
    with pytest.raises(LeaseLost):
        await a.record(dataclasses.replace(lease.record, state=TaskState.RUNNING))
    done = _due_now("t1", now, state=TaskState.SUCCEEDED, next_check_time=None, end_time=now)
    await b.record(done)
    assert await b.take_over("t1") is None  # finished: nothing to take over


async def test_a_retried_write_is_applied_once(workers: Workers) -> None:
    """A write sent again after a lost connection (same write id) is recognised as applied:
    its history entries are not recorded twice."""
    a = await workers()
    now = time.time()
    await a.create(_due_now("t1", now))
    await a.lease_due(limit=1)
    write: Write = a._new_write(
        _due_now("t1", now, state=TaskState.RUNNING), [_check("t1", 1)], token=1
    )
    await a._flush_writes([write])
    again = dataclasses.replace(write, future=asyncio.get_running_loop().create_future())
    await a._flush_writes([again])
    assert again.future.done()
    assert again.future.exception() is None
    assert len(await a.checks("t1")) == 1


async def test_schema_is_versioned_and_migrated_once(pg_database: str) -> None:
    """A fresh database gets the current schema at open; migrating again changes nothing."""
    store = PostgresStore(pg_database)
    assert await store.migrate() == (0, SCHEMA_VERSION)
    assert await store.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
    await store.open()
    await store.close()
    assert _sql(pg_database, "SELECT version FROM asyncplugin_schema") == [(SCHEMA_VERSION,)]


async def test_a_newer_schema_is_refused_naming_both_versions(pg_database: str) -> None:
    """A database migrated by a newer asyncplugin is refused at open, with both versions."""
    await PostgresStore(pg_database).migrate()
    _sql(pg_database, "UPDATE asyncplugin_schema SET version = %s", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError) as raised:
        await PostgresStore(pg_database).open()
    text = str(raised.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in text
    assert f"reads up to {SCHEMA_VERSION}" in text


async def test_a_reader_neither_creates_nor_migrates(pg_database: str) -> None:
    """A read-only store on an empty database says to run `store migrate`; creates nothing."""
    with pytest.raises(StoreError, match="asyncplugin store migrate"):
        await open_store(pg_database, read_only=True).open()
    assert _sql(pg_database, "SELECT to_regclass('tasks') IS NULL") == [(True,)]


async def test_a_url_that_does_not_connect_names_host_and_cause() -> None:
    """Opening a store where nothing listens fails at once, in one line, host and cause."""
    port = free_port()
    store = PostgresStore(
        f"postgresql://someone:s3cret@127.0.0.1:{port}/tasks", connect_timeout_s=2.0
    )
    with pytest.raises(StoreError) as raised:
        await store.open()
    text = str(raised.value)
    assert "\n" not in text
    assert f"127.0.0.1:{port}/tasks" in text
    assert "refused" in text.lower()
    assert "s3cret" not in text


def test_describe_url_never_shows_the_password() -> None:
    """Error messages name host, port, database and user only."""
    assert (
        describe_url("postgresql://u:pw@db.example:6543/jobs?sslmode=require")
        == "db.example:6543/jobs (user u)"
    )
    assert "pw" not in describe_url("host=h password=pw dbname=d")
