"""Per-plugin figures for the plugins page, computed from recorded tasks and check histories.

For each target: tasks by state; and over the calls started within a window (default the last
hour, on the engine's clock): calls per minute, the failure rate by code (a failed call's gRPC
code, its error code, or its outcome) and call latency p50/p99 (finished - started).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from asyncplugin.engine import CheckOutcome, CheckRecord, TaskRecord
from asyncplugin.protocol import TaskState

from .views import is_call

__all__ = ["PluginStats", "percentile", "plugin_stats"]

_OK_OUTCOMES = frozenset({CheckOutcome.RUNNING, CheckOutcome.SUCCEEDED, CheckOutcome.CANCELLED})


@dataclass(slots=True, kw_only=True)
class PluginStats:
    """What the plugins page shows of one target."""

    target: str
    states: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    calls_per_minute: float = 0.0
    failures: list[tuple[str, int, float]] = field(default_factory=list)
    """(code, calls, share of all calls in the window), most frequent first."""
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    health: str = ""
    health_detail: str = ""


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of `values` (None when empty): the smallest value with at
    least `fraction` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def failure_code(check: CheckRecord, record: TaskRecord | None) -> str | None:
    """The code a failed call counts under, or None when the call did not fail."""
    if check.outcome in _OK_OUTCOMES:
        return None
    if check.outcome is CheckOutcome.FAILED:
        code = record.error_code if record is not None and record.error is not None else ""
        return code or "FAILED"
    if check.grpc_code:
        return check.grpc_code
    return str(check.outcome)


def plugin_stats(
    records: Iterable[TaskRecord],
    histories: Mapping[str, Sequence[CheckRecord]],
    *,
    now: float,
    window_s: float,
) -> list[PluginStats]:
    """Figures per target, sorted by target.

    Args:
        records: the tasks considered.
        histories: task id -> check history, for the tasks whose calls are counted.
        now: the engine's clock.
        window_s: calls started within this many seconds before `now` are counted.
    """
    by_target: dict[str, PluginStats] = {}
    latencies: dict[str, list[float]] = {}
    failures: dict[str, Counter[str]] = {}
    by_id: dict[str, TaskRecord] = {}
    for record in records:
        by_id[record.task_id] = record
        stats = by_target.setdefault(record.target, PluginStats(target=record.target))
        stats.states[record.state.name] = stats.states.get(record.state.name, 0) + 1
    since = now - window_s
    for task_id, history in histories.items():
        owner = by_id.get(task_id)
        if owner is None:
            continue
        stats = by_target[owner.target]
        for check in history:
            if not is_call(check) or check.started_time < since:
                continue
            stats.calls += 1
            latencies.setdefault(owner.target, []).append(
                max(0.0, check.finished_time - check.started_time)
            )
            code = failure_code(check, owner)
            if code is not None:
                failures.setdefault(owner.target, Counter())[code] += 1
    for target, stats in by_target.items():
        stats.calls_per_minute = stats.calls / (window_s / 60.0)
        values = latencies.get(target, [])
        stats.latency_p50_s = percentile(values, 0.50)
        stats.latency_p99_s = percentile(values, 0.99)
        stats.failures = [
            (code, count, count / stats.calls)
            for code, count in failures.get(target, Counter()).most_common()
        ]
        stats.states = {
            state.name: stats.states[state.name]
            for state in TaskState
            if state.name in stats.states
        }
    return [by_target[target] for target in sorted(by_target)]
