"""`--loop asyncio|uvloop`: the event loop a serving command runs on, shared by the servers.

asyncio's own loop is the default. uvloop is an opt-in (`pip install 'asyncplugin[uvloop]'`): in
development measurements it took about 5% less plugin-server CPU per call, not consistently
(docs/performance.md). Asking for it without the package installed is a usage error naming the
extra, never a silent fall-back to asyncio.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from .errors import UsageError

__all__ = ["LOOPS", "add_loop_argument", "check_loop", "run_on_loop"]

LOOPS = ("asyncio", "uvloop")
"""The event loops a serving command can run on."""

T = TypeVar("T")


def add_loop_argument(parser: argparse.ArgumentParser) -> None:
    """Adds `--loop {asyncio,uvloop}` (default asyncio) to a serving command's parser."""
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="asyncio",
        help="the event loop to run on; uvloop needs the [uvloop] extra [%(default)s]",
    )


def check_loop(name: str) -> None:
    """Raises UsageError if the loop `name` cannot be used here (unknown, or not installed).

    Call it before loading or binding anything, so a missing package is the first thing said.
    """
    if name not in LOOPS:
        raise UsageError(f"--loop must be one of {', '.join(LOOPS)}, got {name!r}")
    if name == "uvloop":
        try:
            importlib.import_module("uvloop")
        except ImportError as err:
            raise UsageError(
                "--loop uvloop needs the uvloop package: pip install 'asyncplugin[uvloop]'"
            ) from err


def run_on_loop(main: Coroutine[Any, Any, T], name: str) -> T:
    """Runs `main` to completion on a fresh event loop of the kind `name`; returns its result."""
    check_loop(name)
    if name == "uvloop":
        uvloop = importlib.import_module("uvloop")
        result: T = uvloop.run(main)
        return result
    return asyncio.run(main)
