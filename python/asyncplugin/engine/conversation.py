"""The engine's half of the conversation as pure functions: requests out, answers read.

Nothing here does I/O or reads a clock: `build_request` encodes the call for a task record, and
`read_answer` turns a decoded, validated answer into the task's next record and the history entry
that explains it. The driver (`steps.py`) adds time, the transport and the store.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

from google.protobuf import timestamp_pb2

from asyncplugin.protocol import ProtocolViolation, TaskState, limits
from asyncplugin.protocol.text import truncate
from asyncplugin.v1 import plugin_pb2, task_pb2

from . import errors
from .records import CallKind, CheckOutcome, CheckRecord, TaskRecord

__all__ = [
    "Answer",
    "build_request",
    "engine_task",
    "history_entry",
    "read_answer",
    "scheduled",
    "violation_error",
]

_ENGINE_OWNED: Final = (
    "task_id",
    "create_time",
    "update_time",
    "start_time",
    "end_time",
    "next_check_time",
    "retries",
    "max_retries",
    "check_count",
)


_SECONDS_MIN: Final = -62_135_596_800  # 0001-01-01T00:00:00Z, Timestamp's documented range
_SECONDS_MAX: Final = 253_402_300_799  # 9999-12-31T23:59:59Z


def _set_stamp(stamp: timestamp_pb2.Timestamp, seconds: float) -> None:
    """Sets `stamp` to `seconds` (epoch) in place, as `Timestamp.FromNanoseconds` would.

    In place and without protobuf's pure-Python helper: every status check sets four or five.

    Raises:
        ValueError: the time is outside Timestamp's range (years 1-9999).
    """
    whole, nanos = divmod(round(seconds * 1e9), 1_000_000_000)
    if not _SECONDS_MIN <= whole <= _SECONDS_MAX:
        raise ValueError(
            f"Timestamp is not valid: Seconds {whole} must be in range "
            f"[{_SECONDS_MIN}, {_SECONDS_MAX}]."
        )
    stamp.seconds = whole
    stamp.nanos = nanos


def engine_task(record: TaskRecord, *, max_retries: int) -> task_pb2.Task:
    """The engine's record of a RUNNING task as the Task sent on a status check.

    Plugin-owned fields are the plugin's last answer, `remote_status_input` exactly as it was
    sent; engine-owned fields are overwritten with the engine's own values (the plugin's, if it
    wrote any, are ignored, as task.proto says).
    """
    task = task_pb2.Task()
    _fill_engine_task(task, record, max_retries=max_retries)
    return task


def _fill_engine_task(task: task_pb2.Task, record: TaskRecord, *, max_retries: int) -> None:
    """Writes `engine_task(record)` into the empty message `task` (no copy of the Task)."""
    if record.status:
        task.ParseFromString(record.status)
        for name in _ENGINE_OWNED:
            task.ClearField(name)
    task.task_id = record.task_id
    task.state = task_pb2.TASK_STATE_RUNNING
    task.retries = record.retries
    task.max_retries = max_retries
    task.check_count = record.check_count
    _set_stamp(task.create_time, record.create_time)
    _set_stamp(task.update_time, record.update_time)
    if record.start_time is not None:
        _set_stamp(task.start_time, record.start_time)
    if record.next_check_time is not None:
        _set_stamp(task.next_check_time, record.next_check_time)


def build_request(
    record: TaskRecord,
    *,
    kind: CallKind,
    check_number: int,
    max_retries: int,
    engine_name: str,
    engine_address: str = "",
    completion_token: str = "",
) -> bytes:
    """Encodes the InvokeRequest of one call: initiation, status check, or cancel request."""
    options = record.options
    # Built in place (no message copied into another): this runs for every call.
    request = plugin_pb2.InvokeRequest(data=record.payload)
    context = request.context
    context.plugin_id = options.plugin_id
    context.plugin_instance_id = options.plugin_instance_id
    context.task_id = record.task_id
    context.idempotency_key = record.idempotency_key
    context.check_number = check_number
    context.engine = engine_name
    context.engine_address = engine_address
    context.completion_token = completion_token
    if record.deadline is not None:
        _set_stamp(context.deadline, record.deadline)
    if kind is not CallKind.INITIATE:
        request.is_status_check = True
        _fill_engine_task(request.status, record, max_retries=max_retries)
        request.cancel_requested = kind is CallKind.CANCEL
    return request.SerializeToString()


@dataclass(frozen=True, slots=True)
class Answer:
    """What a valid answer means for the task.

    Attributes:
        state: the state the answer moves the task to (RUNNING, SUCCEEDED, FAILED, CANCELLED).
        outcome: the history entry's outcome.
        message: a one-line account for the history.
        status: the answer's Task, encoded (None if it had none).
        result: the answer's data (None if it had none).
        error: the answer's error envelope, encoded (FAILED only).
        hint_s: the plugin's `check_after` hint in seconds (RUNNING only), or None.
    """

    state: TaskState
    outcome: CheckOutcome
    message: str
    status: bytes | None
    result: bytes | None = None
    error: bytes | None = None
    hint_s: float | None = None


def read_answer(response: plugin_pb2.InvokeResponse) -> Answer:
    """Reads an answer already validated by `asyncplugin.protocol.decode_response`."""
    status = response.status if response.HasField("status") else None
    if response.HasField("data") or (
        status is not None and status.state == task_pb2.TASK_STATE_SUCCEEDED
    ):
        return _succeeded(response, status)
    if status is None:  # decode_response refuses these (NO_DATA_OR_STATUS)
        raise ValueError("the answer sets neither data nor status: validate it first")
    if status.state == task_pb2.TASK_STATE_FAILED:
        return _failed(status)
    if status.state == task_pb2.TASK_STATE_CANCELLED:
        encoded = status.SerializeToString()
        return Answer(TaskState.CANCELLED, CheckOutcome.CANCELLED, status.status_message, encoded)
    return _running(status)


def _succeeded(response: plugin_pb2.InvokeResponse, status: task_pb2.Task | None) -> Answer:
    return Answer(
        TaskState.SUCCEEDED,
        CheckOutcome.SUCCEEDED,
        status.status_message if status is not None else "",
        status.SerializeToString() if status is not None else None,
        result=response.data if response.HasField("data") else None,
    )


def _failed(status: task_pb2.Task) -> Answer:
    error = status.error
    recorded = task_pb2.Task()
    recorded.CopyFrom(status)
    recorded.status_code = error.code  # task.proto: the engine copies error.code here
    return Answer(
        TaskState.FAILED,
        CheckOutcome.FAILED,
        f"{error.code or 'FAILED'}: {error.message}",
        recorded.SerializeToString(),
        error=error.SerializeToString(),
    )


def _running(status: task_pb2.Task) -> Answer:
    hint_s = status.check_after.ToNanoseconds() / 1e9 if status.HasField("check_after") else None
    message = status.status_message or status.remote_status_message
    if status.HasField("progress") and status.progress.HasField("fraction"):
        message = f"{status.progress.fraction:.0%} {message}".strip()
    # A RUNNING Task is kept in memory and sent back on every status check: keep the fields the
    # protocol defines (each within its documented limit), not unknown fields, which a plugin
    # could otherwise use to make every check carry megabytes, both ways.
    kept = task_pb2.Task()
    kept.CopyFrom(status)
    kept.DiscardUnknownFields()
    return Answer(
        TaskState.RUNNING, CheckOutcome.RUNNING, message, kept.SerializeToString(), hint_s=hint_s
    )


def violation_error(violation: ProtocolViolation, *, target: str, method: str) -> bytes:
    """The encoded envelope of a task failed for a protocol violation (code PROTOCOL_VIOLATION)."""
    error = errors.engine_error(
        errors.EngineCode.PROTOCOL_VIOLATION,
        f"the plugin's answer broke protocol rule {violation.rule}: {violation.detail}",
        suggestion="This is a bug in the plugin; the rule is described in "
        "proto/asyncplugin/v1/plugin.proto (Protocol rules).",
        metadata={
            "rule": violation.rule,
            "field": violation.field,
            "target": target,
            "method": method,
        },
    )
    return error.SerializeToString()


def history_entry(
    record: TaskRecord,
    *,
    kind: CallKind,
    check_number: int,
    started: float,
    finished: float,
    outcome: CheckOutcome,
    message: str = "",
    grpc_code: str = "",
    interval_s: float | None = None,
    reason: str = "",
    next_check_time: float | None = None,
    revision: int = 0,
) -> CheckRecord:
    """A history entry about one call of `record`, with the next call's schedule if one was
    chosen (see also `scheduled`)."""
    return CheckRecord(
        task_id=record.task_id,
        kind=kind,
        check_number=check_number,
        started_time=started,
        finished_time=finished,
        outcome=outcome,
        grpc_code=grpc_code,
        message=truncate(message, limits.TEXT_MAX_BYTES),
        interval_s=interval_s,
        reason=reason,
        next_check_time=next_check_time,
        revision=revision,
    )


def scheduled(entry: CheckRecord, *, interval_s: float, reason: str, due: float) -> CheckRecord:
    """The entry with the next call's schedule and the reason it was chosen."""
    return dataclasses.replace(entry, interval_s=interval_s, reason=reason, next_check_time=due)
