"""Sampling: a task is traced whole or not at all, and an unsampled task costs no span per call."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind

from asyncplugin import Request, Response
from asyncplugin.engine import Engine, EngineTelemetry, FakeClock, SqliteStore, TaskOptions
from asyncplugin.engine.telemetry import _follows_parent
from asyncplugin.plugin import PluginServer, PluginTelemetry
from asyncplugin.protocol import TaskState
from tests.observability.conftest import POLICY, RETRY, Countdown, hex_trace, memory_tracing

Payload = dict[str, Any]


class _SeenContexts(Countdown):
    """Countdown noting, on every call, the trace context the plugin's code runs in."""

    def __init__(self, tracer_provider: trace.TracerProvider) -> None:
        super().__init__(tracer_provider)
        self.seen: list[tuple[str, int, bool]] = []  # (task id, trace id, sampled)

    def _note(self, request: Request[Payload]) -> None:
        context = trace.get_current_span().get_span_context()
        self.seen.append((request.context.task_id, context.trace_id, context.trace_flags.sampled))

    async def initiate_work(self, request: Request[Payload]) -> Response[Payload]:
        self._note(request)
        return await super().initiate_work(request)

    async def check_status(self, request: Request[Payload]) -> Response[Payload]:
        self._note(request)
        return await super().check_status(request)


class _CountingParentBased(ParentBased):
    """ParentBased, counting the sampling decisions it is asked for."""

    asked = 0

    def should_sample(self, *args: Any, **kwargs: Any) -> Any:
        self.asked += 1
        return super().should_sample(*args, **kwargs)


class _Alternating(IdGenerator):
    """Trace ids a 50% ratio sampler keeps and drops in turn (random span ids)."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._next = 0

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        self._next += 1
        low = 1 if self._next % 2 else (1 << 64) - 1  # the ratio sampler reads the low 64 bits
        return (self._next << 64) | low


def _provider(sampler: Sampler, **kwargs: Any) -> tuple[InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, **kwargs)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


async def _run(
    tmp_path: Path, provider: TracerProvider, plugin_provider: TracerProvider, tasks: int
) -> tuple[dict[str, str], _SeenContexts]:
    """Runs `tasks` tasks to SUCCEEDED after 3 checks; returns each one's recorded traceparent
    (in submit order) and the plugin."""
    plugin = _SeenContexts(plugin_provider)
    telemetry = PluginTelemetry(tracer_provider=plugin_provider)
    async with PluginServer(plugin, telemetry=telemetry) as server:
        engine = Engine(
            store=SqliteStore(tmp_path / "tasks.db"),
            clock=FakeClock(),
            policy=POLICY,
            retry_policy=RETRY,
            rng=random.Random(5),
            telemetry=EngineTelemetry(tracer_provider=provider),
        )
        async with engine:
            ids = [await engine.submit(server.address, payload={"checks": 3}) for _ in range(tasks)]
            traceparents = {}
            for task_id in ids:
                record = await engine.wait(task_id, timeout_s=3600)
                assert record.state is TaskState.SUCCEEDED
                traceparents[task_id] = record.options.traceparent
    return traceparents, plugin


def _sampled(traceparent: str) -> bool:
    return bool(int(traceparent.split("-")[3], 16) & 1)


async def test_a_task_not_sampled_makes_no_span_but_its_context_still_travels(
    tmp_path: Path,
) -> None:
    """With ParentBased(TraceIdRatioBased(0)) no task is sampled: neither the engine nor the
    plugin exports a span, yet every call reaches the plugin inside the task's trace (same trace
    id, not sampled), so the plugin's own spans and logs follow the engine's decision. The
    engine asks the sampler only at submit: its calls make no span at all."""
    sampler = _CountingParentBased(TraceIdRatioBased(0.0))
    engine_spans, provider = _provider(sampler)
    asked_at_start = 2  # EngineTelemetry probes the sampler once with two trace ids
    plugin_spans, plugin_provider = memory_tracing()  # the SDK default: ParentBased(ALWAYS_ON)
    traceparents, plugin = await _run(tmp_path, provider, plugin_provider, tasks=2)

    assert engine_spans.get_finished_spans() == ()
    assert plugin_spans.get_finished_spans() == ()
    assert sampler.asked == asked_at_start + 2  # one decision per task, at submit
    assert len(plugin.seen) == 2 * 4  # each task: initiation and 3 checks
    for task_id, trace_id, sampled in plugin.seen:
        traceparent = traceparents[task_id]
        assert not _sampled(traceparent)  # decided at submit
        assert f"{trace_id:032x}" == traceparent.split("-")[1]
        assert not sampled


async def test_with_a_ratio_sampler_each_task_is_traced_whole_or_not_at_all(
    tmp_path: Path,
) -> None:
    """ParentBased(TraceIdRatioBased(0.5)), with trace ids it keeps and drops in turn: the kept
    tasks have their submit span and one CLIENT span per call (and the plugin a SERVER span
    under each), the dropped ones no span anywhere."""
    engine_spans, provider = _provider(
        ParentBased(TraceIdRatioBased(0.5)), id_generator=_Alternating()
    )
    plugin_spans, plugin_provider = memory_tracing()
    traceparents, plugin = await _run(tmp_path, provider, plugin_provider, tasks=4)
    ids = list(traceparents)

    by_task: dict[str, list[Any]] = {task_id: [] for task_id in ids}
    for span in engine_spans.get_finished_spans():
        by_task[str(dict(span.attributes or {})["asyncplugin.task.id"])].append(span)
    traced = [task_id for task_id in ids if by_task[task_id]]
    assert traced == ids[0::2]  # the first trace id is kept, the next dropped, and so on
    for task_id in traced:
        spans = by_task[task_id]
        (submit,) = [s for s in spans if s.kind is SpanKind.PRODUCER]
        calls = [s for s in spans if s.kind is SpanKind.CLIENT]
        assert len(calls) == 4
        assert {hex_trace(s) for s in spans} == {hex_trace(submit)}
        assert all(
            s.parent is not None and s.parent.span_id == submit.context.span_id for s in calls
        )
    servers = [s for s in plugin_spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(servers) == 2 * 4
    client_ids = {
        s.context.span_id for s in engine_spans.get_finished_spans() if s.kind is SpanKind.CLIENT
    }
    assert all(s.parent is not None and s.parent.span_id in client_ids for s in servers)
    assert {sampled for _, _, sampled in plugin.seen} == {True, False}


async def test_a_sampler_that_keeps_children_of_unsampled_parents_still_gets_every_call(
    tmp_path: Path,
) -> None:
    """A sampler that would record a call although the task was not sampled at submit (here:
    no root is sampled, every child of an unsampled parent is) is asked for every call, as
    before: each call is a CLIENT span under the (unrecorded) submit span's context."""
    sampler = ParentBased(ALWAYS_OFF, remote_parent_not_sampled=ALWAYS_ON)
    engine_spans, provider = _provider(sampler)
    _plugin_spans, plugin_provider = memory_tracing()
    traceparents, _plugin = await _run(tmp_path, provider, plugin_provider, tasks=1)

    (traceparent,) = traceparents.values()
    assert not _sampled(traceparent)
    calls = engine_spans.get_finished_spans()
    assert len(calls) == 4
    assert all(s.kind is SpanKind.CLIENT for s in calls)
    assert {hex_trace(s) for s in calls} == {traceparent.split("-")[1]}
    assert {f"{s.parent.span_id:016x}" for s in calls if s.parent} == {traceparent.split("-")[2]}


@pytest.mark.parametrize(
    ("provider", "follows"),
    [
        pytest.param(TracerProvider(sampler=ParentBased(ALWAYS_ON)), True, id="sdk-default"),
        pytest.param(
            TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1))), True, id="parent-ratio"
        ),
        pytest.param(TracerProvider(sampler=ALWAYS_ON), False, id="always-on"),
        pytest.param(TracerProvider(sampler=TraceIdRatioBased(0.1)), False, id="ratio-alone"),
        pytest.param(
            TracerProvider(sampler=ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)),
            False,
            id="keeps-unsampled-children",
        ),
        pytest.param(
            TracerProvider(
                sampler=ParentBased(ALWAYS_ON, remote_parent_not_sampled=TraceIdRatioBased(0.5))
            ),
            False,
            id="ratio-for-unsampled-children",
        ),
        pytest.param(trace.NoOpTracerProvider(), False, id="no-sdk"),
    ],
)
def test_which_samplers_let_unsampled_tasks_skip_their_spans(
    provider: trace.TracerProvider, follows: bool
) -> None:
    """Only a sampler that drops every child of an unsampled remote parent takes the fast path."""
    assert _follows_parent(provider) is follows


async def test_a_given_unsampled_traceparent_is_followed(tmp_path: Path) -> None:
    """A task submitted with a caller's unsampled traceparent is not traced (the SDK default
    sampler follows the parent), and its calls carry the caller's trace id."""
    engine_spans, provider = memory_tracing()
    plugin_spans, plugin_provider = memory_tracing()
    plugin = _SeenContexts(plugin_provider)
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    async with PluginServer(
        plugin, telemetry=PluginTelemetry(tracer_provider=plugin_provider)
    ) as server:
        engine = Engine(
            store=SqliteStore(tmp_path / "tasks.db"),
            clock=FakeClock(),
            policy=POLICY,
            telemetry=EngineTelemetry(tracer_provider=provider),
        )
        async with engine:
            record = await engine.invoke(
                server.address,
                payload={"checks": 2},
                options=TaskOptions(traceparent=given),
                timeout_s=3600,
            )
    assert record.state is TaskState.SUCCEEDED
    assert engine_spans.get_finished_spans() == ()
    assert plugin_spans.get_finished_spans() == ()
    assert {(trace_id, sampled) for _, trace_id, sampled in plugin.seen} == {
        (0x0AF7651916CD43DD8448EB211C80319C, False)
    }
