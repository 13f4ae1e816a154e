"""Pythonic request and response envelopes (see plugin.proto for every field's meaning)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

from google.protobuf import struct_pb2

from asyncplugin.v1 import plugin_pb2, task_pb2

from .structs import struct_to_dict
from .task import Task, datetime_to_timestamp, task_from_wire, timestamp_to_datetime

InT = TypeVar("InT")
OutT = TypeVar("OutT")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestContext:
    """Who is calling and for which task; set by the engine on every call.

    `engine_address` and `completion_token` are set when the engine offers push completion:
    `asyncplugin.plugin.completion.CompletionClient` uses them to finish the task at once. The
    token is a secret and is left out of the repr.
    """

    plugin_id: str = ""
    plugin_instance_id: str = ""
    task_id: str = ""
    idempotency_key: str = ""
    check_number: int = 0
    deadline: datetime | None = None
    engine: str = ""
    engine_address: str = ""
    completion_token: str = field(default="", repr=False)

    def to_proto(self) -> plugin_pb2.RequestContext:
        """Encodes this context."""
        out = plugin_pb2.RequestContext(
            plugin_id=self.plugin_id,
            plugin_instance_id=self.plugin_instance_id,
            task_id=self.task_id,
            idempotency_key=self.idempotency_key,
            check_number=self.check_number,
            engine=self.engine,
            engine_address=self.engine_address,
            completion_token=self.completion_token,
        )
        if self.deadline is not None:
            out.deadline.CopyFrom(datetime_to_timestamp(self.deadline))
        return out

    @classmethod
    def from_proto(cls, message: plugin_pb2.RequestContext) -> RequestContext:
        """Decodes a context."""
        return cls(
            plugin_id=message.plugin_id,
            plugin_instance_id=message.plugin_instance_id,
            task_id=message.task_id,
            idempotency_key=message.idempotency_key,
            check_number=message.check_number,
            deadline=timestamp_to_datetime(message.deadline)
            if message.HasField("deadline")
            else None,
            engine=message.engine,
            engine_address=message.engine_address,
            completion_token=message.completion_token,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Request(Generic[InT]):
    """One call from the engine: new work, or a status check of work already started.

    Attributes:
        data: the decoded payload (the plugin's input type).
        context: identities, idempotency key, check number and deadline.
        status: the engine's last record of the task; None on the initiating call.
        is_status_check: True for a status check; always read it.
        cancel_requested: True when the engine is cancelling the task (a status check too:
            `is_status_check` is also True).
        remote_status_input: (property) `status.remote_status_input`, or {} when absent.
    """

    data: InT
    context: RequestContext
    status: Task | None = None
    is_status_check: bool = False
    cancel_requested: bool = False

    @property
    def remote_status_input(self) -> dict[str, Any]:
        """What the plugin stashed in its last RUNNING answer, echoed back by the engine.

        The `remote_status_input` of `status`, or {} when there is none (on an initiating call,
        or if the plugin stashed nothing). Read-only: answer a new RUNNING Task to change it.
        """
        if self.status is None or self.status.remote_status_input is None:
            return {}
        return self.status.remote_status_input


_CONTEXT_SLOT: Any = Request.__dict__["context"]
"""The slot behind `Request.context`, read and written directly by `_WireRequest`."""
_DATA_SLOT: Any = Request.__dict__["data"]
"""The slot behind `Request.data`, likewise."""
_UNDECODED: Final = object()


class _WireRequest(Request[Any]):
    """A Request whose `context` and dict `data` are decoded from their (validated) wire
    messages on first read; its `status` is a Task that decodes each field on first read
    (`task_from_wire`).

    What the SDK hands a handler: a status check whose handler reads only
    `request.remote_status_input` (or nothing) never pays for decoding the whole Task (its
    timestamps, its counters, the dataclass), nor the context if it does not read it. It behaves
    as a plain Request: equal to one with the same fields, its repr, `dataclasses.replace`, and
    copies and pickles (a plain Request).
    """

    __slots__ = ("_wire_context", "_wire_data")
    _wire_context: plugin_pb2.RequestContext | None
    _wire_data: struct_pb2.Struct | None

    def __init__(
        self,
        *,
        data: Any,
        context: RequestContext | plugin_pb2.RequestContext,
        status: Task | None = None,
        is_status_check: bool = False,
        cancel_requested: bool = False,
        wire_data: struct_pb2.Struct | None = None,
    ) -> None:
        _fill(self, data, wire_data, context, status, is_status_check, cancel_requested)

    @property
    def data(self) -> Any:
        value = _DATA_SLOT.__get__(self, Request)
        if value is _UNDECODED:
            assert self._wire_data is not None
            value = struct_to_dict(self._wire_data)
            _DATA_SLOT.__set__(self, value)
        return value

    @property
    def context(self) -> RequestContext:
        value = _CONTEXT_SLOT.__get__(self, Request)
        if value is _UNDECODED:
            assert self._wire_context is not None
            value = RequestContext.from_proto(self._wire_context)
            _CONTEXT_SLOT.__set__(self, value)
        return value  # type: ignore[no-any-return]

    def _fields(self) -> tuple[Any, ...]:
        return (self.data, self.context, self.status, self.is_status_check, self.cancel_requested)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return self._fields() == (
            other.data,
            other.context,
            other.status,
            other.is_status_check,
            other.cancel_requested,
        )

    __hash__ = Request.__hash__

    def __repr__(self) -> str:
        text = Request.__repr__(self)
        return "Request" + text[text.index("(") :]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_plain_request, self._fields())


def _plain_request(
    data: Any, context: RequestContext, status: Task | None, check: bool, cancel: bool
) -> Request[Any]:
    return Request(
        data=data, context=context, status=status, is_status_check=check, cancel_requested=cancel
    )


def request_from_wire(
    *,
    data: Any,
    context: RequestContext | plugin_pb2.RequestContext,
    status: task_pb2.Task | None,
    is_status_check: bool,
    cancel_requested: bool,
    wire_data: struct_pb2.Struct | None = None,
) -> Request[Any]:
    """The Request for a decoded, validated envelope; its `status` (field by field), its
    `context` if given as the wire message, and its `data` if given as a parsed Struct
    (`wire_data`, read as a dict; `data` is then ignored) are decoded on first read.

    Raises:
        ValueError: the status's state is UNSPECIFIED or unknown (validation refuses it first).
    """
    # Made and filled directly: `__init__`'s keywords cost more.
    status_task = task_from_wire(status) if status is not None else None
    request = _WireRequest.__new__(_WireRequest)
    _fill(request, data, wire_data, context, status_task, is_status_check, cancel_requested)
    return request


def _fill(
    request: _WireRequest,
    data: Any,
    wire_data: struct_pb2.Struct | None,
    context: RequestContext | plugin_pb2.RequestContext,
    status: Task | None,
    is_status_check: bool,
    cancel_requested: bool,
) -> None:
    """Writes a `_WireRequest`'s slots (the dataclass is frozen)."""
    set_field = object.__setattr__
    set_field(request, "_wire_data", wire_data)
    _DATA_SLOT.__set__(request, _UNDECODED if wire_data is not None else data)
    if isinstance(context, RequestContext):
        set_field(request, "_wire_context", None)
        _CONTEXT_SLOT.__set__(request, context)
    else:
        set_field(request, "_wire_context", context)
        _CONTEXT_SLOT.__set__(request, _UNDECODED)
    set_field(request, "status", status)
    set_field(request, "is_status_check", is_status_check)
    set_field(request, "cancel_requested", cancel_requested)


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(Generic[OutT]):
    """A plugin's answer: `data` (done), `status` (RUNNING / FAILED / CANCELLED), or both.

    `Response(data=x)` means SUCCEEDED with x. `Response(status=Task(state=TaskState.RUNNING,
    remote_status_input={...}))` means "check back later".
    """

    data: OutT | None = None
    status: Task | None = None
