"""A plugin that answers garbage fails only its own task, with the violation named."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from asyncplugin.engine import CheckOutcome, Engine, TaskNotFound, TaskRecord
from asyncplugin.protocol import TaskState
from asyncplugin.v1 import plugin_pb2, task_pb2
from tests.engine.conftest import MakeEngine, Serve
from tests.engine.plugins import Answer, Job, constant, raw_tcp_server

_RUNNING_WITHOUT_INPUT = plugin_pb2.InvokeResponse(
    status=task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING)
)
_UNSPECIFIED = plugin_pb2.InvokeResponse(status=task_pb2.Task(status_message="hmm"))
_FAILED_WITHOUT_ERROR = plugin_pb2.InvokeResponse(
    status=task_pb2.Task(state=task_pb2.TASK_STATE_FAILED)
)
_CANCELLED_UNASKED = plugin_pb2.InvokeResponse(
    status=task_pb2.Task(state=task_pb2.TASK_STATE_CANCELLED)
)


@pytest.mark.parametrize(
    ("answer", "rule"),
    [
        (_RUNNING_WITHOUT_INPUT, "RUNNING_WITHOUT_REMOTE_STATUS_INPUT"),
        (_UNSPECIFIED, "STATE_UNSPECIFIED"),
        (b"", "NO_DATA_OR_STATUS"),
        (b"\xff\xff\xff\xff not protobuf", "MALFORMED_MESSAGE"),
        (_FAILED_WITHOUT_ERROR, "FAILED_WITHOUT_ERROR"),
        (_CANCELLED_UNASKED, "CANCELLED_WITHOUT_REQUEST"),
    ],
)
async def test_protocol_violation_fails_the_task_naming_the_rule(
    make_engine: MakeEngine, serve: Serve, answer: Answer, rule: str
) -> None:
    """Each broken rule fails the task with code PROTOCOL_VIOLATION and metadata["rule"]."""
    plugin = await serve(constant(answer))
    engine = await make_engine()
    record = await engine.invoke(plugin.target)
    assert record.state is TaskState.FAILED
    error = record.error_proto()
    assert error.code == "PROTOCOL_VIOLATION"
    assert error.metadata["rule"] == rule
    assert rule in error.message
    [entry] = await engine.checks(record.task_id)
    assert entry.outcome is CheckOutcome.PROTOCOL_VIOLATION
    assert rule in entry.message


async def test_violation_on_a_status_check_keeps_earlier_history(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """A plugin that turns bad mid-poll fails the task; what was recorded before stays."""

    async def behave(request: plugin_pb2.InvokeRequest) -> Answer:
        if request.context.check_number >= 2:
            return _RUNNING_WITHOUT_INPUT
        return await Job(forever=True)(request)

    plugin = await serve(behave)
    engine = await make_engine()
    record = await engine.invoke(plugin.target)
    assert record.error_code == "PROTOCOL_VIOLATION"
    outcomes = [e.outcome for e in await engine.checks(record.task_id)]
    assert outcomes == [CheckOutcome.RUNNING, CheckOutcome.RUNNING, CheckOutcome.PROTOCOL_VIOLATION]
    assert record.check_count == 1
    assert record.task is not None  # the last valid status is kept


async def test_oversized_answer_fails_message_too_large(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """An answer over the 4 MiB limit fails the task with code MESSAGE_TOO_LARGE."""
    plugin = await serve(constant(plugin_pb2.InvokeResponse(data=b"x" * (5 * 1024 * 1024))))
    engine = await make_engine()
    record = await engine.invoke(plugin.target)
    assert record.error_code == "MESSAGE_TOO_LARGE"
    [entry] = await engine.checks(record.task_id)
    assert (entry.outcome, entry.grpc_code) == (CheckOutcome.RPC_ERROR, "RESOURCE_EXHAUSTED")


async def test_wrong_method_fails_unimplemented_naming_it(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """Calling a method the plugin does not serve fails at once, naming the method."""
    plugin = await serve(constant(b""))
    engine = await make_engine()
    record = await engine.invoke(plugin.target, method="/no.Such/Method")
    assert record.error_code == "UNIMPLEMENTED"
    assert "/no.Such/Method" in record.error_proto().message
    assert len(await engine.checks(record.task_id)) == 1


async def test_http1_endpoint_is_not_grpc(make_engine: MakeEngine) -> None:
    """A server answering HTTP/1.1 fails the task at once with NOT_A_GRPC_ENDPOINT."""
    server, target = await raw_tcp_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    async with server:
        engine = await make_engine()
        record = await engine.invoke(target)
    assert record.error_code == "NOT_A_GRPC_ENDPOINT"
    assert target in record.error_proto().message


async def test_junk_endpoint_is_not_grpc(make_engine: MakeEngine) -> None:
    """A server writing junk bytes fails the task with NOT_A_GRPC_ENDPOINT."""
    server, target = await raw_tcp_server(b"garbage garbage garbage garbage\r\n" * 8)
    async with server:
        engine = await make_engine()
        record = await engine.invoke(target)
    assert record.error_code == "NOT_A_GRPC_ENDPOINT"


async def test_endpoint_that_closes_is_unavailable(make_engine: MakeEngine) -> None:
    """A TCP server that accepts and hangs up looks like a down plugin: retried, UNAVAILABLE."""
    server, target = await raw_tcp_server(None)
    async with server:
        engine = await make_engine()
        record = await engine.invoke(target)
    assert record.error_code == "UNAVAILABLE"


async def test_plugin_rpc_error_is_mapped_into_the_envelope(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """A plugin failing the RPC (PERMISSION_DENIED) fails the task with that code, no retry."""
    import grpc
    from grpc import aio

    async def deny(raw: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, "token rejected")
        return b""

    server = aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "asyncplugin.v1.PluginService",
                {"Invoke": grpc.unary_unary_rpc_method_handler(deny)},
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        engine = await make_engine()
        record = await engine.invoke(f"127.0.0.1:{port}")
    finally:
        await server.stop(None)
    error = record.error_proto()
    assert (error.code, error.message, error.rpc_code) == ("PERMISSION_DENIED", "token rejected", 7)
    [entry] = await engine.checks(record.task_id)
    assert (entry.outcome, entry.grpc_code) == (CheckOutcome.RPC_ERROR, "PERMISSION_DENIED")


async def test_bad_plugins_do_not_disturb_good_ones(make_engine: MakeEngine, serve: Serve) -> None:
    """Good and garbage plugins polled together: each bad task fails with its own rule, every
    good task succeeds, and every task has its full history."""
    good = await serve(Job(checks=3, result=b"fine"))
    bad = {
        "RUNNING_WITHOUT_REMOTE_STATUS_INPUT": await serve(constant(_RUNNING_WITHOUT_INPUT)),
        "STATE_UNSPECIFIED": await serve(constant(_UNSPECIFIED)),
        "NO_DATA_OR_STATUS": await serve(constant(b"")),
    }
    engine = await make_engine(max_concurrent_rpcs=3)
    good_ids = [await engine.submit(good.target, payload={"i": i}) for i in range(10)]
    bad_ids = {rule: await engine.submit(p.target) for rule, p in bad.items()}
    records: list[TaskRecord] = await asyncio.gather(*(engine.wait(i) for i in good_ids))
    assert {(r.state, r.result) for r in records} == {(TaskState.SUCCEEDED, b"fine")}
    for rule, task_id in bad_ids.items():
        record = await engine.get(task_id)
        assert record.error_proto().metadata["rule"] == rule
    for task_id in good_ids:
        assert len(await engine.checks(task_id)) == 4
    assert len(await engine.list(limit=None)) == 13


@pytest.mark.parametrize(
    "call",
    [
        lambda engine: engine.get("nope"),
        lambda engine: engine.wait("nope"),
        lambda engine: engine.cancel("nope"),
        lambda engine: engine.checks("nope"),
    ],
)
async def test_unknown_task_id_is_task_not_found(
    make_engine: MakeEngine, call: Callable[[Engine], Awaitable[object]]
) -> None:
    """get / wait / cancel / checks of an unknown id raise TaskNotFound with a clear message."""
    engine = await make_engine()
    with pytest.raises(TaskNotFound, match="no task with id 'nope'"):
        await call(engine)


async def test_unknown_task_id_watch(make_engine: MakeEngine) -> None:
    """watch() of an unknown id raises TaskNotFound too."""
    engine = await make_engine()
    with pytest.raises(TaskNotFound):
        async for _ in engine.watch("nope"):
            pass


async def test_plugin_rich_error_status_is_read_back_exactly(
    make_engine: MakeEngine,
) -> None:
    """A plugin failing the RPC with a google.rpc.Status carrying the packed Error envelope
    (grpc-status-details-bin) has that envelope recorded exactly."""
    import grpc
    from grpc import aio

    from asyncplugin.protocol import error_to_status
    from asyncplugin.v1 import error_pb2

    envelope = error_pb2.Error(
        message="Quota exhausted for today.",
        code="REMOTE_QUOTA",
        rpc_code=9,
        domain="transcriber.example.com",
        suggestion="Try again tomorrow.",
    )
    status = error_to_status(envelope)

    async def refuse(raw: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            status.message,
            trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
        )
        return b""

    server = aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "asyncplugin.v1.PluginService",
                {"Invoke": grpc.unary_unary_rpc_method_handler(refuse)},
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        engine = await make_engine()
        record = await engine.invoke(f"127.0.0.1:{port}")
    finally:
        await server.stop(None)
    assert record.state is TaskState.FAILED
    assert record.error_proto() == envelope
