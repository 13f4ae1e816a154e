"""The requests the engine builds obey the protocol rules and carry the engine's own record."""

from __future__ import annotations

import dataclasses

import pytest

from asyncplugin.engine import CallKind, TaskOptions, TaskRecord
from asyncplugin.engine.conversation import build_request, read_answer
from asyncplugin.protocol import ProtocolViolation, TaskState, decode_response, request_violations
from asyncplugin.v1 import plugin_pb2, task_pb2

_RECORD = TaskRecord(
    task_id="t-1",
    target="127.0.0.1:1",
    method="/asyncplugin.v1.PluginService/Invoke",
    state=TaskState.RUNNING,
    payload=b"payload",
    idempotency_key="k-1",
    options=TaskOptions(plugin_id="p"),
    create_time=100.0,
    update_time=110.0,
    start_time=100.5,
    next_check_time=120.0,
    deadline=3700.0,
    check_count=2,
    retries=1,
)


def _plugin_status() -> bytes:
    """A plugin's RUNNING answer that also (wrongly) writes engine-owned fields."""
    task = task_pb2.Task(
        state=task_pb2.TASK_STATE_RUNNING,
        task_id="forged",
        check_count=99,
        retries=42,
        status_message="40%",
    )
    task.remote_status_input.update({"job": "j-42", "nested": {"a": [1, 2]}})
    task.end_time.FromSeconds(1)
    return task.SerializeToString()


@pytest.mark.parametrize("kind", [CallKind.INITIATE, CallKind.CHECK, CallKind.CANCEL])
def test_requests_obey_the_protocol_rules(kind: CallKind) -> None:
    """Initiation, status check and cancel request all pass request_violations."""
    record = dataclasses.replace(_RECORD, status=_plugin_status())
    number = 0 if kind is CallKind.INITIATE else 3
    raw = build_request(record, kind=kind, check_number=number, max_retries=8, engine_name="e")
    request = plugin_pb2.InvokeRequest.FromString(raw)
    assert request_violations(request) == []
    assert request.is_status_check is (kind is not CallKind.INITIATE)
    assert request.cancel_requested is (kind is CallKind.CANCEL)
    assert request.HasField("status") is (kind is not CallKind.INITIATE)
    assert request.context.check_number == number
    assert request.context.deadline.ToSeconds() == 3700
    assert request.data == b"payload"


def test_status_check_echoes_plugin_fields_and_overwrites_engine_fields() -> None:
    """remote_status_input and plugin messages come back as sent; engine fields are the engine's."""
    record = dataclasses.replace(_RECORD, status=_plugin_status())
    raw = build_request(record, kind=CallKind.CHECK, check_number=3, max_retries=8, engine_name="")
    status = plugin_pb2.InvokeRequest.FromString(raw).status
    sent = task_pb2.Task.FromString(_plugin_status())
    assert status.remote_status_input == sent.remote_status_input
    assert status.status_message == "40%"
    assert (status.task_id, status.check_count, status.retries, status.max_retries) == (
        "t-1",
        2,
        1,
        8,
    )
    assert not status.HasField("end_time")
    assert status.next_check_time.ToSeconds() == 120
    assert status.state == task_pb2.TASK_STATE_RUNNING


def test_read_answer_maps_each_kind_of_answer() -> None:
    """data -> SUCCEEDED with result; SUCCEEDED without data -> no result; RUNNING -> hint."""
    succeeded = read_answer(plugin_pb2.InvokeResponse(data=b""))
    assert (succeeded.state, succeeded.result) == (TaskState.SUCCEEDED, b"")
    no_output = read_answer(
        plugin_pb2.InvokeResponse(status=task_pb2.Task(state=task_pb2.TASK_STATE_SUCCEEDED))
    )
    assert (no_output.state, no_output.result) == (TaskState.SUCCEEDED, None)
    running = plugin_pb2.InvokeResponse(status=task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING))
    running.status.remote_status_input.SetInParent()
    running.status.check_after.FromMilliseconds(1500)
    running.status.progress.fraction = 0.4
    answer = read_answer(running)
    assert (answer.state, answer.hint_s, answer.message) == (TaskState.RUNNING, 1.5, "40%")


def test_cancelled_answer_is_only_valid_to_a_cancel_request() -> None:
    """CANCELLED is read as such only when the engine asked to cancel."""
    raw = plugin_pb2.InvokeResponse(
        status=task_pb2.Task(state=task_pb2.TASK_STATE_CANCELLED)
    ).SerializeToString()
    assert read_answer(decode_response(raw, cancel_requested=True)).state is TaskState.CANCELLED
    with pytest.raises(ProtocolViolation, match="CANCELLED_WITHOUT_REQUEST"):
        decode_response(raw)
