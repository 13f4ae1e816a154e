"""What the console asks plugins directly: payload types (server reflection) and gRPC health.

Both are cached briefly per target, so a page view does not call a plugin each time, and both
are bounded by a short timeout, so an unreachable plugin slows a page by at most that long.
Reflection uses a blocking channel (grpc's reflection descriptor database needs one) and runs in
a worker thread, off the event loop the engine runs on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from asyncplugin.engine.reflection import GENERIC, PayloadTypes, resolve

__all__ = ["CredentialsFor", "Health", "PluginProbes", "ResolvedTypes"]

CredentialsFor = Callable[[str], grpc.ChannelCredentials | None]
"""The channel credentials for a target (None: plaintext)."""


@dataclass(frozen=True, slots=True)
class ResolvedTypes:
    """A method's payload types, and whether server reflection told them."""

    types: PayloadTypes
    via_reflection: bool


@dataclass(frozen=True, slots=True)
class Health:
    """A plugin's answer to grpc.health.v1.Health/Check: SERVING, NOT_SERVING, ... or why
    there is none (NO_HEALTH_SERVICE, UNREACHABLE, ...)."""

    status: str
    detail: str = ""


class PluginProbes:
    """Asks plugins for their payload types and health, with short timeouts and caching.

    Args:
        credentials: channel credentials per target (default: plaintext to every target).
        timeout_s: the longest a probe waits for a plugin.
        types_ttl_s: how long resolved payload types are reused.
        health_ttl_s: how long a health answer is reused.
    """

    def __init__(
        self,
        *,
        credentials: CredentialsFor | None = None,
        timeout_s: float = 2.0,
        types_ttl_s: float = 60.0,
        health_ttl_s: float = 5.0,
    ) -> None:
        self._credentials = credentials or (lambda _target: None)
        self._timeout_s = timeout_s
        self._types_ttl_s = types_ttl_s
        self._health_ttl_s = health_ttl_s
        self._types: dict[tuple[str, str], tuple[float, ResolvedTypes]] = {}
        self._health: dict[str, tuple[float, Health]] = {}
        self._pending: dict[tuple[str, str], asyncio.Future[ResolvedTypes]] = {}

    async def payload_types(self, target: str, method: str) -> ResolvedTypes:
        """The method's payload types (the generic Struct when reflection cannot tell them)."""
        key = (target, method)
        cached = self._types.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._types_ttl_s:
            return cached[1]
        pending = self._pending.get(key)
        if pending is not None:  # one reflection lookup at a time per method
            return await asyncio.shield(pending)
        future: asyncio.Future[ResolvedTypes] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            types = await asyncio.to_thread(
                resolve,
                target,
                method,
                timeout_s=self._timeout_s,
                credentials=self._credentials(target),
            )
            resolved = ResolvedTypes(types, via_reflection=types is not GENERIC)
            self._types[key] = (time.monotonic(), resolved)
            future.set_result(resolved)
            return resolved
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it unretrieved
            raise
        finally:
            del self._pending[key]

    async def health(self, target: str) -> Health:
        """The plugin's overall health (service "")."""
        cached = self._health.get(target)
        if cached is not None and time.monotonic() - cached[0] < self._health_ttl_s:
            return cached[1]
        result = await self._check(target)
        self._health[target] = (time.monotonic(), result)
        return result

    async def _check(self, target: str) -> Health:
        credentials = self._credentials(target)
        channel = (
            aio.secure_channel(target, credentials)
            if credentials is not None
            else aio.insecure_channel(target)
        )
        try:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            answer = await stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=self._timeout_s
            )
            name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            return Health(name)
        except aio.AioRpcError as err:
            code = err.code()
            if code is grpc.StatusCode.UNIMPLEMENTED:
                return Health("NO_HEALTH_SERVICE", "the plugin serves no grpc.health.v1.Health")
            if code is grpc.StatusCode.UNAVAILABLE:
                return Health("UNREACHABLE", err.details() or "")
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                return Health("NO_ANSWER", f"no answer within {self._timeout_s:g}s")
            return Health(code.name, err.details() or "")
        finally:
            await channel.close()
