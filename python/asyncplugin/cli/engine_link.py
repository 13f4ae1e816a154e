"""How the command line reaches a running engine daemon: `--engine HOST:PORT` (or
$ASYNCPLUGIN_ENGINE), with its own TLS and bearer token options, named like the daemon's
options for plugins (`--engine-ca` here, `--plugin-ca` there).

The plugin-side options of `invoke` (`--tls-ca`, `--token-file`, ...) stay for the plugin: the
daemon calls plugins with its own credentials, the command line only asks the plugin for its
payload types (reflection).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from asyncplugin.engine.credentials import ChannelSecurity
from asyncplugin.protocol.security import is_loopback_target, read_token_file, validate_token
from asyncplugin.service import EngineClient

from .endpoint import probe
from .errors import UsageError

__all__ = [
    "ENGINE_ENV",
    "ENGINE_TOKEN_ENV",
    "EngineLink",
    "add_engine_options",
    "engine_given",
    "engine_link",
    "refuse_engine_options",
]

ENGINE_ENV: Final = "ASYNCPLUGIN_ENGINE"
"""The environment variable naming the engine daemon's address (instead of --engine)."""

ENGINE_TOKEN_ENV: Final = "ASYNCPLUGIN_ENGINE_TOKEN"
"""The environment variable holding the daemon's bearer token (instead of --engine-token-file)."""


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """--engine and the options to reach it securely."""
    group = parser.add_argument_group("engine daemon (asyncplugin engine serve)")
    group.add_argument(
        "--engine",
        metavar="HOST:PORT",
        default=None,
        help=f"the engine daemon to use (default: ${ENGINE_ENV} if set)",
    )
    group.add_argument("--engine-ca", metavar="FILE", help="verify the daemon's certificate")
    group.add_argument("--engine-cert", metavar="FILE", help="client certificate (mutual TLS)")
    group.add_argument("--engine-key", metavar="FILE", help="client private key (mutual TLS)")
    group.add_argument(
        "--engine-server-name", metavar="NAME", help="name to verify the certificate against"
    )
    group.add_argument(
        "--engine-token-file",
        metavar="FILE",
        help=f"bearer token for the daemon (one line); default ${ENGINE_TOKEN_ENV} if set",
    )
    group.add_argument(
        "--engine-insecure", action="store_true", help="allow plaintext to a non-loopback daemon"
    )


def engine_given(args: argparse.Namespace) -> str | None:
    """The daemon address from --engine, else $ASYNCPLUGIN_ENGINE, else None."""
    given: str | None = args.engine
    if given is not None:
        if not given.strip():
            raise UsageError("--engine is empty: give the daemon's HOST:PORT")
        return given.strip()
    from_env = os.environ.get(ENGINE_ENV, "").strip()
    return from_env or None


@dataclass(frozen=True, slots=True)
class EngineLink:
    """How to reach one engine daemon: its address, TLS settings and bearer token."""

    address: str
    security: ChannelSecurity | None
    token: str | None = field(repr=False)
    allow_insecure: bool

    def client(self) -> EngineClient:
        """An asyncio client (create it inside the running loop)."""
        return EngineClient(
            self.address,
            security=self.security,
            token=self.token,
            allow_insecure=self.allow_insecure,
        )

    def probe(self, timeout_s: float) -> None:
        """Fails with one line when no engine answers at the address (or it is not gRPC)."""
        probe(
            self.address,
            credentials=self.security.channel_credentials() if self.security else None,
            options=self.security.channel_options() if self.security else (),
            timeout_s=timeout_s,
            what="an engine daemon",
            tls_hint=" (or the TLS handshake failed: check --engine-ca, --engine-server-name "
            "and, for mutual TLS, --engine-cert/--engine-key)",
        )

    def command(self) -> str:
        """The option that names this daemon on another command line."""
        return f"--engine {self.address}"


def engine_link(args: argparse.Namespace) -> EngineLink | None:
    """The daemon the command line names (None when neither --engine nor $ASYNCPLUGIN_ENGINE).

    Raises:
        UsageError: unreadable files, options that do not go together, or plaintext to a
            non-loopback daemon without --engine-insecure.
    """
    address = engine_given(args)
    if address is None:
        refuse_engine_options(args, because=f"needs --engine HOST:PORT (or ${ENGINE_ENV})")
        return None
    if (args.engine_cert is None) != (args.engine_key is None):
        raise UsageError("--engine-cert and --engine-key go together")
    tls_asked = any(
        value is not None
        for value in (args.engine_ca, args.engine_cert, args.engine_key, args.engine_server_name)
    )
    try:
        security = (
            ChannelSecurity.from_files(
                ca_file=args.engine_ca,
                client_cert=args.engine_cert,
                client_key=args.engine_key,
                server_name=args.engine_server_name,
            )
            if tls_asked
            else None
        )
        token = _token(args.engine_token_file)
    except ValueError as err:
        raise UsageError(str(err)) from err
    if security is None and not args.engine_insecure and not is_loopback_target(address):
        raise UsageError(
            f"refusing to call the engine at {address} without TLS: it is not a loopback "
            "address; give --engine-ca (and --engine-cert/--engine-key for mutual TLS), or "
            "--engine-insecure"
        )
    return EngineLink(address, security, token, args.engine_insecure)


def refuse_engine_options(args: argparse.Namespace, *, because: str) -> None:
    """Raises UsageError naming an --engine-* option given where no daemon is used."""
    for option in (
        "engine_ca",
        "engine_cert",
        "engine_key",
        "engine_server_name",
        "engine_token_file",
    ):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option.replace('_', '-')} {because}")
    if args.engine_insecure:
        raise UsageError(f"--engine-insecure {because}")


def _token(token_file: str | None) -> str | None:
    if token_file is not None:
        return read_token_file(Path(token_file))[0]
    from_env = os.environ.get(ENGINE_TOKEN_ENV, "").strip()
    return validate_token(from_env, source=f"${ENGINE_TOKEN_ENV}") if from_env else None
