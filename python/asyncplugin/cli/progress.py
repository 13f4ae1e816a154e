"""Rich renderings of tasks (the service's `engine_pb2.Task`) and their check history.

Every command renders the same message, whether it came from an engine daemon or was read from
a store file (`asyncplugin.service.convert`), so a task looks the same either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.protocol import TaskState
from asyncplugin.v1 import task_pb2

__all__ = [
    "OVERDUE_AFTER_S",
    "checks_table",
    "duration_text",
    "next_check_text",
    "progress_text",
    "row_message",
    "seconds",
    "state_name",
    "state_text",
    "tasks_table",
    "timestamp",
]

OVERDUE_AFTER_S = 2.0
"""A check this late is reported as overdue (an engine fires due checks within milliseconds,
unless its calls are all busy)."""

_BAR_WIDTH = 12

_STATE_STYLE = {
    TaskState.WAITING: "yellow",
    TaskState.RUNNING: "cyan",
    TaskState.SUCCEEDED: "bold green",
    TaskState.FAILED: "bold red",
    TaskState.CANCELLED: "magenta",
}


def state_name(state: int) -> str:
    """The state's short name ("RUNNING"), also for a value this version does not know."""
    try:
        return TaskState(state).name
    except ValueError:
        return str(state)


def state_text(state: int) -> Text:
    """The state's name in its colour."""
    try:
        return Text(TaskState(state).name, style=_STATE_STYLE[TaskState(state)])
    except (ValueError, KeyError):
        return Text(str(state))


def seconds(value: timestamp_pb2.Timestamp) -> float:
    """A Timestamp as epoch seconds."""
    return value.ToNanoseconds() / 1e9


def timestamp(task_or_entry: object, field: str) -> str:
    """A message's Timestamp field as ISO 8601 UTC, or '-' when it is unset."""
    if not task_or_entry.HasField(field):  # type: ignore[attr-defined]
        return "-"
    value = seconds(getattr(task_or_entry, field))
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds")


def duration_text(value_s: float) -> str:
    """A span of time for people: 0.4s, 12s, 5m12s, 3h04m, 2d03h."""
    value_s = max(0.0, value_s)
    if value_s < 10:
        return f"{value_s:.1f}s"
    whole = int(value_s)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def next_check_text(task: engine_pb2.Task, *, now: float, polled: bool = True) -> str:
    """When the next call is due: "in 3.2s", or "overdue 5m12s" when it is late.

    With `polled=False` (no engine holds the store) a late check says so: nothing will make
    the call until an engine runs on the store.
    """
    if TaskState(task.state).is_terminal or not task.HasField("next_check_time"):
        return "-"
    late_s = now - seconds(task.next_check_time)
    if late_s < 0:
        text = f"in {duration_text(-late_s)}"
        return text if polled else f"{text} (no engine)"
    if late_s < OVERDUE_AFTER_S and polled:
        return "due now"
    text = f"overdue {duration_text(late_s)}"
    return text if polled else f"{text}, no engine polling"


def progress_text(progress: task_pb2.Progress) -> str:
    """A plugin's progress in words: "97% rendering", "3/7 pages", "40% 4/10 uploading"."""
    parts: list[str] = []
    if progress.HasField("fraction"):
        parts.append(f"{progress.fraction:.0%}")
    if progress.HasField("done"):
        parts.append(
            f"{progress.done}/{progress.total}"
            if progress.HasField("total")
            else str(progress.done)
        )
    elif progress.HasField("total"):
        parts.append(f"0/{progress.total}")
    if progress.stage:
        parts.append(progress.stage)
    return " ".join(parts)


def row_message(task: engine_pb2.Task) -> str:
    """The one-line message of a task's row: the error of a FAILED task, nothing once it
    SUCCEEDED or was CANCELLED (the plugin's last RUNNING message no longer holds), else the
    plugin's last message."""
    if task.state == task_pb2.TASK_STATE_FAILED:
        return f"{task.error.code or task.status_code or 'ERROR'}: {task.error.message}"
    if TaskState(task.state).is_terminal:
        return ""
    return task.status_message or task.remote_status_message


def _bar(fraction: float, width: int = _BAR_WIDTH) -> Text:
    """A progress bar drawn with characters, so it sits in one Text with the words after it."""
    filled = max(0, min(width, round(fraction * width)))
    return Text.assemble(("━" * filled, "green"), ("━" * (width - filled), "grey37"))


def _progress_cell(task: engine_pb2.Task) -> RenderableType:
    """A bar (when there is a fraction) and the progress in words, in ONE Text: the words are
    never cut; a narrow column wraps them after the bar (and folds a long stage)."""
    if task.state == task_pb2.TASK_STATE_SUCCEEDED:
        return _bar(1.0)
    if TaskState(task.state).is_terminal or not task.HasField("progress"):
        return "-"
    words = progress_text(task.progress)
    if not task.progress.HasField("fraction"):
        return Text(words, overflow="fold")
    return Text.assemble(_bar(task.progress.fraction), " ", words, overflow="fold")


def tasks_table(
    tasks: Iterable[engine_pb2.Task],
    *,
    now: float,
    names: Mapping[str, str] | None = None,
    title: str | None = None,
    polled: bool = True,
) -> Table:
    """One row per task: full id (or a name from `names`), state, checks, next check, the
    plugin's progress and message."""
    rows = list(tasks)
    table = Table(title=title, expand=False)
    table.add_column("task", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("checks", justify="right", no_wrap=True)
    table.add_column("next check", justify="right", overflow="fold")
    table.add_column("progress", overflow="fold", min_width=_BAR_WIDTH)
    table.add_column("message / error", overflow="fold", max_width=60)
    for task in rows:
        table.add_row(
            (names or {}).get(task.task_id, task.task_id),
            state_text(task.state),
            str(task.check_count),
            next_check_text(task, now=now, polled=polled),
            _progress_cell(task),
            row_message(task),
        )
    if not polled and any(not TaskState(t.state).is_terminal for t in rows):
        table.caption = (
            "no engine is polling this store: unfinished tasks wait until one runs on it "
            "(asyncplugin engine serve --store ...)"
        )
    return table


def checks_table(task: engine_pb2.Task, checks: Iterable[engine_pb2.CheckEntry] = ()) -> Table:
    """Every call of one task: when, how long, outcome, and the interval chosen next and why
    (`checks`, or else the task's own history)."""
    entries = list(checks) or list(task.checks)
    created = seconds(task.create_time)
    table = Table(title=f"check history of {task.task_id}", expand=False)
    table.add_column("#", justify="right")
    table.add_column("call")
    table.add_column("at", justify="right")
    table.add_column("took", justify="right")
    table.add_column("outcome")
    table.add_column("next in", justify="right")
    table.add_column("why", overflow="fold", max_width=56)
    for entry in entries:
        started = seconds(entry.start_time)
        outcome = engine_pb2.CheckOutcome.Name(entry.outcome).removeprefix("CHECK_OUTCOME_")
        if entry.grpc_code:
            outcome += f" ({entry.grpc_code})"
        interval = (
            f"{entry.interval.ToNanoseconds() / 1e9:.2f}s" if entry.HasField("interval") else "-"
        )
        table.add_row(
            str(entry.check_number),
            engine_pb2.CallKind.Name(entry.kind).removeprefix("CALL_KIND_"),
            f"+{started - created:.2f}s",
            f"{(seconds(entry.end_time) - started) * 1000:.0f}ms",
            outcome,
            interval,
            entry.interval_reason or entry.message,
        )
    return table
