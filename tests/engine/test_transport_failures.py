"""Transport failures are retried on their own schedule and never count as plugin failures."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import pytest

from asyncplugin.engine import (
    CallKind,
    CheckOutcome,
    FakeClock,
    PollingPolicy,
    TaskOptions,
    TaskUpdate,
    TransportRetryPolicy,
    retry_delay,
)
from asyncplugin.protocol import TaskState
from asyncplugin.v1 import plugin_pb2
from tests.engine.conftest import RETRY, SEED, MakeEngine, Serve
from tests.engine.plugins import Job, unused_target


async def test_plugin_restart_mid_poll_is_survived(
    make_engine: MakeEngine, serve: Serve, clock: FakeClock
) -> None:
    """The plugin server goes down after check 2 and comes back on the same port: check 3 is
    retried (TRANSPORT_RETRY entries with UNAVAILABLE, same check number), the task succeeds."""
    plugin = await serve(Job(checks=4, result=b"survived"))
    hold = contextlib.ExitStack()
    check_2_recorded = asyncio.Event()
    two_retries = asyncio.Event()

    def on_change(update: TaskUpdate) -> None:
        # Freeze simulated time at the two moments the test acts on the server.
        if update.record.check_count == 2 and not check_2_recorded.is_set():
            hold.enter_context(clock.busy())
            check_2_recorded.set()
        if update.record.retries == 2 and not two_retries.is_set():
            hold.enter_context(clock.busy())
            two_retries.set()

    engine = await make_engine(on_change=on_change)
    task_id = await engine.submit(plugin.target)
    await check_2_recorded.wait()
    await plugin.stop()
    hold.close()
    await two_retries.wait()
    await plugin.start()  # same port
    hold.close()
    record = await engine.wait(task_id)

    assert record.state is TaskState.SUCCEEDED
    assert record.result == b"survived"
    history = await engine.checks(task_id)
    retried = [e for e in history if e.outcome is CheckOutcome.TRANSPORT_RETRY]
    assert [(e.check_number, e.grpc_code) for e in retried] == [(3, "UNAVAILABLE")] * 2
    assert retried[0].reason.startswith("transport retry 1/4: backoff 0.5*2^0=0.5s")
    assert [e.check_number for e in history if e.outcome is CheckOutcome.RUNNING] == [0, 1, 2, 3]
    numbers = [r.context.check_number for r in plugin.calls()]
    assert numbers == [0, 1, 2, 3, 4]
    check_3 = plugin.calls()[3]
    assert check_3.status.retries == 2  # Task.retries shows the transport retries of this call
    assert check_3.status.max_retries == RETRY.max_retries
    assert plugin.calls()[4].status.retries == 0


async def test_unreachable_target_fails_after_bounded_retries(
    make_engine: MakeEngine, clock: FakeClock
) -> None:
    """Nothing listening: the initiation is retried max_retries times on the retry schedule,
    then the task is FAILED "UNAVAILABLE", in bounded simulated time and little wall time."""
    engine = await make_engine()
    start, wall = clock.now(), time.monotonic()
    record = await engine.invoke(unused_target())
    assert record.state is TaskState.FAILED
    assert record.error_code == "UNAVAILABLE"
    envelope = record.error_proto()
    assert "unavailable" in envelope.message
    assert f"gave up after {RETRY.max_retries} transport retries" in envelope.message
    assert envelope.metadata["retries"] == str(RETRY.max_retries)
    history = await engine.checks(record.task_id)
    assert [e.outcome for e in history] == [CheckOutcome.TRANSPORT_RETRY] * RETRY.max_retries + [
        CheckOutcome.RPC_ERROR
    ]
    assert all(e.kind is CallKind.INITIATE and e.check_number == 0 for e in history)
    rng = random.Random(SEED)
    delays = [retry_delay(n, RETRY, rng)[0] for n in range(1, RETRY.max_retries + 1)]
    assert [e.interval_s for e in history[:-1]] == pytest.approx(delays)
    assert clock.now() - start == pytest.approx(sum(delays))
    assert time.monotonic() - wall < 10


async def test_zero_retries_fails_at_once(make_engine: MakeEngine) -> None:
    """max_retries=0 turns the first UNAVAILABLE into the task's failure."""
    engine = await make_engine(retry_policy=TransportRetryPolicy(max_retries=0))
    record = await engine.invoke(unused_target())
    assert record.error_code == "UNAVAILABLE"
    assert [e.outcome for e in await engine.checks(record.task_id)] == [CheckOutcome.RPC_ERROR]


async def test_check_timeout_is_retried_then_fails(make_engine: MakeEngine, serve: Serve) -> None:
    """A status check slower than check_timeout_s is a transport retry (DEADLINE_EXCEEDED);
    when retries run out the task fails "CHECK_TIMEOUT"."""

    async def slow_checks(request: plugin_pb2.InvokeRequest) -> plugin_pb2.InvokeResponse | bytes:
        if request.is_status_check:
            await asyncio.Event().wait()  # never answers; the engine's timeout ends the call
        return await Job(forever=True)(request)

    plugin = await serve(slow_checks)
    engine = await make_engine(retry_policy=TransportRetryPolicy(max_retries=1))
    options = TaskOptions(policy=PollingPolicy(check_timeout_s=0.05))
    record = await engine.invoke(plugin.target, options=options)
    assert record.state is TaskState.FAILED
    assert record.error_code == "CHECK_TIMEOUT"
    history = await engine.checks(record.task_id)
    assert [(e.outcome, e.grpc_code) for e in history[1:]] == [
        (CheckOutcome.TRANSPORT_RETRY, "DEADLINE_EXCEEDED"),
        (CheckOutcome.RPC_ERROR, "DEADLINE_EXCEEDED"),
    ]
