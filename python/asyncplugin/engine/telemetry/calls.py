"""The calls in flight: each call sent, kept until the engine records its outcome."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import trace

from ..records import CallKind, CheckRecord
from .spans import _end_unrecorded


@dataclass(slots=True)
class _Call:
    """One call in flight or awaiting its recorded outcome."""

    task_id: str
    kind: CallKind
    kind_name: str
    """`kind.value`, read once (an enum's value is a property)."""
    number: int
    plugin: str
    span: trace.Span | None
    grpc_code: int | None = None


def _add_to(calls: list[_Call], call: _Call) -> None:
    """Adds a call to its task's other pending calls, ending any it replaces."""
    kind, number = call.kind, call.number
    for stale in [c for c in calls if c.kind is kind and c.number == number]:
        calls.remove(stale)  # its outcome was never recorded (a failed store write)
        _end_unrecorded(stale, "sent again before its outcome was recorded")
    calls.append(call)


def _take(pending: dict[str, list[_Call]], check: CheckRecord) -> _Call | None:
    """The call a recorded check is the outcome of, no longer pending; None if none was sent."""
    calls = pending.get(check.task_id)
    if not calls:
        return None
    if len(calls) == 1:  # the usual case: the one call of the task
        call = calls[0]
        if call.kind is check.kind and call.number == check.check_number:
            del pending[check.task_id]
            return call
        return None
    for call in calls:
        if call.kind is check.kind and call.number == check.check_number:
            calls.remove(call)
            return call
    return None


def _drop(pending: dict[str, list[_Call]], call: _Call) -> None:
    """Forgets a call whose outcome will never be recorded."""
    calls = pending.get(call.task_id)
    if calls and call in calls:
        calls.remove(call)
        if not calls:
            del pending[call.task_id]
