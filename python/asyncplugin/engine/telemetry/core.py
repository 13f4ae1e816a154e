"""EngineTelemetry: the engine's one telemetry object, fed by its submits, calls and changes."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace

from asyncplugin.observability import TASK_ID, inject_span
from asyncplugin.observability.tracecontext import split_trace_metadata
from asyncplugin.protocol import TaskState
from asyncplugin.v1 import plugin_pb2

from ..records import CallKind, CheckOutcome, CheckRecord, TaskOptions, TaskRecord, TaskUpdate
from ..transport import Metadata, Transport, TransportError
from .calls import _add_to, _Call, _drop, _take
from .load import EngineLoad
from .sampling import _follows_parent
from .spans import (
    _COMPLETION_SPANS,
    CompletionMethod,
    _completion_span,
    _end_call_span,
    _end_unrecorded,
    _give_up_span,
    _Parent,
    _parse_parent,
    _rpc_attributes,
    _start_call_span,
    _submitted_options,
)
from .wrappers import StoreWriter, _ObservedTransport, _TimedWrites

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..clock import Clock
    from ..metrics import EngineMetrics


def _version() -> str:
    try:
        return package_metadata.version("asyncplugin")
    except package_metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return ""


_TERMINAL: Final = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)
"""A tuple: `in` compares by identity first (`is_terminal` is two properties deep)."""

# Enum members read on every call, as module constants: on Python 3.11 reading a member off
# its class (`CallKind.CHECK`) goes through the enum metaclass's `__getattr__`, about as costly
# as a small function call.
_INITIATE: Final = CallKind.INITIATE
_CHECK: Final = CallKind.CHECK
_CANCEL: Final = CallKind.CANCEL
_GIVE_UP: Final = CallKind.GIVE_UP
_WAITING: Final = TaskState.WAITING
_FAILED: Final = TaskState.FAILED
_TRANSPORT_RETRY: Final = CheckOutcome.TRANSPORT_RETRY

_STEP_PARENT: ContextVar[tuple[str, str, _Parent] | None] = ContextVar(
    "asyncplugin_engine_step_parent", default=None
)
"""(task id, recorded traceparent, its parsed parent) of the step running in this context."""

_CACHE_LIMIT: Final = 50_000
"""Entries kept in each look-up cache before it is emptied (bounded memory, rare misses)."""


class EngineTelemetry:
    """Traces and metrics for an engine: pass it as `Engine(telemetry=...)`.

    Args:
        tracer_provider: where spans go (an SDK TracerProvider with an exporter); None: no
            spans. `opentelemetry.trace.get_tracer_provider()` uses the process's global one.
        registry: the prometheus-client registry to register the engine's metrics in; None: no
            metrics. One engine's telemetry per registry (names would clash).

    One engine uses it at a time; it may be handed to the next engine started on the same store.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._tracer = (
            tracer_provider.get_tracer("asyncplugin.engine", _version())
            if tracer_provider is not None
            else None
        )
        # A task not sampled at submit gets no span per call when the provider's sampler would
        # drop it anyway (see `_follows_parent`): no SDK span object, no attributes, and the
        # call carries the task's recorded traceparent as it is.
        self._skip_unsampled = tracer_provider is not None and _follows_parent(tracer_provider)
        self._metrics: EngineMetrics | None = None
        if registry is not None:
            from ..metrics import EngineMetrics

            self._metrics = EngineMetrics(registry)
            self._metrics.load.calls_in_flight = lambda: self._in_flight
            self._record_writes = self._metrics.store_writes["record",]
            self._create_writes = self._metrics.store_writes["create",]
        self._pending: dict[str, list[_Call]] = {}
        self._in_flight = 0
        self._lookup: Callable[[str], TaskRecord | None] = lambda _task_id: None
        self._clock: Clock | None = None
        # Look-ups done once, not per call: parent contexts by traceparent, RPC attributes by
        # (target, method).
        self._parents: dict[tuple[str, str], _Parent | None] = {}
        self._rpc: dict[tuple[str, str], dict[str, Any]] = {}

    # -- wiring, called by the Engine -------------------------------------------------------

    def bind(
        self,
        *,
        lookup: Callable[[str], TaskRecord | None],
        clock: Clock,
        load: Callable[[], EngineLoad],
    ) -> None:
        """Connects to a starting engine: its task cache, its clock, its scrape-time load."""
        self._lookup = lookup
        self._clock = clock
        if self._metrics is not None:
            self._metrics.load.source = load

    def unbind(self) -> None:
        """Disconnects from a stopping engine; spans of calls whose outcome was never recorded
        (cut by the stop) end, marked so."""
        for calls in self._pending.values():
            for call in calls:
                _end_unrecorded(call, "the engine stopped before recording the outcome")
        self._pending.clear()
        self._in_flight = 0
        self._lookup = lambda _task_id: None
        self._clock = None
        if self._metrics is not None:
            self._metrics.load.source = None

    def wrap_transport(self, transport: Transport) -> Transport:
        """The engine's transport, with a span and timing around each call."""
        return _ObservedTransport(transport, self)

    def wrap_handler(
        self, handler: Callable[[str], Awaitable[None]]
    ) -> Callable[[str], Awaitable[None]]:
        """The scheduler's handler, run with the task id (and its trace) as the log context.

        The scheduler runs each call of its handler in an asyncio task of its own
        (`Scheduler._work`), whose context is a copy made when the task was created: what is set
        here is seen by the step and ends with the task, so it needs no reset and the handler
        needs no coroutine of its own around it.
        """

        def observed(task_id: str) -> Awaitable[None]:
            TASK_ID.set(task_id)
            if self._tracer is not None:
                record = self._lookup(task_id)
                if record is not None and record.options.traceparent:
                    parent = self._parent(record.options.traceparent, record.options.tracestate)
                    if parent is not None:
                        # For the step's log lines (trace and span ids); spans are parented
                        # explicitly, never through the current context.
                        otel_context.attach(parent.context)
                        # For the step's call: its parent, without reading it from metadata.
                        _STEP_PARENT.set((task_id, record.options.traceparent, parent))
            return handler(task_id)

        return observed

    def wrap_store(self, store: StoreWriter) -> StoreWriter:
        """The store's writes, timed (the store itself when there are no metrics)."""
        if self._metrics is None:
            return store
        return _TimedWrites(store, self._metrics, self._create_writes, self._record_writes)

    def submitting(
        self, task_id: str, target: str, method: str, options: TaskOptions
    ) -> TaskOptions:
        """The options to record for a new task: with its trace context, when tracing."""
        if self._tracer is None:
            return options
        return _submitted_options(
            self._tracer, self._rpc_attributes(target, method), task_id, method, options
        )

    # -- the change hook -----------------------------------------------------------------------

    def on_change(self, update: TaskUpdate) -> None:
        """Ends the spans of the calls just recorded and counts what happened."""
        record = update.record
        checks = update.checks
        metrics = self._metrics
        plugin = record.options.plugin_id or record.target
        if not checks and record.state is _WAITING:
            if metrics is not None:
                metrics.submitted[plugin,] += 1
            return
        for check in checks:
            kind = check.kind
            if kind is _GIVE_UP:
                self._gave_up(record, check)
                continue
            call = _take(self._pending, check)
            if call is None:
                continue  # no call was sent (a cancel before any RUNNING answer)
            if metrics is not None:
                # The enum members themselves (str subclasses): `.value` is a property.
                metrics.calls[plugin, kind, check.outcome] += 1
                if check.outcome is _TRANSPORT_RETRY:
                    metrics.retries[plugin, check.grpc_code or "UNKNOWN"] += 1
            if call.span is not None:
                _end_call_span(call, check, record)
        if record.state not in _TERMINAL:
            return
        for call in self._pending.pop(record.task_id, ()):
            _end_unrecorded(call, f"the task ended {record.state.name} first")
        follow_up = all(check.kind is _CANCEL for check in update.checks)
        if metrics is not None and not (update.checks and follow_up):
            # A terminal update holding only a cancel request's entry is the follow-up of a
            # cancel already counted (Engine.cancel records CANCELLED first, then the request).
            from ..metrics import code_label

            code = code_label(record.error_code) if record.state is _FAILED else ""
            metrics.finished[plugin, record.state.name, code] += 1

    def completion(
        self,
        record: TaskRecord | None,
        *,
        accepted: bool,
        reason: str = "",
        method: CompletionMethod = "CompleteTask",
    ) -> None:
        """Counts a completion (CompleteTask) or progress report (UpdateTask) pushed by a
        plugin and, for a known task, adds a span to its trace. The engine service calls it for
        every one it receives, accepted or refused.

        Args:
            record: the task the completion token names, as recorded after the call; None when
                the token was refused (a forged token names no task that can be trusted).
            accepted: whether the call was accepted (a repeated identical completion is).
            reason: why it was refused, or a note ("already recorded"); never a token.
            method: "CompleteTask" or "UpdateTask".
        """
        if method not in _COMPLETION_SPANS:
            raise ValueError(f"method must be CompleteTask or UpdateTask, got {method!r}")
        if self._metrics is not None:
            self._metrics.completions[method, "accepted" if accepted else "refused"] += 1
        if self._tracer is None or record is None:
            return
        parent = self._parent_context(record.options.traceparent, record.options.tracestate)
        _completion_span(
            self._tracer, parent, record, accepted=accepted, reason=reason, method=method
        )

    # -- calls, from the transport wrapper -----------------------------------------------------

    def call_started(
        self, target: str, method: str, request: bytes, metadata: Metadata
    ) -> tuple[_Call | None, Metadata]:
        """Notes a call about to be sent; returns it and the metadata to send."""
        try:
            envelope = plugin_pb2.InvokeRequest.FromString(request)
        except Exception:  # not an envelope: a custom caller; nothing to attribute it to
            return None, metadata
        context = envelope.context
        if not envelope.is_status_check:
            kind, kind_name = _INITIATE, "INITIATE"
        elif envelope.cancel_requested:
            kind, kind_name = _CANCEL, "CANCEL"
        else:
            kind, kind_name = _CHECK, "CHECK"
        task_id = context.task_id
        number = context.check_number
        record = self._lookup(task_id)
        lateness = None
        if record is not None and kind is not _CANCEL:
            due = record.next_check_time
            if due is not None and self._clock is not None:
                lateness = self._clock.now() - due
                if lateness < 0.0:
                    lateness = 0.0
                metrics = self._metrics
                if metrics is not None:
                    late = metrics.lateness
                    row = late[kind_name,]
                    row[bisect_left(late.bounds, lateness) + 1] += 1
                    row[0] += lateness
        span = None
        if self._tracer is not None:
            step = _STEP_PARENT.get()
            if step is not None and step[0] == task_id and record is not None:
                # The step's own call (the usual case): its parent was found for the step.
                parent: _Parent | None = step[2]
                same = step[1] == record.options.traceparent
            else:
                same = False
            if not same:
                traceparent, tracestate, _ = split_trace_metadata(metadata)
                parent = self._parent(traceparent, tracestate) if traceparent else None
            if parent is None or parent.sampled or not self._skip_unsampled:
                span = _start_call_span(
                    self._tracer,
                    self._rpc_attributes(target, method),
                    method,
                    parent,
                    task_id,
                    kind_name,
                    number,
                    record,
                    lateness,
                )
                metadata = (*split_trace_metadata(metadata)[2], *inject_span(span))
        call = _Call(task_id, kind, kind_name, number, context.plugin_id or target, span)
        calls = self._pending.get(task_id)
        if calls is None:
            self._pending[task_id] = [call]
        else:
            _add_to(calls, call)
        self._in_flight += 1
        return call, metadata

    def call_finished(self, call: _Call, elapsed_s: float, error: BaseException | None) -> None:
        """Notes a call's end at the transport: its duration and gRPC status."""
        self._in_flight -= 1
        metrics = self._metrics
        if metrics is not None:
            duration = metrics.call_duration
            row = duration[call.plugin, call.kind_name]
            row[bisect_left(duration.bounds, elapsed_s) + 1] += 1
            row[0] += elapsed_s
        if error is None:
            call.grpc_code = 0
            return
        if isinstance(error, TransportError):
            if error.code is not None:
                call.grpc_code = error.code.value[0]
            return  # the engine records the failure; on_change ends the span
        # Cancelled (the engine stopping) or a bug: nothing will be recorded for this call.
        _drop(self._pending, call)
        _end_unrecorded(call, f"the call ended with {type(error).__name__}")

    # -- internals -------------------------------------------------------------------------------

    def _parent(self, traceparent: str, tracestate: str) -> _Parent | None:
        """The parent a recorded traceparent names (parsed once per task)."""
        key = (traceparent, tracestate)
        try:
            return self._parents[key]
        except KeyError:
            pass
        if len(self._parents) >= _CACHE_LIMIT:
            self._parents.clear()
        parent = self._parents[key] = _parse_parent(traceparent, tracestate)
        return parent

    def _parent_context(self, traceparent: str, tracestate: str) -> otel_context.Context | None:
        parent = self._parent(traceparent, tracestate) if traceparent else None
        return parent.context if parent is not None else None

    def _rpc_attributes(self, target: str, method: str) -> dict[str, Any]:
        key = (target, method)
        attributes = self._rpc.get(key)
        if attributes is None:
            if len(self._rpc) >= _CACHE_LIMIT:
                self._rpc.clear()
            attributes = self._rpc[key] = _rpc_attributes(target, method)
        return attributes

    def _gave_up(self, record: TaskRecord, check: CheckRecord) -> None:
        if self._tracer is None:
            return
        parent = self._parent_context(record.options.traceparent, record.options.tracestate)
        _give_up_span(self._tracer, parent, record, check)
