"""Traces and Prometheus metrics for the engine, hung off its transport and change notifications.

    telemetry = EngineTelemetry(tracer_provider=provider, registry=CollectorRegistry())
    async with Engine(store=SqliteStore("tasks.db"), telemetry=telemetry) as engine:
        ...

An engine without telemetry runs none of this (no wrapper, no hook, no extra work per call).
With it, each piece comes from one place:

- **submit**: `Engine.submit` calls `submitting` once, before the task is recorded. A short
  submit span (a child of `TaskOptions.traceparent` if given, else of the caller's current span)
  is started and ended, and its W3C context is recorded in the task's options. Every later call
  of the task, by this engine or one restarted on the same store, is a child of it: one task,
  one trace, however long it lives.
- **calls**: `wrap_transport` wraps the engine's transport. Each call is a CLIENT span, a child
  of the task's recorded context (which reaches the transport as the call's `traceparent`
  metadata), and the plugin gets that span's context in `traceparent`, so the plugin's server
  span (and whatever the plugin traces) sits under it. The wrapper also times the call.
- **outcomes**: `on_change` is an engine change hook. It ends the call's span with what the
  engine recorded about it (outcome, the task's state, the next interval and its reason) and
  counts calls, transport retries, submissions and ends.
- **gauges** (tasks by state, calls in flight, each target's bulkhead) are read at scrape time.

Everything here runs on every status check, so it is kept cheap (docs/observability.md, "What
it costs"): counters and histograms are plain numbers turned into metric families at scrape
time (`asyncplugin.observability.counting`); a task not sampled at submit gets no span per call
when the sampler would drop it anyway (`_follows_parent`); a task's parent context is parsed
once and handed from its step to its call.

Why not opentelemetry-instrumentation-grpc's client interceptor: its span is a child of the
*current* context and ends when the RPC returns. The engine's call span must be a child of the
task's recorded trace (the submitter's context is long gone when check 7 fires hours later,
perhaps in another engine process) and must carry what the engine decided after the answer
(interval and reason, state). The engine's channels are also created inside its `Transport`,
which takes no interceptors. The plugin server does use that package (see
`asyncplugin.plugin.telemetry`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from asyncplugin.observability import TASK_ID, inject_span, parent_from_traceparent
from asyncplugin.observability import tracecontext as names
from asyncplugin.observability.tracecontext import split_trace_metadata
from asyncplugin.protocol import TaskState
from asyncplugin.v1 import plugin_pb2

from .records import CallKind, CheckOutcome, CheckRecord, TaskOptions, TaskRecord, TaskUpdate
from .transport import Metadata, Transport, TransportError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .clock import Clock
    from .metrics import EngineMetrics

__all__ = ["CompletionMethod", "EngineLoad", "EngineTelemetry", "StoreWriter"]

_log = logging.getLogger(__name__)

_FAILED_OUTCOMES: Final = (
    # A tuple: `in` compares by identity first, a set would hash each enum member in Python.
    CheckOutcome.FAILED,
    CheckOutcome.TRANSPORT_RETRY,
    CheckOutcome.RPC_ERROR,
    CheckOutcome.PROTOCOL_VIOLATION,
)


def _version() -> str:
    try:
        return package_metadata.version("asyncplugin")
    except package_metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return ""


class StoreWriter(Protocol):
    """The two store writes the engine times: a new task, and a recorded change."""

    async def create(self, record: TaskRecord) -> None: ...

    async def record(self, record: TaskRecord | None, *checks: CheckRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """What the engine is doing right now, read at scrape time.

    Attributes:
        states: unfinished tasks by (plugin, state name), state WAITING or RUNNING.
        oldest_s: per plugin, the age (engine clock) of its oldest unfinished task.
        calls_limit: `max_concurrent_rpcs`.
        target_limit: `max_concurrent_rpcs_per_target` (the bulkhead's size).
        targets: per target, (handlers holding a bulkhead slot, due tasks set aside because the
            bulkhead is full).
    """

    states: Mapping[tuple[str, str], int]
    calls_limit: int
    target_limit: int
    oldest_s: Mapping[str, float] = field(default_factory=dict)
    targets: Mapping[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(slots=True)
class _Call:
    """One call in flight or awaiting its recorded outcome."""

    task_id: str
    kind: CallKind
    kind_name: str
    """`kind.value`, read once (an enum's value is a property)."""
    number: int
    plugin: str
    span: trace.Span | None
    grpc_code: int | None = None


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
_CLIENT: Final = SpanKind.CLIENT

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
            from .metrics import EngineMetrics

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
                self._end_unrecorded(call, "the engine stopped before recording the outcome")
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
        parent = None
        if options.traceparent:
            parent = parent_from_traceparent(options.traceparent, options.tracestate)
        attributes = dict(self._rpc_attributes(target, method))
        attributes[names.TASK_ID_ATTR] = task_id
        span = self._tracer.start_span(
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
            call = self._take(check)
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
            self._end_unrecorded(call, f"the task ended {record.state.name} first")
        follow_up = all(check.kind is _CANCEL for check in update.checks)
        if metrics is not None and not (update.checks and follow_up):
            # A terminal update holding only a cancel request's entry is the follow-up of a
            # cancel already counted (Engine.cancel records CANCELLED first, then the request).
            from .metrics import code_label

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
        span = self._tracer.start_span(
            _COMPLETION_SPANS[method], context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        if not accepted:
            span.set_status(Status(StatusCode.ERROR, reason[:200] or "refused"))
        span.end()

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
                span = self._start_call_span(
                    target, method, parent, task_id, kind_name, number, record, lateness
                )
                metadata = (*split_trace_metadata(metadata)[2], *inject_span(span))
        call = _Call(task_id, kind, kind_name, number, context.plugin_id or target, span)
        calls = self._pending.get(task_id)
        if calls is None:
            self._pending[task_id] = [call]
        else:
            for stale in [c for c in calls if c.kind is kind and c.number == number]:
                calls.remove(stale)  # its outcome was never recorded (a failed store write)
                self._end_unrecorded(stale, "sent again before its outcome was recorded")
            calls.append(call)
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
        self._drop(call)
        self._end_unrecorded(call, f"the call ended with {type(error).__name__}")

    # -- internals -------------------------------------------------------------------------------

    def _start_call_span(
        self,
        target: str,
        method: str,
        parent: _Parent | None,
        task_id: str,
        kind_name: str,
        number: int,
        record: TaskRecord | None,
        lateness: float | None,
    ) -> trace.Span:
        assert self._tracer is not None
        attributes = dict(self._rpc_attributes(target, method))
        attributes[names.TASK_ID_ATTR] = task_id
        attributes[names.CALL_KIND] = kind_name
        attributes[names.CHECK_NUMBER] = number
        attributes[names.TRANSPORT_RETRIES] = record.retries if record is not None else 0
        if lateness is not None:
            attributes[names.LATENESS_S] = lateness
        return self._tracer.start_span(
            method.lstrip("/"),
            context=parent.context if parent is not None else None,
            kind=_CLIENT,
            attributes=attributes,
        )

    def _parent(self, traceparent: str, tracestate: str) -> _Parent | None:
        """The parent a recorded traceparent names (parsed once per task)."""
        key = (traceparent, tracestate)
        try:
            return self._parents[key]
        except KeyError:
            pass
        if len(self._parents) >= _CACHE_LIMIT:
            self._parents.clear()
        parent = None
        context = parent_from_traceparent(traceparent, tracestate)
        if context is not None:
            sampled = trace.get_current_span(context).get_span_context().trace_flags.sampled
            parent = _Parent(context, sampled)
        self._parents[key] = parent
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

    def _take(self, check: CheckRecord) -> _Call | None:
        calls = self._pending.get(check.task_id)
        if not calls:
            return None
        if len(calls) == 1:  # the usual case: the one call of the task
            call = calls[0]
            if call.kind is check.kind and call.number == check.check_number:
                del self._pending[check.task_id]
                return call
            return None
        for call in calls:
            if call.kind is check.kind and call.number == check.check_number:
                calls.remove(call)
                return call
        return None

    def _drop(self, call: _Call) -> None:
        calls = self._pending.get(call.task_id)
        if calls and call in calls:
            calls.remove(call)
            if not calls:
                del self._pending[call.task_id]

    def _gave_up(self, record: TaskRecord, check: CheckRecord) -> None:
        if self._tracer is None:
            return
        parent = self._parent_context(record.options.traceparent, record.options.tracestate)
        span = self._tracer.start_span(
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

    @staticmethod
    def _end_unrecorded(call: _Call, why: str) -> None:
        if call.span is not None:
            call.span.set_attribute(names.CALL_OUTCOME, "NOT_RECORDED")
            call.span.set_status(Status(StatusCode.ERROR, why))
            call.span.end()


_PROBE_TRACE_IDS: Final = (1, (1 << 128) - 1)
"""The lowest and highest trace ids: a ratio sampler keeps one of them whatever its ratio."""


def _follows_parent(provider: trace.TracerProvider) -> bool:
    """Whether the provider's sampler drops every child of a remote parent that was not sampled.

    True for the SDK's `ParentBased` samplers with the default `remote_parent_not_sampled`
    (ALWAYS_OFF): the SDK default, and `ParentBased(TraceIdRatioBased(r))`. Then a call of a
    task not sampled at submit needs no span at all. Anything else (another sampler, a
    provider that is not the SDK's) keeps asking the provider for every call's span.
    """
    try:
        from opentelemetry.sdk.trace.sampling import Decision, ParentBased
    except ImportError:  # pragma: no cover - the API without the SDK makes no spans anyway
        return False
    sampler = getattr(provider, "sampler", None)
    if not isinstance(sampler, ParentBased):
        return False
    unsampled = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=_PROBE_TRACE_IDS[0],
            span_id=1,
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
        )
    )
    context = trace.set_span_in_context(unsampled)
    try:
        return all(
            sampler.should_sample(context, trace_id, "probe", SpanKind.CLIENT).decision
            is Decision.DROP
            for trace_id in _PROBE_TRACE_IDS
        )
    except Exception:  # a custom delegate that fails on the probe: take the safe path
        return False


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


class _ObservedTransport:
    """A Transport that tells the telemetry about each call.

    Only `call` and `close`, the `Transport` protocol: no `__getattr__` forwarding to the
    wrapped transport, which would route every attribute read of this object through a Python
    hook (the engine's driver reads `call` on each status check).
    """

    __slots__ = ("_inner", "_telemetry")

    def __init__(self, inner: Transport, telemetry: EngineTelemetry) -> None:
        self._inner = inner
        self._telemetry = telemetry

    async def call(
        self,
        target: str,
        method: str,
        request: bytes,
        *,
        timeout_s: float,
        metadata: Metadata = (),
    ) -> bytes:
        telemetry = self._telemetry
        call, metadata = telemetry.call_started(target, method, request, metadata)
        if call is None:
            return await self._inner.call(
                target, method, request, timeout_s=timeout_s, metadata=metadata
            )
        started = time.perf_counter()
        try:
            answer = await self._inner.call(
                target, method, request, timeout_s=timeout_s, metadata=metadata
            )
        except BaseException as err:
            telemetry.call_finished(call, time.perf_counter() - started, err)
            raise
        telemetry.call_finished(call, time.perf_counter() - started, None)
        return answer

    async def close(self) -> None:
        await self._inner.close()


class _TimedWrites:
    """Store writes, timed into the store-write histogram."""

    __slots__ = ("_create", "_observe", "_record", "_store")

    def __init__(
        self,
        store: StoreWriter,
        metrics: EngineMetrics,
        create_row: list[float],
        record_row: list[float],
    ) -> None:
        self._store = store
        self._observe = metrics.store_writes.observe
        self._create = create_row
        self._record = record_row

    async def create(self, record: TaskRecord) -> None:
        started = time.perf_counter()
        try:
            await self._store.create(record)
        finally:
            self._observe(self._create, time.perf_counter() - started)

    async def record(self, record: TaskRecord | None, *checks: CheckRecord) -> None:
        started = time.perf_counter()
        try:
            await self._store.record(record, *checks)
        finally:
            self._observe(self._record, time.perf_counter() - started)
