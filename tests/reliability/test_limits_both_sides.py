"""The limits written in the .proto comments are the limits both sides enforce, to the byte.

Three checks: the numbers in the proto comments equal `asyncplugin.protocol.limits` and the
validator's tables; a plugin built on the SDK cannot send an answer one byte (or one level) over
a limit (it sends FAILED INVALID_PLUGIN_RESPONSE naming the rule instead) while exactly at the
limit it can; and the engine refuses the same over-limit answer with the same rule, and accepts
the one at the limit. The SDK also refuses requests over the limits (a malicious engine).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from asyncplugin.engine.conversation import read_answer
from asyncplugin.plugin import AsyncPlugin
from asyncplugin.plugin.dispatch import PluginDispatcher
from asyncplugin.protocol import (
    PluginError,
    ProtocolViolation,
    Request,
    RequestContext,
    Response,
    Task,
    TaskState,
    decode_response,
    dict_to_struct,
    limits,
    validate,
)
from asyncplugin.v1 import plugin_pb2, task_pb2
from tests.engine.conftest import MakeEngine, Serve
from tests.engine.plugins import constant
from tests.reliability.bad_answers import nested_struct

PROTO = Path(__file__).resolve().parents[2] / "proto" / "asyncplugin" / "v1"
_FIELD = re.compile(r"^\s*(?:optional\s+|repeated\s+)?[\w.<>, ]+\s+(\w+)\s*=\s*\d+\s*;")
_MESSAGE = re.compile(r"^\s*(message|oneof)\s+(\w+)\s*\{")


def proto_comments() -> dict[str, str]:
    """ "Message.field" -> the comment written above it, for every field of the v1 protos."""
    found: dict[str, str] = {}
    for path in sorted(PROTO.glob("*.proto")):
        comment: list[str] = []
        scopes: list[tuple[str, str]] = []
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("//"):
                comment.append(stripped[2:].strip())
                continue
            opened = _MESSAGE.match(line)
            message = next((name for kind, name in reversed(scopes) if kind == "message"), "")
            if opened:
                kind, name = opened.groups()
                if kind == "oneof":
                    found[f"{message}.{name}"] = " ".join(comment)
                scopes.append((kind, name))
            elif (field := _FIELD.match(line)) and message:
                found[f"{message}.{field.group(1)}"] = " ".join(comment)
            elif stripped == "}" and scopes:
                scopes.pop()
            comment = []
    return found


def _number(text: str, pattern: str) -> int | None:
    match = re.search(pattern, text)
    return int(match.group(1).replace(",", "")) if match else None


TEXT_LIMITS = {
    **{f"Task.{name}": limit for name, limit in validate._TASK_TEXT_LIMITS},
    **{f"Error.{name}": limit for name, limit in validate._ERROR_TEXT_LIMITS},
    "Progress.stage": limits.CODE_MAX_BYTES,
}
STRUCTS = ("Task.remote_status_input", "Task.remote_status_output")
UNLIMITED = {"Task.task_id": "engine-owned"}


def test_proto_comments_state_the_enforced_limits() -> None:
    """Each "At most N bytes" in task.proto / error.proto equals the validator's limit for that
    field, the Struct and Error depth limits match, and no string field is left without one
    except the two listed on purpose."""
    comments = proto_comments()
    stated = {
        name: _number(text, r"[Aa]t most ([\d,]+) bytes")
        for name, text in comments.items()
        if name.split(".")[0] in ("Task", "Error", "Progress")
    }
    written = {name: limit for name, limit in stated.items() if limit is not None}
    assert written == {
        **TEXT_LIMITS,
        **dict.fromkeys(STRUCTS, limits.REMOTE_STATUS_MAX_BYTES),
        "Error.metadata": limits.ERROR_METADATA_MAX_BYTES,
    }
    metadata = comments["Error.metadata"]
    assert _number(metadata, r"[Aa]t most ([\d,]+) entries") == limits.ERROR_METADATA_MAX_ENTRIES
    assert "ERROR_METADATA_TOO_LARGE" in metadata
    task_proto = (PROTO / "task.proto").read_text()
    assert (
        "`Error.metadata` (error.proto), in `error` and every wrapped Error: at most "
        f"{limits.ERROR_METADATA_MAX_ENTRIES:,} entries, and\n//     at most "
        f"{limits.ERROR_METADATA_MAX_BYTES:,} bytes of keys and values together"
    ) in task_proto
    for name in STRUCTS:
        assert _number(comments[name], r"([\d,]+) levels") == limits.STRUCT_MAX_DEPTH
    assert _number(comments["Error.wrapped"], r"(\d+) Errors deep") == limits.ERROR_MAX_DEPTH
    plugin_proto = (PROTO / "plugin.proto").read_text()
    assert "messages of up to 4 MiB" in plugin_proto
    assert limits.MESSAGE_MAX_BYTES == 4 * 1024 * 1024
    strings = {
        name
        for name, text in comments.items()
        if name.split(".")[0] in ("Task", "Error", "Progress")
    }
    task_strings = {f"Task.{f.name}" for f in task_pb2.Task.DESCRIPTOR.fields if f.type == 9}
    unlimited = (strings & task_strings) - set(TEXT_LIMITS)
    assert unlimited == {"Task.task_id"}
    assert set(UNLIMITED) <= set(comments)


class _Answers(AsyncPlugin[dict[str, Any], dict[str, Any]]):
    """Answers whatever the test put in `reply` (a Response), or raises `error`."""

    reply: Any = None
    error: PluginError | None = None

    async def initiate_work(self, request: Request[dict[str, Any]]) -> Any:
        if self.error is not None:
            raise self.error
        return self.reply


async def _sdk_answer(
    *, reply: Any = None, error: PluginError | None = None
) -> plugin_pb2.InvokeResponse:
    plugin = _Answers()
    plugin.reply, plugin.error = reply, error
    dispatcher = PluginDispatcher(plugin, max_message_bytes=limits.MESSAGE_MAX_BYTES)
    return await dispatcher.answer(Request(data={}, context=RequestContext()))


def _engine_rule(answer: plugin_pb2.InvokeResponse) -> str:
    """ "" if the engine accepts the answer, else the rule it names."""
    try:
        read_answer(decode_response(answer.SerializeToString()))
    except ProtocolViolation as violation:
        return violation.rule
    return ""


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _running(**fields: Any) -> Response[dict[str, Any]]:
    fields.setdefault("remote_status_input", {})
    return Response(status=Task(state=TaskState.RUNNING, **fields))


_TASK_FIELD = {"Task.status_message", "Task.status_suggestion", "Task.remote_status_message"}


def _cases() -> list[tuple[str, int, str]]:
    """(field, size, expected rule) around every limit: at the limit, and one over it."""
    cases: list[tuple[str, int, str]] = []
    for name, limit in sorted(TEXT_LIMITS.items()):
        cases += [(name, limit, ""), (name, limit + 1, "FIELD_TOO_LONG")]
    return cases


def _answer_with(field: str, size: int) -> tuple[Any, PluginError | None]:
    """What a plugin returns (or raises) to put `size` bytes into `field`."""
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte UTF-8: limits count bytes
    message, name = field.split(".")
    if message == "Task":
        if name == "status_code":
            return _running(status_code="X" * size), None
        return _running(**{name: text}), None
    if message == "Progress":
        from asyncplugin.protocol import Progress

        return _running(progress=Progress(stage="s" * size)), None
    if name == "wrapped_message":
        return None, PluginError(message="m", error=text)
    kwargs: dict[str, Any] = {"message": "m", name: text}
    if name in ("code", "domain"):
        kwargs[name] = "X" * size
    return None, PluginError(**kwargs)


@pytest.mark.parametrize(("field", "size", "rule"), _cases())
async def test_text_limits_hold_on_both_sides(field: str, size: int, rule: str) -> None:
    """At the limit both sides accept; one byte over, the SDK sends INVALID_PLUGIN_RESPONSE
    naming FIELD_TOO_LONG instead, and the engine refuses the raw answer with that rule."""
    reply, error = _answer_with(field, size)
    answer = await _sdk_answer(reply=reply, error=error)
    if rule:
        assert answer.status.error.code == "INVALID_PLUGIN_RESPONSE"
        assert answer.status.error.metadata["rule"] == rule
        raw = _raw_answer(field, size)
        assert _engine_rule(raw) == rule
    else:
        assert answer.status.error.code != "INVALID_PLUGIN_RESPONSE", answer.status.error.message
        assert _engine_rule(answer) == ""


def _raw_answer(field: str, size: int) -> plugin_pb2.InvokeResponse:
    """The over-limit answer built without the SDK, as a broken plugin would send it."""
    message, name = field.split(".")
    text = "x" * size
    if message == "Error":
        task = task_pb2.Task(state=task_pb2.TASK_STATE_FAILED)
        task.error.message = "m"
        setattr(task.error, name, text)
        return plugin_pb2.InvokeResponse(status=task)
    task = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING)
    task.remote_status_input.SetInParent()
    if message == "Progress":
        task.progress.stage = text
    else:
        setattr(task, name, text)
    return plugin_pb2.InvokeResponse(status=task)


@pytest.mark.parametrize("field", ["remote_status_input", "remote_status_output"])
@pytest.mark.parametrize(
    ("depth", "sdk_rule", "engine_rule"),
    [
        (limits.STRUCT_MAX_DEPTH, "", ""),
        (limits.STRUCT_MAX_DEPTH + 1, "TOO_DEEP", "TOO_DEEP"),
        (100, "TOO_DEEP", "MALFORMED_MESSAGE"),  # past protobuf's own parse depth
        (5000, "UNENCODABLE_STATUS", "MALFORMED_MESSAGE"),  # past what protobuf can encode
    ],
)
async def test_struct_depth_limit_holds_on_both_sides(
    field: str, depth: int, sdk_rule: str, engine_rule: str
) -> None:
    """32 levels pass both sides; 33 are refused by name on both; deeper Structs are refused by
    the SDK by name (never a RecursionError) and by the engine's parser as MALFORMED_MESSAGE."""
    kind = field.removeprefix("remote_status_").upper()
    answer = await _sdk_answer(reply=_running(**{field: _deep(depth)}))
    if sdk_rule:
        expected = f"REMOTE_STATUS_{kind}_{sdk_rule}" if sdk_rule == "TOO_DEEP" else sdk_rule
        assert answer.status.error.code == "INVALID_PLUGIN_RESPONSE"
        assert answer.status.error.metadata["rule"] == expected
    else:
        assert answer.status.state == task_pb2.TASK_STATE_RUNNING
    number = 8 if field == "remote_status_input" else 9
    task = b"\x10\x02" + (b"" if number == 8 else b"\x42\x00")
    struct = nested_struct(depth)
    raw = task + bytes([number << 3 | 2]) + _len(len(struct)) + struct
    want = f"REMOTE_STATUS_{kind}_{engine_rule}" if engine_rule == "TOO_DEEP" else engine_rule
    try:
        decode_response(b"\x12" + _len(len(raw)) + raw)
        got = ""
    except ProtocolViolation as violation:
        got = violation.rule
    assert got == want


def _len(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _blob_for(size: int) -> str:
    """A string that makes {"b": blob} exactly `size` bytes serialized (the nested length
    prefixes take a few bytes each, so the length is found in at most 16 steps)."""
    length = size
    for _ in range(16):
        over = dict_to_struct({"b": "x" * length}).ByteSize() - size
        if over == 0:
            return "x" * length
        length -= over
    raise AssertionError(f"no string makes a Struct of exactly {size} bytes")


@pytest.mark.parametrize("field", ["remote_status_input", "remote_status_output"])
async def test_struct_size_limit_holds_on_both_sides(field: str) -> None:
    """A Struct of exactly 65,536 bytes passes both sides; 65,537 bytes is refused by both."""
    kind = field.removeprefix("remote_status_").upper()
    for size, rule in [
        (limits.REMOTE_STATUS_MAX_BYTES, ""),
        (limits.REMOTE_STATUS_MAX_BYTES + 1, f"REMOTE_STATUS_{kind}_TOO_LARGE"),
    ]:
        blob = _blob_for(size)
        answer = await _sdk_answer(reply=_running(**{field: {"b": blob}}))
        if rule:
            assert answer.status.error.metadata["rule"] == rule
            task = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING)
            task.remote_status_input.SetInParent()
            getattr(task, field).CopyFrom(dict_to_struct({"b": blob}))
            assert _engine_rule(plugin_pb2.InvokeResponse(status=task)) == rule
        else:
            assert answer.status.state == task_pb2.TASK_STATE_RUNNING
            assert _engine_rule(answer) == ""


async def test_message_size_limit_holds_on_the_sdk_side() -> None:
    """An answer over 4 MiB is replaced by FAILED MESSAGE_TOO_LARGE (the engine's refusal of
    one is tested in test_malicious_plugins: MESSAGE_TOO_LARGE too)."""
    answer = await _sdk_answer(reply={"blob": "x" * limits.MESSAGE_MAX_BYTES})
    assert answer.status.error.code == "MESSAGE_TOO_LARGE"
    assert answer.ByteSize() < 1024


async def test_error_chain_is_capped_by_the_sdk() -> None:
    """A PluginError chain 20 deep is sent cut at 8 Errors (the rest as wrapped_message), which
    the engine accepts; a raw chain of 9 is refused by the engine (ERROR_TOO_DEEP)."""
    error = PluginError(message="level 20")
    for level in range(19, 0, -1):
        error = PluginError(message=f"level {level}", error=error)
    answer = await _sdk_answer(error=error)
    depth, current = 1, answer.status.error
    while current.HasField("wrapped_error"):
        depth, current = depth + 1, current.wrapped_error
    assert depth == limits.ERROR_MAX_DEPTH
    assert current.wrapped_message.startswith("PluginError: level 9")
    assert _engine_rule(answer) == ""


def _entries(count: int, total_bytes: int) -> dict[str, str]:
    """`count` metadata entries whose keys and values take exactly `total_bytes` UTF-8 bytes
    (two-byte characters in the values, so bytes and not characters are counted)."""
    keys = [f"k{i:03d}" for i in range(count)]
    room = total_bytes - 4 * count
    values = ["é" * (room // count // 2) for _ in keys]
    values[0] += "x" * (room - sum(len(v.encode()) for v in values))
    found = {key: value for key, value in zip(keys, values, strict=True)}
    assert sum(len(k.encode()) + len(v.encode()) for k, v in found.items()) == total_bytes
    return found


def _raw_failed(metadata: dict[str, str]) -> plugin_pb2.InvokeResponse:
    """A FAILED answer built without the SDK, as a broken plugin would send it."""
    task = task_pb2.Task(state=task_pb2.TASK_STATE_FAILED)
    task.error.message = "m"
    task.error.metadata.update(metadata)
    return plugin_pb2.InvokeResponse(status=task)


@pytest.mark.parametrize(
    ("count", "total_bytes", "rule"),
    [
        (limits.ERROR_METADATA_MAX_ENTRIES, limits.ERROR_METADATA_MAX_BYTES, ""),
        (limits.ERROR_METADATA_MAX_ENTRIES + 1, 4 * 65, "ERROR_METADATA_TOO_LARGE"),
        (3, limits.ERROR_METADATA_MAX_BYTES + 1, "ERROR_METADATA_TOO_LARGE"),
    ],
)
async def test_error_metadata_limits_hold_on_both_sides(
    count: int, total_bytes: int, rule: str
) -> None:
    """64 entries of 16,384 bytes in all pass both sides; one entry or one byte more, and the
    SDK sends FAILED INVALID_PLUGIN_RESPONSE naming ERROR_METADATA_TOO_LARGE instead, while the
    engine refuses the raw answer with that rule."""
    metadata = _entries(count, total_bytes)
    answer = await _sdk_answer(error=PluginError(message="m", code="X", metadata=metadata))
    if rule:
        assert answer.status.error.code == "INVALID_PLUGIN_RESPONSE"
        assert answer.status.error.metadata["rule"] == rule
        assert len(answer.status.error.metadata) == 1  # the refused map was not sent
        assert _engine_rule(_raw_failed(metadata)) == rule
    else:
        assert answer.status.error.code == "X"
        assert dict(answer.status.error.metadata) == metadata
        assert _engine_rule(answer) == ""


async def test_a_huge_error_metadata_map_is_refused_not_stored(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """The 3.9 MB map once accepted, stored and printed by `tasks show`: the engine fails the
    task PROTOCOL_VIOLATION naming the rule and records none of the map."""
    huge = {f"key-{i}": "v" * 60_000 for i in range(65)}
    raw = _raw_failed(huge)
    assert raw.ByteSize() > 3_900_000
    plugin = await serve(constant(raw))
    engine = await make_engine()
    record = await engine.invoke(plugin.target)
    assert record.state is TaskState.FAILED
    error = record.error_proto()
    assert (error.code, error.metadata["rule"]) == (
        "PROTOCOL_VIOLATION",
        "ERROR_METADATA_TOO_LARGE",
    )
    detail = "status.error.metadata has 65 entries; limit 64"
    assert detail in error.message + error.internal_message
    assert len(record.error or b"") < 4096
    assert len(record.status or b"") < 4096


def _request(**status_fields: Any) -> bytes:
    task = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING, **status_fields)
    task.remote_status_input.SetInParent()
    request = plugin_pb2.InvokeRequest(
        data=dict_to_struct({}).SerializeToString(), is_status_check=True, status=task
    )
    request.context.check_number = 1
    return request.SerializeToString()


@pytest.mark.parametrize(
    ("request_bytes", "rule"),
    [
        (_request(status_message="x" * 4097), "FIELD_TOO_LONG"),
        (_request(remote_status_output=dict_to_struct(_deep(33))), "REMOTE_STATUS_OUTPUT_TOO_DEEP"),
        (_request(create_time={"seconds": 1 << 62}), "MALFORMED_MESSAGE"),
        (_request(next_check_time={"nanos": -1}), "MALFORMED_MESSAGE"),
        (_request()[:-3], "MALFORMED_MESSAGE"),
    ],
)
def test_sdk_refuses_requests_over_the_limits(request_bytes: bytes, rule: str) -> None:
    """A request from a broken engine over a limit is refused by name (INVALID_ARGUMENT on the
    wire), never decoded into a Task that raises later."""
    dispatcher = PluginDispatcher(_Answers(), max_message_bytes=limits.MESSAGE_MAX_BYTES)
    with pytest.raises(ProtocolViolation) as refused:
        dispatcher.decode(request_bytes)
    assert refused.value.rule == rule


async def test_unencodable_dicts_are_named_not_crashes() -> None:
    """A dict that refers to itself, or output data nested 5,000 deep, is refused by name
    (ValueError in dict_to_struct; UNENCODABLE_* on the wire), never a RecursionError."""
    looped: dict[str, Any] = {}
    looped["self"] = looped
    with pytest.raises(ValueError, match="nest more than 100 levels"):
        dict_to_struct(looped)
    answer = await _sdk_answer(reply=_deep(5000))
    assert answer.status.error.code == "INVALID_PLUGIN_RESPONSE"
    assert answer.status.error.metadata["rule"] == "UNENCODABLE_DATA"
