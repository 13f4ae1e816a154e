"""The engine's spans: what each call, submit, completion and give-up span carries, and its end."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from asyncplugin.observability import inject_span, parent_from_traceparent
from asyncplugin.observability import tracecontext as names
from asyncplugin.protocol import TaskState

from ..records import CheckOutcome, CheckRecord, TaskOptions, TaskRecord

if TYPE_CHECKING:
    from .calls import _Call

_FAILED_OUTCOMES: Final = (
    # A tuple: `in` compares by identity first, a set would hash each enum member in Python.
    CheckOutcome.FAILED,
    CheckOutcome.TRANSPORT_RETRY,
    CheckOutcome.RPC_ERROR,
    CheckOutcome.PROTOCOL_VIOLATION,
)


_FAILED: Final = TaskState.FAILED
_CLIENT: Final = SpanKind.CLIENT


@dataclass(frozen=True, slots=True)
class _Parent:
    """A task's recorded trace context, parsed once: the context to start its spans in, and
    whether the task was sampled (the flag taken at submit)."""

    context: otel_context.Context
    sampled: bool


CompletionMethod = Literal["CompleteTask", "UpdateTask"]
"""The EngineService RPCs by which a plugin pushes a task's end or progress."""

_COMPLETION_SPANS: Final[Mapping[str, str]] = {
    "CompleteTask": "complete task",
    "UpdateTask": "update task",
}


def _parse_parent(traceparent: str, tracestate: str) -> _Parent | None:
    """The parent a recorded traceparent names, and whether it was sampled; None if invalid."""
    context = parent_from_traceparent(traceparent, tracestate)
    if context is None:
        return None
    sampled = trace.get_current_span(context).get_span_context().trace_flags.sampled
    return _Parent(context, sampled)


def _rpc_attributes(target: str, method: str) -> dict[str, Any]:
    """RPC semantic-convention attributes of a call to `method` at `target`."""
    service, _, name = method.lstrip("/").partition("/")
    host, _, port = target.rpartition(":")
    attributes: dict[str, Any] = {
        names.RPC_SYSTEM: "grpc",
        names.RPC_SERVICE: service,
        names.RPC_METHOD: name,
        names.SERVER_ADDRESS: (host or target).strip("[]"),
    }
    if port.isdigit():
        attributes[names.SERVER_PORT] = int(port)
    return attributes


def _submitted_options(
    tracer: trace.Tracer,
    rpc_attributes: Mapping[str, Any],
    task_id: str,
    method: str,
    options: TaskOptions,
) -> TaskOptions:
    """Starts and ends a task's submit span; returns its options carrying that span's context."""
    parent = None
    if options.traceparent:
        parent = parent_from_traceparent(options.traceparent, options.tracestate)
    attributes = dict(rpc_attributes)
    attributes[names.TASK_ID_ATTR] = task_id
    span = tracer.start_span(
        f"submit {method.lstrip('/')}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=attributes,
    )
    span.end()
    carrier = dict(inject_span(span))
    return dataclasses.replace(
        options,
        traceparent=carrier.get(names.TRACEPARENT, ""),
        tracestate=carrier.get(names.TRACESTATE, ""),
    )


def _start_call_span(
    tracer: trace.Tracer,
    rpc_attributes: Mapping[str, Any],
    method: str,
    parent: _Parent | None,
    task_id: str,
    kind_name: str,
    number: int,
    record: TaskRecord | None,
    lateness: float | None,
) -> trace.Span:
    """Starts a call's CLIENT span, a child of its task's recorded context."""
    attributes = dict(rpc_attributes)
    attributes[names.TASK_ID_ATTR] = task_id
    attributes[names.CALL_KIND] = kind_name
    attributes[names.CHECK_NUMBER] = number
    attributes[names.TRANSPORT_RETRIES] = record.retries if record is not None else 0
    if lateness is not None:
        attributes[names.LATENESS_S] = lateness
    return tracer.start_span(
        method.lstrip("/"),
        context=parent.context if parent is not None else None,
        kind=_CLIENT,
        attributes=attributes,
    )


def _end_call_span(call: _Call, check: CheckRecord, record: TaskRecord) -> None:
    """Ends a call's span with what the engine recorded about the call."""
    span = call.span
    assert span is not None
    attributes: dict[str, Any] = {
        names.CALL_OUTCOME: check.outcome.value,
        names.TASK_STATE: record.state.name,
    }
    if call.grpc_code is not None:
        attributes[names.RPC_GRPC_STATUS_CODE] = call.grpc_code
    if check.interval_s is not None:
        attributes[names.NEXT_INTERVAL_S] = check.interval_s
        attributes[names.NEXT_REASON] = check.reason
    if check.outcome in _FAILED_OUTCOMES:
        code = check.grpc_code or (record.error_code if record.state is _FAILED else "")
        if code:
            attributes[names.ERROR_CODE] = code
        span.set_status(Status(StatusCode.ERROR, check.message[:200]))
    span.set_attributes(attributes)
    span.end()


def _end_unrecorded(call: _Call, why: str) -> None:
    """Ends the span of a call whose outcome will never be recorded, saying why."""
    if call.span is not None:
        call.span.set_attribute(names.CALL_OUTCOME, "NOT_RECORDED")
        call.span.set_status(Status(StatusCode.ERROR, why))
        call.span.end()


def _give_up_span(
    tracer: trace.Tracer,
    parent: otel_context.Context | None,
    record: TaskRecord,
    check: CheckRecord,
) -> None:
    """Records the engine giving up on a task as a span of its trace."""
    span = tracer.start_span(
        "give up",
        context=parent,
        attributes={
            names.TASK_ID_ATTR: record.task_id,
            names.CHECK_NUMBER: check.check_number,
            names.CALL_OUTCOME: check.outcome.value,
            names.TASK_STATE: record.state.name,
            names.ERROR_CODE: check.outcome.value,
        },
    )
    span.set_status(Status(StatusCode.ERROR, check.message[:200]))
    span.end()


def _completion_span(
    tracer: trace.Tracer,
    parent: otel_context.Context | None,
    record: TaskRecord,
    *,
    accepted: bool,
    reason: str,
    method: CompletionMethod,
) -> None:
    """Records a completion or progress report pushed by a plugin as a span of its task."""
    attributes: dict[str, Any] = {
        names.TASK_ID_ATTR: record.task_id,
        names.TASK_STATE: record.state.name,
        names.RPC_SYSTEM: "grpc",
        names.RPC_SERVICE: "asyncplugin.engine.v1.EngineService",
        names.RPC_METHOD: method,
        "asyncplugin.completion.accepted": accepted,
    }
    if reason:
        attributes["asyncplugin.completion.reason"] = reason[:200]
    span = tracer.start_span(
        _COMPLETION_SPANS[method], context=parent, kind=SpanKind.SERVER, attributes=attributes
    )
    if not accepted:
        span.set_status(Status(StatusCode.ERROR, reason[:200] or "refused"))
    span.end()
