"""`asyncplugin engine serve`: the engine daemon; `asyncplugin engine keygen`: completion keys.

    asyncplugin engine serve [--store FILE|URL] [--host H] [--port P] [--completion-keys F]

The daemon serves EngineService and google.longrunning.Operations over the tasks of one store
(SQLite by default, ./asyncplugin.sqlite3), resumes every unfinished task at start, and stops
gracefully on SIGTERM or SIGINT: health turns NOT_SERVING, open watches end (clients resume),
calls in flight get --grace-s, then the engine stops and the store is released; exit 0. The
first line on stdout is "engine serving on HOST:PORT (store ...)", so scripts can read the port
chosen by --port 0. While it runs it holds an SQLite store: an in-process `asyncplugin invoke` on
the same store is refused with the daemon's address and the --engine flag to use. On a
postgresql:// store any number of daemons run side by side, each leasing the tasks it runs
(docs/scale-out.md); every one of them serves every task.

Security (the plugin server's mechanisms): --tls-cert/--tls-key serve TLS, --tls-client-ca
requires client certificates (mutual TLS), --token-file (or $ASYNCPLUGIN_TOKEN) requires a
bearer token on every call but health checks and the token-authorized CompleteTask/UpdateTask.
Plaintext is served only on a loopback --host unless --insecure. Calls to plugins use TLS with
--plugin-ca (and --plugin-cert/--plugin-key for mutual TLS) and send --plugin-token-file.

Push completion: with --completion-keys FILE (made by `asyncplugin engine keygen --key-file
FILE`), every call to a plugin carries the daemon's address (--advertise-address, default the
listening address) and a completion token for the task.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path
from typing import Any

from asyncplugin.engine import (
    BearerTokens,
    ChannelSecurity,
    Engine,
    GrpcTransport,
    open_store,
)
from asyncplugin.engine.store import DEFAULT_STORE
from asyncplugin.protocol.security import read_token_file
from asyncplugin.service import CompletionTokens, EngineServer, Limits, new_key_line, read_key_file
from asyncplugin.service.tokens import DEFAULT_TOKEN_TTL_S

from .common import add_command, add_policy_options, policy_from_args, store_name
from .errors import UsageError
from .serve import security_options

DEFAULT_ENGINE_PORT = 50050
"""The daemon's default port (plugins default to 50051)."""


def register(subparsers: Any) -> None:
    """Adds the `engine` subcommand with `serve` and `keygen`."""
    parser = add_command(
        subparsers, "engine", summary="run the engine as a daemon (a gRPC service)", doc=__doc__
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = add_command(
        actions, "serve", summary="serve the engine over gRPC until SIGTERM", doc=__doc__
    )
    serve.add_argument(
        "--store",
        default=os.environ.get("ASYNCPLUGIN_STORE", DEFAULT_STORE),
        metavar="FILE|URL",
        help="task store: an SQLite file, sqlite:///FILE, or a postgresql://user@host/db URL "
        "that several daemons share (default: $ASYNCPLUGIN_STORE or ./%(default)s)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on [%(default)s]")
    serve.add_argument(
        "--port",
        type=int,
        default=DEFAULT_ENGINE_PORT,
        help="port; 0 picks a free one [%(default)s]",
    )
    serve.add_argument(
        "--grace-s",
        type=float,
        default=10.0,
        metavar="S",
        help="how long calls in flight may finish on shutdown [%(default)s]",
    )
    serve.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=64,
        metavar="N",
        help="most calls to plugins in flight at once [%(default)s]",
    )
    serve.add_argument(
        "--max-payload-bytes",
        type=int,
        default=Limits().max_payload_bytes,
        metavar="N",
        help="largest payload accepted [%(default)s]",
    )
    security = serve.add_argument_group("security (clients of the daemon)")
    security.add_argument("--tls-cert", type=Path, metavar="FILE", help="PEM certificate chain")
    security.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM private key")
    security.add_argument(
        "--tls-client-ca", type=Path, metavar="FILE", help="require client certificates (mTLS)"
    )
    security.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="require a bearer token (one per line; several allow rotation); default "
        "$ASYNCPLUGIN_TOKEN if set",
    )
    security.add_argument(
        "--insecure", action="store_true", help="allow plaintext on a non-loopback --host"
    )
    plugins = serve.add_argument_group("calls to plugins")
    plugins.add_argument("--plugin-ca", metavar="FILE", help="TLS to plugins, verified with it")
    plugins.add_argument("--plugin-cert", metavar="FILE", help="client certificate (mutual TLS)")
    plugins.add_argument("--plugin-key", metavar="FILE", help="client key (mutual TLS)")
    plugins.add_argument(
        "--plugin-token-file", type=Path, metavar="FILE", help="bearer token sent to plugins"
    )
    plugins.add_argument(
        "--insecure-plugins",
        action="store_true",
        help="allow plaintext calls to non-loopback plugins",
    )
    push = serve.add_argument_group("push completion")
    push.add_argument(
        "--completion-keys",
        type=Path,
        metavar="FILE",
        help="signing keys for completion tokens (enables push completion)",
    )
    push.add_argument(
        "--advertise-address",
        metavar="HOST:PORT",
        help="where plugins reach the daemon (default: the listening address)",
    )
    push.add_argument(
        "--completion-token-ttl",
        type=float,
        default=DEFAULT_TOKEN_TTL_S,
        metavar="S",
        help="token validity after the task's deadline [%(default)s]",
    )
    add_policy_options(serve)
    serve.add_argument("--debug", action="store_true", help="debug logging")
    serve.set_defaults(handler=run_serve)
    keygen = actions.add_parser(
        "keygen",
        help="create or rotate a completion key file",
        description="Writes a new completion signing key FIRST in the key file (created with "
        "mode 0600), keeping the keys already there so tokens they signed stay valid; remove "
        "old keys once their tokens have expired.",
    )
    keygen.add_argument("--key-file", type=Path, required=True, metavar="FILE")
    keygen.add_argument("--key-id", help="the new key's id (default: random)")
    keygen.set_defaults(handler=run_keygen)


def run_keygen(args: argparse.Namespace) -> int:
    """Handler for `engine keygen`."""
    path: Path = args.key_file
    try:
        line = new_key_line(args.key_id)
    except ValueError as err:
        raise UsageError(str(err)) from err
    old = ""
    if path.exists():
        try:
            read_key_file(path)
            old = path.read_text(encoding="ascii")
        except ValueError as err:
            raise UsageError(str(err)) from err
        if line.split()[0] in {key.key_id for key in read_key_file(path)}:
            raise UsageError(f"key id {line.split()[0]!r} is already in {path}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(line + "\n" + old)
    print(f"added key {line.split()[0]} to {path} (it signs from now on)")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Handler for `engine serve`: returns 0 after a graceful stop."""
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be within 0..65535, got {args.port}")
    if args.max_payload_bytes <= 0:
        raise UsageError(f"--max-payload-bytes must be positive, got {args.max_payload_bytes}")
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        store = open_store(args.store)
    except ValueError as err:
        raise UsageError(f"--store: {err}") from err
    completion = _completion(args)
    secure = security_options(args)
    engine = Engine(
        store=store,
        policy=policy_from_args(args),
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        transport=_transport(args),
        shutdown_grace_s=args.grace_s,
        completion=completion,
    )
    try:
        server = EngineServer(
            engine,
            host=args.host,
            port=args.port,
            completion=completion,
            advertise_address=args.advertise_address,
            limits=Limits(max_payload_bytes=args.max_payload_bytes),
            max_message_bytes=args.max_payload_bytes + 1024 * 1024,
            security=secure.security,
            auth_tokens=secure.auth_tokens,
            allow_insecure=secure.allow_insecure,
        )
    except ValueError as err:
        raise UsageError(str(err)) from err
    asyncio.run(_serve(server, store_name(args.store), args.grace_s))
    return 0


async def _serve(server: EngineServer, store: str, grace_s: float) -> None:
    await server.start()
    print(f"engine serving on {server.address} (store {store}; {server.security})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await server.stop(grace_s)
    print("engine stopped", flush=True)


def _completion(args: argparse.Namespace) -> CompletionTokens | None:
    if args.completion_keys is None:
        if args.advertise_address is not None:
            raise UsageError("--advertise-address needs --completion-keys (push completion)")
        return None
    try:
        keys = read_key_file(args.completion_keys)
        return CompletionTokens(keys, ttl_s=args.completion_token_ttl)
    except ValueError as err:
        raise UsageError(str(err)) from err


def _transport(args: argparse.Namespace) -> GrpcTransport:
    if (args.plugin_cert is None) != (args.plugin_key is None):
        raise UsageError("--plugin-cert and --plugin-key go together")
    try:
        security = (
            ChannelSecurity.from_files(
                ca_file=args.plugin_ca, client_cert=args.plugin_cert, client_key=args.plugin_key
            )
            if args.plugin_ca or args.plugin_cert
            else None
        )
        token = (
            read_token_file(args.plugin_token_file)[0]
            if args.plugin_token_file is not None
            else None
        )
    except ValueError as err:
        raise UsageError(str(err)) from err
    return GrpcTransport(
        security=security,
        metadata_provider=BearerTokens(default=token) if token else None,
        allow_insecure=args.insecure_plugins,
    )
