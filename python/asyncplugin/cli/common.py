"""Options and helpers shared by the engine-side subcommands (invoke, tasks, demo)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from asyncplugin.engine import GrpcTransport, PollingPolicy, TaskStore
from asyncplugin.engine.credentials import BearerTokens, ChannelSecurity
from asyncplugin.engine.store import DEFAULT_STORE, is_postgres_url
from asyncplugin.engine.store import open_store as _open_store
from asyncplugin.protocol.methods import GENERIC_METHOD, split_method
from asyncplugin.protocol.security import TOKEN_ENV, env_token, is_loopback_target, read_token_file

from .endpoint import probe
from .errors import UsageError

STORE_ENV = "ASYNCPLUGIN_STORE"
"""The environment variable naming the task store (instead of --store)."""


def add_command(subparsers: Any, name: str, *, summary: str, doc: str | None) -> Any:
    """Adds subcommand `name`; its --help prints `doc` (the module's docstring) as written."""
    return subparsers.add_parser(
        name,
        help=summary,
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_store_option(parser: argparse.ArgumentParser, *, help_text: str | None = None) -> None:
    """--store FILE|URL (default $ASYNCPLUGIN_STORE or ./asyncplugin.sqlite3; read it with
    `store_spec`, which tells whether it was given)."""
    parser.add_argument(
        "--store",
        default=None,
        metavar="FILE|URL",
        help=help_text
        or "task store: an SQLite file, or a postgresql://user@host/db URL shared by several "
        f"engine workers (default: ${STORE_ENV} or ./{DEFAULT_STORE})",
    )


def store_spec(args: argparse.Namespace) -> str:
    """The store the command line names: --store, else $ASYNCPLUGIN_STORE, else the default."""
    given: str | None = args.store
    return given or os.environ.get(STORE_ENV) or DEFAULT_STORE


def open_store(spec: str, *, must_exist: bool) -> TaskStore:
    """The store `spec` names (see asyncplugin.engine.store.open_store), not yet opened. With
    must_exist (the readers: `tasks`) a missing SQLite file is a UsageError and the store opens
    read-only: nothing is created, migrated or written, and a store without a task store's
    schema is refused. A malformed spec is a UsageError too."""
    try:
        return _open_store(spec, read_only=must_exist)
    except ValueError as err:
        hint = " (run 'asyncplugin invoke' first, or --store)" if must_exist else ""
        raise UsageError(f"{err}{hint}") from err


def store_name(spec: str) -> str:
    """How to name a store in output: the file, or host:port/db of a URL (never a password)."""
    if is_postgres_url(spec):
        from asyncplugin.engine.store.postgres import describe_url

        return f"PostgreSQL {describe_url(spec)}"
    return spec


def store_option(spec: str) -> str:
    """The --store option naming `spec` on another command line (a PostgreSQL URL, which may
    hold a password, is not repeated)."""
    return "--store URL" if is_postgres_url(spec) else f"--store {spec}"


def add_policy_options(parser: argparse.ArgumentParser) -> None:
    """Polling policy overrides; unset ones keep the engine's defaults."""
    group = parser.add_argument_group("polling policy")
    group.add_argument("--initial-interval", type=float, metavar="S", help="first interval (s)")
    group.add_argument("--multiplier", type=float, metavar="X", help="growth per check")
    group.add_argument("--max-interval", type=float, metavar="S", help="longest interval (s)")
    group.add_argument("--min-interval", type=float, metavar="S", help="shortest interval (s)")
    group.add_argument("--deadline", type=float, metavar="S", help="overall deadline (s)")
    group.add_argument("--max-checks", type=int, metavar="N", help="most status checks")
    group.add_argument("--check-timeout", type=float, metavar="S", help="per-check RPC timeout")


def policy_from_args(args: argparse.Namespace) -> PollingPolicy:
    """A PollingPolicy with the options given on the command line."""
    overrides: dict[str, Any] = {
        name: value
        for name, value in (
            ("initial_interval_s", args.initial_interval),
            ("multiplier", args.multiplier),
            ("max_interval_s", args.max_interval),
            ("min_interval_s", args.min_interval),
            ("deadline_s", args.deadline),
            ("max_checks", args.max_checks),
            ("check_timeout_s", args.check_timeout),
        )
        if value is not None
    }
    try:
        return PollingPolicy(**overrides)
    except ValueError as err:
        raise UsageError(str(err)) from err


def read_data(text: str) -> str:
    """The text of --data: the value itself, the file named by @FILE, or standard input for @-.

    Raises:
        UsageError: the file cannot be read (named, with the reason).
    """
    if not text.startswith("@"):
        return text
    if text == "@-":
        return sys.stdin.read()
    try:
        return Path(text[1:]).read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"--data {text}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise UsageError(f"--data {text}: not UTF-8 text ({err.reason})") from err


def parse_json_data(text: str) -> Any:
    """Parses --data (a value, @FILE or @- for stdin); malformed JSON is a one-line UsageError
    naming the position."""
    source = f" ({text})" if text.startswith("@") else ""
    body = read_data(text)
    try:
        return json.loads(body)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"--data{source} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from err


def add_channel_options(parser: argparse.ArgumentParser) -> None:
    """TLS, token and connection options for calling a plugin.

    There is no --token VALUE: a command line is visible to every user of the machine (`ps`);
    a token comes from a file (mode 0600) or from $ASYNCPLUGIN_TOKEN instead.
    """
    group = parser.add_argument_group("connection and security")
    group.add_argument("--tls-ca", metavar="FILE", help="verify the plugin's certificate with it")
    group.add_argument("--tls-cert", metavar="FILE", help="client certificate (mutual TLS)")
    group.add_argument("--tls-key", metavar="FILE", help="client private key (mutual TLS)")
    group.add_argument(
        "--tls-server-name", metavar="NAME", help="name to verify the certificate against"
    )
    group.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"bearer token sent to the plugin (one line); default ${TOKEN_ENV} if set",
    )
    group.add_argument("--token", help=argparse.SUPPRESS)
    group.add_argument(
        "--insecure",
        action="store_true",
        help="allow plaintext to a non-loopback target",
    )
    group.add_argument(
        "--connect-timeout", type=float, default=5.0, metavar="S", help="(default %(default)s)"
    )


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach one plugin, from the command line: TLS settings and the bearer token."""

    target: str
    security: ChannelSecurity | None
    token: str | None = field(repr=False)
    allow_insecure: bool

    def transport(self) -> GrpcTransport:
        """The engine's transport to this plugin: its TLS settings, and its token given by a
        metadata provider (so the token is never stored with the task)."""
        return GrpcTransport(
            security={self.target: self.security} if self.security is not None else None,
            metadata_provider=BearerTokens({self.target: self.token}) if self.token else None,
            allow_insecure=self.allow_insecure,
        )

    def channel_options(self) -> list[tuple[str, str]]:
        """Channel options for blocking channels (the server name override)."""
        return self.security.channel_options() if self.security is not None else []

    def credentials(self) -> grpc.ChannelCredentials | None:
        """Credentials for blocking channels (reachability, reflection), the token included.

        On plaintext loopback the token rides on local credentials (gRPC sends call
        credentials only over a protected or local connection); on plaintext to another host
        (--insecure) it is not sent with reflection.
        """
        if self.security is not None:
            base = self.security.channel_credentials()
        elif self.token and is_loopback_target(self.target):
            base = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        else:
            return None
        if not self.token:
            return base
        return grpc.composite_channel_credentials(
            base, grpc.access_token_call_credentials(self.token)
        )


def connection(args: argparse.Namespace, *, target: str | None = None) -> Connection:
    """The Connection the command line asks for (to `target`, default the TARGET argument).

    Raises:
        UsageError: a file cannot be read, options do not go together, --token was given, or
            plaintext to a non-loopback target without --insecure.
    """
    if args.token is not None:
        raise UsageError(
            "--token is not accepted: a command line is visible to other users (ps); "
            f"put the token in a file (chmod 600) and pass --token-file, or set ${TOKEN_ENV}"
        )
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    tls_asked = any(
        value is not None
        for value in (args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    )
    try:
        security = (
            ChannelSecurity.from_files(
                ca_file=args.tls_ca,
                client_cert=args.tls_cert,
                client_key=args.tls_key,
                server_name=args.tls_server_name,
            )
            if tls_asked
            else None
        )
        token = _token(args.token_file)
    except ValueError as err:
        raise UsageError(str(err)) from err
    target = target if target is not None else args.target
    if security is None and not args.insecure and not is_loopback_target(target):
        raise UsageError(
            f"refusing to call {target} without TLS: it is not a loopback address; "
            "give --tls-ca (and --tls-cert/--tls-key for mutual TLS), or --insecure"
        )
    return Connection(target, security, token, args.insecure)


def _token(token_file: str | None) -> str | None:
    if token_file is not None:
        return read_token_file(Path(token_file))[0]
    return env_token()


def method_option(method: str) -> str:
    """--method as a full path "/package.Service/Method"; the leading "/" may be left out.

    Raises:
        UsageError: anything else (a bare method name is resolved by the caller, through
            reflection, before this).
    """
    path = method if method.startswith("/") else "/" + method
    try:
        split_method(path, what="--method")
    except ValueError:
        raise UsageError(
            f"--method must be a full method path like {GENERIC_METHOD!r}, got {method!r} "
            "(list a server's methods with: asyncplugin describe TARGET)"
        ) from None
    return path


def check_reachable(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    timeout_s: float,
    *,
    options: Sequence[tuple[str, Any]] = (),
) -> None:
    """Fails with a one-line UsageError when nothing answers at `target` within the timeout
    (with TLS, also when the handshake fails: an untrusted or misnamed certificate), or when
    what answers does not speak gRPC (NOT_A_GRPC_ENDPOINT)."""
    probe(target, credentials=credentials, timeout_s=timeout_s, options=options)
