"""The `asyncplugin` command line: serve | invoke | tasks | engine | store | demo | conformance.

Each subcommand lives in its own module with `register(subparsers)`; the module's handler gets
the parsed arguments and returns an exit code. Errors a user can fix print one line and exit
non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from asyncplugin.protocol import AsyncPluginError

from .errors import UsageError

__all__ = ["UsageError", "build_parser", "main"]

_SUBCOMMANDS = ("serve", "invoke", "tasks", "engine_serve", "store", "demo", "conformance")


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
        print(f"asyncplugin {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
