"""Fixtures for the plugin SDK tests: a fake clock and real in-process servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from asyncplugin.plugin import AsyncPlugin, PluginServer
from asyncplugin.protocol import check_response, encode_payload
from asyncplugin.v1 import plugin_pb2, plugin_pb2_grpc


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now_s = start

    def now(self) -> float:
        """The current fake time, in seconds."""
        return self.now_s

    def advance(self, seconds: float) -> None:
        """Moves time forward."""
        self.now_s += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A fresh fake clock."""
    return FakeClock()


class Served:
    """A started PluginServer and a channel to it."""

    def __init__(self, server: PluginServer, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.channel = channel
        self.stub = plugin_pb2_grpc.PluginServiceStub(channel)

    async def invoke(
        self,
        payload: Any = None,
        *,
        request: plugin_pb2.InvokeRequest | None = None,
    ) -> plugin_pb2.InvokeResponse:
        """Calls PluginService/Invoke and checks the answer obeys every protocol rule."""
        if request is None:
            request = plugin_pb2.InvokeRequest(context=plugin_pb2.RequestContext(task_id="t-1"))
            if payload is not None:
                request.data = encode_payload(payload)
        response: plugin_pb2.InvokeResponse = await self.stub.Invoke(request, timeout=20)
        check_response(response, cancel_requested=request.cancel_requested)
        return response


StartServer = Callable[..., Awaitable[Served]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Starts plugins on 127.0.0.1:0; everything started is stopped at the end of the test."""
    started: list[Served] = []

    async def start(plugin: AsyncPlugin[Any, Any], **options: Any) -> Served:
        server = PluginServer(plugin, host="127.0.0.1", port=0, **options)
        await server.start()
        served = Served(server, grpc.aio.insecure_channel(server.address))
        started.append(served)
        return served

    yield start
    for served in started:
        await served.channel.close()
        await served.server.stop(None)
