"""The engine's exceptions and the error codes it writes into the envelopes of tasks it fails.

Engine error codes (`Error.code` of a task the engine failed itself; domain
"engine.asyncplugin.v1"):

| code | when | rpc_code |
| --- | --- | --- |
| PROTOCOL_VIOLATION | the answer broke a protocol rule, named in `metadata["rule"]` | INTERNAL |
| DEADLINE_EXCEEDED | the task's overall deadline passed | DEADLINE_EXCEEDED |
| MAX_CHECKS_EXCEEDED | still RUNNING after the policy's `max_checks` | ABORTED |
| UNAVAILABLE | transport retries ran out on UNAVAILABLE (plugin down) | UNAVAILABLE |
| CHECK_TIMEOUT | transport retries ran out on calls over `check_timeout_s` | DEADLINE_EXCEEDED |
| MESSAGE_TOO_LARGE | a request or answer exceeded the message size limit | RESOURCE_EXHAUSTED |
| UNIMPLEMENTED | the plugin does not serve the method (named) | UNIMPLEMENTED |
| NOT_A_GRPC_ENDPOINT | the target does not speak gRPC (HTTP/1, junk) | UNAVAILABLE |
| CANCELLED | transport retries ran out on calls the server cancelled unasked | CANCELLED |
| INSECURE_TARGET | plaintext to a non-loopback target, not allowed | FAILED_PRECONDITION |
| TLS_HANDSHAKE_FAILED | the plugin's certificate is untrusted or for another name | UNAVAILABLE |
| UNAUTHENTICATED | the plugin refused the engine's bearer token (not retried) | UNAUTHENTICATED |
| ENGINE_INTERNAL | a bug in the engine while handling this task (logged) | INTERNAL |

Any other gRPC error a plugin raises fails the task with its google.rpc.Status mapped into the
envelope (`asyncplugin.protocol.status_to_error`): the plugin's own code when it sent rich
details, else the gRPC code's name (e.g. "PERMISSION_DENIED") and the status details.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Final

import grpc

from asyncplugin.protocol import AsyncPluginError, limits
from asyncplugin.protocol.text import truncate
from asyncplugin.v1 import error_pb2

__all__ = [
    "ENGINE_DOMAIN",
    "AmbiguousTaskId",
    "EngineClosed",
    "EngineCode",
    "EngineError",
    "LeaseLost",
    "RequestIdConflict",
    "StoreError",
    "TaskNotFound",
    "TaskStateError",
    "WaitTimeout",
    "engine_error",
]

ENGINE_DOMAIN: Final = "engine.asyncplugin.v1"


class EngineCode(enum.StrEnum):
    """The `Error.code` of a task the engine failed itself (domain "engine.asyncplugin.v1").

    Each code carries the gRPC status code written to the envelope's `rpc_code` (`rpc_code`).
    """

    PROTOCOL_VIOLATION = "PROTOCOL_VIOLATION"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    MAX_CHECKS_EXCEEDED = "MAX_CHECKS_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    CHECK_TIMEOUT = "CHECK_TIMEOUT"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    NOT_A_GRPC_ENDPOINT = "NOT_A_GRPC_ENDPOINT"
    CANCELLED = "CANCELLED"
    INSECURE_TARGET = "INSECURE_TARGET"
    TLS_HANDSHAKE_FAILED = "TLS_HANDSHAKE_FAILED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    ENGINE_INTERNAL = "ENGINE_INTERNAL"

    @property
    def rpc_code(self) -> grpc.StatusCode:
        """The gRPC status code that classifies this failure."""
        return _RPC_CODES[self]


_RPC_CODES: Final[Mapping[EngineCode, grpc.StatusCode]] = {
    EngineCode.PROTOCOL_VIOLATION: grpc.StatusCode.INTERNAL,
    EngineCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    EngineCode.MAX_CHECKS_EXCEEDED: grpc.StatusCode.ABORTED,
    EngineCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    EngineCode.CHECK_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    EngineCode.MESSAGE_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    EngineCode.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    EngineCode.NOT_A_GRPC_ENDPOINT: grpc.StatusCode.UNAVAILABLE,
    EngineCode.CANCELLED: grpc.StatusCode.CANCELLED,
    EngineCode.INSECURE_TARGET: grpc.StatusCode.FAILED_PRECONDITION,
    EngineCode.TLS_HANDSHAKE_FAILED: grpc.StatusCode.UNAVAILABLE,
    EngineCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    EngineCode.ENGINE_INTERNAL: grpc.StatusCode.INTERNAL,
}


class EngineError(AsyncPluginError):
    """Root of the errors the engine raises to its caller."""


class TaskNotFound(EngineError, KeyError):
    """No task with this id is in the engine's store."""

    grpc_code = grpc.StatusCode.NOT_FOUND

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}")
        self.task_id = task_id

    def __str__(self) -> str:
        # KeyError quotes its argument; this error's message is already a sentence.
        return str(self.args[0])


class AmbiguousTaskId(EngineError, ValueError):
    """A task id prefix matches more than one task; the message names the candidates."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, prefix: str, candidates: Sequence[str], *, more: bool = False) -> None:
        shown = ", ".join(candidates)
        if more:
            shown += ", ..."
        super().__init__(
            f"task id prefix {prefix!r} matches {'more than ' if more else ''}"
            f"{len(candidates)} tasks: {shown}; give more characters"
        )
        self.prefix = prefix
        self.candidates = tuple(candidates)


class TaskStateError(EngineError):
    """The task is in a state the call cannot act on (the message names the state)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, task_id: str, state_name: str, detail: str) -> None:
        super().__init__(f"task {task_id} is {state_name}: {detail}")
        self.task_id = task_id
        self.state_name = state_name


class RequestIdConflict(EngineError):
    """A submit reused a request id of an earlier task with different parameters."""

    grpc_code = grpc.StatusCode.ALREADY_EXISTS

    def __init__(self, request_id: str, task_id: str, differing: Sequence[str]) -> None:
        super().__init__(
            f"request id {request_id!r} was already used for task {task_id} with a different "
            f"{', '.join(differing)}; use a new request id for a new task"
        )
        self.request_id = request_id
        self.task_id = task_id


class WaitTimeout(EngineError, TimeoutError):
    """`Engine.wait` ran out of time before the task finished (the task goes on)."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED

    def __init__(self, task_id: str, timeout_s: float) -> None:
        super().__init__(f"task {task_id} did not finish within {timeout_s:g} s")
        self.task_id = task_id
        self.timeout_s = timeout_s


class EngineClosed(EngineError):
    """The engine is not running (use `async with Engine(...)` or `await engine.start()`)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class StoreError(EngineError):
    """The task store cannot be used (for example a schema written by a newer version)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class LeaseLost(EngineError):
    """A worker's write about a task was refused: another worker holds the task's lease now.

    Raised by a shared store (several engine workers on one database) when the lease token a
    write carries is no longer the task's: this worker paused or lost its connection past the
    lease's expiry and another worker took the task over. Nothing was written; the task's record
    is the new holder's. The engine drops the task and goes on with its others.
    """

    grpc_code = grpc.StatusCode.ABORTED

    def __init__(self, task_id: str, message: str) -> None:
        super().__init__(f"task {task_id}: {message}")
        self.task_id = task_id


def engine_error(
    code: EngineCode | grpc.StatusCode,
    message: str,
    *,
    internal_message: str = "",
    suggestion: str = "",
    metadata: Mapping[str, str] | None = None,
    wrapped_message: str = "",
) -> error_pb2.Error:
    """Builds the error envelope of a task the engine fails itself (texts cut to their limits).

    `code` is an engine code (its own gRPC code goes to `rpc_code`), or the gRPC code of a
    failed call that no engine code describes (its name becomes the envelope's code).
    """
    rpc_code = code.rpc_code if isinstance(code, EngineCode) else code
    error = error_pb2.Error(
        message=truncate(message, limits.TEXT_MAX_BYTES),
        internal_message=truncate(internal_message, limits.DETAIL_MAX_BYTES),
        suggestion=truncate(suggestion, limits.TEXT_MAX_BYTES),
        code=code if isinstance(code, EngineCode) else code.name,
        rpc_code=rpc_code.value[0],
        domain=ENGINE_DOMAIN,
        metadata=dict(metadata or {}),
    )
    if wrapped_message:
        error.wrapped_message = truncate(wrapped_message, limits.DETAIL_MAX_BYTES)
    return error
