"""Sending spans to an OpenTelemetry collector over OTLP/gRPC (the `[otel]` extra).

The servers' `--otlp-endpoint URL` builds the tracer provider here. The exporter also reads the
standard `OTEL_EXPORTER_OTLP_*` variables (headers, certificates, timeout), and
`OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` name the service as usual.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from asyncplugin.protocol import AsyncPluginError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["TracingSetupError", "otlp_tracer_provider"]


class TracingSetupError(AsyncPluginError):
    """Tracing was asked for but cannot be set up (the `[otel]` extra is not installed)."""


def otlp_tracer_provider(endpoint: str, *, service_name: str) -> TracerProvider:
    """A tracer provider batching spans to the OTLP/gRPC collector at `endpoint`.

    Args:
        endpoint: the collector, e.g. "http://127.0.0.1:4317" (plaintext) or
            "https://otel.internal:4317" (TLS).
        service_name: `service.name` unless `OTEL_SERVICE_NAME` is set.

    Call `shutdown()` on it before exiting, so the last spans are sent.

    Raises:
        TracingSetupError: the `[otel]` extra is not installed, or the endpoint is not a URL.
    """
    if not endpoint.startswith(("http://", "https://")):
        raise TracingSetupError(
            f"the OTLP endpoint must be an http:// or https:// URL, got {endpoint!r}"
        )
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as err:
        raise TracingSetupError(
            "--otlp-endpoint needs the OpenTelemetry SDK: pip install 'asyncplugin[otel]'"
        ) from err
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
