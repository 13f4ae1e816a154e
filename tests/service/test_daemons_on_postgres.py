"""Two `asyncplugin engine serve` daemons on one PostgreSQL: each serves every task, whichever
runs it. A task submitted through one is followed, read and cancelled through the other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from asyncplugin.service import EngineClient
from asyncplugin.v1 import task_pb2
from tests.engine.plugins import Job
from tests.service.conftest import Serve
from tests.service.daemon_proc import start_daemon_process


@pytest.mark.timeout(120)
async def test_two_daemons_share_one_postgresql_store(
    pg_database: str, tmp_path: Path, serve: Serve
) -> None:
    """Tasks submitted through daemon A end, watched through daemon B (every change, ending
    SUCCEEDED); a task submitted through B is cancelled through A."""
    plugin = await serve(Job(checks=3, result=b"shared"))
    endless = await serve(Job(forever=True))
    first, address_a = await start_daemon_process(pg_database, tmp_path / "a.log")
    second, address_b = await start_daemon_process(pg_database, tmp_path / "b.log")
    try:
        async with EngineClient(address_a) as a, EngineClient(address_b) as b:
            submitted = [await a.submit(plugin.target) for _ in range(20)]
            async with asyncio.timeout(60):
                ends = await asyncio.gather(*(b.wait(task.task_id) for task in submitted))
            assert {task.state for task in ends} == {task_pb2.TASK_STATE_SUCCEEDED}
            states = []
            async for change in b.watch(submitted[0].task_id):
                states.append(change.task.state)
            assert states[-1] == task_pb2.TASK_STATE_SUCCEEDED
            shown = await a.get(submitted[0].task_id)
            assert [c.check_number for c in shown.checks] == [0, 1, 2, 3]

            running = await b.submit(endless.target)
            async with asyncio.timeout(30):
                async for change in a.watch(running.task_id):
                    if change.task.check_count >= 1:
                        break
                cancelled = await a.cancel(running.task_id)
            assert cancelled.state == task_pb2.TASK_STATE_CANCELLED
    finally:
        await first.kill()
        await second.kill()
    assert "late write refused" not in (tmp_path / "a.log").read_text()
