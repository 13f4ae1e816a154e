"""The daemon killed with SIGKILL in the middle of 200 tasks, restarted on the same store:
every task ends, none is initiated again after its RUNNING answer was recorded, and watchers
that reconnect see every history entry and the end."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import defaultdict
from pathlib import Path

import pytest

from asyncplugin.engine import CallKind, CheckOutcome, SqliteStore
from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.protocol import encode_payload
from asyncplugin.service import EngineClient
from asyncplugin.v1 import task_pb2
from tests.reliability.invariants import history_problems
from tests.reliability.procs import start_plugin
from tests.service.daemon_proc import start_daemon_process

TASKS = 200
WATCHED = 25
SUCCEEDED = task_pb2.TASK_STATE_SUCCEEDED


async def _watch(client: EngineClient, task_id: str) -> list[engine_pb2.WatchTaskResponse]:
    return [change async for change in client.watch(task_id, reconnect_timeout_s=60)]


@pytest.mark.timeout(180)
async def test_sigkill_mid_flight_then_restart(tmp_path: Path) -> None:
    rng = random.Random(1212)
    plugin, port = await start_plugin(tmp_path / "plugin.db", tmp_path / "plugin.log")
    store = tmp_path / "tasks.sqlite3"
    daemon, address = await start_daemon_process(store, tmp_path / "daemon-1.log")
    daemon_port = int(address.rsplit(":", 1)[1])
    client = EngineClient(address, wait_for_ready=True)
    try:
        ids: list[str] = []
        requests = [
            engine_pb2.SubmitTaskRequest(
                target=f"127.0.0.1:{port}",
                payload=encode_payload({"duration_s": round(rng.uniform(0.5, 2.5), 2)}),
                request_id=f"job-{number}",
            )
            for number in range(TASKS)
        ]
        for request in requests:
            ids.append((await client.submit_request(request)).task.task_id)
        watchers = [
            asyncio.ensure_future(_watch(client, task_id)) for task_id in rng.sample(ids, WATCHED)
        ]
        await asyncio.sleep(0.6)  # mid-flight: some tasks RUNNING, some checked, some done
        await daemon.kill()
        with sqlite3.connect(store) as db:
            states = dict(db.execute("SELECT state, count(*) FROM tasks GROUP BY state"))
        assert states.get(1, 0) + states.get(2, 0) > 0  # the kill left tasks unfinished
        daemon, _ = await start_daemon_process(store, tmp_path / "daemon-2.log", port=daemon_port)
        # A client retrying its submits after the crash creates no second task.
        again = await client.submit_request(requests[0])
        assert not again.created
        assert again.task.task_id == ids[0]
        watched = await asyncio.wait_for(asyncio.gather(*watchers), timeout=120)
        for task_id in ids:
            await asyncio.wait_for(client.wait(task_id), timeout=120)
    finally:
        await client.close()
        await daemon.kill()
        await plugin.kill()

    reader = SqliteStore(store)
    await reader.open()
    try:
        records = {task_id: await reader.get(task_id) for task_id in ids}
        histories = {task_id: await reader.checks(task_id) for task_id in ids}
    finally:
        await reader.close()
    assert all(r is not None and r.state.name == "SUCCEEDED" for r in records.values())
    for task_id, history in histories.items():
        assert history_problems(history) == [], (task_id, history)

    # No initiation reached the plugin after the task's RUNNING answer was recorded.
    with sqlite3.connect(tmp_path / "plugin.db") as db:
        starts = db.execute("SELECT key, at FROM starts").fetchall()
    arrivals: dict[str, list[float]] = defaultdict(list)
    for key, at in starts:
        arrivals[key].append(at)
    repeated = 0
    for task_id, history in histories.items():
        record = records[task_id]
        assert record is not None
        recorded = [
            e.finished_time
            for e in history
            if e.kind is CallKind.INITIATE and e.outcome is CheckOutcome.RUNNING
        ]
        assert len(recorded) == 1
        repeated += sum(1 for at in arrivals[record.idempotency_key] if at > recorded[0])
    assert repeated == 0

    # Every watcher saw the end and, across the reconnect, every history entry exactly once.
    for changes in watched:
        final = changes[-1].task
        assert final.state == SUCCEEDED
        seen = [(e.kind, e.check_number, e.revision) for c in changes for e in c.checks]
        history = histories[final.task_id]
        assert len(seen) == len(history)
        assert [number for _, number, _ in seen] == [e.check_number for e in history]
        revisions = [c.task.revision for c in changes]
        assert revisions == sorted(set(revisions))
