"""W3C trace context in gRPC metadata, and the names both sides give their spans and metrics.

The engine records a task's trace context as a W3C `traceparent` (and `tracestate`) string with
the task, and sends the current call's on every call as gRPC metadata. Whatever arrives is
untrusted: a malformed or oversized value is ignored (the receiver starts a new trace), never an
error for the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "DURATION_BUCKETS_S",
    "TRACEPARENT",
    "TRACESTATE",
    "inject_span",
    "parent_from_traceparent",
    "split_trace_metadata",
    "strip_trace_metadata",
    "traceparent_in",
]

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
MAX_HEADER_CHARS: Final = 512
"""Longer traceparent or tracestate values are ignored (W3C: tracestate holds at most 512)."""

DURATION_BUCKETS_S: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
"""Histogram buckets (seconds) for call durations, handler durations and check lateness: the
measured range runs from sub-millisecond loopback calls (0.1 ms) to minutes (a check fired
late after an engine restart, or a slow initiation), so the buckets span 100 us to 5 min."""

_W3C: Final = TraceContextTextMapPropagator()


def parent_from_traceparent(traceparent: str, tracestate: str = "") -> Context | None:
    """The remote span a `traceparent` names, as a Context to start child spans in.

    Returns None (start a new trace) for an empty, malformed or oversized value, or one naming
    the invalid all-zero trace or span id; never raises.
    """
    if not traceparent or len(traceparent) > MAX_HEADER_CHARS:
        return None
    carrier = {TRACEPARENT: traceparent}
    if tracestate and len(tracestate) <= MAX_HEADER_CHARS:
        carrier[TRACESTATE] = tracestate
    try:
        context = _W3C.extract(carrier)
    except Exception:  # defensive: the propagator is documented not to raise
        return None
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def inject_span(span: trace.Span) -> tuple[tuple[str, str], ...]:
    """The W3C `traceparent` (and `tracestate`, if any) naming `span`, as metadata pairs."""
    context = span.get_span_context()
    if not context.is_valid:
        return ()
    traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    if context.trace_state:
        return ((TRACEPARENT, traceparent), (TRACESTATE, context.trace_state.to_header()))
    return ((TRACEPARENT, traceparent),)


def traceparent_in(metadata: Iterable[tuple[str, str | bytes]]) -> tuple[str, str]:
    """The (traceparent, tracestate) strings in call metadata ("" for each one absent)."""
    parent = state = ""
    for key, value in metadata:
        if key == TRACEPARENT and isinstance(value, str):
            parent = value
        elif key == TRACESTATE and isinstance(value, str):
            state = value
    return parent, state


def split_trace_metadata(
    metadata: Sequence[tuple[str, str]],
) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """(traceparent, tracestate, the other entries) of call metadata, in one pass."""
    parent = state = ""
    rest = []
    for pair in metadata:
        key = pair[0]
        if key == TRACEPARENT:
            parent = pair[1]
        elif key == TRACESTATE:
            state = pair[1]
        else:
            rest.append(pair)
    return parent, state, tuple(rest)


def strip_trace_metadata(metadata: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """`metadata` without trace context entries (before a call's own are added)."""
    return tuple(pair for pair in metadata if pair[0] not in (TRACEPARENT, TRACESTATE))


# Span attributes: OpenTelemetry's RPC semantic conventions, plus the task's own.
RPC_SYSTEM: Final = "rpc.system"
RPC_SERVICE: Final = "rpc.service"
RPC_METHOD: Final = "rpc.method"
RPC_GRPC_STATUS_CODE: Final = "rpc.grpc.status_code"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
TASK_ID_ATTR: Final = "asyncplugin.task.id"
CALL_KIND: Final = "asyncplugin.call.kind"
"""INITIATE, CHECK or CANCEL."""
CHECK_NUMBER: Final = "asyncplugin.check.number"
CALL_OUTCOME: Final = "asyncplugin.call.outcome"
"""Engine: the outcome recorded for the call (RUNNING, SUCCEEDED, TRANSPORT_RETRY, ...).
Plugin: the answer given (SUCCEEDED, RUNNING, FAILED, CANCELLED)."""
TASK_STATE: Final = "asyncplugin.task.state"
NEXT_INTERVAL_S: Final = "asyncplugin.next_check.interval_s"
NEXT_REASON: Final = "asyncplugin.next_check.reason"
TRANSPORT_RETRIES: Final = "asyncplugin.transport.retries"
LATENESS_S: Final = "asyncplugin.check.lateness_s"
ERROR_CODE: Final = "asyncplugin.error.code"
