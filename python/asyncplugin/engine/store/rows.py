"""Task and check records as database rows: the same columns in every SQL store.

Times are epoch seconds (float), protobuf values their encoded bytes, options their JSON; the
labels (JSON), request id and revision are columns of their own so stores can filter on them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from asyncplugin.protocol import TaskState

from ..records import CallKind, CheckOutcome, CheckRecord, TaskOptions, TaskRecord

__all__ = ["check_from_row", "check_row", "progress_row", "task_from_row", "task_row"]


def task_row(r: TaskRecord) -> tuple[Any, ...]:
    """The task columns (TASK_COLUMNS order): 21 values."""
    return (
        r.task_id,
        r.target,
        r.method,
        int(r.state),
        r.payload,
        r.idempotency_key,
        r.options.to_json(),
        r.create_time,
        r.update_time,
        r.start_time,
        r.end_time,
        r.next_check_time,
        r.deadline,
        r.check_count,
        r.retries,
        r.status,
        r.result,
        r.error,
        json.dumps(dict(r.options.labels), sort_keys=True),
        r.options.request_id,
        r.revision,
    )


def progress_row(r: TaskRecord) -> tuple[Any, ...]:
    """The columns a recorded change can alter (the store's PROGRESS_COLUMNS order): 11 values.

    What a task was created with (target, method, payload, key, options, labels, request id,
    create time, deadline) never changes after `create`, so a step's update leaves it alone.
    """
    return (
        int(r.state),
        r.update_time,
        r.start_time,
        r.end_time,
        r.next_check_time,
        r.check_count,
        r.retries,
        r.status,
        r.result,
        r.error,
        r.revision,
    )


def task_from_row(row: Sequence[Any]) -> TaskRecord:
    """A TaskRecord from the 21 task columns."""
    (task_id, target, method, state, payload, key, options, create_time, update_time,
     start_time, end_time, next_check_time, deadline, check_count, retries, status, result,
     error, _labels, _request_id, revision) = row  # fmt: skip
    return TaskRecord(
        task_id=task_id,
        target=target,
        method=method,
        state=TaskState(state),
        payload=bytes(payload),
        idempotency_key=key,
        options=TaskOptions.from_json(options),
        create_time=create_time,
        update_time=update_time,
        start_time=start_time,
        end_time=end_time,
        next_check_time=next_check_time,
        deadline=deadline,
        check_count=check_count,
        retries=retries,
        status=bytes(status) if status is not None else None,
        result=bytes(result) if result is not None else None,
        error=bytes(error) if error is not None else None,
        revision=revision,
    )


def check_row(c: CheckRecord) -> tuple[Any, ...]:
    """The check columns (CHECK_COLUMNS order): 12 values."""
    return (
        c.task_id,
        str(c.kind),
        c.check_number,
        c.started_time,
        c.finished_time,
        str(c.outcome),
        c.grpc_code,
        c.message,
        c.interval_s,
        c.reason,
        c.next_check_time,
        c.revision,
    )


def check_from_row(row: Sequence[Any]) -> CheckRecord:
    """A CheckRecord from the 12 check columns."""
    (task_id, kind, number, started, finished, outcome, code, message, interval_s, reason,
     next_check_time, revision) = row  # fmt: skip
    return CheckRecord(
        task_id=task_id,
        kind=CallKind(kind),
        check_number=number,
        started_time=started,
        finished_time=finished,
        outcome=CheckOutcome(outcome),
        grpc_code=code,
        message=message,
        interval_s=interval_s,
        reason=reason,
        next_check_time=next_check_time,
        revision=revision,
    )
