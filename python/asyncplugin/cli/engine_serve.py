"""`asyncplugin engine serve`: the engine daemon; `asyncplugin engine keygen`: completion keys.

    asyncplugin engine serve [--store FILE|URL] [--host H] [--port P] [--completion-keys F]
                             [--http-port P] [--metrics-port P] [--log-format json]

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

Web console: --http-port serves it (tasks live, one task's check timeline, plugins, cancel) in
the same process and on the same event loop, at --http-host (loopback by default; any other
address needs --tls-cert/--tls-key, which it serves HTTPS with, and --token-file, whose tokens
its login form takes). The line "console on URL" follows the first line.

Observability (as `asyncplugin serve`): --metrics-port serves Prometheus metrics (GET /metrics
only, on the daemon's own event loop; the line "metrics on URL" says where), --otlp-endpoint
sends every task's spans to an OpenTelemetry collector, and --log-format json writes one JSON
object per log line with the task id, trace id and span id. A port already in use fails at
start with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from asyncplugin.engine import (
    BearerTokens,
    ChannelSecurity,
    Engine,
    EngineTelemetry,
    GrpcTransport,
    open_store,
)
from asyncplugin.engine.store import DEFAULT_STORE
from asyncplugin.observability import configure_logging, start_metrics_server
from asyncplugin.protocol.security import read_token_file
from asyncplugin.protocol.server_security import format_address
from asyncplugin.service import CompletionTokens, EngineServer, Limits, new_key_line, read_key_file
from asyncplugin.service.tokens import DEFAULT_TOKEN_TTL_S

from .common import Connection, add_command, add_policy_options, policy_from_args, store_name
from .endpoint import check_port_free
from .errors import UsageError
from .event_loop import add_loop_argument, check_loop, run_on_loop
from .server_options import (
    SecurityOptions,
    add_observability_arguments,
    add_security_arguments,
    check_observability_arguments,
    metrics_registry,
    security_options,
    tracer_provider,
)

if TYPE_CHECKING:
    # The console's packages (aiohttp, Jinja2) are the [console] extra: imported when used.
    from asyncplugin.service.console import ConsoleSecurity, ConsoleServer, PluginProbes

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
    add_security_arguments(serve, title="security (clients of the daemon and its console)")
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
    console = serve.add_argument_group("web console")
    console.add_argument(
        "--http-port",
        type=int,
        metavar="PORT",
        help="serve the web console at http(s)://HTTP_HOST:PORT/ (0: a free port)",
    )
    console.add_argument(
        "--http-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the console listens on; another than loopback needs --tls-cert/--tls-key "
        "and --token-file [%(default)s]",
    )
    add_observability_arguments(serve)
    add_policy_options(serve)
    serve.add_argument("--debug", action="store_true", help="debug logging")
    add_loop_argument(serve)
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
    check_loop(args.loop)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be within 0..65535, got {args.port}")
    if args.http_port is not None and not 0 <= args.http_port <= 65535:
        raise UsageError(f"--http-port must be within 0..65535, got {args.http_port}")
    check_port_free(args.host, args.port)  # before gRPC binds and logs a line of its own
    if args.max_payload_bytes <= 0:
        raise UsageError(f"--max-payload-bytes must be positive, got {args.max_payload_bytes}")
    check_observability_arguments(args)
    secure = security_options(args, command="engine serve")
    configure_logging(
        level=logging.DEBUG if args.debug else logging.INFO, log_format=args.log_format
    )
    try:
        store = open_store(args.store)
    except ValueError as err:
        raise UsageError(f"--store: {err}") from err
    completion = _completion(args)
    plugins = _plugin_link(args)
    console = _console(args, secure, plugins) if args.http_port is not None else None
    registry = metrics_registry(args)
    provider = tracer_provider(args, service_name="asyncplugin-engine")
    telemetry = None
    if registry is not None or provider is not None or args.log_format == "json":
        # JSON logs need it too: it puts the task id (and trace) on the engine's log lines.
        telemetry = EngineTelemetry(tracer_provider=provider, registry=registry)
    engine = Engine(
        store=store,
        policy=policy_from_args(args),
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        transport=plugins.transport(),
        shutdown_grace_s=args.grace_s,
        telemetry=telemetry,
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
    try:
        run_on_loop(_serve(args, server, registry, console), args.loop)
    finally:
        if provider is not None:
            provider.shutdown()  # sends the spans still batched
    return 0


async def _serve(
    args: argparse.Namespace, server: EngineServer, registry: Any, console: _Console | None
) -> None:
    """Serves until SIGTERM/SIGINT, everything on this one event loop.

    Start: the metrics endpoint first (a taken --metrics-port fails before the engine starts),
    then the gRPC server and the engine, then the console (it needs a running engine). Stop,
    in reverse: the console (its live streams end), the gRPC server and the engine (calls in
    flight get --grace-s), the metrics endpoint last (it can be scraped during the grace).
    """
    metrics = None
    if registry is not None:
        metrics = await start_metrics_server(args.metrics_host, args.metrics_port, registry)
    try:
        await server.start()
        try:
            web = await console.start(server.engine) if console is not None else None
        except BaseException:
            await server.stop(args.grace_s)
            raise
        try:
            announced = f"engine serving on {server.address} (store {store_name(args.store)}"
            print(f"{announced}; {server.security})", flush=True)
            if web is not None:
                print(f"console on {web.url}", flush=True)
            if metrics is not None:
                print(f"metrics on {metrics.url}", flush=True)
            await _until_signalled()
        finally:
            try:
                if web is not None:
                    await web.stop()
            finally:
                await server.stop(args.grace_s)
    finally:
        if metrics is not None:
            await metrics.close()
    print("engine stopped", flush=True)


async def _until_signalled() -> None:
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


@dataclass(frozen=True, slots=True)
class _PluginLink:
    """How the daemon reaches plugins: TLS settings and the bearer token (never stored)."""

    security: ChannelSecurity | None
    token: str | None = field(repr=False)
    allow_insecure: bool

    def transport(self) -> GrpcTransport:
        return GrpcTransport(
            security=self.security,
            metadata_provider=BearerTokens(default=self.token) if self.token else None,
            allow_insecure=self.allow_insecure,
        )

    def credentials(self, target: str) -> grpc.ChannelCredentials | None:
        """For the console's probes of a plugin (reflection, health)."""
        return Connection(target, self.security, self.token, self.allow_insecure).credentials()


def _plugin_link(args: argparse.Namespace) -> _PluginLink:
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
    return _PluginLink(security, token, args.insecure_plugins)


@dataclass(frozen=True, slots=True)
class _Console:
    """The web console's settings, checked before anything starts."""

    host: str
    port: int
    security: ConsoleSecurity
    probes: PluginProbes

    async def start(self, engine: Engine) -> ConsoleServer:
        from asyncplugin.service.console import start_console

        try:
            return await start_console(
                engine, host=self.host, port=self.port, security=self.security, probes=self.probes
            )
        except OSError as err:
            address = format_address(self.host, self.port)
            raise UsageError(
                f"cannot serve the console on {address}: {err.strerror or err}"
            ) from None


def _console(args: argparse.Namespace, secure: SecurityOptions, plugins: _PluginLink) -> _Console:
    """The console's settings: the daemon's own TLS certificate and bearer tokens (a login
    form), the loopback rule, and the daemon's TLS and token towards plugins for its probes.

    Raises:
        UsageError: the `[console]` extra is missing, or the settings are refused (a
            non-loopback --http-host without TLS and tokens, unreadable TLS files).
    """
    try:
        from asyncplugin.service.console import ConsoleConfigError, ConsoleSecurity, PluginProbes
        from asyncplugin.service.console.security import check_bind
    except ImportError as err:
        raise UsageError(
            f"--http-port needs the web console's extra: pip install 'asyncplugin[console]' ({err})"
        ) from None
    try:
        security = ConsoleSecurity(
            tls_cert_file=args.tls_cert, tls_key_file=args.tls_key, tokens=secure.auth_tokens
        )
        check_bind(args.http_host, security)
        security.ssl_context()  # unreadable or mismatched files fail now, not after the start
    except ConsoleConfigError as err:
        raise UsageError(f"--http-port: {err}") from None
    probes = PluginProbes(credentials=plugins.credentials)
    return _Console(args.http_host, args.http_port, security, probes)


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
