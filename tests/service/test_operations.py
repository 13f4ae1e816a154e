"""google.longrunning.Operations over the engine's tasks, driven by google-api-core's own
operations client (the ecosystem's standard way to wait on a long-running operation)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.api_core import exceptions, operation, operations_v1
from google.api_core.future import polling
from google.protobuf import struct_pb2, wrappers_pb2

from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.protocol import dict_to_struct, struct_to_dict
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2
from tests.engine.plugins import Answer, Job, failed, running
from tests.service.conftest import Serve, StartDaemon

FAST = polling.DEFAULT_POLLING.with_delay(initial=0.02, maximum=0.2, multiplier=1.5)


def _wait_with_api_core(address: str, name: str, result_type: Any) -> Any:
    """What an api-core user writes: get the Operation, wrap it, block on result()."""
    channel = grpc.insecure_channel(address)
    try:
        client = operations_v1.OperationsClient(channel)
        future = operation.from_gapic(
            client.get_operation(name),
            client,
            result_type,
            metadata_type=engine_pb2.OperationMetadata,
            polling=FAST,
        )
        try:
            return future.result(timeout=30), future.metadata
        except exceptions.GoogleAPICallError as err:
            return err, future.metadata
    finally:
        channel.close()


async def test_api_core_waits_on_a_task_and_gets_the_typed_result(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    result = dict_to_struct({"text": "hello", "words": 1}).SerializeToString()
    plugin = await serve(Job(checks=3, result=result))
    daemon = await start_daemon()
    task = await daemon.client.submit(plugin.target, result_type="google.protobuf.Struct")
    value, metadata = await asyncio.to_thread(
        _wait_with_api_core, daemon.address, task.name, struct_pb2.Struct
    )
    assert struct_to_dict(value) == {"text": "hello", "words": 1}
    assert metadata.state == task_pb2.TASK_STATE_SUCCEEDED
    assert metadata.check_count == 3


async def test_untyped_results_come_as_bytes_value(start_daemon: StartDaemon, serve: Serve) -> None:
    plugin = await serve(Job(checks=1, result=b"raw bytes"))
    daemon = await start_daemon()
    task = await daemon.client.submit(plugin.target)
    value, _ = await asyncio.to_thread(
        _wait_with_api_core, daemon.address, task.name, wrappers_pb2.BytesValue
    )
    assert value.value == b"raw bytes"


async def test_a_failed_task_raises_with_the_mapped_status(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    envelope = error_pb2.Error(
        message="the audio could not be decoded", code="BAD_AUDIO", rpc_code=3
    )

    async def plugin(request: plugin_pb2.InvokeRequest) -> Answer:
        if request.is_status_check:
            return failed(envelope)
        return running({})

    server = await serve(plugin)
    daemon = await start_daemon()
    task = await daemon.client.submit(server.target)
    err, metadata = await asyncio.to_thread(
        _wait_with_api_core, daemon.address, task.name, wrappers_pb2.BytesValue
    )
    assert isinstance(err, exceptions.InvalidArgument)
    assert err.message == "the audio could not be decoded"
    assert metadata.state == task_pb2.TASK_STATE_FAILED


async def test_operations_rpcs(start_daemon: StartDaemon, serve: Serve) -> None:
    plugin = await serve(Job(forever=True))
    finished = await serve(Job(checks=0, result=b"x"))
    daemon = await start_daemon()
    running_task = await daemon.client.submit(plugin.target)
    done_task = await daemon.client.submit(finished.target)
    await daemon.client.wait(done_task.task_id)
    client = operations_v1.OperationsAsyncClient(daemon.client.channel)
    listed = [op async for op in await client.list_operations("tasks", "")]
    assert {op.name for op in listed} == {running_task.name, done_task.name}
    with pytest.raises(exceptions.FailedPrecondition, match=r"RUNNING|WAITING"):
        await client.delete_operation(running_task.name)
    await client.cancel_operation(running_task.name)
    cancelled = await client.get_operation(running_task.name)
    assert cancelled.done
    assert cancelled.error.code == grpc.StatusCode.CANCELLED.value[0]
    await client.delete_operation(done_task.name)
    with pytest.raises(exceptions.NotFound):
        await client.get_operation(done_task.name)
    with pytest.raises(exceptions.InvalidArgument, match="tasks/<task_id>"):
        await client.get_operation("operations/123")


async def test_wait_operation_returns_when_the_task_ends(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    from google.longrunning import operations_pb2_grpc, operations_proto_pb2

    plugin = await serve(Job(checks=5, result=b"late"))
    daemon = await start_daemon()
    task = await daemon.client.submit(plugin.target)
    stub = operations_pb2_grpc.OperationsStub(daemon.client.channel)
    waited = await stub.WaitOperation(operations_proto_pb2.WaitOperationRequest(name=task.name))
    assert waited.done
    unpacked = wrappers_pb2.BytesValue()
    assert waited.response.Unpack(unpacked)
    assert unpacked.value == b"late"
