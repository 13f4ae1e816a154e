"""What tracing and metrics cost: status checks/s with telemetry on against off, same run.

- engine: `Engine` + MemoryStore polling 4*C RUNNING tasks against the bare plugin server (as in
  section 1), with no telemetry, then with `EngineTelemetry`: an SDK tracer provider whose
  spans are batched to an exporter that drops them (so the figure is the instrumentation's own
  cost, not a collector's network), and the Prometheus metrics, scraped once a second. Two
  samplers: every task traced, and 10% of tasks traced (ParentBased(TraceIdRatioBased(0.1)):
  the decision is taken at submit and recorded in the task's traceparent, so a task is traced
  whole or not at all).
- SDK server: the raw client against the SDK `PluginServer`, without and with `PluginTelemetry`
  (the gRPC instrumentation's server spans, dropped the same way, and the server's metrics).

Runs alternate between off and on and repeat; the table quotes medians and the median of the
per-repetition ratios.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._common import Config, PluginProcess, Row, Target, in_child, log, median

CONCURRENCY = 64


def tracer_provider(*, sampled: bool = False) -> Any:
    """An SDK tracer provider batching spans to a dropping exporter; every trace, or (sampled)
    10% of them."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1)) if sampled else ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return provider


def engine_telemetry(*, sampled: bool = False) -> tuple[Any, Callable[[], bytes]]:
    """An EngineTelemetry tracing (every task, or 10%) and measuring, and its scrape."""
    from prometheus_client import CollectorRegistry, generate_latest

    from asyncplugin.engine import EngineTelemetry

    registry = CollectorRegistry()
    provider = tracer_provider(sampled=sampled)
    telemetry = EngineTelemetry(tracer_provider=provider, registry=registry)
    return telemetry, lambda: generate_latest(registry)


def plugin_telemetry() -> Any:
    """A PluginTelemetry tracing and measuring everything."""
    from prometheus_client import CollectorRegistry

    from asyncplugin.plugin import PluginTelemetry

    return PluginTelemetry(tracer_provider=tracer_provider(), registry=CollectorRegistry())


def run(config: Config) -> tuple[list[Row], dict[str, Any]]:
    """Runs the section; returns its rows and the raw runs."""
    quick = config.quick
    from .throughput import engine_client, raw_client

    reps = config.repetitions()
    warmup_s, window_s = (0.2, 0.5) if quick else (0.7, 2.5)
    args = (CONCURRENCY, warmup_s, window_s)
    runs: dict[str, list[dict[str, float]]] = {
        "off": [],
        "on": [],
        "sampled": [],
        "sdk_off": [],
        "sdk_on": [],
    }
    with (
        PluginProcess("bare") as bare,
        PluginProcess("sdk") as sdk,
        PluginProcess("sdk-telemetry") as traced,
    ):
        for rep in range(reps):
            log(f"observability: repetition {rep + 1}/{reps} at {CONCURRENCY} in flight")
            runs["off"].append(
                in_child(engine_client, bare.target, "memory", *args, bare.pid, "asyncio")
            )
            for kind in ("on", "sampled"):
                telemetry = "all" if kind == "on" else "sampled"
                runs[kind].append(
                    in_child(
                        engine_client, bare.target, "memory", *args, bare.pid, "asyncio", telemetry
                    )
                )
            runs["sdk_off"].append(in_child(raw_client, sdk.target, *args, sdk.pid, "asyncio"))
            runs["sdk_on"].append(in_child(raw_client, traced.target, *args, traced.pid, "asyncio"))

    def rate(kind: str) -> float:
        return median([r["rate"] for r in runs[kind]])

    def paired(kind: str, base: str) -> float:
        return median([a["rate"] / b["rate"] for a, b in zip(runs[kind], runs[base], strict=True)])

    rows = [
        Row(
            "6",
            f"engine+MemoryStore checks/s, tracing+metrics on, {CONCURRENCY} in flight",
            rate("on"),
            "/s",
            "same, telemetry off",
            rate("off"),
            target=Target(">= 0.90x off", "ratio", ">=", 0.9),
            note=f"paired-ratio median {paired('on', 'off'):.2f}x; every task traced",
        ),
        Row(
            "6",
            f"engine+MemoryStore checks/s, metrics + 10% of tasks traced, {CONCURRENCY} in flight",
            rate("sampled"),
            "/s",
            "same, telemetry off",
            rate("off"),
            target=Target(">= 0.90x off", "ratio", ">=", 0.9),
            note=f"paired-ratio median {paired('sampled', 'off'):.2f}x; "
            "ParentBased(TraceIdRatioBased(0.1))",
        ),
        Row(
            "6",
            f"SDK PluginServer calls/s, tracing+metrics on, {CONCURRENCY} in flight",
            rate("sdk_on"),
            "/s",
            "same, telemetry off",
            rate("sdk_off"),
            note=f"paired-ratio median {paired('sdk_on', 'sdk_off'):.2f}x",
        ),
    ]

    def cpu(kind: str) -> float:
        return median([r["client_cpu_us"] for r in runs[kind]])

    for kind, label in (("on", "every task traced"), ("sampled", "10% of tasks traced")):
        rows.append(
            Row(
                "6",
                f"engine client CPU per check, metrics + {label}",
                cpu(kind),
                "us",
                "same, telemetry off",
                cpu("off"),
                note="CPU time is steadier than the rate on a loaded machine",
            )
        )
    return rows, {"runs": runs}
