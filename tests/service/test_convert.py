"""`service.convert`: engine records as EngineService messages, without a running daemon."""

from __future__ import annotations

import pytest

from asyncplugin.engine import (
    CallKind,
    CheckOutcome,
    CheckRecord,
    MemoryStore,
    PollingPolicy,
    TaskOptions,
    TaskRecord,
)
from asyncplugin.engine.errors import AmbiguousTaskId, TaskNotFound
from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.protocol import TaskState, dict_to_struct
from asyncplugin.service.convert import (
    operation_metadata,
    policy_from_proto,
    policy_overrides,
    seconds,
    task_id_from_operation_name,
    task_to_proto,
)
from asyncplugin.v1 import error_pb2, task_pb2


def _record(**changes: object) -> TaskRecord:
    status = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING, status_message="rendering")
    status.remote_status_input.CopyFrom(dict_to_struct({"job": "j-1"}))
    status.progress.fraction = 0.5
    status.progress.stage = "render"
    values: dict[str, object] = {
        "task_id": "ab" * 16,
        "target": "127.0.0.1:50051",
        "method": "/asyncplugin.v1.PluginService/Invoke",
        "state": TaskState.RUNNING,
        "payload": b"\x01\x02",
        "idempotency_key": "key",
        "options": TaskOptions(
            policy=PollingPolicy(max_checks=None),
            labels=(("team", "audio"), ("env", "dev")),
            request_id="req-1",
            metadata=(("x-secret", "value"),),
            result_type="example.Result",
        ),
        "create_time": 1000.0,
        "update_time": 1010.5,
        "start_time": 1000.25,
        "next_check_time": 1020.0,
        "deadline": 4600.0,
        "check_count": 3,
        "status": status.SerializeToString(),
        "revision": 7,
    }
    values.update(changes)
    return TaskRecord(**values)  # type: ignore[arg-type]


def _check(number: int, revision: int) -> CheckRecord:
    return CheckRecord(
        task_id="ab" * 16,
        kind=CallKind.CHECK,
        check_number=number,
        started_time=1000.0 + number,
        finished_time=1000.5 + number,
        outcome=CheckOutcome.RUNNING,
        message="50% rendering",
        interval_s=2.5,
        reason="backoff 1*1.6^2=2.56s jitter -2% -> 2.5s",
        next_check_time=1003.0 + number,
        revision=revision,
    )


def test_full_view_carries_everything_a_user_sees() -> None:
    task = task_to_proto(_record(), [_check(1, 3), _check(2, 5)])
    assert task.task_id == "ab" * 16
    assert task.name == f"tasks/{'ab' * 16}"
    assert task.state == task_pb2.TASK_STATE_RUNNING
    assert dict(task.labels) == {"team": "audio", "env": "dev"}
    assert task.request_id == "req-1"
    assert task.revision == 7
    assert seconds(task.create_time) == 1000.0
    assert seconds(task.next_check_time) == 1020.0
    assert seconds(task.policy.deadline) == 3600.0
    assert task.policy.max_checks == 0
    assert task.progress.fraction == 0.5
    assert task.progress.stage == "render"
    assert task.status_message == "rendering"
    assert task.remote_status_input.fields["job"].string_value == "j-1"
    assert task.payload == b"\x01\x02"
    assert task.payload_size_bytes == 2
    assert not task.HasField("result")
    assert not task.HasField("result_size_bytes")
    assert list(task.metadata_keys) == ["x-secret"]
    assert task.result_type == "example.Result"
    assert [c.check_number for c in task.checks] == [1, 2]
    first = task.checks[0]
    assert first.kind == engine_pb2.CALL_KIND_CHECK
    assert first.outcome == engine_pb2.CHECK_OUTCOME_RUNNING
    assert seconds(first.interval) == 2.5
    assert first.interval_reason.startswith("backoff")
    assert first.revision == 3


def test_basic_view_leaves_out_bytes_remote_input_and_history() -> None:
    record = _record(
        state=TaskState.SUCCEEDED, result=b"xyz", next_check_time=None, end_time=1030.0
    )
    task = task_to_proto(record, [_check(1, 3)], view=engine_pb2.TASK_VIEW_BASIC)
    assert not task.HasField("payload")
    assert not task.HasField("result")
    assert task.result_size_bytes == 3
    assert not task.HasField("remote_status_input")
    assert not task.checks
    assert task.progress.fraction == 0.5  # progress stays in every view
    full = task_to_proto(record)
    assert full.result == b"xyz"
    assert seconds(full.end_time) == 1030.0


def test_failed_task_carries_the_envelope_and_its_message() -> None:
    error = error_pb2.Error(message="the job failed", code="REMOTE_FAILED")
    record = _record(state=TaskState.FAILED, error=error.SerializeToString(), status=None)
    task = task_to_proto(record)
    assert task.error.code == "REMOTE_FAILED"
    assert task.status_message == "the job failed"
    metadata = operation_metadata(record)
    assert metadata.state == task_pb2.TASK_STATE_FAILED
    assert dict(metadata.labels)["team"] == "audio"


def test_policy_overrides_apply_over_the_engine_default() -> None:
    overrides = policy_overrides(initial_interval_s=2.0, max_checks=0, deadline_s=30.0)
    policy, deadline_s = policy_from_proto(overrides, PollingPolicy(multiplier=3.0))
    assert policy.initial_interval_s == 2.0
    assert policy.multiplier == 3.0
    assert policy.max_checks is None
    assert deadline_s == 30.0
    with pytest.raises(ValueError, match="multiplier"):
        policy_from_proto(engine_pb2.PollingPolicy(multiplier=0.5), PollingPolicy())
    with pytest.raises(ValueError, match="deadline"):
        policy_from_proto(policy_overrides(deadline_s=-1.0), PollingPolicy())


def test_operation_names() -> None:
    assert task_id_from_operation_name("tasks/abc") == "abc"
    for bad in ("abc", "tasks/", "operations/abc"):
        with pytest.raises(ValueError, match="tasks/<task_id>"):
            task_id_from_operation_name(bad)


async def test_store_resolves_prefixes_and_names_the_candidates() -> None:
    store = MemoryStore()
    for task_id in ("aa11" + "0" * 28, "aa12" + "0" * 28, "bb11" + "0" * 28):
        await store.create(_record(task_id=task_id))
    assert await store.resolve("bb") == "bb11" + "0" * 28
    assert await store.resolve("aa11" + "0" * 28) == "aa11" + "0" * 28
    with pytest.raises(AmbiguousTaskId) as ambiguous:
        await store.resolve("aa1")
    assert "aa11" + "0" * 28 in str(ambiguous.value)
    assert "aa12" + "0" * 28 in str(ambiguous.value)
    with pytest.raises(TaskNotFound, match="'cc'"):
        await store.resolve("cc")
