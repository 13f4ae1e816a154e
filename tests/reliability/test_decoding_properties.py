"""Property tests of decoding and validation: any input is a valid message or a named violation.

Hypothesis feeds the decoding entry points three kinds of input: arbitrary bytes, messages built
field by field with extreme values (unknown enum values, timestamps over the whole int64 range,
NaN, deep Structs, long and multi-byte strings, long error chains), and golden wire vectors with
bytes flipped, cut or inserted. For each, the only exception allowed out of the protocol layer
is ProtocolViolation with a rule from RULES; whatever is accepted must then go through every
conversion the two sides apply to it (Task.from_proto, PluginError.from_proto, struct_to_dict,
the engine's read_answer) without raising, and a RUNNING answer the engine accepts must produce
a status-check request that the plugin SDK accepts in turn.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from google.rpc import status_pb2
from hypothesis import given
from hypothesis import strategies as st

from asyncplugin.protocol import (
    decode_payload,
    dict_to_struct,
    status_to_error,
    struct_to_dict,
)
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2
from tests.reliability.chain import (
    consume_payload,
    consume_request,
    consume_response,
    consume_status,
)
from tests.reliability.sizes import TIMEOUT_S, examples

GOLDEN = sorted((Path(__file__).resolve().parents[2] / "testdata").glob("*/*.binpb"))
INT64 = st.integers(-(2**63), 2**63 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)


# -- strategies -----------------------------------------------------------------------------

_TEXT = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="é€𝄞x", min_size=2040, max_size=2060),  # around 4,096 bytes of UTF-8
    st.integers(4090, 4100).map(lambda n: "x" * n),
    st.integers(16_380, 16_390).map(lambda n: "x" * n),
)
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**60), 2**60)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=40,
)


@st.composite
def deep_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A dict nested around the Struct depth limit (32) or the parser's limit (~33)."""
    value: dict[str, Any] = {}
    for _ in range(draw(st.integers(1, 40)) - 1):
        value = {"k": value} if draw(st.booleans()) else {"l": [value]}
    return value


_STRUCT_VALUE = st.one_of(st.dictionaries(st.text(max_size=8), _JSON, max_size=4), deep_dicts())


@st.composite
def errors(draw: st.DrawFn, depth: int = 0) -> error_pb2.Error:
    """An Error envelope, chains up to 12 deep, texts around their limits."""
    error = error_pb2.Error(
        message=draw(_TEXT),
        internal_message=draw(_TEXT),
        suggestion=draw(st.sampled_from(["", "try again"])),
        code=draw(st.sampled_from(["", "X", "C" * 129])),
        rpc_code=draw(INT32),
        domain=draw(st.sampled_from(["", "d" * 257])),
        metadata=draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
    )
    which = draw(st.integers(0, 2)) if depth < 12 else 0
    if which == 1:
        error.wrapped_message = draw(_TEXT)
    elif which == 2:
        error.wrapped_error.CopyFrom(draw(errors(depth + 1)))
    return error


@st.composite
def tasks(draw: st.DrawFn) -> task_pb2.Task:
    """A Task with any state value, extreme times, progress, Structs, and maybe an error.

    Half of them are shaped like a valid answer (a RUNNING one carries remote_status_input, a
    FAILED one an error with a message, texts within limits) so that the rest of the chain,
    past validation, is exercised too; the times, hints and progress stay extreme."""
    answer_like = draw(st.booleans())
    if answer_like:
        state = draw(st.sampled_from([2, 3, 4]))
        task = task_pb2.Task(state=state, status_message=draw(st.text(max_size=40)))  # type: ignore[arg-type]
        if state == 2:
            task.remote_status_input.CopyFrom(dict_to_struct(draw(_STRUCT_VALUE)))
        if state == 4:
            task.error.message = draw(st.text(min_size=1, max_size=40))
            task.error.metadata.update(
                draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
            )
    else:
        task = task_pb2.Task(
            state=task_pb2.TaskState.ValueType(draw(st.one_of(st.integers(0, 6), INT32))),
            status_message=draw(_TEXT),
            status_code=draw(st.sampled_from(["", "OK", "C" * 129])),
            task_id=draw(st.text(max_size=8)),
            retries=draw(INT32),
            check_count=draw(INT32),
        )
    if not answer_like and draw(st.booleans()):
        task.remote_status_input.CopyFrom(dict_to_struct(draw(_STRUCT_VALUE)))
    if draw(st.booleans()):
        task.remote_status_output.CopyFrom(dict_to_struct(draw(_STRUCT_VALUE)))
    for name in ("create_time", "update_time", "start_time", "end_time", "next_check_time"):
        if draw(st.booleans()):
            stamp = getattr(task, name)
            stamp.seconds = draw(st.one_of(st.integers(0, 2**33), INT64))
            stamp.nanos = draw(st.one_of(st.integers(0, 999_999_999), INT32))
    if draw(st.booleans()):
        task.check_after.seconds = draw(st.one_of(st.integers(-5, 10**6), INT64))
        task.check_after.nanos = draw(st.one_of(st.integers(-999_999_999, 999_999_999), INT32))
    if draw(st.booleans()):
        fraction = draw(st.floats(allow_nan=True, allow_infinity=True))
        task.progress.fraction = fraction
        task.progress.done = draw(INT64)
        task.progress.total = draw(INT64)
        task.progress.stage = draw(st.sampled_from(["", "s", "s" * 129]))
    if not answer_like and draw(st.booleans()):
        task.error.CopyFrom(draw(errors()))
    return task


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """An encoded InvokeResponse: data, status, both or neither."""
    response = plugin_pb2.InvokeResponse()
    if draw(st.booleans()):
        response.data = draw(st.binary(max_size=30))
    if draw(st.booleans()):
        response.status.CopyFrom(draw(tasks()))
    return response.SerializeToString()


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """An encoded InvokeRequest, with any payload bytes and a possibly broken status."""
    request = plugin_pb2.InvokeRequest(
        is_status_check=draw(st.booleans()), cancel_requested=draw(st.booleans())
    )
    if draw(st.booleans()):
        request.data = draw(
            st.one_of(
                st.binary(max_size=30),
                _STRUCT_VALUE.map(lambda v: dict_to_struct(v).SerializeToString()),
            )
        )
    request.context.check_number = draw(st.one_of(st.integers(0, 3), INT32))
    request.context.idempotency_key = draw(st.text(max_size=8))
    if draw(st.booleans()):
        request.context.deadline.seconds = draw(INT64)
        request.context.deadline.nanos = draw(INT32)
    if draw(st.booleans()):
        request.status.CopyFrom(draw(tasks()))
    return request.SerializeToString()


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """`base` bytes with up to four bytes flipped, cut short, or with junk inserted."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, len(data)))
        if action == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


_GOLDEN_BYTES = st.sampled_from([path.read_bytes() for path in GOLDEN])
_ERROR_URL = "type.googleapis.com/asyncplugin.v1.Error"
_DETAIL_URLS = [
    _ERROR_URL,
    "type.googleapis.com/google.rpc.ErrorInfo",
    "type.googleapis.com/google.rpc.Help",
    "type.googleapis.com/google.rpc.DebugInfo",
    "type.googleapis.com/other.Thing",
]


@st.composite
def status_trailers(draw: st.DrawFn) -> bytes:
    """A google.rpc.Status whose details have known type URLs but any (often corrupt) bytes."""
    from google.protobuf import any_pb2

    status = status_pb2.Status(code=draw(st.integers(0, 20)), message=draw(st.text(max_size=20)))
    for _ in range(draw(st.integers(0, 4))):
        url = draw(st.sampled_from(_DETAIL_URLS))
        value = draw(
            st.one_of(
                st.binary(max_size=40),
                mutated(errors().map(lambda e: e.SerializeToString())),
            )
        )
        status.details.append(any_pb2.Any(type_url=url, value=value))
    encoded: bytes = status.SerializeToString()
    return encoded


# -- properties -----------------------------------------------------------------------------


@pytest.mark.timeout(TIMEOUT_S)
@examples(quick=400, long=20_000)
@given(data=st.binary(max_size=512), cancel=st.booleans())
def test_any_bytes_as_an_answer(data: bytes, cancel: bool) -> None:
    """Arbitrary bytes: a valid answer or a named violation, never another exception."""
    consume_response(data, cancel_requested=cancel)


@pytest.mark.timeout(TIMEOUT_S)
@examples(quick=400, long=20_000)
@given(data=st.one_of(responses(), mutated(responses()), mutated(_GOLDEN_BYTES)))
def test_built_and_mutated_answers(data: bytes) -> None:
    """Answers with extreme field values, and golden vectors with bytes damaged: the same."""
    consume_response(data)


@pytest.mark.timeout(TIMEOUT_S)
@examples(quick=400, long=20_000)
@given(data=st.one_of(st.binary(max_size=512), requests(), mutated(requests())))
def test_requests_on_the_plugin_side(data: bytes) -> None:
    """Any request bytes: the SDK decodes a Request or refuses by rule, and it never accepts
    what the shared rules refuse."""
    consume_request(data)


@pytest.mark.timeout(TIMEOUT_S)
@examples(quick=300, long=10_000)
@given(data=st.one_of(st.binary(max_size=256), status_trailers(), mutated(status_trailers())))
def test_any_status_trailer(data: bytes) -> None:
    """A plugin's grpc-status-details-bin, however broken, becomes an Error envelope."""
    consume_status(data)


@pytest.mark.timeout(TIMEOUT_S)
@examples(quick=100, long=5_000)
@given(error=errors())
def test_packed_error_trailers_are_read_back_or_ignored(error: error_pb2.Error) -> None:
    """A google.rpc.Status carrying an Error (valid or damaged) maps to an envelope."""
    from asyncplugin.protocol import error_to_status

    status = error_to_status(error)
    consume_status(status.SerializeToString())
    assert status_to_error(status) == error


@pytest.mark.timeout(TIMEOUT_S)
@examples(quick=300, long=10_000)
@given(value=st.dictionaries(st.text(max_size=8), _JSON, max_size=5))
def test_struct_round_trip(value: dict[str, Any]) -> None:
    """dict -> Struct -> dict keeps every JSON-like value (numbers as doubles: whole numbers
    within 2**53 come back as int); decode_payload never raises anything but ValueError."""

    def expected(item: Any) -> Any:
        if isinstance(item, bool) or item is None or isinstance(item, str):
            return item
        if isinstance(item, int | float):
            number = float(item)
            if number.is_integer() and abs(number) <= 2**53:
                return int(number)
            return number
        if isinstance(item, list):
            return [expected(x) for x in item]
        return {k: expected(v) for k, v in item.items()}

    try:
        struct = dict_to_struct(value)
    except ValueError:
        return  # a lone surrogate in a key or string cannot be UTF-8 encoded
    back = struct_to_dict(struct)
    assert _same(back, expected(value))
    assert _same(decode_payload(struct.SerializeToString(), dict), back)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


@pytest.mark.timeout(TIMEOUT_S)
@examples(quick=200, long=10_000)
@given(data=st.binary(max_size=512))
def test_any_payload_bytes(data: bytes) -> None:
    """decode_payload(bytes, dict) returns a dict or raises ValueError naming the type."""
    consume_payload(data)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden_vectors_pass_the_whole_chain(path: Path) -> None:
    """Every golden and invalid vector goes through the chain (seeds of the fuzzers)."""
    data = path.read_bytes()
    if path.name.startswith("request"):
        assert consume_request(data) == ""
    elif path.name.startswith(("response", "error", "task")):
        consume_response(data)
