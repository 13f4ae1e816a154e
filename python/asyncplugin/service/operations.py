"""google.longrunning.Operations over the engine's tasks, so existing clients can wait on them.

Each task is the Operation named "tasks/<task_id>" (a unique prefix is accepted too):
  - `done`: the task is SUCCEEDED, FAILED or CANCELLED;
  - `metadata`: an asyncplugin.engine.v1.OperationMetadata (state, checks, progress, times);
  - `response` (SUCCEEDED): the result bytes, packed with the type URL of the task's
    `result_type` when it was given at submission (so `Any.Unpack` into that message works),
    else as a google.protobuf.BytesValue;
  - `error` (FAILED): the error envelope mapped to google.rpc.Status by the protocol's lossless
    mapping (`asyncplugin.protocol.error_to_status`); (CANCELLED): code CANCELLED (AIP-151).
DeleteOperation removes a finished task and its history; an unfinished one is
FAILED_PRECONDITION (cancel it first). ListOperations takes the collection "tasks" (or "") and
no filter. The messages and the servicer base come from googleapis-common-protos.
"""

from __future__ import annotations

from typing import Any, Final

from google.longrunning import operations_pb2_grpc, operations_proto_pb2
from google.protobuf import any_pb2, empty_pb2, wrappers_pb2
from google.rpc import code_pb2, status_pb2
from grpc import aio

from asyncplugin.engine import Engine, TaskCursor, TaskFilter, TaskRecord, WaitTimeout
from asyncplugin.protocol import TaskState, error_to_status

from .convert import operation_metadata, operation_name, seconds, task_id_from_operation_name
from .errors import BadRequest, refusing
from .requests import check_page_size, page_token, read_page_token

__all__ = ["MAX_WAIT_S", "OperationsServicer", "to_operation"]

MAX_WAIT_S: Final = 60.0
"""The longest WaitOperation blocks (also its default); a client calls it again after."""

_TYPE_PREFIX: Final = "type.googleapis.com/"

Context = aio.ServicerContext[Any, Any]


def to_operation(record: TaskRecord) -> operations_proto_pb2.Operation:
    """The Operation view of a task."""
    operation = operations_proto_pb2.Operation(
        name=operation_name(record.task_id), done=record.is_terminal
    )
    operation.metadata.Pack(operation_metadata(record))
    if record.state is TaskState.SUCCEEDED:
        operation.response.CopyFrom(_response(record))
    elif record.state is TaskState.FAILED:
        operation.error.CopyFrom(error_to_status(record.error_proto()))
    elif record.state is TaskState.CANCELLED:
        operation.error.CopyFrom(
            status_pb2.Status(code=code_pb2.CANCELLED, message="the task was cancelled")
        )
    return operation


def _response(record: TaskRecord) -> any_pb2.Any:
    data = record.result or b""
    if record.options.result_type:
        # The result bytes ARE an encoded `result_type`: pack them as they are.
        return any_pb2.Any(type_url=_TYPE_PREFIX + record.options.result_type, value=data)
    packed = any_pb2.Any()
    packed.Pack(wrappers_pb2.BytesValue(value=data))
    return packed


class OperationsServicer(operations_pb2_grpc.OperationsServicer):  # type: ignore[misc]
    """google.longrunning.Operations over one running Engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def _record(self, name: str) -> TaskRecord:
        try:
            prefix = task_id_from_operation_name(name)
        except ValueError as err:
            raise BadRequest("name", str(err)) from None
        return await self._engine.get(await self._engine.resolve(prefix))

    @refusing
    async def GetOperation(
        self, request: operations_proto_pb2.GetOperationRequest, context: Context
    ) -> operations_proto_pb2.Operation:
        """The task as an Operation."""
        return to_operation(await self._record(request.name))

    @refusing
    async def ListOperations(
        self, request: operations_proto_pb2.ListOperationsRequest, context: Context
    ) -> operations_proto_pb2.ListOperationsResponse:
        """Tasks as Operations, newest first, paged."""
        if request.name not in ("", "tasks"):
            raise BadRequest("name", f"the collection is 'tasks', got {request.name!r}")
        if request.filter:
            raise BadRequest("filter", "filters are not supported; use EngineService.ListTasks")
        size = check_page_size(request.page_size)
        where = TaskFilter()
        cursor = read_page_token(request.page_token, where)
        records = await self._engine.store.query(where, limit=size + 1, after=cursor)
        response = operations_proto_pb2.ListOperationsResponse(
            operations=[to_operation(record) for record in records[:size]]
        )
        if len(records) > size:
            response.next_page_token = page_token(TaskCursor.of(records[size - 1]), where)
        return response

    @refusing
    async def CancelOperation(
        self, request: operations_proto_pb2.CancelOperationRequest, context: Context
    ) -> empty_pb2.Empty:
        """Cancels the task (a finished one stays as it is)."""
        record = await self._record(request.name)
        await self._engine.cancel(record.task_id)
        return empty_pb2.Empty()

    @refusing
    async def DeleteOperation(
        self, request: operations_proto_pb2.DeleteOperationRequest, context: Context
    ) -> empty_pb2.Empty:
        """Deletes a finished task and its history."""
        record = await self._record(request.name)
        await self._engine.delete(record.task_id)
        return empty_pb2.Empty()

    @refusing
    async def WaitOperation(
        self, request: operations_proto_pb2.WaitOperationRequest, context: Context
    ) -> operations_proto_pb2.Operation:
        """Waits until the task ends or `timeout` (at most MAX_WAIT_S) passes; returns it."""
        record = await self._record(request.name)
        timeout_s = seconds(request.timeout) if request.HasField("timeout") else MAX_WAIT_S
        if timeout_s < 0:
            raise BadRequest("timeout", "must not be negative")
        if not record.is_terminal:
            try:
                record = await self._engine.wait(
                    record.task_id, timeout_s=min(timeout_s, MAX_WAIT_S)
                )
            except WaitTimeout:
                record = await self._engine.get(record.task_id)
        return to_operation(record)


def add_to_server(servicer: OperationsServicer, server: aio.Server) -> None:
    """Registers the servicer on a grpc.aio server."""
    operations_pb2_grpc.add_OperationsServicer_to_server(servicer, server)
