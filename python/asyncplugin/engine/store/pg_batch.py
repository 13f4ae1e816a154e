"""Group commit for the PostgreSQL store: concurrent writes share one statement.

The `record` calls of steps running at the same time arrive while a write is in flight; they
wait and go together in the next statement, so N concurrent steps cost one round trip instead of
N. Each write keeps its own outcome (applied, refused by its fence, or its task missing).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import StoreError
from ..records import CheckRecord, TaskRecord
from .rows import check_row, task_row

__all__ = ["GroupCommit", "Write", "task_arrays", "write_params"]

MAX_BATCH: Final = 256
"""The most writes one statement carries."""


@dataclass(slots=True)
class Write:
    """One `create` or `record` call waiting for its group commit."""

    wid: uuid.UUID
    task_id: str
    token: int | None
    record: TaskRecord | None
    checks: tuple[CheckRecord, ...]
    due_in_s: float | None
    keep_s: float | None
    future: asyncio.Future[None] = field(repr=False)


class GroupCommit:
    """Group commit: writes submitted while a flush is in flight go together in the next one.

    One flush runs at a time; each write's future gets its own outcome. A task appears at most
    once per batch (its writes are sequential anyway; the statement needs one row per task).
    """

    def __init__(self, flush: Callable[[list[Write]], Awaitable[None]]) -> None:
        self._flush = flush
        self._pending: list[Write] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, write: Write) -> None:
        """Queues the write, starts a flush if none runs, and waits for the write's outcome."""
        self._pending.append(write)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._drain())
        # The flush goes on even if this caller is cancelled: its outcome is then unknown to
        # the caller, as with any write interrupted in flight.
        await asyncio.shield(write.future)

    async def drain(self) -> None:
        """Waits until every queued write is flushed."""
        runner = self._runner
        if runner is not None:
            await asyncio.gather(runner, return_exceptions=True)

    async def _drain(self) -> None:
        while self._pending:
            batch: list[Write] = []
            seen: set[str] = set()
            rest: list[Write] = []
            for write in self._pending:
                if write.task_id in seen or len(batch) >= MAX_BATCH:
                    rest.append(write)
                else:
                    seen.add(write.task_id)
                    batch.append(write)
            self._pending = rest
            try:
                await self._flush(batch)
            except Exception as err:
                for write in batch:
                    if not write.future.done():
                        write.future.set_exception(err)
            except BaseException:
                # Cancelled (the loop is closing): no write of this batcher can be settled now.
                for write in batch + self._pending:
                    if not write.future.done():
                        write.future.set_exception(StoreError("the store was closed mid-write"))
                self._pending = []
                raise
            for write in batch:
                if not write.future.done():  # pragma: no cover - every flush settles its batch
                    write.future.set_exception(StoreError("write outcome unknown"))


def task_arrays(records: Sequence[TaskRecord]) -> list[list[Any]]:
    """Column arrays of whole task rows (TASK_COLUMNS), for creating tasks."""
    columns: list[list[Any]] = [[] for _ in range(21)]
    for record in records:
        for column, value in zip(columns, task_row(record), strict=True):
            column.append(value)
    return columns


def _progress_arrays(batch: Sequence[Write]) -> list[list[Any]]:
    """Column arrays of PROGRESS_COLUMNS (NULLs where a write has no record)."""
    columns: list[list[Any]] = [[] for _ in range(12)]
    for w in batch:
        r = w.record
        row = (
            (w.task_id, int(r.state), r.update_time, r.start_time, r.end_time,
             r.next_check_time, r.check_count, r.retries, r.status, r.result, r.error,
             r.revision)
            if r is not None
            else (w.task_id,) + (None,) * 11
        )  # fmt: skip
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def write_params(batch: Sequence[Write]) -> list[Any]:
    """The parameters of pg_sql.WRITE for a batch of writes."""
    params: list[Any] = [
        [w.wid for w in batch],
        [w.token for w in batch],
        [w.record is not None for w in batch],
        [w.due_in_s for w in batch],
        [w.keep_s for w in batch],
    ]
    params += _progress_arrays(batch)
    checks = [(w.wid, check) for w in batch for check in w.checks]
    params.append([wid for wid, _ in checks])
    rows = [check_row(check) for _, check in checks]
    params += [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 12
    return params
