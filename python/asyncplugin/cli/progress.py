"""Rich renderings of tasks and their check history, for live progress and summaries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from asyncplugin.engine import CheckRecord, TaskRecord
from asyncplugin.protocol import TaskState

_STATE_STYLE = {
    TaskState.WAITING: "yellow",
    TaskState.RUNNING: "cyan",
    TaskState.SUCCEEDED: "bold green",
    TaskState.FAILED: "bold red",
    TaskState.CANCELLED: "magenta",
}


def state_text(state: TaskState) -> Text:
    """The state's name in its colour."""
    return Text(state.name, style=_STATE_STYLE[state])


def tasks_table(
    records: Iterable[TaskRecord],
    *,
    now: float,
    labels: dict[str, str] | None = None,
    title: str | None = None,
) -> Table:
    """One row per task: state, checks, next check in N s, the plugin's progress and message."""
    table = Table(title=title, expand=False)
    table.add_column("task")
    table.add_column("state")
    table.add_column("checks", justify="right")
    table.add_column("next check", justify="right")
    table.add_column("progress", min_width=12)
    table.add_column("message / error", overflow="fold", max_width=60)
    for record in records:
        name = (labels or {}).get(record.task_id, record.task_id[:12])
        table.add_row(
            name,
            state_text(record.state),
            str(record.check_count),
            _next_check(record, now),
            _progress(record),
            _message(record),
        )
    return table


def _next_check(record: TaskRecord, now: float) -> str:
    if record.is_terminal or record.next_check_time is None:
        return "-"
    return f"in {max(0.0, record.next_check_time - now):.1f}s"


def _progress(record: TaskRecord) -> RenderableType:
    if record.state is TaskState.SUCCEEDED:
        return ProgressBar(total=1.0, completed=1.0, width=12)
    task = record.task
    if task is None or task.progress is None:
        return "-"
    progress = task.progress
    if progress.fraction is not None:
        bar = ProgressBar(total=1.0, completed=progress.fraction, width=12)
        return Group(bar, Text(f"{progress.fraction:.0%} {progress.stage}".strip()))
    if progress.done is not None:
        total = f"/{progress.total}" if progress.total is not None else ""
        return f"{progress.done}{total} {progress.stage}".strip()
    return progress.stage or "-"


def _message(record: TaskRecord) -> str:
    if record.state is TaskState.FAILED:
        error = record.error_proto()
        return f"{error.code or 'ERROR'}: {error.message}"
    task = record.task
    if task is None:
        return ""
    return task.status_message or task.remote_status_message


def checks_table(record: TaskRecord, checks: Sequence[CheckRecord]) -> Table:
    """Every call of one task: when, how long, outcome, and the interval chosen next and why."""
    table = Table(title=f"check history of {record.task_id}", expand=False)
    table.add_column("#", justify="right")
    table.add_column("call")
    table.add_column("at", justify="right")
    table.add_column("took", justify="right")
    table.add_column("outcome")
    table.add_column("next in", justify="right")
    table.add_column("why", overflow="fold", max_width=56)
    for check in checks:
        table.add_row(
            str(check.check_number),
            str(check.kind),
            f"+{check.started_time - record.create_time:.2f}s",
            f"{(check.finished_time - check.started_time) * 1000:.0f}ms",
            _outcome(check),
            f"{check.interval_s:.2f}s" if check.interval_s is not None else "-",
            check.reason or check.message,
        )
    return table


def _outcome(check: CheckRecord) -> str:
    outcome = str(check.outcome)
    return f"{outcome} ({check.grpc_code})" if check.grpc_code else outcome


def timestamp(value: float | None) -> str:
    """An epoch time as ISO 8601 UTC, or '-'."""
    if value is None:
        return "-"
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds")
