"""Push completion: plugins finish their tasks with CompleteTask / UpdateTask and a completion
token; exactly one end is recorded; bad tokens and late completions are refused."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.plugin import CompletionClient, CompletionRefused
from asyncplugin.protocol import PluginError, Progress
from asyncplugin.service import CompletionKey, CompletionTokens
from asyncplugin.service.convert import seconds
from asyncplugin.v1 import plugin_pb2, task_pb2
from tests.engine.plugins import Answer, running
from tests.service.conftest import Daemon, Serve, StartDaemon

SUCCEEDED = task_pb2.TASK_STATE_SUCCEEDED
FAILED = task_pb2.TASK_STATE_FAILED


class Remembering:
    """A plugin that goes RUNNING with a 30 s hint and remembers each call's context."""

    def __init__(self) -> None:
        self.contexts: list[plugin_pb2.RequestContext] = []

    async def __call__(self, request: plugin_pb2.InvokeRequest) -> Answer:
        self.contexts.append(request.context)
        return running({"job": "j-1", "seen": len(self.contexts)}, hint_s=30.0)


async def _running_task(daemon: Daemon, serve: Serve) -> tuple[str, Remembering]:
    plugin = Remembering()
    server = await serve(plugin)
    task = await daemon.client.submit(server.target)
    async for change in daemon.client.watch(task.task_id):
        if change.task.state == task_pb2.TASK_STATE_RUNNING:
            break
    return task.task_id, plugin


async def test_every_call_carries_the_address_and_a_task_bound_token(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    daemon = await start_daemon()
    with daemon.clock.busy():
        task_id, plugin = await _running_task(daemon, serve)
    context = plugin.contexts[0]
    assert context.engine_address == daemon.address
    assert context.completion_token
    assert task_id in context.completion_token  # bound to the task (and signed)
    assert daemon.tokens is not None
    assert daemon.tokens.verify(context.completion_token, now=daemon.clock.now()) == task_id


async def test_completion_is_recorded_before_the_next_check_and_ends_polling(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    daemon = await start_daemon()
    with daemon.clock.busy():  # no simulated time passes: the 30 s check cannot come first
        task_id, plugin = await _running_task(daemon, serve)
        context = plugin.contexts[0]
        async with CompletionClient() as completions:
            repeated = await completions.complete(
                context.engine_address, context.completion_token, data=b"pushed"
            )
        assert not repeated
        done = await daemon.client.get(task_id)
    assert done.state == SUCCEEDED
    assert done.result == b"pushed"
    initiation, completion = done.checks
    assert initiation.kind == engine_pb2.CALL_KIND_INITIATE
    assert completion.kind == engine_pb2.CALL_KIND_COMPLETE
    assert completion.outcome == engine_pb2.CHECK_OUTCOME_SUCCEEDED
    assert seconds(done.end_time) < seconds(initiation.next_check_time)
    await daemon.clock.sleep_until(daemon.clock.now() + 3600)  # an hour later...
    after = await daemon.client.get(task_id)
    assert len(after.checks) == 2  # ...no status check was ever sent
    assert len(plugin.contexts) == 1


async def test_repeated_completion_is_idempotent_and_a_different_one_refused(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    daemon = await start_daemon()
    with daemon.clock.busy():
        task_id, plugin = await _running_task(daemon, serve)
    context = plugin.contexts[0]
    address, token = context.engine_address, context.completion_token
    async with CompletionClient() as completions:
        error = PluginError(message="the remote job failed", code="REMOTE_FAILED")
        assert not await completions.complete(address, token, error=error)
        assert await completions.complete(address, token, error=error)
        with pytest.raises(CompletionRefused) as refused:
            await completions.complete(address, token, data=b"late")
    assert refused.value.code.name == "FAILED_PRECONDITION"
    assert "FAILED" in str(refused.value)
    done = await daemon.client.get(task_id)
    assert done.state == FAILED
    assert done.error.code == "REMOTE_FAILED"
    assert [c.kind for c in done.checks].count(engine_pb2.CALL_KIND_COMPLETE) == 1


def _forge(token: str, task_id: str, other_id: str) -> dict[str, str]:
    version, key_id, _, expiry, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    return {
        "forged signature": ".".join((version, key_id, task_id, expiry, flipped)),
        "other task's id": ".".join((version, key_id, other_id, expiry, signature)),
        "unknown key": ".".join((version, "k9", task_id, expiry, signature)),
        "not a token": "hello",
        "empty": "",
    }


async def test_bad_tokens_are_refused_and_nothing_is_recorded(
    start_daemon: StartDaemon, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = await start_daemon()
    with daemon.clock.busy():
        task_id, plugin = await _running_task(daemon, serve)
        other_id, _ = await _running_task(daemon, serve)
        token = plugin.contexts[0].completion_token
        before = await daemon.client.get(task_id)
        other_before = await daemon.client.get(other_id)
        caplog.set_level(logging.INFO)
        bad_tokens = _forge(token, task_id, other_id)
        expired = CompletionTokens([CompletionKey("k1", b"k" * 32)], ttl_s=1.0).token_for(
            task_id, now=daemon.clock.now() - 10, deadline=None
        )
        bad_tokens["expired"] = expired
        async with CompletionClient() as completions:
            for name, bad in bad_tokens.items():
                with pytest.raises(CompletionRefused) as refused:
                    await completions.complete(daemon.address, bad or "x", data=b"forged")
                assert refused.value.code.name == "PERMISSION_DENIED", name
                with pytest.raises(CompletionRefused):
                    await completions.update(daemon.address, bad or "x", status_message="x")
        assert await daemon.client.get(task_id) == before
        assert await daemon.client.get(other_id) == other_before
    messages = [record.getMessage() for record in caplog.records]
    assert any("signature does not match" in m for m in messages)
    assert any("expired" in m for m in messages)
    for bad in (*bad_tokens.values(), token):
        if len(bad) > 8:
            assert all(bad not in message for message in messages)


async def test_update_reports_progress_and_moves_the_next_check(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    daemon = await start_daemon()
    with daemon.clock.busy():
        task_id, plugin = await _running_task(daemon, serve)
        context = plugin.contexts[0]
        async with CompletionClient() as completions:
            await completions.update(
                context.engine_address,
                context.completion_token,
                progress=Progress(fraction=0.4, stage="render"),
                status_message="rendering",
                remote_status_input={"job": "j-2"},
                check_after_s=0.001,  # clamped up to the policy's min_interval_s (0.5 s)
            )
        task = await daemon.client.get(task_id)
    assert task.progress.fraction == pytest.approx(0.4)
    assert task.status_message == "rendering"
    update = task.checks[-1]
    assert update.kind == engine_pb2.CALL_KIND_UPDATE
    assert seconds(update.interval) == pytest.approx(0.5)
    assert "clamped" in update.interval_reason
    async for change in daemon.client.watch(task_id):
        if change.task.check_count >= 1:
            break
    check = plugin.contexts[1]
    assert check.check_number == 1
    assert len(plugin.contexts) >= 2


async def test_update_echoes_the_new_remote_status_input(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    seen: list[plugin_pb2.InvokeRequest] = []

    async def plugin(request: plugin_pb2.InvokeRequest) -> Answer:
        seen.append(request)
        return running({"job": "j-1"}, hint_s=30.0)

    server = await serve(plugin)
    daemon = await start_daemon()
    with daemon.clock.busy():
        task = await daemon.client.submit(server.target)
        async for change in daemon.client.watch(task.task_id):
            if change.task.state == task_pb2.TASK_STATE_RUNNING:
                break
        context = seen[0].context
        await daemon.client.update(
            context.completion_token, remote_status_input={"job": "j-2"}, check_after_s=1.0
        )
    async for change in daemon.client.watch(task.task_id):
        if change.task.check_count >= 1:
            break
    assert seen[1].is_status_check
    assert seen[1].status.remote_status_input.fields["job"].string_value == "j-2"


async def test_bad_completions_are_refused_naming_the_problem(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    daemon = await start_daemon()
    with daemon.clock.busy():
        task_id, plugin = await _running_task(daemon, serve)
        token = plugin.contexts[0].completion_token
        before = await daemon.client.get(task_id)
        client = daemon.client
        with pytest.raises(Exception, match=r"INVALID_ARGUMENT.*ERROR_WITHOUT_MESSAGE"):
            await client.complete(token, error=task_pb2.Task().error)
        stub: Any = client.stub
        with pytest.raises(Exception, match=r"INVALID_ARGUMENT.*outcome"):
            await stub.CompleteTask(engine_pb2.CompleteTaskRequest(completion_token=token))
        with pytest.raises(Exception, match=r"INVALID_ARGUMENT.*PROGRESS_FRACTION_OUT_OF_RANGE"):
            await client.update(token, progress=task_pb2.Progress(fraction=2.0))
        assert await daemon.client.get(task_id) == before


async def test_update_after_the_end_names_the_state(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    daemon = await start_daemon()
    with daemon.clock.busy():
        task_id, plugin = await _running_task(daemon, serve)
        await daemon.client.cancel(task_id)
        with pytest.raises(Exception, match=r"FAILED_PRECONDITION.*CANCELLED"):
            await daemon.client.update(plugin.contexts[0].completion_token, status_message="x")


async def test_without_keys_there_is_no_push_completion(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    daemon = await start_daemon(tokens=None)
    with daemon.clock.busy():
        _, plugin = await _running_task(daemon, serve)
    assert plugin.contexts[0].engine_address == ""
    assert plugin.contexts[0].completion_token == ""
    async with CompletionClient() as completions:
        with pytest.raises(CompletionRefused) as refused:
            await completions.complete(daemon.address, "ap1.k1.x.1.y", data=b"")
        assert refused.value.code.name == "PERMISSION_DENIED"
        with pytest.raises(ValueError, match="completion_token is empty"):
            await completions.complete(daemon.address, "", data=b"")
