"""`asyncplugin serve MODULE:CLASS`: load a plugin class and serve it until SIGTERM/SIGINT.

CLASS is an AsyncPlugin subclass, or any class with a `run(request)` method (a Steamship-style
plugin, say): it is checked before it is created, and a class without `run` or with abstract
methods is refused with one line naming what is missing.

MODULE is imported with the current directory on sys.path (as uvicorn does), so
`asyncplugin serve server.transcriber:Transcriber` works from the repository root. The first
line on stdout is "serving NAME on HOST:PORT", so scripts can read the port chosen by --port 0.

Security: --tls-cert/--tls-key serve TLS, --tls-client-ca adds mutual TLS, and --token-file (or
$ASYNCPLUGIN_TOKEN) makes every call but health checks carry `authorization: Bearer <token>`.
There is deliberately no --token VALUE option: a command line is visible to every user of the
machine (`ps`), a file with mode 0600 or the environment (readable only by the same user) is
not. Without TLS only a loopback --host is accepted unless --insecure is given.

Observability: --metrics-port serves Prometheus metrics (GET /metrics only, on the server's own
event loop), --otlp-endpoint sends a span per call to an OpenTelemetry collector (continuing the
engine's trace), and --log-format json writes one JSON object per log line with the task id,
trace id and span id of the call being answered.

Event loop: --loop uvloop serves on uvloop (the [uvloop] extra; asyncio's loop by default).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from types import ModuleType
from typing import Any

from asyncplugin.cli import UsageError
from asyncplugin.cli.event_loop import add_loop_argument, check_loop, run_on_loop
from asyncplugin.observability import configure_logging, start_metrics_server
from asyncplugin.plugin import DEFAULT_GRACE_S, AsyncPlugin, PluginServer, PluginTelemetry, serve
from asyncplugin.plugin.loading import PluginLoadError, as_plugin
from asyncplugin.protocol import limits

from .endpoint import check_port_free
from .server_options import (
    add_observability_arguments,
    add_security_arguments,
    check_observability_arguments,
    metrics_registry,
    security_options,
    tracer_provider,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `serve` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a plugin class over gRPC",
        description="Serve a plugin class (MODULE:CLASS, imported from the current directory) "
        "over gRPC, with health checking and reflection, until SIGTERM or SIGINT.",
    )
    parser.add_argument("target", metavar="MODULE:CLASS", help="e.g. server.echo:Echo")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [%(default)s]")
    parser.add_argument(
        "--port", type=int, default=50051, help="port; 0 picks a free one [%(default)s]"
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=limits.MESSAGE_MAX_BYTES,
        metavar="N",
        help="largest message received or sent [%(default)s]",
    )
    add_security_arguments(parser)
    parser.add_argument(
        "--grace-s",
        type=float,
        default=DEFAULT_GRACE_S,
        metavar="SECONDS",
        help="how long in-flight calls may finish on shutdown [%(default)s]",
    )
    parser.add_argument(
        "--debug", action="store_true", help="debug logging; tracebacks go on the wire"
    )
    add_observability_arguments(parser)
    add_loop_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Serves the plugin named by `args.target`; returns 0 after a clean shutdown."""
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be within 0..65535, got {args.port}")
    if args.max_message_bytes <= 0:
        raise UsageError(f"--max-message-bytes must be positive, got {args.max_message_bytes}")
    check_observability_arguments(args)
    check_loop(args.loop)
    options = security_options(args)
    check_port_free(args.host, args.port)
    configure_logging(
        level=logging.DEBUG if args.debug else logging.INFO, log_format=args.log_format
    )
    plugin = load_plugin(args.target)
    registry = metrics_registry(args)
    provider = tracer_provider(args, service_name=f"asyncplugin-plugin-{plugin.name}")
    telemetry = None
    if registry is not None or provider is not None or args.log_format == "json":
        telemetry = PluginTelemetry(tracer_provider=provider, registry=registry)
    server = PluginServer(
        plugin,
        host=args.host,
        port=args.port,
        max_message_bytes=args.max_message_bytes,
        security=options.security,
        auth_tokens=options.auth_tokens,
        allow_insecure=options.allow_insecure,
        debug=args.debug,
        telemetry=telemetry,
    )
    try:
        run_on_loop(_serve(args, server, registry), args.loop)
    finally:
        if provider is not None:
            provider.shutdown()  # sends the spans still batched
    return 0


async def _serve(args: argparse.Namespace, server: PluginServer, registry: Any) -> None:
    """Starts the metrics endpoint (if asked for) on this loop, then serves the plugin."""
    metrics = None
    if registry is not None:
        metrics = await start_metrics_server(args.metrics_host, args.metrics_port, registry)

    def announce(started: PluginServer) -> None:
        _announce(started)
        if metrics is not None:
            print(f"metrics on {metrics.url}", flush=True)

    try:
        await serve(server, grace_s=args.grace_s, on_started=announce)
    finally:
        if metrics is not None:
            await metrics.close()


def _announce(server: PluginServer) -> None:
    print(f"serving {server.plugin.name} on {server.address}", flush=True)


def _import(module_name: str, cwd: str) -> ModuleType:
    """Imports the plugin's module; any failure is one line naming the module and the error.

    A missing target module is a usage error; an error raised while the module itself runs
    (a bug, a missing dependency) is reported with the exception and where it happened, not as
    a traceback through the command line's own code.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise UsageError(f"cannot import module {module_name!r} from {cwd}") from err
        raise UsageError(_import_failure(module_name, err)) from err
    except Exception as err:  # the plugin's own code may raise anything
        raise UsageError(_import_failure(module_name, err)) from err


def _import_failure(module_name: str, err: BaseException) -> str:
    """ "importing module 'm' failed: ZeroDivisionError: division by zero (at m.py:2)"."""
    where = ""
    if isinstance(err, SyntaxError) and err.filename:
        where = f"{_relative(err.filename)}:{err.lineno}"
        detail = err.msg
    else:
        frames = traceback.extract_tb(err.__traceback__)
        own = [frame for frame in frames if "importlib" not in frame.filename]
        if own:
            where = f"{_relative(own[-1].filename)}:{own[-1].lineno}"
        detail = " ".join(str(err).split())
    location = f" (at {where})" if where else ""
    return f"importing module {module_name!r} failed: {type(err).__name__}: {detail}{location}"


def _relative(path: str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return path


def load_plugin(target: str) -> AsyncPlugin[Any, Any]:
    """Imports MODULE and returns a plugin: CLASS() for a class, or the object if an instance.

    CLASS is an AsyncPlugin subclass or any class with a `run(request)` method (wrapped; see
    `asyncplugin.plugin.as_plugin`).

    Raises:
        UsageError: the target is malformed or missing, has no `run`, has abstract methods, or
            cannot be created without arguments (one line naming which).
    """
    module_name, sep, attr_name = target.partition(":")
    if not sep or not module_name or not attr_name:
        raise UsageError(f"expected MODULE:CLASS (like server.echo:Echo), got {target!r}")
    if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
        dotted = module_name.removesuffix(".py").replace("\\", "/").strip("/").replace("/", ".")
        raise UsageError(
            f"{module_name!r} is a file name; MODULE is a module name, imported from the "
            f"current folder: drop the '.py' and use dots for folders: {dotted}:{attr_name}"
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    obj: Any = _import(module_name, cwd)
    for part in attr_name.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"module {module_name!r} has no attribute {attr_name!r}")
        obj = getattr(obj, part)
    try:
        return as_plugin(obj, label=target)
    except PluginLoadError as err:
        raise UsageError(str(err)) from err
