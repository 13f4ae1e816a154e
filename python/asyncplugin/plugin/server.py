"""The plugin's gRPC server: the plugin's RPC plus health, reflection and graceful shutdown.

Every server binds explicitly (SO_REUSEPORT off, so a taken port fails loudly instead of being
silently shared), enforces a maximum message size, serves grpc.health.v1 (SERVING while up,
NOT_SERVING from the start of shutdown) and server reflection, and drains in-flight calls within
a grace period when stopped (the engine daemon's server does the same, through
`asyncplugin.protocol.grpc_serving`).

Security: TLS with a server certificate, mutual TLS (client certificates verified against a CA;
`ServerSecurity`, see `security.py`), and bearer tokens checked on every call (see `auth.py`; the
health service is exempt). A server without TLS may listen only on a loopback address unless
`allow_insecure=True` (`security.check_bind`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import grpc

from asyncplugin.protocol import limits
from asyncplugin.protocol.grpc_serving import (
    add_health_and_reflection,
    bind,
    server_options,
    set_serving,
)
from asyncplugin.protocol.server_security import format_address

from .auth import BearerTokenInterceptor
from .base import AsyncPlugin
from .dispatch import PluginDispatcher
from .security import BindError, ServerSecurity, check_bind
from .telemetry import PluginTelemetry

logger = logging.getLogger("asyncplugin.plugin")

DEFAULT_GRACE_S = 10.0
"""How long a stopping server lets in-flight calls finish before cancelling them."""


class PluginServer:
    """Serves one plugin on a grpc.aio server.

    Example:
        server = PluginServer(Transcriber(), port=0)
        port = await server.start()
        ...
        await server.stop(grace_s=10)

    Args:
        plugin: the plugin instance to serve.
        host: the address to listen on; "127.0.0.1" keeps the plugin local, "0.0.0.0" opens it.
        port: the port; 0 picks a free one (read it from `start()` or `port`).
        max_message_bytes: the largest message received or sent.
        security: TLS (and mutual TLS) settings, e.g. `ServerSecurity.from_files(cert_file=...,
            key_file=..., client_ca_file=...)`; None serves plaintext.
        auth_tokens: bearer tokens accepted on every call (a single str is one token); empty
            accepts calls without a token. Several tokens allow rotation. Health needs none.
        allow_insecure: allow plaintext (no TLS) on a non-loopback host; without it such a
            server is refused before anything is bound.
        debug: put tracebacks of unexpected exceptions on the wire (`internal_message`).
        max_workers: threads for plain `def` handlers (None: Python's default).
        grpc_options: extra grpc server options, applied after the SDK's own.
        telemetry: traces, Prometheus metrics and log context for the plugin's calls (see
            `PluginTelemetry`); None: no instrumentation runs.
    """

    def __init__(
        self,
        plugin: AsyncPlugin[Any, Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int = limits.MESSAGE_MAX_BYTES,
        security: ServerSecurity | None = None,
        auth_tokens: Iterable[str] | str = (),
        allow_insecure: bool = False,
        debug: bool = False,
        max_workers: int | None = None,
        grpc_options: Sequence[tuple[str, Any]] = (),
        telemetry: PluginTelemetry | None = None,
    ) -> None:
        check_bind(host, security=security, allow_insecure=allow_insecure)
        tokens = (auth_tokens,) if isinstance(auth_tokens, str) else tuple(auth_tokens)
        self._auth = BearerTokenInterceptor(tokens) if tokens else None
        self._interceptors: list[grpc.aio.ServerInterceptor] = (
            [self._auth] if self._auth is not None else []
        )
        self.plugin = plugin
        self.host = host
        self.port = port
        self._max_message_bytes = max_message_bytes
        self._security = security
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="asyncplugin-handler")
        self._dispatcher = PluginDispatcher(
            plugin,
            debug=debug,
            max_message_bytes=max_message_bytes,
            executor=self._executor,
            telemetry=telemetry,
        )
        self._telemetry = telemetry
        self._options = server_options(max_message_bytes=max_message_bytes, extra=grpc_options)
        self._server: grpc.aio.Server | None = None
        self._health: Any = None

    @property
    def service_name(self) -> str:
        """The full name of the served service, such as "asyncplugin.v1.PluginService"."""
        return self._dispatcher.service_name

    @property
    def security(self) -> str:
        """How calls are protected, for logs: e.g. "TLS, client certificates required, bearer
        token" (never any secret)."""
        tls = self._security.describe() if self._security is not None else "plaintext"
        return f"{tls}, {'bearer token' if self._interceptors else 'no token'}"

    @property
    def address(self) -> str:
        """ "host:port" the server listens on (the real port once started)."""
        return format_address(self.host, self.port)

    async def start(self) -> int:
        """Binds and starts serving; returns the bound port.

        Raises:
            BindError: the address cannot be bound (for example the port is taken).
        """
        if self._server is not None:
            raise RuntimeError("the server is already started")
        interceptors = list(self._interceptors)
        if self._telemetry is not None:
            method = f"/{self.service_name}/{self._dispatcher.method_name}"
            interceptors[:0] = self._telemetry.interceptors(method)
        server = grpc.aio.server(options=self._options, interceptors=interceptors)
        # Registered as well as generic, as generated servicers are: gRPC matches a registered
        # method in its core instead of asking each generic handler in Python on every call.
        # Interceptors (bearer tokens, telemetry) apply to both paths alike.
        server.add_generic_rpc_handlers((self._dispatcher.generic_handler(),))
        server.add_registered_method_handlers(self.service_name, self._dispatcher.method_handlers())
        self._health = add_health_and_reflection(server, (self.service_name,))
        try:
            self.port = bind(server, self.host, self.port, self._security)
        except BindError:
            self._executor.shutdown(wait=False)
            raise
        await server.start()
        self._server = server
        await set_serving(self._health, (self.service_name,))
        logger.info(
            "serving %s (%s) on %s (%s)",
            self.plugin.name,
            self.service_name,
            self.address,
            self.security,
        )
        return self.port

    async def stop(self, grace_s: float | None = DEFAULT_GRACE_S) -> None:
        """Stops serving: health turns NOT_SERVING, new calls are refused, and in-flight calls
        get `grace_s` seconds to finish before they are cancelled (None: cancel at once)."""
        server = self._server
        if server is None:
            return
        await self._health.enter_graceful_shutdown()
        logger.info("stopping %s (grace %s s)", self.address, grace_s)
        await server.stop(grace_s)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._auth is not None:
            self._auth.refusals.flush()

    async def wait_for_termination(self) -> None:
        """Waits until the server has stopped."""
        if self._server is not None:
            await self._server.wait_for_termination()

    async def __aenter__(self) -> PluginServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(None if exc is not None else DEFAULT_GRACE_S)


async def serve(
    plugin: AsyncPlugin[Any, Any] | PluginServer,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    on_started: Callable[[PluginServer], None] | None = None,
) -> None:
    """Serves until SIGTERM or SIGINT, then shuts down gracefully.

    `plugin` is a PluginServer configured as needed (`serve(PluginServer(plugin, port=50051,
    security=...))`), or a plugin, served by a PluginServer with its defaults. After the first
    signal the default signal handlers come back, so a second Ctrl-C stops the process at once.
    """
    server = plugin if isinstance(plugin, PluginServer) else PluginServer(plugin)
    await server.start()
    if on_started is not None:
        on_started(server)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop_requested.set)
    try:
        await stop_requested.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await server.stop(grace_s)
