"""The operational parts of every plugin server: health, reflection, shutdown, bind, limits, TLS."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from asyncplugin.plugin import AsyncPlugin, BindError, PluginServer, ServerSecurity
from asyncplugin.protocol import Request, decode_payload
from asyncplugin.v1 import plugin_pb2, plugin_pb2_grpc
from server.echo import Echo
from tests.plugin.conftest import StartServer

Payload = dict[str, Any]
SERVICE = "asyncplugin.v1.PluginService"


class Gated(AsyncPlugin[Payload, Payload]):
    """An async plugin whose calls wait until the test opens the gate."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def run(self, request: Request[Payload]) -> Payload:
        self.entered.set()
        await self.gate.wait()
        return {"finished": True}


async def test_health_serving_for_server_and_service(start_server: StartServer) -> None:
    """Health reports SERVING both overall ("") and for the plugin's service name."""
    served = await start_server(Echo())
    stub = health_pb2_grpc.HealthStub(served.channel)
    for service in ("", SERVICE):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_turns_not_serving_at_shutdown(start_server: StartServer) -> None:
    """A health watcher sees NOT_SERVING as soon as stop() begins, before the server is gone."""
    served = await start_server(Echo())
    stub = health_pb2_grpc.HealthStub(served.channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=20)
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.create_task(served.server.stop(10))
    second = await watch.read()
    assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()  # the watch is an in-flight call: end it so the drain completes
    await asyncio.wait_for(stopping, timeout=10)


async def test_reflection_lists_services(start_server: StartServer) -> None:
    """Server reflection lists the plugin's service, health and reflection itself."""
    served = await start_server(Echo())
    stub = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    call = stub.ServerReflectionInfo(timeout=10)
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    reply = await call.read()
    await call.done_writing()
    names = {service.name for service in reply.list_services_response.service}
    assert names == {
        SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_graceful_stop_drains_in_flight_call(start_server: StartServer) -> None:
    """stop(grace) lets a call already running finish; new calls are refused meanwhile."""
    gated = Gated()
    served = await start_server(gated)
    in_flight = asyncio.create_task(served.invoke({}))
    await asyncio.wait_for(gated.entered.wait(), timeout=10)
    stopping = asyncio.create_task(served.server.stop(30))
    for _ in range(10):  # let stop() run up to grpc's shutdown (no wall-clock wait)
        await asyncio.sleep(0)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await served.stub.Invoke(plugin_pb2.InvokeRequest(), timeout=5)
    # grpc-core refuses a call arriving during shutdown with UNAVAILABLE or, when it raced the
    # listener's close, CANCELLED (both seen here); either way it never reaches the plugin.
    assert refused.value.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    assert not in_flight.done()
    gated.gate.set()
    response = await asyncio.wait_for(in_flight, timeout=10)
    assert decode_payload(response.data, dict) == {"finished": True}
    await asyncio.wait_for(stopping, timeout=10)


async def test_port_taken_fails_loudly(start_server: StartServer) -> None:
    """Binding a port another server holds raises BindError naming host:port (no SO_REUSEPORT)."""
    first = await start_server(Echo())
    second = PluginServer(Echo(), host="127.0.0.1", port=first.server.port)
    with pytest.raises(BindError, match=f"127.0.0.1:{first.server.port}"):
        await second.start()
    response = await first.invoke({"still": "mine"})
    assert decode_payload(response.data, dict) == {"echo": {"still": "mine"}}


async def test_start_returns_bound_port(start_server: StartServer) -> None:
    """start() on port 0 returns the real port, which `address` then shows."""
    served = await start_server(Echo())
    assert served.server.port > 0
    assert served.server.address == f"127.0.0.1:{served.server.port}"


async def test_max_message_size_rejects_large_request(start_server: StartServer) -> None:
    """A request over max_message_bytes is refused with RESOURCE_EXHAUSTED."""
    served = await start_server(Echo(), max_message_bytes=1024)
    small = await served.invoke({"x": "y" * 100})
    assert decode_payload(small.data, dict) == {"echo": {"x": "y" * 100}}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.invoke({"x": "y" * 4096})
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_tls_needs_both_parts() -> None:
    """A certificate without a key (or the reverse) is refused up front."""
    with pytest.raises(ValueError, match="both"):
        ServerSecurity(cert_chain=b"cert", private_key=b"")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_tls_server_answers_over_tls(tls_files: tuple[Path, Path]) -> None:
    """With a certificate and key the server speaks TLS and a TLS client can call it."""
    cert, key = tls_files
    security = ServerSecurity.from_files(cert_file=cert, key_file=key)
    server = PluginServer(Echo(), port=0, security=security)
    await server.start()
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        async with grpc.aio.secure_channel(server.address, credentials) as channel:
            stub = plugin_pb2_grpc.PluginServiceStub(channel)
            response = await stub.Invoke(plugin_pb2.InvokeRequest(), timeout=10)
        assert decode_payload(response.data, dict) == {"echo": {}}
    finally:
        await server.stop(None)
