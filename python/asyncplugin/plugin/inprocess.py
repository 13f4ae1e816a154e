"""Calling a plugin in-process, for plugin authors' own tests (no engine involved).

Example:
    async with serve_in_process(Transcriber(remote)) as client:
        first = await client.start(TranscribeInput(audio_url="https://example.com/a.wav"))
        assert first.state is TaskState.RUNNING
        clock.advance(60)
        done = await client.check(first)
        assert done.data.text
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from asyncplugin.protocol import (
    PluginError,
    RequestContext,
    Task,
    TaskState,
    decode_payload,
    decode_response,
    encode_payload,
    limits,
)
from asyncplugin.v1 import plugin_pb2

from .base import AsyncPlugin
from .server import PluginServer

InT = TypeVar("InT")
OutT = TypeVar("OutT")

_task_numbers = itertools.count(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult(Generic[OutT]):
    """One decoded, validated answer from a plugin.

    Attributes:
        state: SUCCEEDED when the answer carries data (or says so), else the status's state.
        data: the output decoded into the plugin's output type, or None.
        status: the answered Task, or None when the answer is data only.
        context: the request context the call was made with (reused by `check`).
        response: the raw answer.
        request_data: the encoded payload the call sent (resent by `check`, as engines do).
    """

    state: TaskState
    data: OutT | None
    status: Task | None
    context: RequestContext
    response: plugin_pb2.InvokeResponse
    request_data: bytes | None = None

    @property
    def error(self) -> PluginError | None:
        """The error envelope of a FAILED answer."""
        return self.status.error if self.status is not None else None


class PluginClient(Generic[InT, OutT]):
    """Calls one plugin's RPC the way an engine would, with validation of every answer."""

    def __init__(self, plugin: AsyncPlugin[InT, OutT], channel: grpc.aio.Channel) -> None:
        self.plugin = plugin
        self.channel = channel
        self._call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            type(plugin).rpc_method
        )

    async def start(
        self, payload: InT, *, context: RequestContext | None = None, timeout_s: float = 30.0
    ) -> CallResult[OutT]:
        """Sends new work (check number 0); a fresh task id and idempotency key by default."""
        if context is None:
            number = next(_task_numbers)
            context = RequestContext(task_id=f"t-{number}", idempotency_key=f"k-{number}")
        context = dataclasses.replace(context, check_number=0)
        request = plugin_pb2.InvokeRequest(data=encode_payload(payload), context=context.to_proto())
        return await self._invoke(request, context, timeout_s=timeout_s)

    async def check(
        self,
        previous: CallResult[OutT],
        *,
        payload: InT | None = None,
        check_number: int | None = None,
        cancel: bool = False,
        timeout_s: float = 30.0,
    ) -> CallResult[OutT]:
        """Sends a status check of the task `previous` answered (RUNNING), as an engine would.

        The payload defaults to the one `previous` sent, the check number to the previous one
        plus 1, and the context (task id, idempotency key) to the previous one.
        """
        if previous.status is None:
            raise ValueError("the previous answer has no status to check (it was data only)")
        number = previous.context.check_number + 1 if check_number is None else check_number
        context = dataclasses.replace(previous.context, check_number=number)
        task = dataclasses.replace(
            previous.status, task_id=context.task_id, check_count=max(number - 1, 0)
        )
        request = plugin_pb2.InvokeRequest(
            context=context.to_proto(),
            status=task.to_proto(),
            is_status_check=True,
            cancel_requested=cancel,
        )
        data = encode_payload(payload) if payload is not None else previous.request_data
        if data is not None:
            request.data = data
        return await self._invoke(request, context, timeout_s=timeout_s)

    async def cancel(
        self, previous: CallResult[OutT], *, payload: InT | None = None, timeout_s: float = 30.0
    ) -> CallResult[OutT]:
        """Asks the plugin to cancel the task `previous` answered (RUNNING)."""
        return await self.check(previous, payload=payload, cancel=True, timeout_s=timeout_s)

    async def run_until_done(
        self,
        payload: InT,
        *,
        between_checks: Callable[[CallResult[OutT]], Awaitable[None] | None] | None = None,
        max_checks: int = 100,
    ) -> CallResult[OutT]:
        """Starts work and checks it until it is no longer RUNNING.

        `between_checks(result)` runs before each check: advance a fake clock there. Raises
        AssertionError if the task is still RUNNING after `max_checks` checks.
        """
        result = await self.start(payload)
        for _ in range(max_checks):
            if result.state is not TaskState.RUNNING:
                return result
            if between_checks is not None:
                waited = between_checks(result)
                if waited is not None:
                    await waited
            result = await self.check(result)
        if result.state is TaskState.RUNNING:
            raise AssertionError(f"still RUNNING after {max_checks} status checks")
        return result

    async def _invoke(
        self, request: plugin_pb2.InvokeRequest, context: RequestContext, *, timeout_s: float
    ) -> CallResult[OutT]:
        raw: bytes = await self._call(request.SerializeToString(), timeout=timeout_s)
        response = decode_response(raw, cancel_requested=request.cancel_requested)
        status = Task.from_proto(response.status) if response.HasField("status") else None
        data: OutT | None = (
            decode_payload(response.data, self.plugin.output_type)
            if response.HasField("data")
            else None
        )
        done = response.HasField("data") or status is None
        state = TaskState.SUCCEEDED if done or status is None else status.state
        return CallResult(
            state=state,
            data=data,
            status=status,
            context=context,
            response=response,
            request_data=request.data if request.HasField("data") else None,
        )


@asynccontextmanager
async def serve_in_process(
    plugin: AsyncPlugin[InT, OutT],
    *,
    max_message_bytes: int = limits.MESSAGE_MAX_BYTES,
    debug: bool = False,
    max_workers: int | None = None,
    grpc_options: Sequence[tuple[str, Any]] = (),
) -> AsyncIterator[PluginClient[InT, OutT]]:
    """Serves `plugin` on 127.0.0.1 (a free port, plaintext, no token) and yields a client for it.

    The keyword arguments are PluginServer's. The server stops, cancelling any call still in
    flight, when the block exits.
    """
    server = PluginServer(
        plugin,
        host="127.0.0.1",
        port=0,
        max_message_bytes=max_message_bytes,
        debug=debug,
        max_workers=max_workers,
        grpc_options=grpc_options,
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            yield PluginClient(plugin, channel)
    finally:
        await server.stop(None)
