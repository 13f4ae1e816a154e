"""Pythonic values convert to wire messages and back; bad values get named errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncplugin.protocol import (
    PluginError,
    Progress,
    Task,
    TaskState,
    decode_payload,
    dict_to_struct,
    encode_payload,
    struct_depth,
    struct_to_dict,
)
from asyncplugin.v1 import task_pb2

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.text()
)
_json = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), _json, max_size=6))
def test_struct_round_trip_keeps_plain_json_values(value: dict[str, Any]) -> None:
    """dict -> Struct -> dict is the identity for JSON-like values (whole numbers stay ints)."""
    assert struct_to_dict(dict_to_struct(value)) == value


def test_struct_rejects_non_json_values_naming_the_path() -> None:
    """A value that cannot travel in a Struct is refused with its path, not silently dropped."""
    with pytest.raises(TypeError, match=r"\$\.job\.ids\[1\]: set is not JSON-like"):
        dict_to_struct({"job": {"ids": [1, {2}]}})
    with pytest.raises(TypeError, match="key 3 is not a string"):
        dict_to_struct({3: "x"})  # type: ignore[dict-item]


def test_struct_depth_counts_nesting() -> None:
    """struct_depth counts Struct and list levels."""
    assert struct_depth(dict_to_struct({})) == 1
    assert struct_depth(dict_to_struct({"a": 1})) == 1
    assert struct_depth(dict_to_struct({"a": {"b": [1]}})) == 3


def test_task_round_trip() -> None:
    """A full Task survives to_proto/from_proto unchanged."""
    now = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    task = Task(
        state=TaskState.RUNNING,
        remote_status_input={"remote_job_id": "j-1", "n": 3},
        remote_status_output={"raw": [1, 2.5]},
        remote_status_message="queued",
        status_message="working",
        progress=Progress(fraction=0.5, done=1, total=2, stage="upload"),
        check_after_s=1.25,
        task_id="t-1",
        check_count=4,
        create_time=now,
        next_check_time=now,
    )
    assert Task.from_proto(task.to_proto()) == task


def test_task_from_proto_refuses_unspecified_state() -> None:
    """An UNSPECIFIED state is an error, never read as a default."""
    with pytest.raises(ValueError, match="not a valid TaskState"):
        Task.from_proto(task_pb2.Task())


def test_terminal_states() -> None:
    """SUCCEEDED, FAILED and CANCELLED are terminal; WAITING and RUNNING are not."""
    assert {s for s in TaskState if s.is_terminal} == {
        TaskState.SUCCEEDED,
        TaskState.FAILED,
        TaskState.CANCELLED,
    }


def test_plugin_error_round_trip_with_wrapped_chain() -> None:
    """A PluginError wrapping another and an exception keeps every field on the wire."""
    inner = PluginError(message="remote failed", code="REMOTE", error=ValueError("bad id"))
    outer = PluginError(
        message="could not transcribe",
        internal_message="job j-1",
        suggestion="retry later",
        code="TRANSCRIBE_FAILED",
        rpc_code=grpc.StatusCode.UNAVAILABLE,
        domain="transcriber",
        metadata={"job": "j-1"},
        error=inner,
    )
    wire = outer.to_proto()
    assert wire.rpc_code == 14
    assert wire.wrapped_error.wrapped_message == "ValueError: bad id"
    back = PluginError.from_proto(wire)
    assert back.to_proto() == wire
    assert isinstance(back.error, PluginError)
    assert back.error.code == "REMOTE"


def test_plugin_error_needs_a_message() -> None:
    """An empty message is refused at construction."""
    with pytest.raises(ValueError, match="non-empty message"):
        PluginError(message="")


def test_payload_codec_for_messages_and_dicts() -> None:
    """Messages encode as themselves, dicts as Struct; wrong bytes name the expected type."""
    progress = task_pb2.Progress(fraction=0.5)
    assert decode_payload(encode_payload(progress), task_pb2.Progress) == progress
    assert decode_payload(encode_payload({"a": [1, "b"]}), dict) == {"a": [1, "b"]}
    with pytest.raises(ValueError, match=r"not a valid asyncplugin\.v1\.Progress"):
        decode_payload(b"\xff\xff", task_pb2.Progress)
    with pytest.raises(TypeError, match="payload of type int"):
        encode_payload(5)


def test_request_remote_status_input_is_the_echoed_tasks_or_empty() -> None:
    """Request.remote_status_input: the status's dict on a check, {} without status or input."""
    from asyncplugin.protocol import Request, RequestContext

    context = RequestContext(task_id="t-1")
    echoed = Task(state=TaskState.RUNNING, remote_status_input={"job": "j-1"})
    assert Request(data={}, context=context, status=echoed).remote_status_input == {"job": "j-1"}
    assert Request(data={}, context=context).remote_status_input == {}
    bare = Task(state=TaskState.RUNNING)
    assert Request(data={}, context=context, status=bare).remote_status_input == {}
    request: Request[dict[str, Any]] = Request(data={}, context=context, status=echoed)
    # Read-only (a frozen, slotted dataclass refuses the assignment; Python 3.11 reports it as
    # TypeError from the dataclass machinery, later versions as FrozenInstanceError).
    with pytest.raises((AttributeError, TypeError)):
        request.remote_status_input = {}  # type: ignore[misc]
    assert request.remote_status_input == {"job": "j-1"}


def test_task_with_a_string_state_names_it_when_encoded() -> None:
    """The SDK's Task holds TaskState members; a string there is a named error, not a Python
    conversion error."""
    task = Task(state="running", remote_status_input={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Task.state 'running' is not a TaskState \(one of WAIT"):
        task.to_proto()
