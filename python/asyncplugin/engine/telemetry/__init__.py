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

The pieces, one job each:

- `core.py`: `EngineTelemetry`, the hooks above and the counting.
- `calls.py`: the calls in flight, each kept until the engine records its outcome.
- `spans.py`: what each span carries (submit, call, completion, give-up) and how it ends.
- `sampling.py`: whether the provider's sampler drops the calls of an unsampled task.
- `wrappers.py`: the slotted transport and store wrappers around each call and write.
- `load.py`: `EngineLoad`, what the gauges read at scrape time.
"""

from __future__ import annotations

from .core import EngineTelemetry
from .load import EngineLoad
from .sampling import _follows_parent as _follows_parent
from .spans import CompletionMethod
from .wrappers import StoreWriter

__all__ = ["CompletionMethod", "EngineLoad", "EngineTelemetry", "StoreWriter"]
