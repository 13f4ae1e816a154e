"""A catalogue of malicious or broken plugin answers, as raw bytes, with what the engine must do.

Each entry builds the bytes a plugin sends (so it can break rules no SDK would let it break:
invalid UTF-8, unknown enum values, nesting past protobuf's own recursion limit) and names the
outcome the engine must record for THAT task: the envelope `code` and, for protocol violations,
the rule in `metadata["rule"]`. Served by the in-process test servers and by
tests.reliability.bad_plugin (a process of its own, for the memory figures).

A task's payload selects its behaviour: {"bad": "<name>"} for a catalogue entry, or
{"ends_at": <epoch s>} for a well-behaved job that answers RUNNING (with a check_after hint
pointing at ends_at) until then, and SUCCEEDED after; thousands of those end at one instant.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import struct_pb2

from asyncplugin.protocol import dict_to_struct, limits
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2

Build = Callable[[plugin_pb2.InvokeRequest], bytes]


@dataclass(frozen=True)
class Bad:
    """One bad answer and the outcome it must produce."""

    build: Build
    code: str
    """The recorded error envelope's code ("" when the task must SUCCEED anyway)."""
    rule: str = ""
    """metadata["rule"] for PROTOCOL_VIOLATION."""
    note: str = ""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def nested_struct(depth: int) -> bytes:
    """An encoded Struct nesting `depth` Structs ({"a": {"a": ... {}}}), built in O(depth).

    Each level only adds a prefix (field tags and lengths) in front of the level inside it, so
    the prefixes are computed from the inside out and joined outside in.
    """
    prefixes: list[bytes] = []
    size = 0  # the encoded size of the Struct at the current level
    for _ in range(depth - 1):
        value = _varint(5 << 3 | 2) + _varint(size)  # Value.struct_value
        value_size = len(value) + size
        entry = b"\x0a\x01a" + _varint(2 << 3 | 2) + _varint(value_size)  # key "a", value
        entry_size = len(entry) + value_size
        struct = _varint(1 << 3 | 2) + _varint(entry_size)  # Struct.fields
        prefixes.append(struct + entry + value)
        size += len(struct) + len(entry) + len(value)
    return b"".join(reversed(prefixes))


def _running_with(field_number: int, struct: bytes, *, also_input: bool = True) -> bytes:
    """A RUNNING answer whose Task field `field_number` (a Struct) is `struct`."""
    task = b"\x10\x02"  # state = RUNNING
    if also_input and field_number != 8:
        task += _field(8, b"")  # remote_status_input = {}
    task += _field(field_number, struct)
    return _field(2, task)  # InvokeResponse.status


def _answer(task: task_pb2.Task) -> bytes:
    return plugin_pb2.InvokeResponse(status=task).SerializeToString()


def _running(**fields: object) -> task_pb2.Task:
    task = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING, **fields)  # type: ignore[arg-type]
    task.remote_status_input.SetInParent()
    return task


def _deep_error(depth: int) -> task_pb2.Task:
    error = error_pb2.Error(message="level 1")
    current = error
    for level in range(2, depth + 1):
        current.wrapped_error.message = f"level {level}"
        current = current.wrapped_error
    return task_pb2.Task(state=task_pb2.TASK_STATE_FAILED, error=error)


def _big_struct(size: int) -> struct_pb2.Struct:
    return dict_to_struct({"blob": "x" * size})


def _constant(data: bytes) -> Build:
    return lambda request: data


def _bloated_running(request: plugin_pb2.InvokeRequest) -> bytes:
    """RUNNING with 1 MiB of unknown fields inside the Task (field 999), then SUCCEEDED."""
    if request.context.check_number >= 3:
        return plugin_pb2.InvokeResponse(data=b"bloated but done").SerializeToString()
    task = _running().SerializeToString() + _field(999, b"u" * (1 << 20))
    return _field(2, task)


_RUNNING_BYTES = _answer(_running(status_message="half"))
_STRUCT_BEYOND_PROTOBUF = _running_with(8, nested_struct(150))
_STRUCT_10K = _running_with(8, nested_struct(10_000))

CATALOGUE: dict[str, Bad] = {
    "message_too_large": Bad(
        _constant(plugin_pb2.InvokeResponse(data=b"x" * (5 << 20)).SerializeToString()),
        "MESSAGE_TOO_LARGE",
        note="5 MiB answer, limit 4 MiB",
    ),
    "input_too_deep": Bad(
        _constant(_running_with(8, nested_struct(limits.STRUCT_MAX_DEPTH + 1))),
        "PROTOCOL_VIOLATION",
        "REMOTE_STATUS_INPUT_TOO_DEEP",
        "33 levels, limit 32",
    ),
    "input_beyond_protobuf_depth": Bad(
        _constant(_STRUCT_BEYOND_PROTOBUF),
        "PROTOCOL_VIOLATION",
        "MALFORMED_MESSAGE",
        "150 levels: past protobuf's recursion limit (100)",
    ),
    "input_10k_deep": Bad(
        _constant(_STRUCT_10K),
        "PROTOCOL_VIOLATION",
        "MALFORMED_MESSAGE",
        "10,000 levels",
    ),
    "input_too_large": Bad(
        _constant(
            _answer(_running(remote_status_input=_big_struct(limits.REMOTE_STATUS_MAX_BYTES)))
        ),
        "PROTOCOL_VIOLATION",
        "REMOTE_STATUS_INPUT_TOO_LARGE",
        "65,548 bytes, limit 65,536",
    ),
    "output_too_deep": Bad(
        _constant(_running_with(9, nested_struct(limits.STRUCT_MAX_DEPTH + 1))),
        "PROTOCOL_VIOLATION",
        "REMOTE_STATUS_OUTPUT_TOO_DEEP",
    ),
    "output_too_large": Bad(
        _constant(
            _answer(_running(remote_status_output=_big_struct(limits.REMOTE_STATUS_MAX_BYTES)))
        ),
        "PROTOCOL_VIOLATION",
        "REMOTE_STATUS_OUTPUT_TOO_LARGE",
    ),
    "utf8_in_status_message": Bad(
        _constant(_field(2, b"\x10\x02" + _field(8, b"") + _field(3, b"caf\xc3"))),
        "PROTOCOL_VIOLATION",
        "MALFORMED_MESSAGE",
        "truncated UTF-8 sequence",
    ),
    "utf8_in_struct_key": Bad(
        _constant(_running_with(8, _field(1, _field(1, b"\xff\xfe") + _field(2, b"")))),
        "PROTOCOL_VIOLATION",
        "MALFORMED_MESSAGE",
    ),
    "utf8_in_error_message": Bad(
        _constant(_field(2, b"\x10\x04" + _field(13, _field(1, b"\xed\xa0\x80")))),
        "PROTOCOL_VIOLATION",
        "MALFORMED_MESSAGE",
        "an encoded surrogate (invalid in UTF-8)",
    ),
    "unknown_state": Bad(
        _constant(_field(2, b"\x10\x63" + _field(8, b""))),
        "PROTOCOL_VIOLATION",
        "STATE_UNKNOWN",
        "state 99",
    ),
    "negative_state": Bad(
        _constant(_field(2, b"\x10" + _varint((1 << 64) - 1) + _field(8, b""))),
        "PROTOCOL_VIOLATION",
        "STATE_UNKNOWN",
        "state -1",
    ),
    "waiting_state": Bad(
        _constant(_answer(task_pb2.Task(state=task_pb2.TASK_STATE_WAITING))),
        "PROTOCOL_VIOLATION",
        "STATE_NOT_ALLOWED_IN_ANSWER",
    ),
    "unspecified_state": Bad(
        _constant(_answer(task_pb2.Task(status_message="?"))),
        "PROTOCOL_VIOLATION",
        "STATE_UNSPECIFIED",
    ),
    "error_too_deep": Bad(
        _constant(_answer(_deep_error(limits.ERROR_MAX_DEPTH + 1))),
        "PROTOCOL_VIOLATION",
        "ERROR_TOO_DEEP",
        "9 wrapped errors, limit 8",
    ),
    "text_too_long": Bad(
        _constant(_answer(_running(status_message="x" * (limits.TEXT_MAX_BYTES + 1)))),
        "PROTOCOL_VIOLATION",
        "FIELD_TOO_LONG",
    ),
    "negative_check_after": Bad(
        _constant(_answer(_running(check_after={"seconds": -5}))),
        "PROTOCOL_VIOLATION",
        "NEGATIVE_CHECK_AFTER",
    ),
    "nan_progress": Bad(
        _constant(_answer(_running(progress=task_pb2.Progress(fraction=math.nan)))),
        "PROTOCOL_VIOLATION",
        "PROGRESS_FRACTION_OUT_OF_RANGE",
    ),
    "timestamp_out_of_range": Bad(
        _constant(_answer(_running(create_time={"seconds": 1 << 62}))),
        "PROTOCOL_VIOLATION",
        "MALFORMED_MESSAGE",
        "year ~1.5e11",
    ),
    "duration_out_of_range": Bad(
        _constant(_answer(_running(check_after={"seconds": 1 << 62}))),
        "PROTOCOL_VIOLATION",
        "MALFORMED_MESSAGE",
    ),
    "truncated": Bad(
        _constant(_RUNNING_BYTES[: len(_RUNNING_BYTES) // 2]),
        "PROTOCOL_VIOLATION",
        "MALFORMED_MESSAGE",
    ),
    "garbage": Bad(
        _constant(b"\xff\xff\xff\xff garbage \x00\x01"),
        "PROTOCOL_VIOLATION",
        "MALFORMED_MESSAGE",
    ),
    "empty": Bad(_constant(b""), "PROTOCOL_VIOLATION", "NO_DATA_OR_STATUS"),
    "cancelled_unasked": Bad(
        _constant(_answer(task_pb2.Task(state=task_pb2.TASK_STATE_CANCELLED))),
        "PROTOCOL_VIOLATION",
        "CANCELLED_WITHOUT_REQUEST",
    ),
    "unknown_fields_in_task": Bad(
        _bloated_running,
        "",
        note="1 MiB of unknown fields in every RUNNING Task: dropped, not stored or echoed",
    ),
}


def job(request: plugin_pb2.InvokeRequest, ends_at: float) -> bytes:
    """A well-behaved job: RUNNING (hint: the time left) until `ends_at`, then SUCCEEDED."""
    left = ends_at - time.time()
    if request.is_status_check and left <= 0:
        return plugin_pb2.InvokeResponse(data=b"done").SerializeToString()
    task = _running(status_message="working")
    task.check_after.FromNanoseconds(max(0, round(left * 1e9)))
    return _answer(task)
