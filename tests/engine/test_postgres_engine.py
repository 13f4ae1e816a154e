"""Engines as workers on one PostgreSQL store, in one process: they share the tasks, never call
the plugin twice at once for one task, and serve wait, watch and cancel for each other's tasks.

These run on the real clock (the database decides due times, see docs/scale-out.md) with
intervals of tens of milliseconds; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from asyncplugin.engine import (
    Engine,
    PollingPolicy,
    TaskStateError,
    TaskUpdate,
    TransportRetryPolicy,
)
from asyncplugin.engine.store import LeaseTerms
from asyncplugin.engine.store.postgres import PostgresStore
from asyncplugin.protocol import TaskState
from asyncplugin.v1 import plugin_pb2
from tests.engine.plugins import Answer, Behaviour, Job, PluginServer, done, running
from tests.reliability.invariants import history_problems

POLICY = PollingPolicy(
    initial_interval_s=0.05,
    multiplier=1.5,
    max_interval_s=0.4,
    min_interval_s=0.02,
    jitter=0.2,
    check_timeout_s=5.0,
    deadline_s=120.0,
)
RETRY = TransportRetryPolicy(initial_backoff_s=0.05, max_backoff_s=0.2, min_backoff_s=0.02)
TERMS = LeaseTerms(lease_s=20.0, horizon_s=0.2, poll_interval_s=0.1, batch=4)

Workers = Callable[..., Awaitable[Engine]]


@dataclass
class Calls:
    """Wraps a behaviour; records each call's task, kind, check number, start and end."""

    behaviour: Behaviour
    log: list[tuple[str, bool, int, float, float]] = field(default_factory=list)

    async def __call__(self, request: plugin_pb2.InvokeRequest) -> Answer:
        started = time.monotonic()
        try:
            return await self.behaviour(request)
        finally:
            context = request.context
            self.log.append(
                (context.task_id, request.cancel_requested, context.check_number, started,
                 time.monotonic())
            )  # fmt: skip

    def overlaps(self) -> list[str]:
        """Tasks with two calls in flight at once."""
        spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for task_id, _, _, start, end in self.log:
            spans[task_id].append((start, end))
        found = []
        for task_id, calls in spans.items():
            calls.sort()
            if any(later[0] < earlier[1] for earlier, later in itertools.pairwise(calls)):
                found.append(task_id)
        return found


@pytest.fixture
async def workers(pg_database: str) -> AsyncIterator[Workers]:
    """Starts engine workers on the test's PostgreSQL namespace; stops them after the test."""
    started: list[Engine] = []

    async def make(**kwargs: Any) -> Engine:
        kwargs.setdefault("policy", POLICY)
        engine = Engine(
            store=PostgresStore(pg_database, terms=kwargs.pop("terms", TERMS)),
            retry_policy=RETRY,
            shutdown_grace_s=0.0,
            **kwargs,
        )
        await engine.start()
        started.append(engine)
        return engine

    yield make
    for engine in started:
        await engine.stop()


async def _until(check: Callable[[], Awaitable[bool]], *, timeout_s: float) -> None:
    """Returns once `check()` is true (real processes' progress; bounded by `timeout_s`)."""
    async with asyncio.timeout(timeout_s):
        for _ in itertools.count():
            if await check():
                return
            await asyncio.sleep(0.02)


async def _plugin(behaviour: Behaviour) -> tuple[PluginServer, Calls]:
    calls = Calls(behaviour)
    return await PluginServer(calls).start(), calls


async def test_two_workers_share_the_tasks_and_never_call_one_task_twice_at_once(
    workers: Workers,
) -> None:
    """60 tasks submitted to one worker are run by both; every one succeeds once, with a
    consistent history, and no task ever has two calls in flight."""
    server, calls = await _plugin(Job(checks=3, result=b"ok"))
    ran: Counter[int] = Counter()
    # Every interval is longer than the horizon: each check gives the task back to the table,
    # and whichever worker leases first runs the next one.
    spread = PollingPolicy(initial_interval_s=0.15, min_interval_s=0.15, max_interval_s=0.3)
    terms = LeaseTerms(lease_s=20.0, horizon_s=0.1, poll_interval_s=0.1, batch=4)
    a = await workers(on_change=lambda update: ran.update([0]), policy=spread, terms=terms)
    b = await workers(on_change=lambda update: ran.update([1]), policy=spread, terms=terms)
    try:
        ids = await asyncio.gather(*(a.submit(server.target, payload={"i": i}) for i in range(60)))
        async with asyncio.timeout(45):
            records = await asyncio.gather(*(b.wait(task_id) for task_id in ids))
        assert {r.state for r in records} == {TaskState.SUCCEEDED}
        assert {r.result for r in records} == {b"ok"}
        assert calls.overlaps() == []
        for task_id in ids:
            history = await a.checks(task_id)
            assert history_problems(history) == []
            assert [c.check_number for c in history] == [0, 1, 2, 3]
        assert ran[0] > 0
        assert ran[1] > 0  # both workers recorded progress
        assert a.store.refused_writes == 0  # type: ignore[attr-defined]
        assert b.store.refused_writes == 0  # type: ignore[attr-defined]
    finally:
        await server.stop()


async def test_wait_watch_and_cancel_through_a_worker_that_does_not_hold_the_task(
    workers: Workers,
) -> None:
    """A worker that does not run a task still waits for it, watches every change (the check
    history included), and cancels it: the holder sends the plugin the cancel request."""
    server, calls = await _plugin(Job(checks=4, result=b"fin"))
    forever, forever_calls = await _plugin(Job(forever=True))
    await workers()  # runs the tasks
    b = await workers()
    await b._leasing.stop()  # type: ignore[union-attr] # b serves the API only
    try:
        finishing = await b.submit(server.target)
        seen: list[TaskUpdate] = []
        async with asyncio.timeout(30):
            async for update in b.watch(finishing):
                seen.append(update)
            final = await b.wait(finishing)
        assert final.state is TaskState.SUCCEEDED
        assert seen[-1].record == final
        watched = [check for update in seen for check in update.checks]
        assert watched == await b.checks(finishing)
        assert [c.check_number for c in watched] == [0, 1, 2, 3, 4]

        endless = await b.submit(forever.target)

        async def checked_twice() -> bool:
            return (await b.get(endless)).check_count >= 2

        await _until(checked_twice, timeout_s=30)
        cancelled = await b.cancel(endless)
        assert cancelled.state is TaskState.CANCELLED

        # The holder records CANCELLED first (which ends b.cancel), then sends the plugin the
        # cancel request and appends its answer: on a busy machine b can read the history
        # before that entry is there, so it waits for the holder to append it.
        async def cancel_recorded() -> bool:
            return (await b.checks(endless))[-1].kind.value == "CANCEL"

        await _until(cancel_recorded, timeout_s=30)
        history = await b.checks(endless)
        assert history[-1].kind.value == "CANCEL"
        assert any(cancel for _, cancel, _, _, _ in forever_calls.log)
        assert forever_calls.overlaps() == []
        assert calls.overlaps() == []
    finally:
        await server.stop()
        await forever.stop()


async def test_a_worker_that_lost_its_lease_mid_call_cannot_record_its_answer(
    workers: Workers, pg_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Worker A's status check hangs past its lease; B takes the task over and checks it again
    with the same check number and idempotency key, and finishes it. A's late answer is refused
    by the fence, logged, and the task's record and history are B's."""
    release, arrived = asyncio.Event(), asyncio.Event()
    first_check: list[plugin_pb2.InvokeRequest] = []
    job = Job(checks=3, result=b"by-b")

    async def behaviour(request: plugin_pb2.InvokeRequest) -> Answer:
        if request.context.check_number == 1 and not first_check:
            first_check.append(request)
            arrived.set()
            await release.wait()  # A's call: in flight while its lease runs out
        return await job(request)

    server, calls = await _plugin(behaviour)
    a = await workers()
    try:
        task_id = await a.submit(server.target)
        async with asyncio.timeout(20):
            await arrived.wait()
        await a._leasing.stop()  # type: ignore[union-attr] # A pauses: it leases nothing more
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute(
                b"UPDATE tasks SET lease_until = now() - interval '1 s' WHERE task_id = %s",
                [task_id],
            )
        b = await workers()
        async with asyncio.timeout(30):
            final = await b.wait(task_id)
        assert final.state is TaskState.SUCCEEDED
        assert final.result == b"by-b"

        async def refused() -> bool:
            return bool(a.store.refused_writes)  # type: ignore[attr-defined]

        with caplog.at_level(logging.WARNING):
            release.set()
            await _until(refused, timeout_s=10)
        assert "late write refused" in caplog.text
        assert await b.get(task_id) == final
        history = await b.checks(task_id)
        assert [c.check_number for c in history] == [0, 1, 2, 3]
        assert history_problems(history) == []
        check_ones = [r for _, r in server.requests if r.context.check_number == 1]
        assert len(check_ones) == 2  # A's and B's: the same check, sent again
        assert {r.context.idempotency_key for r in check_ones} == {final.idempotency_key}
        assert task_id not in a._active
    finally:
        release.set()
        await server.stop()
    del calls


async def test_a_stopping_worker_hands_its_tasks_over_at_once(workers: Workers) -> None:
    """A worker that stops gives its leases back: another continues its tasks right away,
    with the next check numbers, without waiting for the leases to expire."""
    server, calls = await _plugin(Job(checks=6, result=b"end"))
    long_lease = LeaseTerms(lease_s=600.0, horizon_s=0.2, poll_interval_s=0.1)
    a = await workers(terms=long_lease)
    ids = await asyncio.gather(*(a.submit(server.target) for _ in range(5)))
    try:

        async def all_checked() -> bool:
            return min([(await a.get(t)).check_count for t in ids]) >= 1

        await _until(all_checked, timeout_s=20)
        await a.stop()
        b = await workers(terms=long_lease)
        async with asyncio.timeout(20):
            records = await asyncio.gather(*(b.wait(task_id) for task_id in ids))
        assert {r.state for r in records} == {TaskState.SUCCEEDED}
        for task_id in ids:
            assert history_problems(await b.checks(task_id)) == []
        assert calls.overlaps() == []
    finally:
        await server.stop()


async def test_a_worker_at_capacity_leases_again_as_soon_as_tasks_leave(workers: Workers) -> None:
    """A worker that holds as many tasks as it may leases more the moment a batch fits, not at
    its next poll: 200 tasks through a worker holding at most 64 at once finish long before
    its 60 s polls would allow."""
    server, calls = await _plugin(Job(checks=2, result=b"ok"))
    # Polls so far apart that no loaded machine's slowness comes near what waiting for them
    # would cost (5 s polls gave >= 15 s against 8.4 s measured at load average 9).
    slow_polls = LeaseTerms(lease_s=120.0, horizon_s=60.0, poll_interval_s=60.0, batch=16)
    spread = PollingPolicy(initial_interval_s=0.05, min_interval_s=0.05, max_interval_s=0.1)
    a = await workers(terms=slow_polls, policy=spread, max_concurrent_rpcs=8)
    try:
        started = time.monotonic()
        ids = await asyncio.gather(*(a.submit(server.target) for _ in range(200)))
        async with asyncio.timeout(45):
            records = await asyncio.gather(*(a.wait(task_id) for task_id in ids))
        elapsed = time.monotonic() - started
        assert {r.state for r in records} == {TaskState.SUCCEEDED}
        # 200 tasks / 64 held at once = 4 rounds: at one round per 60 s poll, >= 180 s.
        assert elapsed < 45.0
        assert calls.overlaps() == []
    finally:
        await server.stop()


async def test_a_completion_through_another_worker_wins_over_a_check_in_flight(
    workers: Workers,
) -> None:
    """Worker A's status check is in flight when the plugin completes the task through worker
    B: B takes the task over and records the completion; A's answer is refused by the fence,
    so exactly one end is recorded. A repeated completion is idempotent, a different one is
    refused with the task's state."""
    entered, answer = asyncio.Event(), asyncio.get_running_loop().create_future()

    async def behaviour(request: plugin_pb2.InvokeRequest) -> Answer:
        if not request.is_status_check:
            return running({"job": request.context.task_id})
        entered.set()
        result: Answer = await answer
        return result

    server, calls = await _plugin(behaviour)
    a = await workers()
    b = await workers()
    await b._leasing.stop()  # type: ignore[union-attr] # b serves the API only
    try:
        task_id = await a.submit(server.target)
        async with asyncio.timeout(20):
            await entered.wait()
        record, repeated = await b.complete(task_id, data=b"pushed")
        assert record.state is TaskState.SUCCEEDED
        assert record.result == b"pushed"
        assert not repeated
        assert (await b.complete(task_id, data=b"pushed"))[1] is True
        with pytest.raises(TaskStateError, match="SUCCEEDED"):
            await b.complete(task_id, data=b"other")
        answer.set_result(done(b"polled"))

        async def refused() -> bool:
            return bool(a.store.refused_writes)  # type: ignore[attr-defined]

        await _until(refused, timeout_s=10)
        final = await a.get(task_id)
        assert final.state is TaskState.SUCCEEDED
        assert final.result == b"pushed"
        history = await a.checks(task_id)
        ends = [c for c in history if c.outcome.value in ("SUCCEEDED", "FAILED", "CANCELLED")]
        assert len(ends) == 1
        assert history_problems(history) == []
    finally:
        if not answer.done():
            answer.set_result(done(b"late"))
        await server.stop()
    del calls
