"""Lossless mapping between the Error envelope and google.rpc.Status (see error.proto)."""

from __future__ import annotations

from typing import Final, TypeVar

from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from asyncplugin.v1 import error_pb2

DEFAULT_DOMAIN: Final = "asyncplugin.v1"

_T = TypeVar("_T", bound=Message)


def error_to_status(error: error_pb2.Error) -> status_pb2.Status:
    """Maps an Error envelope to a google.rpc.Status, packing the envelope itself first."""
    status = status_pb2.Status(code=error.rpc_code or code_pb2.UNKNOWN, message=error.message)
    _pack(status, error)
    if error.code:
        _pack(
            status,
            error_details_pb2.ErrorInfo(
                reason=error.code, domain=error.domain or DEFAULT_DOMAIN, metadata=error.metadata
            ),
        )
    if error.suggestion:
        _pack(
            status,
            error_details_pb2.Help(
                links=[error_details_pb2.Help.Link(description=error.suggestion)]
            ),
        )
    if error.internal_message:
        _pack(status, error_details_pb2.DebugInfo(detail=error.internal_message))
    return status


def status_to_error(status: status_pb2.Status) -> error_pb2.Error:
    """Reads a google.rpc.Status back into an Error envelope.

    A packed asyncplugin.v1.Error detail is returned exactly; otherwise the envelope is rebuilt
    from the standard ErrorInfo / Help / DebugInfo details. Details that do not decode are
    skipped.
    """
    packed = _first(status, error_pb2.Error)
    if packed is not None:
        return packed
    error = error_pb2.Error(message=status.message or _code_name(status.code), rpc_code=status.code)
    info = _first(status, error_details_pb2.ErrorInfo)
    if info is not None:
        error.code = info.reason
        error.domain = info.domain
        error.metadata.update(info.metadata)
    else:
        error.code = _code_name(status.code)
    help_ = _first(status, error_details_pb2.Help)
    if help_ is not None and help_.links:
        error.suggestion = help_.links[0].description
    debug = _first(status, error_details_pb2.DebugInfo)
    if debug is not None:
        error.internal_message = debug.detail
    return error


def _code_name(code: int) -> str:
    try:
        return str(code_pb2.Code.Name(code))
    except ValueError:
        return "UNKNOWN"


def _pack(status: status_pb2.Status, detail: Message) -> None:
    packed = any_pb2.Any()
    packed.Pack(detail)
    status.details.append(packed)


def _first(status: status_pb2.Status, kind: type[_T]) -> _T | None:
    """The first detail of type `kind` that decodes; a corrupt one is skipped, not raised (the
    details come from the far side, and the status code and message still say what failed)."""
    descriptor = kind.DESCRIPTOR
    for detail in status.details:
        if detail.Is(descriptor):
            out = kind()
            try:
                detail.Unpack(out)
            except (DecodeError, RecursionError):
                continue
            return out
    return None
