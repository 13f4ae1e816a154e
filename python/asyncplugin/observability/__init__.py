"""Shared observability plumbing for the engine and the plugin server: JSON logs, W3C trace
context, and the Prometheus metrics endpoint.

This package sits at the bottom with `protocol/`: `engine/` and `plugin/` both import it and it
imports neither, so each side instruments itself (`engine/telemetry/`, `plugin/telemetry.py`) on
the same log fields, trace-context rules and metrics endpoint. prometheus-client and aiohttp
(the `[metrics]` extra) are imported only when a metrics endpoint is started.
"""

from __future__ import annotations

from .http import DEFAULT_METRICS_PATH, MetricsServer, MetricsServerError, start_metrics_server
from .logs import TASK_ID, JsonFormatter, configure_logging, redact
from .tracecontext import (
    DURATION_BUCKETS_S,
    inject_span,
    parent_from_traceparent,
    strip_trace_metadata,
)

__all__ = [
    "DEFAULT_METRICS_PATH",
    "DURATION_BUCKETS_S",
    "TASK_ID",
    "JsonFormatter",
    "MetricsServer",
    "MetricsServerError",
    "configure_logging",
    "inject_span",
    "parent_from_traceparent",
    "redact",
    "start_metrics_server",
    "strip_trace_metadata",
]
