"""The plugin base class: declares payload types and the RPC it serves, and routes each call.

A plugin answers every call from `run(request)`. The default `run` routes on the request's flags:
`cancel_requested` -> `cancel_work`, `is_status_check` -> `check_status`, otherwise
`initiate_work`. Any of these may be `async def` or plain `def`; plain ones run in a thread pool.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar, get_args, get_origin

import grpc

from asyncplugin.protocol import PluginError, Request, Response, Task, TaskState
from asyncplugin.protocol.methods import GENERIC_METHOD
from asyncplugin.protocol.payload import PayloadType, payload_kind

from .handlers import call_handler, inline

InT = TypeVar("InT")
OutT = TypeVar("OutT")

Reply: TypeAlias = Response[OutT] | OutT
"""What a handler returns: a Response, or the output payload itself (meaning SUCCEEDED)."""


class AsyncPlugin(Generic[InT, OutT]):
    """Base class of a plugin: one unary RPC, answered at once or asynchronously.

    Declare the payload types by parameterising the class (`AsyncPlugin[TranscribeInput,
    Transcript]`) or with the class attributes `input_type` / `output_type`: a generated protobuf
    message class, `dict` for a google.protobuf.Struct payload (the default), or a pydantic v2
    model (a Struct on the wire, validated on the way in; extra `asyncplugin[pydantic]`). A
    typed plugin names the RPC it serves in `rpc_method`, for example
    "/asyncplugin.examples.v1.TranscriberService/Transcribe".

    Implement `initiate_work` (and `check_status` if it ever answers RUNNING), or override `run`
    to route by yourself: a `run` override gets every call, cancel requests included (they are
    status checks with `cancel_requested` set). A handler returns the output payload or
    `Response(data=...)` (SUCCEEDED), `Response(status=Task(state=TaskState.RUNNING,
    remote_status_input={...}))` (check back later), or raises `PluginError` (FAILED).
    """

    input_type: ClassVar[PayloadType] = dict
    output_type: ClassVar[PayloadType] = dict
    rpc_method: ClassVar[str] = GENERIC_METHOD
    """The full path of the RPC served (`asyncplugin.protocol.methods.split_method` checks it)."""
    name: ClassVar[str] = "plugin"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is not AsyncPlugin:
                continue
            for attr, arg in zip(("input_type", "output_type"), get_args(base), strict=True):
                kind = _payload_kind(arg)
                if kind is not None and attr not in cls.__dict__:
                    setattr(cls, attr, kind)

    @inline
    def run(self, request: Request[InT]) -> Reply[OutT] | Awaitable[Reply[OutT]]:
        """Answers one call. The default routes on `cancel_requested` and `is_status_check`."""
        return self._route(request)

    async def _route(self, request: Request[InT]) -> Reply[OutT]:
        if request.cancel_requested:
            handler: Callable[[Request[InT]], Any] = self.cancel_work
        elif request.is_status_check:
            handler = self.check_status
        else:
            handler = self.initiate_work
        result: Reply[OutT] = await call_handler(handler, request)
        return result

    @inline
    def initiate_work(self, request: Request[InT]) -> Reply[OutT] | Awaitable[Reply[OutT]]:
        """Starts new work (`is_status_check` is false). Override it, or override `run`."""
        raise PluginError(
            message=f"The plugin {self.name!r} cannot start work.",
            internal_message=f"{type(self).__name__} implements neither run nor initiate_work",
            code="NOT_IMPLEMENTED",
            rpc_code=grpc.StatusCode.UNIMPLEMENTED,
        )

    @inline
    def check_status(self, request: Request[InT]) -> Reply[OutT] | Awaitable[Reply[OutT]]:
        """Checks on work started earlier (`is_status_check` is true). Override it if
        `initiate_work` ever answers RUNNING."""
        raise PluginError(
            message=f"The plugin {self.name!r} does not support status checks.",
            internal_message=f"{type(self).__name__} does not implement check_status",
            code="STATUS_CHECK_NOT_SUPPORTED",
            rpc_code=grpc.StatusCode.UNIMPLEMENTED,
        )

    @inline
    def cancel_work(self, request: Request[InT]) -> Reply[OutT] | Awaitable[Reply[OutT]]:
        """Stops the work (`cancel_requested` is true). The default just answers CANCELLED."""
        return Response(status=Task(state=TaskState.CANCELLED))


def _payload_kind(arg: Any) -> PayloadType | None:
    """The payload type a Generic argument stands for, or None for a TypeVar or anything else."""
    return payload_kind(arg)


def remote_status_input(request: Request[Any]) -> dict[str, Any]:
    """The `remote_status_input` of the task being checked: what the plugin stashed last time.

    Returns {} on an initiating call (there is no task yet). Same as
    `request.remote_status_input`.
    """
    return request.remote_status_input
