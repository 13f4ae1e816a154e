"""Is there a gRPC server at an address? Tells "nothing answers" from "something answers, but
not gRPC" (a web server, a database, a typo'd port), which need different fixes.

    probe("127.0.0.1:50051", credentials=None, timeout_s=5.0)   # returns, or raises UsageError

"Nothing answers" waits up to the timeout (a server may be starting); "not gRPC" is reported as
soon as a TCP connection succeeds where the gRPC handshake failed, with the code
NOT_A_GRPC_ENDPOINT first in the message.
"""

from __future__ import annotations

import errno
import re
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

import grpc

from asyncplugin.protocol.server_security import BindError

from .errors import UsageError

__all__ = ["NOT_A_GRPC_ENDPOINT", "check_port_free", "probe", "tcp_accepts"]

NOT_A_GRPC_ENDPOINT: Final = "NOT_A_GRPC_ENDPOINT"
"""The code that starts the message when an address accepts connections but does not speak
gRPC (HTTP/2)."""

_HOST_PORT: Final = re.compile(r"^(?:dns:(?:///)?|ipv4:|ipv6:)?\[?([^\[\]]+?)\]?:(\d{1,5})$")
_TLS_HINT: Final = (
    " (or the TLS handshake failed: check --tls-ca, --tls-server-name and, for mutual TLS, "
    "--tls-cert/--tls-key)"
)


def _host_port(target: str) -> tuple[str, int] | None:
    match = _HOST_PORT.match(target)
    if match is None:
        return None  # unix: sockets and other schemes: no TCP probe
    return match.group(1), int(match.group(2))


def tcp_accepts(target: str, *, timeout_s: float = 1.0) -> bool | None:
    """True when a TCP connection to `target` succeeds, False when it is refused or times out,
    None when `target` is not a host:port address."""
    address = _host_port(target)
    if address is None:
        return None
    try:
        with socket.create_connection(address, timeout=timeout_s):
            return True
    except OSError:
        return False


def probe(
    target: str,
    *,
    credentials: grpc.ChannelCredentials | None,
    timeout_s: float,
    options: Sequence[tuple[str, Any]] = (),
    what: str = "a gRPC server",
    tls_hint: str = _TLS_HINT,
) -> None:
    """Returns once a gRPC channel to `target` is ready.

    Raises:
        UsageError: nothing accepts connections at `target` within `timeout_s` ("cannot reach
            WHAT at TARGET"), or something does but does not complete a gRPC handshake
            ("NOT_A_GRPC_ENDPOINT: ..."). One line either way.
    """
    channel = (
        grpc.secure_channel(target, credentials, options=list(options))
        if credentials is not None
        else grpc.insecure_channel(target, options=list(options))
    )
    ready, failed = threading.Event(), threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state is grpc.ChannelConnectivity.READY:
            ready.set()
        elif state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            failed.set()

    # ONE subscription (no channel_ready_future beside it): with two, gRPC's polling thread may
    # outlive them and touch the closed channel.
    channel.subscribe(watch, try_to_connect=True)
    deadline = time.monotonic() + timeout_s
    hint = tls_hint if credentials is not None else ""
    try:
        while not ready.wait(timeout=max(0.0, min(deadline - time.monotonic(), 0.05))):
            left = deadline - time.monotonic()
            if failed.is_set() or left <= 0:
                failed.clear()
                if tcp_accepts(target, timeout_s=min(1.0, max(left, 0.2))):
                    raise UsageError(
                        f"{NOT_A_GRPC_ENDPOINT}: {target} accepts connections but does not "
                        f"speak gRPC (HTTP/2){hint}; is this the right port?"
                    )
            if left <= 0:
                raise UsageError(f"cannot reach {what} at {target} within {timeout_s:g}s{hint}")
    finally:
        channel.unsubscribe(watch)
        channel.close()


def check_port_free(host: str, port: int, *, option: str = "--port") -> None:
    """Fails with one line when `host:port` cannot be listened on (taken, or not a local
    address), before gRPC tries and logs its own error line. Port 0 is always free.

    Raises:
        BindError: naming the address, the reason, and the option to change (exit status 1,
            as when gRPC itself cannot bind).
    """
    if port == 0:
        return
    bare = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise BindError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    failures: list[OSError] = []
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe_socket:
            # gRPC listens with SO_REUSEADDR too: a port in TIME_WAIT is free, a listener not.
            probe_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe_socket.bind(address)
            except OSError as failure:
                failures.append(failure)
    if not failures or len(failures) < len(infos):
        return  # gRPC serves when it can bind at least one of the addresses
    first = failures[0]
    if first.errno == errno.EADDRINUSE:
        raise BindError(
            f"cannot listen on {host}:{port}: the port is already in use (another server?); "
            f"choose another {option}, or {option} 0 for a free one"
        )
    raise BindError(f"cannot listen on {host}:{port}: {first.strerror or first}")
