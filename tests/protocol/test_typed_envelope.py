"""A plugin's typed RPC is wire-compatible with the generic envelope the engine uses."""

from __future__ import annotations

from asyncplugin.examples.v1 import transcriber_pb2
from asyncplugin.protocol import check_response
from asyncplugin.v1 import plugin_pb2, task_pb2


def _typed_request() -> transcriber_pb2.TranscribeRequest:
    task = task_pb2.Task(task_id="t-1", state=task_pb2.TASK_STATE_RUNNING, check_count=2)
    task.remote_status_input.update({"remote_job_id": "j-42"})
    return transcriber_pb2.TranscribeRequest(
        data=transcriber_pb2.TranscribeInput(audio_url="https://example.com/a.wav", language="en"),
        context=plugin_pb2.RequestContext(task_id="t-1", check_number=3, idempotency_key="k"),
        status=task,
        is_status_check=True,
        cancel_requested=False,
    )


def test_typed_request_round_trips_through_generic_envelope() -> None:
    """Typed bytes parse as InvokeRequest (payload as bytes) and re-encode to the typed form."""
    typed = _typed_request()
    generic = plugin_pb2.InvokeRequest.FromString(typed.SerializeToString())
    assert generic.HasField("data")
    assert transcriber_pb2.TranscribeInput.FromString(generic.data) == typed.data
    assert generic.context == typed.context
    assert generic.status == typed.status
    assert generic.is_status_check is True
    back = transcriber_pb2.TranscribeRequest.FromString(generic.SerializeToString())
    assert back == typed


def test_generic_request_built_by_engine_reads_as_typed() -> None:
    """What the engine builds from payload bytes is exactly the typed request on the plugin side."""
    payload = transcriber_pb2.TranscribeInput(audio_url="https://example.com/b.wav")
    generic = plugin_pb2.InvokeRequest(
        data=payload.SerializeToString(),
        context=plugin_pb2.RequestContext(task_id="t-2"),
    )
    typed = transcriber_pb2.TranscribeRequest.FromString(generic.SerializeToString())
    assert typed.data == payload
    assert typed.context.task_id == "t-2"
    assert not typed.is_status_check


def test_typed_response_keeps_presence_of_empty_payload() -> None:
    """An empty typed result is still 'data present' in the generic envelope (SUCCEEDED)."""
    typed = transcriber_pb2.TranscribeResponse(data=transcriber_pb2.Transcript())
    assert typed.HasField("data")
    generic = plugin_pb2.InvokeResponse.FromString(typed.SerializeToString())
    assert generic.HasField("data")
    assert generic.data == b""
    check_response(generic)
    back = transcriber_pb2.TranscribeResponse.FromString(generic.SerializeToString())
    assert back.HasField("data")


def test_typed_running_response_reads_as_generic_running() -> None:
    """A typed RUNNING answer is a valid generic RUNNING answer with the same remote input."""
    status = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING)
    status.remote_status_input.update({"remote_job_id": "j-9"})
    typed = transcriber_pb2.TranscribeResponse(status=status)
    generic = plugin_pb2.InvokeResponse.FromString(typed.SerializeToString())
    check_response(generic)
    assert not generic.HasField("data")
    assert generic.status.remote_status_input["remote_job_id"] == "j-9"
