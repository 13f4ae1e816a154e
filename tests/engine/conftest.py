"""Fixtures for the engine tests: a fake clock, engines on it, and test plugin servers."""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from asyncplugin.engine import Engine, FakeClock, PollingPolicy, TransportRetryPolicy
from tests.engine.plugins import Behaviour, PluginServer

SEED = 1234

POLICY = PollingPolicy(
    initial_interval_s=1.0,
    multiplier=2.0,
    max_interval_s=60.0,
    min_interval_s=0.5,
    jitter=0.2,
    max_checks=100,
    deadline_s=3600.0,
    check_timeout_s=5.0,
)
RETRY = TransportRetryPolicy(
    initial_backoff_s=0.5, multiplier=2.0, max_backoff_s=10.0, jitter=0.2, max_retries=4
)

MakeEngine = Callable[..., Awaitable[Engine]]
Serve = Callable[..., Awaitable[PluginServer]]


@pytest.fixture
def clock() -> FakeClock:
    """Simulated time that jumps whenever the engine only waits."""
    return FakeClock()


@pytest.fixture
async def make_engine(clock: FakeClock) -> AsyncIterator[MakeEngine]:
    """Starts engines on the fake clock with a seeded rng; stops them after the test."""
    engines: list[Engine] = []

    async def make(**kwargs: Any) -> Engine:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("policy", POLICY)
        kwargs.setdefault("retry_policy", RETRY)
        kwargs.setdefault("rng", random.Random(SEED))
        kwargs.setdefault("shutdown_grace_s", 0.0)
        engine = Engine(**kwargs)
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop()


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
