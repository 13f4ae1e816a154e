"""Serving the console on the engine's own event loop: `start_console` and `ConsoleServer`.

async with Engine(store=SqliteStore("tasks.db")) as engine:
    server = await start_console(engine, host="127.0.0.1", port=8080)
    print("console at", server.url)
    ...
    await server.stop()
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from asyncplugin.engine import Engine

from .app import Console
from .probes import PluginProbes
from .security import ConsoleSecurity, check_bind
from .throttle import LoginThrottle

__all__ = ["ConsoleServer", "start_console"]

_log = logging.getLogger("asyncplugin.service.console")


@dataclass(slots=True)
class ConsoleServer:
    """A running console: its address and the runner that stops it."""

    runner: web.AppRunner
    host: str
    port: int
    tls: bool

    @property
    def url(self) -> str:
        """The console's base URL, e.g. "http://127.0.0.1:8080"."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def stop(self) -> None:
        """Ends the live streams, stops listening and lets requests in flight finish."""
        await self.runner.cleanup()


async def start_console(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    security: ConsoleSecurity | None = None,
    probes: PluginProbes | None = None,
    stats_window_s: float = 3600.0,
    shutdown_timeout_s: float = 5.0,
    login_throttle: LoginThrottle | None = None,
) -> ConsoleServer:
    """Serves the web console for `engine` in the running event loop.

    Args:
        engine: a started engine; the console reads and cancels its tasks.
        host: the address to listen on; without TLS (and tokens) only a loopback address.
        port: the TCP port (0: any free port; see `ConsoleServer.port`).
        security: TLS certificate and key, and the bearer tokens of the login form.
        probes: how plugins are asked for payload types and health (TLS to plugins).
        stats_window_s: the plugins page counts calls started within this many seconds.
        shutdown_timeout_s: how long `stop` waits for requests in flight.
        login_throttle: how wrong login tokens are throttled per client address (default:
            5 a minute).

    Raises:
        ConsoleConfigError: a non-loopback host without TLS or tokens, or unreadable TLS files.
        OSError: the port cannot be bound (for example it is taken).
    """
    security = security or ConsoleSecurity()
    check_bind(host, security)
    ssl_context = security.ssl_context()
    console = Console(
        engine,
        security=security,
        probes=probes,
        stats_window_s=stats_window_s,
        login_throttle=login_throttle,
    )
    runner = web.AppRunner(
        console.app(), shutdown_timeout=shutdown_timeout_s, access_log=_log, handle_signals=False
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = _bound_port(runner, port)
    server = ConsoleServer(runner=runner, host=host, port=bound, tls=ssl_context is not None)
    _log.info("console at %s", server.url)
    return server


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked
