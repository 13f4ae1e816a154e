"""Traces, Prometheus metrics and log context for the plugin server.

    server = PluginServer(plugin, telemetry=PluginTelemetry(tracer_provider=provider,
                                                             registry=CollectorRegistry()))

- **Traces** use opentelemetry-instrumentation-grpc's asyncio server interceptor (the `[otel]`
  extra): it reads the trace context from the call's metadata through the process's propagator
  (W3C `traceparent` by default), starts a SERVER span with the RPC semantic-convention
  attributes, and makes it current while the plugin runs, so the plugin's own spans, and its
  instrumented calls to third-party APIs, are its children. A malformed or oversized
  `traceparent` (over 512 characters) is ignored by the propagator: the call starts a new
  trace and is answered as usual. The dispatcher adds the task's attributes to that span
  (`asyncplugin.task.id`, check number, call kind, the answer given).
- **Metrics** come from this module's own interceptor, placed outermost so it also counts the
  calls refused before the plugin sees them (UNAUTHENTICATED by the token check,
  INVALID_ARGUMENT by the envelope check): calls by kind and answer, handler duration, calls in
  flight. Health checks and reflection are neither traced nor counted.
- **Logs**: while the plugin answers a call, `asyncplugin.observability.TASK_ID` holds the task
  id, so `--log-format json` puts it (and the trace and span ids) on every line it logs.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import grpc
from grpc import aio
from opentelemetry import trace

from asyncplugin.observability import TASK_ID
from asyncplugin.observability import tracecontext as names
from asyncplugin.protocol import Request
from asyncplugin.v1 import plugin_pb2, task_pb2

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from prometheus_client import CollectorRegistry

__all__ = ["PluginTelemetry", "call_kind", "response_answer"]

_ANSWERS: Final = {
    task_pb2.TASK_STATE_RUNNING: "RUNNING",
    task_pb2.TASK_STATE_SUCCEEDED: "SUCCEEDED",
    task_pb2.TASK_STATE_FAILED: "FAILED",
    task_pb2.TASK_STATE_CANCELLED: "CANCELLED",
}


@dataclass(slots=True)
class _Note:
    """What the dispatcher learned about the call the metrics interceptor is timing."""

    kind: str = "UNKNOWN"
    answer: str = ""


_NOTE: contextvars.ContextVar[_Note | None] = contextvars.ContextVar(
    "asyncplugin_plugin_call_note", default=None
)


def call_kind(request: Request[Any]) -> str:
    """INITIATE, CHECK or CANCEL: which call a request is."""
    if not request.is_status_check:
        return "INITIATE"
    return "CANCEL" if request.cancel_requested else "CHECK"


def response_answer(response: plugin_pb2.InvokeResponse) -> str:
    """SUCCEEDED, RUNNING, FAILED or CANCELLED: the answer a response gives."""
    if response.HasField("data"):
        return "SUCCEEDED"
    return _ANSWERS.get(response.status.state, "SUCCEEDED")


class PluginTelemetry:
    """Traces, metrics and log context for one plugin server: `PluginServer(telemetry=...)`.

    Args:
        tracer_provider: where the server spans go (an SDK TracerProvider with an exporter;
            needs the `[otel]` extra); None: no spans.
        registry: the prometheus-client registry for the server's metrics (needs the
            `[metrics]` extra); None: no metrics. One server's telemetry per registry.

    With neither, only the log context is kept (the task id on every log line of a call).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._metrics: _PluginMetrics | None = None
        if registry is not None:
            self._metrics = _PluginMetrics(registry)

    def interceptors(self, method: str) -> list[aio.ServerInterceptor]:
        """The server interceptors for the plugin's `method` path ("/pkg.Service/Method"),
        outermost first; they go before the server's own (the token check)."""
        interceptors: list[aio.ServerInterceptor] = []
        if self._metrics is not None:
            interceptors.append(_MetricsInterceptor(method, self._metrics))
        if self._tracer_provider is not None:
            try:
                from opentelemetry.instrumentation.grpc import aio_server_interceptor
            except ImportError as err:  # pragma: no cover - the [otel] extra is missing
                raise RuntimeError(
                    "tracing the plugin server needs the otel extra: "
                    "pip install 'asyncplugin[otel]'"
                ) from err

            def only_the_plugin(details: grpc.HandlerCallDetails) -> bool:
                return bool(details.method == method)

            interceptors.append(
                aio_server_interceptor(  # type: ignore[no-untyped-call]
                    tracer_provider=self._tracer_provider, filter_=only_the_plugin
                )
            )
        return interceptors

    def started(self, request: Request[Any]) -> contextvars.Token[str | None]:
        """Called by the dispatcher once a request is decoded, before the plugin runs."""
        kind = call_kind(request)
        note = _NOTE.get()
        if note is not None:
            note.kind = kind
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(names.TASK_ID_ATTR, request.context.task_id)
            span.set_attribute(names.CALL_KIND, kind)
            span.set_attribute(names.CHECK_NUMBER, request.context.check_number)
        return TASK_ID.set(request.context.task_id or None)

    def answered(
        self, response: plugin_pb2.InvokeResponse, token: contextvars.Token[str | None]
    ) -> None:
        """Called by the dispatcher with the answer it is about to send."""
        TASK_ID.reset(token)
        answer = response_answer(response)
        note = _NOTE.get()
        if note is not None:
            note.answer = answer
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(names.CALL_OUTCOME, answer)
            if answer == "FAILED" and response.status.error.code:
                span.set_attribute(names.ERROR_CODE, response.status.error.code)


class _PluginMetrics:
    """The server's metrics: plain numbers updated on the server's loop, turned into metric
    families when Prometheus scrapes (`asyncplugin.observability.counting`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from asyncplugin.observability.counting import (
            CounterSeries,
            GaugeValue,
            HistogramSeries,
            SeriesCollector,
        )

        self.calls = CounterSeries(
            "asyncplugin_plugin_calls",
            "Calls to the plugin by kind (INITIATE, CHECK, CANCEL; UNKNOWN when refused before "
            "decoding) and answer (SUCCEEDED, RUNNING, FAILED, CANCELLED; REFUSED: rejected "
            "by the server; NO_ANSWER: cancelled or failed before answering).",
            ["kind", "answer"],
        )
        self.duration = HistogramSeries(
            "asyncplugin_plugin_handler_duration_seconds",
            "How long the server took to answer a call, the plugin's handler included.",
            ["kind"],
            names.DURATION_BUCKETS_S,
        )
        self.in_flight = GaugeValue(
            "asyncplugin_plugin_calls_in_flight", "Calls being answered now."
        )
        registry.register(SeriesCollector([self.calls, self.duration, self.in_flight]))


class _MetricsInterceptor(aio.ServerInterceptor):
    """Counts and times the calls to one method, refused ones included."""

    def __init__(self, method: str, metrics: _PluginMetrics) -> None:
        self._method = method
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler_call_details.method != self._method or handler is None:
            return handler
        behavior = handler.unary_unary
        if behavior is None:  # pragma: no cover - plugin methods are unary
            return handler
        calls = self._metrics.calls
        duration = self._metrics.duration
        in_flight = self._metrics.in_flight

        async def observed(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            note = _Note()
            token = _NOTE.set(note)
            in_flight.value += 1
            started = time.perf_counter()
            try:
                return await behavior(request, context)  # type: ignore[arg-type]
            except aio.AbortError:
                note.answer = note.answer or "REFUSED"
                raise
            finally:
                in_flight.value -= 1
                duration.observe(duration[note.kind,], time.perf_counter() - started)
                calls[note.kind, note.answer or "NO_ANSWER"] += 1
                _NOTE.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
