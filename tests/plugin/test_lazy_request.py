"""The SDK's Request decodes its status (field by field) on first read and otherwise is a plain
Request."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

from asyncplugin.plugin import AsyncPlugin
from asyncplugin.plugin.dispatch import PluginDispatcher
from asyncplugin.protocol import (
    Request,
    RequestContext,
    Response,
    Task,
    TaskState,
    decode_payload,
    encode_payload,
)
from asyncplugin.protocol import task as task_module
from asyncplugin.protocol.envelope import request_from_wire
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2
from tests.plugin.conftest import StartServer

CONTEXT = RequestContext(task_id="t-1", idempotency_key="k", check_number=3)


def _wire_task() -> task_pb2.Task:
    wire = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING, task_id="t-1", check_count=2)
    wire.remote_status_input.update({"job": "j-42", "n": 3})
    wire.create_time.seconds = 1_700_000_000
    return wire


def _lazy(wire: task_pb2.Task | None = None) -> Request[Any]:
    return request_from_wire(
        data={"x": 1},
        context=CONTEXT,
        status=wire if wire is not None else _wire_task(),
        is_status_check=True,
        cancel_requested=False,
    )


def _plain() -> Request[Any]:
    return Request(
        data={"x": 1},
        context=CONTEXT,
        status=Task.from_proto(_wire_task()),
        is_status_check=True,
    )


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names the Task fields decoded from the wire (in order), and counts Task.from_proto
    calls as "from_proto"."""
    calls: list[str] = []
    for name, decode in list(task_module._DECODERS.items()):

        def counted(message: task_pb2.Task, name: str = name, decode: Any = decode) -> Any:
            calls.append(name)
            return decode(message)

        monkeypatch.setitem(task_module._DECODERS, name, counted)
    original = task_module.Task.from_proto

    def counted_from_proto(message: task_pb2.Task) -> Task:
        calls.append("from_proto")
        return original(message)

    monkeypatch.setattr(task_module.Task, "from_proto", counted_from_proto)
    return calls


def test_remote_status_input_is_read_without_decoding_the_task(decodes: list[str]) -> None:
    request = _lazy()
    assert request.remote_status_input == {"job": "j-42", "n": 3}
    assert request.remote_status_input is request.remote_status_input
    assert decodes == ["remote_status_input"]
    status = request.status
    assert status is not None
    assert request.status is status
    assert status.create_time is not None
    assert status.create_time is status.create_time
    assert decodes == ["remote_status_input", "create_time"]
    expected = task_module.Task.from_proto(_wire_task())
    assert status == expected
    assert expected == status
    # The dict handed out first is the status's own, as on a plain Request.
    assert status.remote_status_input is request.remote_status_input
    assert request.status is status
    # The comparison read each remaining compared field once (`error` is not compared) and
    # decoded a plain Task; none twice.
    skipped = ("remote_status_input", "create_time", "error")
    assert sorted(decodes[2:]) == sorted(
        [*(n for n in task_module._DECODERS if n not in skipped), "from_proto"]
    )
    assert status.task_id == "t-1"
    assert status.check_count == 2
    assert status.state is TaskState.RUNNING


def test_every_field_decodes_lazily_as_from_proto_decodes_it() -> None:
    """The lazy Task's decoders and `Task.from_proto` state the same rules twice (the latter
    written out, for speed): with every field set on the wire, each field reads the same."""
    assert set(task_module._DECODERS) == {f.name for f in dataclasses.fields(Task)} - {"state"}
    wire = task_pb2.Task(
        state=task_pb2.TASK_STATE_FAILED,
        task_id="t-9",
        status_message="m",
        status_suggestion="s",
        status_code="CODE",
        remote_status_message="remote",
        retries=2,
        max_retries=5,
        check_count=7,
    )
    wire.remote_status_input.update({"job": "j-1", "n": 1.5, "nested": {"ok": True}})
    wire.remote_status_output.update({"out": ["a", None]})
    wire.progress.fraction = 0.25
    wire.progress.stage = "rendering"
    wire.check_after.seconds = 4
    wire.check_after.nanos = 500_000_000
    wire.error.message = "it broke"
    wire.error.code = "REMOTE_JOB_FAILED"
    for number, name in enumerate(task_module._TIME_FIELDS):
        getattr(wire, name).seconds = 1_700_000_000 + number
        getattr(wire, name).nanos = 123_456_000
    plain = Task.from_proto(wire)
    for field in dataclasses.fields(Task):
        lazy = task_module.task_from_wire(wire)  # a fresh one each time: one field read first
        value, expected = getattr(lazy, field.name), getattr(plain, field.name)
        if field.name == "error":
            assert value is not None
            assert expected is not None
            assert value.to_proto() == expected.to_proto()
        else:
            assert value == expected, field.name
            assert value is not None or field.name not in task_module._DECODERS, field.name


def test_a_lazy_task_is_a_plain_task_to_its_reader() -> None:
    wire = _wire_task()
    wire.progress.fraction = 0.5
    wire.check_after.seconds = 3
    lazy, plain = task_module.task_from_wire(wire), Task.from_proto(wire)
    assert isinstance(lazy, Task)
    assert lazy == plain
    assert plain == lazy
    assert lazy != dataclasses.replace(plain, check_count=3)
    assert repr(lazy) == repr(plain)
    assert dataclasses.asdict(lazy) == dataclasses.asdict(plain)
    changed = dataclasses.replace(lazy, task_id="t-2")
    assert changed == dataclasses.replace(plain, task_id="t-2")
    assert changed.to_proto() == dataclasses.replace(plain, task_id="t-2").to_proto()
    assert lazy.to_proto() == plain.to_proto()
    for clone in (copy.copy(lazy), copy.deepcopy(lazy), pickle.loads(pickle.dumps(lazy))):
        assert type(clone) is Task
        assert clone == plain
    bare = task_pb2.Task(state=task_pb2.TASK_STATE_WAITING, task_id="t-3")
    assert hash(task_module.task_from_wire(bare)) == hash(Task.from_proto(bare))
    with pytest.raises(dataclasses.FrozenInstanceError):
        lazy.task_id = "x"  # type: ignore[misc]


def test_a_lazy_task_refuses_an_unknown_state_at_once() -> None:
    for state in (task_pb2.TASK_STATE_UNSPECIFIED, 42):
        wire = task_pb2.Task(state=state)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="not a valid TaskState"):
            task_module.task_from_wire(wire)


def test_a_lazy_request_is_a_plain_request_to_its_reader() -> None:
    lazy, plain = _lazy(), _plain()
    assert isinstance(lazy, Request)
    assert lazy == plain
    assert plain == lazy
    assert lazy != dataclasses.replace(plain, is_status_check=False)
    assert repr(lazy) == repr(plain)
    assert dataclasses.asdict(lazy) == dataclasses.asdict(plain)
    changed = dataclasses.replace(lazy, data={"x": 2})
    assert changed.data == {"x": 2}
    assert changed.status == plain.status
    for clone in (copy.copy(lazy), copy.deepcopy(lazy), pickle.loads(pickle.dumps(lazy))):
        assert type(clone) is Request
        assert clone == plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        lazy.data = {}  # type: ignore[misc]


def test_an_initiating_call_has_no_status() -> None:
    request = request_from_wire(
        data={}, context=CONTEXT, status=None, is_status_check=False, cancel_requested=False
    )
    assert request.status is None
    assert request.remote_status_input == {}
    assert request == Request(data={}, context=CONTEXT)


def test_a_status_without_remote_status_input_reads_as_empty() -> None:
    wire = task_pb2.Task(state=task_pb2.TASK_STATE_WAITING)
    request = _lazy(wire)
    assert request.remote_status_input == {}
    assert request.status == Task(state=TaskState.WAITING)


class _Echo(AsyncPlugin[dict[str, Any], dict[str, Any]]):
    seen: list[Request[dict[str, Any]]]

    def __init__(self) -> None:
        self.seen = []

    async def initiate_work(self, request: Request[dict[str, Any]]) -> dict[str, Any]:
        return {}

    async def check_status(self, request: Request[dict[str, Any]]) -> Response[dict[str, Any]]:
        self.seen.append(request)
        stash = request.remote_status_input
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input=stash))


async def test_the_dispatcher_decodes_no_status_a_handler_does_not_read(
    decodes: list[str],
) -> None:
    plugin = _Echo()
    dispatcher = PluginDispatcher(plugin, max_message_bytes=1 << 20)
    request = plugin_pb2.InvokeRequest(
        is_status_check=True,
        status=_wire_task(),
        context=plugin_pb2.RequestContext(task_id="t-1", check_number=3),
    )
    answer = plugin_pb2.InvokeResponse.FromString(
        await dispatcher.handle(request.SerializeToString(), None)  # type: ignore[arg-type]
    )
    assert answer.status.state == task_pb2.TASK_STATE_RUNNING
    assert dict(answer.status.remote_status_input) == {"job": "j-42", "n": 3}
    assert decodes == ["remote_status_input"]
    assert plugin.seen[0].status == Task.from_proto(_wire_task())


def test_a_wire_context_is_decoded_once_on_first_read(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = plugin_pb2.RequestContext(task_id="t-1", idempotency_key="k", check_number=3)
    wire.deadline.seconds = 1_700_000_000
    calls: list[int] = []
    original = RequestContext.from_proto

    def counted(message: plugin_pb2.RequestContext) -> RequestContext:
        calls.append(1)
        return original(message)

    monkeypatch.setattr(RequestContext, "from_proto", counted)
    request = request_from_wire(
        data={"x": 1},
        context=wire,
        status=_wire_task(),
        is_status_check=True,
        cancel_requested=False,
    )
    assert request.remote_status_input == {"job": "j-42", "n": 3}
    assert calls == []
    context = request.context
    assert calls == [1]
    assert context == original(wire)
    assert context.deadline is not None
    assert request.context is context
    assert calls == [1]
    plain = Request(
        data={"x": 1},
        context=original(wire),
        status=Task.from_proto(_wire_task()),
        is_status_check=True,
    )
    assert request == plain
    assert repr(request) == repr(plain)
    assert pickle.loads(pickle.dumps(request)) == plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.context = CONTEXT  # type: ignore[misc]


class _RunOnInstance(_Echo):
    """A plugin whose `run` is replaced on the instance: the dispatcher must call it."""


async def test_a_run_set_on_the_instance_gets_every_call() -> None:
    plugin = _RunOnInstance()
    calls: list[Request[Any]] = []

    async def run(request: Request[Any]) -> Response[Any]:
        calls.append(request)
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"by": "run"}))

    plugin.run = run  # type: ignore[method-assign]
    dispatcher = PluginDispatcher(plugin, max_message_bytes=1 << 20)
    request = plugin_pb2.InvokeRequest(
        is_status_check=True,
        status=_wire_task(),
        context=plugin_pb2.RequestContext(task_id="t-1", check_number=3),
    )
    answer = plugin_pb2.InvokeResponse.FromString(
        await dispatcher.handle(request.SerializeToString(), None)  # type: ignore[arg-type]
    )
    assert dict(answer.status.remote_status_input) == {"by": "run"}
    assert len(calls) == 1
    assert plugin.seen == []


def test_a_wire_struct_payload_is_read_as_a_dict_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.protobuf import struct_pb2

    from asyncplugin.protocol import envelope as envelope_module

    converted: list[int] = []
    original = envelope_module.struct_to_dict  # type: ignore[attr-defined]

    def counted(struct: struct_pb2.Struct) -> dict[str, Any]:
        converted.append(len(struct.fields))
        return original(struct)

    monkeypatch.setattr(envelope_module, "struct_to_dict", counted)
    wire = struct_pb2.Struct()
    wire.update({"x": 1, "y": "two"})
    request = request_from_wire(
        data=None,
        wire_data=wire,
        context=CONTEXT,
        status=None,
        is_status_check=False,
        cancel_requested=False,
    )
    assert request.status is None
    assert converted == []
    data = request.data
    assert data == {"x": 1, "y": "two"}
    assert request.data is data
    assert converted == [2]
    plain = Request(data={"x": 1, "y": "two"}, context=CONTEXT)
    assert request == plain
    # A Struct's map has no order: the repr matches a plain Request holding the same dict.
    assert repr(request) == repr(Request(data=data, context=CONTEXT))
    assert pickle.loads(pickle.dumps(request)) == plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.data = {}  # type: ignore[misc]


async def test_the_dispatcher_hands_a_dict_plugin_its_payload() -> None:
    plugin = _Echo()
    seen: list[Any] = []

    async def initiate_work(request: Request[dict[str, Any]]) -> dict[str, Any]:
        seen.append(request.data)
        return {"got": request.data["n"]}

    plugin.initiate_work = initiate_work  # type: ignore[method-assign]
    dispatcher = PluginDispatcher(plugin, max_message_bytes=1 << 20)
    request = plugin_pb2.InvokeRequest(
        data=encode_payload({"n": 7, "nested": {"a": [1, "b"]}}),
        context=plugin_pb2.RequestContext(task_id="t-1"),
    )
    answer = plugin_pb2.InvokeResponse.FromString(
        await dispatcher.handle(request.SerializeToString(), None)  # type: ignore[arg-type]
    )
    assert decode_payload(answer.data, dict) == {"got": 7}
    assert seen == [{"n": 7, "nested": {"a": [1, "b"]}}]


class _NeverReads(AsyncPlugin[dict[str, Any], dict[str, Any]]):
    """Answers every status check RUNNING without reading `request.status` at all."""

    calls = 0

    async def initiate_work(self, request: Request[dict[str, Any]]) -> dict[str, Any]:
        return {}

    async def check_status(self, request: Request[dict[str, Any]]) -> Response[dict[str, Any]]:
        type(self).calls += 1
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"same": 1}))


def _check(status: task_pb2.Task) -> plugin_pb2.InvokeRequest:
    return plugin_pb2.InvokeRequest(
        is_status_check=True,
        status=status,
        context=plugin_pb2.RequestContext(task_id="t-1", check_number=3),
    )


@pytest.mark.parametrize(
    ("spoil", "field", "rule"),
    [
        (
            lambda t: setattr(t.create_time, "seconds", 10**12),
            "status.create_time",
            "MALFORMED_MESSAGE",
        ),
        (lambda t: setattr(t, "state", 42), "status.state", "STATE_UNKNOWN"),
        (
            lambda t: setattr(t, "status_code", "c" * 200),
            "status.status_code",
            "FIELD_TOO_LONG",
        ),
    ],
)
async def test_a_malformed_stored_task_is_refused_before_a_plugin_that_never_reads_it(
    start_server: StartServer, spoil: Any, field: str, rule: str, decodes: list[str]
) -> None:
    """The stored Task is checked whole before the plugin runs, even though it is decoded
    only when read: a bad one is INVALID_ARGUMENT naming the field, the plugin not called."""
    _NeverReads.calls = 0
    served = await start_server(_NeverReads())
    status = _wire_task()
    spoil(status)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.invoke(request=_check(status))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")
    trailers = dict(caught.value.trailing_metadata() or ())
    details = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    error = error_pb2.Error()
    assert details.details[0].Unpack(error)
    assert error.metadata["field"] == field
    assert error.code == rule
    assert _NeverReads.calls == 0
    assert decodes == []


async def test_a_plugin_that_never_reads_the_status_answers_as_usual(
    start_server: StartServer, decodes: list[str]
) -> None:
    _NeverReads.calls = 0
    served = await start_server(_NeverReads())
    for _ in range(2):
        answer = await served.invoke(request=_check(_wire_task()))
        assert answer.status.state == task_pb2.TASK_STATE_RUNNING
        assert dict(answer.status.remote_status_input) == {"same": 1}
    assert _NeverReads.calls == 2
    assert decodes == []
