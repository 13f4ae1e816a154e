"""The store is the truth: an engine restarted on the same SQLite file resumes where it was."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from asyncplugin.engine import CallKind, CheckOutcome, FakeClock, SqliteStore, TaskUpdate
from asyncplugin.protocol import TaskState
from asyncplugin.v1 import plugin_pb2
from tests.engine.conftest import MakeEngine, Serve
from tests.engine.plugins import Answer, Job


async def _stop_after_check(
    make_engine: MakeEngine, clock: FakeClock, path: Path, target: str, number: int
) -> tuple[str, contextlib.ExitStack]:
    """Runs a task on a first engine until check `number` is recorded, freezes simulated time,
    and stops that engine. Returns the task id and the freeze (close it to let time run)."""
    hold = contextlib.ExitStack()
    reached = asyncio.Event()

    def on_change(update: TaskUpdate) -> None:
        if update.record.check_count == number and not reached.is_set():
            hold.enter_context(clock.busy())
            reached.set()

    first = await make_engine(store=SqliteStore(path), on_change=on_change)
    task_id = await first.submit(target, payload={"audio": "a.wav"})
    await reached.wait()
    await first.stop()
    return task_id, hold


async def test_restart_resumes_running_task_without_reinitiating(
    make_engine: MakeEngine, serve: Serve, clock: FakeClock, tmp_path: Path
) -> None:
    """Stopped after check 2, a new engine on the same file sends check 3 at the recorded next
    check time: one initiation in all, check numbers continue, the task completes."""
    plugin = await serve(Job(checks=5, result=b"resumed"))
    path = tmp_path / "tasks.db"
    task_id, hold = await _stop_after_check(make_engine, clock, path, plugin.target, 2)
    second = await make_engine(store=SqliteStore(path))
    before = await second.get(task_id)
    assert before.state is TaskState.RUNNING
    assert before.check_count == 2
    hold.close()
    record = await second.wait(task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.result == b"resumed"
    requests = plugin.calls()
    assert [r.is_status_check for r in requests].count(False) == 1
    assert [r.context.check_number for r in requests] == [0, 1, 2, 3, 4, 5]
    history = await second.checks(task_id)
    assert [e.check_number for e in history] == [0, 1, 2, 3, 4, 5]
    assert history[3].started_time == pytest.approx(before.next_check_time)


async def test_overdue_check_fires_promptly_after_restart(
    make_engine: MakeEngine, serve: Serve, clock: FakeClock, tmp_path: Path
) -> None:
    """A check that fell due while no engine ran is sent as soon as the next engine starts."""
    plugin = await serve(Job(checks=3))
    path = tmp_path / "tasks.db"
    task_id, hold = await _stop_after_check(make_engine, clock, path, plugin.target, 1)
    clock.advance(600.0)  # the engine was down for ten minutes
    restarted_at = clock.now()
    second = await make_engine(store=SqliteStore(path))
    hold.close()
    record = await second.wait(task_id)
    assert record.state is TaskState.SUCCEEDED
    history = await second.checks(task_id)
    assert history[2].check_number == 2
    assert history[2].started_time == restarted_at
    assert history[1].next_check_time is not None
    assert history[1].next_check_time < restarted_at


async def test_waiting_task_is_reinitiated_with_the_same_key(
    make_engine: MakeEngine, serve: Serve, tmp_path: Path
) -> None:
    """An engine stopped while the initiating call was in flight left the task WAITING; the next
    engine initiates it again with the SAME idempotency key (the documented window)."""
    first_call = asyncio.Event()

    async def behave(request: plugin_pb2.InvokeRequest) -> Answer:
        if not first_call.is_set():
            first_call.set()
            await asyncio.Event().wait()  # never answers: the engine stops meanwhile
        return await Job(checks=1)(request)

    plugin = await serve(behave)
    path = tmp_path / "tasks.db"
    first = await make_engine(store=SqliteStore(path))
    task_id = await first.submit(plugin.target)
    await first_call.wait()
    await first.stop()
    second = await make_engine(store=SqliteStore(path))
    assert (await second.get(task_id)).state is TaskState.WAITING
    record = await second.wait(task_id)
    assert record.state is TaskState.SUCCEEDED
    initiations = [r for r in plugin.calls() if not r.is_status_check]
    assert len(initiations) == 2
    assert len({r.context.idempotency_key for r in initiations}) == 1
    assert {r.context.task_id for r in initiations} == {task_id}


async def test_finished_results_survive_restarts(
    make_engine: MakeEngine, serve: Serve, tmp_path: Path
) -> None:
    """Results, errors and histories are read back from the file by a later engine, no calls."""
    plugin = await serve(Job(checks=2, result=b"kept"))
    path = tmp_path / "tasks.db"
    first = await make_engine(store=SqliteStore(path))
    record = await first.invoke(plugin.target)
    history = await first.checks(record.task_id)
    await first.stop()
    calls = len(plugin.requests)
    second = await make_engine(store=SqliteStore(path))
    assert await second.get(record.task_id) == record
    assert await second.checks(record.task_id) == history
    assert await second.wait(record.task_id) == record
    assert [r.task_id for r in await second.list(state=TaskState.SUCCEEDED)] == [record.task_id]
    assert len(plugin.requests) == calls


_ENGINE_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from asyncplugin.engine import Engine, PollingPolicy, SqliteStore

    async def main() -> None:
        policy = PollingPolicy(initial_interval_s=0.05, min_interval_s=0.05, multiplier=1.0,
                               max_interval_s=0.05, jitter=0.0)
        async with Engine(store=SqliteStore(sys.argv[1]), policy=policy) as engine:
            task_id = await engine.submit(sys.argv[2], payload={"n": 1})
            print(task_id, flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def test_kill_9_mid_poll_then_resume(
    make_engine: MakeEngine, serve: Serve, tmp_path: Path
) -> None:
    """An engine process killed with SIGKILL after check 2 loses nothing: a new engine on the
    file resumes the RUNNING task without initiating it again, and it completes."""
    checked = asyncio.Event()

    plugin = await serve(Job(checks=20, result=b"after kill"))
    plugin.on_request = lambda path, request: (
        checked.set() if request.context.check_number == 2 else None
    )
    path = tmp_path / "tasks.db"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _ENGINE_PROCESS,
        str(path),
        plugin.target,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
    )
    try:
        await asyncio.wait_for(checked.wait(), timeout=30)
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        assert process.stdout is not None
        task_id = (await process.stdout.readline()).decode().strip()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    initiations_before = [r for r in plugin.calls() if not r.is_status_check]
    assert len(initiations_before) == 1

    engine = await make_engine(store=SqliteStore(path), clock=FakeClock(start=time.time()))
    resumed = await engine.get(task_id)
    assert resumed.state is TaskState.RUNNING
    assert resumed.check_count >= 1
    record = await engine.wait(task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.result == b"after kill"
    assert [r for r in plugin.calls() if not r.is_status_check] == initiations_before
    history = await engine.checks(task_id)
    assert history[0].kind is CallKind.INITIATE
    assert history[-1].outcome is CheckOutcome.SUCCEEDED
    numbers = [e.check_number for e in history]
    assert numbers == sorted(numbers)
