"""pydantic v2 models as payload types: JSON on the wire, validated on the way in."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from google.rpc import status_pb2
from pydantic import BaseModel, Field

from asyncplugin.plugin import INVALID_PAYLOAD, INVALID_PLUGIN_RESPONSE, AsyncPlugin
from asyncplugin.protocol import (
    Request,
    Response,
    decode_payload,
    encode_payload,
    payload_type_name,
)
from asyncplugin.protocol.payload import PayloadValidationError, payload_kind
from asyncplugin.v1 import error_pb2, plugin_pb2
from tests.plugin.conftest import StartServer


class Segment(BaseModel):
    start_s: float
    text: str


class JobInput(BaseModel):
    audio_url: str
    language: str = "en"
    segments: list[Segment] = Field(default_factory=list)


class JobOutput(BaseModel):
    text: str
    words: int


class Words(AsyncPlugin[JobInput, JobOutput]):
    """Counts the words of the segments it is given."""

    async def run(self, request: Request[JobInput]) -> JobOutput:
        assert isinstance(request.data, JobInput)
        text = " ".join(segment.text for segment in request.data.segments)
        return JobOutput(text=text, words=len(text.split()))


class WrongOutput(AsyncPlugin[JobInput, JobOutput]):
    async def run(self, request: Request[JobInput]) -> Response[JobOutput]:
        return Response(data=Segment(start_s=0, text="not the output type"))  # type: ignore[arg-type]


def _details(err: grpc.aio.AioRpcError) -> error_pb2.Error:
    trailers = dict(err.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    packed = error_pb2.Error()
    assert status.details[0].Unpack(packed)
    return packed


def test_generic_arguments_declare_pydantic_payloads() -> None:
    """AsyncPlugin[Model, Model] sets input_type and output_type to the models."""
    assert (Words.input_type, Words.output_type) == (JobInput, JobOutput)
    assert payload_kind(JobInput) is JobInput
    assert payload_type_name(JobInput).endswith("JobInput (pydantic model)")


def test_codec_round_trips_json_and_validates() -> None:
    """A model travels as its JSON form in a Struct and is validated when decoded."""
    value = JobInput(audio_url="a.wav", segments=[Segment(start_s=1.5, text="hi there")])
    raw = encode_payload(value)
    assert decode_payload(raw, dict) == {
        "audio_url": "a.wav",
        "language": "en",
        "segments": [{"start_s": 1.5, "text": "hi there"}],
    }
    assert decode_payload(raw, JobInput) == value
    bad = encode_payload({"audio_url": "a.wav", "segments": [{"start_s": "soon", "text": 1}]})
    with pytest.raises(PayloadValidationError) as caught:
        decode_payload(bad, JobInput)
    assert caught.value.field == "data.segments.0.start_s"
    assert "data.segments.0.text" in str(caught.value)


async def test_valid_payload_reaches_the_handler_as_a_model(start_server: StartServer) -> None:
    """The handler gets the model; its model answer goes out as JSON."""
    served = await start_server(Words())
    payload = JobInput(audio_url="a.wav", segments=[Segment(start_s=0, text="one two three")])
    response = await served.invoke(payload)
    assert decode_payload(response.data, JobOutput) == JobOutput(text="one two three", words=3)


async def test_invalid_payload_is_invalid_argument_naming_the_field(
    start_server: StartServer,
) -> None:
    """A payload that does not validate is refused with INVALID_ARGUMENT; the envelope's code
    is INVALID_PAYLOAD and metadata["field"] names the first offending field."""
    served = await start_server(Words())
    request = plugin_pb2.InvokeRequest(
        data=encode_payload({"language": "fr", "segments": [{"start_s": 0}]})
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.stub.Invoke(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    assert "data.audio_url: Field required" in details
    assert "data.segments.0.text: Field required" in details
    error = _details(caught.value)
    assert error.code == INVALID_PAYLOAD
    assert dict(error.metadata) == {"field": "data.audio_url"}


async def test_wrong_output_model_is_invalid_plugin_response(start_server: StartServer) -> None:
    """Answering with another model than the output type is INVALID_PLUGIN_RESPONSE naming
    both."""
    served = await start_server(WrongOutput())
    response = await served.invoke(JobInput(audio_url="a.wav"))
    assert response.status.error.code == INVALID_PLUGIN_RESPONSE
    message = response.status.error.message
    assert "Segment" in message
    assert "JobOutput (pydantic model)" in message


def test_pydantic_is_not_imported_unless_a_plugin_uses_it() -> None:
    """The SDK, the engine, the harness and the Steamship layer never import pydantic."""
    code = (
        "import sys\n"
        "import asyncplugin, asyncplugin.plugin, asyncplugin.testing, asyncplugin.cli\n"
        "import asyncplugin.compat.steamship\n"
        "from asyncplugin.protocol import decode_payload, encode_payload\n"
        "assert decode_payload(encode_payload({'a': 1}), dict) == {'a': 1}\n"
        "assert 'pydantic' not in sys.modules, 'pydantic was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
