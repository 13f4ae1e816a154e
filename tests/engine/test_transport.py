"""How a failed RPC is classified: retried in transport, or failing the task with an envelope."""

from __future__ import annotations

import grpc
import pytest

from asyncplugin.engine.transport import GrpcTransport, TransportError, classify_rpc_error
from asyncplugin.protocol import error_to_status
from asyncplugin.v1 import error_pb2
from tests.engine.conftest import Serve
from tests.engine.plugins import constant, done, unused_target

_INVOKE = "/asyncplugin.v1.PluginService/Invoke"


def _classify(
    code: grpc.StatusCode,
    details: str,
    trailers: tuple[tuple[str, str | bytes], ...] = (),
    timeout_s: float | None = None,
) -> TransportError:
    return classify_rpc_error(
        code, details, trailers, target="10.0.0.1:50051", method="/a.B/C", timeout_s=timeout_s
    )


def test_unavailable_is_retryable() -> None:
    """UNAVAILABLE is retried; if retries run out the envelope says UNAVAILABLE with details."""
    err = _classify(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    assert err.retryable
    assert err.code_name == "UNAVAILABLE"
    assert err.error.code == "UNAVAILABLE"
    assert "10.0.0.1:50051" in err.error.message
    assert err.error.internal_message == "failed to connect to all addresses"
    assert err.error.rpc_code == 14


def test_call_timeout_is_retryable_as_check_timeout() -> None:
    """DEADLINE_EXCEEDED of the call itself is retried; exhausted, it is CHECK_TIMEOUT."""
    err = _classify(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", timeout_s=10)
    assert err.retryable
    assert err.error.code == "CHECK_TIMEOUT"
    assert "within 10 s" in err.error.message


@pytest.mark.parametrize(
    "details",
    [
        "failed to connect to all addresses; last error: INTERNAL: ipv4:127.0.0.1:1: Failed "
        "parsing HTTP/2 (Expected SETTINGS frame) (Trying to connect an http1.x server (HTTP "
        "status 400))",
        "last error: UNAVAILABLE: Failed parsing HTTP/2 (Expected SETTINGS frame as the first "
        "frame, got frame type 98)",
    ],
)
def test_non_grpc_peer_is_not_retried(details: str) -> None:
    """A peer that does not speak gRPC fails at once: NOT_A_GRPC_ENDPOINT."""
    err = _classify(grpc.StatusCode.UNAVAILABLE, details)
    assert not err.retryable
    assert err.error.code == "NOT_A_GRPC_ENDPOINT"


def test_message_size_is_message_too_large() -> None:
    """RESOURCE_EXHAUSTED for size is MESSAGE_TOO_LARGE; other exhaustion keeps its name."""
    err = _classify(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "Received message larger than max (5242880 vs. 4194304)",
    )
    assert (err.retryable, err.error.code) == (False, "MESSAGE_TOO_LARGE")
    quota = _classify(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota")
    assert (quota.retryable, quota.error.code, quota.error.message) == (
        False,
        "RESOURCE_EXHAUSTED",
        "quota",
    )


def test_unimplemented_names_the_method() -> None:
    """UNIMPLEMENTED without details means a wrong method path, named in the message."""
    err = _classify(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    assert not err.retryable
    assert err.error.code == "UNIMPLEMENTED"
    assert "/a.B/C" in err.error.message


def test_server_cancelled_call_is_retryable() -> None:
    """CANCELLED from the server (a plugin starting a graceful shutdown) is retried."""
    err = _classify(grpc.StatusCode.CANCELLED, "CANCELLED")
    assert err.retryable
    assert err.error.code == "CANCELLED"
    assert "without answering" in err.error.message


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.PERMISSION_DENIED],
)
def test_other_codes_fail_at_once(code: grpc.StatusCode) -> None:
    """INTERNAL, UNKNOWN and the rest are never retried as if transient."""
    err = _classify(code, "details here")
    assert not err.retryable
    assert err.error.code == code.name
    assert err.error.message == "details here"
    assert err.error.rpc_code == code.value[0]


def test_rich_status_details_give_the_plugins_envelope() -> None:
    """grpc-status-details-bin with a packed Error is the task's envelope, exactly."""
    envelope = error_pb2.Error(message="No quota.", code="REMOTE_QUOTA", rpc_code=9)
    trailers = (("grpc-status-details-bin", error_to_status(envelope).SerializeToString()),)
    err = _classify(grpc.StatusCode.FAILED_PRECONDITION, "No quota.", trailers)
    assert not err.retryable
    assert err.error == envelope


def test_rich_status_with_another_code_or_garbage_is_ignored() -> None:
    """Details whose code disagrees with the call's, or that do not parse, are ignored."""
    envelope = error_pb2.Error(message="x", code="X", rpc_code=9)
    mismatched = (("grpc-status-details-bin", error_to_status(envelope).SerializeToString()),)
    err = _classify(grpc.StatusCode.INTERNAL, "boom", mismatched)
    assert err.error.code == "INTERNAL"
    junk = (("grpc-status-details-bin", b"\xff\xff\xff"),)
    err = _classify(grpc.StatusCode.INTERNAL, "boom", junk)
    assert err.error.code == "INTERNAL"


async def test_transport_caches_one_channel_per_target_and_replaces_a_broken_one(
    serve: Serve,
) -> None:
    """Calls to one target share a channel; after UNAVAILABLE on a disconnected channel the
    next call uses a fresh one (so grpc's reconnect backoff never outlives the engine's)."""
    plugin = await serve(constant(done(b"ok")))
    transport = GrpcTransport()
    try:
        await transport.call(plugin.target, _INVOKE, b"", timeout_s=5)
        first = transport._channels[plugin.target]
        await transport.call(plugin.target, _INVOKE, b"", timeout_s=5)
        assert transport._channels[plugin.target] is first
        down = unused_target()
        with pytest.raises(Exception, match="unavailable") as caught:
            await transport.call(down, "/a.B/C", b"", timeout_s=5)
        assert getattr(caught.value, "retryable", None) is True
        assert down not in transport._channels
    finally:
        await transport.close()
