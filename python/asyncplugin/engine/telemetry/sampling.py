"""Whether the tracer provider's sampler drops the calls of a task not sampled at submit."""

from __future__ import annotations

from typing import Final

from opentelemetry import trace
from opentelemetry.trace import SpanKind

_PROBE_TRACE_IDS: Final = (1, (1 << 128) - 1)
"""The lowest and highest trace ids: a ratio sampler keeps one of them whatever its ratio."""


def _follows_parent(provider: trace.TracerProvider) -> bool:
    """Whether the provider's sampler drops every child of a remote parent that was not sampled.

    True for the SDK's `ParentBased` samplers with the default `remote_parent_not_sampled`
    (ALWAYS_OFF): the SDK default, and `ParentBased(TraceIdRatioBased(r))`. Then a call of a
    task not sampled at submit needs no span at all. Anything else (another sampler, a
    provider that is not the SDK's) keeps asking the provider for every call's span.
    """
    try:
        from opentelemetry.sdk.trace.sampling import Decision, ParentBased
    except ImportError:  # pragma: no cover - the API without the SDK makes no spans anyway
        return False
    sampler = getattr(provider, "sampler", None)
    if not isinstance(sampler, ParentBased):
        return False
    unsampled = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=_PROBE_TRACE_IDS[0],
            span_id=1,
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
        )
    )
    context = trace.set_span_in_context(unsampled)
    try:
        return all(
            sampler.should_sample(context, trace_id, "probe", SpanKind.CLIENT).decision
            is Decision.DROP
            for trace_id in _PROBE_TRACE_IDS
        )
    except Exception:  # a custom delegate that fails on the probe: take the safe path
        return False
