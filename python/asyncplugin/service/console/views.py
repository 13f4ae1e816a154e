"""What the pages show of a task: plain values computed from records, ready for the templates.

Times are the engine's clock (epoch seconds), so a console over an engine on a FakeClock shows
simulated ages and due times. Nothing here reads `remote_status_input`: the task page fetches it
only when asked (`hidden_input`), and no view carries call metadata values or tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from asyncplugin.engine import CallKind, CheckOutcome, CheckRecord, TaskRecord
from asyncplugin.protocol import Task, TaskState
from asyncplugin.v1 import error_pb2

__all__ = [
    "ErrorLink",
    "TaskRow",
    "call_category",
    "check_progress",
    "error_chain",
    "is_call",
    "relative",
    "task_labels",
    "task_row",
    "timestamp",
]

_NO_CANCEL_SENT: Final = "no cancel request sent"
"""How the engine's history marks a cancel entry for which no call was made (steps.py)."""
_PERCENT = re.compile(r"(\d{1,3})%(?:\s|$)")

CATEGORY_OF: Final[Mapping[CheckOutcome, str]] = {
    CheckOutcome.RUNNING: "running",
    CheckOutcome.SUCCEEDED: "succeeded",
    CheckOutcome.FAILED: "failed",
    CheckOutcome.RPC_ERROR: "failed",
    CheckOutcome.CANCELLED: "cancelled",
    CheckOutcome.TRANSPORT_RETRY: "retry",
    CheckOutcome.PROTOCOL_VIOLATION: "violation",
    CheckOutcome.DEADLINE_EXCEEDED: "gave-up",
    CheckOutcome.MAX_CHECKS_EXCEEDED: "gave-up",
}


def task_labels(record: TaskRecord) -> dict[str, str]:
    """The task's labels (key -> value), as submitted (`TaskOptions.labels`); empty for none."""
    return record.options.label_map


def is_call(check: CheckRecord) -> bool:
    """True when the history entry is a call to the plugin (not the engine giving up, and not a
    cancel for which nothing was sent)."""
    if check.kind is CallKind.GIVE_UP:
        return False
    return not (check.kind is CallKind.CANCEL and check.message.startswith(_NO_CANCEL_SENT))


def call_category(check: CheckRecord) -> str:
    """The colour class of an entry: running, succeeded, failed, retry, violation, ..."""
    return CATEGORY_OF.get(check.outcome, "ignored")


def check_progress(check: CheckRecord) -> float | None:
    """The plugin's progress fraction recorded with a call, if any.

    The engine writes a RUNNING answer's progress into the entry's message as a leading
    percentage ("40% encoding"); a SUCCEEDED call is complete.
    """
    if check.outcome is CheckOutcome.SUCCEEDED:
        return 1.0
    if check.outcome is not CheckOutcome.RUNNING:
        return None
    match = _PERCENT.match(check.message)
    return min(int(match.group(1)), 100) / 100 if match else None


def timestamp(value: float | None) -> str:
    """An epoch time as ISO 8601 UTC to the second, or '-'."""
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(seconds: float) -> str:
    """A duration as a short text: 850ms, 12.3s, 4m05s, 3h02m, 2d04h."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRow:
    """One row of the tasks table."""

    task_id: str
    state: str
    terminal: bool
    target: str
    method: str
    create_time: float
    age: str
    checks: int
    next_check_time: float | None
    next_check: str
    progress: float | None
    progress_text: str
    message: str
    labels: tuple[tuple[str, str], ...] = ()


def task_row(record: TaskRecord, *, now: float) -> TaskRow:
    """The row of a task as the tasks table shows it at `now` (the engine's clock)."""
    return TaskRow(
        task_id=record.task_id,
        state=record.state.name,
        terminal=record.is_terminal,
        target=record.target,
        method=record.method,
        create_time=record.create_time,
        age=relative(now - record.create_time),
        checks=record.check_count,
        next_check_time=None if record.is_terminal else record.next_check_time,
        next_check=_next_check(record, now),
        progress=_progress_fraction(record),
        progress_text=_progress_text(record),
        message=_message(record),
        labels=record.options.labels,
    )


def _next_check(record: TaskRecord, now: float) -> str:
    if record.is_terminal or record.next_check_time is None:
        return "-"
    due = record.next_check_time - now
    return "due now" if due <= 0 else f"in {relative(due)}"


def _progress_fraction(record: TaskRecord) -> float | None:
    if record.state is TaskState.SUCCEEDED:
        return 1.0
    task = _task(record)
    if task is None or task.progress is None:
        return None
    progress = task.progress
    if progress.fraction is not None:
        return max(0.0, min(1.0, progress.fraction))
    if progress.done is not None and progress.total:
        return max(0.0, min(1.0, progress.done / progress.total))
    return None


def _progress_text(record: TaskRecord) -> str:
    if record.state is TaskState.SUCCEEDED:
        return "100%"
    task = _task(record)
    if task is None or task.progress is None:
        return ""
    progress = task.progress
    parts: list[str] = []
    if progress.fraction is not None:
        parts.append(f"{progress.fraction:.0%}")
    elif progress.done is not None:
        parts.append(f"{progress.done}/{progress.total}" if progress.total else str(progress.done))
    if progress.stage:
        parts.append(progress.stage)
    return " ".join(parts)


def _message(record: TaskRecord) -> str:
    if record.state is TaskState.FAILED and record.error is not None:
        error = record.error_proto()
        return f"{error.code or 'ERROR'}: {error.message}"
    task = _task(record)
    if task is None:
        return ""
    return task.status_message or task.remote_status_message


def _task(record: TaskRecord) -> Task | None:
    """The plugin's last Task, or None (also when the recorded bytes cannot be decoded)."""
    try:
        return record.task
    except Exception:  # a corrupt record must not break the page
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorLink:
    """One error of an envelope's chain (the outermost first)."""

    message: str
    internal_message: str = ""
    suggestion: str = ""
    code: str = ""
    rpc_code: int = 0
    domain: str = ""
    metadata: tuple[tuple[str, str], ...] = ()


def error_chain(error: error_pb2.Error, *, max_depth: int = 64) -> list[ErrorLink]:
    """The envelope and every error it wraps, outermost first (a wrapped plain message is the
    last link)."""
    links: list[ErrorLink] = []
    current: error_pb2.Error | None = error
    while current is not None and len(links) < max_depth:
        links.append(
            ErrorLink(
                message=current.message,
                internal_message=current.internal_message,
                suggestion=current.suggestion,
                code=current.code,
                rpc_code=current.rpc_code,
                domain=current.domain,
                metadata=tuple(sorted(current.metadata.items())),
            )
        )
        which = current.WhichOneof("wrapped")
        if which == "wrapped_error":
            current = current.wrapped_error
        else:
            if which == "wrapped_message":
                links.append(ErrorLink(message=current.wrapped_message))
            current = None
    return links


def pretty_json(value: Any) -> str:
    """JSON for a page, indented and with keys in their order."""
    return json.dumps(value, indent=2, ensure_ascii=False)
