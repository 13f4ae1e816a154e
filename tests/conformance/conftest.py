"""Fixtures: the Node.js conformance plugin as a subprocess; Python plugins served in-process."""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import asyncio
import select
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from asyncplugin.plugin import AsyncPlugin, PluginServer

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "node"
NODE_SERVER = NODE_DIR / "dist" / "server.js"
START_TIMEOUT_S = 20.0
BUILD_TIMEOUT_S = 180.0


def _node_unavailable() -> str | None:
    """Why the Node plugin cannot run here, or None (building dist/ first if it is stale)."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (NODE_DIR / "node_modules").is_dir():
        return "node/node_modules is missing: run 'make node' (npm ci) first"
    built = NODE_SERVER.stat().st_mtime if NODE_SERVER.exists() else 0.0
    if any(source.stat().st_mtime > built for source in (NODE_DIR / "src").glob("*.ts")):
        subprocess.run(
            ["npm", "run", "--silent", "build"],
            cwd=NODE_DIR,
            check=True,
            timeout=BUILD_TIMEOUT_S,
            stdout=subprocess.DEVNULL,
        )
    return None


REQUIRE_NODE_ENV = "ASYNCPLUGIN_REQUIRE_NODE"
"""Set to 1 by `make pytest` / `make test` (which install node_modules first): there a missing
Node side fails the run instead of skipping its tests."""


def require_node() -> None:
    """Skips the calling test when Node or its dependencies are missing (fails it instead when
    $ASYNCPLUGIN_REQUIRE_NODE is 1); builds dist/ when stale."""
    reason = _node_unavailable()
    if reason is None:
        return
    if os.environ.get(REQUIRE_NODE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_NODE_ENV}=1: the Node tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node_ready() -> None:
    """The Node side is ready (see `require_node`)."""
    require_node()


def read_first_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The first stdout line of `process`, waiting at most `timeout_s`."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    if not ready:
        raise TimeoutError(f"no output from {process.args!r} within {timeout_s:g} s")
    return process.stdout.readline()


def stop_process(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it does not exit within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def node_plugin(*flags: str) -> Iterator[str]:
    """`node dist/server.js --port 0 --plugin conformance FLAGS`; yields host:port."""
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            ["node", str(NODE_SERVER), "--port", "0", "--plugin", "conformance", *flags],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            line = read_first_line(process, START_TIMEOUT_S)
            if not line.startswith("listening on "):
                stop_process(process)
                stderr.seek(0)
                raise RuntimeError(f"the Node plugin did not start: {line!r} {stderr.read()}")
            yield line.split()[-1]
        finally:
            stop_process(process)


@pytest.fixture(scope="module")
def node_target(node_ready: None) -> Iterator[str]:
    """The Node conformance plugin, unbroken; yields host:port."""
    with node_plugin() as target:
        yield target


@contextmanager
def plugin_in_thread(plugin: AsyncPlugin[Any, Any]) -> Iterator[str]:
    """Serves `plugin` on 127.0.0.1:0 from an event loop in its own thread (for code that runs
    `asyncio.run` itself, like the command line); yields host:port."""
    started = threading.Event()
    address: list[str] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        server = PluginServer(plugin, host="127.0.0.1", port=0)
        port = await server.start()
        address.append(f"127.0.0.1:{port}")
        started.set()
        await stop.wait()
        await server.stop(0)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert started.wait(START_TIMEOUT_S), "the plugin server did not start"
        yield address[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()
