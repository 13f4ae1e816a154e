"""The engine's Prometheus metrics: what they are named, what they count, and their labels.

Imported only when an `EngineTelemetry` is given a registry (prometheus-client is the
`[metrics]` extra). Counters and histograms are updated as calls return and changes are
recorded, as plain numbers that become metric families only when Prometheus scrapes (see
`asyncplugin.observability.counting`); the gauges (tasks by state, calls in flight, each
target's bulkhead) are read from the engine then too, so they cost nothing between scrapes.

Labels are bounded: `plugin` is the task's `plugin_id`, or its target when it has none (one value
per deployed plugin); `kind`, `outcome` and `state` are enum names; `code` is an error code, kept
only if it looks like one (UPPER_SNAKE, at most 64 characters; anything else is counted as
`OTHER`, so a plugin cannot blow up the series count with codes made of ids). No task id is ever
a label: a task is found from its trace, or with `asyncplugin tasks show`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from asyncplugin.observability import DURATION_BUCKETS_S
from asyncplugin.observability.counting import CounterSeries, HistogramSeries, SeriesCollector

if TYPE_CHECKING:
    from .telemetry import EngineLoad

__all__ = ["STORE_BUCKETS_S", "EngineMetrics", "code_label"]

STORE_BUCKETS_S: Final = (
    0.00005,
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
)
"""Store writes: tens of microseconds (memory, a SQLite WAL commit) to seconds (a stalled disk)."""

_CODE: Final = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def code_label(code: str) -> str:
    """An error code as a label value: itself if it looks like a code, else "OTHER"."""
    if not code:
        return ""
    return code if _CODE.fullmatch(code) else "OTHER"


class EngineMetrics:
    """The engine's metrics, registered in `registry` (one engine's telemetry per registry).

    Counters and histograms are plain numbers (`asyncplugin.observability.counting`), updated
    by the telemetry on the engine's loop and turned into metric families when Prometheus
    scrapes; the gauges are read from the engine then too.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.submitted = CounterSeries(
            "asyncplugin_engine_tasks_submitted", "Tasks submitted to this engine.", ["plugin"]
        )
        self.finished = CounterSeries(
            "asyncplugin_engine_tasks_finished",
            "Tasks that reached SUCCEEDED, FAILED or CANCELLED, by outcome and error code.",
            ["plugin", "outcome", "code"],
        )
        self.calls = CounterSeries(
            "asyncplugin_engine_calls",
            "Calls to plugins (INITIATE, CHECK, CANCEL) by the outcome recorded for them.",
            ["plugin", "kind", "outcome"],
        )
        self.call_duration = HistogramSeries(
            "asyncplugin_engine_call_duration_seconds",
            "How long a call to a plugin took, from sending to its answer or error.",
            ["plugin", "kind"],
            DURATION_BUCKETS_S,
        )
        self.lateness = HistogramSeries(
            "asyncplugin_engine_check_lateness_seconds",
            "How long after its scheduled time a call was sent (engine clock).",
            ["kind"],
            DURATION_BUCKETS_S,
        )
        self.retries = CounterSeries(
            "asyncplugin_engine_transport_retries",
            "Calls that failed in transport and were scheduled again, by gRPC code.",
            ["plugin", "code"],
        )
        self.store_writes = HistogramSeries(
            "asyncplugin_engine_store_write_duration_seconds",
            "How long a store write took (create: a new task; record: a change).",
            ["operation"],
            STORE_BUCKETS_S,
        )
        self.completions = CounterSeries(
            "asyncplugin_engine_completions",
            "Completions (CompleteTask) and progress reports (UpdateTask) pushed by plugins, "
            "accepted or refused.",
            ["method", "result"],
        )
        for method in ("CompleteTask", "UpdateTask"):
            for result in ("accepted", "refused"):
                self.completions.touch((method, result))
        registry.register(
            SeriesCollector(
                [
                    self.submitted,
                    self.finished,
                    self.calls,
                    self.call_duration,
                    self.lateness,
                    self.retries,
                    self.store_writes,
                    self.completions,
                ]
            )
        )
        self.load = _LoadCollector()
        registry.register(self.load)


class _LoadCollector(Collector):
    """The scrape-time gauges, read through `source` (None: the engine is not running)."""

    def __init__(self) -> None:
        self.source: Callable[[], EngineLoad] | None = None
        self.calls_in_flight: Callable[[], int] = lambda: 0

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(None))

    def collect(self) -> Iterator[Metric]:
        source = self.source
        return iter(self._families(source() if source is not None else None))

    def _families(self, load: EngineLoad | None) -> list[Metric]:
        tasks = GaugeMetricFamily(
            "asyncplugin_engine_tasks",
            "Unfinished tasks this engine drives, by plugin and state (WAITING, RUNNING).",
            labels=["plugin", "state"],
        )
        oldest = GaugeMetricFamily(
            "asyncplugin_engine_oldest_task_age_seconds",
            "Age of the oldest unfinished task of each plugin (since it was submitted).",
            labels=["plugin"],
        )
        in_flight = GaugeMetricFamily(
            "asyncplugin_engine_calls_in_flight", "Calls to plugins in flight now."
        )
        limit = GaugeMetricFamily(
            "asyncplugin_engine_calls_limit", "The most calls in flight at once (all targets)."
        )
        target_running = GaugeMetricFamily(
            "asyncplugin_engine_target_calls_in_flight",
            "Calls in flight to each target: the slots its bulkhead holds.",
            labels=["target"],
        )
        target_limit = GaugeMetricFamily(
            "asyncplugin_engine_target_calls_limit",
            "The most calls in flight at once to one target (the bulkhead's size).",
        )
        blocked = GaugeMetricFamily(
            "asyncplugin_engine_target_blocked_tasks",
            "Due tasks waiting because their target's bulkhead is full.",
            labels=["target"],
        )
        if load is not None:
            for (plugin, state), count in sorted(load.states.items()):
                tasks.add_metric([plugin, state], count)
            for plugin, age_s in sorted(load.oldest_s.items()):
                oldest.add_metric([plugin], age_s)
            in_flight.add_metric([], self.calls_in_flight())
            limit.add_metric([], load.calls_limit)
            target_limit.add_metric([], load.target_limit)
            for target, (running, waiting) in sorted(load.targets.items()):
                target_running.add_metric([target], running)
                blocked.add_metric([target], waiting)
        return [tasks, oldest, in_flight, limit, target_running, target_limit, blocked]
