"""Golden wire vectors: the checked-in bytes and JSON are what other languages test against."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from asyncplugin.protocol import (
    ProtocolViolation,
    decode_request,
    decode_response,
    dict_to_struct,
    request_violations,
    response_violations,
    struct_to_dict,
)
from asyncplugin.v1 import plugin_pb2, task_pb2
from tests.golden_cases import (
    GOLDEN,
    GOLDEN_DIR,
    INVALID,
    INVALID_DIR,
    message_type,
    to_canonical_json,
)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_binary_vector_decodes_and_reencodes_byte_for_byte(name: str) -> None:
    """Decoding a checked-in .binpb and encoding it again gives the same bytes."""
    raw = (GOLDEN_DIR / f"{name}.binpb").read_bytes()
    message = message_type(name).FromString(raw)
    assert message.SerializeToString(deterministic=True) == raw


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_json_vector_matches_binary_vector(name: str) -> None:
    """The .json vector parses to the same message as the .binpb, and prints back identically."""
    kind = message_type(name)
    text = (GOLDEN_DIR / f"{name}.json").read_text()
    from_json = json_format.Parse(text, kind())
    from_binary = kind.FromString((GOLDEN_DIR / f"{name}.binpb").read_bytes())
    assert from_json == from_binary
    assert to_canonical_json(from_json) == text


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_vector_files_match_their_builders(name: str) -> None:
    """The files are what tests/golden_cases.py builds (regenerate them only on purpose)."""
    built = GOLDEN[name]()
    assert (GOLDEN_DIR / f"{name}.binpb").read_bytes() == built.SerializeToString(
        deterministic=True
    )


def test_every_golden_file_has_a_builder() -> None:
    """No orphan vector lies in testdata/golden without a builder that explains it."""
    on_disk = {path.stem for path in GOLDEN_DIR.glob("*.binpb")}
    assert on_disk == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_vector_breaks_its_named_rule(name: str) -> None:
    """Each invalid vector decodes to a violation of exactly the rule its manifest names."""
    manifest = json.loads((INVALID_DIR / "manifest.json").read_text())
    raw = (INVALID_DIR / f"{name}.binpb").read_bytes()
    with pytest.raises(ProtocolViolation) as caught:
        decode_response(raw)
    assert caught.value.rule == manifest[name]["rule"] == INVALID[name][1]


def _summary(message: Message) -> dict[str, object]:
    """What an envelope says, in plain values: data, state, remote_status_input, error code."""
    assert isinstance(message, plugin_pb2.InvokeResponse)
    status = message.status if message.HasField("status") else None
    remote_input = None
    if status is not None and status.HasField("remote_status_input"):
        remote_input = struct_to_dict(status.remote_status_input)
    return {
        "data": message.data if message.HasField("data") else None,
        "state": task_pb2.TaskState.Name(status.state) if status is not None else None,
        "remote_status_input": remote_input,
        "error_code": status.error.code if status is not None else None,
    }


_RESULT = dict_to_struct({"text": "hello world", "word_count": 2}).SerializeToString(
    deterministic=True
)
_JOB = {"remote_job_id": "j-42", "attempt": 1}
RESPONSES: dict[str, dict[str, object]] = {
    "response_succeeded": {
        "data": _RESULT,
        "state": None,
        "remote_status_input": None,
        "error_code": None,
    },
    "response_succeeded_empty_data": {
        "data": b"",
        "state": "TASK_STATE_SUCCEEDED",
        "remote_status_input": None,
        "error_code": "",
    },
    "response_running": {
        "data": None,
        "state": "TASK_STATE_RUNNING",
        "remote_status_input": _JOB,
        "error_code": "",
    },
    "response_running_empty_input": {
        "data": None,
        "state": "TASK_STATE_RUNNING",
        "remote_status_input": {},
        "error_code": "",
    },
    "response_failed": {
        "data": None,
        "state": "TASK_STATE_FAILED",
        "remote_status_input": None,
        "error_code": "UNSUPPORTED_AUDIO_FORMAT",
    },
    "response_cancelled": {
        "data": None,
        "state": "TASK_STATE_CANCELLED",
        "remote_status_input": None,
        "error_code": "",
    },
}
"""What each golden answer decodes to."""


def test_every_golden_response_has_its_expected_values() -> None:
    """The table below covers every golden response."""
    assert set(RESPONSES) == {name for name in GOLDEN if name.startswith("response_")}


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_golden_responses_are_valid(name: str) -> None:
    """Every golden response decodes as a valid answer (CANCELLED ones answer a cancel request)
    to the values it was built with."""
    raw = (GOLDEN_DIR / f"{name}.binpb").read_bytes()
    cancel = "cancelled" in name
    decoded = decode_response(raw, cancel_requested=cancel)
    assert decoded == GOLDEN[name]()
    assert _summary(decoded) == RESPONSES[name]
    assert response_violations(decoded, cancel_requested=cancel) == []


def test_golden_failed_response_carries_the_whole_error_chain() -> None:
    """The FAILED vector's envelope decodes with every field, down its wrapped chain."""
    error = decode_response((GOLDEN_DIR / "response_failed.binpb").read_bytes()).status.error
    assert (error.message, error.suggestion, error.rpc_code, error.domain) == (
        "The audio file could not be decoded.",
        "Upload a WAV or MP3 file.",
        3,
        "transcriber.example.com",
    )
    assert dict(error.metadata) == {"format": "ogg", "max_seconds": "600"}
    assert (error.wrapped_error.code, error.wrapped_error.wrapped_message) == (
        "REMOTE_JOB_FAILED",
        "HTTPError: 422 Unprocessable Entity",
    )


@pytest.mark.parametrize(
    ("name", "check_number", "is_status_check", "cancel_requested"),
    [
        ("request_initiate", 0, False, False),
        ("request_status_check", 3, True, False),
        ("request_cancel", 4, True, True),
    ],
)
def test_golden_requests_are_valid(
    name: str, check_number: int, is_status_check: bool, cancel_requested: bool
) -> None:
    """Every golden request decodes as a valid engine request with its call's values."""
    decoded = decode_request((GOLDEN_DIR / f"{name}.binpb").read_bytes())
    assert decoded == GOLDEN[name]()
    assert request_violations(decoded) == []
    assert decoded.context.check_number == check_number
    assert decoded.is_status_check is is_status_check
    assert decoded.cancel_requested is cancel_requested
    assert decoded.context.idempotency_key == "idem-7f3a"
    assert struct_to_dict(struct_pb2.Struct.FromString(decoded.data)) == {
        "audio_url": "https://example.com/talk.wav",
        "language": "en-GB",
    }
    if is_status_check:
        assert struct_to_dict(decoded.status.remote_status_input) == _JOB
