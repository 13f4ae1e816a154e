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

from ..records import CheckRecord, TaskRecord

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
