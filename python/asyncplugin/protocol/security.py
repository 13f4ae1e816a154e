"""Security rules both sides share: what a bearer token may hold, and which addresses are local.

- `validate_token` / `read_token_file`: a token travels as gRPC metadata
  (`authorization: Bearer <token>`), so it must be non-empty printable ASCII without spaces;
  messages name where the token came from, never the token.
- `is_loopback_host` (a host to listen on) and `is_loopback_target` (a gRPC target to call):
  plaintext is allowed only where these say True, unless a caller allows it explicitly.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Final

__all__ = [
    "TOKEN_ENV",
    "env_token",
    "is_loopback_host",
    "is_loopback_target",
    "read_token_file",
    "validate_token",
]

TOKEN_ENV: Final = "ASYNCPLUGIN_TOKEN"
"""The environment variable a bearer token may be given in (instead of a token file)."""

_TARGET_SCHEMES: Final = ("dns:///", "dns:", "ipv4:", "ipv6:")
_UNIX_SCHEMES: Final = ("unix:", "unix-abstract:")


def validate_token(token: str, *, source: str = "token") -> str:
    """Returns `token` if it can travel as gRPC metadata; raises ValueError naming `source`.

    A token must be non-empty printable ASCII without spaces (the `Bearer` scheme's token68
    characters and more); the message never repeats the token.
    """
    if not token:
        raise ValueError(f"{source} is empty")
    if not all("!" <= char <= "~" for char in token):
        raise ValueError(f"{source} must be printable ASCII without spaces or control characters")
    return token


def read_token_file(path: Path, *, many: bool = False) -> tuple[str, ...]:
    """Reads tokens from a file: one per line; blank lines and lines starting with '#' skipped.

    With `many=False` the file must hold exactly one token. Several tokens let a server accept
    an old and a new token while clients rotate.

    Raises:
        ValueError: the file cannot be read, holds no token, or too many (message names the
            file, never a token).
    """
    try:
        text = path.read_text(encoding="ascii")
    except OSError as err:
        raise ValueError(f"cannot read token file {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"token file {path} must be ASCII text") from err
    tokens = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if not tokens:
        raise ValueError(f"token file {path} holds no token")
    if len(tokens) > 1 and not many:
        raise ValueError(f"token file {path} must hold exactly one token, found {len(tokens)}")
    for number, token in enumerate(tokens, start=1):
        validate_token(token, source=f"token {number} in {path}")
    return tokens


def env_token() -> str | None:
    """The token in `$ASYNCPLUGIN_TOKEN` (surrounding blanks dropped), or None if it is unset or
    blank; raises ValueError if it cannot travel as metadata."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    return validate_token(token, source=f"${TOKEN_ENV}") if token else None


def is_loopback_host(host: str) -> bool:
    """True when `host` only accepts connections from this machine (127.0.0.0/8, ::1,
    "localhost"); False for wildcard addresses ("0.0.0.0", "[::]", "") and every other name."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_target(target: str) -> bool:
    """True when a gRPC target can only reach this machine: a loopback address or "localhost"
    (with an optional "dns:", "ipv4:" or "ipv6:" scheme) or a Unix domain socket."""
    text = target.strip()
    if text.startswith(_UNIX_SCHEMES):
        return True
    for scheme in _TARGET_SCHEMES:
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    addresses = [part.strip() for part in text.split(",")] if text else []
    return bool(addresses) and all(is_loopback_host(_host_of(part)) for part in addresses)


def _host_of(address: str) -> str:
    """The host of "host:port", "[v6]:port", "[v6]" or a bare host (IPv6 without brackets)."""
    if address.startswith("["):
        return address[1 : address.find("]")] if "]" in address else address[1:]
    if address.count(":") == 1:
        return address.rsplit(":", 1)[0]
    return address
