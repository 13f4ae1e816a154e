"""The task store's interface: the engine's durable truth about every task and every check.

The engine writes a task's new record and the check-history entries that explain it in ONE
`record` call, and only then schedules the next call: whatever is recorded is what a restarted
engine resumes from. Implementations must make each `record` call atomic.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Collection

from asyncplugin.protocol import TaskState

from ..errors import AmbiguousTaskId, TaskNotFound
from ..records import CheckRecord, TaskRecord
from .query import TaskCursor, TaskFilter, after_cursor, order_key

__all__ = ["TaskStore"]


class TaskStore(abc.ABC):
    """Where tasks and their check histories live. One engine uses a store at a time."""

    async def open(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Prepares the store (creates or migrates a schema). Called by `Engine.start`."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Releases the store's resources (and the claim, if any). Called by `Engine.stop`."""

    async def claim(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Makes this the only engine driving the store until `close`. Called by `Engine.start`
        after `open`; readers that only inspect a store (`asyncplugin tasks`) do not claim it.

        Raises:
            StoreError: another engine holds the store.
        """

    async def announce(self, note: str) -> None:  # noqa: B027 - optional hook
        """Leaves a note for anyone refused the claim (for example the engine daemon's address,
        so a second engine on the store is told where to submit instead)."""

    @abc.abstractmethod
    async def create(self, record: TaskRecord) -> None:
        """Adds a new task.

        Raises:
            ValueError: a task with this id already exists.
        """

    @abc.abstractmethod
    async def record(self, record: TaskRecord | None, *checks: CheckRecord) -> None:
        """Atomically replaces a task's record and/or appends entries to check histories."""

    @abc.abstractmethod
    async def get(self, task_id: str) -> TaskRecord | None:
        """The task's record, or None if there is no such task."""

    @abc.abstractmethod
    async def list(
        self, *, states: Collection[TaskState] | None = None, limit: int | None = None
    ) -> builtins.list[TaskRecord]:
        """Tasks in the given states (all if None), newest first, at most `limit`."""

    @abc.abstractmethod
    async def checks(self, task_id: str) -> builtins.list[CheckRecord]:
        """The task's check history, oldest first (empty for an unknown task)."""

    async def unfinished(self) -> builtins.list[TaskRecord]:
        """Every WAITING or RUNNING task, for an engine resuming after a restart."""
        return await self.list(states=(TaskState.WAITING, TaskState.RUNNING))

    # The methods below have correct but slow defaults built on `list` and `checks`, so a new
    # store works before it is tuned; the bundled stores override them with indexed queries.

    async def query(
        self, where: TaskFilter, *, limit: int, after: TaskCursor | None = None
    ) -> builtins.list[TaskRecord]:
        """Tasks passing `where`, newest first (creation time, then id), after `after`."""
        states = where.states if where.states is not None else None
        found = [
            record
            for record in await self.list(states=states)
            if where.matches(record) and after_cursor(record, after)
        ]
        found.sort(key=order_key, reverse=True)
        return found[:limit]

    async def find_ids(self, prefix: str, *, limit: int) -> builtins.list[str]:
        """Ids of tasks starting with `prefix`, sorted, at most `limit`."""
        ids = sorted(r.task_id for r in await self.list() if r.task_id.startswith(prefix))
        return ids[:limit]

    async def resolve(self, prefix: str) -> str:
        """The id of the one task whose id is `prefix` or starts with it.

        Raises:
            TaskNotFound: no task matches. AmbiguousTaskId: several do (up to 10 named).
        """
        if not prefix:
            raise TaskNotFound(prefix)
        if await self.get(prefix) is not None:
            return prefix
        ids = await self.find_ids(prefix, limit=11)
        if not ids:
            raise TaskNotFound(prefix)
        if len(ids) > 1:
            raise AmbiguousTaskId(prefix, ids[:10], more=len(ids) > 10)
        return ids[0]

    async def find_request(self, request_id: str) -> TaskRecord | None:
        """The task submitted with this request id, or None."""
        for record in await self.list():
            if record.options.request_id == request_id:
                return record
        return None

    async def checks_after(self, task_id: str, revision: int) -> builtins.list[CheckRecord]:
        """The task's history entries recorded after `revision`, oldest first."""
        return [check for check in await self.checks(task_id) if check.revision > revision]

    async def delete(self, task_id: str) -> bool:
        """Removes a task and its history; True if it was there. Engines delete only finished
        tasks (the caller checks)."""
        raise NotImplementedError(f"{type(self).__name__} cannot delete tasks")
