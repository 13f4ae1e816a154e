"""Following one task to its end: a live row (table) or one JSON line per recorded change.

Used by `tasks watch` and `invoke --watch`, over a daemon's WatchTask stream, a store read
again and again, or an in-process engine (its changes converted to the same messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live

from asyncplugin.engine import Engine
from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.service.convert import check_to_proto, task_to_proto

from .output import print_json_line
from .progress import tasks_table

__all__ = ["Followed", "engine_changes", "follow"]

_TICK_S = 0.25


@dataclass(slots=True)
class Followed:
    """What following a task saw: its last state and every history entry."""

    task: engine_pb2.Task | None = None
    checks: list[engine_pb2.CheckEntry] = field(default_factory=list)

    def add(self, change: engine_pb2.WatchTaskResponse) -> None:
        """Takes one change in."""
        self.task = change.task
        self.checks.extend(change.checks)


async def follow(
    changes: AsyncIterator[engine_pb2.WatchTaskResponse],
    *,
    json_lines: bool,
    console: Console,
    polled: Callable[[], bool] = lambda: True,
    seen: Followed | None = None,
) -> Followed:
    """Consumes `changes` until they end: prints each as a JSON line, or keeps a live row
    (refreshed every quarter second, so "next check in" counts down) up to date.

    `seen` collects what was seen so far, so a caller interrupted midway still knows the task.
    """
    seen = seen if seen is not None else Followed()
    if json_lines:
        async for change in changes:
            seen.add(change)
            print_json_line(change)
        return seen
    iterator = aiter(changes)
    with Live(console=console, refresh_per_second=8, transient=False) as live:
        pending: asyncio.Future[engine_pb2.WatchTaskResponse] = asyncio.ensure_future(
            anext(iterator)
        )
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=_TICK_S)
                if done:
                    try:
                        seen.add(pending.result())
                    except StopAsyncIteration:
                        break
                    pending = asyncio.ensure_future(anext(iterator))
                if seen.task is not None:
                    live.update(tasks_table([seen.task], now=time.time(), polled=polled()))
        finally:
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await pending
            closer = getattr(iterator, "aclose", None)
            if closer is not None:
                await closer()
    console.print()
    return seen


async def engine_changes(
    engine: Engine, task_id: str
) -> AsyncIterator[engine_pb2.WatchTaskResponse]:
    """An in-process engine's changes of one task, as WatchTask would stream them: the first
    holds the task and its history so far, each later one a change and its new entries."""
    revision = -1
    async for update in engine.watch(task_id):
        record = update.record
        if revision < 0:
            checks = [c for c in await engine.checks(task_id) if c.revision <= record.revision]
        else:
            checks = [c for c in update.checks if c.revision > revision]
        revision = max(revision, record.revision)
        yield engine_pb2.WatchTaskResponse(
            task=task_to_proto(record, view=engine_pb2.TASK_VIEW_BASIC),
            checks=[check_to_proto(check) for check in checks],
        )
