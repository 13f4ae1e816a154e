"""EngineLoad: what the engine is doing right now, read by the gauges at scrape time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
