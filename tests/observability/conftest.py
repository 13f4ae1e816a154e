"""Fixtures for the observability tests: in-memory span exporters and a countdown plugin."""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from typing import Any

import aiohttp
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from asyncplugin import PluginError, Request, Response, Task, TaskState
from asyncplugin.engine import PollingPolicy, TransportRetryPolicy
from asyncplugin.plugin import AsyncPlugin

Payload = dict[str, Any]

POLICY = PollingPolicy(
    initial_interval_s=1.0,
    multiplier=2.0,
    max_interval_s=60.0,
    min_interval_s=0.5,
    jitter=0.2,
    max_checks=100,
    deadline_s=3600.0,
    check_timeout_s=5.0,
)
RETRY = TransportRetryPolicy(
    initial_backoff_s=0.5, multiplier=2.0, max_backoff_s=10.0, jitter=0.2, max_retries=4
)


def memory_tracing() -> tuple[InMemorySpanExporter, TracerProvider]:
    """A tracer provider that keeps every finished span in memory (no global state)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


def hex_trace(span: ReadableSpan) -> str:
    """The span's trace id as 32 hex digits."""
    assert span.context is not None
    return trace.format_trace_id(span.context.trace_id)


class Countdown(AsyncPlugin[Payload, Payload]):
    """RUNNING for `checks` status checks, then SUCCEEDED (FAILED with JOB_FAILED if `fail`).

    Each status check polls a pretend third-party API inside a span of the plugin's own, the way
    an instrumented plugin would. `slow_checks` lists check numbers whose first attempt sleeps
    `slow_s` (real time) before answering, so the engine's per-check timeout cuts it.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        slow_checks: frozenset[int] = frozenset(),
        slow_s: float = 1.0,
    ) -> None:
        provider = tracer_provider or trace.NoOpTracerProvider()
        self._tracer = provider.get_tracer("tests.countdown")
        self._slow = set(slow_checks)
        self._slow_s = slow_s

    async def initiate_work(self, request: Request[Payload]) -> Response[Payload]:
        left = int(request.data["checks"])
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"left": left}))

    async def check_status(self, request: Request[Payload]) -> Response[Payload]:
        number = request.context.check_number
        if number in self._slow:
            self._slow.discard(number)
            await asyncio.sleep(self._slow_s)
        remote = request.status.remote_status_input if request.status is not None else None
        assert remote is not None
        with self._tracer.start_as_current_span("third-party poll"):
            left = int(remote["left"]) - 1
        if left <= 0 and request.data.get("fail"):
            raise PluginError(message="the remote job failed", code="JOB_FAILED")
        if left <= 0:
            return Response(data={"done": True})
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"left": left}))


async def http_get(url: str, method: str = "GET") -> tuple[int, str]:
    """One real HTTP request; returns the status and the body."""
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        return response.status, await response.text()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text exposition parsed to {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(
    parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(
        value for (sample, have), value in parsed.items() if sample == name and wanted <= have
    )
