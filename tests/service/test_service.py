"""EngineService end to end: a real EngineServer and EngineClient on 127.0.0.1, an engine on a
fake clock, test plugins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.service import EngineServiceError
from asyncplugin.service.convert import policy_overrides, seconds
from asyncplugin.v1 import task_pb2
from tests.engine.plugins import Job
from tests.service.conftest import Serve, StartDaemon

SUCCEEDED = task_pb2.TASK_STATE_SUCCEEDED


async def test_submit_watch_and_read_the_result(start_daemon: StartDaemon, serve: Serve) -> None:
    plugin = await serve(Job(checks=3, result=b"the result"))
    daemon = await start_daemon()
    task = await daemon.client.submit(plugin.target, payload=b"in", labels={"team": "audio"})
    assert task.state == task_pb2.TASK_STATE_WAITING
    assert task.name == f"tasks/{task.task_id}"
    changes = [change async for change in daemon.client.watch(task.task_id)]
    assert changes[-1].task.state == SUCCEEDED
    revisions = [change.task.revision for change in changes]
    assert revisions == sorted(set(revisions))
    kinds = [entry.kind for change in changes for entry in change.checks]
    assert kinds == [engine_pb2.CALL_KIND_INITIATE] + [engine_pb2.CALL_KIND_CHECK] * 3
    done = await daemon.client.get(task.task_id[:8])
    assert done.result == b"the result"
    assert done.payload == b"in"
    assert [entry.check_number for entry in done.checks] == [0, 1, 2, 3]
    assert done.checks[1].interval_reason.startswith("backoff")
    assert dict(done.labels) == {"team": "audio"}


async def test_watch_resumes_after_a_revision_and_misses_nothing(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    plugin = await serve(Job(checks=4))
    daemon = await start_daemon()
    task = await daemon.client.submit(plugin.target)
    await daemon.client.wait(task.task_id)
    full = await daemon.client.get(task.task_id)
    middle = full.checks[2].revision
    changes = [c async for c in daemon.client.watch(task.task_id, after_revision=middle)]
    assert len(changes) == 1
    resumed = [entry.check_number for entry in changes[0].checks]
    assert resumed == [entry.check_number for entry in full.checks if entry.revision > middle]
    assert resumed == [3, 4]


async def test_request_id_makes_a_retried_submit_create_one_task(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    plugin = await serve(Job(checks=1))
    daemon = await start_daemon()
    request = engine_pb2.SubmitTaskRequest(target=plugin.target, payload=b"x", request_id="r-1")
    first = await daemon.client.submit_request(request)
    again = await daemon.client.submit_request(request)
    assert first.created
    assert not again.created
    assert again.task.task_id == first.task.task_id
    other = engine_pb2.SubmitTaskRequest(target=plugin.target, payload=b"y", request_id="r-1")
    with pytest.raises(EngineServiceError) as refused:
        await daemon.client.submit_request(other)
    assert refused.value.code.name == "ALREADY_EXISTS"
    assert "payload" in str(refused.value)
    page = await daemon.client.list()
    assert [t.task_id for t in page.tasks] == [first.task.task_id]


async def test_list_filters_and_pages_newest_first(start_daemon: StartDaemon, serve: Serve) -> None:
    plugin = await serve(Job(checks=1))
    other = await serve(Job(checks=1))
    daemon = await start_daemon()
    ids = []
    for number in range(7):
        target = plugin.target if number % 2 == 0 else other.target
        task = await daemon.client.submit(target, labels={"n": str(number), "kind": "test"})
        ids.append(task.task_id)
        daemon.clock.advance(1.0)
    seen: list[str] = []
    token = ""
    while True:
        page = await daemon.client.list(page_size=3, page_token=token, labels={"kind": "test"})
        seen.extend(t.task_id for t in page.tasks)
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    on_plugin = await daemon.client.list(target=plugin.target)
    assert [t.task_id for t in on_plugin.tasks] == ids[::-2]
    labelled = await daemon.client.list(labels={"n": "3"})
    assert [t.task_id for t in labelled.tasks] == [ids[3]]
    first = await daemon.client.get(ids[0], view=engine_pb2.TASK_VIEW_BASIC)
    after = await daemon.client.list(created_after=seconds(first.create_time) + 0.5)
    assert ids[0] not in [t.task_id for t in after.tasks]
    assert len(after.tasks) == 6


async def test_cancel_through_the_service(start_daemon: StartDaemon, serve: Serve) -> None:
    plugin = await serve(Job(forever=True))
    daemon = await start_daemon()
    task = await daemon.client.submit(plugin.target)
    async for change in daemon.client.watch(task.task_id):
        if change.task.check_count >= 2:
            break
    cancelled = await daemon.client.cancel(task.task_id)
    assert cancelled.state == task_pb2.TASK_STATE_CANCELLED
    full = await daemon.client.get(task.task_id)
    assert full.checks[-1].kind == engine_pb2.CALL_KIND_CANCEL


async def test_policy_overrides_reach_the_task(start_daemon: StartDaemon, serve: Serve) -> None:
    plugin = await serve(Job(checks=2))
    daemon = await start_daemon()
    task = await daemon.client.submit(
        plugin.target,
        policy=policy_overrides(initial_interval_s=7.0, jitter=0.0, deadline_s=900.0),
    )
    done = await daemon.client.wait(task.task_id)
    assert seconds(done.policy.initial_interval) == 7.0
    assert seconds(done.policy.deadline) == 900.0
    assert seconds(done.checks[0].interval) == pytest.approx(7.0)


async def test_sync_client_facade(start_daemon: StartDaemon, serve: Serve) -> None:
    from asyncplugin.service import SyncEngineClient

    plugin = await serve(Job(checks=1))
    daemon = await start_daemon()

    def run() -> list[int]:
        with SyncEngineClient(daemon.address) as client:
            task = client.submit(plugin.target)
            states = [int(change.task.state) for change in client.watch(task.task_id)]
            assert client.get(task.task_id).state == SUCCEEDED
            return states

    states = await asyncio.to_thread(run)
    assert states[-1] == SUCCEEDED


async def test_a_reconnecting_watch_gets_only_changes_after_its_revision(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    """A watch resumed at the task's current revision (a client reconnecting to a restarted
    daemon before anything changed) is not sent that revision again: its first message is the
    next change. A finished task's end is still sent to a watch at its revision."""
    plugin = await serve(Job(forever=True))
    daemon = await start_daemon()
    with daemon.clock.busy():  # no simulated time passes: the task stays RUNNING as it is
        task = await daemon.client.submit(plugin.target)
        async for change in daemon.client.watch(task.task_id):
            if change.task.state == task_pb2.TASK_STATE_RUNNING:
                break
        current = (await daemon.client.get(task.task_id)).revision
        resumed = asyncio.ensure_future(
            _collect(daemon.client.watch(task.task_id, after_revision=current))
        )
        watchers = daemon.engine._notifier._watchers  # the resumed watch is subscribed ...
        for _ in range(1000):
            if watchers.get(task.task_id) or resumed.done():
                break
            await asyncio.sleep(0.001)
        for _ in range(20):
            await asyncio.sleep(0)  # ... and has had its chance to send a stale first message
        await daemon.client.cancel(task.task_id)
        changes = await asyncio.wait_for(resumed, timeout=30)
    revisions = [change.task.revision for change in changes]
    assert revisions
    assert all(revision > current for revision in revisions), (current, revisions)
    assert revisions == sorted(set(revisions))
    assert changes[-1].task.state == task_pb2.TASK_STATE_CANCELLED
    ended = (await daemon.client.get(task.task_id)).revision
    again = await _collect(daemon.client.watch(task.task_id, after_revision=ended))
    assert [change.task.revision for change in again] == [ended]


async def _collect(changes: AsyncIterator[engine_pb2.WatchTaskResponse]) -> list[Any]:
    return [change async for change in changes]
