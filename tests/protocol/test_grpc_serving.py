"""The server set-up both gRPC servers share: options, the explicit bind, health, reflection."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from asyncplugin.protocol.grpc_serving import (
    add_health_and_reflection,
    bind,
    server_options,
    set_serving,
)
from asyncplugin.protocol.server_security import BindError


def test_options_turn_reuseport_off_cap_messages_and_let_extra_options_win() -> None:
    options = server_options(max_message_bytes=1024, extra=[("grpc.max_receive_message_length", 9)])
    assert options[0] == ("grpc.so_reuseport", 0)
    assert dict(options)["grpc.max_send_message_length"] == 1024
    assert dict(options)["grpc.max_receive_message_length"] == 9  # the later entry wins


async def test_a_taken_port_is_a_bind_error_naming_the_address() -> None:
    first = aio.server(options=server_options(max_message_bytes=1024))
    second = aio.server(options=server_options(max_message_bytes=1024))
    port = bind(first, "127.0.0.1", 0, None)
    assert port > 0
    try:
        with pytest.raises(BindError, match=rf"cannot listen on 127\.0\.0\.1:{port}: "):
            bind(second, "127.0.0.1", port, None)
    finally:
        await first.stop(None)
        await second.stop(None)


async def test_health_is_not_serving_until_set_then_serving_for_each_service() -> None:
    server = aio.server(options=server_options(max_message_bytes=1024))
    health = add_health_and_reflection(server, ("example.v1.Service",))
    port = bind(server, "127.0.0.1", 0, None)
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await stub.Check(health_pb2.HealthCheckRequest(service="example.v1.Service"))
            assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
            await set_serving(health, ("example.v1.Service",))
            for service in ("", "example.v1.Service"):
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=service))
                assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
    finally:
        await server.stop(None)
