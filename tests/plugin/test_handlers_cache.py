"""call_handler decides once per handler function whether it runs on the loop or in a thread."""

from __future__ import annotations

import threading

from asyncplugin.plugin import handlers
from asyncplugin.plugin.handlers import call_handler, inline


class _Plugin:
    async def coroutine(self) -> str:
        return threading.current_thread().name

    def blocking(self) -> str:
        return threading.current_thread().name

    @inline
    def marked(self) -> str:
        return threading.current_thread().name


async def test_each_kind_of_handler_runs_where_it_should_on_every_call() -> None:
    plugin = _Plugin()
    here = threading.current_thread().name
    for _ in range(3):  # the decision is cached from the first call on
        assert await call_handler(plugin.coroutine) == here
        assert await call_handler(plugin.marked) == here
        assert await call_handler(plugin.blocking) != here


async def test_the_cache_stays_bounded_for_handlers_made_on_the_fly() -> None:
    for i in range(handlers._ON_LOOP_MAX + 10):

        async def made(i: int = i) -> int:
            return i

        assert await call_handler(made) == i
    assert len(handlers._on_loop) <= handlers._ON_LOOP_MAX
