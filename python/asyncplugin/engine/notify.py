"""Telling the engine's callers about recorded changes: hooks, watch iterators, and waiters.

Every change reaches listeners only after the store has recorded it, so what a listener sees is
never ahead of what a restarted engine would find.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from .clock import Clock
from .errors import EngineClosed, WaitTimeout
from .records import TaskRecord, TaskUpdate

__all__ = ["ChangeHook", "Notifier"]

_log = logging.getLogger(__name__)

ChangeHook = Callable[[TaskUpdate], None]
"""Called synchronously, in the engine's loop, after each recorded change. Keep it quick; its
exceptions are logged and ignored."""


class Notifier:
    """Fans recorded changes out to hooks, `watch` iterators and `wait` callers."""

    def __init__(self, hooks: list[ChangeHook]) -> None:
        self._hooks = hooks
        self._waiters: dict[str, set[asyncio.Future[TaskRecord]]] = {}
        self._watchers: dict[str | None, set[asyncio.Queue[TaskUpdate | None]]] = {}

    def add_hook(self, hook: ChangeHook) -> Callable[[], None]:
        """Adds a hook; returns a function that removes it."""
        self._hooks.append(hook)
        return lambda: self._hooks.remove(hook) if hook in self._hooks else None

    def publish(self, update: TaskUpdate) -> None:
        """Delivers one recorded change."""
        for hook in list(self._hooks):
            try:
                hook(update)
            except Exception:
                _log.exception("on_change hook %r failed", hook)
        task_id = update.record.task_id
        for key in (task_id, None):
            for queue in self._watchers.get(key, ()):
                queue.put_nowait(update)
        if update.record.is_terminal:
            for future in self._waiters.pop(task_id, ()):
                if not future.done():
                    future.set_result(update.record)

    async def wait(self, record: TaskRecord, clock: Clock, timeout_s: float | None) -> TaskRecord:
        """Waits until the task is terminal; `timeout_s` is measured on `clock`."""
        if record.is_terminal:
            return record
        loop = asyncio.get_running_loop()
        future: asyncio.Future[TaskRecord] = loop.create_future()
        self._waiters.setdefault(record.task_id, set()).add(future)
        try:
            if timeout_s is None:
                return await future
            sleeper = loop.create_task(clock.sleep_until(clock.now() + timeout_s))
            try:
                await asyncio.wait((future, sleeper), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
            if future.done():
                return future.result()
            raise WaitTimeout(record.task_id, timeout_s)
        finally:
            waiting = self._waiters.get(record.task_id)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiters[record.task_id]
            if not future.done():
                future.cancel()

    def subscribe(self, task_id: str | None) -> asyncio.Queue[TaskUpdate | None]:
        """A queue receiving the task's updates (all tasks' if None); None marks the end."""
        queue: asyncio.Queue[TaskUpdate | None] = asyncio.Queue()
        self._watchers.setdefault(task_id, set()).add(queue)
        return queue

    def unsubscribe(self, task_id: str | None, queue: asyncio.Queue[TaskUpdate | None]) -> None:
        """Stops delivering to a queue from `subscribe`."""
        queues = self._watchers.get(task_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._watchers[task_id]

    async def iterate(
        self, first: TaskRecord | None, queue: asyncio.Queue[TaskUpdate | None]
    ) -> AsyncIterator[TaskUpdate]:
        """Yields `first` (if given), then queued updates until the end or a terminal task."""
        if first is not None:
            yield TaskUpdate(record=first)
            if first.is_terminal:
                return
        while True:
            update = await queue.get()
            if update is None:
                return
            yield update
            if first is not None and update.record.is_terminal:
                return

    def close(self, error: Exception | None = None) -> None:
        """Ends every watch iterator and fails every waiter with `error` (default EngineClosed)."""
        for queues in self._watchers.values():
            for queue in queues:
                queue.put_nowait(None)
        self._watchers.clear()
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(error or EngineClosed("the engine stopped"))
        self._waiters.clear()
