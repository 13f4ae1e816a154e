"""Fixtures for the console tests: an engine on a fake clock, test plugins, and the console
served on 127.0.0.1:0 with an HTTP client that keeps its cookies."""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from asyncplugin.engine import Engine, FakeClock, TaskRecord
from asyncplugin.protocol import TaskState
from asyncplugin.service.console import ConsoleServer, start_console
from tests.engine.conftest import MakeEngine, Serve, clock, make_engine, serve  # noqa: F401
from tests.security.conftest import pki  # noqa: F401


@dataclass
class Browserless:
    """A console and an HTTP client for it (cookies kept, redirects not followed)."""

    server: ConsoleServer
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        """The console's base URL."""
        return self.server.url

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        """GET a path; returns (status, body)."""
        async with self.http.get(self.url + path, allow_redirects=False, **kwargs) as response:
            return response.status, await response.text()

    async def post(self, path: str, data: dict[str, str], **kwargs: Any) -> tuple[int, str]:
        """POST a form; returns (status, body)."""
        async with self.http.post(
            self.url + path, data=data, allow_redirects=False, **kwargs
        ) as response:
            return response.status, await response.text()


StartConsole = Callable[..., Awaitable[Browserless]]


@pytest.fixture
async def open_console() -> AsyncIterator[StartConsole]:
    """Starts consoles over engines (with `start_console` options); stops them after the test."""
    opened: list[Browserless] = []

    async def start(engine: Engine, *, client_ssl: Any = None, **options: Any) -> Browserless:
        server = await start_console(engine, host="127.0.0.1", port=0, **options)
        jar = aiohttp.CookieJar(unsafe=True)  # the console is on an IP address
        connector = aiohttp.TCPConnector(ssl=client_ssl if client_ssl is not None else False)
        client = Browserless(server, aiohttp.ClientSession(cookie_jar=jar, connector=connector))
        opened.append(client)
        return client

    yield start
    for client in opened:
        await client.http.close()
        await client.server.stop()


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, "no CSRF token on the page"
    return match.group(1)


def count_marks(html: str) -> int:
    """Timeline marks (one per call) on a task page."""
    return len(re.findall(r'<circle class="mark ', html))


def manual_clock() -> FakeClock:
    """A fake clock that moves only when a test moves it: a RUNNING task stays RUNNING."""
    return FakeClock(auto_advance=False)


async def reach(engine: Engine, task_id: str, state: TaskState) -> TaskRecord:
    """Waits (on the engine's real work, never on simulated time) until the task is in `state`."""
    for _ in range(2000):
        record = await engine.get(task_id)
        if record.state is state:
            return record
        await asyncio.sleep(0.005)
    raise AssertionError(f"task {task_id} is {record.state.name}, never {state.name}")


async def run_to_end(engine: Engine, manual: FakeClock, task_id: str) -> TaskRecord:
    """Moves a manual clock to each next check of the task until the task ends."""
    for _ in range(4000):
        record = await engine.get(task_id)
        if record.is_terminal:
            return record
        if record.next_check_time is not None and record.next_check_time > manual.now():
            manual.advance_to(record.next_check_time)
        await asyncio.sleep(0.005)
    raise AssertionError(f"task {task_id} did not end")
