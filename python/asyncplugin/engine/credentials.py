"""How the engine proves who it is to plugins, and checks who they are: TLS and bearer tokens.

- `ChannelSecurity`: TLS for the channel to one plugin target: the CA that signs the plugin's
  certificate, an optional client certificate and key (mutual TLS), an optional server name to
  verify instead of the target's host.
- `BearerTokens`: a `metadata_provider` for `GrpcTransport` that adds
  `authorization: Bearer <token>` per target. Tokens given this way live only in the engine's
  memory and are never written to the task store, so a restarted engine needs them again (and
  fails the task UNAUTHENTICATED if it lacks them).
The transport allows plaintext only to loopback targets
(`asyncplugin.protocol.security.is_loopback_target`) unless told otherwise
(`GrpcTransport(allow_insecure=True)`), checked before any connection is opened.

Reprs never show keys or tokens; errors name files and targets, never their secret contents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import grpc

from asyncplugin.protocol.security import validate_token

__all__ = [
    "BearerTokens",
    "ChannelSecurity",
]

_SERVER_NAME_OPTION: Final = "grpc.ssl_target_name_override"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSecurity:
    """TLS settings for the channel to a plugin.

    Attributes:
        root_certificates: PEM CA certificate(s) the plugin's certificate must chain to; None
            uses the system's roots.
        client_cert_chain: PEM client certificate chain, for mutual TLS (with `client_key`).
        client_key: PEM private key of `client_cert_chain` (never shown in repr).
        server_name: the name to verify the plugin's certificate against instead of the
            target's host (for example when calling by IP a certificate issued to a name).
    """

    root_certificates: bytes | None = field(default=None, repr=False)
    client_cert_chain: bytes | None = field(default=None, repr=False)
    client_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.client_cert_chain is None) != (self.client_key is None):
            raise ValueError("mutual TLS needs both client_cert_chain and client_key")
        if self.server_name is not None and not self.server_name.strip():
            raise ValueError("server_name must not be empty")

    @classmethod
    def from_files(
        cls,
        *,
        ca_file: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        server_name: str | None = None,
    ) -> ChannelSecurity:
        """Reads PEM files; raises ValueError naming a file that cannot be read."""
        return cls(
            root_certificates=_read(ca_file, "CA file"),
            client_cert_chain=_read(client_cert, "client certificate"),
            client_key=_read(client_key, "client key"),
            server_name=server_name,
        )

    @property
    def mutual(self) -> bool:
        """True when a client certificate is presented (mutual TLS)."""
        return self.client_cert_chain is not None

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """The grpc channel credentials for these settings."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.client_key,
            certificate_chain=self.client_cert_chain,
        )

    def channel_options(self) -> list[tuple[str, str]]:
        """Channel options these settings need (the server name override, if any)."""
        return [(_SERVER_NAME_OPTION, self.server_name)] if self.server_name else []

    def describe(self) -> str:
        """A one-line account for logs, e.g. "TLS (mutual, server name plugin.internal)"."""
        details = ["custom CA" if self.root_certificates is not None else "system roots"]
        if self.mutual:
            details.append("mutual")
        if self.server_name:
            details.append(f"server name {self.server_name}")
        return f"TLS ({', '.join(details)})"


class BearerTokens:
    """A `GrpcTransport` metadata provider: `authorization: Bearer <token>` per target.

    Example:
        tokens = BearerTokens({"plugins.internal:443": token}, default=None)
        transport = GrpcTransport(security=..., metadata_provider=tokens)

    Args:
        tokens: target ("host:port", exactly as given to `Engine.submit`) -> token.
        default: the token for targets not in `tokens`; None sends no token to them.
    """

    __slots__ = ("_default", "_tokens")

    def __init__(self, tokens: Mapping[str, str] | None = None, *, default: str | None = None):
        self._tokens = {
            target: validate_token(token, source=f"the bearer token for {target}")
            for target, token in (tokens or {}).items()
        }
        self._default = (
            validate_token(default, source="the default bearer token")
            if default is not None
            else None
        )

    def __call__(self, target: str) -> tuple[tuple[str, str], ...]:
        """The metadata for a call to `target` (empty if it has no token)."""
        token = self._tokens.get(target, self._default)
        if token is None:
            return ()
        return (("authorization", f"Bearer {token}"),)

    def __repr__(self) -> str:
        default = ", default=<redacted>" if self._default is not None else ""
        return f"BearerTokens(targets={sorted(self._tokens)!r}{default})"


def _read(path: str | Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"cannot read the {what} {path}: {err.strerror}") from err
