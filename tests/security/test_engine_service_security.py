"""The engine daemon's security: bearer tokens for clients (UNAUTHENTICATED without), the
completion token in place of a bearer token for CompleteTask, TLS and mutual TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from asyncplugin.engine import ChannelSecurity, Engine, FakeClock
from asyncplugin.plugin import CompletionClient, ServerSecurity
from asyncplugin.service import (
    CompletionKey,
    CompletionTokens,
    EngineClient,
    EngineServer,
    EngineServiceError,
)
from asyncplugin.v1 import task_pb2
from tests.engine.plugins import Job, PluginServer
from tests.security.conftest import Pki

StartEngine = Callable[..., Awaitable[EngineServer]]


@pytest.fixture
async def start_engine() -> AsyncIterator[StartEngine]:
    """Starts EngineServers with the given options on a fake clock; stops them after."""
    started: list[EngineServer] = []

    async def start(**options: Any) -> EngineServer:
        completion = options.get("completion")
        engine = Engine(clock=FakeClock(), shutdown_grace_s=0, completion=completion)
        server = EngineServer(engine, **options)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(0)


async def test_clients_without_the_bearer_token_are_unauthenticated(
    start_engine: StartEngine, token: str
) -> None:
    plugin = await PluginServer(Job(forever=True)).start()
    completion = CompletionTokens([CompletionKey("k", b"s" * 32)])
    server = await start_engine(auth_tokens=[token], completion=completion)
    try:
        for client in (EngineClient(server.address), EngineClient(server.address, token="no")):
            async with client:
                with pytest.raises(EngineServiceError) as refused:
                    await client.submit(plugin.target)
                assert refused.value.code is grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(EngineServiceError) as listing:
                    await client.list()
                assert listing.value.code is grpc.StatusCode.UNAUTHENTICATED
        async with EngineClient(server.address, token=token) as client:
            task = await client.submit(plugin.target)
            async for change in client.watch(task.task_id):
                if change.task.state == task_pb2.TASK_STATE_RUNNING:
                    break
            assert len((await client.list()).tasks) == 1
            context = plugin.calls()[0].context
            # CompleteTask needs the completion token, not the operator's bearer token.
            async with CompletionClient() as completions:
                await completions.complete(
                    context.engine_address, context.completion_token, data=b"pushed"
                )
            assert (await client.get(task.task_id)).state == task_pb2.TASK_STATE_SUCCEEDED
        async with grpc.aio.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await plugin.stop()


async def test_tls_and_mutual_tls(start_engine: StartEngine, pki: Pki) -> None:
    server = await start_engine(
        security=ServerSecurity(
            cert_chain=pki.server.cert_pem,
            private_key=pki.server.key_pem,
            client_ca=pki.ca.cert_pem,
        ),
    )
    trusted = ChannelSecurity.from_files(
        ca_file=pki.ca.cert, client_cert=pki.client.cert, client_key=pki.client.key
    )
    async with EngineClient(server.address, security=trusted, timeout_s=5) as client:
        assert not (await client.list()).tasks
    no_client_cert = ChannelSecurity.from_files(ca_file=pki.ca.cert)
    async with EngineClient(server.address, security=no_client_cert, timeout_s=5) as client:
        with pytest.raises(EngineServiceError) as refused:
            await client.list()
        assert refused.value.code is grpc.StatusCode.UNAVAILABLE
    wrong_ca = ChannelSecurity.from_files(
        ca_file=pki.untrusted_ca.cert, client_cert=pki.client.cert, client_key=pki.client.key
    )
    async with EngineClient(server.address, security=wrong_ca, timeout_s=5) as client:
        with pytest.raises(EngineServiceError):
            await client.list()


def test_plaintext_off_loopback_is_refused_before_binding() -> None:
    from asyncplugin.plugin import InsecureBindError

    with pytest.raises(InsecureBindError, match=r"0\.0\.0\.0"):
        EngineServer(Engine(), host="0.0.0.0")
    with pytest.raises(ValueError, match="not a loopback address"):
        EngineClient("10.1.2.3:50050")
