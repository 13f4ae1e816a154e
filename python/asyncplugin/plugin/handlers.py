"""Calling plugin handlers that may be `async def` or plain `def` without blocking the loop."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

executor_var: contextvars.ContextVar[Executor | None] = contextvars.ContextVar(
    "asyncplugin_plugin_executor", default=None
)
"""The thread pool plain `def` handlers run in during this call (None: the loop's default)."""


def inline(fn: _F) -> _F:
    """Marks a plain `def` as cheap and non-blocking, so it is called on the loop, not in a thread.

    The base class's default handlers carry this mark; plugin handlers normally do not need it.
    """
    fn._asyncplugin_inline = True  # type: ignore[attr-defined]
    return fn


def _is_inline(fn: Callable[..., Any]) -> bool:
    return bool(getattr(fn, "_asyncplugin_inline", False))


async def call_handler(fn: Callable[..., Any], *args: Any) -> Any:
    """Calls `fn(*args)` and awaits its result if it is awaitable.

    An `async def` (or a function marked `inline`) runs on the event loop; any other callable runs
    in the executor from `executor_var`, so a blocking handler never stalls other calls.
    """
    if inspect.iscoroutinefunction(fn) or _is_inline(fn):
        result = fn(*args)
    else:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args)
        result = await loop.run_in_executor(executor_var.get(), call)
    while inspect.isawaitable(result):
        result = await result
    return result
