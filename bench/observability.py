"""What tracing and metrics cost: status checks/s with telemetry on against off, same run.

- engine: `Engine` + MemoryStore polling 4*C RUNNING tasks against the bare plugin server (as in
  section 1), with no telemetry and with `EngineTelemetry`: the Prometheus metrics (scraped
  once a second) and an SDK tracer provider with a `BatchSpanProcessor` (the production one)
  whose exporter drops the spans, so the figure is the instrumentation's own cost (span
  creation, ending and batching, the export thread's CPU included), not a collector's
  network. Four settings:
  - off;
  - metrics + 10% of tasks traced, `ParentBased(TraceIdRatioBased(0.1))`, the production
    setting docs/observability.md recommends: the decision is taken at submit and recorded in
    the task's traceparent, so a task is traced whole or not at all;
  - metrics + every task traced (`ALWAYS_ON`);
  - metrics alone.
  The four engines run at once, one process each, and take turns (`observability_turns`): the
  settings are compared within seconds of each other, under the same load; 8 rounds of fresh
  processes (1 with --quick, N with `--reps N`), medians. The span queue is sized so no span is
  dropped for lack of room (the default 2,048 can overflow when the export thread is starved
  on a loaded machine, which would make tracing look cheaper than it is); the spans exported
  and dropped are counted to show it.
- SDK server: the raw client against the SDK `PluginServer`, without and with `PluginTelemetry`
  (the gRPC instrumentation's server spans, dropped the same way, and the server's metrics).
- in isolation: the telemetry's own CPU per check (the engine's wrappers and change hook
  driven by hand, no engine, no gRPC), and the OpenTelemetry SDK's own cost for one call span:
  the floor of tracing a check.

On a shared machine the checks/s move with the load; the engine's CPU time per check
(`time.process_time` in the engine's process, all its threads) is steadier, so it is given too,
with the ratio off/on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from ._common import Config, PluginProcess, Row, Target, in_child, log, median

CONCURRENCY = 64
RATIO = 0.1
"""The share of tasks traced in the production setting."""

SPAN_QUEUE = 1 << 16
"""Room for every span the batch processor holds between exports (see the module docstring)."""

_SPANS = {"exported": 0, "dropped": 0}
"""Spans exported, and dropped by the batch processor for lack of room, in this process."""

_PROVIDERS: list[Any] = []


class _CountDrops(logging.Handler):
    """Counts the batch processor's "Queue full, dropping Span" warnings (one per span)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Queue full"):
            _SPANS["dropped"] += 1


def tracer_provider(*, sampled: bool = False, ratio: float = RATIO) -> Any:
    """An SDK tracer provider batching spans to an exporter that drops them (counted): every
    trace, or (sampled) `ratio` of them, decided at the root and followed by children."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            _SPANS["exported"] += len(spans)
            return SpanExportResult.SUCCESS

    sdk_log = logging.getLogger("opentelemetry.sdk")
    if not any(isinstance(handler, _CountDrops) for handler in sdk_log.handlers):
        sdk_log.addHandler(_CountDrops())
    sampler = ParentBased(TraceIdRatioBased(ratio)) if sampled else ALWAYS_ON
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=SPAN_QUEUE))
    _PROVIDERS.append(provider)
    return provider


def engine_telemetry(
    *, sampled: bool = False, traced: bool = True
) -> tuple[Any, Callable[[], bytes]]:
    """An EngineTelemetry measuring and (if `traced`) tracing every task or (sampled) RATIO of
    them; and its scrape."""
    from prometheus_client import CollectorRegistry, generate_latest

    from asyncplugin.engine import EngineTelemetry

    registry = CollectorRegistry()
    provider = tracer_provider(sampled=sampled) if traced else None
    telemetry = EngineTelemetry(tracer_provider=provider, registry=registry)
    return telemetry, lambda: generate_latest(registry)


def span_counts() -> dict[str, float]:
    """The spans exported and dropped in this process, once every provider has flushed."""
    for provider in _PROVIDERS:
        provider.force_flush()
    return {"exported": float(_SPANS["exported"]), "dropped": float(_SPANS["dropped"])}


def setting_off() -> tuple[Any, Callable[[], bytes] | None, Callable[[], dict[str, float]]]:
    """No telemetry (see `observability_turns.Setting`)."""
    return None, None, span_counts


def setting_sampled() -> tuple[Any, Callable[[], bytes] | None, Callable[[], dict[str, float]]]:
    """Metrics and RATIO of tasks traced (the production setting)."""
    return (*engine_telemetry(sampled=True), span_counts)


def setting_all() -> tuple[Any, Callable[[], bytes] | None, Callable[[], dict[str, float]]]:
    """Metrics and every task traced."""
    return (*engine_telemetry(), span_counts)


def setting_metrics() -> tuple[Any, Callable[[], bytes] | None, Callable[[], dict[str, float]]]:
    """Metrics alone."""
    return (*engine_telemetry(traced=False), span_counts)


SETTINGS = {
    "off": setting_off,
    "sampled": setting_sampled,
    "all": setting_all,
    "metrics": setting_metrics,
}


def plugin_telemetry() -> Any:
    """A PluginTelemetry tracing and measuring everything."""
    from prometheus_client import CollectorRegistry

    from asyncplugin.plugin import PluginTelemetry

    return PluginTelemetry(tracer_provider=tracer_provider(), registry=CollectorRegistry())


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f}"


def run(config: Config) -> tuple[list[Row], dict[str, Any]]:
    """Runs the section; returns its rows and the raw runs."""
    from .observability_turns import Turns
    from .throughput import raw_client

    quick = config.quick
    rounds = config.reps if config.reps is not None else 1 if quick else 8
    window_s = 0.5 if quick else 2.0
    runs: dict[str, list[dict[str, float]]] = {
        kind: [] for kind in (*SETTINGS, "sdk_off", "sdk_on")
    }
    spans: dict[str, dict[str, float]] = {
        kind: {"exported": 0.0, "dropped": 0.0} for kind in SETTINGS
    }
    load = {"start": _load()}
    with PluginProcess("bare") as bare:
        for round_ in range(rounds):
            log(f"observability: round {round_ + 1}/{rounds}, engines taking turns")
            with Turns(bare.target, CONCURRENCY, SETTINGS) as turns:
                kinds = list(SETTINGS)
                for kind in kinds[round_ % 4 :] + kinds[: round_ % 4]:
                    runs[kind].append(turns.measure(kind, window_s))
            for kind, counts in turns.spans.items():
                for key, value in counts.items():
                    spans[kind][key] += value
    reps = config.repetitions()
    warmup_s, sdk_window_s = (0.2, 0.5) if quick else (0.7, 2.5)
    args = (CONCURRENCY, warmup_s, sdk_window_s)
    with PluginProcess("sdk") as sdk, PluginProcess("sdk-telemetry") as traced:
        for rep in range(reps):
            log(f"observability: SDK server, repetition {rep + 1}/{reps}")
            runs["sdk_off"].append(in_child(raw_client, sdk.target, *args, sdk.pid, "asyncio"))
            runs["sdk_on"].append(in_child(raw_client, traced.target, *args, traced.pid, "asyncio"))
    log("observability: the telemetry's own work per check, in isolation")
    steps, isolated_reps = (2_000, 2) if quick else (20_000, 9)
    alone = in_child(isolated, steps, isolated_reps)
    floor = in_child(span_floor, steps, isolated_reps)
    load["end"] = _load()
    rows = _rows(runs, spans, load) + _isolated_rows(alone, floor)
    data = {
        "runs": runs,
        "spans": spans,
        "isolated_us": alone,
        "span_floor_us": floor,
        "load_average": load,
    }
    return rows, data


def _isolated_rows(alone: dict[str, list[float]], floor: list[float]) -> list[Row]:
    """The telemetry's own CPU per check (minus the same steps without it), and the SDK's."""
    off = median(alone["off"])
    rows = []
    for kind, label in (
        ("metrics", "metrics only"),
        ("unsampled", "metrics + a task not sampled"),
        ("traced", "metrics + a task traced"),
    ):
        rows.append(
            Row(
                "6",
                f"telemetry's own CPU per check in isolation, {label}",
                median(alone[kind]) - off,
                "us",
                note="the engine's wrappers and change hook around one check, no engine, no "
                "gRPC; minus the same steps without telemetry",
            )
        )
    rows.append(
        Row(
            "6",
            "OpenTelemetry SDK alone: one call span, its attributes, traceparent, batched",
            median(floor),
            "us",
            note="the floor of tracing a check: what the SDK itself costs per span",
        )
    )
    return rows


def _rows(
    runs: dict[str, list[dict[str, float]]],
    spans_: dict[str, dict[str, float]],
    load: dict[str, str],
) -> list[Row]:
    def rate(kind: str) -> float:
        return median([r["rate"] for r in runs[kind]])

    def cpu(kind: str) -> float:
        return median([r["client_cpu_us"] for r in runs[kind]])

    def paired(kind: str, base: str, key: str) -> float:
        pairs = zip(runs[kind], runs[base], strict=True)
        if key == "rate":
            return median([a["rate"] / b["rate"] for a, b in pairs])
        return median([b[key] / a[key] for a, b in pairs])  # off / on: how many times less

    def spans(kind: str) -> str:
        counts = spans_[kind]
        return f"{counts['exported']:,.0f} spans exported, {counts['dropped']:,.0f} dropped"

    def per_cpu_s(kind: str) -> float:
        return median([1e6 / r["client_cpu_us"] for r in runs[kind]])

    settings = (
        ("sampled", f"metrics + {RATIO:.0%} of tasks traced", "ParentBased(TraceIdRatioBased"),
        ("all", "metrics + every task traced", "ALWAYS_ON"),
        ("metrics", "metrics only", ""),
    )
    rows = []
    rounds = len(runs["off"])
    for kind, label, sampler in settings:
        # The figure, checks/s with telemetry on against off, as one core sustains it
        # (1 / CPU per check): the wall-clock rate of a window is the CPU share the engine got
        # in it as much as its cost, and on a shared machine that share moves from window to
        # window. Judged on the median of the rounds' own ratios (each round's settings ran
        # seconds apart), which is steadier than the ratio of the medians given beside it.
        on, off = per_cpu_s(kind), per_cpu_s("off")
        note = f"{on:,.0f}/s on, {off:,.0f}/s off (medians; their ratio {on / off:.2f}x)"
        if sampler:
            sampler_text = f"{sampler}({RATIO}))" if kind == "sampled" else sampler
            note += f"; {sampler_text}; {spans(kind)}"
        rows.append(
            Row(
                "6",
                f"engine checks per CPU-second on/off, {label} ({rounds} rounds)",
                round(paired(kind, "off", "client_cpu_us"), 2),
                "x",
                target=Target(">= 0.90x", "value", ">=", 0.9) if sampler else None,
                note=note,
            )
        )
    for kind, label, _ in settings:
        rows.append(
            Row(
                "6",
                f"engine CPU per check, {label}",
                cpu(kind),
                "us",
                "same, telemetry off",
                cpu("off"),
                ratio_is_less=True,
                note=f"load average {load['start']} at start, {load['end']} at end",
            )
        )
    for kind, label, _ in settings:
        rows.append(
            Row(
                "6",
                f"engine+MemoryStore checks/s (wall clock), {label}, {CONCURRENCY} in flight",
                rate(kind),
                "/s",
                "same, telemetry off",
                rate("off"),
                note=f"paired median {paired(kind, 'off', 'rate'):.2f}x; moves with the CPU "
                "share each window got",
            )
        )
    rows.append(
        Row(
            "6",
            f"SDK PluginServer calls/s, tracing+metrics on, {CONCURRENCY} in flight",
            rate("sdk_on"),
            "/s",
            "same, telemetry off",
            rate("sdk_off"),
            note=f"paired-ratio median {paired('sdk_on', 'sdk_off', 'rate'):.2f}x",
        )
    )
    return rows


# -- the telemetry's own work per check, in isolation -------------------------------------------

ISOLATED_KINDS = ("off", "metrics", "unsampled", "traced")
"""No telemetry; metrics alone; metrics + a task not sampled; metrics + a task traced."""


def isolated(steps: int, reps: int) -> dict[str, list[float]]:
    """Child process: CPU per status check of the engine's telemetry alone, in microseconds.

    One step is what the engine does around one status check, minus the engine: the handler
    wrapper, the transport wrapper around a call that returns at once, the timed store write
    and the change hook with the recorded check (coroutines driven by hand, each step in a
    context of its own as the scheduler's tasks have; no event loop, no gRPC). Each setting
    runs `steps` steps over 256 tasks, `reps` times, interleaved; "off" is the same steps
    without telemetry, to subtract. Tracing uses the same dropping exporter as the engine rows
    (its export thread's CPU is counted: `process_time`).
    """
    import contextvars
    import dataclasses
    import time

    from prometheus_client import CollectorRegistry

    from asyncplugin.engine import (
        CallKind,
        CheckOutcome,
        CheckRecord,
        EngineTelemetry,
        FakeClock,
        TaskOptions,
        TaskRecord,
        TaskUpdate,
    )
    from asyncplugin.engine.telemetry import EngineLoad
    from asyncplugin.protocol import TaskState
    from asyncplugin.v1 import plugin_pb2

    from .throughput import METHOD

    target = "127.0.0.1:50051"

    class Answer:
        async def call(
            self, target: str, method: str, request: bytes, *, timeout_s: float, metadata: Any = ()
        ) -> bytes:
            return b""

        async def close(self) -> None:
            return None

    class Store:
        async def create(self, record: Any) -> None:
            return None

        async def record(self, record: Any, *checks: Any) -> None:
            return None

    def telemetry(kind: str) -> EngineTelemetry | None:
        if kind == "off":
            return None
        provider = None
        if kind != "metrics":
            provider = tracer_provider(sampled=kind == "unsampled", ratio=0.0)
        return EngineTelemetry(tracer_provider=provider, registry=CollectorRegistry())

    def one(kind: str) -> float:
        telemetry_ = telemetry(kind)
        records: dict[str, TaskRecord] = {}
        requests: dict[str, Any] = {}
        for i in range(256):
            task_id = f"{i:032x}"
            options = TaskOptions()
            if telemetry_ is not None:
                options = telemetry_.submitting(task_id, target, METHOD, options)
            records[task_id] = TaskRecord(
                task_id=task_id,
                target=target,
                method=METHOD,
                state=TaskState.RUNNING,
                payload=b"{}",
                idempotency_key=task_id,
                options=options,
                create_time=1000.0,
                update_time=1000.0,
                next_check_time=999.999,
            )
            request = plugin_pb2.InvokeRequest(is_status_check=True, data=b"{}")
            request.context.task_id = request.context.idempotency_key = task_id
            request.status.remote_status_input.update({"job_id": task_id})
            requests[task_id] = request
        transport: Any = Answer()
        store: Any = Store()
        hook = None
        wrap: Any = lambda handler: handler  # noqa: E731
        if telemetry_ is not None:
            load = EngineLoad(states={}, calls_limit=64, target_limit=64)
            telemetry_.bind(lookup=records.get, clock=FakeClock(1000.0), load=lambda: load)
            transport = telemetry_.wrap_transport(transport)
            store = telemetry_.wrap_store(store)
            wrap = telemetry_.wrap_handler
            hook = telemetry_.on_change

        async def step(task_id: str) -> None:
            record = records[task_id]
            number = record.check_count + 1
            request = requests[task_id]
            request.context.check_number = number
            await transport.call(
                target,
                METHOD,
                request.SerializeToString(),
                timeout_s=10.0,
                metadata=record.options.call_metadata(),
            )
            check = CheckRecord(
                task_id=task_id,
                kind=CallKind.CHECK,
                check_number=number,
                started_time=1000.0,
                finished_time=1000.0,
                outcome=CheckOutcome.RUNNING,
                interval_s=1.0,
                reason="backoff 1*2^1=2s jitter -2% -> 1.96s",
                next_check_time=1001.0,
            )
            record = records[task_id] = dataclasses.replace(record, check_count=number)
            await store.record(record, check)
            if hook is not None:
                hook(TaskUpdate(record=record, checks=(check,)))

        def fire(task_id: str) -> None:
            coroutine = handler(task_id)
            try:  # noqa: SIM105 - contextlib.suppress would add its own cost to each step
                coroutine.send(None)
            except StopIteration:
                pass

        handler = wrap(step)
        ids = list(records)
        started = time.process_time()
        for i in range(steps):
            # In a context of its own, as the scheduler runs each step in an asyncio task.
            contextvars.copy_context().run(fire, ids[i & 255])
        for provider in _PROVIDERS:
            provider.force_flush()
        spent = time.process_time() - started
        if telemetry_ is not None:
            telemetry_.unbind()
        _PROVIDERS.clear()
        return spent / steps * 1e6

    results: dict[str, list[float]] = {kind: [] for kind in ISOLATED_KINDS}
    for rep in range(reps):
        for kind in ISOLATED_KINDS[rep % 4 :] + ISOLATED_KINDS[: rep % 4]:
            results[kind].append(one(kind))
    return results


def span_floor(spans: int, reps: int) -> list[float]:
    """Child process: CPU of one call span through the OpenTelemetry SDK alone, in microseconds:
    started with the call's attributes, its trace context formatted for the plugin, the outcome's
    attributes set and the span ended (batched to the dropping exporter)."""
    import time

    from opentelemetry.trace import SpanKind

    from asyncplugin.observability import inject_span, parent_from_traceparent

    tracer = tracer_provider().get_tracer("bench")
    parent = parent_from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    start_attributes = {
        "rpc.system": "grpc",
        "rpc.service": "asyncplugin.v1.PluginService",
        "rpc.method": "Invoke",
        "server.address": "127.0.0.1",
        "server.port": 50051,
        "asyncplugin.task.id": "0af7651916cd43dd8448eb211c80319c",
        "asyncplugin.call.kind": "CHECK",
        "asyncplugin.check.number": 7,
        "asyncplugin.transport.retries": 0,
        "asyncplugin.check.lateness_s": 0.0004,
    }
    end_attributes = {
        "asyncplugin.call.outcome": "RUNNING",
        "asyncplugin.task.state": "RUNNING",
        "rpc.grpc.status_code": 0,
        "asyncplugin.next_check.interval_s": 1.96,
        "asyncplugin.next_check.reason": "backoff 1*2^1=2s jitter -2% -> 1.96s",
    }
    results = []
    for _ in range(reps):
        started = time.process_time()
        for _ in range(spans):
            span = tracer.start_span(
                "asyncplugin.v1.PluginService/Invoke",
                context=parent,
                kind=SpanKind.CLIENT,
                attributes=dict(start_attributes),
            )
            inject_span(span)
            span.set_attributes(end_attributes)
            span.end()
        for provider in _PROVIDERS:
            provider.force_flush()
        results.append((time.process_time() - started) / spans * 1e6)
    return results
