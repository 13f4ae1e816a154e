"""The `asyncplugin` command line: serve, invoke, tasks, describe, engine, store, demo, conformance.

Each subcommand lives in its own module with `register(subparsers)`; the module's handler gets
the parsed arguments and returns an exit code. Errors a user can fix print one line and exit
non-zero, never a traceback: 2 for a mistake on the command line (an unknown or ambiguous task
id included), 1 when the work or the engine failed, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

import grpc

from asyncplugin.protocol import AsyncPluginError

from .errors import UsageError
from .interrupt import INTERRUPTED_EXIT, Interrupted

_USAGE_CODES = frozenset(
    (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OUT_OF_RANGE)
)

__all__ = ["UsageError", "build_parser", "main"]

_SUBCOMMANDS = (
    "serve",
    "invoke",
    "tasks",
    "describe",
    "engine_serve",
    "store",
    "demo",
    "conformance",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="asyncplugin", description="Asynchronous plugins over gRPC: serve, invoke, inspect."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMANDS:
        importlib.import_module(f"asyncplugin.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except UsageError as err:
        print(f"asyncplugin {args.command}: error: {err}", file=sys.stderr)
        return 2
    except AsyncPluginError as err:
        print(f"asyncplugin {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2 if getattr(err, "code", None) in _USAGE_CODES else 1
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (KeyboardInterrupt, Interrupted):
        print(f"asyncplugin {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    return code


def _one_line(err: BaseException) -> str:
    """The error's message on one line (a server's message may hold line breaks)."""
    return " ".join(str(err).split())


if __name__ == "__main__":
    sys.exit(main())
