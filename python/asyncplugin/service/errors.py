"""How the service refuses a call: one gRPC status per kind of problem, the field named.

Every refusal carries a one-line message (naming the field, the task's state, or the candidate
task ids) and, for bad input, a google.rpc.BadRequest detail with the field, so programs can
point at it. Exceptions of the engine carry their own gRPC code (`AsyncPluginError.grpc_code`);
anything else unexpected is INTERNAL and logged with its traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from asyncplugin.engine import EngineClosed, StoreError
from asyncplugin.protocol import AsyncPluginError, ProtocolViolation

__all__ = ["BadRequest", "abort", "refusing", "refusing_stream"]

_log = logging.getLogger(__name__)

_DETAILS_KEY: Final = "grpc-status-details-bin"

_T = TypeVar("_T")


class BadRequest(AsyncPluginError):
    """A request field is malformed (INVALID_ARGUMENT) or too large (RESOURCE_EXHAUSTED)."""

    def __init__(
        self,
        field: str,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.code = code


async def abort(context: aio.ServicerContext[Any, Any], err: BaseException) -> NoReturn:
    """Ends the call with the status `err` maps to (see the module docstring)."""
    field = ""
    if isinstance(err, BadRequest):
        code, field = err.code, err.field
    elif isinstance(err, ProtocolViolation):
        code, field = grpc.StatusCode.INVALID_ARGUMENT, err.field
    elif isinstance(err, EngineClosed):
        code = grpc.StatusCode.UNAVAILABLE  # the daemon is stopping: a client retries elsewhere
    elif isinstance(err, StoreError):
        code = grpc.StatusCode.UNAVAILABLE
        _log.error("the task store failed: %s", err)
    elif isinstance(err, AsyncPluginError):
        code = err.grpc_code
    elif isinstance(err, ValueError | TypeError):
        code = grpc.StatusCode.INVALID_ARGUMENT
    else:
        _log.error("internal error in the engine service", exc_info=err)
        code = grpc.StatusCode.INTERNAL
        err = RuntimeError("internal error in the engine service (logged)")
    message = str(err)
    status = status_pb2.Status(code=code.value[0], message=message)
    if field:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
                ]
            )
        )
        status.details.append(detail)
    await context.abort(
        code, message, trailing_metadata=((_DETAILS_KEY, status.SerializeToString()),)
    )
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def refusing(
    method: Callable[[Any, Any, aio.ServicerContext[Any, Any]], Awaitable[_T]],
) -> Callable[[Any, Any, aio.ServicerContext[Any, Any]], Awaitable[_T]]:
    """Decorates a unary servicer method: any exception becomes the status it maps to."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: aio.ServicerContext[Any, Any]) -> _T:
        try:
            return await method(self, request, context)
        except Exception as err:
            if _is_abort(err):
                raise
            await abort(context, err)

    return wrapper


def refusing_stream(
    method: Callable[[Any, Any, aio.ServicerContext[Any, Any]], AsyncIterator[_T]],
) -> Callable[[Any, Any, aio.ServicerContext[Any, Any]], AsyncIterator[_T]]:
    """Decorates a server-streaming servicer method like `refusing`."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[_T]:
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as err:
            if _is_abort(err):
                raise
            await abort(context, err)

    return wrapper


def _is_abort(err: BaseException) -> bool:
    """True for the exception grpc.aio raises from `context.abort` (it must propagate)."""
    return isinstance(err, aio.AbortError)
