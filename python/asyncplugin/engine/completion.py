"""Push completion as pure functions: what a plugin's CompleteTask or UpdateTask records.

Polling stays the safety net; a plugin (or the webhook handler of the remote system it wraps)
may finish its task at once, or report progress, with the completion token the engine sent it
in `RequestContext`. The engine applies these under the task's lock (see `Engine.complete`), so
a completion that races a status check is recorded after that check's outcome, and exactly one
end is ever recorded. Nothing here does I/O or reads a clock.

The engine only carries the token: issuing and checking it is the service's job. An engine
given a `CompletionIssuer` puts its address and a fresh token for the task into every call.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from google.protobuf import struct_pb2

from asyncplugin.protocol import ProtocolViolation, TaskState, task_violations
from asyncplugin.protocol.rules import Rule
from asyncplugin.protocol.validate import error_violations
from asyncplugin.v1 import error_pb2, task_pb2

from .errors import TaskStateError
from .policy import PollingPolicy
from .records import CallKind, CheckOutcome, CheckRecord, TaskRecord

__all__ = [
    "CompletionIssuer",
    "completed",
    "is_same_completion",
    "updated",
    "validate_completion",
]


class CompletionIssuer(Protocol):
    """Gives the engine what plugins need to complete their tasks themselves."""

    @property
    def address(self) -> str:
        """Where plugins reach the engine's EngineService ("host:port")."""
        ...

    def token_for(self, task_id: str, *, now: float, deadline: float | None) -> str:
        """A completion token for the task, issued at `now`, for a task with this deadline
        (epoch seconds; None: no deadline)."""
        ...


def validate_completion(data: bytes | None, error: error_pb2.Error | None) -> None:
    """Checks a completion's outcome before anything is recorded.

    Raises:
        ValueError: neither or both of data and error. ProtocolViolation: the error envelope
            breaks a rule (named, e.g. ERROR_WITHOUT_MESSAGE).
    """
    if (data is None) == (error is None):
        raise ValueError("a completion carries exactly one of data and error")
    if error is not None:
        for violation in error_violations(error, path="error"):
            raise violation


def is_same_completion(
    record: TaskRecord, data: bytes | None, error: error_pb2.Error | None
) -> bool:
    """True when the finished task ended exactly as this completion says (a retried call)."""
    if data is not None:
        return record.state is TaskState.SUCCEEDED and (record.result or b"") == data
    return (
        record.state is TaskState.FAILED
        and error is not None
        and record.error is not None
        and error_pb2.Error.FromString(record.error) == error
    )


def completed(
    record: TaskRecord, data: bytes | None, error: error_pb2.Error | None, now: float
) -> tuple[TaskRecord, CheckRecord]:
    """The task finished by a completion, and the history entry saying so."""
    if error is not None:
        status = task_pb2.Task(
            state=task_pb2.TASK_STATE_FAILED, error=error, status_code=error.code
        )
        done = dataclasses.replace(
            record,
            state=TaskState.FAILED,
            status=status.SerializeToString(),
            error=error.SerializeToString(deterministic=True),
        )
        outcome, message = CheckOutcome.FAILED, f"{error.code or 'FAILED'}: {error.message}"
    else:
        done = dataclasses.replace(record, state=TaskState.SUCCEEDED, result=data)
        outcome, message = CheckOutcome.SUCCEEDED, "completed by the plugin"
    done = dataclasses.replace(done, end_time=now, update_time=now, next_check_time=None, retries=0)
    entry = CheckRecord(
        task_id=record.task_id,
        kind=CallKind.COMPLETE,
        check_number=record.check_count,
        started_time=now,
        finished_time=now,
        outcome=outcome,
        message=message,
    )
    return done, entry


def updated(
    record: TaskRecord,
    policy: PollingPolicy,
    now: float,
    *,
    progress: task_pb2.Progress | None = None,
    status_message: str = "",
    remote_status_input: struct_pb2.Struct | None = None,
    check_after_s: float | None = None,
) -> tuple[TaskRecord, CheckRecord]:
    """The RUNNING task with the plugin's progress report applied, and its history entry.

    `check_after_s` moves the next status check, clamped to the policy's interval bounds and
    never past the deadline; without it the schedule stays as it was.

    Raises:
        TaskStateError: the task is not RUNNING. ProtocolViolation: the report breaks a rule
            of task.proto (named, e.g. PROGRESS_FRACTION_OUT_OF_RANGE).
    """
    if record.state is not TaskState.RUNNING:
        raise TaskStateError(
            record.task_id, record.state.name, "only a RUNNING task can be updated"
        )
    status = task_pb2.Task.FromString(record.status or b"")
    if progress is not None:
        status.progress.CopyFrom(progress)
    if status_message:
        status.status_message = status_message
    if remote_status_input is not None:
        status.remote_status_input.CopyFrom(remote_status_input)
    for violation in task_violations(status, path="update"):
        raise _named(violation)
    due, interval_s, reason = record.next_check_time, None, ""
    if check_after_s is not None:
        if not check_after_s >= 0:
            raise ProtocolViolation(
                Rule.NEGATIVE_CHECK_AFTER, "update.check_after is negative", field="check_after"
            )
        interval_s = min(max(check_after_s, policy.min_interval_s), policy.max_interval_s)
        reason = f"plugin update: check after {check_after_s:g}s"
        if interval_s != check_after_s:
            reason += f" clamped to {interval_s:g}s"
        due = now + interval_s
        if record.deadline is not None and due > record.deadline:
            due, interval_s = record.deadline, max(0.0, record.deadline - now)
            reason += f"; cut to the deadline in {interval_s:.3g}s"
    fraction = (
        f"{status.progress.fraction:.0%} "
        if status.HasField("progress") and status.progress.HasField("fraction")
        else ""
    )
    changed = dataclasses.replace(
        record, status=status.SerializeToString(), update_time=now, next_check_time=due
    )
    entry = CheckRecord(
        task_id=record.task_id,
        kind=CallKind.UPDATE,
        check_number=record.check_count,
        started_time=now,
        finished_time=now,
        outcome=CheckOutcome.RUNNING,
        message=f"{fraction}{status.status_message}".strip() or "progress reported",
        interval_s=interval_s,
        reason=reason,
        next_check_time=due if interval_s is not None else None,
    )
    return changed, entry


def _named(violation: ProtocolViolation) -> ProtocolViolation:
    """The violation with its field named as UpdateTask's (update.progress -> progress)."""
    field = violation.field.removeprefix("update.")
    return ProtocolViolation(violation.rule, violation.detail, field=field)
