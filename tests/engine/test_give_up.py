"""Deadline, maximum checks and cancellation end a task and tell the plugin (best effort)."""

from __future__ import annotations

import asyncio

import pytest

from asyncplugin.engine import (
    CallKind,
    CheckOutcome,
    FakeClock,
    PollingPolicy,
    TaskOptions,
    TaskRecord,
)
from asyncplugin.protocol import TaskState, struct_to_dict
from asyncplugin.v1 import plugin_pb2
from tests.engine.conftest import POLICY, MakeEngine, Serve
from tests.engine.plugins import Answer, Job, constant, done


async def test_deadline_fails_the_task_and_cancels_remote_work(
    make_engine: MakeEngine, serve: Serve, clock: FakeClock
) -> None:
    """Past its deadline a RUNNING task is FAILED "DEADLINE_EXCEEDED" at the deadline exactly,
    no check is sent after it, and the plugin gets one cancel request."""
    plugin = await serve(Job(forever=True))
    engine = await make_engine()
    start = clock.now()
    record = await engine.invoke(plugin.target, options=TaskOptions(deadline_s=100.0))
    assert record.state is TaskState.FAILED
    assert record.error_code == "DEADLINE_EXCEEDED"
    assert record.end_time == pytest.approx(start + 100.0)
    history = await engine.checks(record.task_id)
    assert history[-2].kind is CallKind.GIVE_UP
    assert history[-2].outcome is CheckOutcome.DEADLINE_EXCEEDED
    assert history[-1].kind is CallKind.CANCEL
    assert history[-1].outcome is CheckOutcome.CANCELLED
    assert "cut to the deadline" in history[-3].reason
    assert history[-3].next_check_time == pytest.approx(start + 100.0)
    requests = plugin.calls()
    assert all(not r.cancel_requested for r in requests[:-1])
    assert requests[-1].cancel_requested
    assert requests[-1].is_status_check
    checks_sent = [r for r in requests if r.is_status_check and not r.cancel_requested]
    assert len(checks_sent) == record.check_count


async def test_max_checks_fails_the_task(make_engine: MakeEngine, serve: Serve) -> None:
    """After max_checks RUNNING answers the task is FAILED "MAX_CHECKS_EXCEEDED" and cancelled."""
    plugin = await serve(Job(forever=True))
    engine = await make_engine()
    policy = PollingPolicy(max_checks=3, check_timeout_s=5.0)
    record = await engine.invoke(plugin.target, options=TaskOptions(policy=policy))
    assert record.state is TaskState.FAILED
    assert record.error_code == "MAX_CHECKS_EXCEEDED"
    assert record.check_count == 3
    outcomes = [(e.kind, e.outcome) for e in await engine.checks(record.task_id)]
    assert outcomes == [
        (CallKind.INITIATE, CheckOutcome.RUNNING),
        (CallKind.CHECK, CheckOutcome.RUNNING),
        (CallKind.CHECK, CheckOutcome.RUNNING),
        (CallKind.CHECK, CheckOutcome.RUNNING),
        (CallKind.GIVE_UP, CheckOutcome.MAX_CHECKS_EXCEEDED),
        (CallKind.CANCEL, CheckOutcome.CANCELLED),
    ]
    assert [r.cancel_requested for r in plugin.calls()] == [False] * 4 + [True]


async def test_cancel_reaches_the_plugin(make_engine: MakeEngine, serve: Serve) -> None:
    """cancel() records CANCELLED and sends one status check with cancel_requested=true carrying
    the last remote_status_input; the plugin's answer is in the history."""
    plugin = await serve(Job(forever=True))
    engine = await make_engine()
    task_id = await engine.submit(plugin.target)
    async for update in engine.watch(task_id):
        if update.record.check_count == 2:
            break
    record = await engine.cancel(task_id)
    assert record.state is TaskState.CANCELLED
    assert (await engine.get(task_id)).state is TaskState.CANCELLED
    cancel = plugin.calls()[-1]
    assert cancel.cancel_requested
    assert cancel.is_status_check
    assert cancel.context.check_number == 3
    assert struct_to_dict(cancel.status.remote_status_input)["step"] == 2
    last = (await engine.checks(task_id))[-1]
    assert (last.kind, last.outcome) == (CallKind.CANCEL, CheckOutcome.CANCELLED)
    assert sum(r.cancel_requested for r in plugin.calls()) == 1
    assert await engine.cancel(task_id) == record  # idempotent: nothing more is sent
    assert sum(r.cancel_requested for r in plugin.calls()) == 1


async def test_cancel_state_stands_whatever_the_plugin_answers(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """A plugin answering the cancel request with data does not undo CANCELLED."""
    plugin = await serve(Job(forever=True, cancel_answer=done(b"too late")))
    engine = await make_engine()
    task_id = await engine.submit(plugin.target)
    async for update in engine.watch(task_id):
        if update.record.state is TaskState.RUNNING:
            break
    record = await engine.cancel(task_id)
    assert record.state is TaskState.CANCELLED
    assert record.result is None
    last = (await engine.checks(task_id))[-1]
    assert (last.kind, last.outcome) == (CallKind.CANCEL, CheckOutcome.SUCCEEDED)
    assert (await engine.wait(task_id)).state is TaskState.CANCELLED


async def test_cancel_before_the_plugin_answered_sends_nothing(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """Cancelling while the initiating call is in flight waits for it, then cancels the work."""
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow_start(request: plugin_pb2.InvokeRequest) -> Answer:
        if not request.is_status_check:
            started.set()
            await release.wait()
        return await Job(forever=True)(request)

    plugin = await serve(slow_start)
    engine = await make_engine()
    task_id = await engine.submit(plugin.target)
    await started.wait()
    cancel_started = asyncio.Event()

    async def cancel() -> TaskRecord:
        cancel_started.set()
        return await engine.cancel(task_id)

    cancelling = asyncio.create_task(cancel())
    # The event wakes this test only after the cancelling task's first step ran to its first
    # suspension: cancel() is then blocked on the task's lock, held by the call in flight.
    await cancel_started.wait()
    assert not cancelling.done()  # waits for the call in flight
    release.set()
    record = await cancelling
    assert record.state is TaskState.CANCELLED
    assert [r.cancel_requested for r in plugin.calls()] == [False, True]


async def test_cancel_of_a_task_never_answered_records_why_nothing_was_sent(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """A WAITING task (no remote_status_input yet) is cancelled without a call, and says so."""
    plugin = await serve(constant(done(b"x")))
    engine = await make_engine(max_concurrent_rpcs=1)
    blocker = asyncio.Event()
    holding = asyncio.Event()

    async def hold(request: plugin_pb2.InvokeRequest) -> Answer:
        holding.set()
        await blocker.wait()
        return done(b"x")

    slow = await serve(hold)
    first = await engine.submit(slow.target)
    await holding.wait()  # the first task's call holds the only RPC slot
    queued = await engine.submit(plugin.target)  # waits for that slot
    record = await engine.cancel(queued)
    blocker.set()
    assert record.state is TaskState.CANCELLED
    [entry] = await engine.checks(queued)
    assert entry.kind is CallKind.CANCEL
    assert "had not answered RUNNING" in entry.message
    assert plugin.requests == []
    assert (await engine.wait(first)).state is TaskState.SUCCEEDED


async def test_policy_default_deadline_applies(make_engine: MakeEngine, serve: Serve) -> None:
    """Without a per-task deadline the policy's deadline_s is used and stored as absolute time."""
    plugin = await serve(constant(done(b"x")))
    engine = await make_engine()
    record = await engine.invoke(plugin.target)
    assert POLICY.deadline_s is not None
    assert record.deadline == pytest.approx(record.create_time + POLICY.deadline_s)
