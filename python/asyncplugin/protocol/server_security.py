"""How a server (a plugin server or the engine daemon) proves who it is and checks who calls
it over TLS, and where it may listen in plaintext.

- `ServerSecurity`: the server's certificate chain and key, and optionally the CA that client
  certificates must chain to (mutual TLS). It mirrors the engine's `ChannelSecurity`, and
  `ServerSecurity.from_files` reads PEM files as `ChannelSecurity.from_files` does.
- `check_bind`: the plaintext-bind rule. A server without TLS may listen only on a loopback
  address unless plaintext is allowed explicitly: a plaintext plugin on a network would expose
  its payloads and any token to whoever can see the traffic.

Bearer tokens are checked by `server_auth.BearerTokenInterceptor`. Reprs never show keys; errors
name files, never their contents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc

from .errors import AsyncPluginError
from .security import is_loopback_host

__all__ = ["BindError", "InsecureBindError", "ServerSecurity", "check_bind", "format_address"]


class BindError(AsyncPluginError):
    """The server could not listen on the address asked for (taken, or not a local address)."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


class InsecureBindError(BindError):
    """A server without TLS was asked to listen on an address other machines can reach."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, host: str) -> None:
        super().__init__(
            f"refusing to serve plaintext on {host!r}: it is not a loopback address; give a "
            "TLS certificate and key (ServerSecurity, --tls-cert/--tls-key), or allow_insecure="
            "True (--insecure) to serve without TLS on a trusted network"
        )
        self.host = host


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSecurity:
    """TLS settings of a server (a plugin server or the engine daemon).

    Attributes:
        cert_chain: PEM certificate chain the server presents.
        private_key: PEM private key of `cert_chain` (never shown in repr).
        client_ca: PEM CA certificate(s) that client certificates must chain to (mutual TLS);
            a client without such a certificate is refused during the handshake. (There is no
            "optional" mode: grpc's require_client_auth=False requests a certificate but does
            not verify it, which would only look secure.)
    """

    cert_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.cert_chain or not self.private_key:
            raise ValueError(
                "TLS needs both a certificate chain and its private key "
                "(--tls-cert and --tls-key go together)"
            )

    @classmethod
    def from_files(
        cls,
        *,
        cert_file: str | Path | None,
        key_file: str | Path | None,
        client_ca_file: str | Path | None = None,
    ) -> ServerSecurity:
        """Reads PEM files; raises ValueError naming a file that cannot be read, or a missing
        part (a key without a certificate, a client CA without either)."""
        if client_ca_file is not None and cert_file is None and key_file is None:
            raise ValueError(
                "--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key "
                "(client_ca needs cert_chain and private_key)"
            )
        if cert_file is None or key_file is None:
            raise ValueError(
                "TLS needs both a certificate chain and its private key "
                "(--tls-cert and --tls-key go together)"
            )
        return cls(
            cert_chain=_read(cert_file, "certificate chain"),
            private_key=_read(key_file, "private key"),
            client_ca=_read(client_ca_file, "client CA") if client_ca_file is not None else None,
        )

    @property
    def mutual(self) -> bool:
        """True when clients must present a certificate (mutual TLS)."""
        return self.client_ca is not None

    def server_credentials(self) -> grpc.ServerCredentials:
        """The grpc server credentials for these settings."""
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.mutual,
        )

    def describe(self) -> str:
        """A short account for logs: "TLS" or "TLS, client certificates required"."""
        return "TLS, client certificates required" if self.mutual else "TLS"


def check_bind(host: str, *, security: ServerSecurity | None, allow_insecure: bool) -> bool:
    """Applies the plaintext-bind rule before anything is bound.

    Returns:
        True when the server will serve plaintext to other machines (allowed by
        `allow_insecure`): a caller may warn about it.

    Raises:
        InsecureBindError: plaintext on a non-loopback host without `allow_insecure`.
    """
    if security is not None or is_loopback_host(host):
        return False
    if not allow_insecure:
        raise InsecureBindError(host)
    return True


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read the {what} {path}: {err.strerror}") from err


def format_address(host: str, port: int) -> str:
    """ "host:port", with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
