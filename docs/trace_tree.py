"""Renders one task's trace as a text tree: `python docs/trace_tree.py` writes docs/trace_tree.txt.

A plugin (RUNNING for 3 checks, then SUCCEEDED; the first attempt of check 1 is slower than
the per-check timeout) is served with tracing, and an engine on a SQLite store and a fake clock
drives a task through it; the engine is stopped after check 2 and a second engine on the same
file finishes the task. Every span goes to in-memory exporters; the tree is built from their
parent links, so it shows exactly what a tracing backend would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from asyncplugin import Request, Response, Task, TaskState
from asyncplugin.engine import (
    Engine,
    EngineTelemetry,
    FakeClock,
    PollingPolicy,
    SqliteStore,
    TaskUpdate,
)
from asyncplugin.plugin import AsyncPlugin, PluginServer, PluginTelemetry

OUT = Path(__file__).with_name("trace_tree.txt")
Payload = dict[str, Any]


class Job(AsyncPlugin[Payload, Payload]):
    """RUNNING for `checks` checks, then SUCCEEDED; check 1's first attempt is slow."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._slow = True

    async def initiate_work(self, request: Request[Payload]) -> Response[Payload]:
        with self._tracer.start_as_current_span("POST /v1/jobs (third-party API)"):
            left = int(request.data["checks"])
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"left": left}))

    async def check_status(self, request: Request[Payload]) -> Response[Payload]:
        if request.context.check_number == 1 and self._slow:
            self._slow = False
            await asyncio.sleep(0.6)  # longer than the engine's 0.3 s per-check timeout
        remote = request.status.remote_status_input if request.status is not None else None
        assert remote is not None
        with self._tracer.start_as_current_span("GET /v1/jobs/j-42 (third-party API)"):
            left = int(remote["left"]) - 1
        if left <= 0:
            return Response(data={"words": 1234})
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"left": left}))


def _provider(name: str, exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


async def run() -> list[ReadableSpan]:
    """Runs the scenario; returns every span, engine and plugin, in the order they ended."""
    exporter = InMemorySpanExporter()
    plugin_provider = _provider("plugin", exporter)
    policy = PollingPolicy(initial_interval_s=1.0, multiplier=2.0, jitter=0.1, check_timeout_s=0.3)
    clock = FakeClock()
    job = Job(plugin_provider.get_tracer("example.plugin"))
    telemetry = PluginTelemetry(tracer_provider=plugin_provider)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tasks.db"
        async with PluginServer(job, telemetry=telemetry) as server:
            hold = contextlib.ExitStack()
            reached = asyncio.Event()

            def stop_after_check_2(update: TaskUpdate) -> None:
                if update.record.check_count == 2 and not reached.is_set():
                    hold.enter_context(clock.busy())
                    reached.set()

            first = Engine(
                store=SqliteStore(path),
                clock=clock,
                policy=policy,
                rng=random.Random(4),
                on_change=stop_after_check_2,
                telemetry=EngineTelemetry(tracer_provider=_provider("engine-1", exporter)),
            )
            async with first:
                task_id = await first.submit(server.address, payload={"checks": 3})
                await reached.wait()
            second = Engine(
                store=SqliteStore(path),
                clock=clock,
                policy=policy,
                rng=random.Random(5),
                telemetry=EngineTelemetry(tracer_provider=_provider("engine-2", exporter)),
            )
            async with second:
                hold.close()
                await second.wait(task_id, timeout_s=3600)
    return list(exporter.get_finished_spans())


def _label(span: ReadableSpan) -> str:
    attrs = dict(span.attributes or {})
    service = span.resource.attributes.get("service.name", "?")
    kind = span.kind.name
    text = f"{span.name}  [{service}, {kind}]"
    if "asyncplugin.call.kind" in attrs:
        text += f" {attrs['asyncplugin.call.kind']} #{attrs['asyncplugin.check.number']}"
    if "asyncplugin.call.outcome" in attrs:
        text += f" -> {attrs['asyncplugin.call.outcome']}"
    if "rpc.grpc.status_code" in attrs and attrs["rpc.grpc.status_code"] != 0:
        text += f" (grpc status {attrs['rpc.grpc.status_code']})"
    if attrs.get("asyncplugin.transport.retries"):
        text += f", retry {attrs['asyncplugin.transport.retries']}"
    if "asyncplugin.next_check.reason" in attrs:
        text += f"; next: {attrs['asyncplugin.next_check.reason']}"
    if span.kind is trace.SpanKind.PRODUCER:
        text += f" task={attrs.get('asyncplugin.task.id', '')}"
    return text


def render(spans: list[ReadableSpan]) -> str:
    """The spans as a tree (children in start order), one trace after another."""
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {span.context.span_id for span in spans if span.context is not None}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)
    lines: list[str] = []

    def walk(span: ReadableSpan, prefix: str, last: bool, root: bool) -> None:
        lines.append(("" if root else prefix + ("└─ " if last else "├─ ")) + _label(span))
        assert span.context is not None
        kids = children.get(span.context.span_id, [])
        inner = "" if root else prefix + ("   " if last else "│  ")
        for index, kid in enumerate(kids):
            walk(kid, inner, index == len(kids) - 1, False)

    for root in children.get(None, []):
        assert root.context is not None
        lines.append(f"trace {trace.format_trace_id(root.context.trace_id)}")
        walk(root, "", True, True)
    return "\n".join(lines) + "\n"


def main() -> int:
    """Writes docs/trace_tree.txt and prints it."""
    text = render(asyncio.run(run()))
    OUT.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
