"""Fixtures for the engine service: an EngineServer on 127.0.0.1:0 over an engine on a fake
clock, test plugins, and clients."""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from asyncplugin.engine import Engine, FakeClock, MemoryStore
from asyncplugin.service import CompletionKey, CompletionTokens, EngineClient, EngineServer
from tests.engine.conftest import POLICY, RETRY, SEED
from tests.engine.plugins import Behaviour, PluginServer

KEY = CompletionKey("k1", b"k" * 32)


@dataclass
class Daemon:
    """A running EngineServer with its engine, clock and a client."""

    server: EngineServer
    engine: Engine
    clock: FakeClock
    client: EngineClient
    tokens: CompletionTokens | None

    @property
    def address(self) -> str:
        return self.server.address


StartDaemon = Callable[..., Awaitable[Daemon]]
Serve = Callable[..., Awaitable[PluginServer]]


@pytest.fixture
def clock() -> FakeClock:
    """Simulated time that jumps whenever the engine only waits."""
    return FakeClock()


@pytest.fixture
async def start_daemon(clock: FakeClock) -> AsyncIterator[StartDaemon]:
    """Starts EngineServers (engine on the fake clock, push completion on unless tokens=None);
    stops them after the test."""
    started: list[Daemon] = []

    async def start(
        *,
        tokens: CompletionTokens | bool | None = True,
        store: Any = None,
        client_token: str | None = None,
        **server_options: Any,
    ) -> Daemon:
        completion = CompletionTokens([KEY]) if tokens is True else tokens or None
        engine = Engine(
            store=store if store is not None else MemoryStore(),
            clock=clock,
            policy=POLICY,
            retry_policy=RETRY,
            rng=random.Random(SEED),
            shutdown_grace_s=0.0,
            completion=completion,
        )
        server = EngineServer(engine, completion=completion, **server_options)
        await server.start()
        client = EngineClient(server.address, token=client_token)
        daemon = Daemon(server, engine, clock, client, completion)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        await daemon.client.close()
        await daemon.server.stop(0)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts test plugin servers on 127.0.0.1:0; stops them after the test."""
    servers: list[PluginServer] = []

    async def start(behaviours: dict[str, Behaviour] | Behaviour, **kwargs: Any) -> PluginServer:
        server = await PluginServer(behaviours, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
