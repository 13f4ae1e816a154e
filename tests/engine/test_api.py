"""The Engine's API contract: lifecycle, argument checks, waiting, listing, and the sync facade."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf import struct_pb2

from asyncplugin.engine import (
    Engine,
    EngineClosed,
    EngineError,
    FakeClock,
    GrpcTransport,
    PollingPolicy,
    SyncEngine,
    TaskNotFound,
    TaskRecord,
    TaskUpdate,
    WaitTimeout,
)
from asyncplugin.engine.transport import Metadata
from asyncplugin.protocol import (
    GENERIC_METHOD,
    AsyncPluginError,
    TaskState,
    decode_request,
    struct_to_dict,
)
from asyncplugin.v1 import plugin_pb2, task_pb2
from tests.engine.conftest import MakeEngine, Serve
from tests.engine.plugins import Job, constant, done, unused_target


async def test_engine_refuses_work_when_not_running() -> None:
    """submit / wait / cancel before start (or after stop) raise EngineClosed."""
    engine = Engine(clock=FakeClock())
    with pytest.raises(EngineClosed):
        await engine.submit("127.0.0.1:1")
    async with engine:
        assert engine.running
    assert not engine.running
    with pytest.raises(EngineClosed, match="not running"):
        await engine.submit("127.0.0.1:1")


@pytest.mark.parametrize(
    ("target", "method"),
    [("", GENERIC_METHOD), (" x:1", GENERIC_METHOD), ("x:1", "Invoke"), ("x:1", "/a.B/")],
)
async def test_submit_checks_target_and_method(
    make_engine: MakeEngine, target: str, method: str
) -> None:
    """A malformed target or method path is refused before anything is recorded."""
    engine = await make_engine()
    with pytest.raises(ValueError, match=r"target|method"):
        await engine.submit(target, method=method)
    assert await engine.list() == []


async def test_submit_refuses_a_payload_it_cannot_encode(make_engine: MakeEngine) -> None:
    """A payload that is not bytes, a message or a dict is a TypeError naming its type."""
    engine = await make_engine()
    with pytest.raises(TypeError, match="int"):
        await engine.submit("127.0.0.1:1", payload=42)  # type: ignore[arg-type]


async def test_dict_payload_travels_as_struct(make_engine: MakeEngine, serve: Serve) -> None:
    """A dict payload reaches the plugin as an encoded google.protobuf.Struct."""
    plugin = await serve(constant(done(b"")))
    engine = await make_engine()
    record = await engine.invoke(plugin.target, payload={"audio": "a.wav", "n": 2})
    assert record.result == b""
    [request] = plugin.calls()
    assert struct_to_dict(struct_pb2.Struct.FromString(request.data)) == {"audio": "a.wav", "n": 2}
    assert record.result_as(dict) == {}


async def test_wait_timeout_is_measured_on_the_engine_clock(
    make_engine: MakeEngine, serve: Serve, clock: FakeClock
) -> None:
    """wait(timeout_s) raises WaitTimeout after that much simulated time; the task goes on."""
    plugin = await serve(Job(forever=True))
    engine = await make_engine()
    task_id = await engine.submit(plugin.target)
    start = clock.now()
    with pytest.raises(WaitTimeout, match="did not finish within 30 s") as caught:
        await engine.wait(task_id, timeout_s=30.0)
    assert isinstance(caught.value, AsyncPluginError)
    assert isinstance(caught.value, TimeoutError)
    assert clock.now() == pytest.approx(start + 30.0)
    assert (await engine.get(task_id)).state is TaskState.RUNNING


async def test_stop_releases_waiters(make_engine: MakeEngine, serve: Serve) -> None:
    """A caller waiting on a task when the engine stops gets EngineClosed, not a hang."""
    plugin = await serve(Job(forever=True))
    engine = await make_engine()
    task_id = await engine.submit(plugin.target)
    waiting = asyncio.create_task(engine.wait(task_id))
    await asyncio.sleep(0)
    await engine.stop()
    with pytest.raises(EngineClosed):
        await waiting


async def test_list_filters_by_state(make_engine: MakeEngine, serve: Serve) -> None:
    """list(state=...) takes one state or several, newest first, with a limit."""
    ok = await serve(constant(done(b"")))
    engine = await make_engine()
    succeeded = await engine.invoke(ok.target)
    failed = await engine.invoke(unused_target())
    assert [r.task_id for r in await engine.list()] == [failed.task_id, succeeded.task_id]
    assert [r.task_id for r in await engine.list(state=TaskState.FAILED)] == [failed.task_id]
    both = await engine.list(state=[TaskState.FAILED, TaskState.SUCCEEDED], limit=1)
    assert [r.task_id for r in both] == [failed.task_id]


async def test_watch_all_tasks_and_remove_listener(make_engine: MakeEngine, serve: Serve) -> None:
    """watch() without an id sees every task's updates; a removed listener hears nothing more."""
    plugin = await serve(constant(done(b"")))
    heard: list[TaskUpdate] = []
    engine = await make_engine()
    remove = engine.add_listener(heard.append)
    seen: list[TaskUpdate] = []

    async def collect() -> None:
        async for update in engine.watch():
            seen.append(update)
            if sum(u.record.is_terminal for u in seen) == 2:
                return

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0)
    first = await engine.invoke(plugin.target)
    remove()
    second = await engine.invoke(plugin.target)
    await collector
    assert {u.record.task_id for u in seen} == {first.task_id, second.task_id}
    assert {u.record.task_id for u in heard} == {first.task_id}


async def test_failing_listener_does_not_break_the_engine(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """An on_change hook that raises is logged and ignored."""

    def explode(update: TaskUpdate) -> None:
        raise RuntimeError("listener bug")

    plugin = await serve(Job(checks=1))
    engine = await make_engine(on_change=explode)
    assert (await engine.invoke(plugin.target)).state is TaskState.SUCCEEDED


def test_task_not_found_is_an_asyncplugin_error() -> None:
    """TaskNotFound subclasses AsyncPluginError (and KeyError) and reads as one line."""
    err = TaskNotFound("abc")
    assert isinstance(err, AsyncPluginError)
    assert isinstance(err, KeyError)
    assert str(err) == "no task with id 'abc'"
    assert err.grpc_code is grpc.StatusCode.NOT_FOUND


class _SyncPlugin:
    """A synchronous grpcio test plugin: RUNNING once, then data (and records what it saw)."""

    def __init__(self) -> None:
        self.requests: list[plugin_pb2.InvokeRequest] = []
        self.lock = threading.Lock()

    def invoke(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        request = decode_request(raw)
        with self.lock:
            self.requests.append(request)
        if not request.is_status_check:
            answer = plugin_pb2.InvokeResponse()
            answer.status.state = task_pb2.TASK_STATE_RUNNING
            answer.status.remote_status_input.update({"job": 1})
            return answer.SerializeToString()
        return plugin_pb2.InvokeResponse(data=b"sync done").SerializeToString()


@pytest.fixture
def sync_plugin() -> Iterator[tuple[_SyncPlugin, str]]:
    """A grpcio (threaded) plugin server on 127.0.0.1:0."""
    plugin = _SyncPlugin()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "asyncplugin.v1.PluginService",
                {"Invoke": grpc.unary_unary_rpc_method_handler(plugin.invoke)},
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield plugin, f"127.0.0.1:{port}"
    server.stop(None)


def test_sync_engine_drives_a_task_from_plain_code(sync_plugin: tuple[_SyncPlugin, str]) -> None:
    """SyncEngine runs the engine in its own thread: invoke/get/checks/list block and work."""
    plugin, target = sync_plugin
    policy = PollingPolicy(initial_interval_s=1.0, check_timeout_s=5.0)
    with SyncEngine(clock=FakeClock(), policy=policy) as engine:
        record = engine.invoke(target, payload={"x": 1})
        assert record.state is TaskState.SUCCEEDED
        assert record.result == b"sync done"
        assert engine.get(record.task_id) == record
        assert [c.check_number for c in engine.checks(record.task_id)] == [0, 1]
        assert [r.task_id for r in engine.list()] == [record.task_id]
        task_id = engine.submit(target)
        assert engine.wait(task_id, timeout_s=60).state is TaskState.SUCCEEDED
        assert engine.cancel(task_id).state is TaskState.SUCCEEDED
        with pytest.raises(TaskNotFound):
            engine.get("missing")
    assert len(plugin.requests) == 4
    with pytest.raises(RuntimeError, match="not started"):
        engine.get(record.task_id)


async def test_wait_refuses_a_task_another_engine_runs(make_engine: MakeEngine) -> None:
    """An unfinished task that appeared in the store after start belongs to another engine:
    wait and cancel say so instead of waiting forever."""
    engine = await make_engine()
    foreign = TaskRecord(
        task_id="foreign",
        target="127.0.0.1:1",
        method=GENERIC_METHOD,
        state=TaskState.RUNNING,
        payload=b"",
        idempotency_key="k",
        create_time=0.0,
        update_time=0.0,
    )
    await engine.store.create(foreign)
    with pytest.raises(EngineError, match="another engine"):
        await engine.wait("foreign")
    with pytest.raises(EngineError, match="another engine"):
        await engine.cancel("foreign")
    assert await engine.get("foreign") == foreign


class _BuggyTransport:
    """A Transport port whose calls to one target raise an unexpected error (an engine bug)."""

    def __init__(self, inner: GrpcTransport, broken: str) -> None:
        self.inner = inner
        self.broken = broken

    async def call(
        self,
        target: str,
        method: str,
        request: bytes,
        *,
        timeout_s: float,
        metadata: Metadata = (),
    ) -> bytes:
        if target == self.broken:
            raise RuntimeError("boom")
        return await self.inner.call(target, method, request, timeout_s=timeout_s)

    async def close(self) -> None:
        await self.inner.close()


async def test_engine_bug_fails_only_that_task(make_engine: MakeEngine, serve: Serve) -> None:
    """An unexpected exception while handling one task fails it with ENGINE_INTERNAL; the
    engine keeps serving the others."""
    plugin = await serve(Job(checks=1))
    transport = _BuggyTransport(GrpcTransport(), broken="127.0.0.1:9")
    engine = await make_engine(transport=transport)
    bad = await engine.submit("127.0.0.1:9")
    good = await engine.submit(plugin.target)
    assert (await engine.wait(good)).state is TaskState.SUCCEEDED
    failed = await engine.wait(bad)
    assert failed.error_code == "ENGINE_INTERNAL"
    assert "RuntimeError: boom" in failed.error_proto().internal_message
    await transport.close()
