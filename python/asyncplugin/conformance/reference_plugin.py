"""The Python reference conformance plugin, and a server that records what an engine sent.

`ConformancePlugin` is an ordinary `AsyncPlugin[Scenario, ScenarioResult]` that answers every
call with the reference interpreter (`interpreter.interpret`, after `interpreter.delay_for`).
Served by the SDK's `PluginServer` it is the plugin the kit's own tests check.

`ReferenceServer` serves the same plugin for judging ENGINES (the reverse direction): before the
SDK decodes and validates a request, the server records an Observation of it, so requests the SDK
refuses (a status check without status, a wrong check number) are judged too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import message as pb_message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from asyncplugin.conformance.interpreter import delay_for, interpret
from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.plugin import AsyncPlugin, Reply
from asyncplugin.plugin.dispatch import PluginDispatcher
from asyncplugin.protocol import Request, Response, Task, limits
from asyncplugin.v1 import plugin_pb2

from .observations import ObservationLog, observe

__all__ = ["ConformancePlugin", "ReferenceServer", "wire_request"]

_log = logging.getLogger(__name__)

Scenario = conformance_pb2.Scenario
ScenarioResult = conformance_pb2.ScenarioResult


def wire_request(request: Request[Scenario]) -> plugin_pb2.InvokeRequest:
    """The SDK's decoded request as the v1 wire message the interpreter reads."""
    wire = plugin_pb2.InvokeRequest(
        data=request.data.SerializeToString(deterministic=True),
        context=request.context.to_proto(),
        is_status_check=request.is_status_check,
        cancel_requested=request.cancel_requested,
    )
    if request.status is not None:
        wire.status.CopyFrom(request.status.to_proto())
    return wire


def _reply(response: plugin_pb2.InvokeResponse) -> Response[ScenarioResult]:
    data = ScenarioResult.FromString(response.data) if response.HasField("data") else None
    status = Task.from_proto(response.status) if response.HasField("status") else None
    return Response(data=data, status=status)


class ConformancePlugin(AsyncPlugin[Scenario, ScenarioResult]):
    """The scenario interpreter of conformance.proto as a plugin (PluginService/Invoke).

    Args:
        sleep: how to wait before a delayed answer (tests may pass a fake).
    """

    name = "conformance"

    def __init__(self, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._sleep = sleep

    async def run(self, request: Request[Scenario]) -> Reply[ScenarioResult]:
        """Answers one call: wait `delay_for`, then `interpret`."""
        wire = wire_request(request)
        delay_s = delay_for(request.data, wire)
        if delay_s > 0:
            await self._sleep(delay_s)
        return _reply(interpret(request.data, wire))


class ReferenceServer:
    """Serves a ConformancePlugin and records an Observation of every call received.

    Example:
        with ObservationLog("observations.jsonl") as log:
            async with ReferenceServer(log=log) as server:
                ...  # point the engine under test at server.address

    Args:
        log: where observations go (default: kept in memory only, see `observations`).
        host: the address to listen on.
        port: the port; 0 picks a free one.
        plugin: the plugin to serve (default: a new ConformancePlugin).
        clock: the receive time of each call, in epoch seconds.
    """

    def __init__(
        self,
        *,
        log: ObservationLog | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        plugin: ConformancePlugin | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.log = log if log is not None else ObservationLog()
        self.host = host
        self.port = port
        self.plugin = plugin if plugin is not None else ConformancePlugin()
        self._clock = clock
        self._dispatcher = PluginDispatcher(self.plugin, max_message_bytes=limits.MESSAGE_MAX_BYTES)
        self._server: grpc.aio.Server | None = None
        self._health: Any = None

    @property
    def address(self) -> str:
        """ "host:port" (the real port once started)."""
        return f"{self.host}:{self.port}"

    @property
    def observations(self) -> list[conformance_pb2.Observation]:
        """Every observation so far, in order of receipt."""
        return list(self.log.observations)

    async def _handle(self, data: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        received = self._clock()
        request = plugin_pb2.InvokeRequest()
        try:
            request.ParseFromString(data)
        except pb_message.DecodeError:
            _log.warning("a request that is not an InvokeRequest was not recorded")
        else:
            self.log.record(observe(request, receive_time=received))
        return await self._dispatcher.handle(data, context)

    async def start(self) -> int:
        """Binds and serves; returns the port.

        Raises:
            OSError: the address cannot be bound.
        """
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_send_message_length", limits.MESSAGE_MAX_BYTES),
                ("grpc.max_receive_message_length", limits.MESSAGE_MAX_BYTES),
            ]
        )
        method: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            self._handle
        )
        service = self._dispatcher.service_name
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {self._dispatcher.method_name: method}),)
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (service, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        try:
            port = server.add_insecure_port(f"{self.host}:{self.port}")
        except RuntimeError as err:
            raise OSError(f"cannot listen on {self.address}: {err}") from err
        if port == 0:
            raise OSError(f"cannot listen on {self.address}: the address is in use or not local")
        self.port = port
        await server.start()
        self._server = server
        await self._health.set(health.OVERALL_HEALTH, health_pb2.HealthCheckResponse.SERVING)
        await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        return port

    async def stop(self, grace_s: float | None = 1.0) -> None:
        """Stops serving; calls in flight get `grace_s` seconds."""
        server, self._server = self._server, None
        if server is None:
            return
        with contextlib.suppress(Exception):
            await self._health.enter_graceful_shutdown()
        await server.stop(grace_s)

    async def __aenter__(self) -> ReferenceServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop(0)
