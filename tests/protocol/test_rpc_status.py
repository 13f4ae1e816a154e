"""The Error envelope maps to google.rpc.Status and back without loss."""

from __future__ import annotations

from google.rpc import code_pb2, error_details_pb2, status_pb2

from asyncplugin.protocol import error_to_status, status_to_error
from asyncplugin.v1 import error_pb2
from tests.golden_cases import error_full


def test_error_round_trips_through_status_losslessly() -> None:
    """Error -> Status -> Error is the identity, wrapped chain and metadata included."""
    error = error_full()
    assert isinstance(error, error_pb2.Error)
    status = error_to_status(error)
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert status.message == error.message
    assert status_to_error(status) == error


def test_status_carries_standard_details_for_generic_clients() -> None:
    """ErrorInfo, Help and DebugInfo are present so clients without our types can read them."""
    status = error_to_status(error_full())  # type: ignore[arg-type]
    info = error_details_pb2.ErrorInfo()
    help_ = error_details_pb2.Help()
    debug = error_details_pb2.DebugInfo()
    assert status.details[1].Unpack(info)
    assert status.details[2].Unpack(help_)
    assert status.details[3].Unpack(debug)
    assert info.reason == "UNSUPPORTED_AUDIO_FORMAT"
    assert info.domain == "transcriber.example.com"
    assert dict(info.metadata) == {"format": "ogg", "max_seconds": "600"}
    assert help_.links[0].description == "Upload a WAV or MP3 file."
    assert debug.detail.startswith("ffmpeg exited 1")


def test_unclassified_error_maps_to_unknown() -> None:
    """rpc_code 0 (unclassified) becomes UNKNOWN, never OK."""
    status = error_to_status(error_pb2.Error(message="boom"))
    assert status.code == code_pb2.UNKNOWN


def test_status_from_another_language_is_rebuilt_from_standard_details() -> None:
    """Without a packed Error, the envelope is rebuilt from ErrorInfo / Help / DebugInfo."""
    status = status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message="no access")
    for detail in (
        error_details_pb2.ErrorInfo(reason="BUCKET_DENIED", domain="s3", metadata={"b": "x"}),
        error_details_pb2.Help(links=[error_details_pb2.Help.Link(description="Ask an admin.")]),
        error_details_pb2.DebugInfo(detail="acl check failed"),
    ):
        status.details.add().Pack(detail)
    error = status_to_error(status)
    assert error == error_pb2.Error(
        message="no access",
        rpc_code=code_pb2.PERMISSION_DENIED,
        code="BUCKET_DENIED",
        domain="s3",
        metadata={"b": "x"},
        suggestion="Ask an admin.",
        internal_message="acl check failed",
    )


def test_bare_status_gets_code_name() -> None:
    """A bare status with no details still yields a usable envelope named after its code."""
    error = status_to_error(status_pb2.Status(code=code_pb2.NOT_FOUND))
    assert error.code == "NOT_FOUND"
    assert error.message == "NOT_FOUND"
