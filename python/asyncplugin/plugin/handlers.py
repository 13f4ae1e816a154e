"""Calling plugin handlers that may be `async def` or plain `def` without blocking the loop."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import types
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from asyncplugin.protocol import Response

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


_on_loop: dict[Any, bool] = {}
"""Per handler function: runs on the loop (`async def` or inline) or not. Keyed by the function
under a bound method, which is a new object on every attribute access."""


def runs_on_loop(fn: Callable[..., Any]) -> bool:
    """True if `call_handler` calls `fn` on the loop (`async def`, or marked `inline`)."""
    key = getattr(fn, "__func__", fn)
    try:
        return _on_loop[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable callable: decide every time
        return inspect.iscoroutinefunction(fn) or _is_inline(fn)
    if len(_on_loop) >= _ON_LOOP_MAX:  # handlers made on the fly: keep the cache bounded
        _on_loop.clear()
    decided = _on_loop[key] = inspect.iscoroutinefunction(fn) or _is_inline(fn)
    return decided


_ON_LOOP_MAX = 1024


async def call_handler(fn: Callable[..., Any], *args: Any) -> Any:
    """Calls `fn(*args)` and awaits its result if it is awaitable.

    An `async def` (or a function marked `inline`) runs on the event loop; any other callable runs
    in the executor from `executor_var`, so a blocking handler never stalls other calls.
    """
    if runs_on_loop(fn):
        result = fn(*args)
    else:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args)
        result = await loop.run_in_executor(executor_var.get(), call)
    while type(result) is _Coroutine or (
        type(result) not in NEVER_AWAITABLE and inspect.isawaitable(result)
    ):
        result = await result
    return result


_Coroutine = types.CoroutineType
NEVER_AWAITABLE: frozenset[type] = frozenset({Response, dict, type(None)})
"""What handlers usually return, which `inspect.isawaitable` (an ABC check) need not look at."""
