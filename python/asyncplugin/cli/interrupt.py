"""Ctrl-C for commands that follow a task: stop following, cleanly, and say how to resume.

`run_interruptible(coro)` runs the coroutine with SIGINT turned into a cancellation of it, so
`finally` blocks and `async with` exits run (an in-process engine records what it has and
stops; a client closes its channel), and raises `Interrupted` instead of a KeyboardInterrupt
traceback.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["INTERRUPTED_EXIT", "Interrupted", "run_interruptible"]

INTERRUPTED_EXIT = 130
"""The exit status after Ctrl-C (128 + SIGINT), as shells report it."""

_T = TypeVar("_T")


class Interrupted(Exception):
    """The user pressed Ctrl-C; the work was stopped cleanly."""


def run_interruptible(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """asyncio.run(coroutine), with Ctrl-C cancelling it and raising Interrupted."""
    return asyncio.run(_guarded(coroutine))


async def _guarded(coroutine: Coroutine[Any, Any, _T]) -> _T:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coroutine)
    interrupted = False

    def on_sigint() -> None:
        nonlocal interrupted
        interrupted = True
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
        handled = True
    except (RuntimeError, ValueError):
        handled = False  # not the main thread (an embedding program): leave SIGINT alone
    try:
        return await task
    except asyncio.CancelledError:
        if interrupted:
            raise Interrupted from None
        raise
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)
