"""A plugin process killed (SIGKILL) and restarted on the same port while its tasks are RUNNING.

The engine runs in the test's process on the real clock; the plugin is its own process
(tests.reliability.jobs_plugin) keeping its jobs in a SQLite file, as a real plugin would keep
them at its remote API. Every task must still SUCCEED, the outage must show in the histories as
TRANSPORT_RETRY entries, and no initiation may be repeated.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from asyncplugin.engine import (
    CallKind,
    CheckOutcome,
    Engine,
    PollingPolicy,
    SqliteStore,
    TaskUpdate,
    TransportRetryPolicy,
)
from asyncplugin.protocol import TaskState
from tests.reliability.procs import start_plugin

TASKS = 200
POLICY = PollingPolicy(
    initial_interval_s=0.2,
    multiplier=1.5,
    max_interval_s=0.8,
    min_interval_s=0.1,
    check_timeout_s=5.0,
    deadline_s=120.0,
)
RETRY = TransportRetryPolicy(
    initial_backoff_s=0.1, multiplier=2.0, max_backoff_s=1.0, min_backoff_s=0.05, max_retries=10
)


@pytest.mark.timeout(120)
async def test_plugin_sigkill_and_restart_same_port(tmp_path: Path) -> None:
    """200 RUNNING tasks; the plugin is killed, stays down until 100 calls have failed, and
    comes back on the same port: all 200 SUCCEED, with TRANSPORT_RETRY (UNAVAILABLE) entries
    in the histories, and the plugin saw exactly one initiation per task."""
    plugin_db = tmp_path / "plugin.db"
    plugin, port = await start_plugin(plugin_db, tmp_path / "plugin-1.log")
    running: set[str] = set()
    all_running = asyncio.Event()
    retries: list[str] = []
    enough_retries = asyncio.Event()

    def on_change(update: TaskUpdate) -> None:
        if update.record.state is TaskState.RUNNING:
            running.add(update.record.task_id)
            if len(running) == TASKS:
                all_running.set()
        for check in update.checks:
            if check.outcome is CheckOutcome.TRANSPORT_RETRY:
                retries.append(check.grpc_code)
                if len(retries) >= 100:
                    enough_retries.set()

    rng = random.Random(7)
    engine = Engine(
        store=SqliteStore(tmp_path / "tasks.db"),
        policy=POLICY,
        retry_policy=RETRY,
        on_change=on_change,
        rng=rng,
        shutdown_grace_s=0.0,
    )
    try:
        async with engine:
            target = f"127.0.0.1:{port}"
            ids = [
                await engine.submit(target, payload={"duration_s": rng.uniform(2.0, 3.0)})
                for _ in range(TASKS)
            ]
            await asyncio.wait_for(all_running.wait(), timeout=30)
            await plugin.kill()
            await asyncio.wait_for(enough_retries.wait(), timeout=30)
            plugin, again = await start_plugin(plugin_db, tmp_path / "plugin-2.log", port=port)
            assert again == port
            records = await asyncio.wait_for(
                asyncio.gather(*(engine.wait(task_id) for task_id in ids)), timeout=60
            )
            histories = [await engine.checks(task_id) for task_id in ids]
    finally:
        await plugin.kill()

    assert Counter(r.state for r in records) == {TaskState.SUCCEEDED: TASKS}
    entries = [entry for history in histories for entry in history]
    retried = [e for e in entries if e.outcome is CheckOutcome.TRANSPORT_RETRY]
    codes = Counter(e.grpc_code for e in retried)
    tasks_retried = len({e.task_id for e in retried})
    print(f"retry entries={len(retried)} by code={dict(codes)} tasks with a retry={tasks_retried}")
    assert len(retried) >= 100
    assert set(codes) <= {"UNAVAILABLE", "CANCELLED"}
    assert all(e.kind is CallKind.CHECK for e in retried)  # all were RUNNING before the kill
    assert all(e.reason.startswith("transport retry ") for e in retried)
    with sqlite3.connect(plugin_db) as db:
        starts = Counter(key for (key,) in db.execute("SELECT key FROM starts"))
        jobs = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    assert jobs == TASKS
    assert set(starts.values()) == {1}  # no initiation repeated after the recorded RUNNING
