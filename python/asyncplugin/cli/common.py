"""Options and helpers shared by the engine-side subcommands (invoke, tasks, demo)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import grpc

from asyncplugin.engine import PollingPolicy, SqliteStore

from .errors import UsageError

DEFAULT_STORE = "asyncplugin.sqlite3"
"""The SQLite file `invoke` records into and `tasks` reads, unless --store or $ASYNCPLUGIN_STORE."""


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """--store PATH (default $ASYNCPLUGIN_STORE or ./asyncplugin.sqlite3)."""
    parser.add_argument(
        "--store",
        default=os.environ.get("ASYNCPLUGIN_STORE", DEFAULT_STORE),
        metavar="PATH",
        help="SQLite task store (default: $ASYNCPLUGIN_STORE or ./%(default)s)",
    )


def open_store(path: str, *, must_exist: bool) -> SqliteStore:
    """The SQLite store at `path`; with must_exist, a missing file is a UsageError."""
    if must_exist and not Path(path).exists():
        raise UsageError(f"no task store at {path} (run 'asyncplugin invoke' first, or --store)")
    return SqliteStore(path)


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


def parse_json_data(text: str) -> Any:
    """Parses --data; malformed JSON is a one-line UsageError naming the position."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as err:
            raise UsageError(f"--data {text}: {err.strerror}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"--data is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from err


def add_channel_options(parser: argparse.ArgumentParser) -> None:
    """TLS and token options for calling a plugin."""
    group = parser.add_argument_group("connection")
    group.add_argument("--tls-ca", metavar="FILE", help="verify the plugin's certificate with it")
    group.add_argument("--token", metavar="TOKEN", help="bearer token sent to the plugin")
    group.add_argument(
        "--connect-timeout", type=float, default=5.0, metavar="S", help="(default %(default)s)"
    )


def channel_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS credentials from --tls-ca, or None for plaintext."""
    if not args.tls_ca:
        return None
    try:
        return grpc.ssl_channel_credentials(root_certificates=Path(args.tls_ca).read_bytes())
    except OSError as err:
        raise UsageError(f"--tls-ca {args.tls_ca}: {err.strerror}") from err


def check_reachable(
    target: str, credentials: grpc.ChannelCredentials | None, timeout_s: float
) -> None:
    """Fails with a one-line UsageError when nothing answers at `target` within the timeout."""
    channel = (
        grpc.secure_channel(target, credentials)
        if credentials is not None
        else grpc.insecure_channel(target)
    )
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise UsageError(f"cannot reach a gRPC server at {target} within {timeout_s:g}s") from None
    finally:
        channel.close()
