"""Return normalisation: what each handler result or exception becomes on the wire."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from asyncplugin.examples.v1.transcriber_pb2 import Transcript
from asyncplugin.plugin import (
    INVALID_PLUGIN_RESPONSE,
    MESSAGE_TOO_LARGE,
    PLUGIN_INTERNAL_ERROR,
    AsyncPlugin,
)
from asyncplugin.protocol import (
    PluginError,
    Progress,
    Request,
    Response,
    Task,
    TaskState,
    decode_payload,
    struct_to_dict,
)
from asyncplugin.v1 import plugin_pb2, task_pb2
from tests.plugin.conftest import StartServer

Behaviour = Callable[[Request[dict[str, Any]]], Any]


class Scripted(AsyncPlugin[dict[str, Any], dict[str, Any]]):
    """Answers every call with whatever `behaviour` returns or raises."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour

    async def run(self, request: Request[dict[str, Any]]) -> Any:
        return self.behaviour(request)


class TypedScripted(AsyncPlugin[Transcript, Transcript]):
    """A typed plugin answering with whatever `behaviour` returns."""

    def __init__(self, behaviour: Callable[[Request[Transcript]], Any]) -> None:
        self.behaviour = behaviour

    async def run(self, request: Request[Transcript]) -> Any:
        return self.behaviour(request)


def _raise(err: BaseException) -> Behaviour:
    def behaviour(request: Request[dict[str, Any]]) -> Any:
        raise err

    return behaviour


async def test_raw_dict_is_succeeded_with_data(start_server: StartServer) -> None:
    """A returned dict (the output itself) is answered as data, which means SUCCEEDED."""
    served = await start_server(Scripted(lambda r: {"n": 1, "x": [True, None]}))
    response = await served.invoke({})
    assert not response.HasField("status")
    assert decode_payload(response.data, dict) == {"n": 1, "x": [True, None]}


async def test_raw_message_is_succeeded_with_data(start_server: StartServer) -> None:
    """A returned instance of a typed plugin's output_type is answered as its encoded bytes."""
    served = await start_server(TypedScripted(lambda r: Transcript(text="hi", word_count=1)))
    response = await served.invoke(Transcript())
    assert Transcript.FromString(response.data) == Transcript(text="hi", word_count=1)


async def test_empty_output_is_still_data(start_server: StartServer) -> None:
    """An empty output ({} or an empty message) still sets data: SUCCEEDED, not a missing answer."""
    served = await start_server(Scripted(lambda r: {}))
    response = await served.invoke({})
    assert response.HasField("data")
    assert decode_payload(response.data, dict) == {}


async def test_response_data_is_succeeded(start_server: StartServer) -> None:
    """Response(data=...) is answered as data (SUCCEEDED)."""
    served = await start_server(Scripted(lambda r: Response(data={"ok": True})))
    response = await served.invoke({})
    assert decode_payload(response.data, dict) == {"ok": True}
    assert not response.HasField("status")


async def test_response_running_is_running(start_server: StartServer) -> None:
    """Response(status=Task(RUNNING, ...)) is answered RUNNING with every field kept."""
    task = Task(
        state=TaskState.RUNNING,
        remote_status_input={"remote_job_id": "j-1", "attempt": 2},
        progress=Progress(fraction=0.25, stage="uploading"),
        check_after_s=1.5,
        status_message="25% done",
    )
    served = await start_server(Scripted(lambda r: Response(status=task)))
    response = await served.invoke({})
    assert not response.HasField("data")
    assert response.status.state == task_pb2.TASK_STATE_RUNNING
    assert struct_to_dict(response.status.remote_status_input) == {
        "remote_job_id": "j-1",
        "attempt": 2,
    }
    assert response.status.progress.fraction == 0.25
    assert response.status.check_after.ToMilliseconds() == 1500
    assert response.status.status_message == "25% done"


async def test_plugin_error_is_failed_with_envelope(start_server: StartServer) -> None:
    """A raised PluginError is FAILED carrying its whole envelope; status_* copy its summary."""
    cause = PluginError(message="Remote said no.", code="HTTP_403", error=PermissionError("403"))
    err = PluginError(
        message="The file could not be read.",
        suggestion="Share the file with the service account.",
        code="FILE_NOT_SHARED",
        internal_message="GET /files/1 -> 403",
        rpc_code=grpc.StatusCode.PERMISSION_DENIED,
        domain="files.example.com",
        metadata={"file": "1"},
        error=cause,
    )
    served = await start_server(Scripted(_raise(err)))
    response = await served.invoke({})
    status = response.status
    assert status.state == task_pb2.TASK_STATE_FAILED
    assert (status.status_message, status.status_suggestion, status.status_code) == (
        "The file could not be read.",
        "Share the file with the service account.",
        "FILE_NOT_SHARED",
    )
    error = status.error
    assert error.message == "The file could not be read."
    assert error.suggestion == "Share the file with the service account."
    assert error.code == "FILE_NOT_SHARED"
    assert error.internal_message == "GET /files/1 -> 403"
    assert error.rpc_code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert error.domain == "files.example.com"
    assert dict(error.metadata) == {"file": "1"}
    assert error.wrapped_error.message == "Remote said no."
    assert error.wrapped_error.code == "HTTP_403"
    assert error.wrapped_error.wrapped_message == "PermissionError: 403"


async def test_returned_failed_task_gets_summary(start_server: StartServer) -> None:
    """Response(status=Task(FAILED, error=...)) is sent as is, with status_* filled from it."""
    err = PluginError(message="Too long.", suggestion="Cut it.", code="TOO_LONG")
    served = await start_server(
        Scripted(lambda r: Response(status=Task(state=TaskState.FAILED, error=err)))
    )
    response = await served.invoke({})
    assert response.status.state == task_pb2.TASK_STATE_FAILED
    assert response.status.status_code == "TOO_LONG"
    assert response.status.error.suggestion == "Cut it."


async def test_unexpected_exception_is_safe_internal_error(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Any other exception is FAILED PLUGIN_INTERNAL_ERROR; its text stays off the wire but
    its traceback reaches the server log."""
    served = await start_server(Scripted(_raise(ValueError("db password=hunter2"))))
    with caplog.at_level(logging.ERROR, logger="asyncplugin.plugin"):
        response = await served.invoke({})
    assert response.status.state == task_pb2.TASK_STATE_FAILED
    assert response.status.error.code == PLUGIN_INTERNAL_ERROR
    assert response.status.status_code == PLUGIN_INTERNAL_ERROR
    assert response.status.error.message == "The plugin failed unexpectedly."
    wire = response.SerializeToString()
    assert b"hunter2" not in wire
    assert b"Traceback" not in wire
    incident = response.status.error.metadata["incident"]
    records = [r for r in caplog.records if incident in r.getMessage()]
    assert records
    assert records[0].exc_info is not None
    assert "hunter2" in str(records[0].exc_info[1])


async def test_debug_puts_traceback_in_internal_message(start_server: StartServer) -> None:
    """With debug on, an unexpected exception's traceback travels in internal_message."""
    served = await start_server(Scripted(_raise(ValueError("boom-42"))), debug=True)
    response = await served.invoke({})
    assert response.status.error.code == PLUGIN_INTERNAL_ERROR
    internal = response.status.error.internal_message
    assert "Traceback" in internal
    assert "ValueError: boom-42" in internal


def _running_without_input(request: Request[dict[str, Any]]) -> Any:
    return Response(status=Task(state=TaskState.RUNNING))


def _cancelled(request: Request[dict[str, Any]]) -> Any:
    return Response(status=Task(state=TaskState.CANCELLED))


def _data_while_running(request: Request[dict[str, Any]]) -> Any:
    return Response(data={}, status=Task(state=TaskState.RUNNING, remote_status_input={}))


def _not_json(request: Request[dict[str, Any]]) -> Any:
    return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"x": object()}))


def _long_error(request: Request[dict[str, Any]]) -> Any:
    raise PluginError(message="x" * 5000)


def _unencodable_error(request: Request[dict[str, Any]]) -> Any:
    raise PluginError(message="Bad metadata.", metadata={"n": 1})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("behaviour", "problem", "mentions"),
    [
        pytest.param(lambda r: None, "RETURNED_NONE", "None", id="none"),
        pytest.param(lambda r: "text", "WRONG_RETURN_TYPE", "google.protobuf.Struct", id="str"),
        pytest.param(
            lambda r: Transcript(), "WRONG_RETURN_TYPE", "asyncplugin.examples.v1.Transcript",
            id="message-for-dict",
        ),
        pytest.param(
            lambda r: Task(state=TaskState.SUCCEEDED), "WRONG_RETURN_TYPE", "Response(status",
            id="bare-task",
        ),
        pytest.param(
            _running_without_input, "RUNNING_WITHOUT_REMOTE_STATUS_INPUT", "remote_status_input",
            id="running-without-input",
        ),
        pytest.param(lambda r: Response(), "NO_DATA_OR_STATUS", "neither", id="empty-response"),
        pytest.param(_cancelled, "CANCELLED_WITHOUT_REQUEST", "CANCELLED", id="cancel-unasked"),
        pytest.param(
            _data_while_running, "DATA_WITH_UNFINISHED_STATE", "RUNNING", id="data-and-running"
        ),
        pytest.param(_not_json, "UNENCODABLE_STATUS", "object", id="status-not-json"),
        pytest.param(
            lambda r: {"x": {1, 2}}, "UNENCODABLE_DATA", "set", id="data-not-json"
        ),
        pytest.param(_long_error, "FIELD_TOO_LONG", "5000 bytes", id="error-too-long"),
        pytest.param(_unencodable_error, "UNENCODABLE_ERROR", "PluginError", id="error-bad-meta"),
    ],
)  # fmt: skip
async def test_invalid_return_is_invalid_plugin_response(
    start_server: StartServer, behaviour: Behaviour, problem: str, mentions: str
) -> None:
    """An invalid answer becomes FAILED INVALID_PLUGIN_RESPONSE naming the problem (gRPC OK)."""
    served = await start_server(Scripted(behaviour))
    response = await served.invoke({})
    assert not response.HasField("data")
    assert response.status.state == task_pb2.TASK_STATE_FAILED
    error = response.status.error
    assert error.code == INVALID_PLUGIN_RESPONSE
    assert error.metadata["rule"] == problem
    assert problem in error.message
    assert mentions in error.message


async def test_typed_plugin_returning_dict_is_invalid(start_server: StartServer) -> None:
    """A typed plugin returning a dict is told the output type it should have returned."""
    served = await start_server(TypedScripted(lambda r: {"text": "hi"}))
    response = await served.invoke(Transcript())
    assert response.status.error.code == INVALID_PLUGIN_RESPONSE
    assert "asyncplugin.examples.v1.Transcript" in response.status.error.message


async def test_too_large_answer_is_failed_in_band(start_server: StartServer) -> None:
    """An answer over the server's max message size becomes FAILED MESSAGE_TOO_LARGE."""
    served = await start_server(Scripted(lambda r: {"blob": "x" * 4000}), max_message_bytes=2048)
    response = await served.invoke({})
    assert response.status.state == task_pb2.TASK_STATE_FAILED
    assert response.status.error.code == MESSAGE_TOO_LARGE
    assert response.status.error.metadata["limit_bytes"] == "2048"


async def test_every_answer_is_a_valid_invoke_response(start_server: StartServer) -> None:
    """Answers are plain InvokeResponse bytes (gRPC OK) even for a crash: never a gRPC error."""
    served = await start_server(Scripted(_raise(KeyError("k"))))
    request = plugin_pb2.InvokeRequest(context=plugin_pb2.RequestContext(task_id="t"))
    call = served.stub.Invoke(request)
    await call
    assert await call.code() == grpc.StatusCode.OK
