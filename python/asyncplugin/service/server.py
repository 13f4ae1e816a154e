"""The engine daemon's gRPC server: EngineService and google.longrunning.Operations over one
Engine, with health, reflection, TLS, bearer tokens and a graceful stop.

The security mechanisms are the plugin server's, shared through `asyncplugin.protocol`
(`server_auth`, `server_security`): the same bearer token interceptor (constant-time comparison,
several tokens for rotation, never logged, refusals logged without flooding), the same
`ServerSecurity` for TLS and mutual TLS, and the same rule that plaintext is served only on
loopback unless `allow_insecure`. CompleteTask and UpdateTask need no bearer token: a plugin, or the
webhook of the remote system it wraps, proves itself with the task's completion token instead.

Start order: bind (so the real port is known and a taken port fails before anything else),
start the engine (open and claim the store, resume unfinished tasks; the plugins' calls carry
the bound address for push completion), announce the address in the store's claim, then serve.
Stop order: health NOT_SERVING and open watches ended (clients reconnect), in-flight calls get
the grace period, then the engine stops (its own calls in flight get its grace) and the store
is released.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final

from grpc import aio

from asyncplugin.engine import Engine
from asyncplugin.engine.v1 import engine_pb2, engine_pb2_grpc
from asyncplugin.protocol.grpc_serving import (
    add_health_and_reflection,
    bind,
    server_options,
    set_serving,
)
from asyncplugin.protocol.server_auth import AUTH_EXEMPT_PREFIXES, BearerTokenInterceptor
from asyncplugin.protocol.server_security import ServerSecurity, check_bind, format_address

from .operations import OperationsServicer, add_to_server
from .requests import Limits
from .servicer import EngineServicer
from .tokens import CompletionTokens

__all__ = ["ENGINE_SERVICE", "OPERATIONS_SERVICE", "EngineServer"]

_log = logging.getLogger(__name__)

ENGINE_SERVICE: Final = engine_pb2.DESCRIPTOR.services_by_name["EngineService"].full_name
OPERATIONS_SERVICE: Final = "google.longrunning.Operations"
_TOKEN_AUTHORIZED: Final = (
    f"/{ENGINE_SERVICE}/CompleteTask",
    f"/{ENGINE_SERVICE}/UpdateTask",
)
_WILDCARDS: Final = ("0.0.0.0", "::", "[::]", "")


class EngineServer:
    """Serves one Engine (which it starts and stops) over gRPC.

    Args:
        engine: the engine to serve; `start` starts it, `stop` stops it.
        host: the address to listen on ("127.0.0.1" keeps the daemon local).
        port: the port; 0 picks a free one (read it from `start()`).
        security: TLS (and mutual TLS) settings (`ServerSecurity`); None serves plaintext.
        auth_tokens: bearer tokens accepted from clients (empty: no token needed).
        allow_insecure: allow plaintext on a non-loopback host.
        completion: completion tokens; with it, plugins get the engine's address and a token
            for their task in every call. Its address defaults to the bound address.
        advertise_address: the address plugins should use to reach the daemon (needed when
            listening on a wildcard address).
        limits: size limits of submitted tasks.
        max_message_bytes: the largest message received or sent.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        security: ServerSecurity | None = None,
        auth_tokens: Iterable[str] = (),
        allow_insecure: bool = False,
        completion: CompletionTokens | None = None,
        advertise_address: str | None = None,
        limits: Limits | None = None,
        max_message_bytes: int = 8 * 1024 * 1024,
        grpc_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        check_bind(host, security=security, allow_insecure=allow_insecure)
        if completion is not None and advertise_address is None and host in _WILDCARDS:
            raise ValueError(
                f"listening on {host or 'every address'}, the engine cannot tell plugins where "
                "to reach it: give the advertised address (--advertise-address HOST:PORT)"
            )
        tokens = tuple(auth_tokens)
        self._auth = (
            BearerTokenInterceptor(
                tokens, exempt_prefixes=(*AUTH_EXEMPT_PREFIXES, *_TOKEN_AUTHORIZED)
            )
            if tokens
            else None
        )
        self._interceptors: list[aio.ServerInterceptor] = (
            [self._auth] if self._auth is not None else []
        )
        self.engine = engine
        self.host = host
        self.port = port
        self._security = security
        self._completion = completion
        self._advertise = advertise_address
        self.servicer = EngineServicer(engine, tokens=completion, limits=limits)
        self._operations = OperationsServicer(engine)
        self._options = server_options(max_message_bytes=max_message_bytes, extra=grpc_options)
        self._server: aio.Server | None = None
        self._health: Any = None

    @property
    def address(self) -> str:
        """ "host:port" the server listens on (the real port once started)."""
        return format_address(self.host, self.port)

    @property
    def security(self) -> str:
        """How calls are protected, for logs (never a secret)."""
        parts = [self._security.describe() if self._security is not None else "plaintext"]
        parts.append("bearer token" if self._interceptors else "no token")
        parts.append("push completion" if self._completion is not None else "no push completion")
        return ", ".join(parts)

    async def start(self) -> int:
        """Binds, starts the engine (resuming its tasks), and serves; returns the port.

        Raises:
            BindError: the address cannot be bound. StoreError: the store cannot be opened or
            another engine holds it.
        """
        if self._server is not None:
            raise RuntimeError("the server is already started")
        server = aio.server(options=self._options, interceptors=self._interceptors)
        engine_pb2_grpc.add_EngineServiceServicer_to_server(self.servicer, server)
        add_to_server(self._operations, server)
        self._health = add_health_and_reflection(server, (ENGINE_SERVICE, OPERATIONS_SERVICE))
        self.port = bind(server, self.host, self.port, self._security)
        if self._completion is not None:
            self._completion.address = self._advertise or self.address
        try:
            await self.engine.start()
        except BaseException:
            await server.stop(None)
            raise
        await self.engine.store.announce(f"engine-address={self.address}")
        await server.start()
        self._server = server
        await set_serving(self._health, (ENGINE_SERVICE, OPERATIONS_SERVICE))
        _log.info("engine serving on %s (%s)", self.address, self.security)
        return self.port

    async def stop(self, grace_s: float | None = 10.0) -> None:
        """Stops serving (in-flight calls get `grace_s`), then stops the engine."""
        server, self._server = self._server, None
        if server is None:
            return
        await self._health.enter_graceful_shutdown()
        self.servicer.close()
        _log.info("stopping the engine service on %s (grace %s s)", self.address, grace_s)
        try:
            await server.stop(grace_s)
        finally:
            if self._auth is not None:
                self._auth.refusals.flush()
            await self.engine.stop()

    async def wait_for_termination(self) -> None:
        """Waits until the server has stopped."""
        if self._server is not None:
            await self._server.wait_for_termination()
