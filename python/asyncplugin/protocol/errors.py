"""The package's exceptions, and the Pythonic error envelope `PluginError`.

One root type, `AsyncPluginError`; each subclass carries the gRPC status code it maps to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import grpc

from asyncplugin.v1 import error_pb2

from .limits import ERROR_MAX_DEPTH
from .rules import Rule


class AsyncPluginError(Exception):
    """Root of every exception asyncplugin raises."""

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN


class ProtocolViolation(AsyncPluginError):
    """A message broke a named protocol rule (see plugin.proto, "Protocol rules").

    Attributes:
        rule: the rule broken, such as Rule.RUNNING_WITHOUT_REMOTE_STATUS_INPUT (a str).
        field: the dotted path of the offending field, such as "status.remote_status_input".

    Raises:
        ValueError: `rule` is not a protocol rule (a violation always names a real one).
    """

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, rule: Rule, message: str, *, field: str = "") -> None:
        self.rule = Rule(rule)
        super().__init__(f"{self.rule}: {message}")
        self.field = field
        self.detail = message


class PluginError(AsyncPluginError):
    """The error envelope: raise it from a plugin to fail the task (state FAILED).

    Example:
        raise PluginError(message="The audio file could not be decoded.",
                          suggestion="Upload a WAV or MP3 file.",
                          code="UNSUPPORTED_AUDIO_FORMAT", error=exc)

    Args:
        message: brief, actionable message for the end user (required, non-empty).
        internal_message: detail for operators; not meant for end users.
        suggestion: what the end user could do about it.
        code: machine-readable UPPER_SNAKE_CASE reason.
        rpc_code: the gRPC status code that classifies the error, if any.
        domain: the logical domain that defines `code`.
        metadata: structured string details.
        error: the wrapped cause: a PluginError (nested envelope), any other exception (carried
            as its message), or a plain string.
    """

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(
        self,
        *,
        message: str,
        internal_message: str = "",
        suggestion: str = "",
        code: str = "",
        rpc_code: grpc.StatusCode | None = None,
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        error: BaseException | str | None = None,
    ) -> None:
        if not message:
            raise ValueError("PluginError needs a non-empty message")
        super().__init__(message)
        self.message = message
        self.internal_message = internal_message
        self.suggestion = suggestion
        self.code = code
        self.rpc_code = rpc_code
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.error = error
        if isinstance(error, BaseException) and self.__cause__ is None:
            self.__cause__ = error

    def __repr__(self) -> str:
        return f"PluginError(message={self.message!r}, code={self.code!r})"

    def to_proto(self) -> error_pb2.Error:
        """Encodes this envelope (and its wrapped chain, up to the depth limit) as an Error."""
        return _to_proto(self, 1)

    @classmethod
    def from_proto(cls, message: error_pb2.Error) -> PluginError:
        """Decodes an Error envelope. An empty `message` is read as "(no message)"."""
        wrapped: PluginError | str | None = None
        which = message.WhichOneof("wrapped")
        if which == "wrapped_error":
            wrapped = cls.from_proto(message.wrapped_error)
        elif which == "wrapped_message":
            wrapped = message.wrapped_message
        return cls(
            message=message.message or "(no message)",
            internal_message=message.internal_message,
            suggestion=message.suggestion,
            code=message.code,
            rpc_code=_code_from_int(message.rpc_code),
            domain=message.domain,
            metadata=dict(message.metadata),
            error=wrapped,
        )


def _to_proto(error: PluginError, depth: int) -> error_pb2.Error:
    out = error_pb2.Error(
        message=error.message,
        internal_message=error.internal_message,
        suggestion=error.suggestion,
        code=error.code,
        rpc_code=error.rpc_code.value[0] if error.rpc_code is not None else 0,
        domain=error.domain,
        metadata=error.metadata,
    )
    cause = error.error
    if isinstance(cause, PluginError) and depth < ERROR_MAX_DEPTH:
        out.wrapped_error.CopyFrom(_to_proto(cause, depth + 1))
    elif cause is not None:
        out.wrapped_message = _describe(cause)
    return out


def _describe(cause: BaseException | str) -> str:
    if isinstance(cause, str):
        return cause
    text = str(cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


_CODES_BY_INT: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def _code_from_int(value: int) -> grpc.StatusCode | None:
    if value == 0:
        return None
    return _CODES_BY_INT.get(value, grpc.StatusCode.UNKNOWN)
