"""What every asyncplugin gRPC server does alike: its options, an explicit bind, health and
reflection.

The plugin server (`asyncplugin.plugin.PluginServer`) and the engine daemon
(`asyncplugin.service.EngineServer`) both:
- turn SO_REUSEPORT off, so a taken port fails loudly instead of being silently shared, and cap
  the message size both ways (`server_options`);
- bind before anything else starts, with TLS when given, and turn gRPC's refusals into a
  `BindError` that names the address (`bind`);
- serve grpc.health.v1 (SERVING while up, NOT_SERVING from the start of a shutdown) and server
  reflection over their own services (`add_health_and_reflection`, `set_serving`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .server_security import BindError, ServerSecurity, format_address

__all__ = ["add_health_and_reflection", "bind", "server_options", "set_serving"]


def server_options(
    *, max_message_bytes: int, extra: Sequence[tuple[str, Any]] = ()
) -> list[tuple[str, Any]]:
    """The grpc server options every server starts from; `extra` comes after (and wins)."""
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *extra,
    ]


def bind(server: aio.Server, host: str, port: int, security: ServerSecurity | None) -> int:
    """Adds the listening port (TLS when `security` is given); returns the port bound.

    Raises:
        BindError: the address is taken, not local, or refused by gRPC (named in the message).
    """
    address = format_address(host, port)
    try:
        if security is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, security.server_credentials())
    except RuntimeError as err:
        raise BindError(f"cannot listen on {address}: {_first_line(err)}") from err
    if bound == 0:
        raise BindError(f"cannot listen on {address}: the address is in use or not local")
    return bound


def add_health_and_reflection(server: aio.Server, services: Iterable[str]) -> Any:
    """Registers grpc.health.v1 and server reflection for `services` (plus the two themselves);
    returns the health servicer (NOT_SERVING until `set_serving`)."""
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return health_servicer


async def set_serving(health_servicer: Any, services: Iterable[str]) -> None:
    """Marks the server as a whole and each of `services` SERVING."""
    for name in (health.OVERALL_HEALTH, *services):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


def _first_line(err: BaseException) -> str:
    return str(err).split(";")[0].splitlines()[0] if str(err) else type(err).__name__
