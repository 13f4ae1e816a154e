"""The engine's one gRPC edge: a generic unary call by method path, bytes in and bytes out.

The engine drives ANY unary method that follows the envelope convention (typed RPCs are
wire-identical to `PluginService.Invoke`), so it never uses a generated stub: it sends the
encoded InvokeRequest to a method path and hands the answer's raw bytes to
`asyncplugin.protocol.decode_response`, which turns garbage into a named ProtocolViolation.

`Transport` is the port the engine calls; `GrpcTransport` is its grpc.aio implementation (one
channel per target, created lazily in the running loop). `classify_rpc_error` decides, purely
from the gRPC status, whether a failed call is retried by `TransportRetryPolicy` or fails the
task, and builds the error envelope for the latter.

Security: TLS per target (`ChannelSecurity`, see `credentials.py`), bearer tokens through a
`metadata_provider` (never stored), and plaintext only to loopback targets unless
`allow_insecure=True`: a plaintext call to any other target fails with INSECURE_TARGET before a
connection is opened. A failed TLS handshake (untrusted certificate, wrong name, a plaintext
server) fails the task with TLS_HANDSHAKE_FAILED instead of being retried: it is configuration,
not a passing fault. UNAUTHENTICATED fails the task at once too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import grpc
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from grpc import aio

from asyncplugin.protocol import limits, status_to_error
from asyncplugin.protocol.security import is_loopback_target
from asyncplugin.v1 import error_pb2

from . import errors
from .credentials import ChannelSecurity
from .errors import EngineCode

__all__ = [
    "GrpcTransport",
    "Metadata",
    "SecurityConfig",
    "Transport",
    "TransportError",
    "classify_rpc_error",
    "require_secure_target",
]

Metadata = Sequence[tuple[str, str]]

SecurityConfig = (
    ChannelSecurity | Mapping[str, ChannelSecurity] | Callable[[str], ChannelSecurity | None]
)
"""TLS for every target (one ChannelSecurity), per target (a mapping; targets not in it use
plaintext), or computed (a callable returning None for plaintext)."""

_log = logging.getLogger(__name__)

_STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"
_NOT_GRPC_MARKERS: Final = ("Trying to connect an http1.x server", "Failed parsing HTTP/2")
_TOO_LARGE_MARKERS: Final = ("message larger than max",)
_TLS_MARKERS: Final = (
    "handshake failed",
    "hostname verification check failed",
    "certificate_verify_failed",
)
_RETIRED_CHANNEL_GRACE_S: Final = 30.0


class TransportError(errors.EngineError):
    """A call failed at the gRPC level.

    Attributes:
        code: the gRPC status code (None if the call never got one).
        retryable: True when `TransportRetryPolicy` should retry the call (UNAVAILABLE, or the
            call's own timeout); False when the task fails at once.
        error: the error envelope the task records if it fails on this error.
    """

    def __init__(
        self, code: grpc.StatusCode | None, *, retryable: bool, error: error_pb2.Error
    ) -> None:
        super().__init__(error.message)
        self.code = code
        self.retryable = retryable
        self.error = error

    @property
    def code_name(self) -> str:
        """The gRPC code's name, e.g. "UNAVAILABLE" ("" if there is none)."""
        return self.code.name if self.code is not None else ""


class Transport(Protocol):
    """The port the engine calls plugins through."""

    async def call(
        self,
        target: str,
        method: str,
        request: bytes,
        *,
        timeout_s: float,
        metadata: Metadata = (),
    ) -> bytes:
        """Sends the encoded request to `method` at `target`; returns the answer's bytes.

        Raises:
            TransportError: the RPC failed; its `retryable` says whether to retry.
        """
        ...

    async def close(self) -> None:
        """Releases every connection."""
        ...


class GrpcTransport:
    """`Transport` over grpc.aio: one cached channel per target.

    Args:
        max_message_bytes: the largest message sent or received (default 4 MiB, the protocol's
            default); a larger answer fails the task with code "MESSAGE_TOO_LARGE".
        channel_options: extra grpc channel options.
        credentials: returns the channel credentials for a target (TLS), or None for plaintext;
            for credentials `security` cannot express. Not together with `security`.
        security: TLS settings: one `ChannelSecurity` for every target, a mapping target ->
            ChannelSecurity, or a callable returning one (None: plaintext).
        metadata_provider: returns extra call metadata for a target (for example
            `BearerTokens`, or a token fetched from a secret store); never written to the task
            store.
        allow_insecure: allow plaintext to non-loopback targets. Without it such a call fails
            with INSECURE_TARGET (not retried) before any connection is opened.

    A channel that fails with UNAVAILABLE while not connected is replaced by a fresh one (the
    old one is closed after in-flight calls finish): grpc's own reconnect backoff (1 s growing
    to 120 s) would otherwise make the engine's retries fail without trying, long after the
    plugin is back. The engine's `TransportRetryPolicy` is the one backoff that applies.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int = limits.MESSAGE_MAX_BYTES,
        channel_options: Sequence[tuple[str, str | int]] = (),
        credentials: Callable[[str], grpc.ChannelCredentials | None] | None = None,
        security: SecurityConfig | None = None,
        metadata_provider: Callable[[str], Metadata] | None = None,
        allow_insecure: bool = False,
    ) -> None:
        if credentials is not None and security is not None:
            raise ValueError("give GrpcTransport either credentials or security, not both")
        self._options: list[tuple[str, str | int]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *channel_options,
        ]
        self._credentials = credentials
        self._security = security
        self._metadata_provider = metadata_provider
        self._allow_insecure = allow_insecure
        self._channels: dict[str, aio.Channel] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    async def call(
        self,
        target: str,
        method: str,
        request: bytes,
        *,
        timeout_s: float,
        metadata: Metadata = (),
    ) -> bytes:
        """Sends raw request bytes to `method` at `target` and returns the raw answer bytes."""
        channel = self._channel(target)
        call_metadata = tuple(metadata)
        if self._metadata_provider is not None:
            call_metadata += tuple(self._metadata_provider(target))
        # No serializers: grpc sends and returns bytes as they are.
        multicallable: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        try:
            answer = await multicallable(request, timeout=timeout_s, metadata=call_metadata or None)
        except aio.AioRpcError as err:
            code = err.code()
            if code is grpc.StatusCode.UNAVAILABLE:
                self._retire_if_disconnected(target, channel)
            raise classify_rpc_error(
                code,
                err.details() or "",
                _pairs(err.trailing_metadata()),
                target=target,
                method=method,
                timeout_s=timeout_s,
            ) from err
        if not isinstance(answer, bytes):  # pragma: no cover - grpc returns bytes here
            raise TypeError(f"grpc returned {type(answer).__name__}, expected bytes")
        return answer

    async def close(self) -> None:
        """Closes every channel (in-flight calls are cancelled)."""
        channels = list(self._channels.values())
        self._channels.clear()
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*(channel.close() for channel in channels), return_exceptions=True)
        await asyncio.gather(*self._retiring, return_exceptions=True)

    def security_for(self, target: str) -> ChannelSecurity | None:
        """The TLS settings used for `target` (None: plaintext or raw `credentials`)."""
        security = self._security
        if security is None or isinstance(security, ChannelSecurity):
            return security
        if isinstance(security, Mapping):
            return security.get(target)
        return security(target)

    def check_target(self, target: str) -> None:
        """Raises TransportError (INSECURE_TARGET) if a call to `target` would be refused as
        plaintext to a non-loopback address; opens no connection."""
        secure = self.security_for(target) is not None or (
            self._credentials is not None and self._credentials(target) is not None
        )
        require_secure_target(target, secure=secure, allow_insecure=self._allow_insecure)

    def _channel(self, target: str) -> aio.Channel:
        channel = self._channels.get(target)
        if channel is None:
            security = self.security_for(target)
            options = list(self._options)
            credentials: grpc.ChannelCredentials | None = None
            if security is not None:
                credentials = security.channel_credentials()
                options += security.channel_options()
            elif self._credentials is not None:
                credentials = self._credentials(target)
            require_secure_target(
                target, secure=credentials is not None, allow_insecure=self._allow_insecure
            )
            if credentials is None:
                channel = aio.insecure_channel(target, options=options)
            else:
                channel = aio.secure_channel(target, credentials, options=options)
            self._channels[target] = channel
        return channel

    def _retire_if_disconnected(self, target: str, channel: aio.Channel) -> None:
        if self._channels.get(target) is not channel:
            return  # another call already replaced it
        state = channel.get_state(try_to_connect=False)
        if state is grpc.ChannelConnectivity.READY:
            return  # the plugin itself answered UNAVAILABLE; the connection is fine
        del self._channels[target]
        task = asyncio.get_running_loop().create_task(channel.close(grace=_RETIRED_CHANNEL_GRACE_S))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        _log.debug("replacing the channel to %s (state %s)", target, state.name)


def require_secure_target(target: str, *, secure: bool, allow_insecure: bool) -> None:
    """Refuses plaintext to a non-loopback target unless `allow_insecure`.

    Raises:
        TransportError: engine code INSECURE_TARGET, not retryable; raised before any
            connection is opened, so nothing is sent.
    """
    if secure or allow_insecure or is_loopback_target(target):
        return
    raise TransportError(
        None,
        retryable=False,
        error=errors.engine_error(
            EngineCode.INSECURE_TARGET,
            f"refusing to call {target} without TLS: it is not a loopback address",
            suggestion="Configure TLS for this target (GrpcTransport(security=ChannelSecurity"
            "(...)) or --tls-ca), or allow plaintext explicitly (allow_insecure=True or "
            "--insecure) on a trusted network.",
            metadata={"target": target},
        ),
    )


@dataclass(frozen=True, slots=True)
class _Known:
    """A failed call the engine recognises, by the gRPC code its engine code carries (and by
    text in the details), and how it reports it.

    `message` is formatted with `target`, `method`, `where` ("method at target") and `limit`
    (" within N s" for a call's own timeout).
    """

    code: EngineCode
    message: str
    suggestion: str
    markers: tuple[str, ...] = ()
    """Only when the details contain one of these; () for any details."""
    even_rich: bool = False
    """Applies also when the plugin sent a google.rpc.Status of its own."""
    names_method: bool = True
    """The envelope's metadata names the method as well as the target."""

    def matches(self, code: grpc.StatusCode, details: str, rich: bool) -> bool:
        """True when a call that failed with `code` and `details` is this kind of failure."""
        if code is not self.code.rpc_code or (rich and not self.even_rich):
            return False
        text = details.lower()
        return not self.markers or any(marker.lower() in text for marker in self.markers)


# Retried by TransportRetryPolicy: UNAVAILABLE (a plugin restarting), the call's own timeout,
# and a CANCELLED the engine did not ask for: the engine never cancels a call it still awaits
# (stopping cancels the awaiting task, not the RPC's outcome), so it came from the server, which
# cancels calls that arrive as a graceful shutdown starts or that overflow its pending queue.
# Nothing was answered, so retrying is safe for a status check and, with the same idempotency
# key, for an initiation. A server refusing the engine's client certificate closes the
# connection mid-handshake, which reaches the client only as UNAVAILABLE "Socket closed": that
# one stays retryable.
_RETRYABLE: Final = frozenset(
    {EngineCode.UNAVAILABLE, EngineCode.CHECK_TIMEOUT, EngineCode.CANCELLED}
)

# First match wins.
_KNOWN: Final = (
    _Known(
        EngineCode.TLS_HANDSHAKE_FAILED,
        "the TLS handshake with {target} failed",
        "Check that the plugin serves TLS, that its certificate is signed by the CA given to the "
        "engine, and that it names the target's host (or set the server name override).",
        _TLS_MARKERS,
        even_rich=True,
        names_method=False,
    ),
    _Known(
        EngineCode.NOT_A_GRPC_ENDPOINT,
        "{target} is not a gRPC server (it does not speak HTTP/2 gRPC)",
        "Check the target address and port of the plugin.",
        _NOT_GRPC_MARKERS,
        even_rich=True,
        names_method=False,
    ),
    _Known(
        EngineCode.UNAVAILABLE,
        "the plugin at {target} is unavailable",
        "Check that the plugin is running and reachable.",
        names_method=False,
    ),
    _Known(
        EngineCode.CANCELLED,
        "the plugin at {target} cancelled the call to {method} without answering",
        "The plugin may be shutting down or overloaded.",
    ),
    _Known(
        EngineCode.CHECK_TIMEOUT,
        "the call to {where} did not answer{limit}",
        "A status check should answer quickly; raise check_timeout_s if the plugin needs longer.",
        even_rich=True,
    ),
    _Known(
        EngineCode.MESSAGE_TOO_LARGE,
        "a message of the call to {where} exceeds the gRPC size limit",
        "Keep payloads and answers under the message size limit "
        f"({limits.MESSAGE_MAX_BYTES} bytes by default) or pass a reference instead.",
        _TOO_LARGE_MARKERS,
        even_rich=True,
    ),
    _Known(
        EngineCode.UNAUTHENTICATED,
        "the plugin at {target} refused the call to {method}: not authenticated",
        "Check the bearer token the engine sends to this target (metadata_provider, "
        "--token-file or $ASYNCPLUGIN_TOKEN).",
    ),
    _Known(
        EngineCode.UNIMPLEMENTED,
        "the plugin at {target} does not implement {method}",
        "Check the method path: /package.Service/Method.",
    ),
)


def classify_rpc_error(
    code: grpc.StatusCode,
    details: str,
    trailing_metadata: Sequence[tuple[str, str | bytes]],
    *,
    target: str,
    method: str,
    timeout_s: float | None = None,
) -> TransportError:
    """Decides how the engine treats a failed RPC, and builds the envelope if it fails the task.

    A failure listed in `_KNOWN` gets its engine code and message, and is retried if its code is
    in `_RETRYABLE` (UNAVAILABLE, CHECK_TIMEOUT, CANCELLED). Otherwise the
    google.rpc.Status a plugin sent in the trailing metadata is mapped with `status_to_error`
    (retried on UNAVAILABLE only), or else the envelope carries the gRPC code's name and details.
    """
    rich = _rich_status(code, trailing_metadata)
    known = next((k for k in _KNOWN if k.matches(code, details, rich is not None)), None)
    if known is not None:
        limit = f" within {timeout_s:g} s" if timeout_s is not None else ""
        message = known.message.format(
            target=target, method=method, where=f"{method} at {target}", limit=limit
        )
        metadata = (
            {"target": target, "method": method} if known.names_method else {"target": target}
        )
        error = errors.engine_error(
            known.code,
            message,
            internal_message=details,
            suggestion=known.suggestion,
            metadata=metadata,
        )
        return TransportError(code, retryable=known.code in _RETRYABLE, error=error)
    if rich is not None:
        retryable = code is grpc.StatusCode.UNAVAILABLE
        return TransportError(code, retryable=retryable, error=status_to_error(rich))
    error = errors.engine_error(
        code,
        details or f"the call to {method} at {target} failed with {code.name}",
        metadata={"target": target, "method": method},
    )
    return TransportError(code, retryable=False, error=error)


def _pairs(metadata: object) -> list[tuple[str, str | bytes]]:
    """grpc's trailing metadata (a Metadata object, tuple pairs, or None) as a list of pairs."""
    if metadata is None:
        return []
    return [(str(key), value) for key, value in metadata]  # type: ignore[attr-defined]


def _rich_status(
    code: grpc.StatusCode, trailing_metadata: Sequence[tuple[str, str | bytes]]
) -> status_pb2.Status | None:
    """The google.rpc.Status in the trailers, if present and consistent with the call's code."""
    for key, value in trailing_metadata:
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:  # a malformed detail is ignored
            return None
        return status if status.code == code.value[0] else None
    return None
