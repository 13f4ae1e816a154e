"""Every protocol rule is enforced by name, and valid messages pass untouched."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from asyncplugin.protocol import (
    RULES,
    ProtocolViolation,
    check_response,
    decode_request,
    decode_response,
    dict_to_struct,
    limits,
    request_violations,
    response_violations,
)
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2

PLUGIN_PROTO = Path(__file__).resolve().parents[2] / "proto" / "asyncplugin" / "v1" / "plugin.proto"


def _running(**fields: object) -> task_pb2.Task:
    task = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING, **fields)  # type: ignore[arg-type]
    task.remote_status_input.SetInParent()
    return task


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def _chain(depth: int) -> error_pb2.Error:
    error = error_pb2.Error(message="bottom")
    for level in range(depth - 1):
        error = error_pb2.Error(message=f"level {level}", wrapped_error=error)
    return error


def _metadata(entries: int, entry_bytes: int) -> dict[str, str]:
    """`entries` entries of exactly `entry_bytes` bytes each (key and value together)."""
    return {f"k{i:03d}": "v" * (entry_bytes - 4) for i in range(entries)}


def _response(task: task_pb2.Task, data: bytes | None = None) -> plugin_pb2.InvokeResponse:
    out = plugin_pb2.InvokeResponse(status=task)
    if data is not None:
        out.data = data
    return out


def _big_input() -> plugin_pb2.InvokeResponse:
    task = _running()
    task.remote_status_input.update({"blob": "x" * (limits.REMOTE_STATUS_MAX_BYTES + 1)})
    return _response(task)


def _deep_input() -> plugin_pb2.InvokeResponse:
    task = _running()
    task.remote_status_input.CopyFrom(dict_to_struct(_nested(limits.STRUCT_MAX_DEPTH + 1)))
    return _response(task)


def _big_output() -> plugin_pb2.InvokeResponse:
    task = _running()
    task.remote_status_output.update({"blob": "x" * (limits.REMOTE_STATUS_MAX_BYTES + 1)})
    return _response(task)


def _deep_output() -> plugin_pb2.InvokeResponse:
    task = _running()
    task.remote_status_output.CopyFrom(dict_to_struct(_nested(limits.STRUCT_MAX_DEPTH + 1)))
    return _response(task)


def _negative_check_after() -> plugin_pb2.InvokeResponse:
    task = _running()
    task.check_after.FromSeconds(-5)
    return _response(task)


def _status_check_without_status() -> plugin_pb2.InvokeRequest:
    return plugin_pb2.InvokeRequest(
        is_status_check=True, context=plugin_pb2.RequestContext(check_number=1)
    )


def _check_number_zero_on_status_check() -> plugin_pb2.InvokeRequest:
    return plugin_pb2.InvokeRequest(
        is_status_check=True, status=_running(), context=plugin_pb2.RequestContext(check_number=0)
    )


def _failed(error: error_pb2.Error) -> plugin_pb2.InvokeResponse:
    return _response(task_pb2.Task(state=task_pb2.TASK_STATE_FAILED, error=error))


ResponseCase = Callable[[], plugin_pb2.InvokeResponse]

RESPONSE_CASES: dict[str, tuple[ResponseCase, str]] = {
    "NO_DATA_OR_STATUS": (plugin_pb2.InvokeResponse, ""),
    "STATE_UNSPECIFIED": (lambda: _response(task_pb2.Task()), "status.state"),
    "STATE_UNKNOWN": (lambda: _response(task_pb2.Task(state=42)), "status.state"),  # type: ignore[arg-type]
    "STATE_NOT_ALLOWED_IN_ANSWER": (
        lambda: _response(task_pb2.Task(state=task_pb2.TASK_STATE_WAITING)),
        "status.state",
    ),
    "DATA_WITH_UNFINISHED_STATE": (lambda: _response(_running(), data=b""), "status.state"),
    "RUNNING_WITHOUT_REMOTE_STATUS_INPUT": (
        lambda: _response(task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING)),
        "status.remote_status_input",
    ),
    "FAILED_WITHOUT_ERROR": (
        lambda: _response(task_pb2.Task(state=task_pb2.TASK_STATE_FAILED)),
        "status.error",
    ),
    "ERROR_WITHOUT_FAILED": (
        lambda: _response(_running(error=error_pb2.Error(message="m"))),
        "status.error",
    ),
    "ERROR_WITHOUT_MESSAGE": (lambda: _failed(error_pb2.Error(code="X")), "status.error.message"),
    "ERROR_TOO_DEEP": (lambda: _failed(_chain(limits.ERROR_MAX_DEPTH + 1)), "status.error"),
    "ERROR_METADATA_TOO_LARGE": (
        lambda: _failed(error_pb2.Error(message="m", metadata=_metadata(65, 2))),
        "status.error.metadata",
    ),
    "CANCELLED_WITHOUT_REQUEST": (
        lambda: _response(task_pb2.Task(state=task_pb2.TASK_STATE_CANCELLED)),
        "status.state",
    ),
    "REMOTE_STATUS_INPUT_TOO_LARGE": (_big_input, "status.remote_status_input"),
    "REMOTE_STATUS_INPUT_TOO_DEEP": (_deep_input, "status.remote_status_input"),
    "REMOTE_STATUS_OUTPUT_TOO_LARGE": (_big_output, "status.remote_status_output"),
    "REMOTE_STATUS_OUTPUT_TOO_DEEP": (_deep_output, "status.remote_status_output"),
    "FIELD_TOO_LONG": (
        lambda: _response(_running(status_message="m" * (limits.TEXT_MAX_BYTES + 1))),
        "status.status_message",
    ),
    "NEGATIVE_CHECK_AFTER": (_negative_check_after, "status.check_after"),
    "PROGRESS_FRACTION_OUT_OF_RANGE": (
        lambda: _response(_running(progress=task_pb2.Progress(fraction=1.5))),
        "status.progress.fraction",
    ),
    "PROGRESS_NEGATIVE": (
        lambda: _response(_running(progress=task_pb2.Progress(done=-1))),
        "status.progress.done",
    ),
    "PROGRESS_DONE_EXCEEDS_TOTAL": (
        lambda: _response(_running(progress=task_pb2.Progress(done=11, total=10))),
        "status.progress.done",
    ),
}

RequestCase = Callable[[], plugin_pb2.InvokeRequest]

REQUEST_CASES: dict[str, tuple[RequestCase, str]] = {
    "STATUS_CHECK_WITHOUT_STATUS": (_status_check_without_status, "status.remote_status_input"),
    "CHECK_NUMBER_MISMATCH": (_check_number_zero_on_status_check, "context.check_number"),
}


@pytest.mark.parametrize("rule", sorted(RESPONSE_CASES))
def test_response_rule_is_reported_by_name(rule: str) -> None:
    """A response breaking a rule is reported with that rule's name and the offending field."""
    build, field = RESPONSE_CASES[rule]
    found = {(v.rule, v.field) for v in response_violations(build())}
    assert (rule, field) in found


@pytest.mark.parametrize("rule", sorted(RESPONSE_CASES))
def test_response_rule_fails_decoding(rule: str) -> None:
    """decode_response raises the first violation, by name, for the encoded bad answer."""
    build, _ = RESPONSE_CASES[rule]
    message = build()
    with pytest.raises(ProtocolViolation) as caught:
        decode_response(message.SerializeToString())
    assert caught.value.rule == response_violations(message)[0].rule
    assert str(caught.value).startswith(f"{caught.value.rule}: ")


@pytest.mark.parametrize("rule", sorted(REQUEST_CASES))
def test_request_rule_is_reported_by_name(rule: str) -> None:
    """A request breaking a rule is reported with that rule's name and the offending field."""
    build, field = REQUEST_CASES[rule]
    found = {(v.rule, v.field) for v in request_violations(build())}
    assert (rule, field) in found
    with pytest.raises(ProtocolViolation) as caught:
        decode_request(build().SerializeToString())
    assert caught.value.rule == request_violations(build())[0].rule


def test_malformed_bytes_are_a_named_violation() -> None:
    """Bytes that are not an envelope fail with MALFORMED_MESSAGE, not a DecodeError."""
    with pytest.raises(ProtocolViolation) as caught:
        decode_response(b"\xff\xff\xff")
    assert caught.value.rule == "MALFORMED_MESSAGE"
    with pytest.raises(ProtocolViolation) as caught:
        decode_request(b"\x0a\x05ab")
    assert caught.value.rule == "MALFORMED_MESSAGE"


def test_initiation_with_nonzero_check_number_is_flagged() -> None:
    """check_number must be 0 on the initiating call."""
    request = plugin_pb2.InvokeRequest(context=plugin_pb2.RequestContext(check_number=2))
    assert [v.rule for v in request_violations(request)] == ["CHECK_NUMBER_MISMATCH"]


def proto_rules() -> set[str]:
    """The rule names listed in plugin.proto's "Protocol rules" comment (`//   - NAME: ...`,
    several names to an item where they share one)."""
    text = PLUGIN_PROTO.read_text()
    section = text.split("// Protocol rules.", 1)[1].split("// A side that receives", 1)[0]
    lines = [line.removeprefix("//") for line in section.splitlines()]
    items = " ".join(line.strip() for line in lines).split(" - ")[1:]
    heads = [item.split(":", 1)[0] for item in items]
    return {name for head in heads for name in re.findall(r"\b[A-Z][A-Z_]+[A-Z]\b", head)}


def test_every_rule_has_a_case_and_is_documented_in_the_proto() -> None:
    """Each rule in RULES is tested here, and RULES is exactly the list in plugin.proto, both
    ways, so other languages see every rule and no documented rule goes unenforced."""
    tested = set(RESPONSE_CASES) | set(REQUEST_CASES) | {"MALFORMED_MESSAGE"}
    assert tested == set(RULES)
    documented = proto_rules()
    assert len(documented) > 20  # the section was found and parsed
    assert documented == set(RULES)


@pytest.mark.parametrize(
    "response",
    [
        plugin_pb2.InvokeResponse(data=b""),
        plugin_pb2.InvokeResponse(status=_running()),
        plugin_pb2.InvokeResponse(
            data=b"\x08\x01", status=task_pb2.Task(state=task_pb2.TASK_STATE_SUCCEEDED)
        ),
        plugin_pb2.InvokeResponse(status=task_pb2.Task(state=task_pb2.TASK_STATE_SUCCEEDED)),
        _failed(_chain(limits.ERROR_MAX_DEPTH)),
        _response(_running(progress=task_pb2.Progress(fraction=1.0, done=10, total=10))),
        _failed(error_pb2.Error(message="m", metadata=_metadata(64, 256))),  # 64, 16,384 B
    ],
)
def test_valid_answers_pass(response: plugin_pb2.InvokeResponse) -> None:
    """Valid answers, including the edge of every limit, have no violation and decode back to
    the same message."""
    assert response_violations(response) == []
    check_response(response)
    decoded = decode_response(response.SerializeToString())
    assert decoded == response
    assert decoded.HasField("data") is response.HasField("data")
    assert decoded.status.state == response.status.state


@pytest.mark.parametrize(
    ("metadata", "detail"),
    [
        (_metadata(65, 2), "has 65 entries; limit 64"),
        (_metadata(64, 256) | {"k000": "v" * 253}, "16385 bytes of keys and values; limit 16384"),
        ({"é": "é" * 8192}, "16386 bytes of keys and values; limit 16384"),  # UTF-8 bytes count
    ],
)
def test_error_metadata_limits(metadata: dict[str, str], detail: str) -> None:
    """Error.metadata: 64 entries and 16,384 bytes of keys and values, in every wrapped Error."""
    outer = error_pb2.Error(message="outer", wrapped_error=error_pb2.Error(message="inner"))
    outer.wrapped_error.metadata.update(metadata)
    [violation] = response_violations(_failed(outer))
    assert violation.rule == "ERROR_METADATA_TOO_LARGE"
    assert violation.field == "status.error.wrapped_error.metadata"
    assert violation.detail.endswith(detail)


def test_cancelled_is_valid_in_answer_to_a_cancel_request() -> None:
    """CANCELLED is allowed when the request asked to cancel."""
    response = _response(task_pb2.Task(state=task_pb2.TASK_STATE_CANCELLED))
    assert response_violations(response, cancel_requested=True) == []
    check_response(response, cancel_requested=True)
    decoded = decode_response(response.SerializeToString(), cancel_requested=True)
    assert decoded.status.state == task_pb2.TASK_STATE_CANCELLED
    assert [v.rule for v in response_violations(response)] == ["CANCELLED_WITHOUT_REQUEST"]


def test_valid_status_check_request_passes() -> None:
    """A well-formed status check has no violations."""
    request = plugin_pb2.InvokeRequest(
        is_status_check=True, status=_running(), context=plugin_pb2.RequestContext(check_number=1)
    )
    assert request_violations(request) == []
    decoded = decode_request(request.SerializeToString())
    assert decoded == request
    assert decoded.status.HasField("remote_status_input")
