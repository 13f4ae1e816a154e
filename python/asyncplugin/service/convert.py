"""The engine's records as the service's messages (asyncplugin.engine.v1), and back.

Pure functions with no I/O and no running engine: the daemon uses them to answer, and a reader
of a store file (`asyncplugin tasks --store`) uses the same ones, so a task looks the same
whichever way it is read:

    record = await store.get(task_id)
    task = task_to_proto(record, await store.checks(task_id))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from google.protobuf import duration_pb2, timestamp_pb2

from asyncplugin.engine import CallKind, CheckOutcome, CheckRecord, PollingPolicy, TaskRecord
from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.v1 import task_pb2

__all__ = [
    "OPERATION_PREFIX",
    "check_to_proto",
    "duration",
    "effective_policy",
    "operation_metadata",
    "operation_name",
    "policy_from_proto",
    "policy_overrides",
    "policy_to_proto",
    "seconds",
    "task_id_from_operation_name",
    "task_to_proto",
    "timestamp",
]

OPERATION_PREFIX: Final = "tasks/"
"""A task's resource name (and google.longrunning Operation name) is "tasks/<task_id>"."""

_BASIC = engine_pb2.TASK_VIEW_BASIC
_FULL = engine_pb2.TASK_VIEW_FULL

_CALL_KINDS: Final = {
    CallKind.INITIATE: engine_pb2.CALL_KIND_INITIATE,
    CallKind.CHECK: engine_pb2.CALL_KIND_CHECK,
    CallKind.CANCEL: engine_pb2.CALL_KIND_CANCEL,
    CallKind.GIVE_UP: engine_pb2.CALL_KIND_GIVE_UP,
    CallKind.COMPLETE: engine_pb2.CALL_KIND_COMPLETE,
    CallKind.UPDATE: engine_pb2.CALL_KIND_UPDATE,
}
_OUTCOMES: Final = {
    outcome: engine_pb2.CheckOutcome.Value(f"CHECK_OUTCOME_{outcome.value}")
    for outcome in CheckOutcome
}


def timestamp(value: float) -> timestamp_pb2.Timestamp:
    """Epoch seconds as a Timestamp (nanosecond rounding)."""
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(round(value * 1e9))
    return out


def seconds(value: timestamp_pb2.Timestamp | duration_pb2.Duration) -> float:
    """A Timestamp (epoch seconds) or a Duration in seconds."""
    return value.ToNanoseconds() / 1e9


def duration(value_s: float) -> duration_pb2.Duration:
    """Seconds as a Duration."""
    out = duration_pb2.Duration()
    out.FromNanoseconds(round(value_s * 1e9))
    return out


def operation_name(task_id: str) -> str:
    """ "tasks/<task_id>"."""
    return OPERATION_PREFIX + task_id


def task_id_from_operation_name(name: str) -> str:
    """The task id (or prefix) in an operation name "tasks/<id>".

    Raises:
        ValueError: the name does not have that form.
    """
    if not name.startswith(OPERATION_PREFIX) or len(name) == len(OPERATION_PREFIX):
        raise ValueError(f"operation name must be 'tasks/<task_id>', got {name!r}")
    return name[len(OPERATION_PREFIX) :]


def effective_policy(record: TaskRecord, default: PollingPolicy | None = None) -> PollingPolicy:
    """The policy the task runs with: its own, else `default`, else the library default."""
    return record.options.policy or default or PollingPolicy()


def policy_to_proto(policy: PollingPolicy, *, deadline_s: float | None) -> engine_pb2.PollingPolicy:
    """Every field of a policy (a task's effective one), with the task's deadline."""
    out = engine_pb2.PollingPolicy(
        initial_interval=duration(policy.initial_interval_s),
        multiplier=policy.multiplier,
        max_interval=duration(policy.max_interval_s),
        min_interval=duration(policy.min_interval_s),
        jitter=policy.jitter,
        max_checks=policy.max_checks or 0,
        check_timeout=duration(policy.check_timeout_s),
    )
    if deadline_s is not None:
        out.deadline.CopyFrom(duration(deadline_s))
    return out


def policy_overrides(
    *,
    initial_interval_s: float | None = None,
    multiplier: float | None = None,
    max_interval_s: float | None = None,
    min_interval_s: float | None = None,
    jitter: float | None = None,
    max_checks: int | None = None,
    check_timeout_s: float | None = None,
    deadline_s: float | None = None,
) -> engine_pb2.PollingPolicy:
    """A SubmitTaskRequest.policy with only the given fields set (the rest keep the engine's).

    `max_checks=0` asks for no limit.
    """
    out = engine_pb2.PollingPolicy()
    for name, value in (
        ("initial_interval", initial_interval_s),
        ("max_interval", max_interval_s),
        ("min_interval", min_interval_s),
        ("check_timeout", check_timeout_s),
        ("deadline", deadline_s),
    ):
        if value is not None:
            getattr(out, name).CopyFrom(duration(value))
    if multiplier is not None:
        out.multiplier = multiplier
    if jitter is not None:
        out.jitter = jitter
    if max_checks is not None:
        out.max_checks = max_checks
    return out


def policy_from_proto(
    overrides: engine_pb2.PollingPolicy, base: PollingPolicy
) -> tuple[PollingPolicy, float | None]:
    """`base` with the overrides applied, and the deadline override in seconds (None: unset).

    Raises:
        ValueError: an override is out of range (the message names the policy field).
    """
    changes: dict[str, Any] = {}
    name: Any
    for name, field in (
        ("initial_interval", "initial_interval_s"),
        ("max_interval", "max_interval_s"),
        ("min_interval", "min_interval_s"),
        ("check_timeout", "check_timeout_s"),
    ):
        if overrides.HasField(name):
            changes[field] = seconds(getattr(overrides, name))
    if overrides.HasField("multiplier"):
        changes["multiplier"] = overrides.multiplier
    if overrides.HasField("jitter"):
        changes["jitter"] = overrides.jitter
    if overrides.HasField("max_checks"):
        if overrides.max_checks < 0:
            raise ValueError(f"max_checks must be >= 0 (0: no limit), got {overrides.max_checks}")
        changes["max_checks"] = overrides.max_checks or None
    deadline_s = seconds(overrides.deadline) if overrides.HasField("deadline") else None
    if deadline_s is not None and not deadline_s > 0:
        raise ValueError(f"deadline must be > 0, got {deadline_s:g}s")
    values = base.to_dict() | changes
    return PollingPolicy(**values), deadline_s


def check_to_proto(check: CheckRecord) -> engine_pb2.CheckEntry:
    """One history entry."""
    out = engine_pb2.CheckEntry(
        kind=_CALL_KINDS[check.kind],
        check_number=check.check_number,
        start_time=timestamp(check.started_time),
        end_time=timestamp(check.finished_time),
        outcome=_OUTCOMES[check.outcome],
        grpc_code=check.grpc_code,
        message=check.message,
        interval_reason=check.reason,
        revision=check.revision,
    )
    if check.interval_s is not None:
        out.interval.CopyFrom(duration(check.interval_s))
    if check.next_check_time is not None:
        out.next_check_time.CopyFrom(timestamp(check.next_check_time))
    return out


def task_to_proto(
    record: TaskRecord,
    checks: Iterable[CheckRecord] | None = None,
    *,
    view: engine_pb2.TaskView.ValueType = _FULL,
    default_policy: PollingPolicy | None = None,
) -> engine_pb2.Task:
    """The client's view of a task: TASK_VIEW_FULL adds payload, result, remote_status_input
    and the check history (`checks`, oldest first); TASK_VIEW_BASIC leaves them out."""
    full = view != _BASIC
    options = record.options
    policy = effective_policy(record, default_policy)
    deadline_s = record.deadline - record.create_time if record.deadline is not None else None
    out = engine_pb2.Task(
        task_id=record.task_id,
        name=operation_name(record.task_id),
        target=record.target,
        method=record.method,
        state=int(record.state),  # type: ignore[arg-type]
        labels=dict(options.labels),
        request_id=options.request_id,
        idempotency_key=record.idempotency_key,
        plugin_id=options.plugin_id,
        plugin_instance_id=options.plugin_instance_id,
        revision=record.revision,
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
        check_count=record.check_count,
        retries=record.retries,
        payload_size_bytes=len(record.payload),
        policy=policy_to_proto(policy, deadline_s=deadline_s),
        metadata_keys=[key for key, _ in options.metadata],
        result_type=options.result_type,
    )
    for name in ("start_time", "end_time", "next_check_time", "deadline"):
        value: float | None = getattr(record, name)
        if value is not None:
            getattr(out, name).CopyFrom(timestamp(value))
    if record.result is not None:
        out.result_size_bytes = len(record.result)
    _copy_plugin_status(record, out, with_remote_input=full)
    if record.error is not None:
        out.error.CopyFrom(record.error_proto())
        out.status_message = out.status_message or out.error.message
        out.status_code = out.status_code or out.error.code
    if full:
        out.payload = record.payload
        if record.result is not None:
            out.result = record.result
        out.checks.extend(check_to_proto(check) for check in checks or ())
    return out


def _copy_plugin_status(
    record: TaskRecord, out: engine_pb2.Task, *, with_remote_input: bool
) -> None:
    """The plugin-owned fields of its last answer."""
    if record.status is None:
        return
    status = task_pb2.Task.FromString(record.status)
    out.status_message = status.status_message
    out.status_suggestion = status.status_suggestion
    out.status_code = status.status_code
    out.remote_status_message = status.remote_status_message
    if status.HasField("progress"):
        out.progress.CopyFrom(status.progress)
    if status.HasField("remote_status_output"):
        out.remote_status_output.CopyFrom(status.remote_status_output)
    if with_remote_input and status.HasField("remote_status_input"):
        out.remote_status_input.CopyFrom(status.remote_status_input)


def operation_metadata(record: TaskRecord) -> engine_pb2.OperationMetadata:
    """The google.longrunning Operation's metadata for a task (no payload, no result)."""
    out = engine_pb2.OperationMetadata(
        state=int(record.state),  # type: ignore[arg-type]
        check_count=record.check_count,
        target=record.target,
        method=record.method,
        create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
        labels=dict(record.options.labels),
    )
    if record.end_time is not None:
        out.end_time.CopyFrom(timestamp(record.end_time))
    if record.next_check_time is not None:
        out.next_check_time.CopyFrom(timestamp(record.next_check_time))
    if record.status is not None:
        status = task_pb2.Task.FromString(record.status)
        out.status_message = status.status_message
        if status.HasField("progress"):
            out.progress.CopyFrom(status.progress)
    return out
