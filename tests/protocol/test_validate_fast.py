"""The fast paths of the protocol layer give the same answers as the full, slow ones.

The fast single pass of Task validation never lets a violation through, and is really taken.

`task_violations` first runs `_task_clean` (one pass over the fields a Task sets); only when it
cannot vouch for the Task does every check run to name what is wrong. These tests hold the pass
to the full checks on Tasks built near every limit, valid and not.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from google.protobuf import timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncplugin.protocol import (
    PluginError,
    Progress,
    Task,
    TaskState,
    limits,
    struct_depth,
    struct_to_dict,
    task_violations,
    timestamp_to_datetime,
)
from asyncplugin.protocol.validate import (
    _DEPTH_FREE_BYTES,
    _every_task_violation,
    _task_clean,
)
from asyncplugin.v1 import error_pb2, task_pb2

_STATES = [*task_pb2.TaskState.values(), 99]
_TEXTS = ["status_message", "status_suggestion", "status_code", "remote_status_message"]
_STAMPS = ["create_time", "update_time", "start_time", "end_time", "next_check_time"]


def _json_values(max_leaves: int) -> st.SearchStrategy[Any]:
    leaves = st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=8)
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=max_leaves,
    )


def _deep(depth: int, wide: int) -> dict[str, Any]:
    value: dict[str, Any] = {"pad": "p" * wide}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


_structs = st.one_of(
    st.dictionaries(st.text(max_size=4), _json_values(12), max_size=4),
    st.builds(_deep, st.integers(1, 40), st.integers(0, 200)),
    st.builds(lambda n: {"big": "b" * n}, st.integers(65_400, 65_600)),
)


def _text_values(limit: int) -> st.SearchStrategy[str]:
    near = st.integers(max(0, limit // 4 - 2), limit + 2)
    return st.one_of(
        st.text(max_size=6),
        near.map(lambda n: "a" * n),
        near.map(lambda n: "\u00e9" * (n // 2 + 1)),
        st.integers(limit // 4 - 1, limit // 4 + 1).map(lambda n: "\U0001f600" * n),
    )


@st.composite
def tasks(draw: st.DrawFn) -> task_pb2.Task:
    task = task_pb2.Task(state=draw(st.sampled_from(_STATES)))  # type: ignore[arg-type]
    for name in ("remote_status_input", "remote_status_output"):
        if draw(st.booleans()):
            getattr(task, name).update(draw(_structs))
    for name in _TEXTS:
        if draw(st.booleans()):
            limit = limits.CODE_MAX_BYTES if name == "status_code" else limits.TEXT_MAX_BYTES
            setattr(task, name, draw(_text_values(limit)))
    for name in _STAMPS:
        if draw(st.booleans()):
            stamp = getattr(task, name)
            stamp.seconds = draw(st.integers(-62_135_596_801, 253_402_300_800))
            stamp.nanos = draw(st.integers(-1, 1_000_000_000))
    if draw(st.booleans()):
        task.check_after.seconds = draw(st.integers(-2, 315_576_000_001))
        task.check_after.nanos = draw(st.integers(-1_000_000_000, 1_000_000_000))
    if draw(st.booleans()):
        progress = task.progress
        if draw(st.booleans()):
            progress.fraction = draw(st.floats(-0.5, 1.5))
        if draw(st.booleans()):
            progress.done = draw(st.integers(-2, 10))
        if draw(st.booleans()):
            progress.total = draw(st.integers(-2, 10))
        progress.stage = draw(_text_values(limits.CODE_MAX_BYTES))
    if draw(st.integers(0, 9)) == 0:
        task.error.CopyFrom(error_pb2.Error(message=draw(st.text(max_size=5))))
    return task


@settings(max_examples=400, deadline=None)
@given(task=tasks(), answer=st.booleans())
def test_a_task_passed_by_the_fast_pass_breaks_no_rule(task: task_pb2.Task, answer: bool) -> None:
    """Whenever the fast pass vouches for a Task, every full check agrees."""
    full = list(_every_task_violation(task, path="status", answer=answer))
    if _task_clean(task, answer):
        assert full == []
    assert [v.rule for v in task_violations(task, answer=answer)] == [v.rule for v in full]


def test_typical_tasks_take_the_fast_pass() -> None:
    """What the engine sends and what plugins answer every check is vouched for in one pass."""
    running = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING, status_message="40% done")
    running.remote_status_input.update({"job_id": "j-42" * 8, "ends_at": 1.7e9})
    running.check_after.seconds = 30
    running.progress.fraction = 0.4
    running.create_time.GetCurrentTime()
    assert _task_clean(running, answer=True)
    assert _task_clean(running, answer=False)
    done = task_pb2.Task(state=task_pb2.TASK_STATE_SUCCEEDED)
    assert _task_clean(done, answer=True)


def test_the_fast_pass_hands_doubtful_tasks_to_the_full_checks() -> None:
    """Failed tasks, errors and RUNNING without remote_status_input always get the full checks."""
    failed = task_pb2.Task(state=task_pb2.TASK_STATE_FAILED)
    failed.error.message = "boom"
    assert not _task_clean(failed, answer=True)
    assert list(task_violations(failed, answer=True)) == []
    assert not _task_clean(task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING), answer=True)
    waiting = task_pb2.Task(state=task_pb2.TASK_STATE_WAITING)
    waiting.remote_status_input.SetInParent()
    assert not _task_clean(waiting, answer=True)
    assert _task_clean(waiting, answer=False)


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(st.text(max_size=2), _json_values(40), max_size=3))
def test_a_struct_within_the_depth_free_size_cannot_be_too_deep(value: dict[str, Any]) -> None:
    """The bound the fast pass relies on: every nesting level costs at least 4 wire bytes."""
    task = task_pb2.Task()
    task.remote_status_input.update(value)
    struct = task.remote_status_input
    assert struct_depth(struct) <= 1 + struct.ByteSize() // 4


def test_the_depth_bound_is_tight_for_empty_lists() -> None:
    """Nested empty lists are the cheapest nesting there is: exactly 4 bytes a level."""
    task = task_pb2.Task()
    nested: list[Any] = []
    for _ in range(limits.STRUCT_MAX_DEPTH):
        nested = [nested]
    task.remote_status_input.update({"": nested})
    struct = task.remote_status_input
    depth = struct_depth(struct)
    assert depth > limits.STRUCT_MAX_DEPTH
    assert struct.ByteSize() > _DEPTH_FREE_BYTES


@settings(max_examples=500, deadline=None)
@given(
    seconds=st.integers(-62_135_596_801, 253_402_300_800),
    nanos=st.integers(-1, 1_000_000_000),
)
def test_timestamp_to_datetime_is_protobufs_conversion(seconds: int, nanos: int) -> None:
    """The fast conversion gives ToDatetime's value, and its ValueError out of range."""
    stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    try:
        expected = stamp.ToDatetime(tzinfo=UTC)
    except ValueError:
        with pytest.raises(ValueError, match="Timestamp is not valid"):
            timestamp_to_datetime(stamp)
        return
    got = timestamp_to_datetime(stamp)
    assert got == expected
    assert got.tzinfo is expected.tzinfo


def _reference_from_proto(message: task_pb2.Task) -> Task:
    """Task.from_proto as it was, field by field: the single pass must decode the same Task."""

    def stamp(name: str) -> Any:
        if not message.HasField(name):  # type: ignore[arg-type]
            return None
        return getattr(message, name).ToDatetime(tzinfo=UTC)

    return Task(
        state=TaskState(message.state),
        remote_status_input=struct_to_dict(message.remote_status_input)
        if message.HasField("remote_status_input")
        else None,
        remote_status_output=struct_to_dict(message.remote_status_output)
        if message.HasField("remote_status_output")
        else None,
        remote_status_message=message.remote_status_message,
        status_message=message.status_message,
        status_suggestion=message.status_suggestion,
        status_code=message.status_code,
        progress=Progress.from_proto(message.progress) if message.HasField("progress") else None,
        check_after_s=message.check_after.ToNanoseconds() / 1e9
        if message.HasField("check_after")
        else None,
        error=PluginError.from_proto(message.error) if message.HasField("error") else None,
        task_id=message.task_id,
        retries=message.retries,
        max_retries=message.max_retries,
        check_count=message.check_count,
        create_time=stamp("create_time"),
        update_time=stamp("update_time"),
        start_time=stamp("start_time"),
        end_time=stamp("end_time"),
        next_check_time=stamp("next_check_time"),
    )


@settings(max_examples=300, deadline=None)
@given(
    task=tasks(),
    task_id=st.text(max_size=4),
    counts=st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)),
)
def test_from_proto_decodes_what_the_field_by_field_decoding_did(
    task: task_pb2.Task, task_id: str, counts: tuple[int, int, int]
) -> None:
    """Every valid Task decodes to the same value (errors included) in one pass."""
    task.task_id = task_id
    task.retries, task.max_retries, task.check_count = counts
    if list(task_violations(task)):
        return
    got, expected = Task.from_proto(task), _reference_from_proto(task)
    assert got == expected
    assert _error_wire(got) == _error_wire(expected)  # not part of Task's own comparison


def _error_wire(task: Task) -> error_pb2.Error | None:
    return task.error.to_proto() if task.error is not None else None


def test_from_proto_decodes_a_failed_task_with_its_error_chain() -> None:
    task = task_pb2.Task(state=task_pb2.TASK_STATE_FAILED, status_message="no")
    task.error.CopyFrom(
        error_pb2.Error(
            message="outer",
            code="C",
            metadata={"k": "v"},
            wrapped_error=error_pb2.Error(message="inner", wrapped_message="root"),
        )
    )
    task.end_time.GetCurrentTime()
    got, expected = Task.from_proto(task), _reference_from_proto(task)
    assert got == expected
    assert _error_wire(got) == _error_wire(expected) == task.error
