"""Routing of calls to handlers, sync handlers in threads, and request decoding errors."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

from asyncplugin.examples.v1 import transcriber_pb2_grpc
from asyncplugin.examples.v1.transcriber_pb2 import TranscribeInput, TranscribeRequest, Transcript
from asyncplugin.plugin import GENERIC_METHOD, AsyncPlugin, PluginServer
from asyncplugin.protocol import (
    Request,
    RequestContext,
    Response,
    Task,
    TaskState,
    decode_payload,
    dict_to_struct,
    encode_payload,
)
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2
from tests.plugin.conftest import StartServer

Payload = dict[str, Any]


def _check_request(payload: Payload, *, number: int = 1, cancel: bool = False) -> Any:
    status = task_pb2.Task(task_id="t-1", state=task_pb2.TASK_STATE_RUNNING, check_count=number)
    status.remote_status_input.CopyFrom(dict_to_struct({"job": "j-7"}))
    return plugin_pb2.InvokeRequest(
        data=encode_payload(payload),
        context=plugin_pb2.RequestContext(task_id="t-1", check_number=number),
        status=status,
        is_status_check=True,
        cancel_requested=cancel,
    )


class Recorder(AsyncPlugin[Payload, Payload]):
    """Answers with the name of the handler that ran and what it saw."""

    def __init__(self) -> None:
        self.seen: list[Request[Payload]] = []

    async def initiate_work(self, request: Request[Payload]) -> Payload:
        self.seen.append(request)
        return {"handler": "initiate_work"}

    async def check_status(self, request: Request[Payload]) -> Payload:
        self.seen.append(request)
        return {"handler": "check_status"}


async def test_new_work_goes_to_initiate_work(start_server: StartServer) -> None:
    """is_status_check=false routes to initiate_work, with the payload decoded."""
    plugin = Recorder()
    served = await start_server(plugin)
    response = await served.invoke({"a": 1})
    assert decode_payload(response.data, dict) == {"handler": "initiate_work"}
    assert plugin.seen[0].data == {"a": 1}
    assert plugin.seen[0].status is None


async def test_status_check_goes_to_check_status(start_server: StartServer) -> None:
    """is_status_check=true routes to check_status, with the stored Task as a Python Task."""
    plugin = Recorder()
    served = await start_server(plugin)
    response = await served.invoke(request=_check_request({"a": 1}, number=3))
    assert decode_payload(response.data, dict) == {"handler": "check_status"}
    request = plugin.seen[0]
    assert request.is_status_check
    assert isinstance(request.status, Task)
    assert request.status.state is TaskState.RUNNING
    assert request.status.remote_status_input == {"job": "j-7"}
    assert type(request.status.remote_status_input) is dict
    assert request.context == RequestContext(task_id="t-1", check_number=3)
    assert request.data == {"a": 1}


async def test_cancel_goes_to_cancel_work_default_cancelled(start_server: StartServer) -> None:
    """cancel_requested routes to cancel_work, which by default answers CANCELLED."""
    plugin = Recorder()
    served = await start_server(plugin)
    response = await served.invoke(request=_check_request({}, cancel=True))
    assert response.status.state == task_pb2.TASK_STATE_CANCELLED
    assert plugin.seen == []


async def test_overridden_cancel_work_is_used(start_server: StartServer) -> None:
    """A plugin's own cancel_work answers the cancel request."""

    class Canceller(Recorder):
        async def cancel_work(self, request: Request[Payload]) -> Response[Payload]:
            self.seen.append(request)
            return Response(status=Task(state=TaskState.CANCELLED, status_message="stopped"))

    plugin = Canceller()
    served = await start_server(plugin)
    response = await served.invoke(request=_check_request({}, cancel=True))
    assert response.status.status_message == "stopped"
    assert plugin.seen[0].cancel_requested


async def test_overridden_run_routes_itself(start_server: StartServer) -> None:
    """A plugin overriding run gets every call, new work and status checks alike."""

    class SelfRouted(AsyncPlugin[Payload, Payload]):
        async def run(self, request: Request[Payload]) -> Payload:
            return {"check": request.is_status_check}

        async def initiate_work(self, request: Request[Payload]) -> Payload:
            raise AssertionError("run was overridden; the default routing must not run")

    served = await start_server(SelfRouted())
    first = await served.invoke({})
    second = await served.invoke(request=_check_request({}))
    assert decode_payload(first.data, dict) == {"check": False}
    assert decode_payload(second.data, dict) == {"check": True}


async def test_missing_check_status_fails_in_band(start_server: StartServer) -> None:
    """A status check to a plugin without check_status is FAILED STATUS_CHECK_NOT_SUPPORTED."""

    class StartOnly(AsyncPlugin[Payload, Payload]):
        async def initiate_work(self, request: Request[Payload]) -> Payload:
            return {}

    served = await start_server(StartOnly())
    response = await served.invoke(request=_check_request({}))
    assert response.status.error.code == "STATUS_CHECK_NOT_SUPPORTED"


def test_plugin_without_handlers_is_rejected() -> None:
    """Serving a plugin that implements neither run nor initiate_work fails at construction."""

    class Empty(AsyncPlugin[Payload, Payload]):
        pass

    with pytest.raises(TypeError, match="run or initiate_work"):
        PluginServer(Empty())


async def test_sync_handlers_run_in_worker_threads(start_server: StartServer) -> None:
    """Plain def handlers (run or initiate_work/check_status) run off the event loop thread."""
    loop_thread = threading.get_ident()

    class Sync(AsyncPlugin[Payload, Payload]):
        def initiate_work(self, request: Request[Payload]) -> Payload:
            return {"thread": threading.get_ident()}

        def check_status(self, request: Request[Payload]) -> Response[Payload]:
            return Response(data={"thread": threading.get_ident()})

    class SyncRun(AsyncPlugin[Payload, Payload]):
        def run(self, request: Request[Payload]) -> Payload:
            return {"thread": threading.get_ident()}

    sync = await start_server(Sync())
    sync_run = await start_server(SyncRun())
    for response in (
        await sync.invoke({}),
        await sync.invoke(request=_check_request({})),
        await sync_run.invoke({}),
    ):
        assert decode_payload(response.data, dict)["thread"] != loop_thread


async def test_blocking_sync_handler_does_not_block_other_calls(start_server: StartServer) -> None:
    """While a plain def handler blocks, other calls on the same server still complete."""
    release = threading.Event()
    entered = threading.Event()

    class Blocking(AsyncPlugin[Payload, Payload]):
        def run(self, request: Request[Payload]) -> Payload:
            if request.data.get("block"):
                entered.set()
                release.wait(timeout=30)
            return {"blocked": bool(request.data.get("block"))}

    served = await start_server(Blocking())
    blocked = asyncio.create_task(served.invoke({"block": True}))
    await asyncio.to_thread(entered.wait, 30)
    try:
        quick = await asyncio.wait_for(served.invoke({"block": False}), timeout=10)
        assert decode_payload(quick.data, dict) == {"blocked": False}
        assert not blocked.done()
    finally:
        release.set()
    assert decode_payload((await blocked).data, dict) == {"blocked": True}


def test_generic_args_declare_payload_types() -> None:
    """AsyncPlugin[In, Out] sets input_type/output_type; dict[...] means a Struct payload."""

    class Typed(AsyncPlugin[TranscribeInput, Transcript]):
        pass

    class Untyped(AsyncPlugin[dict[str, Any], dict[str, Any]]):
        pass

    class Explicit(AsyncPlugin[Any, Any]):
        input_type = TranscribeInput

    assert (Typed.input_type, Typed.output_type) == (TranscribeInput, Transcript)
    assert (Untyped.input_type, Untyped.output_type) == (dict, dict)
    assert (Explicit.input_type, Explicit.output_type) == (TranscribeInput, dict)
    assert Typed.rpc_method == GENERIC_METHOD
    assert Typed.name == "typed"


class TypedEcho(AsyncPlugin[TranscribeInput, Transcript]):
    """A typed plugin on the example TranscriberService."""

    rpc_method = "/asyncplugin.examples.v1.TranscriberService/Transcribe"

    async def run(self, request: Request[TranscribeInput]) -> Transcript:
        return Transcript(text=request.data.audio_url, word_count=1)


async def test_typed_rpc_is_served_with_generated_stub(start_server: StartServer) -> None:
    """A typed plugin answers its own RPC, called with the real generated typed stub."""
    served = await start_server(TypedEcho())
    stub = transcriber_pb2_grpc.TranscriberServiceStub(served.channel)
    response = await stub.Transcribe(
        TranscribeRequest(data=TranscribeInput(audio_url="a.wav")), timeout=10
    )
    assert response.data == Transcript(text="a.wav", word_count=1)
    assert not response.HasField("status")


def _rich_error(err: grpc.aio.AioRpcError) -> error_pb2.Error:
    """The Error envelope packed in the call's google.rpc.Status details."""
    trailers = dict(err.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    packed = error_pb2.Error()
    assert status.details[0].Unpack(packed)
    return packed


async def test_undecodable_typed_payload_is_invalid_argument(start_server: StartServer) -> None:
    """Payload bytes that are not the plugin's input type get INVALID_ARGUMENT naming it."""
    served = await start_server(TypedEcho())
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = served.channel.unary_unary(
        TypedEcho.rpc_method
    )
    bad = plugin_pb2.InvokeRequest(data=b"\x0a\x02\xff\xfe")  # field 1: invalid UTF-8 string
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(bad.SerializeToString(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "asyncplugin.examples.v1.TranscribeInput" in (caught.value.details() or "")
    error = _rich_error(caught.value)
    assert error.code == "MALFORMED_MESSAGE"
    assert error.metadata["field"] == "data"


async def test_wrong_payload_type_for_dict_plugin(start_server: StartServer) -> None:
    """A typed message sent to a dict (Struct) plugin is INVALID_ARGUMENT, not a crash."""
    served = await start_server(Recorder())
    request = plugin_pb2.InvokeRequest(data=encode_payload(TranscribeInput(audio_url="x")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.stub.Invoke(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "google.protobuf.Struct" in (caught.value.details() or "")


async def test_malformed_envelope_is_invalid_argument(start_server: StartServer) -> None:
    """Bytes that are no envelope at all get INVALID_ARGUMENT naming MALFORMED_MESSAGE."""
    served = await start_server(Recorder())
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = served.channel.unary_unary(
        GENERIC_METHOD
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(b"\xff\xff\xff", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "MALFORMED_MESSAGE" in (caught.value.details() or "")


async def test_request_breaking_a_rule_is_invalid_argument(start_server: StartServer) -> None:
    """A status check without a stored task is INVALID_ARGUMENT naming the rule broken."""
    plugin = Recorder()
    served = await start_server(plugin)
    request = plugin_pb2.InvokeRequest(
        data=encode_payload({}),
        context=plugin_pb2.RequestContext(check_number=1),
        is_status_check=True,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.stub.Invoke(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "STATUS_CHECK_WITHOUT_STATUS" in (caught.value.details() or "")
    assert _rich_error(caught.value).metadata["rule"] == "STATUS_CHECK_WITHOUT_STATUS"
    assert plugin.seen == []
