"""The protocol rules of asyncplugin v1, in one place.

The SDK checks what it sends, the engine checks what it receives, and the conformance kit reports
violations by rule name. Each rule is a `Rule` (see `rules.py`), documented in
proto/asyncplugin/v1/plugin.proto ("Protocol rules").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Literal

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.protobuf import message as pb_message

from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2

from . import limits
from .errors import ProtocolViolation
from .rules import Rule
from .structs import struct_depth

_ANSWER_STATES: Final = frozenset(
    {
        task_pb2.TASK_STATE_RUNNING,
        task_pb2.TASK_STATE_SUCCEEDED,
        task_pb2.TASK_STATE_FAILED,
        task_pb2.TASK_STATE_CANCELLED,
    }
)
_KNOWN_STATES: Final = frozenset(task_pb2.TaskState.values())

_TASK_TEXT_LIMITS: Final = (
    ("status_message", limits.TEXT_MAX_BYTES),
    ("status_suggestion", limits.TEXT_MAX_BYTES),
    ("status_code", limits.CODE_MAX_BYTES),
    ("remote_status_message", limits.TEXT_MAX_BYTES),
)
_StructField = Literal["remote_status_input", "remote_status_output"]
_STRUCTS: Final[tuple[tuple[_StructField, Rule, Rule], ...]] = (
    (
        "remote_status_input",
        Rule.REMOTE_STATUS_INPUT_TOO_LARGE,
        Rule.REMOTE_STATUS_INPUT_TOO_DEEP,
    ),
    (
        "remote_status_output",
        Rule.REMOTE_STATUS_OUTPUT_TOO_LARGE,
        Rule.REMOTE_STATUS_OUTPUT_TOO_DEEP,
    ),
)
_TimestampField = Literal["create_time", "update_time", "start_time", "end_time", "next_check_time"]
_TIMESTAMPS: Final[tuple[_TimestampField, ...]] = (
    "create_time",
    "update_time",
    "start_time",
    "end_time",
    "next_check_time",
)
# google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_TIMESTAMP_SECONDS: Final = (-62_135_596_800, 253_402_300_799)
# google.protobuf.Duration: +-10,000 years, nanos of the same sign as seconds.
_DURATION_MAX_SECONDS: Final = 315_576_000_000
_NANOS_MAX: Final = 999_999_999
_ERROR_TEXT_LIMITS: Final = (
    ("message", limits.TEXT_MAX_BYTES),
    ("internal_message", limits.DETAIL_MAX_BYTES),
    ("suggestion", limits.TEXT_MAX_BYTES),
    ("code", limits.CODE_MAX_BYTES),
    ("domain", limits.DOMAIN_MAX_BYTES),
    ("wrapped_message", limits.DETAIL_MAX_BYTES),
)


def _violation(rule: Rule, field: str, message: str) -> ProtocolViolation:
    return ProtocolViolation(rule, message, field=field)


def _text(msg: pb_message.Message, name: str, limit: int, path: str) -> Iterator[ProtocolViolation]:
    value: str = getattr(msg, name)
    if len(value) * 4 <= limit:  # fits however it encodes (UTF-8: at most 4 bytes a character)
        return
    size = len(value.encode("utf-8"))
    if size > limit:
        yield _violation(
            Rule.FIELD_TOO_LONG, f"{path}.{name}", f"{path}.{name} is {size} bytes; limit {limit}"
        )


def _timestamp(msg: pb_message.Message, name: str, path: str) -> Iterator[ProtocolViolation]:
    """A set Timestamp outside the well-known type's range is malformed (no language can read
    it as a date: Python's datetime raises, JSON encoders refuse it)."""
    if not msg.HasField(name):
        return
    value: timestamp_pb2.Timestamp = getattr(msg, name)
    low, high = _TIMESTAMP_SECONDS
    if not (low <= value.seconds <= high and 0 <= value.nanos <= _NANOS_MAX):
        yield _violation(
            Rule.MALFORMED_MESSAGE,
            f"{path}.{name}",
            f"{path}.{name} ({value.seconds} s, {value.nanos} ns) is outside the range of "
            "google.protobuf.Timestamp (years 1 to 9999)",
        )


def _duration(value: duration_pb2.Duration, path: str) -> Iterator[ProtocolViolation]:
    """A Duration outside the well-known type's range, or with mixed signs, is malformed."""
    seconds, nanos = value.seconds, value.nanos
    if (
        abs(seconds) > _DURATION_MAX_SECONDS
        or abs(nanos) > _NANOS_MAX
        or (seconds > 0 > nanos)
        or (seconds < 0 < nanos)
    ):
        yield _violation(
            Rule.MALFORMED_MESSAGE,
            path,
            f"{path} ({seconds} s, {nanos} ns) is outside the range of google.protobuf.Duration "
            "(+-10,000 years, seconds and nanos of one sign)",
        )


def _struct(
    struct: struct_pb2.Struct, path: str, large_rule: Rule, deep_rule: Rule
) -> Iterator[ProtocolViolation]:
    size = struct.ByteSize()
    if size > limits.REMOTE_STATUS_MAX_BYTES:
        yield _violation(
            large_rule,
            path,
            f"{path} is {size} bytes serialized; limit {limits.REMOTE_STATUS_MAX_BYTES}",
        )
    depth = struct_depth(struct)
    if depth > limits.STRUCT_MAX_DEPTH:
        yield _violation(
            deep_rule, path, f"{path} nests {depth} levels; limit {limits.STRUCT_MAX_DEPTH}"
        )


def _metadata(error: error_pb2.Error, path: str) -> Iterator[ProtocolViolation]:
    """The metadata map's bounds: entries first (counting them is cheap, summing a huge map's
    bytes is not), then the UTF-8 bytes of its keys and values together."""
    entries = len(error.metadata)
    if entries > limits.ERROR_METADATA_MAX_ENTRIES:
        detail = f"{entries} entries; limit {limits.ERROR_METADATA_MAX_ENTRIES}"
    else:
        size = sum(
            len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in error.metadata.items()
        )
        if size <= limits.ERROR_METADATA_MAX_BYTES:
            return
        detail = f"{size} bytes of keys and values; limit {limits.ERROR_METADATA_MAX_BYTES}"
    yield _violation(
        Rule.ERROR_METADATA_TOO_LARGE, f"{path}.metadata", f"{path}.metadata has {detail}"
    )


def error_violations(error: error_pb2.Error, *, path: str = "error") -> Iterator[ProtocolViolation]:
    """Yields every rule the error envelope (and its wrapped chain) breaks."""
    depth = 1
    current: error_pb2.Error | None = error
    current_path = path
    while current is not None:
        if depth > limits.ERROR_MAX_DEPTH:
            yield _violation(
                Rule.ERROR_TOO_DEEP,
                path,
                f"{path} nests more than {limits.ERROR_MAX_DEPTH} Errors",
            )
            return
        if not current.message:
            yield _violation(
                Rule.ERROR_WITHOUT_MESSAGE,
                f"{current_path}.message",
                f"{current_path}.message is empty",
            )
        for name, limit in _ERROR_TEXT_LIMITS:
            yield from _text(current, name, limit, current_path)
        yield from _metadata(current, current_path)
        if current.WhichOneof("wrapped") == "wrapped_error":
            current = current.wrapped_error
            current_path += ".wrapped_error"
            depth += 1
        else:
            current = None


# Each level of Struct/ListValue nesting costs at least 4 bytes on the wire (the element or map
# entry's tag and length, then the Value's struct_value/list_value tag and length), so a Struct of
# this many bytes or fewer cannot nest deeper than STRUCT_MAX_DEPTH: no need to walk it.
_DEPTH_FREE_BYTES: Final = 4 * (limits.STRUCT_MAX_DEPTH - 1)


def _text_fits(value: str, limit: int) -> bool:
    """UTF-8 needs at most 4 bytes a character: most texts fit without being encoded."""
    return len(value) * 4 <= limit or len(value.encode("utf-8")) <= limit


def _task_clean(task: task_pb2.Task, answer: bool) -> bool:
    """True if the Task surely breaks no rule: presence tests and plain reads, no lists built.

    False means "look closer", never "invalid": `task_violations` then runs every check to name
    what is wrong. A Task carrying an error envelope always gets the full check.
    """
    state = task.state
    if state not in (_ANSWER_STATES if answer else _KNOWN_STATES):
        return False
    if state == task_pb2.TASK_STATE_UNSPECIFIED or state == task_pb2.TASK_STATE_FAILED:
        return False
    has = task.HasField  # cheaper than ListFields, which wraps every field it lists
    if has("error"):
        return False
    if has("remote_status_input"):
        if not _struct_clean(task.remote_status_input):
            return False
    elif state == task_pb2.TASK_STATE_RUNNING:
        return False
    if has("remote_status_output") and not _struct_clean(task.remote_status_output):
        return False
    if (
        max(len(task.status_message), len(task.status_suggestion), len(task.remote_status_message))
        * 4
        > limits.TEXT_MAX_BYTES
        or len(task.status_code) * 4 > limits.CODE_MAX_BYTES
    ):  # some text may be too long: measure each one's UTF-8 bytes
        for name, limit in _TASK_TEXT_LIMITS:
            if not _text_fits(getattr(task, name), limit):
                return False
    low, high = _TIMESTAMP_SECONDS
    # Written out, not a loop over the names: attribute reads cost less than getattr.
    if has("create_time"):
        value = task.create_time
        if not (low <= value.seconds <= high and 0 <= value.nanos <= _NANOS_MAX):
            return False
    if has("update_time"):
        value = task.update_time
        if not (low <= value.seconds <= high and 0 <= value.nanos <= _NANOS_MAX):
            return False
    if has("start_time"):
        value = task.start_time
        if not (low <= value.seconds <= high and 0 <= value.nanos <= _NANOS_MAX):
            return False
    if has("end_time"):
        value = task.end_time
        if not (low <= value.seconds <= high and 0 <= value.nanos <= _NANOS_MAX):
            return False
    if has("next_check_time"):
        value = task.next_check_time
        if not (low <= value.seconds <= high and 0 <= value.nanos <= _NANOS_MAX):
            return False
    if has("check_after"):
        duration = task.check_after
        seconds, nanos = duration.seconds, duration.nanos
        if seconds < 0 or nanos < 0 or seconds > _DURATION_MAX_SECONDS or nanos > _NANOS_MAX:
            return False
    return not has("progress") or _progress_clean(task.progress)


def _struct_clean(struct: struct_pb2.Struct) -> bool:
    """True if the Struct is within the size and depth limits."""
    size = struct.ByteSize()
    if size > limits.REMOTE_STATUS_MAX_BYTES:
        return False
    return size <= _DEPTH_FREE_BYTES or struct_depth(struct) <= limits.STRUCT_MAX_DEPTH


def _progress_clean(progress: task_pb2.Progress) -> bool:
    """True if the progress report surely breaks no rule (see `_progress_violations`)."""
    if progress.HasField("fraction") and not 0.0 <= progress.fraction <= 1.0:
        return False
    has_done, has_total = progress.HasField("done"), progress.HasField("total")
    if (has_done and progress.done < 0) or (has_total and progress.total < 0):
        return False
    if has_done and has_total and progress.done > progress.total:
        return False
    return _text_fits(progress.stage, limits.CODE_MAX_BYTES)


def task_violations(
    task: task_pb2.Task, *, path: str = "status", answer: bool = False
) -> Iterator[ProtocolViolation]:
    """Yields every rule the Task breaks. `answer=True` applies the rules for a plugin's answer."""
    if _task_clean(task, answer):
        return
    yield from _every_task_violation(task, path=path, answer=answer)


def _every_task_violation(
    task: task_pb2.Task, *, path: str, answer: bool
) -> Iterator[ProtocolViolation]:
    """Every check of every rule, in order (what `task_violations` runs past the fast pass)."""
    yield from _state_violations(task.state, f"{path}.state", answer=answer)
    yield from _pairing_violations(task, path)
    for struct_name, too_large, too_deep in _STRUCTS:
        if task.HasField(struct_name):
            struct = getattr(task, struct_name)
            yield from _struct(struct, f"{path}.{struct_name}", too_large, too_deep)
    for name, limit in _TASK_TEXT_LIMITS:
        yield from _text(task, name, limit, path)
    for name in _TIMESTAMPS:
        yield from _timestamp(task, name, path)
    if task.HasField("check_after"):
        yield from _check_after_violations(task.check_after, f"{path}.check_after")
    if task.HasField("progress"):
        yield from _progress_violations(task.progress, f"{path}.progress")


def _state_violations(
    state: task_pb2.TaskState.ValueType, path: str, *, answer: bool
) -> Iterator[ProtocolViolation]:
    """A state must be set and defined; an answer's must be one a plugin may answer."""
    if state == task_pb2.TASK_STATE_UNSPECIFIED:
        yield _violation(Rule.STATE_UNSPECIFIED, path, f"{path} is unset (TASK_STATE_UNSPECIFIED)")
    elif state not in _KNOWN_STATES:
        yield _violation(Rule.STATE_UNKNOWN, path, f"{path} {state} is not a defined TaskState")
    elif answer and state not in _ANSWER_STATES:
        yield _violation(
            Rule.STATE_NOT_ALLOWED_IN_ANSWER,
            path,
            f"{path} {task_pb2.TaskState.Name(state)} is not allowed in a plugin's answer",
        )


def _pairing_violations(task: task_pb2.Task, path: str) -> Iterator[ProtocolViolation]:
    """RUNNING goes with remote_status_input, FAILED with an error, and an error with FAILED."""
    state = task.state
    if state == task_pb2.TASK_STATE_RUNNING and not task.HasField("remote_status_input"):
        yield _violation(
            Rule.RUNNING_WITHOUT_REMOTE_STATUS_INPUT,
            f"{path}.remote_status_input",
            f"{path} is RUNNING but has no remote_status_input (send {{}} if there is nothing "
            "to stash)",
        )
    if state == task_pb2.TASK_STATE_FAILED and not task.HasField("error"):
        yield _violation(
            Rule.FAILED_WITHOUT_ERROR,
            f"{path}.error",
            f"{path} is FAILED but has no error envelope",
        )
    if task.HasField("error"):
        if state != task_pb2.TASK_STATE_FAILED:
            yield _violation(
                Rule.ERROR_WITHOUT_FAILED,
                f"{path}.error",
                f"{path} carries an error but is not FAILED",
            )
        yield from error_violations(task.error, path=f"{path}.error")


def _check_after_violations(value: duration_pb2.Duration, path: str) -> Iterator[ProtocolViolation]:
    """check_after is a well-formed Duration, and not negative."""
    yield from _duration(value, path)
    if value.seconds < 0 or value.nanos < 0:
        yield _violation(Rule.NEGATIVE_CHECK_AFTER, path, f"{path} is negative")


def _progress_violations(progress: task_pb2.Progress, path: str) -> Iterator[ProtocolViolation]:
    if progress.HasField("fraction") and not 0.0 <= progress.fraction <= 1.0:
        yield _violation(
            Rule.PROGRESS_FRACTION_OUT_OF_RANGE,
            f"{path}.fraction",
            f"{path}.fraction {progress.fraction} is outside 0.0..1.0",
        )
    for name in ("done", "total"):
        if progress.HasField(name) and getattr(progress, name) < 0:
            yield _violation(Rule.PROGRESS_NEGATIVE, f"{path}.{name}", f"{path}.{name} is negative")
    if (
        progress.HasField("done")
        and progress.HasField("total")
        and progress.done > progress.total >= 0
    ):
        yield _violation(
            Rule.PROGRESS_DONE_EXCEEDS_TOTAL,
            f"{path}.done",
            f"{path}.done {progress.done} exceeds total {progress.total}",
        )
    yield from _text(progress, "stage", limits.CODE_MAX_BYTES, path)


def response_violations(
    response: plugin_pb2.InvokeResponse, *, cancel_requested: bool = False
) -> list[ProtocolViolation]:
    """Every rule a plugin's answer breaks (empty when the answer is valid)."""
    found: list[ProtocolViolation] = []
    has_data = response.HasField("data")
    has_status = response.HasField("status")
    if not has_data and not has_status:
        found.append(
            _violation(Rule.NO_DATA_OR_STATUS, "", "the answer sets neither data nor status")
        )
    if has_status:
        status = response.status
        if not _task_clean(status, True):
            found.extend(_every_task_violation(status, path="status", answer=True))
        if has_data and status.state != task_pb2.TASK_STATE_SUCCEEDED:
            found.append(
                _violation(
                    Rule.DATA_WITH_UNFINISHED_STATE,
                    "status.state",
                    "the answer sets data but its status is "
                    f"{_state_name(status.state)}, not SUCCEEDED",
                )
            )
        if status.state == task_pb2.TASK_STATE_CANCELLED and not cancel_requested:
            found.append(
                _violation(
                    Rule.CANCELLED_WITHOUT_REQUEST,
                    "status.state",
                    "the answer is CANCELLED but the request did not ask to cancel",
                )
            )
    return found


def request_violations(request: plugin_pb2.InvokeRequest) -> list[ProtocolViolation]:
    """Every rule an engine's request breaks (empty when the request is valid)."""
    found: list[ProtocolViolation] = []
    # Each sub-message read once: every read and presence test is a call into protobuf.
    context = request.context
    status = request.status if request.HasField("status") else None
    number = context.check_number
    if request.is_status_check:
        if status is None or not status.HasField("remote_status_input"):
            found.append(
                _violation(
                    Rule.STATUS_CHECK_WITHOUT_STATUS,
                    "status.remote_status_input",
                    "a status check must carry status with remote_status_input",
                )
            )
        if number < 1:
            found.append(
                _violation(
                    Rule.CHECK_NUMBER_MISMATCH,
                    "context.check_number",
                    f"a status check has check_number {number}; expected >= 1",
                )
            )
    elif number != 0:
        found.append(
            _violation(
                Rule.CHECK_NUMBER_MISMATCH,
                "context.check_number",
                f"an initiating call has check_number {number}; expected 0",
            )
        )
    if context.HasField("deadline"):
        found.extend(_timestamp(context, "deadline", "context"))
    if status is not None and not _task_clean(status, False):
        found.extend(_every_task_violation(status, path="status", answer=False))
    return found


def check_response(response: plugin_pb2.InvokeResponse, *, cancel_requested: bool = False) -> None:
    """Raises the first ProtocolViolation the answer commits, if any."""
    for violation in response_violations(response, cancel_requested=cancel_requested):
        raise violation


def check_request(request: plugin_pb2.InvokeRequest) -> None:
    """Raises the first ProtocolViolation the request commits, if any."""
    for violation in request_violations(request):
        raise violation


def decode_response(data: bytes, *, cancel_requested: bool = False) -> plugin_pb2.InvokeResponse:
    """Decodes and validates an answer's bytes; any failure is a named ProtocolViolation."""
    response = plugin_pb2.InvokeResponse()
    try:
        response.ParseFromString(data)
    except (pb_message.DecodeError, RecursionError) as err:
        raise _violation(
            Rule.MALFORMED_MESSAGE, "", f"the answer is not a valid InvokeResponse: {err}"
        ) from err
    check_response(response, cancel_requested=cancel_requested)
    return response


def decode_request(data: bytes) -> plugin_pb2.InvokeRequest:
    """Decodes and validates a request's bytes; any failure is a named ProtocolViolation."""
    request = plugin_pb2.InvokeRequest()
    try:
        request.ParseFromString(data)
    except (pb_message.DecodeError, RecursionError) as err:
        raise _violation(
            Rule.MALFORMED_MESSAGE, "", f"the request is not a valid InvokeRequest: {err}"
        ) from err
    check_request(request)
    return request


def _state_name(state: int) -> str:
    try:
        return task_pb2.TaskState.Name(state).removeprefix("TASK_STATE_")  # type: ignore[arg-type]
    except ValueError:
        return str(state)
