"""What a plugin author sees when a handler fails, and how a run override meets a cancel."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from asyncplugin.plugin import CANCEL_NOT_HANDLED, PLUGIN_INTERNAL_ERROR, AsyncPlugin
from asyncplugin.protocol import Request, Response, Task, TaskState, dict_to_struct, encode_payload
from asyncplugin.v1 import plugin_pb2, task_pb2
from tests.plugin.conftest import StartServer

Payload = dict[str, Any]


class Poller(AsyncPlugin[Payload, Payload]):
    """Routes on is_status_check itself and reads a key the engine may not have echoed."""

    def run(self, request: Request[Payload]) -> Response[Payload]:
        if request.is_status_check:
            job = request.remote_status_input["remote_job_id"]  # KeyError if missing
            return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"j": job}))
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"other": 1}))


def _check(remote_status_input: Payload, *, cancel: bool = False) -> plugin_pb2.InvokeRequest:
    status = task_pb2.Task(task_id="t-42", state=task_pb2.TASK_STATE_RUNNING, check_count=2)
    status.remote_status_input.CopyFrom(dict_to_struct(remote_status_input))
    return plugin_pb2.InvokeRequest(
        data=encode_payload({}),
        context=plugin_pb2.RequestContext(task_id="t-42", check_number=3),
        status=status,
        is_status_check=True,
        cancel_requested=cancel,
    )


async def test_log_line_names_task_exception_and_place(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The server log line for an unexpected exception names the task and check, the exception
    type and message, and the file, line and function it was raised in."""
    served = await start_server(Poller())
    with caplog.at_level(logging.ERROR, logger="asyncplugin.plugin"):
        response = await served.invoke(request=_check({"other": 1}))
    assert response.status.error.code == PLUGIN_INTERNAL_ERROR
    incident = response.status.error.metadata["incident"]
    lines = [r.getMessage() for r in caplog.records if incident in r.getMessage()]
    assert len(lines) == 1
    line = lines[0]
    assert "task t-42 (check 3)" in line
    assert "KeyError: 'remote_job_id'" in line
    assert f"{__file__}:" in line
    assert "in run" in line


async def test_default_envelope_keeps_the_exception_off_the_wire(
    start_server: StartServer,
) -> None:
    """Without --debug, internal_message holds only the incident id: no type, no message."""
    served = await start_server(Poller())
    response = await served.invoke(request=_check({"other": 1}))
    internal = response.status.error.internal_message
    incident = response.status.error.metadata["incident"]
    assert internal == f"See the plugin server's log for incident {incident}."
    assert b"KeyError" not in response.SerializeToString()
    assert b"remote_job_id" not in response.SerializeToString()


async def test_debug_envelope_starts_with_type_message_and_place(
    start_server: StartServer,
) -> None:
    """With --debug, internal_message starts with "KeyError: 'remote_job_id' at FILE:LINE in
    run", then the traceback."""
    served = await start_server(Poller(), debug=True)
    response = await served.invoke(request=_check({"other": 1}))
    internal = response.status.error.internal_message
    first_line = internal.splitlines()[0]
    assert first_line.startswith("KeyError: 'remote_job_id' at ")
    assert first_line.endswith(" in run")
    assert __file__ in first_line
    assert "Traceback (most recent call last)" in internal


async def test_run_override_sees_cancel_requested(start_server: StartServer) -> None:
    """A cancel request reaches a run override as a status check with cancel_requested set and
    the last RUNNING Task; an override that answers CANCELLED is sent as is."""
    seen: list[Request[Payload]] = []

    class Handles(AsyncPlugin[Payload, Payload]):
        async def run(self, request: Request[Payload]) -> Response[Payload]:
            seen.append(request)
            return Response(status=Task(state=TaskState.CANCELLED, status_message="stopped"))

    served = await start_server(Handles())
    response = await served.invoke(request=_check({"remote_job_id": "j-1"}, cancel=True))
    assert response.status.state == task_pb2.TASK_STATE_CANCELLED
    assert response.status.status_message == "stopped"
    assert response.status.status_code == ""
    request = seen[0]
    assert request.cancel_requested
    assert request.is_status_check
    assert request.remote_status_input == {"remote_job_id": "j-1"}


@pytest.mark.parametrize(
    "answer",
    [
        Response(status=Task(state=TaskState.RUNNING, remote_status_input={"j": 1})),
        Response(data={"done": True}),
        {"done": True},
    ],
    ids=["running", "response-data", "payload"],
)
async def test_cancel_ignored_by_run_is_answered_cancel_not_handled(
    answer: Any, start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An override answering a cancel request as a status check (RUNNING, or data) is replaced
    by CANCELLED with code CANCEL_NOT_HANDLED, and the author gets a warning naming the task."""

    class Ignores(AsyncPlugin[Payload, Payload]):
        async def run(self, request: Request[Payload]) -> Any:
            return answer

    served = await start_server(Ignores())
    with caplog.at_level(logging.WARNING, logger="asyncplugin.plugin"):
        response = await served.invoke(request=_check({"remote_job_id": "j-1"}, cancel=True))
    assert response.status.state == task_pb2.TASK_STATE_CANCELLED
    assert response.status.status_code == CANCEL_NOT_HANDLED
    assert "did not stop the remote work" in response.status.status_message
    assert not response.HasField("data")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("t-42" in w and CANCEL_NOT_HANDLED in w for w in warnings)


async def test_failed_answer_to_a_cancel_passes_through(start_server: StartServer) -> None:
    """An exception while handling the cancel is a FAILED answer, not replaced."""
    served = await start_server(Poller())
    response = await served.invoke(request=_check({"other": 1}, cancel=True))
    assert response.status.state == task_pb2.TASK_STATE_FAILED
    assert response.status.error.code == PLUGIN_INTERNAL_ERROR


async def test_same_run_answers_status_checks_normally(start_server: StartServer) -> None:
    """Without cancel_requested nothing is replaced: RUNNING stays RUNNING."""
    served = await start_server(Poller())
    response = await served.invoke(request=_check({"remote_job_id": "j-1"}))
    assert response.status.state == task_pb2.TASK_STATE_RUNNING
