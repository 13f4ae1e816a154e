"""Minimal test plugins for the engine's integration tests: real grpc.aio servers, no SDK.

Each `PluginServer` serves behaviours at method paths on 127.0.0.1 through a generic handler
that speaks the envelope with the asyncplugin.v1 messages. Every request is decoded and checked
with the protocol rules (`decode_request`), so a test also fails if the engine sends a request
that breaks a rule; the server keeps every request it saw, in order.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio

from asyncplugin.protocol import GENERIC_METHOD, ProtocolViolation, decode_request, dict_to_struct
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2

Answer = plugin_pb2.InvokeResponse | bytes
Behaviour = Callable[[plugin_pb2.InvokeRequest], Awaitable[Answer]]


def running(
    remote: dict[str, Any] | None = None,
    *,
    hint_s: float | None = None,
    message: str = "",
    fraction: float | None = None,
) -> plugin_pb2.InvokeResponse:
    """A RUNNING answer carrying `remote` as remote_status_input ({} when None)."""
    task = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING, status_message=message)
    task.remote_status_input.CopyFrom(dict_to_struct(remote or {}))
    if hint_s is not None:
        task.check_after.FromNanoseconds(round(hint_s * 1e9))
    if fraction is not None:
        task.progress.fraction = fraction
    return plugin_pb2.InvokeResponse(status=task)


def done(data: bytes) -> plugin_pb2.InvokeResponse:
    """A SUCCEEDED answer with `data`."""
    return plugin_pb2.InvokeResponse(data=data)


def failed(error: error_pb2.Error) -> plugin_pb2.InvokeResponse:
    """A FAILED answer carrying `error`."""
    return plugin_pb2.InvokeResponse(
        status=task_pb2.Task(state=task_pb2.TASK_STATE_FAILED, error=error)
    )


def cancelled() -> plugin_pb2.InvokeResponse:
    """A CANCELLED answer (valid only to a cancel request)."""
    return plugin_pb2.InvokeResponse(status=task_pb2.Task(state=task_pb2.TASK_STATE_CANCELLED))


@dataclass
class Job:
    """A plugin job that goes RUNNING on initiation and finishes after `checks` status checks.

    Each RUNNING answer replaces remote_status_input with {"job": key, "step": n}, so the next
    check must echo the new value. `hints` gives a check_after hint per answer (index 0 is the
    initiation's answer). `cancel_answer` is what it answers to a cancel request.
    """

    checks: int = 3
    result: bytes = b"done"
    hints: list[float | None] = field(default_factory=list)
    cancel_answer: Answer = field(default_factory=cancelled)
    forever: bool = False

    async def __call__(self, request: plugin_pb2.InvokeRequest) -> Answer:
        if request.cancel_requested:
            return self.cancel_answer
        step = request.context.check_number
        if request.is_status_check and step >= self.checks and not self.forever:
            return done(self.result)
        hint = self.hints[step] if step < len(self.hints) else None
        remote = {"job": request.context.idempotency_key, "step": step}
        return running(remote, hint_s=hint, message=f"step {step}")


def constant(answer: Answer) -> Behaviour:
    """A behaviour that always gives the same answer."""

    async def behave(request: plugin_pb2.InvokeRequest) -> Answer:
        return answer

    return behave


class PluginServer:
    """A grpc.aio test plugin on 127.0.0.1 (port 0 by default, reusable for a restart)."""

    def __init__(self, behaviours: dict[str, Behaviour] | Behaviour, *, port: int = 0) -> None:
        if not isinstance(behaviours, dict):
            behaviours = {GENERIC_METHOD: behaviours}
        self.behaviours = behaviours
        self.port = port
        self.requests: list[tuple[str, plugin_pb2.InvokeRequest]] = []
        self.metadata: list[dict[str, str | bytes]] = []
        self.bad_requests: list[ProtocolViolation] = []
        self.on_request: Callable[[str, plugin_pb2.InvokeRequest], None] | None = None
        self._server: aio.Server | None = None

    @property
    def target(self) -> str:
        """The "host:port" to submit tasks to."""
        return f"127.0.0.1:{self.port}"

    def calls(self, method: str = GENERIC_METHOD) -> list[plugin_pb2.InvokeRequest]:
        """The requests received on one method, in order."""
        return [request for path, request in self.requests if path == method]

    async def start(self) -> PluginServer:
        """Starts serving (on the same port as before, after a stop)."""
        server = aio.server(options=[("grpc.so_reuseport", 0)])
        handlers: dict[str, dict[str, grpc.RpcMethodHandler[bytes, bytes]]] = {}
        for path, behaviour in self.behaviours.items():
            service, method = path.strip("/").split("/")
            handlers.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
                self._handler(path, behaviour)
            )
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(name, table) for name, table in handlers.items()]
        )
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server
        return self

    async def stop(self, grace_s: float | None = None) -> None:
        """Stops serving; calls in flight get `grace_s` (None: cancelled at once)."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace_s)

    def _handler(
        self, path: str, behaviour: Behaviour
    ) -> Callable[[bytes, aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]:
        async def handle(raw: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
            try:
                request = decode_request(raw)
            except ProtocolViolation as violation:
                self.bad_requests.append(violation)
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(violation))
                raise AssertionError("unreachable") from violation
            self.requests.append((path, request))
            self.metadata.append(dict(context.invocation_metadata() or ()))
            if self.on_request is not None:
                self.on_request(path, request)
            answer = await behaviour(request)
            return answer if isinstance(answer, bytes) else answer.SerializeToString()

        return handle


async def raw_tcp_server(reply: bytes | None) -> tuple[asyncio.Server, str]:
    """A plain TCP server that is not gRPC: it writes `reply` and closes (or just closes)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if reply is not None:
            await reader.read(64)
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"127.0.0.1:{port}"


def unused_target() -> str:
    """An address on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"
